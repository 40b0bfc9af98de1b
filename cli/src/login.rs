//! `cyfr login`, `whoami`, `logout`, `session approve` and `audit …`: signing in with the
//! device flow (the session kept in `~/.cyfr/config.yaml`, used by every later command when
//! no key is given) and reading the audit log.

use crate::contexts;
use crate::{pretty, s, Output, Remote};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value as Json};
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Options of `cyfr login`.
#[derive(Args)]
pub struct LoginArgs {
    /// Sign in with GitHub.
    #[arg(long, conflicts_with_all = ["google", "provider"])]
    github: bool,
    /// Sign in with Google.
    #[arg(long, conflicts_with = "provider")]
    google: bool,
    /// The provider: github, google, oidc, or cyfr (the server's own page). Default: the
    /// server's configured provider.
    #[arg(long)]
    provider: Option<String>,
}

/// `cyfr session …`.
#[derive(Subcommand)]
pub enum SessionAction {
    /// Approve (admin) a pending user code shown by cyfr's own verification page.
    Approve {
        /// The code the person was shown (ABCD-EFGH).
        code: String,
        /// The user id the session signs in as.
        #[arg(long)]
        user: String,
        /// The user's email.
        #[arg(long)]
        email: Option<String>,
        /// Deny the code instead.
        #[arg(long)]
        deny: bool,
    },
}

/// `cyfr audit …`.
#[derive(Subcommand)]
pub enum AuditAction {
    /// List audit rows (newest filters first), optionally filtered.
    List {
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        tool: Option<String>,
        #[arg(long)]
        action: Option<String>,
        /// ok, error or refused.
        #[arg(long)]
        outcome: Option<String>,
        /// A date, RFC 3339 time or Unix ms.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Export the rows as json or csv (printed as is).
    Export {
        #[arg(long, default_value = "json")]
        format: String,
    },
    /// Show one run's audit record.
    Show {
        /// The run (exec_…).
        execution_id: String,
    },
    /// Check the hash chain; exits non-zero and names the first bad row when it is broken.
    Verify,
}

/// `cyfr login`: device-init, the code and URL printed (a browser opened on a terminal),
/// device-poll at `interval` until complete, the session saved in the context.
pub fn login(a: LoginArgs, remote: &Remote, out: &Output) -> Result<()> {
    let provider = if a.github {
        Some("github".to_string())
    } else if a.google {
        Some("google".to_string())
    } else {
        a.provider
    };
    let (context, url) = remote.target()?;
    let client = crate::client::Client::new(&url, None)?;
    let mut args = json!({ "action": "device-init" });
    if let Some(p) = &provider {
        args["provider"] = json!(p);
    }
    let init = client.call_anonymous("session", args)?;
    let code = s(&init, "device_code").to_string();
    let uri = s(&init, "verification_uri").to_string();
    let user_code = s(&init, "user_code");
    // The verification page of cyfr's own flow is a path on the server.
    let uri = if uri.starts_with('/') {
        format!("{}{uri}", client.url().trim_end_matches("/mcp"))
    } else {
        uri
    };
    let terminal = std::io::stdout().is_terminal() && !out.json;
    eprintln!("Open {uri} and enter code: {user_code}");
    if terminal {
        open_browser(
            init.get("verification_uri_complete")
                .and_then(Json::as_str)
                .unwrap_or(&uri),
        );
    }
    let mut interval = init["interval"].as_u64().unwrap_or(5).max(5);
    let spinner = ['|', '/', '-', '\\'];
    let mut tick = 0usize;
    loop {
        // Sleep the interval in small steps so the spinner turns.
        for _ in 0..(interval * 4) {
            if terminal {
                eprint!("\r{} Waiting for authorization…", spinner[tick % 4]);
                let _ = std::io::stderr().flush();
                tick += 1;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let mut poll = json!({ "action": "device-poll", "device_code": code });
        if let Some(p) = &provider {
            poll["provider"] = json!(p);
        }
        let r = client.call_anonymous("session", poll)?;
        match s(&r, "status") {
            "pending" => {
                if r["slow_down"] == true {
                    interval += 5;
                }
            }
            "complete" => {
                if terminal {
                    eprintln!();
                }
                let sid = s(&r, "session_id").to_string();
                let mut all = contexts::load()?;
                let c = all.contexts.entry(context.clone()).or_default();
                c.url = Some(url.clone());
                c.session_id = Some(sid);
                if all.current_context.is_none() {
                    all.current_context = Some(context.clone());
                }
                let path = all.save()?;
                let user = &r["user"];
                let who = user["email"]
                    .as_str()
                    .or(user["id"].as_str())
                    .unwrap_or("")
                    .to_string();
                out.show(
                    &json!({ "status": "complete", "user": user, "context": context }),
                    || format!("Logged in as {who} (context {context}, {})", path.display()),
                );
                return Ok(());
            }
            "denied" => bail!("the sign-in was denied"),
            "expired" => bail!("the code expired before it was approved; run `cyfr login` again"),
            other => bail!("unexpected poll status `{other}`"),
        }
    }
}

/// Opens `url` with `$BROWSER` or xdg-open, when one exists; never waits for it.
fn open_browser(url: &str) {
    let cmd = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "xdg-open".into());
    let _ = std::process::Command::new(cmd)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// `cyfr whoami`.
pub fn whoami(remote: &Remote, out: &Output) -> Result<()> {
    let r = remote
        .client()?
        .call("session", json!({ "action": "whoami" }))?;
    out.show(&r, || {
        let perms = crate::joined(&r["permissions"]);
        format!(
            "{}{}\npermissions: {}",
            s(&r, "user_id"),
            r["email"]
                .as_str()
                .map(|e| format!(" <{e}>"))
                .unwrap_or_default(),
            if perms.is_empty() { "(none)" } else { &perms }
        )
    });
    Ok(())
}

/// `cyfr logout`: forgets the session here first, then ends it on the server (an error
/// there still leaves this machine signed out).
pub fn logout(remote: &Remote, out: &Output) -> Result<()> {
    let client = remote.client()?;
    let (context, _) = remote.target()?;
    let mut all = contexts::load()?;
    if let Some(c) = all.contexts.get_mut(&context) {
        if c.session_id.take().is_some() {
            all.save()?;
        }
    }
    let ended = client
        .call("session", json!({ "action": "logout" }))
        .map(|r| r["ended"] == true)
        .unwrap_or(false);
    out.show(&json!({ "logged_out": true, "ended": ended }), || {
        "Logged out".to_string()
    });
    Ok(())
}

/// `cyfr session approve`.
pub fn session(action: SessionAction, remote: &Remote, out: &Output) -> Result<()> {
    let SessionAction::Approve {
        code,
        user,
        email,
        deny,
    } = action;
    let r = remote.client()?.call(
        "session",
        json!({ "action": "approve", "user_code": code, "user": user, "email": email, "deny": deny }),
    )?;
    out.show(&r, || {
        if r["approved"] == true {
            format!("Approved {code} for {user}")
        } else {
            format!("Denied {code}")
        }
    });
    Ok(())
}

/// `cyfr audit …`.
pub fn audit(action: AuditAction, remote: &Remote, out: &Output) -> Result<()> {
    let client = remote.client()?;
    match action {
        AuditAction::List {
            actor,
            tool,
            action,
            outcome,
            since,
            until,
            limit,
        } => {
            let filters = json!({ "actor": actor, "tool": tool, "action": action, "outcome": outcome, "since": since, "until": until, "limit": limit });
            let r = client.call("audit", json!({ "action": "list", "filters": filters }))?;
            out.show(&r, || {
                let rows: Vec<String> = r["events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        let what = match (e["tool"].as_str(), e["action"].as_str()) {
                            (Some(t), Some(a)) => format!("{t}.{a}"),
                            _ => s(e, "event").to_string(),
                        };
                        let code = e["error_code"]
                            .as_i64()
                            .map(|c| format!(" {c}"))
                            .unwrap_or_default();
                        format!(
                            "{:>6} {} {:<24} {:<28} {}{code}",
                            e["seq"],
                            s(e, "timestamp"),
                            s(e, "actor"),
                            what,
                            s(e, "outcome")
                        )
                    })
                    .collect();
                if rows.is_empty() {
                    "No audit rows.".into()
                } else {
                    rows.join("\n")
                }
            });
        }
        AuditAction::Export { format } => {
            let r = client.call("audit", json!({ "action": "export", "format": format }))?;
            out.show(&r, || s(&r, "data").to_string());
        }
        AuditAction::Show { execution_id } => {
            let r = client.call(
                "audit",
                json!({ "action": "show", "execution_id": execution_id }),
            )?;
            out.show(&r, || pretty(&r));
        }
        AuditAction::Verify => {
            let r = client.call("audit", json!({ "action": "verify" }))?;
            out.show(&r, || {
                if r["valid"] == true {
                    format!(
                        "Audit chain valid: {} rows ({} sealed, {} not yet sealed)",
                        r["rows"], r["sealed"], r["unsealed"]
                    )
                } else {
                    format!(
                        "Audit chain BROKEN at row {}: {} ({})",
                        r["problem"]["seq"],
                        s(&r["problem"], "kind"),
                        s(&r["problem"], "message")
                    )
                }
            });
            if r["valid"] != true {
                std::process::exit(2);
            }
        }
    }
    Ok(())
}
