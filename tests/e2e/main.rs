//! End-to-end tests: the real `cyfr` binary, on loopback, spoken to over HTTP.

mod support;

mod auth;
mod cli;
mod executions;
mod secrets;
mod transport;
