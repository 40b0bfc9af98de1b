//! Seed 000's Quick Setup Checklist, run verbatim: every command of it as written, in a
//! fresh directory, `cyfr login` included (against the loopback fake OIDC provider). What
//! the guide leaves to the environment comes from it: `CYFR_PORT=0` (an ephemeral port),
//! `CYFR_URL` (that port), `HOME` (a temporary one), and the provider's variables; an admin
//! (the key `cyfr init` printed) granted the provider's user what the checklist needs,
//! since a device-flow user holds nothing by default.

use crate::login::{assert_no_provider_secret, Provider};
use crate::support::*;
use serde_json::{json, Value as Json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

/// `cyfr up`, killed when dropped.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_quick_setup_checklist_runs_verbatim_login_included() {
    let p = Provider::start();
    let work = TempDir::new("checklist");
    let home = TempDir::new("checklist-home");
    // The guide's included Claude example, where the checklist expects it (with its wasm
    // built, written after the sources so `cyfr register` finds it fresh).
    let dir = work.0.join("components/catalysts/local/claude/0.1.0");
    let src = workspace().join("components/catalysts/local/claude/0.1.0");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    for f in ["cyfr-manifest.json", "README.md"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    for e in std::fs::read_dir(src.join("src")).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), dir.join("src").join(e.file_name())).unwrap();
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(dir.join("catalyst.wasm"), wasm("claude-catalyst")).unwrap();

    let env = p.env();
    let run = |line: &str, url: Option<&str>| -> (bool, String, String) {
        let args = shell_words(line);
        assert_eq!(args[0], "cyfr");
        let mut c = cyfr();
        c.args(&args[1..])
            .current_dir(&work.0)
            .env("HOME", &home.0)
            .env("CYFR_PORT", "0");
        if let Some(u) = url {
            c.env("CYFR_URL", u);
        }
        for (k, v) in &env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // 1. Initialize and start CYFR
    let (ok, out, err) = run("cyfr init", None);
    assert!(ok, "{out} {err}");
    let admin = out
        .split_whitespace()
        .find(|w| w.starts_with("cyfr_ak_"))
        .unwrap()
        .to_string();
    let mut up = cyfr();
    up.arg("up")
        .current_dir(&work.0)
        .env("CYFR_PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in &env {
        up.env(k, v);
    }
    let mut child = up.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _up = Up(child);
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("cyfr up printed {line:?}"))
        .to_string();
    let base = url.as_str();
    let url = Some(base);
    // The admin lets the provider's user do what the checklist does.
    let grant = cyfr()
        .args(["call", "permission"])
        .arg(json!({ "action": "set", "subject": p.sub(), "permissions": ["*"] }).to_string())
        .env("CYFR_URL", base)
        .env("CYFR_API_KEY", &admin)
        .env("HOME", &home.0)
        .output()
        .unwrap();
    assert!(grant.status.success(), "{grant:?}");
    let (ok, out, err) = run("cyfr login", url);
    assert!(ok && out.contains("Logged in as"), "{out} {err}");

    // 2.-5., as the guide writes them.
    for (line, want) in [
        (
            "cyfr register components/catalysts/local/claude/0.1.0/",
            "catalyst:local.claude:0.1.0",
        ),
        (
            "cyfr secret set ANTHROPIC_API_KEY=sk-ant-...",
            "ANTHROPIC_API_KEY",
        ),
        (
            "cyfr secret grant c:local.claude:0.1.0 ANTHROPIC_API_KEY",
            "ANTHROPIC_API_KEY",
        ),
        (
            r#"cyfr policy set c:local.claude:0.1.0 allowed_domains '["api.anthropic.com"]'"#,
            "",
        ),
        (
            r#"cyfr key create --name "my-app" --type secret --scope execution"#,
            "cyfr_sk_",
        ),
    ] {
        let (ok, out, err) = run(line, url);
        assert!(ok && out.contains(want), "{line}: {out} {err}");
        if line.starts_with("cyfr key create") {
            // 6. Use the returned key in your app's Authorization header.
            let key = out
                .split_whitespace()
                .find(|w| w.starts_with("cyfr_sk_"))
                .unwrap();
            let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": { "name": "component", "arguments": { "action": "inspect", "reference": "c:local.claude:0.1.0" } } });
            let r: Json = reqwest::blocking::Client::new()
                .post(base)
                .header("content-type", "application/json")
                .header("mcp-protocol-version", "2025-11-25")
                .header("authorization", format!("Bearer {key}"))
                .json(&body)
                .send()
                .unwrap()
                .json()
                .unwrap();
            // The app's key authenticates, and holds only `execution`.
            assert_eq!(code(&r), -33004, "{r}");
            let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
            let status = reqwest::blocking::Client::new()
                .post(base)
                .header("content-type", "application/json")
                .header("mcp-protocol-version", "2025-11-25")
                .header("authorization", format!("Bearer {key}"))
                .json(&list)
                .send()
                .unwrap()
                .status();
            assert_eq!(status, 200);
        }
    }
    let (ok, out, _) = run("cyfr policy show c:local.claude:0.1.0", url);
    assert!(ok && out.contains("api.anthropic.com"), "{out}");
    let yaml = std::fs::read_to_string(home.0.join(".cyfr/config.yaml")).unwrap();
    assert_no_provider_secret(&yaml, "config.yaml");
}

/// Splits a command line the way a POSIX shell would for these lines: words, with `'…'`
/// and `"…"` quoting.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(ch);
                any = true;
            }
            (None, ' ') => {
                if any || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        words.push(cur);
    }
    words
}
