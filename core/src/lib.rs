//! cyfr's router logic, free of I/O and of any runtime.
//!
//! The entry points (Spin router, Workers router, tests) hand [`app::App::handle`] a plain
//! [`http::HttpRequest`] and get a plain [`http::HttpResponse`] back. Everything the logic
//! needs from the outside arrives through three small traits: [`db::Db`] (SQL),
//! [`dispatch::Dispatch`] (running components on a host) and [`env::Env`] (clock, randomness).
#![deny(missing_docs)]

pub mod app;
pub mod auth;
pub mod config;
pub mod crypto;
pub mod db;
pub mod dispatch;
pub mod env;
pub mod errors;
pub mod executions;
pub mod formulas;
pub mod host_api;
pub mod hosts;
pub mod http;
pub mod ipallow;
pub mod keys;
pub mod manifest;
pub mod mcp;
pub mod migrate;
pub mod policy;
pub mod ratelimit;
pub mod reference;
pub mod registry;
pub mod retention;
pub mod scopes;
pub mod secrets;
pub mod sessions;
pub mod tools;
pub mod units;
