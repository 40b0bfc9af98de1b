//! `cyfr`: run a cyfr server (`init`, `up`) and talk to one (`key`, `register`, `run`, ...).
//! Every command except `init`, `up`, `build` and `context` speaks MCP to `/mcp` like any
//! other app. `--url`, `--key`, `--context` and `--json` go anywhere on the line.

mod catalog;
mod client;
mod compile;
mod contexts;
mod edge;
mod key;
mod login;
mod policy;
mod run;
mod secret;
mod server;

use anyhow::Result;
use clap::{Parser, Subcommand};
use client::Client;
use serde_json::{json, Value as Json};
use std::path::PathBuf;

/// Where `cyfr` looks for a server when nothing else says.
const DEFAULT_URL: &str = "http://127.0.0.1:4000";

#[derive(Parser)]
#[command(
    name = "cyfr",
    version,
    about = "A secure MCP backend that runs sandboxed WebAssembly components"
)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Server URL, with or without /mcp (else CYFR_URL, the context's, http://127.0.0.1:4000).
    #[arg(long, global = true)]
    url: Option<String>,
    /// API key (else CYFR_API_KEY, or the context's).
    #[arg(long, global = true)]
    key: Option<String>,
    /// The context of ~/.cyfr/config.yaml to use (else its current one).
    #[arg(long, global = true)]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// Where the server is, for client commands: flag > environment > context > default.
#[derive(Clone)]
pub struct Remote {
    url: Option<String>,
    key: Option<String>,
    context: Option<String>,
}

impl Remote {
    /// A client for the server these settings name.
    pub fn client(&self) -> Result<Client> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let ctx = contexts::load()?
            .current(self.context.as_deref())?
            .map(|(_, c)| c)
            .unwrap_or_default();
        // A context named on the line outranks the environment; the current one does not.
        let url = match (&self.url, &self.context) {
            (Some(u), _) => Some(u.clone()),
            (None, Some(_)) => ctx.url.clone().or_else(|| env("CYFR_URL")),
            (None, None) => env("CYFR_URL").or_else(|| ctx.url.clone()),
        }
        .unwrap_or_else(|| DEFAULT_URL.to_string());
        // The context's key goes only to the context's own server, never to another URL.
        let ctx_key = ctx
            .api_key
            .filter(|_| ctx.url.as_deref() == Some(url.as_str()));
        let key = match &self.context {
            Some(_) => self.key.clone().or(ctx_key).or_else(|| env("CYFR_API_KEY")),
            None => self.key.clone().or_else(|| env("CYFR_API_KEY")).or(ctx_key),
        };
        // The stored login session, like the key, goes only to its context's own server.
        let session = ctx
            .session_id
            .filter(|_| ctx.url.as_deref() == Some(url.as_str()));
        Ok(Client::new(&url, key)?.with_session(session))
    }

    /// The URL these settings name, and the context a login is saved in (the one named on
    /// the line, else the current one, else `local`).
    pub fn target(&self) -> Result<(String, String)> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let all = contexts::load()?;
        let found = all.current(self.context.as_deref())?;
        let name = found
            .as_ref()
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| "local".into());
        let ctx_url = found.and_then(|(_, c)| c.url);
        let url = match (&self.url, &self.context) {
            (Some(u), _) => Some(u.clone()),
            (None, Some(_)) => ctx_url.or_else(|| env("CYFR_URL")),
            (None, None) => env("CYFR_URL").or(ctx_url),
        }
        .unwrap_or_else(|| DEFAULT_URL.to_string());
        Ok((name, url))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create the data directory, the server's secrets and the first admin key.
    Init {
        /// Data directory.
        #[arg(long, env = "CYFR_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
        /// For an edge deployment (Workers, Fermyon Cloud, SpinKube, `spin up`): print the
        /// master key, the host token key, the first admin key and the exact commands that
        /// set them there, and write nothing (no data directory).
        #[arg(long)]
        edge: bool,
    },
    /// Serve /mcp: the embedded router.wasm with embedded libsql, running components locally.
    Up(server::UpArgs),
    /// Run components for remote routers (`cyfr up --host URL#KEY`).
    Host(server::HostArgs),
    /// Manage API keys.
    Key {
        #[command(subcommand)]
        action: key::KeyAction,
    },
    /// Register a component directory (building it first when its wasm is missing or stale).
    Register(catalog::RegisterArgs),
    /// Run a component and print its result; or list runs, show logs, cancel one.
    Run(run::RunArgs),
    /// Find components by name or description.
    Search(catalog::SearchArgs),
    /// Show a component: `cyfr inspect [type] REF`.
    Inspect(catalog::InspectArgs),
    /// Search and inspect the registry.
    Component {
        #[command(subcommand)]
        action: catalog::ComponentAction,
    },
    /// Read and set host policies.
    Policy {
        #[command(subcommand)]
        action: policy::PolicyAction,
    },
    /// Read and set a component's config overrides.
    Config {
        #[command(subcommand)]
        action: policy::ConfigAction,
    },
    /// Read cyfr's guides and a component's README.
    Guide {
        #[command(subcommand)]
        action: catalog::GuideAction,
    },
    /// Store, grant and inspect secrets (values never come back, only masks).
    Secret {
        #[command(subcommand)]
        action: SecretAction,
    },
    /// Named servers in ~/.cyfr/config.yaml.
    Context {
        #[command(subcommand)]
        action: ContextAction,
    },
    /// Call any tool: `cyfr call policy '{"action":"list"}'`.
    Call {
        /// The tool's name.
        tool: String,
        /// Its arguments, a JSON object.
        #[arg(default_value = "{}")]
        arguments: String,
    },
    /// Sign in with the device flow (the server's provider, or cyfr's own page) and keep
    /// the session in ~/.cyfr/config.yaml.
    Login(login::LoginArgs),
    /// Who the current credentials sign in as, with their effective permissions.
    Whoami,
    /// End the stored login session on the server and forget it here.
    Logout,
    /// Login sessions: approve a pending user code of cyfr's own page (admin).
    Session {
        #[command(subcommand)]
        action: login::SessionAction,
    },
    /// The audit log: list, export, show a run, verify the hash chain.
    Audit {
        #[command(subcommand)]
        action: login::AuditAction,
    },
    /// The server's status.
    Status,
    /// This CLI's version (CYFR's `cyfr version`; also `--version`).
    Version,
    /// Seal a secret to a session's public key (libsodium sealed box), on this machine.
    Encrypt {
        /// The session key id (from get_encryption_instructions or mcp+session://encryption/pubkey).
        #[arg(long)]
        kid: String,
        /// The session's base64 public key.
        #[arg(long)]
        public_key: String,
        /// The secret; read from stdin when omitted, so it stays out of shell history.
        value: Option<String>,
    },
    /// Compile a component directory's src/ into {type}.wasm.
    Build {
        /// The component directory (holding cyfr-manifest.json and src/).
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ContextAction {
    /// List the contexts; the current one is marked.
    List,
    /// Make NAME the current context.
    Set { name: String },
    /// Add (or replace) context NAME at URL, optionally with an API key.
    Add {
        name: String,
        url: String,
        /// Keep this API key with the context (the file is 0600).
        #[arg(long = "api-key")]
        api_key: Option<String>,
        /// Make it the current context too.
        #[arg(long)]
        current: bool,
    },
}

#[derive(Subcommand)]
enum SecretAction {
    /// `NAME=VALUE`, or `NAME` alone to read the value from stdin.
    Set {
        assignment: String,
        /// org (shared, default) or user (your own key).
        #[arg(long, default_value = "org")]
        scope: String,
        /// Expire after this long, e.g. 30d, 12h.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Show a secret masked, with its length and fingerprint.
    Get {
        name: String,
        #[arg(long, default_value = "org")]
        scope: String,
    },
    /// List secrets (masked).
    List {
        #[arg(long)]
        scope: Option<String>,
    },
    /// Delete a secret.
    Delete {
        name: String,
        #[arg(long, default_value = "org")]
        scope: String,
    },
    /// Delete all of your own (user-scope) secrets.
    Clear,
    /// Let a component read a secret.
    /// `[TYPE] REF NAME`, e.g. `c:local.claude:0.1.0 API_KEY` or `catalyst local.claude API_KEY`.
    Grant {
        #[arg(num_args = 2..=3, value_name = "[TYPE] REF NAME", required = true)]
        args: Vec<String>,
        /// Always use the shared secret, never a caller's own key.
        #[arg(long)]
        no_user_keys: bool,
    },
    /// Take a grant away.
    Revoke {
        #[arg(num_args = 2..=3, value_name = "[TYPE] REF NAME", required = true)]
        args: Vec<String>,
    },
    /// Whether a component may read a secret.
    CanAccess {
        #[arg(num_args = 2..=3, value_name = "[TYPE] REF NAME", required = true)]
        args: Vec<String>,
    },
    /// Store every environment variable `PREFIX<NAME>` as secret `<name>` (API_KEY_OPENAI → openai).
    Import {
        #[arg(long, default_value = "API_KEY_")]
        prefix: String,
        #[arg(long, default_value = "user")]
        scope: String,
    },
    /// Rotate the master key of a local data directory (rewraps data and session keys only; safe to re-run).
    RotateMaster {
        #[arg(long, env = "CYFR_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
    },
}

/// mimalloc rather than glibc malloc: the server allocates on every request from two runtime
/// threads at once, where glibc's arena locks and consolidation showed as ~8 % of a run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    cyfr_host::quiet_error_backtraces();
    let cli = Cli::parse();
    let json_out = cli.json;
    if let Err(e) = run(cli) {
        if json_out {
            let v = match e.downcast_ref::<client::ServerError>() {
                Some(s) => {
                    json!({ "error": { "code": s.code, "name": s.name, "message": s.message } })
                }
                None => json!({ "error": { "message": format!("{e:#}") } }),
            };
            println!("{v}");
        } else {
            eprintln!("error: {e:#}");
        }
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let out = Output { json: cli.json };
    let remote = Remote {
        url: cli.url,
        key: cli.key,
        context: cli.context,
    };
    match cli.command {
        Command::Init { edge: true, .. } => edge::init(&out),
        Command::Init { data_dir, .. } => server::init(&data_dir, &out),
        Command::Up(args) => server::up(args, &out),
        Command::Host(args) => server::host(args, &out),
        Command::Build { dir } => {
            let wasm = compile::build(&dir)?;
            out.show(&json!({ "wasm": wasm.display().to_string() }), || {
                format!("Built {}", wasm.display())
            });
            Ok(())
        }
        Command::Key { action } => key::run(action, &remote, &out),
        Command::Secret { action } => secret::run(action, &remote, &out),
        Command::Encrypt {
            kid,
            public_key,
            value,
        } => {
            let value = match value {
                Some(v) => zeroize::Zeroizing::new(v),
                None => secret::read_stdin("Secret to seal: ")?,
            };
            let sealed = secret::seal(&public_key, value.as_bytes())?;
            let v = json!({ "ciphertext": sealed, "kid": kid });
            out.show(&v, || v.to_string());
            Ok(())
        }
        Command::Register(a) => catalog::register(a, &remote, &out),
        Command::Run(a) => run::run(a, &remote, &out),
        Command::Search(a) => catalog::search(a, &remote, &out),
        Command::Inspect(a) => catalog::inspect(a, &remote, &out),
        Command::Component { action } => catalog::component(action, &remote, &out),
        Command::Guide { action } => catalog::guide(action, &remote, &out),
        Command::Policy { action } => policy::policy(action, &remote, &out),
        Command::Config { action } => policy::config(action, &remote, &out),
        Command::Context { action } => context(action, &out),
        Command::Login(a) => login::login(a, &remote, &out),
        Command::Whoami => login::whoami(&remote, &out),
        Command::Logout => login::logout(&remote, &out),
        Command::Session { action } => login::session(action, &remote, &out),
        Command::Audit { action } => login::audit(action, &remote, &out),
        Command::Call { tool, arguments } => {
            let args: Json = serde_json::from_str(&arguments)
                .map_err(|e| anyhow::anyhow!("the arguments must be a JSON object: {e}"))?;
            if !args.is_object() {
                anyhow::bail!(
                    "the arguments must be a JSON object, e.g. '{{\"action\": \"list\"}}'"
                );
            }
            let r = remote.client()?.call(&tool, args)?;
            out.show(&r, || pretty(&r));
            Ok(())
        }
        Command::Version => {
            let v = json!({ "version": env!("CARGO_PKG_VERSION") });
            out.show(&v, || format!("cyfr {}", env!("CARGO_PKG_VERSION")));
            Ok(())
        }
        Command::Status => {
            let r = remote
                .client()?
                .call("system", json!({ "action": "status" }))?;
            out.show(&r, || {
                format!(
                    "cyfr {}: {} ({} components, protocol {})",
                    s(&r, "version"),
                    s(&r, "status"),
                    r["components"],
                    s(&r, "protocol_version")
                )
            });
            Ok(())
        }
    }
}

/// `cyfr context …`: the file only, no server.
fn context(action: ContextAction, out: &Output) -> Result<()> {
    let mut all = contexts::load()?;
    match action {
        ContextAction::List => {
            let list: Vec<Json> = all
                .contexts
                .iter()
                .map(|(n, c)| json!({ "name": n, "url": c.url, "current": all.current_context.as_deref() == Some(n.as_str()), "has_key": c.api_key.is_some(), "has_session": c.session_id.is_some() }))
                .collect();
            let v = json!({ "current_context": all.current_context, "contexts": list });
            out.show(&v, || {
                if list.is_empty() {
                    return "No contexts. Add one: cyfr context add NAME URL".into();
                }
                list.iter()
                    .map(|c| {
                        let mark = if c["current"] == true { "*" } else { " " };
                        format!("{mark} {:<16} {}", s(c, "name"), s(c, "url"))
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ContextAction::Set { name } => {
            all.current(Some(&name))?;
            all.current_context = Some(name.clone());
            let path = all.save()?;
            out.show(&json!({ "current_context": name }), || {
                format!("Current context: {name} ({})", path.display())
            });
        }
        ContextAction::Add {
            name,
            url,
            api_key,
            current,
        } => {
            let session_id = all.contexts.get(&name).and_then(|c| c.session_id.clone());
            all.contexts.insert(
                name.clone(),
                contexts::Context {
                    url: Some(url.clone()),
                    api_key,
                    session_id,
                },
            );
            if current || all.current_context.is_none() {
                all.current_context = Some(name.clone());
            }
            let path = all.save()?;
            out.show(
                &json!({ "name": name, "url": url, "current_context": all.current_context }),
                || format!("Added context {name} ({url}) to {}", path.display()),
            );
        }
    }
    Ok(())
}

/// A field of `v` as text ("" when absent or not a string).
pub(crate) fn s<'a>(v: &'a Json, field: &str) -> &'a str {
    v.get(field).and_then(Json::as_str).unwrap_or("")
}

/// Indented JSON, for answers that have no shorter human form.
pub(crate) fn pretty(v: &Json) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// A JSON list of strings as `a,b,c`.
pub(crate) fn joined(v: &Json) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    x.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// Human text by default, JSON with `--json`.
pub struct Output {
    json: bool,
}

impl Output {
    /// Prints `v` as JSON, or the text `human` makes.
    pub fn show(&self, v: &Json, human: impl FnOnce() -> String) {
        if self.json {
            println!("{v}");
        } else {
            println!("{}", human());
        }
    }
}
