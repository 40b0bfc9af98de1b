//! A small MCP client of `/mcp`: what every command but `init`/`up` uses, like any app.

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value as Json};

/// Where the server is and how to authenticate.
pub struct Client {
    url: String,
    key: Option<String>,
    /// A login session (`cyfr login`), sent as `MCP-Session-Id` when no key is given.
    session: Option<String>,
    http: reqwest::blocking::Client,
}

/// A failure the server reported, with its JSON-RPC code.
#[derive(Debug)]
pub struct ServerError {
    /// JSON-RPC error code (e.g. -33004).
    pub code: i64,
    /// Its name (`insufficient_permissions`).
    pub name: String,
    /// The server's message.
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.name, self.code, self.message)
    }
}
impl std::error::Error for ServerError {}

impl Client {
    /// A client for `url` (with or without the `/mcp` suffix).
    pub fn new(url: &str, key: Option<String>) -> Result<Client> {
        let url = url.trim_end_matches('/');
        let url = if url.ends_with("/mcp") {
            url.to_string()
        } else {
            format!("{url}/mcp")
        };
        let http = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(960))
            .build()?;
        Ok(Client {
            url,
            key,
            session: None,
            http,
        })
    }

    /// The same client, sending `session` (a `cyfr login` session id) when it has no key.
    pub fn with_session(mut self, session: Option<String>) -> Client {
        self.session = session;
        self
    }

    /// The URL it talks to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls a tool and returns its structured result.
    pub fn call(&self, tool: &str, args: Json) -> Result<Json> {
        if self.key.is_none() && self.session.is_none() {
            return Err(anyhow!("no API key: pass --key or set CYFR_API_KEY (cyfr init printed the first admin key), or sign in with `cyfr login`"));
        }
        self.send(tool, args)
    }

    /// Calls a tool that runs without credentials (`session.device-init`, `device-poll`).
    pub fn call_anonymous(&self, tool: &str, args: Json) -> Result<Json> {
        self.send(tool, args)
    }

    fn send(&self, tool: &str, args: Json) -> Result<Json> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": tool, "arguments": args } });
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-11-25");
        // A key wins; a login session goes as MCP-Session-Id, the way CYFR's CLI sends it.
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        } else if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        let resp = req.json(&body).send().with_context(|| {
            format!("cannot reach cyfr at {} (is `cyfr up` running?)", self.url)
        })?;
        let status = resp.status();
        let v: Json = resp
            .json()
            .with_context(|| format!("cyfr answered HTTP {status} without JSON"))?;
        if let Some(e) = v.get("error") {
            return Err(ServerError {
                code: e.get("code").and_then(Json::as_i64).unwrap_or(0),
                name: e
                    .pointer("/data/name")
                    .and_then(Json::as_str)
                    .unwrap_or("error")
                    .to_string(),
                message: e
                    .get("message")
                    .and_then(Json::as_str)
                    .unwrap_or("")
                    .to_string(),
            }
            .into());
        }
        let result = v
            .get("result")
            .cloned()
            .ok_or_else(|| anyhow!("cyfr answered without a result"))?;
        let content = result
            .get("structuredContent")
            .cloned()
            .or_else(|| {
                result
                    .pointer("/content/0/text")
                    .and_then(Json::as_str)
                    .and_then(|t| serde_json::from_str(t).ok())
            })
            .unwrap_or(Json::Null);
        if result.get("isError").and_then(Json::as_bool) == Some(true) {
            return Err(ServerError {
                code: content
                    .pointer("/error/code")
                    .and_then(Json::as_i64)
                    .unwrap_or(0),
                name: content
                    .pointer("/error/name")
                    .and_then(Json::as_str)
                    .unwrap_or("tool_error")
                    .to_string(),
                message: content
                    .pointer("/error/message")
                    .and_then(Json::as_str)
                    .unwrap_or("the tool failed")
                    .to_string(),
            }
            .into());
        }
        Ok(content)
    }
}
