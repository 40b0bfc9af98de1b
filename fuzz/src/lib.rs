//! Fuzzing cyfr's parsers on stable Rust. Each target is a `fn(&[u8])` over the real entry
//! points; inputs come from a seeded fast RNG, half fresh random bytes (read structurally
//! with `arbitrary`), half mutations of a small corpus of valid examples so deep paths are
//! reached. A panic (or a broken property, which panics) is a crash, reported with its input in hex.

pub mod driver;
pub mod gen;
pub mod targets;

pub use driver::{run, Report};
