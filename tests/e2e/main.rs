//! End-to-end tests: the real `cyfr` binary, on loopback, spoken to over HTTP.

mod support;

mod auth;
mod catalysts;
mod checklist;
mod cli;
mod crash;
mod edge;
mod executions;
mod formulas;
mod hosts;
mod identity;
mod lineage;
mod login;
mod mtls;
mod net;
mod sealed;
mod secrets;
mod streaming;
mod tools;
mod transport;
mod worker;
