//! Secrets: encrypted at rest, shown only masked, bound to their row, rotated safely,
//! sealed per session.

use crate::support::*;
use serde_json::{json, Value as Json};
use std::process::Command;
use std::sync::OnceLock;

const OPENAI: &str = "sk-live-OPENAI-7f3a9c2b1d4e5f60718293a4";
const STRIPE: &str = "sk_test_STRIPE-51Habcdefghijklmnopq";
const MINE: &str = "sk-ant-USER-OWN-KEY-0123456789abcdef";

fn set(s: &Server, name: &str, value: &str, scope: &str) -> Json {
    s.ok(
        &s.admin,
        "secret",
        json!({"action": "set", "name": name, "value": value, "scope": scope}),
    )
}

/// The fingerprint `value` gets in `scope` (the admin's own for `user`). Fingerprints are
/// keyed by the owner's data key, so only the server can compute one: a probe secret asks it.
fn fingerprint_in(s: &Server, value: &str, scope: &str) -> String {
    let r = s.ok(
        &s.admin,
        "secret",
        json!({"action": "set", "name": "fingerprint-probe", "value": value, "scope": scope}),
    );
    s.ok(
        &s.admin,
        "secret",
        json!({"action": "delete", "name": "fingerprint-probe", "scope": scope}),
    );
    r["fingerprint"].as_str().unwrap().to_string()
}

fn fingerprint(s: &Server, value: &str) -> String {
    fingerprint_in(s, value, "org")
}

fn sqlite(db: &std::path::Path, sql: &str) {
    let out = Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()"])
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first column of the first row `sql` answers, as text.
fn sqlite_one(db: &std::path::Path, sql: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])"])
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn secrets_are_stored_encrypted_and_shown_only_masked() {
    let s = Server::start();
    let r = set(&s, "OPENAI_API_KEY", OPENAI, "org");
    assert_eq!(
        r["masked"],
        format!("{}...{}", &OPENAI[..4], &OPENAI[OPENAI.len() - 4..])
    );
    assert_eq!(r["length"], OPENAI.len());
    assert_eq!(r["fingerprint"], fingerprint(&s, OPENAI));
    // Keyed, not a bare hash: no offline guessing of a short secret from its fingerprint.
    use sha2::Digest;
    let bare: String = sha2::Sha256::digest(OPENAI.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!r["fingerprint"].as_str().unwrap().contains(&bare), "{r}");
    assert_ne!(
        fingerprint_in(&s, OPENAI, "user"),
        r["fingerprint"].as_str().unwrap(),
        "another owner, another key"
    );
    let got = s.ok(
        &s.admin,
        "secret",
        json!({"action": "get", "name": "OPENAI_API_KEY"}),
    );
    let listed = s.ok(&s.admin, "secret", json!({"action": "list"}));
    for answer in [&r, &got, &listed] {
        assert!(
            !answer.to_string().contains(OPENAI),
            "plaintext in an answer: {answer}"
        );
    }
    assert_eq!(listed["count"], 1);
    assert_eq!(got["fingerprint"], fingerprint(&s, OPENAI));
    s.assert_nowhere_on_disk(OPENAI);
    // Deleting really deletes.
    s.ok(
        &s.admin,
        "secret",
        json!({"action": "delete", "name": "OPENAI_API_KEY"}),
    );
    let r = s.call(
        &s.admin,
        "secret",
        json!({"action": "get", "name": "OPENAI_API_KEY"}),
    );
    assert_eq!(r["result"]["isError"], true);
}

#[test]
fn the_cli_reads_values_from_stdin_and_imports_from_the_environment() {
    let s = Server::start();
    let mut child = cyfr()
        .args(["secret", "set", "STRIPE_KEY", "--json"])
        .env("CYFR_URL", &s.url)
        .env("CYFR_API_KEY", &s.admin)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{STRIPE}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let r: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["fingerprint"], fingerprint(&s, STRIPE));

    let out = cyfr()
        .args(["secret", "import", "--prefix", "API_KEY_", "--json"])
        .env("CYFR_URL", &s.url)
        .env("CYFR_API_KEY", &s.admin)
        .env("API_KEY_OPENAI", OPENAI)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = s.ok(
        &s.admin,
        "secret",
        json!({"action": "get", "name": "openai", "scope": "user"}),
    );
    assert_eq!(got["fingerprint"], fingerprint_in(&s, OPENAI, "user"));
    let out = cyfr()
        .args(["secret", "list"])
        .env("CYFR_URL", &s.url)
        .env("CYFR_API_KEY", &s.admin)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("STRIPE_KEY")
            && text.contains("openai")
            && !text.contains(STRIPE)
            && !text.contains(OPENAI),
        "{text}"
    );
}

#[test]
fn secret_actions_check_their_scopes() {
    let s = Server::start();
    set(&s, "A", OPENAI, "org");
    let reader = s.key("reader", "secret", &["secret.get"], json!({}));
    let writer = s.key("writer", "secret", &["secret.set"], json!({}));
    for (key, args) in [
        (&reader, json!({"action": "set", "name": "B", "value": "x"})),
        (&reader, json!({"action": "delete", "name": "A"})),
        (
            &reader,
            json!({"action": "grant", "reference": "c:local.x:0.1.0", "name": "A"}),
        ),
        (&writer, json!({"action": "get", "name": "A"})),
        (&writer, json!({"action": "list"})),
        (
            &writer,
            json!({"action": "can_access", "reference": "c:local.x:0.1.0", "name": "A"}),
        ),
    ] {
        assert_eq!(code(&s.call(key, "secret", args.clone())), -33004, "{args}");
    }
    s.ok(&reader, "secret", json!({"action": "get", "name": "A"}));
    s.ok(
        &writer,
        "secret",
        json!({"action": "set", "name": "B", "value": STRIPE}),
    );
}

#[test]
fn grants_name_the_component_and_can_be_revoked() {
    let s = Server::start();
    set(&s, "ANTHROPIC_API_KEY", OPENAI, "org");
    let can = |r: &str| {
        s.ok(
            &s.admin,
            "secret",
            json!({"action": "can_access", "reference": r, "name": "ANTHROPIC_API_KEY"}),
        )["allowed"]
            .clone()
    };
    assert_eq!(can("c:local.claude:0.1.0"), false);
    s.ok(&s.admin, "secret", json!({"action": "grant", "reference": "c:local.claude:0.1.0", "name": "ANTHROPIC_API_KEY"}));
    assert_eq!(can("catalyst:local.claude:0.1.0"), true);
    assert_eq!(can("c:local.claude:0.2.0"), false);
    assert_eq!(can("c:local.other:0.1.0"), false);
    s.ok(&s.admin, "secret", json!({"action": "revoke", "reference": "c:local.claude:0.1.0", "name": "ANTHROPIC_API_KEY"}));
    assert_eq!(can("c:local.claude:0.1.0"), false);
}

#[test]
fn a_ciphertext_moved_to_another_name_or_owner_does_not_decrypt() {
    let s = Server::start();
    set(&s, "A", OPENAI, "org");
    set(&s, "B", STRIPE, "org");
    let db = s.data.0.join("cyfr.db");
    // B's row now holds A's ciphertext: same data key, wrong name in the associated data.
    sqlite(&db, "UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets WHERE name = 'A') WHERE name = 'B';");
    let r = s.call(&s.admin, "secret", json!({"action": "get", "name": "B"}));
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("decryption failed"),
        "moved ciphertext decrypted: {r}"
    );
    assert!(!r.to_string().contains(OPENAI));
    // A's row handed to another owner.
    let admin_id = s.ok(&s.admin, "key", json!({"action": "get", "name": "admin"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    set(&s, "C", MINE, "user");
    sqlite(&db, &format!("UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets WHERE name = 'A') WHERE owner = 'user:{admin_id}' AND name = 'C';"));
    let r = s.call(
        &s.admin,
        "secret",
        json!({"action": "get", "name": "C", "scope": "user"}),
    );
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("decryption failed"),
        "ciphertext moved across owners decrypted: {r}"
    );
    // Untouched secrets still decrypt.
    assert_eq!(
        s.ok(&s.admin, "secret", json!({"action": "get", "name": "A"}))["fingerprint"],
        fingerprint(&s, OPENAI)
    );
}

#[test]
fn master_key_rotation_keeps_every_secret_and_leaks_nothing() {
    let s = Server::start();
    let mut answers = Vec::new();
    answers.push(set(&s, "OPENAI_API_KEY", OPENAI, "org"));
    answers.push(set(&s, "STRIPE_KEY", STRIPE, "org"));
    answers.push(set(&s, "anthropic", MINE, "user"));
    let jt = register_json_transform(&s);
    answers.push(s.ok(
        &s.admin,
        "execution",
        json!({"action": "run", "reference": jt, "input": {"data": [1]}}),
    ));
    let key_before = std::fs::read(s.data.0.join("master.key")).unwrap();

    // Rotated next to the running server, which picks the new key up without a restart.
    let out = cyfr()
        .args(["secret", "rotate-master", "--json", "--data-dir"])
        .arg(&s.data.0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["data_keys"], 2, "{r}");
    assert_ne!(
        std::fs::read(s.data.0.join("master.key")).unwrap(),
        key_before
    );
    assert!(!s.data.0.join("master.key.next").exists());

    for (name, value, scope) in [
        ("OPENAI_API_KEY", OPENAI, "org"),
        ("STRIPE_KEY", STRIPE, "org"),
        ("anthropic", MINE, "user"),
    ] {
        let got = s.ok(
            &s.admin,
            "secret",
            json!({"action": "get", "name": name, "scope": scope}),
        );
        assert_eq!(
            got["fingerprint"],
            fingerprint_in(&s, value, scope),
            "{name} no longer decrypts"
        );
        answers.push(got);
    }
    answers.push(s.ok(&s.admin, "secret", json!({"action": "list"})));
    // Running it again (as after an interruption) is harmless.
    let out = cyfr()
        .args(["secret", "rotate-master", "--json", "--data-dir"])
        .arg(&s.data.0)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        s.ok(
            &s.admin,
            "secret",
            json!({"action": "get", "name": "STRIPE_KEY"})
        )["fingerprint"],
        fingerprint(&s, STRIPE)
    );
    for plain in [OPENAI, STRIPE, MINE] {
        s.assert_nowhere_on_disk(plain);
        for a in &answers {
            assert!(
                !a.to_string().contains(plain),
                "plaintext in an answer: {a}"
            );
        }
    }
}

#[test]
fn expired_secrets_are_flagged() {
    let s = Server::start();
    s.ok(
        &s.admin,
        "secret",
        json!({"action": "set", "name": "short", "value": OPENAI, "scope": "user", "ttl": "1s"}),
    );
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let got = s.ok(
        &s.admin,
        "secret",
        json!({"action": "get", "name": "short", "scope": "user"}),
    );
    assert_eq!(got["expired"], true);
    assert!(got["expires_at"].is_string());
}

#[test]
fn secrets_travel_only_over_https_unless_from_this_machine() {
    let s = Server::start_with(&["--trusted-proxies", "127.0.0.1"]);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "secret", "arguments": {"action": "set", "name": "X", "value": OPENAI}}}).to_string();
    let auth = format!("Bearer {}", s.admin);
    let from = |proto: &str| {
        s.post(
            &[
                ("authorization", &auth),
                ("x-forwarded-for", "203.0.113.5"),
                ("x-forwarded-proto", proto),
            ],
            &body,
        )
        .2
    };
    assert_eq!(code(&from("http")), -33004);
    let r = from("https");
    assert_eq!(r["result"]["isError"], false, "{r}");
    // The proxy appends what it saw to what the client claimed: the proxy's word is last.
    for claimed in [
        &[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-proto", "http"),
        ][..],
        &[("x-forwarded-proto", "https, http")][..],
    ] {
        let mut headers = vec![
            ("authorization", auth.as_str()),
            ("x-forwarded-for", "203.0.113.5"),
        ];
        headers.extend_from_slice(claimed);
        assert_eq!(code(&s.post(&headers, &body).2), -33004, "{claimed:?}");
    }
    let dev = Server::start_with(&["--trusted-proxies", "127.0.0.1", "--dev"]);
    let auth = format!("Bearer {}", dev.admin);
    let r = dev
        .post(
            &[
                ("authorization", &auth),
                ("x-forwarded-for", "203.0.113.5"),
                ("x-forwarded-proto", "http"),
            ],
            &body,
        )
        .2;
    assert_eq!(r["result"]["isError"], false, "{r}");
}

/// A Python with PyNaCl (real libsodium), installed once from PyPI.
fn pynacl() -> &'static std::path::Path {
    static PY: OnceLock<std::path::PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let venv = workspace().join("target/pynacl-venv");
        let py = venv.join("bin/python3");
        let ready = Command::new(&py)
            .args(["-c", "import nacl"])
            .status()
            .is_ok_and(|s| s.success());
        if !ready {
            assert!(Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&venv)
                .status()
                .unwrap()
                .success());
            let ok = Command::new(&py)
                .args(["-m", "pip", "install", "-q", "pynacl==1.5.0"])
                .status()
                .unwrap()
                .success();
            assert!(ok, "pip install pynacl failed");
        }
        py
    })
}

pub(crate) fn nacl_seal(public_key: &str, plaintext: &str) -> String {
    let out = Command::new(pynacl())
        .args(["-c", "import base64,sys,nacl.public; pk=nacl.public.PublicKey(base64.b64decode(sys.argv[1])); print(base64.b64encode(nacl.public.SealedBox(pk).encrypt(sys.argv[2].encode())).decode())"])
        .args([public_key, plaintext])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub(crate) fn tool(s: &Server, sid: &str, name: &str, args: Json) -> Json {
    s.in_session(sid, "tools/call", json!({"name": name, "arguments": args}))
}

fn tool_error(r: &Json) -> String {
    assert_eq!(r["result"]["isError"], true, "expected a tool error: {r}");
    r["result"]["structuredContent"]["error"]["message"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_pynacl_sealed_secret_is_opened_in_its_session_only() {
    let s = Server::start_with(&["--session-encryption"]);
    let sid = s.session();
    let r = s.in_session(
        &sid,
        "resources/read",
        json!({"uri": "mcp+session://encryption/pubkey"}),
    );
    let key: Json =
        serde_json::from_str(r["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(key["alg"], "libsodium-sealedbox");
    assert_eq!(key["encoding"], "base64");
    assert_eq!(key["max_size_bytes"], 65536);
    let (pk, kid) = (
        key["public_key"].as_str().unwrap(),
        key["kid"].as_str().unwrap(),
    );
    let listed = s.in_session(&sid, "resources/list", json!({}));
    assert_eq!(
        listed["result"]["resources"][0]["uri"],
        "mcp+session://encryption/pubkey"
    );
    let instructions = tool(&s, &sid, "get_encryption_instructions", json!({}));
    assert_eq!(
        instructions["result"]["structuredContent"]["key"]["kid"],
        kid
    );

    let ct = nacl_seal(pk, MINE);
    let r = tool(
        &s,
        &sid,
        "secret",
        json!({"action": "set", "name": "sealed", "value": {"ciphertext": ct, "kid": kid}}),
    );
    assert_eq!(
        r["result"]["structuredContent"]["fingerprint"],
        fingerprint(&s, MINE),
        "{r}"
    );
    // Its sender hid it from whatever sat between: not one character of it is shown.
    assert_eq!(
        r["result"]["structuredContent"]["masked"], "********",
        "{r}"
    );
    let got = tool(
        &s,
        &sid,
        "secret",
        json!({"action": "get", "name": "sealed"}),
    );
    assert_eq!(
        got["result"]["structuredContent"]["masked"], "********",
        "{got}"
    );

    // encrypted_secrets: dotted paths merged into the arguments.
    let ct2 = nacl_seal(pk, STRIPE);
    let r = tool(
        &s,
        &sid,
        "secret",
        json!({"action": "set", "name": "hydrated", "encrypted_secrets": {"value": {"ciphertext": ct2, "kid": kid}}}),
    );
    assert_eq!(
        r["result"]["structuredContent"]["fingerprint"],
        fingerprint(&s, STRIPE),
        "{r}"
    );
    let jt = register_json_transform(&s);
    let ct3 = nacl_seal(pk, OPENAI);
    let r = tool(
        &s,
        &sid,
        "execution",
        json!({"action": "run", "reference": jt, "input": {"data": {"a": 1}, "ops": [{"op": "count"}]}, "encrypted_secrets": {"input.data.token": {"ciphertext": ct3, "kid": kid}}}),
    );
    assert_eq!(r["result"]["structuredContent"]["result"]["data"], 2, "{r}");

    // Each failure says what went wrong.
    let wrong_kid = tool(
        &s,
        &sid,
        "secret",
        json!({"action": "set", "name": "x", "value": {"ciphertext": ct, "kid": "AAAAAAAAAAA"}}),
    );
    assert!(tool_error(&wrong_kid).contains("Key ID mismatch"));
    let bad_b64 = tool(
        &s,
        &sid,
        "secret",
        json!({"action": "set", "name": "x", "value": {"ciphertext": "***not base64***", "kid": kid}}),
    );
    assert!(tool_error(&bad_b64).contains("Invalid base64 ciphertext"));
    let mut raw = base64_decode(&ct);
    raw[40] ^= 1;
    let tampered = tool(
        &s,
        &sid,
        "secret",
        json!({"action": "set", "name": "x", "value": {"ciphertext": base64_encode(&raw), "kid": kid}}),
    );
    assert!(tool_error(&tampered).contains("Decryption failed"));
    let huge = base64_encode(&vec![7u8; 70_000]);
    let too_large = tool(
        &s,
        &sid,
        "secret",
        json!({"action": "set", "name": "x", "value": {"ciphertext": huge, "kid": kid}}),
    );
    assert!(tool_error(&too_large).contains("Ciphertext too large"));

    // Another session's key does not open it.
    let other = s.session();
    let r = tool(
        &s,
        &other,
        "secret",
        json!({"action": "set", "name": "x", "value": {"ciphertext": ct, "kid": kid}}),
    );
    assert!(tool_error(&r).contains("Key ID mismatch"));
    // After the session ends, its key is gone from the database.
    let keys_of = |sid: &str| {
        let hash = cyfr_core::crypto::sha256_hex(sid.as_bytes());
        sqlite_one(
            &s.data.0.join("cyfr.db"),
            &format!("SELECT count(*) FROM session_keys WHERE session_hash = '{hash}'"),
        )
    };
    assert_eq!(keys_of(&sid), "1");
    assert_eq!(
        s.request(reqwest::Method::DELETE, &[("mcp-session-id", &sid)]),
        204
    );
    assert_eq!(keys_of(&sid), "0");
    for plain in [MINE, STRIPE, OPENAI] {
        s.assert_nowhere_on_disk(plain);
    }
}

/// `cyfr up` with session encryption, running components in this process or, when `remote`,
/// on a `cyfr host` of its own (returned so it lives as long as the server).
pub(crate) fn sealing_server(remote: bool) -> (Option<Host>, Server) {
    let h = remote.then(Host::start);
    let mut extra = vec!["--session-encryption"];
    if let Some(h) = &h {
        extra.extend(["--host", h.spec.as_str()]);
    }
    let s = Server::start_with(&extra);
    (h, s)
}

/// A session's public key and key id, from `mcp+session://encryption/pubkey`.
pub(crate) fn session_key(s: &Server, sid: &str) -> (String, String) {
    let r = s.in_session(
        sid,
        "resources/read",
        json!({"uri": "mcp+session://encryption/pubkey"}),
    );
    let key: Json =
        serde_json::from_str(r["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    (
        key["public_key"].as_str().unwrap().to_string(),
        key["kid"].as_str().unwrap().to_string(),
    )
}

#[test]
fn values_opened_from_encrypted_secrets_never_come_back_to_the_client() {
    // Through a remote host as well, where the input travels as `sealed_input` (the host must
    // open it for the run to see its data; sealed.rs watches the wire itself).
    for remote in [false, true] {
        let (_h, s) = sealing_server(remote);
        let sid = s.session();
        let (pk, kid) = session_key(&s, &sid);
        let (pk, kid) = (pk.as_str(), kid.as_str());
        let jt = register_json_transform(&s);
        // json-transform echoes its data: the component got the value, the client gets a mask.
        let sealed = json!({"input.data.token": {"ciphertext": nacl_seal(pk, OPENAI), "kid": kid}});
        let r = tool(
            &s,
            &sid,
            "execution",
            json!({"action": "run", "reference": jt, "input": {"data": {"a": 1}}, "encrypted_secrets": sealed}),
        );
        let out = &r["result"]["structuredContent"];
        assert_eq!(out["status"], "completed", "remote={remote}: {r}");
        assert_eq!(
            out["result"]["data"]["token"], "[REDACTED]",
            "remote={remote}: {r}"
        );
        assert_eq!(out["result"]["data"]["a"], 1);
        assert!(!r.to_string().contains(OPENAI), "remote={remote}: {r}");
        s.assert_nowhere_on_disk(OPENAI);
    }
}

#[test]
fn cyfr_encrypt_seals_on_the_users_machine() {
    let s = Server::start_with(&["--session-encryption"]);
    let sid = s.session();
    let r = s.in_session(
        &sid,
        "resources/read",
        json!({"uri": "mcp+session://encryption/pubkey"}),
    );
    let key: Json =
        serde_json::from_str(r["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    let out = cyfr()
        .args([
            "encrypt",
            "--json",
            &format!("--kid={}", key["kid"].as_str().unwrap()),
            &format!("--public-key={}", key["public_key"].as_str().unwrap()),
            STRIPE,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sealed: Json = serde_json::from_slice(&out.stdout).unwrap();
    let r = tool(
        &s,
        &sid,
        "secret",
        json!({"action": "set", "name": "via-cli", "value": sealed}),
    );
    assert_eq!(
        r["result"]["structuredContent"]["fingerprint"],
        fingerprint(&s, STRIPE),
        "{r}"
    );
}

#[test]
fn sealed_secrets_are_refused_when_session_encryption_is_off() {
    let s = Server::start();
    let sid = s.session();
    let r = tool(
        &s,
        &sid,
        "secret",
        json!({"action": "set", "name": "x", "value": {"ciphertext": "AAAA", "kid": "k"}}),
    );
    assert!(tool_error(&r).contains("Session encryption is not enabled"));
    let r = tool(&s, &sid, "get_encryption_instructions", json!({}));
    assert!(tool_error(&r).contains("Session encryption is not enabled"));
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}
