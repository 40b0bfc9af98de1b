//! `cyfr login` against a fake RFC 8628 + OIDC provider on loopback (`CYFR_OIDC_ISSUER`):
//! the real server discovers it, runs its device flow through the router's outbound HTTP,
//! signs the provider's user in with only its grants; then `whoami`, `logout`, `audit`.

use crate::support::*;
use serde_json::{json, Value as Json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) const CLIENT_SECRET: &str = "e2e-oidc-client-secret-0123456789";
const DEVICE_CODE: &str = "e2e-provider-device-code-0123456789";
const ACCESS_TOKEN: &str = "e2e-provider-access-token-0123456789";

/// A fake OIDC issuer with a device authorization endpoint. Its token endpoint answers
/// `authorization_pending`, then `slow_down`, then a token.
pub(crate) struct Provider {
    pub(crate) issuer: String,
    port: u16,
    /// Every request line and body it got.
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Provider {
    pub(crate) fn start() -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let issuer = format!("http://127.0.0.1:{port}");
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(AtomicUsize::new(0));
        let (seen2, stop2, iss) = (seen.clone(), stop.clone(), issuer.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                serve(conn, &iss, &seen2, &polls);
            }
        });
        Provider {
            issuer,
            port,
            seen,
            stop,
        }
    }

    /// The server's environment that configures this provider.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CYFR_OIDC_ISSUER", self.issuer.clone()),
            ("CYFR_OIDC_CLIENT_ID", "cyfr-cli".into()),
            ("CYFR_OIDC_CLIENT_SECRET", CLIENT_SECRET.into()),
        ]
    }

    /// The user `sub` cyfr gives the provider's user.
    pub(crate) fn sub(&self) -> String {
        format!("oidc:{}#alice-1", self.issuer)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, issuer: &str, seen: &Mutex<Vec<String>>, polls: &AtomicUsize) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut len = 0usize;
    let mut chunked = false;
    let mut auth = String::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        if lower.starts_with("authorization:") {
            auth = h[14..].trim().to_string();
        }
    }
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    // The router's outbound client may send the body in chunks.
    while chunked {
        let mut size = String::new();
        if reader.read_line(&mut size).unwrap_or(0) == 0 {
            break;
        }
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        let mut chunk = vec![0; n + 2];
        let _ = reader.read_exact(&mut chunk);
        body.extend_from_slice(&chunk[..n]);
        chunked = n > 0;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    seen.lock().unwrap().push(format!("{} {body}", line.trim()));
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, answer) = match path {
        "/.well-known/openid-configuration" => (
            200,
            json!({ "issuer": issuer, "device_authorization_endpoint": format!("{issuer}/device"),
                "token_endpoint": format!("{issuer}/token"), "userinfo_endpoint": format!("{issuer}/userinfo") }),
        ),
        "/device" => (
            200,
            json!({ "device_code": DEVICE_CODE, "user_code": "WDJB-MJHT",
                "verification_uri": format!("{issuer}/activate"), "expires_in": 600, "interval": 5 }),
        ),
        "/token" if body.contains(DEVICE_CODE) && body.contains(CLIENT_SECRET) => {
            match polls.fetch_add(1, Ordering::SeqCst) {
                0 => (400, json!({ "error": "authorization_pending" })),
                1 => (400, json!({ "error": "slow_down" })),
                _ => (
                    200,
                    json!({ "access_token": ACCESS_TOKEN, "token_type": "Bearer" }),
                ),
            }
        }
        "/userinfo" if auth == format!("Bearer {ACCESS_TOKEN}") => (
            200,
            json!({ "sub": "alice-1", "email": "alice@example.com", "email_verified": true, "name": "Alice" }),
        ),
        _ => (401, json!({ "error": "invalid_request" })),
    };
    let text = answer.to_string();
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
}

/// Runs `cyfr ARGS` with `HOME` = `home` and the server's URL; ok, stdout, stderr.
pub(crate) fn cli(home: &TempDir, url: &str, args: &[&str]) -> (bool, String, String) {
    let out = cyfr()
        .args(args)
        .env("HOME", &home.0)
        .env("CYFR_URL", url)
        .env_remove("CYFR_API_KEY")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn assert_no_provider_secret(text: &str, what: &str) {
    for s in [CLIENT_SECRET, DEVICE_CODE, ACCESS_TOKEN] {
        assert!(!text.contains(s), "{s} leaked into {what}");
    }
}

#[test]
fn cyfr_login_runs_the_providers_device_flow_and_the_user_holds_only_its_grants() {
    let p = Provider::start();
    let env = p.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start_env(&[], &env);
    let home = TempDir::new("login-home");

    let (ok, out, err) = cli(&home, &s.url, &["login"]);
    assert!(ok, "login: {out} {err}");
    assert!(
        err.contains("WDJB-MJHT") && err.contains(&format!("{}/activate", p.issuer)),
        "the provider's code and URL are printed: {err}"
    );
    assert!(out.contains("Logged in as alice@example.com"), "{out}");
    let seen = p.seen();
    assert_eq!(
        seen.iter().filter(|l| l.starts_with("POST /token")).count(),
        3,
        "pending, slow_down, token: {seen:?}"
    );
    // The session is stored 0600; nothing of the provider's is.
    let path = home.0.join(".cyfr/config.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    assert!(yaml.contains("session_id"), "{yaml}");
    assert_no_provider_secret(&yaml, "config.yaml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let (ok, out, err) = cli(&home, &s.url, &["whoami"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&p.sub()) && out.contains("(none)"),
        "never admin by default: {out}"
    );
    let (ok, _, err) = cli(
        &home,
        &s.url,
        &["key", "create", "--name", "mine", "--type", "secret"],
    );
    assert!(!ok && err.contains("-33004"), "{err}");
    let (ok, _, err) = cli(&home, &s.url, &["secret", "get", "ANY"]);
    assert!(!ok && err.contains("-33004"), "{err}");
    s.ok(
        &s.admin,
        "permission",
        json!({ "action": "set", "subject": p.sub(), "permissions": ["audit.list"] }),
    );
    let (ok, out, _) = cli(&home, &s.url, &["whoami", "--json"]);
    let who: Json = serde_json::from_str(&out).unwrap();
    assert!(ok && who["permissions"] == json!(["audit.list"]), "{who}");
    let (ok, out, err) = cli(&home, &s.url, &["audit", "list"]);
    assert!(ok && out.contains("session.whoami"), "{out} {err}");

    let sid = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("session_id: "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let (ok, out, err) = cli(&home, &s.url, &["logout"]);
    assert!(ok && out.contains("Logged out"), "{out} {err}");
    let yaml = std::fs::read_to_string(&path).unwrap();
    assert!(!yaml.contains("session_id"), "{yaml}");
    let (ok, _, err) = cli(&home, &s.url, &["whoami"]);
    assert!(!ok, "{err}");
    // Ended on the server too: the old id is refused on the next request.
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "key", "arguments": { "action": "list" } } })
    .to_string();
    let (status, _, r) = s.post(
        &[
            ("mcp-session-id", &sid),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        &body,
    );
    assert_eq!((status, code(&r)), (404, -33302), "{r}");

    let log = std::fs::read_to_string(s.data.0.join("server.log")).unwrap_or_default();
    assert_no_provider_secret(&log, "the server's log");
    let export = s.ok(
        &s.admin,
        "audit",
        json!({ "action": "export", "format": "json" }),
    );
    assert_no_provider_secret(&export.to_string(), "the audit export");
}

#[test]
fn cyfr_login_with_cyfrs_own_page_is_approved_by_cyfr_session_approve_then_audit_commands() {
    let s = Server::start();
    let home = TempDir::new("login-own-home");
    let mut login = cyfr()
        .args(["login", "--provider", "cyfr"])
        .env("HOME", &home.0)
        .env("CYFR_URL", &s.url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(login.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("/auth/device"), "{line}");
    let user_code = line.trim().rsplit(' ').next().unwrap().to_string();
    // A non-admin cannot approve it; the admin can.
    let app = s.key("app", "secret", &["execution"], json!({}));
    let approve = |key: &str| {
        cyfr()
            .args([
                "session",
                "approve",
                &user_code,
                "--user",
                "dev",
                "--email",
                "dev@example.com",
            ])
            .env("CYFR_URL", &s.url)
            .env("CYFR_API_KEY", key)
            .env("HOME", &home.0)
            .output()
            .unwrap()
    };
    let refused = approve(&app);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("-33004"));
    let ok = approve(&s.admin);
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains(&format!("Approved {user_code} for dev")));
    let out = login.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Logged in as dev@example.com"),
        "{text}"
    );
    let (ok, out, err) = cli(&home, &s.url, &["whoami", "--json"]);
    let who: Json = serde_json::from_str(&out).unwrap_or(Json::Null);
    assert!(
        ok && who["user_id"] == "dev" && who["permissions"] == json!([]),
        "{out} {err}"
    );

    // The audit commands, as the admin.
    let admin = |args: &[&str]| {
        let o = cyfr()
            .args(args)
            .env("CYFR_URL", &s.url)
            .env("CYFR_API_KEY", &s.admin)
            .env("HOME", &home.0)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (ok, out) = admin(&["audit", "list", "--tool", "session"]);
    assert!(
        ok && out.contains("session.approve") && out.contains("-33004"),
        "{out}"
    );
    assert!(!out.contains("key.create"), "filtered by tool: {out}");
    let (ok, out) = admin(&["audit", "list", "--json"]);
    let listed: Json = serde_json::from_str(&out).unwrap();
    assert!(ok && listed["count"].as_u64().unwrap() > 3, "{listed}");
    let (ok, out) = admin(&["audit", "export", "--format", "csv"]);
    assert!(ok && out.lines().next().unwrap().contains("seq"), "{out}");
    assert!(out.contains("session,approve"), "{out}");
    let (ok, out) = admin(&["audit", "verify"]);
    assert!(ok && out.contains("Audit chain valid"), "{out}");
    let r = s.ok(&app, "execution", json!({"action": "run", "reference": {"registry": register_json_transform(&s)}, "input": {"data": [1]}, "type": "reagent"}));
    let id = r["execution_id"].as_str().unwrap().to_string();
    let (ok, out) = admin(&["audit", "show", &id]);
    assert!(
        ok && out.contains(&id) && out.contains("completed"),
        "{out}"
    );
}
