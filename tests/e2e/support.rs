//! Starting a real `cyfr` server on loopback and speaking MCP to it.

use serde_json::{json, Value as Json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `cyfr` binary under test.
pub fn cyfr() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cyfr"));
    // Component builds get their own target dir: the outer cargo holds the main one.
    c.env("CARGO_TARGET_DIR", workspace().join("target/wasm"));
    // One compiled-code cache for every server the tests start: compile the router once.
    c.env("CYFR_CACHE_DIR", workspace().join("target/e2e-cache"));
    // ... and the key its entries are sealed with, shared too, kept outside that directory.
    c.env(
        "CYFR_CACHE_KEY_FILE",
        workspace().join("target/e2e-cache.key"),
    );
    // The key routers and `cyfr host`s share in tests that use remote hosts.
    c.env("CYFR_HOST_TOKEN_KEY", HOST_TOKEN_KEY);
    c.env_remove("CYFR_API_KEY")
        .env_remove("CYFR_URL")
        .env_remove("CYFR_DATA_DIR");
    c
}

/// The router↔host token key used by the tests.
pub const HOST_TOKEN_KEY: &str = "test-host-token-key-0123456789abcdef";

/// A running `cyfr host`, stopped when dropped.
pub struct Host {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `URL#PUBLIC_KEY`, what `cyfr up --host` takes.
    pub spec: String,
    /// Its data directory.
    pub data: TempDir,
}

impl Host {
    /// `cyfr host` on an ephemeral loopback port.
    pub fn start() -> Host {
        Host::start_with(&[])
    }

    /// Same, with extra `cyfr host` arguments (e.g. its TLS options).
    pub fn start_with(extra: &[&str]) -> Host {
        let data = TempDir::new("host");
        let mut child = cyfr()
            .args(["host", "--json", "--listen", "127.0.0.1:0", "--components"])
            .arg(workspace())
            .arg("--data-dir")
            .arg(&data.0)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(data.0.join("host.log")).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Json = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("cyfr host printed {line:?}: {e}"));
        Host {
            child,
            url: v["listening"].as_str().unwrap().into(),
            spec: v["host"].as_str().unwrap().into(),
            data,
        }
    }

    /// Stops it now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// How many artifacts it holds (it gets one the first time it runs a component).
    pub fn artifacts(&self) -> usize {
        std::fs::read_dir(self.data.0.join("cache/artifacts"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh directory for one test, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = workspace().join("target/e2e-tmp").join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `cyfr up`, stopped when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT/mcp`
    pub url: String,
    /// The admin key `cyfr init` printed.
    pub admin: String,
    /// What `cyfr up --json` reported.
    pub started: Json,
    /// The data directory (kept for restarts).
    pub data: std::sync::Arc<TempDir>,
    http: reqwest::blocking::Client,
}

impl Server {
    /// `cyfr init` + `cyfr up` on an ephemeral loopback port.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Same, with extra `cyfr up` arguments.
    pub fn start_with(extra: &[&str]) -> Server {
        Server::start_env(extra, &[])
    }

    /// Same, with extra `cyfr up` arguments and environment variables.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let data = std::sync::Arc::new(TempDir::new("server"));
        let out = cyfr()
            .args(["init", "--json", "--data-dir"])
            .arg(&data.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cyfr init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let init: Json = serde_json::from_slice(&out.stdout).unwrap();
        let admin = init["admin_key"].as_str().unwrap().to_string();
        Server::up_env(data, admin, extra, env)
    }

    /// `cyfr up` over an existing data directory.
    pub fn up(data: std::sync::Arc<TempDir>, admin: String, extra: &[&str]) -> Server {
        Server::up_env(data, admin, extra, &[])
    }

    /// `cyfr up` over an existing data directory, with environment variables.
    pub fn up_env(
        data: std::sync::Arc<TempDir>,
        admin: String,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut child = cyfr()
            .args(["up", "--json", "--listen", "127.0.0.1:0", "--components"])
            .arg(workspace())
            .arg("--data-dir")
            .arg(&data.0)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            // The server's log stays in the data directory, where leak tests search it.
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(data.0.join("server.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let started: Json =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("cyfr up printed {line:?}: {e}"));
        let url = started["listening"].as_str().unwrap().to_string();
        let http = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .unwrap();
        Server {
            child,
            url,
            admin,
            started,
            data,
            http,
        }
    }

    /// A client of a router some other process serves at `url` (`/mcp`), with `admin` its
    /// admin key; `child` is stopped when this is dropped.
    pub fn attach(
        child: Child,
        url: String,
        admin: String,
        data: std::sync::Arc<TempDir>,
    ) -> Server {
        let http = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .unwrap();
        Server {
            child,
            url,
            admin,
            started: Json::Null,
            data,
            http,
        }
    }

    /// Stops the server and returns its data directory and admin key for a restart.
    /// The server process's id (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(mut self) -> (std::sync::Arc<TempDir>, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.data.clone(), self.admin.clone())
    }

    /// A raw POST to /mcp with headers; returns status, response headers and JSON body (or Null).
    pub fn post(
        &self,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, reqwest::header::HeaderMap, Json) {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().unwrap();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Json::Null),
        )
    }

    /// Any method to /mcp; returns the status.
    pub fn request(&self, method: reqwest::Method, headers: &[(&str, &str)]) -> u16 {
        self.request_json(method, headers).0
    }

    /// Any method to /mcp; returns the status and the JSON body (or Null).
    pub fn request_json(&self, method: reqwest::Method, headers: &[(&str, &str)]) -> (u16, Json) {
        let mut req = self.http.request(method, &self.url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        (
            status,
            serde_json::from_str(&resp.text().unwrap()).unwrap_or(Json::Null),
        )
    }

    /// A JSON-RPC request with a bearer key; returns (HTTP status, whole response).
    pub fn rpc(&self, key: Option<&str>, method: &str, params: Json) -> (u16, Json) {
        let body =
            json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string();
        let auth = key.map(|k| format!("Bearer {k}"));
        let mut headers = vec![("mcp-protocol-version", "2025-11-25")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let (status, _, v) = self.post(&headers, &body);
        (status, v)
    }

    /// `tools/call`; returns the whole JSON-RPC response.
    pub fn call(&self, key: &str, tool: &str, args: Json) -> Json {
        self.rpc(
            Some(key),
            "tools/call",
            json!({ "name": tool, "arguments": args }),
        )
        .1
    }

    /// `tools/call` that must succeed; returns the structured result.
    pub fn ok(&self, key: &str, tool: &str, args: Json) -> Json {
        let r = self.call(key, tool, args.clone());
        assert!(r.get("error").is_none(), "{tool} {args} failed: {r}");
        assert_eq!(
            r["result"]["isError"],
            json!(false),
            "{tool} {args} failed: {r}"
        );
        r["result"]["structuredContent"].clone()
    }

    /// Creates a key with the admin key and returns the raw key.
    pub fn key(&self, name: &str, ktype: &str, scope: &[&str], extra: Json) -> String {
        let mut args = json!({ "action": "create", "name": name, "type": ktype, "scope": scope });
        if let Json::Object(e) = extra {
            args.as_object_mut().unwrap().extend(e);
        }
        self.ok(&self.admin, "key", args)["key"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Registers a component from its wasm bytes and a manifest.
    pub fn register(&self, manifest: Json, wasm: &[u8]) -> Json {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(wasm);
        self.ok(
            &self.admin,
            "component",
            json!({ "action": "register", "manifest": manifest, "wasm": b64 }),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `initialize` with the admin key; returns the session id.
    pub fn session(&self) -> String {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}).to_string();
        let auth = format!("Bearer {}", self.admin);
        let (status, headers, r) = self.post(&[("authorization", &auth)], &body);
        assert_eq!(status, 200, "{r}");
        headers["mcp-session-id"].to_str().unwrap().to_string()
    }

    /// A JSON-RPC request inside a session, with the admin key.
    pub fn in_session(&self, sid: &str, method: &str, params: Json) -> Json {
        let body =
            json!({ "jsonrpc": "2.0", "id": 2, "method": method, "params": params }).to_string();
        let auth = format!("Bearer {}", self.admin);
        self.post(&[("authorization", &auth), ("mcp-session-id", sid)], &body)
            .2
    }

    /// Every byte under the data directory (database, WAL, caches, keys, server log).
    pub fn data_bytes(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if let Ok(b) = std::fs::read(&p) {
                    out.push((p, b));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data.0, &mut out);
        out
    }

    /// Panics if `needle` occurs in any file of the data directory.
    pub fn assert_nowhere_on_disk(&self, needle: &str) {
        for (path, bytes) in self.data_bytes() {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle:?} found in {}",
                path.display()
            );
        }
    }
}

/// The JSON-RPC error code of a response (panics if it is not an error).
pub fn code(r: &Json) -> i64 {
    r["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("expected an error, got {r}"))
}

/// A workspace wasm package's bytes (every test guest is built once per process by
/// `cyfr-test-guests`).
pub fn wasm(package: &str) -> Vec<u8> {
    cyfr_test_guests::guest(package).to_vec()
}

/// A minimal valid reagent manifest.
pub fn manifest(ns_name: &str, version: &str) -> Json {
    json!({ "id": format!("reagent:{ns_name}"), "type": "reagent", "version": version, "description": format!("test reagent {ns_name}"), "secrets": [], "wasi": { "http": false, "streaming": false, "secrets": false } })
}

/// Registers the json-transform example from its manifest on disk, with freshly built bytes.
pub fn register_json_transform(s: &Server) -> String {
    let dir = workspace().join("components/reagents/cyfr/json-transform/0.1.0");
    let m: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cyfr-manifest.json")).unwrap())
            .unwrap();
    s.register(m, &wasm("json-transform"))["reference"]
        .as_str()
        .unwrap()
        .to_string()
}
