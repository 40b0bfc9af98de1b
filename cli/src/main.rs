//! `cyfr`: run a cyfr server (`init`, `up`) and talk to one (`key`, `register`, `run`, ...).
//! Every command except `init`, `up` and `build` speaks MCP to `/mcp` like any other app.

mod client;
mod compile;
mod secret;
mod server;

use anyhow::{Context, Result};
use base64::Engine;
use clap::{Args, Parser, Subcommand};
use client::Client;
use serde_json::{json, Value as Json};
use std::path::PathBuf;

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
    #[command(subcommand)]
    command: Command,
}

/// Where the server is, for client commands.
#[derive(Args, Clone)]
struct Remote {
    /// Server URL (with or without /mcp).
    #[arg(long, env = "CYFR_URL", default_value = "http://127.0.0.1:4000")]
    url: String,
    /// API key to authenticate with.
    #[arg(long, env = "CYFR_API_KEY", hide_env_values = true)]
    key: Option<String>,
}

impl Remote {
    fn client(&self) -> Result<Client> {
        Client::new(&self.url, self.key.clone())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create the data directory, the server's secrets and the first admin key.
    Init {
        /// Data directory.
        #[arg(long, env = "CYFR_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
    },
    /// Serve /mcp: the embedded router.wasm with embedded libsql, running components locally.
    Up(server::UpArgs),
    /// Run components for remote routers (`cyfr up --host URL#KEY`).
    Host(server::HostArgs),
    /// Manage API keys.
    Key {
        #[command(subcommand)]
        action: KeyAction,
        #[command(flatten)]
        remote: Remote,
    },
    /// Register a component directory (building it first when its wasm is missing or stale).
    Register {
        /// e.g. components/reagents/cyfr/json-transform/0.1.0/
        dir: PathBuf,
        /// Replace an already registered version that has different bytes.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Run a component and print its result.
    Run {
        /// Reference, e.g. reagent:cyfr.json-transform:0.1.0 or r:cyfr.json-transform
        reference: String,
        /// JSON input.
        #[arg(long, default_value = "{}")]
        input: String,
        /// Component type, when the reference omits it.
        #[arg(long = "type")]
        ctype: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Search and inspect the registry.
    Component {
        #[command(subcommand)]
        action: ComponentAction,
        #[command(flatten)]
        remote: Remote,
    },
    /// Read and set host policies.
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
        #[command(flatten)]
        remote: Remote,
    },
    /// Store, grant and inspect secrets (values never come back, only masks).
    Secret {
        #[command(subcommand)]
        action: SecretAction,
        #[command(flatten)]
        remote: Remote,
    },
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
enum KeyAction {
    /// Create a key; the raw key is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// public, secret or admin.
        #[arg(long = "type", default_value = "secret")]
        key_type: String,
        /// Comma-separated scopes, e.g. execution,component.search
        #[arg(long)]
        scope: Option<String>,
        /// e.g. 100/1m
        #[arg(long)]
        rate_limit: Option<String>,
        /// Comma-separated IPs and CIDRs.
        #[arg(long)]
        ip_allowlist: Option<String>,
    },
    /// Show one key (never its raw value).
    Get {
        #[arg(long)]
        name: String,
    },
    /// List keys by name, type, scope and prefix.
    List {
        #[arg(long)]
        include_revoked: bool,
    },
    /// Replace a key with a new one; the old one stops working at once.
    Rotate {
        #[arg(long)]
        name: String,
    },
    /// Revoke a key; effective on the next request.
    Revoke {
        #[arg(long)]
        name: String,
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
    Grant {
        reference: String,
        name: String,
        /// Always use the shared secret, never a caller's own key.
        #[arg(long)]
        no_user_keys: bool,
    },
    /// Take a grant away.
    Revoke { reference: String, name: String },
    /// Whether a component may read a secret.
    CanAccess { reference: String, name: String },
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

#[derive(Subcommand)]
enum ComponentAction {
    /// Find components by id or description.
    Search {
        query: Option<String>,
        #[arg(long = "type")]
        ctype: Option<String>,
    },
    /// Show a component's manifest, versions, digest and policy.
    Inspect { reference: String },
}

#[derive(Subcommand)]
enum PolicyAction {
    /// Set one field: `cyfr policy set c:local.claude:0.1.0 timeout '"60s"'`.
    Set {
        reference: String,
        field: String,
        value: String,
    },
    /// Show a component's policy.
    #[command(alias = "show")]
    Get { reference: String },
    /// List stored policies.
    List,
    /// Remove a stored policy (back to defaults).
    Delete { reference: String },
}

fn main() {
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
    match cli.command {
        Command::Init { data_dir } => server::init(&data_dir, &out),
        Command::Up(args) => server::up(args, &out),
        Command::Host(args) => server::host(args, &out),
        Command::Build { dir } => {
            let wasm = compile::build(&dir)?;
            out.show(&json!({ "wasm": wasm.display().to_string() }), || {
                format!("Built {}", wasm.display())
            });
            Ok(())
        }
        Command::Key { action, remote } => key(action, &remote, &out),
        Command::Secret { action, remote } => secret::run(action, &remote, &out),
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
        Command::Register {
            dir,
            replace,
            remote,
        } => {
            if compile::needs_build(&dir)? {
                compile::build(&dir)?;
            }
            let ctype = compile::manifest_type(&dir)?;
            let manifest = std::fs::read_to_string(dir.join("cyfr-manifest.json"))?;
            let wasm = std::fs::read(dir.join(format!("{ctype}.wasm")))
                .context("reading the component's wasm")?;
            let r = remote.client()?.call(
                "component",
                json!({ "action": "register", "manifest": manifest, "wasm": base64::engine::general_purpose::STANDARD.encode(wasm), "replace": replace }),
            )?;
            out.show(&r, || {
                format!("Registered {} ({})", s(&r, "reference"), s(&r, "digest"))
            });
            Ok(())
        }
        Command::Run {
            reference,
            input,
            ctype,
            remote,
        } => {
            let input: Json = serde_json::from_str(&input).context("--input must be JSON")?;
            let mut args = json!({ "action": "run", "reference": reference, "input": input });
            if let Some(t) = ctype {
                args["type"] = json!(t);
            }
            let r = remote.client()?.call("execution", args)?;
            out.show(&r, || {
                format!(
                    "{}\n{} {} in {} ms ({})",
                    serde_json::to_string_pretty(&r["result"]).unwrap_or_default(),
                    s(&r, "reference"),
                    s(&r, "status"),
                    r["duration_ms"],
                    s(&r, "execution_id")
                )
            });
            Ok(())
        }
        Command::Component { action, remote } => {
            let c = remote.client()?;
            match action {
                ComponentAction::Search { query, ctype } => {
                    let r = c.call("component", json!({ "action": "search", "query": query.unwrap_or_default(), "type": ctype }))?;
                    out.show(&r, || {
                        let list = r["components"].as_array().cloned().unwrap_or_default();
                        if list.is_empty() {
                            return "No components found.".into();
                        }
                        list.iter()
                            .map(|c| format!("{:<45} {}", s(c, "reference"), s(c, "description")))
                            .collect::<Vec<_>>()
                            .join("\n")
                    });
                }
                ComponentAction::Inspect { reference } => {
                    let r = c.call(
                        "component",
                        json!({ "action": "inspect", "reference": reference }),
                    )?;
                    out.show(&r, || serde_json::to_string_pretty(&r).unwrap_or_default());
                }
            }
            Ok(())
        }
        Command::Policy { action, remote } => {
            let c = remote.client()?;
            let r = match action {
                PolicyAction::Set {
                    reference,
                    field,
                    value,
                } => {
                    // The guide passes JSON ('"60s"', '["a.com"]'); a bare word is taken as a string.
                    let value: Json = serde_json::from_str(&value).unwrap_or(Json::String(value));
                    c.call("policy", json!({ "action": "set", "reference": reference, "field": field, "value": value }))?
                }
                PolicyAction::Get { reference } => {
                    c.call("policy", json!({ "action": "get", "reference": reference }))?
                }
                PolicyAction::List => c.call("policy", json!({ "action": "list" }))?,
                PolicyAction::Delete { reference } => c.call(
                    "policy",
                    json!({ "action": "delete", "reference": reference }),
                )?,
            };
            out.show(&r, || serde_json::to_string_pretty(&r).unwrap_or_default());
            Ok(())
        }
    }
}

fn key(action: KeyAction, remote: &Remote, out: &Output) -> Result<()> {
    let c = &remote.client()?;
    match action {
        KeyAction::Create {
            name,
            key_type,
            scope,
            rate_limit,
            ip_allowlist,
        } => {
            let r = c.call(
                "key",
                json!({ "action": "create", "name": name, "type": key_type, "scope": scope, "rate_limit": rate_limit, "ip_allowlist": ip_allowlist }),
            )?;
            out.show(&r, || created(&r));
        }
        KeyAction::Rotate { name } => {
            let r = c.call("key", json!({ "action": "rotate", "name": name }))?;
            out.show(&r, || created(&r));
        }
        KeyAction::Get { name } => {
            let r = c.call("key", json!({ "action": "get", "name": name }))?;
            out.show(&r, || key_line(&r));
        }
        KeyAction::List { include_revoked } => {
            let r = c.call(
                "key",
                json!({ "action": "list", "include_revoked": include_revoked }),
            )?;
            out.show(&r, || {
                let keys = r["keys"].as_array().cloned().unwrap_or_default();
                if keys.is_empty() {
                    return "No keys.".into();
                }
                keys.iter().map(key_line).collect::<Vec<_>>().join("\n")
            });
        }
        KeyAction::Revoke { name } => {
            let r = c.call("key", json!({ "action": "revoke", "name": name }))?;
            out.show(&r, || {
                format!("Revoked key \"{}\" ({})", s(&r, "name"), s(&r, "prefix"))
            });
        }
    }
    Ok(())
}

fn created(r: &Json) -> String {
    format!(
        "Created {} key \"{}\" (scope: {})\n\n    {}\n\nStore it now: it is shown only this once.",
        s(r, "type"),
        s(r, "name"),
        r["scope"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(Json::as_str)
                .collect::<Vec<_>>()
                .join(","))
            .unwrap_or_default(),
        s(r, "key")
    )
}

fn key_line(k: &Json) -> String {
    let scopes = k["scope"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let revoked = if k["revoked"].as_bool() == Some(true) {
        "  (revoked)"
    } else {
        ""
    };
    format!(
        "{:<20} {:<7} {:<16} {:<30} {}{}",
        s(k, "name"),
        s(k, "type"),
        s(k, "prefix"),
        scopes,
        s(k, "created_at"),
        revoked
    )
}

pub(crate) fn s<'a>(v: &'a Json, field: &str) -> &'a str {
    v.get(field).and_then(Json::as_str).unwrap_or("")
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
