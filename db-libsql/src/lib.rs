//! Embedded libsql for native cyfr.
//!
//! [`db`] is the local database file (WAL, one long-lived connection with cached statements,
//! sessions and batches, checkpoints on a thread of its own) that the host backs Spin's SQLite
//! with; [`core_db`] is `cyfr_core::db::Db` over it, for native work (`cyfr init`, start-up
//! migrations) and for core's own tests, which open it in memory.
#![deny(missing_docs)]

pub mod core_db;
pub mod db;
