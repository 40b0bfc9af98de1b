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

/// The router reads the variables spin.toml declares and passes it, and no others.
#[test]
fn spin_toml_declares_and_passes_every_variable_the_router_reads() {
    let spin = std::fs::read_to_string(workspace().join("spin.toml")).unwrap();
    let router = std::fs::read_to_string(workspace().join("core/src/config.rs")).unwrap();
    let list = router
        .split_once("pub const VARIABLES: &[&str] = &[")
        .and_then(|(_, rest)| rest.split_once("];"))
        .unwrap()
        .0;
    let mut read: Vec<&str> = list
        .split(',')
        .map(|v| v.trim().trim_matches('"'))
        .filter(|v| !v.is_empty())
        .collect();
    read.sort();
    let keys_of = |section: &str| {
        let body = spin.split_once(section).unwrap().1;
        let mut keys: Vec<&str> = body
            .lines()
            .take_while(|l| !l.trim_start().starts_with('['))
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
            .filter(|k| !k.is_empty())
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(keys_of("\n[variables]\n"), read, "spin.toml [variables]");
    assert_eq!(
        keys_of("\n[component.cyfr-router.variables]\n"),
        read,
        "spin.toml [component.cyfr-router.variables]"
    );
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

/// `cyfr ARGS` with HOME at `home` and nothing in the environment but what the test says.
fn cli_at(home: &TempDir, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let mut c = cyfr();
    c.args(args).env("HOME", &home.0);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn key_commands_take_flags_anywhere_positional_names_and_repeated_scopes() {
    let s = Server::start();
    let home = TempDir::new("cli-home");
    let at = |args: &[&str]| cli_at(&home, &[], args);
    // CYFR's form: the flags after the action; and before the command group.
    let (ok, out, err) = at(&[
        "key",
        "create",
        "--name",
        "my-app",
        "--type",
        "secret",
        "--scope",
        "execution",
        "--url",
        &s.url,
        "--key",
        &s.admin,
    ]);
    assert!(ok && out.contains("cyfr_sk_"), "{out} {err}");
    let (ok, out, err) = at(&["--url", &s.url, "--key", &s.admin, "key", "list"]);
    assert!(ok && out.contains("my-app"), "{out} {err}");
    let (ok, out, err) = at(&[
        "key", "get", "my-app", "--url", &s.url, "--key", &s.admin, "--json",
    ]);
    assert!(ok, "{err}");
    let got: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(got["name"], "my-app", "{got}");

    let (ok, out, err) = at(&[
        "key",
        "create",
        "--name",
        "multi",
        "--scope",
        "execution",
        "--scope",
        "component.search,component.info",
        "--ip-allowlist",
        "127.0.0.1",
        "--ip-allowlist",
        "10.0.0.0/8",
        "--json",
        "--url",
        &s.url,
        "--key",
        &s.admin,
    ]);
    assert!(ok, "{out} {err}");
    let created: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(
        created["scope"],
        json!(["execution", "component.search", "component.info"]),
        "{created}"
    );

    // The guide's `--name` form and CYFR's positional one both rotate and revoke.
    let (ok, out, err) = at(&[
        "key", "rotate", "--name", "my-app", "--url", &s.url, "--key", &s.admin,
    ]);
    assert!(ok && out.contains("shown only this once"), "{out} {err}");
    let (ok, out, err) = at(&[
        "key", "revoke", "my-app", "--url", &s.url, "--key", &s.admin,
    ]);
    assert!(ok && out.contains("Revoked key \"my-app\""), "{out} {err}");
    let (ok, out, _) = at(&["key", "list", "--url", &s.url, "--key", &s.admin]);
    assert!(
        ok && !out.contains("my-app") && out.contains("multi"),
        "{out}"
    );
    // No name at all is the CLI's refusal, not the server's.
    let (ok, _, err) = at(&["key", "revoke", "--url", &s.url, "--key", &s.admin]);
    assert!(!ok && err.contains("name the key"), "{err}");
}

#[test]
fn the_guides_policy_lines_add_up_show_as_text_and_reset() {
    let s = Server::start();
    let home = TempDir::new("cli-home");
    let env = [
        ("CYFR_URL", s.url.as_str()),
        ("CYFR_API_KEY", s.admin.as_str()),
    ];
    let at = |args: &[&str]| cli_at(&home, &env, args);
    for line in [
        [
            "policy",
            "set",
            "c:local.claude:0.1.0",
            "allowed_domains",
            r#"["api.anthropic.com"]"#,
        ],
        [
            "policy",
            "set",
            "c:local.claude:0.1.0",
            "rate_limit",
            r#"{"requests": 50, "window": "5m"}"#,
        ],
        [
            "policy",
            "set",
            "c:local.claude:0.1.0",
            "timeout",
            r#""60s""#,
        ],
        [
            "policy",
            "set",
            "f:local.my-formula:0.1.0",
            "allowed_tools",
            r#"["component.search", "component.pull"]"#,
        ],
    ] {
        let (ok, out, err) = at(&line);
        assert!(ok, "{line:?}: {out} {err}");
    }
    let (ok, out, err) = at(&["policy", "show", "c:local.claude:0.1.0"]);
    assert!(ok, "{err}");
    assert!(
        !out.trim_start().starts_with('{'),
        "human text, not JSON: {out}"
    );
    // 60s is shown as the server keeps it, 1m.
    for want in ["api.anthropic.com", "1m", "50/5m"] {
        assert!(
            out.contains(want),
            "the three lines add up: missing {want} in {out}"
        );
    }
    let (ok, out, _) = at(&["policy", "show", "c:local.claude:0.1.0", "--json"]);
    let shown: Json = serde_json::from_str(&out).unwrap();
    assert!(ok);
    assert_eq!(shown["policy"]["timeout"], "1m", "{shown}");
    assert_eq!(shown["fields_set"].as_array().unwrap().len(), 3, "{shown}");
    let (ok, out, _) = at(&["policy", "list"]);
    assert!(
        ok && out.contains("catalyst:local.claude:0.1.0")
            && out.contains("formula:local.my-formula:0.1.0"),
        "{out}"
    );

    let (ok, out, err) = at(&["policy", "reset", "c:local.claude:0.1.0"]);
    assert!(ok && out.contains("back to the default"), "{out} {err}");
    let (_, out, _) = at(&["policy", "show", "c:local.claude:0.1.0", "--json"]);
    let shown: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["policy"]["timeout"], "30s", "{shown}");
}

#[test]
fn contexts_name_the_server_and_a_contexts_key_goes_only_to_its_url() {
    let s = Server::start();
    let home = TempDir::new("cli-home");
    let at = |args: &[&str]| cli_at(&home, &[], args);
    let (ok, out, err) = at(&["context", "add", "local", &s.url, "--api-key", &s.admin]);
    assert!(ok, "{out} {err}");
    let file = home.0.join(".cyfr/config.yaml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the file holds a key");
    }
    // No flag, no environment: the current context says where and with what.
    let (ok, out, err) = at(&["status"]);
    assert!(ok && out.contains(": ok"), "{out} {err}");
    let (ok, out, err) = at(&[
        "context",
        "add",
        "dead",
        "http://127.0.0.1:9",
        "--api-key",
        "cyfr_sk_dead",
    ]);
    assert!(ok, "{out} {err}");
    let (ok, out, _) = at(&["context", "list"]);
    assert!(
        ok && out.contains("* local") && out.contains("  dead"),
        "{out}"
    );
    let (ok, _, err) = at(&["context", "set", "dead"]);
    assert!(ok, "{err}");
    let (ok, _, err) = at(&["status"]);
    assert!(!ok && err.contains("cannot reach"), "{err}");
    let (ok, out, err) = at(&["status", "--context", "local"]);
    assert!(ok && out.contains(": ok"), "{out} {err}");
    let (ok, _, err) = at(&["--context", "lcoal", "status"]);
    assert!(!ok && err.contains("no context `lcoal`"), "{err}");
    // The flag outranks the environment, which outranks the current context.
    let (ok, out, err) = cli_at(
        &home,
        &[("CYFR_URL", "http://127.0.0.1:9")],
        &["status", "--url", &s.url, "--key", &s.admin],
    );
    assert!(ok && out.contains(": ok"), "{out} {err}");
    let (ok, out, err) = cli_at(
        &home,
        &[("CYFR_URL", &s.url), ("CYFR_API_KEY", &s.admin)],
        &["status"],
    );
    assert!(ok && out.contains(": ok"), "{out} {err}");
    // `local`'s key is for `local`'s URL: another URL, even the same server spelled
    // differently, does not get it.
    let (ok, _, err) = at(&[
        "--context",
        "local",
        "status",
        "--url",
        &format!("{}/mcp", s.url),
    ]);
    assert!(!ok && err.contains("no API key"), "{err}");

    // CYFR's ~/.cyfr/config.json is read too.
    let cyfr_home = TempDir::new("cli-home-json");
    std::fs::create_dir_all(cyfr_home.0.join(".cyfr")).unwrap();
    std::fs::write(
        cyfr_home.0.join(".cyfr/config.json"),
        json!({ "current_context": "local", "contexts": { "local": { "url": s.url, "session_id": "sess" } } }).to_string(),
    )
    .unwrap();
    let (ok, out, err) = cli_at(&cyfr_home, &[], &["status", "--key", &s.admin]);
    assert!(ok && out.contains(": ok"), "{out} {err}");
}

#[test]
fn run_forms_call_search_inspect_guide_and_config_from_the_cli() {
    let s = Server::start();
    let home = TempDir::new("cli-home");
    let env = [
        ("CYFR_URL", s.url.as_str()),
        ("CYFR_API_KEY", s.admin.as_str()),
    ];
    let at = |args: &[&str]| cli_at(&home, &env, args);
    let dir = workspace().join("components/reagents/cyfr/text-stats/0.1.0");
    let (ok, out, err) = at(&["register", dir.to_str().unwrap()]);
    assert!(ok, "{out} {err}");

    // `run [type] REF` with `@` as the version separator.
    let (ok, out, err) = at(&[
        "run",
        "reagent",
        "cyfr.text-stats@0.1.0",
        "--input",
        r#"{"text":"Hello world. Hello again!"}"#,
        "--json",
    ]);
    assert!(ok, "{out} {err}");
    let r: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(r["result"]["words"], 4, "{r}");
    let id = r["execution_id"].as_str().unwrap().to_string();
    let (ok, out, _) = at(&["run", "--list"]);
    assert!(
        ok && out.contains(&id) && out.contains("reagent:cyfr.text-stats:0.1.0"),
        "{out}"
    );
    let (ok, out, _) = at(&["run", "--logs", &id]);
    assert!(
        ok && out.contains(&id) && out.contains("completed"),
        "{out}"
    );
    let (ok, out, _) = at(&["run", "--cancel", &id]);
    assert!(ok && out.contains("was not running"), "{out}");

    let (ok, out, _) = at(&["search", "text"]);
    assert!(ok && out.contains("reagent:cyfr.text-stats:0.1.0"), "{out}");
    let (ok, out, _) = at(&["inspect", "reagent", "cyfr.text-stats"]);
    assert!(
        ok && out.contains("digest:") && out.contains("sha256:"),
        "{out}"
    );
    let (ok, out, err) = at(&["call", "system", r#"{"action": "status"}"#, "--json"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Json>(&out).unwrap()["status"], "ok");
    let (ok, out, _) = at(&["version", "--json"]);
    assert!(ok && out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    let (ok, _, err) = at(&["call", "system", "[1]"]);
    assert!(!ok && err.contains("JSON object"), "{err}");

    // register sent the directory's README.md: the guide tool shows it.
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let (ok, out, err) = at(&["guide", "readme", "r:cyfr.text-stats:0.1.0"]);
    assert!(ok && out.trim() == readme.trim(), "{out} {err}");
    let (ok, out, _) = at(&["guide", "get", "integration-guide"]);
    assert!(ok && out.contains("cyfr key create"), "{out}");

    let (ok, out, err) = at(&["config", "set", "r:cyfr.text-stats", "mode", "strict"]);
    assert!(ok, "{out} {err}");
    let (ok, out, _) = at(&["config", "show", "r:cyfr.text-stats:0.1.0"]);
    assert!(
        ok && out.contains("* mode") && out.contains("\"strict\""),
        "{out}"
    );
}

#[test]
fn the_integration_guides_key_and_secret_lines_work_as_written() {
    let s = Server::start();
    let home = TempDir::new("cli-home");
    let env = [
        ("CYFR_URL", s.url.as_str()),
        ("CYFR_API_KEY", s.admin.as_str()),
    ];
    let at = |line: &str| {
        // The guide's lines as a shell splits them (its quotes hold no spaces but these).
        let args: Vec<String> = line
            .split(' ')
            .map(|a| a.trim_matches('"').to_string())
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli_at(&home, &env, &args[1..])
    };
    for line in [
        "cyfr key create --name \"react-app\" --type public --scope execution",
        "cyfr key create --name \"node-backend\" --type secret --scope execution,component.search",
        "cyfr key create --name \"github-actions\" --type admin --ip-allowlist \"140.82.112.0/20\"",
        "cyfr key create --name \"rate-limited\" --type public --scope execution --rate-limit \"100/1m\"",
        "cyfr key create --name \"ci\" --type admin --ip-allowlist \"140.82.112.0/20,10.0.0.1\"",
        "cyfr key rotate --name \"react-app\"",
        "cyfr key create --name \"my-app\" --type secret --scope execution",
        "cyfr secret set ANTHROPIC_API_KEY=sk-ant-not-a-real-key-0123456789",
    ] {
        let (ok, out, err) = at(line);
        assert!(ok, "{line}: {out} {err}");
    }
    let (ok, out, _) = at("cyfr key list");
    for name in [
        "react-app",
        "node-backend",
        "github-actions",
        "rate-limited",
        "ci",
        "my-app",
    ] {
        assert!(ok && out.contains(name), "{name} missing: {out}");
    }
    let (ok, out, err) = at("cyfr key revoke --name \"react-app\"");
    assert!(ok, "{out} {err}");
    let (_, out, _) = at("cyfr key list");
    assert!(!out.contains("react-app"), "{out}");
    // The secret is stored and shown masked, never as written.
    let (ok, out, _) = at("cyfr secret list");
    assert!(ok && out.contains("ANTHROPIC_API_KEY"), "{out}");
    assert!(!out.contains("not-a-real-key"), "{out}");
    // The guide's grant, and CYFR's `[type] REF NAME` form asking about it.
    let (ok, out, err) = at("cyfr secret grant c:local.claude:0.1.0 ANTHROPIC_API_KEY");
    assert!(ok, "{out} {err}");
    let (ok, out, err) = cli_at(
        &home,
        &env,
        &[
            "secret",
            "can-access",
            "catalyst",
            "local.claude@0.1.0",
            "ANTHROPIC_API_KEY",
            "--json",
        ],
    );
    assert!(ok, "{out} {err}");
    let r: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(r["allowed"], true, "{r}");
}

/// spin.toml's `[variables]` defaults, as Spin would resolve them with `set` on top.
fn spin_defaults(spin: &str, set: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    let body = spin.split_once("\n[variables]\n").unwrap().1;
    let mut vars: std::collections::HashMap<String, String> = body
        .lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            let default = v.split_once("default = \"")?.1.split_once('"')?.0;
            Some((k.trim().to_string(), default.to_string()))
        })
        .collect();
    for (k, v) in set {
        vars.insert(k.to_string(), v.to_string());
    }
    vars
}

/// What spin.toml suggests works: a `cyfr host` named by host_url + host_key + the token
/// key is a remote host with tokens, and its origin is the templated outbound host.
#[test]
fn spin_toml_defaults_dispatch_to_a_host_with_tokens_the_manifest_lets_it_reach() {
    use cyfr_core::config::Config;
    let spin = std::fs::read_to_string(workspace().join("spin.toml")).unwrap();
    // The defaults alone: refused with what is missing, not a router sending tokenless runs.
    let vars = spin_defaults(&spin, &[("master_keys", "")]);
    let e = Config::from_lookup(|n| vars.get(n).cloned()).unwrap_err();
    assert!(
        e.contains("host_key") && e.contains("host_token_key"),
        "{e}"
    );
    // With what `cyfr host` prints and the shared key: one remote host, with a token key.
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let token = "0123456789abcdef0123456789abcdef";
    let vars = spin_defaults(
        &spin,
        &[
            ("master_keys", ""),
            ("host_key", key),
            ("host_token_key", token),
        ],
    );
    let c = Config::from_lookup(|n| vars.get(n).cloned()).unwrap();
    assert_eq!(c.hosts.len(), 1);
    assert_eq!(c.hosts[0].url, vars["host_url"]);
    assert_eq!(c.host_token_key.as_deref(), Some(token));
    // Every origin the router dispatches to is an allowed outbound host once Spin expands
    // the manifest's templates.
    let allowed = spin
        .lines()
        .find_map(|l| l.trim().strip_prefix("allowed_outbound_hosts = "))
        .unwrap();
    let expanded = vars.iter().fold(allowed.to_string(), |a, (k, v)| {
        a.replace(&format!("{{{{ {k} }}}}"), v)
    });
    assert!(
        !expanded.contains("{{"),
        "an undeclared variable in {allowed}"
    );
    for h in &c.hosts {
        assert!(
            expanded.contains(&format!("\"{}\"", h.url)),
            "{} not in {expanded}",
            h.url
        );
    }
    // The hash-only bootstrap variable is declared secret.
    assert!(spin.contains("bootstrap_admin_key = { default = \"\", secret = true }"));
}
