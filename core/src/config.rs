//! Router configuration, read from Spin variables (or Worker vars) by the entry point.

use crate::ipallow::NetList;

/// What the router needs to know about its deployment.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where component runs are dispatched (`http://host.cyfr.internal` when embedded).
    pub host_url: String,
    /// Proxies whose `X-Forwarded-For` is believed. Empty: the header is ignored.
    pub trusted_proxies: NetList,
    /// Browser origins allowed to call `/mcp` (`*` allows any). Loopback origins are always allowed.
    pub allowed_origins: Vec<String>,
    /// How long an idle MCP session lives.
    pub session_ttl_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host_url: "http://host.cyfr.internal".into(),
            trusted_proxies: NetList::default(),
            allowed_origins: Vec::new(),
            session_ttl_ms: 24 * 3_600_000,
        }
    }
}

impl Config {
    /// Builds the config from a variable lookup (`host_url`, `trusted_proxies`,
    /// `allowed_origins`, `session_ttl_hours`); missing variables keep their defaults.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let mut c = Config::default();
        if let Some(v) = get("host_url").filter(|v| !v.is_empty()) {
            c.host_url = v.trim_end_matches('/').to_string();
        }
        if let Some(v) = get("trusted_proxies").filter(|v| !v.trim().is_empty()) {
            c.trusted_proxies = NetList::parse(&v).map_err(|e| format!("variable trusted_proxies: {e}"))?;
        }
        if let Some(v) = get("allowed_origins") {
            c.allowed_origins = v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        }
        if let Some(v) = get("session_ttl_hours").filter(|v| !v.is_empty()) {
            let h: u64 = v.parse().map_err(|_| format!("variable session_ttl_hours: `{v}` is not a whole number"))?;
            c.session_ttl_ms = h.max(1) * 3_600_000;
        }
        Ok(c)
    }

    /// Whether a browser `Origin` may call us: configured origins, or loopback ones.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        if self.allowed_origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin)) {
            return true;
        }
        let rest = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
        let Some(rest) = rest else { return false };
        let host = if rest.starts_with('[') {
            rest.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
        } else {
            rest.split(':').next().unwrap_or("").to_string()
        };
        matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_origins_pass_and_foreign_ones_do_not() {
        let c = Config::default();
        assert!(c.origin_allowed("http://localhost:3000"));
        assert!(c.origin_allowed("http://127.0.0.1"));
        assert!(c.origin_allowed("http://[::1]:8080"));
        assert!(!c.origin_allowed("https://evil.example"));
        assert!(!c.origin_allowed("http://localhost.evil.example"));
        assert!(!c.origin_allowed("null"));
        let c = Config { allowed_origins: vec!["https://app.example.com".into()], ..Config::default() };
        assert!(c.origin_allowed("https://app.example.com"));
        assert!(!c.origin_allowed("https://app.example.com.evil.example"));
    }
}
