//! `App::handle` end to end in-process: real SQL (in-memory libsql), a fake host, a fixed
//! clock. One test binary, so it links once.

mod support;

mod arguments;
mod audit;
mod bootstrap;
mod budget;
mod catalog;
mod component_tools;
mod contract;
mod executions;
mod formulas;
mod happy;
mod input_required;
mod jwt;
mod listen;
mod modern;
mod permissions;
mod prompts;
mod providers;
mod resources;
mod scopes;
mod sessions;
mod stream;
mod subscriptions;
