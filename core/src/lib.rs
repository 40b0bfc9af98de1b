//! cyfr's router logic, free of I/O and of any runtime.
//!
//! The entry points (Spin router, Workers router, tests) hand [`app::App::handle`] a plain
//! [`http::HttpRequest`] and get a plain [`http::HttpResponse`] back. Everything the logic
//! needs from the outside arrives through three small traits: [`db::Db`] (SQL),
//! [`dispatch::Dispatch`] (running components on a host) and [`env::Env`] (clock, randomness).
//!
//! The modules form layers; each imports only from its own layer or those below it, and
//! no two modules import each other (`scripts/core-dag.sh` checks both, reading the layers
//! from the `// N. layer` sections below):
//!
//! 1. **context** — the seams and what every layer shares: [`context`], [`db`],
//!    [`dispatch`], [`env`](mod@env), [`config`], [`errors`], [`http`], [`host_api`] (the
//!    router↔host wire schema), `access` (what an action may require), `args` (how tool
//!    arguments are read), [`crypto`], [`jwt`], [`kms`], [`units`], [`reference`](mod@reference), `ipallow`,
//!    [`manifest`], [`mcp_headers`] (2026-07-28's `Mcp-*` header values).
//! 2. **services** — the rules over storage, one subject each: [`audit`], [`keys`], [`sessions`],
//!    `auth`, `ratelimit`, [`secrets`], [`registry`], [`component_config`], [`policy`], `executions`,
//!    [`formulas`], [`retention`], [`migrate`], [`subscriptions`] (a 2025-11-25 session's watched resources), [`permissions`], [`logins`], `oauth` (a provider's device flow over `Dispatch::fetch`), [`hosts`] (which host a run goes to, sealing
//!    and tokens, over a `Transport`). They know nothing of tools, JSON-RPC or
//!    HTTP transport.
//! 3. **tools** — `tools`: each tool action declared once (scope, typed arguments,
//!    handler); [`scopes`] is the scope table they make.
//! 4. **rpc** — `mcp`: JSON-RPC methods; [`modern`]: the stateless 2026-07-28 rules
//!    (request checks, `server/discover`, answer shape) `mcp` applies beside 2025-11-25;
//!    `listen`: `subscriptions/listen`, change notifications on an open stream by polling SQL.
//! 5. **transport** — [`app`] (the HTTP rules of `/mcp`), `callbacks` (the formula
//!    callback endpoint), `device_page` (`/auth/device`, cyfr's own device verification),
//!    [`stream`] (a `tools/call` answered as an event stream: progress, logs, cancel on close).
//!
//! The public surface is what the adapters and tests use: the seams (`db`, `dispatch`,
//! `env`, `config`, `context`, `http`, `host_api`, `hosts`), `app::App`, and the services
//! that native tools (`cyfr init`, key files, the bench) call directly. The request
//! machinery — `auth`, `ratelimit`, `executions`, `tools`, `mcp`, `callbacks`, `ipallow` — is
//! crate-private: it is reached only through [`app::App::handle`].
#![deny(missing_docs)]

// 1. context
mod access;
mod args;
pub mod config;
pub mod context;
pub mod crypto;
pub mod db;
pub mod dispatch;
pub mod env;
pub mod errors;
pub mod host_api;
pub mod http;
pub(crate) mod ipallow;
pub mod jwt;
pub mod kms;
pub mod manifest;
pub mod mcp_headers;
pub mod reference;
pub mod sql_batch;
pub mod units;

// 2. services
pub mod audit;
pub(crate) mod auth;
pub mod component_config;
pub(crate) mod executions;
pub mod formulas;
pub mod hosts;
pub mod keys;
pub mod logins;
pub mod migrate;
pub(crate) mod oauth;
pub mod permissions;
pub mod policy;
pub(crate) mod ratelimit;
pub mod registry;
pub mod retention;
pub mod secrets;
pub mod sessions;
pub mod subscriptions;

// 3. tools
pub mod scopes;
pub(crate) mod tools;

// 4. rpc
pub(crate) mod listen;
pub(crate) mod mcp;
pub mod modern;

// 5. transport
pub mod app;
pub(crate) mod callbacks;
pub(crate) mod device_page;
pub mod stream;
