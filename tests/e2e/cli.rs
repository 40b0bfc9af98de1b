//! The `cyfr` command as a user runs it, and the guide's raw HTTP requests.

use crate::support::*;
use serde_json::{json, Value as Json};
use std::process::Command;

fn run_cli(s: &Server, key: &str, args: &[&str]) -> (bool, String, String) {
    let out = cyfr()
        .args(args)
        .env("CYFR_URL", &s.url)
        .env("CYFR_API_KEY", key)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn guide_quickstart_register_key_and_run_through_the_cli() {
    let s = Server::start();
    let dir = workspace().join("components/reagents/cyfr/text-stats/0.1.0");
    let (ok, out, err) = run_cli(&s, &s.admin, &["register", dir.to_str().unwrap()]);
    assert!(ok, "register: {out} {err}");
    assert!(
        out.contains("Registered reagent:cyfr.text-stats:0.1.0"),
        "{out}"
    );

    let (ok, out, err) = run_cli(
        &s,
        &s.admin,
        &[
            "key",
            "create",
            "--name",
            "my-app",
            "--type",
            "secret",
            "--scope",
            "execution",
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let created: Json = serde_json::from_str(&out).unwrap();
    let app_key = created["key"].as_str().unwrap().to_string();
    assert!(app_key.starts_with("cyfr_sk_"));

    let (ok, out, err) = run_cli(
        &s,
        &app_key,
        &[
            "run",
            "r:cyfr.text-stats:0.1.0",
            "--input",
            r#"{"text":"Hello world. Hello again!"}"#,
            "--json",
        ],
    );
    assert!(ok, "run: {out} {err}");
    let r: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(r["status"], "completed");
    assert_eq!(r["result"]["words"], 4, "{r}");

    // Human output by default; a refused action exits non-zero with the code.
    let (ok, out, _) = run_cli(&s, &s.admin, &["key", "list"]);
    assert!(
        ok && out.contains("my-app") && out.contains("cyfr_sk_"),
        "{out}"
    );
    assert!(!out.contains(&app_key[12..]), "list printed the raw key");
    let (ok, _, err) = run_cli(&s, &app_key, &["key", "list"]);
    assert!(!ok && err.contains("-33004"), "{err}");
    let (ok, out, _) = run_cli(&s, &s.admin, &["component", "search", "text"]);
    assert!(ok && out.contains("reagent:cyfr.text-stats:0.1.0"), "{out}");
}

#[test]
fn guide_curl_request_runs_a_component() {
    let s = Server::start();
    let jt = register_json_transform(&s);
    let key = s.key(
        "node-backend",
        "secret",
        &["execution", "component.search"],
        json!({}),
    );
    // The exact shape of the guide's curl example, sent by curl.
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "execution", "arguments": { "action": "run", "reference": {"registry": jt}, "input": {"data": [1, 2, 3]}, "type": "reagent" } }
    })
    .to_string();
    let out = Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            &s.url,
            "-H",
            "Content-Type: application/json",
            "-H",
            "MCP-Protocol-Version: 2025-11-25",
        ])
        .args(["-H", &format!("Authorization: Bearer {key}"), "-d", &body])
        .output()
        .expect("curl is installed");
    let r: Json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)));
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    let result: Json = serde_json::from_str(text).unwrap();
    assert_eq!(result["status"], "completed");
    assert_eq!(result["result"]["data"], json!([1, 2, 3]));
}

#[test]
fn spin_toml_names_the_router_that_cyfr_up_serves() {
    let s = Server::start();
    let spin = std::fs::read_to_string(workspace().join("spin.toml")).unwrap();
    let source = spin
        .lines()
        .find_map(|l| l.trim().strip_prefix("source = "))
        .unwrap()
        .trim_matches('"');
    let bytes = std::fs::read(workspace().join(source)).unwrap_or_else(|e| panic!("{source}: {e}"));
    let digest = format!("sha256:{}", sha256_hex(&bytes));
    assert_eq!(s.started["router_digest"], digest);
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn init_refuses_to_overwrite_and_up_requires_init() {
    let dir = TempDir::new("init");
    let data = dir.0.join("data");
    let out = cyfr()
        .args(["init", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cyfr_ak_"), "{text}");
    let out = cyfr()
        .args(["init", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already initialized"));
    let out = cyfr()
        .args(["up", "--data-dir"])
        .arg(dir.0.join("nowhere"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cyfr init"));
}
