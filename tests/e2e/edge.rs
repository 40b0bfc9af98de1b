//! Bootstrapping an edge deployment: `cyfr init --edge` prints its secrets and writes
//! nothing; `cyfr up`'s runner, standing in for Spin on a database it made itself, lets the
//! first admin key in through `bootstrap_admin_key` once.

use crate::support::*;
use serde_json::{json, Value as Json};

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `cyfr init --edge --json`, run in `dir`.
fn init_edge(dir: &std::path::Path) -> Json {
    let out = cyfr()
        .args(["init", "--edge", "--json"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn init_edge_prints_every_secret_once_and_writes_nothing() {
    let dir = TempDir::new("edge-init");
    let a = init_edge(&dir.0);
    assert_eq!(
        std::fs::read_dir(&dir.0).unwrap().count(),
        0,
        "cyfr init --edge wrote into its directory"
    );
    let admin = a["admin_key"].as_str().unwrap();
    assert!(
        admin.starts_with("cyfr_ak_") && admin.len() == 40,
        "{admin}"
    );
    let vars = &a["variables"];
    assert_eq!(vars["bootstrap_admin_key"], sha256_hex(admin.as_bytes()));
    // Each variable is one the router reads, set by its own name on every target.
    let steps = a["steps"].to_string();
    for (name, value) in vars.as_object().unwrap() {
        let value = value.as_str().unwrap();
        assert!(!value.is_empty(), "{name}");
        assert!(
            steps.contains(&format!("wrangler secret put {name}")),
            "{steps}"
        );
        assert!(
            steps.contains(&format!("--variable {name}='{value}'")),
            "{steps}"
        );
        assert!(
            steps.contains(&format!("--from-literal={name}='{value}'")),
            "{steps}"
        );
        assert!(
            steps.contains(&format!("SPIN_VARIABLE_{}='{value}'", name.to_uppercase())),
            "{steps}"
        );
    }
    // The raw admin key goes into no command: only its hash does.
    assert!(!steps.contains(admin), "{steps}");
    // Keys that the router accepts: a base64 32-byte master key, a 32+ character token key.
    use base64::Engine;
    let mk = base64::engine::general_purpose::STANDARD
        .decode(vars["master_keys"].as_str().unwrap())
        .unwrap();
    assert_eq!(mk.len(), 32);
    assert!(vars["host_token_key"].as_str().unwrap().len() >= 32);
    // A second run makes new secrets.
    let b = init_edge(&dir.0);
    assert_ne!(a["admin_key"], b["admin_key"]);
    assert_ne!(vars["master_keys"], b["variables"]["master_keys"]);
}

#[test]
fn a_fresh_database_is_bootstrapped_by_the_printed_key_once() {
    let tmp = TempDir::new("edge-init");
    let edge = init_edge(&tmp.0);
    let admin = edge["admin_key"].as_str().unwrap().to_string();
    let vars = &edge["variables"];
    // No `cyfr init`: an empty directory (it holds only the test's server.log), no
    // database, no key file; the runner makes and migrates the database.
    let data = std::sync::Arc::new(TempDir::new("edge-up"));
    let env = [
        ("CYFR_MASTER_KEY", vars["master_keys"].as_str().unwrap()),
        (
            "CYFR_BOOTSTRAP_ADMIN_KEY",
            vars["bootstrap_admin_key"].as_str().unwrap(),
        ),
    ];
    let s = Server::up_env(data, admin.clone(), &[], &env);
    // A wrong admin key first: refused with the usual code, and it creates nothing.
    let wrong = "cyfr_ak_wrongwrongwrongwrongwrongwrong0001";
    assert_eq!(
        code(&s.call(wrong, "key", json!({"action": "list"}))),
        -33002
    );
    // The printed key is the admin: it makes a key and runs a component.
    let made = s.ok(
        &admin,
        "key",
        json!({"action": "create", "name": "app", "type": "secret", "scope": ["execution"]}),
    );
    assert!(made["key"].as_str().unwrap().starts_with("cyfr_sk_"));
    let jt = register_json_transform(&s);
    let r = s.ok(
        &admin,
        "execution",
        json!({"action": "run", "reference": jt, "input": {"data": [2, 3]}}),
    );
    assert_eq!(r["result"]["sum"], 5);
    let keys = s.ok(&admin, "key", json!({"action": "list"}));
    assert_eq!(keys["count"], 2, "{keys}");
    // Restarted with the variable pointing at another key: a key exists, so it is refused.
    let (data, _) = s.stop();
    let other = "cyfr_ak_otherotherotherotherotherother02";
    let other_hash = sha256_hex(other.as_bytes());
    let env = [
        ("CYFR_MASTER_KEY", vars["master_keys"].as_str().unwrap()),
        ("CYFR_BOOTSTRAP_ADMIN_KEY", other_hash.as_str()),
    ];
    let s = Server::up_env(data, admin.clone(), &[], &env);
    assert_eq!(
        code(&s.call(other, "key", json!({"action": "list"}))),
        -33002
    );
    assert_eq!(s.ok(&admin, "key", json!({"action": "list"}))["count"], 2);
    s.assert_nowhere_on_disk(&admin);
    assert!(
        !s.data.0.join("master.key").exists(),
        "the master key came from the environment"
    );
}

#[test]
fn an_empty_data_directory_without_the_bootstrap_variable_is_refused() {
    let data = TempDir::new("edge-none");
    std::fs::remove_dir_all(&data.0).unwrap();
    let out = cyfr()
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data.0)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not initialized"));
    // With the variable but no master key in the environment: refused, and says why.
    let out = cyfr()
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data.0)
        .env("CYFR_BOOTSTRAP_ADMIN_KEY", sha256_hex(b"x"))
        .env_remove("CYFR_MASTER_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CYFR_MASTER_KEY"));
    assert!(!data.0.exists());
}
