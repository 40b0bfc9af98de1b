//! cyfr's native host.
//!
//! Two jobs: `spin_runner` serves `router.wasm` as Spin would (wasi:http plus Spin's SQLite
//! and variables, implemented natively over embedded libsql), and `executor` runs user
//! components under hard limits. `service` wires them together for `cyfr up`.
#![deny(missing_docs)]

pub mod code_cache;
pub mod egress;
pub mod executor;
pub mod formula;
pub(crate) mod guest_error;
pub mod host_server;
pub mod keyring;
pub(crate) mod recovery;
mod run_stream;
pub mod service;
pub mod spin_runner;
pub mod tls;

// Moved to the cyfr-libsql crate (core's tests use it too); the old paths keep working.
pub use cyfr_libsql::{core_db, db};

/// Keeps panic backtraces but stops error values from capturing one: with `RUST_BACKTRACE=1`
/// in the environment (CI, many shells) `std::backtrace::Backtrace::capture` also runs for
/// every error wasmtime makes, and dropping each router `Store` makes one (measured: ~5 % of
/// a `GET /health`). `RUST_LIB_BACKTRACE`, when the user set it, still decides. Call first
/// in `main`, before any thread starts.
pub fn quiet_error_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}

/// `CYFR_PERF_MAP=1` makes an engine write `/tmp/perf-<pid>.map`, so `perf report` names wasm
/// frames (the router's and the guests'); off by default.
pub fn perf_map(config: &mut wasmtime::Config) {
    if std::env::var_os("CYFR_PERF_MAP").is_some_and(|v| v == "1") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
}
