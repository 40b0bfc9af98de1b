//! Router configuration, read from Spin variables (or Worker vars) by the entry point.

use crate::ipallow::NetList;

/// MCP protocol versions we speak; the first is the one we prefer.
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// What `initialize` and `server/discover` tell a client's model about this server.
pub const INSTRUCTIONS: &str = "cyfr runs sandboxed WebAssembly components. Call the `execution` tool with action `run` and a component reference; `component` searches and inspects the registry.";

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
    /// Per-session sealed-box encryption of secrets (off unless enabled).
    pub session_encryption: bool,
    /// Development mode: secrets may travel over plain HTTP from non-loopback clients.
    pub dev_mode: bool,
    /// Remote hosts (`hosts` variable, `URL#KEY,…`); empty means `host_url` in-process.
    pub hosts: Vec<crate::host_api::HostTarget>,
    /// Shared HS256 key for the tokens sent to remote hosts (`host_token_key`).
    pub host_token_key: Option<String>,
    /// The URL remote hosts reach this router at, for formulas' callbacks (`router_url`).
    /// Without it, formulas can only call back to an in-process router.
    pub router_url: Option<String>,
    /// How long finished runs are kept (`execution_retention_days`, default 30; 0 keeps
    /// them forever).
    pub execution_retention_ms: u64,
    /// The key-encryption keys (`master_keys` variable), current first; `None` when unset.
    pub kms: Option<std::sync::Arc<crate::kms::LocalKms>>,
    /// The schema version the runtime vouches for (`schema_version`): a runner that migrated
    /// the database itself (`cyfr up`), or a deployment that applies `migrations/` before it
    /// serves, saves every request the migration check. `None`: each request checks.
    pub schema_version: Option<i64>,
    /// The shared key JWT bearers are verified with (`jwt_signing_key`, 32+ bytes); `None`:
    /// JWTs are refused.
    pub jwt_key: Option<crate::jwt::JwtKey>,
    /// Clock skew allowed on a JWT's `exp` and `nbf` (`jwt_clock_skew_seconds`, default 60,
    /// at most 300).
    pub jwt_clock_skew_s: u64,
    /// The rate limit of each JWT or session user, per `sub` (`user_rate_limit`, e.g.
    /// `600/1m`); `None`: unlimited, like a key without one.
    pub user_rate_limit: Option<crate::units::Rate>,
    /// How long audit rows are kept (`audit_retention_days`, default 365; 0 keeps them
    /// forever). Pruning keeps the chain verifiable (see `audit::seal`).
    pub audit_retention_ms: u64,
    /// Who may sign in (`allowed_users`, CYFR_ALLOWED_USER: comma-separated user ids or
    /// emails); empty: anyone an admin approves.
    pub allowed_users: Vec<String>,
    /// OAuth device-flow providers configured (`github`, `google`, `oidc`), by the presence
    /// of their client id variables.
    pub login_providers: Vec<LoginProvider>,
    /// Which tools `/mcp` shows and accepts (`mcp_tools`: `all`, the default, `admin` or
    /// `components`).
    pub mcp_tools: ToolFamilies,
    /// SHA-256 hex of the one admin key an edge deployment may bootstrap itself with
    /// (`bootstrap_admin_key`, from `cyfr init --edge`): honoured only while the database
    /// holds no key at all (`keys::bootstrap`).
    pub bootstrap_admin_key: Option<String>,
}

/// The families of MCP tools an endpoint serves: cyfr's administrative tools, the
/// registered components as tools of their own, or both. A tool of a family the endpoint
/// hides is unknown there, for listing and calling alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ToolFamilies {
    /// Both (`all`): for apps that manage cyfr and run components.
    #[default]
    All,
    /// The administrative tools only (`admin`).
    Admin,
    /// The components only (`components`): for agents that just use them.
    Components,
}

impl ToolFamilies {
    /// `all`, `admin` or `components`.
    pub fn parse(s: &str) -> Option<ToolFamilies> {
        match s.trim() {
            "" | "all" => Some(ToolFamilies::All),
            "admin" => Some(ToolFamilies::Admin),
            "components" => Some(ToolFamilies::Components),
            _ => None,
        }
    }
    /// Whether the administrative tools are served.
    pub fn admin(self) -> bool {
        self != ToolFamilies::Components
    }
    /// Whether components are served as tools.
    pub fn components(self) -> bool {
        self != ToolFamilies::Admin
    }
    /// What the agents' endpoint (`/mcp/agent`) serves: the components alone, when this
    /// server serves them at all.
    pub fn for_agents(self) -> Option<ToolFamilies> {
        self.components().then_some(ToolFamilies::Components)
    }
}

/// An identity provider whose device flow `cyfr login` runs (RFC 8628).
#[derive(Clone)]
pub struct LoginProvider {
    /// `github`, `google` or `oidc`.
    pub name: &'static str,
    /// The OAuth client id (`{name}_client_id`).
    pub client_id: String,
    /// The OAuth client secret (`{name}_client_secret`), if the client has one; never printed.
    pub client_secret: Option<zeroize::Zeroizing<String>>,
    /// The OIDC issuer (`oidc_issuer`, no trailing `/`): https, or http on loopback only.
    pub issuer: Option<String>,
}

impl std::fmt::Debug for LoginProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginProvider")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// Whether `url` is https, or http to a loopback host (a test or local issuer).
fn issuer_allowed(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl LoginProvider {
    /// The authorities (`host[:port]`) its device flow reaches: what the platform must let
    /// the router call for it, and nothing more (an OIDC issuer's endpoints must stay on
    /// its origin).
    pub fn authorities(&self) -> Vec<String> {
        match self.name {
            "github" => vec!["github.com".into(), "api.github.com".into()],
            "google" => vec![
                "oauth2.googleapis.com".into(),
                "openidconnect.googleapis.com".into(),
            ],
            _ => self
                .issuer
                .as_deref()
                .and_then(|i| i.split_once("://"))
                .map(|(_, rest)| vec![rest.split('/').next().unwrap_or("").to_string()])
                .unwrap_or_default(),
        }
    }
}

/// Every variable `Config::from_lookup` reads: what an adapter passes through and what
/// `spin.toml` declares (a test keeps them equal). Secrets among them never print.
pub const VARIABLES: &[&str] = &[
    "host_url",
    "trusted_proxies",
    "allowed_origins",
    "session_ttl_hours",
    "session_encryption",
    "dev_mode",
    "master_keys",
    "hosts",
    "host_key",
    "host_token_key",
    "router_url",
    "execution_retention_days",
    "schema_version",
    "jwt_signing_key",
    "jwt_clock_skew_seconds",
    "user_rate_limit",
    "audit_retention_days",
    "allowed_users",
    "github_client_id",
    "google_client_id",
    "oidc_client_id",
    "mcp_tools",
    "github_client_secret",
    "google_client_secret",
    "oidc_client_secret",
    "oidc_issuer",
    "sqlite_batch",
    "bootstrap_admin_key",
];

/// A variable no deployment declares: the runner of `cyfr up` answers it with every
/// [`VARIABLES`] value it has, as one JSON object ([`bundle`]), so a router instance reads its
/// configuration in one host call instead of one per name. Spin has no such variable (the
/// router then reads each name).
pub const BUNDLE_VARIABLE: &str = "all_variables";

/// The [`BUNDLE_VARIABLE`] value: each of [`VARIABLES`] that `get` has, as a JSON object.
pub fn bundle(get: impl Fn(&str) -> Option<String>) -> String {
    let set: serde_json::Map<String, serde_json::Value> = VARIABLES
        .iter()
        .filter_map(|n| get(n).map(|v| (n.to_string(), serde_json::Value::String(v))))
        .collect();
    serde_json::Value::Object(set).to_string()
}

/// The variables of a [`bundle`], by name; `None` if it is not one.
pub fn unbundle(text: &str) -> Option<std::collections::HashMap<String, String>> {
    serde_json::from_str(text).ok()
}

impl Config {
    /// The configured provider `name`, if any.
    pub fn login_provider(&self, name: &str) -> Option<&LoginProvider> {
        self.login_providers.iter().find(|p| p.name == name)
    }
}

fn flag(v: Option<String>) -> bool {
    v.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host_url: "http://host.cyfr.internal".into(),
            trusted_proxies: NetList::default(),
            allowed_origins: Vec::new(),
            session_ttl_ms: 24 * 3_600_000,
            session_encryption: false,
            execution_retention_ms: 30 * 86_400_000,
            dev_mode: false,
            kms: None,
            hosts: Vec::new(),
            host_token_key: None,
            router_url: None,
            schema_version: None,
            jwt_key: None,
            jwt_clock_skew_s: 60,
            user_rate_limit: None,
            audit_retention_ms: 365 * 86_400_000,
            allowed_users: Vec::new(),
            login_providers: Vec::new(),
            mcp_tools: ToolFamilies::All,
            bootstrap_admin_key: None,
        }
    }
}

impl Config {
    /// Builds the config from a variable lookup (`host_url`, `trusted_proxies`,
    /// `allowed_origins`, `session_ttl_hours`, `session_encryption`, `dev_mode`,
    /// `master_keys`, `hosts` (or `host_url` + `host_key`), `host_token_key`, `router_url`, `execution_retention_days`,
    /// `schema_version`, `jwt_signing_key`, `jwt_clock_skew_seconds`, `user_rate_limit`, `audit_retention_days`, `allowed_users`, `mcp_tools`, `bootstrap_admin_key`, and for each
    /// of `github`, `google`, `oidc` `{name}_client_id` and `{name}_client_secret`, with
    /// `oidc_issuer`);
    /// missing variables keep their defaults.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let mut c = Config::default();
        if let Some(v) = get("mcp_tools") {
            c.mcp_tools = ToolFamilies::parse(&v).ok_or_else(|| {
                format!("variable mcp_tools: `{v}` is not all, admin or components")
            })?;
        }
        if let Some(v) = get("host_url").filter(|v| !v.is_empty()) {
            c.host_url = v.trim_end_matches('/').to_string();
        }
        if let Some(v) = get("trusted_proxies").filter(|v| !v.trim().is_empty()) {
            c.trusted_proxies =
                NetList::parse(&v).map_err(|e| format!("variable trusted_proxies: {e}"))?;
        }
        if let Some(v) = get("allowed_origins") {
            c.allowed_origins = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(v) = get("session_ttl_hours").filter(|v| !v.is_empty()) {
            let h: u64 = v
                .parse()
                .map_err(|_| format!("variable session_ttl_hours: `{v}` is not a whole number"))?;
            c.session_ttl_ms = h.max(1) * 3_600_000;
        }
        if let Some(v) = get("execution_retention_days").filter(|v| !v.trim().is_empty()) {
            let d: u64 = v.trim().parse().map_err(|_| format!("variable execution_retention_days: `{v}` is not a whole number (0 keeps runs forever)"))?;
            c.execution_retention_ms = d
                .checked_mul(86_400_000)
                .ok_or("variable execution_retention_days: too large")?;
        }
        // One remote host can also be `host_url` + `host_key` (what spin.toml suggests, its
        // origin being the manifest's templated outbound host); a remote `host_url` alone
        // would be sent runs without a token, which every `cyfr host` refuses.
        let single = get("host_key")
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .map(|k| format!("{}#{k}", c.host_url));
        let hosts = get("hosts").filter(|v| !v.trim().is_empty());
        if hosts.is_none() && single.is_none() && c.host_url != Config::default().host_url {
            return Err(format!(
                "variable host_url: the remote host `{}` needs host_key (the public key `cyfr host` prints) and host_token_key, or list it in hosts as URL#KEY",
                c.host_url
            ));
        }
        if let Some(v) = hosts.or(single) {
            c.hosts = crate::host_api::HostTarget::parse_list(&v)
                .map_err(|e| format!("variable hosts: {e}"))?;
            let key = get("host_token_key").filter(|k| k.len() >= 32).ok_or(
                "variable host_token_key: remote hosts need a shared key of at least 32 characters",
            )?;
            c.host_token_key = Some(key);
        }
        if let Some(v) = get("router_url").filter(|v| !v.trim().is_empty()) {
            let v = v.trim().trim_end_matches('/').to_string();
            if !(v.starts_with("http://") || v.starts_with("https://")) {
                return Err(format!(
                    "variable router_url: `{v}` must start with http:// or https://"
                ));
            }
            c.router_url = Some(v);
        }
        if let Some(v) = get("schema_version").filter(|v| !v.trim().is_empty()) {
            c.schema_version =
                Some(v.trim().parse().map_err(|_| {
                    format!("variable schema_version: `{v}` is not a whole number")
                })?);
        }
        if let Some(v) = get("jwt_signing_key").filter(|v| !v.is_empty()) {
            c.jwt_key = Some(crate::jwt::JwtKey::new(&v)?);
        }
        if let Some(v) = get("jwt_clock_skew_seconds").filter(|v| !v.trim().is_empty()) {
            let s: u64 = v.trim().parse().map_err(|_| {
                format!("variable jwt_clock_skew_seconds: `{v}` is not a whole number")
            })?;
            if s > crate::jwt::MAX_SKEW_S {
                return Err(format!(
                    "variable jwt_clock_skew_seconds: {s} is over the maximum of {}",
                    crate::jwt::MAX_SKEW_S
                ));
            }
            c.jwt_clock_skew_s = s;
        }
        if let Some(v) = get("audit_retention_days").filter(|v| !v.trim().is_empty()) {
            let d: u64 = v.trim().parse().map_err(|_| {
                format!("variable audit_retention_days: `{v}` is not a whole number (0 keeps rows forever)")
            })?;
            c.audit_retention_ms = d
                .checked_mul(86_400_000)
                .ok_or("variable audit_retention_days: too large")?;
        }
        if let Some(v) = get("allowed_users") {
            c.allowed_users = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        let set = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let issuer = set("oidc_issuer").map(|v| v.trim_end_matches('/').to_string());
        if let Some(i) = &issuer {
            if !issuer_allowed(i) {
                return Err(format!(
                    "variable oidc_issuer: `{i}` must be an https:// URL (http:// only on loopback)"
                ));
            }
        }
        for name in ["github", "google", "oidc"] {
            let Some(client_id) = set(&format!("{name}_client_id")) else {
                continue;
            };
            if name == "oidc" && issuer.is_none() {
                return Err(
                    "variable oidc_client_id: set oidc_issuer (CYFR_OIDC_ISSUER) too".into(),
                );
            }
            c.login_providers.push(LoginProvider {
                name,
                client_id,
                client_secret: set(&format!("{name}_client_secret")).map(zeroize::Zeroizing::new),
                issuer: (name == "oidc").then(|| issuer.clone()).flatten(),
            });
        }
        if issuer.is_some() && c.login_provider("oidc").is_none() {
            return Err(
                "variable oidc_issuer: set oidc_client_id (CYFR_OIDC_CLIENT_ID) too".into(),
            );
        }
        if let Some(v) = get("user_rate_limit").filter(|v| !v.trim().is_empty()) {
            c.user_rate_limit = Some(
                crate::units::Rate::parse(&serde_json::Value::String(v.clone()))
                    .map_err(|e| format!("variable user_rate_limit: {e}"))?,
            );
        }
        if let Some(v) = get("bootstrap_admin_key").filter(|v| !v.trim().is_empty()) {
            let v = v.trim().to_ascii_lowercase();
            if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("variable bootstrap_admin_key: must be the SHA-256 (64 hex digits) of the admin key `cyfr init --edge` printed, never the key itself".into());
            }
            c.bootstrap_admin_key = Some(v);
        }
        c.session_encryption = flag(get("session_encryption"));
        c.dev_mode = flag(get("dev_mode"));
        if let Some(v) = get("master_keys").filter(|v| !v.trim().is_empty()) {
            let kms = crate::kms::LocalKms::from_variable(&v)
                .map_err(|e| format!("variable master_keys: {}", e.message))?;
            c.kms = Some(std::sync::Arc::new(kms));
        }
        Ok(c)
    }

    /// Whether a browser `Origin` may call us: configured origins, or loopback ones.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        if self
            .allowed_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
        {
            return true;
        }
        let rest = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        let Some(rest) = rest else { return false };
        let host = if rest.starts_with('[') {
            rest.split(']')
                .next()
                .map(|h| format!("{h}]"))
                .unwrap_or_default()
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
    fn a_bundle_carries_the_routers_variables_as_they_are() {
        let vars = std::collections::HashMap::from([
            ("allowed_origins", "https://a.example, https://b.example"),
            ("oidc_client_secret", "s3\"cret\nwith a newline"),
            ("not_a_router_variable", "x"),
        ]);
        let text = bundle(|n| vars.get(n).map(|v| v.to_string()));
        let all = unbundle(&text).expect("a bundle");
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all["oidc_client_secret"], "s3\"cret\nwith a newline");
        let c = Config::from_lookup(|n| all.get(n).cloned()).unwrap();
        assert_eq!(
            c.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(unbundle("not json"), None);
    }

    #[test]
    fn loopback_origins_pass_and_foreign_ones_do_not() {
        let c = Config::default();
        assert!(c.origin_allowed("http://localhost:3000"));
        assert!(c.origin_allowed("http://127.0.0.1"));
        assert!(c.origin_allowed("http://[::1]:8080"));
        assert!(!c.origin_allowed("https://evil.example"));
        assert!(!c.origin_allowed("http://localhost.evil.example"));
        assert!(!c.origin_allowed("null"));
        let c = Config {
            allowed_origins: vec!["https://app.example.com".into()],
            ..Config::default()
        };
        assert!(c.origin_allowed("https://app.example.com"));
        assert!(!c.origin_allowed("https://app.example.com.evil.example"));
    }

    #[test]
    fn execution_retention_defaults_to_30_days_and_reads_its_variable() {
        assert_eq!(Config::default().execution_retention_ms, 30 * 86_400_000);
        let c = Config::from_lookup(|n| (n == "execution_retention_days").then(|| "7".to_string()))
            .unwrap();
        assert_eq!(c.execution_retention_ms, 7 * 86_400_000);
        let c = Config::from_lookup(|n| (n == "execution_retention_days").then(|| "0".to_string()))
            .unwrap();
        assert_eq!(c.execution_retention_ms, 0);
        assert!(Config::from_lookup(
            |n| (n == "execution_retention_days").then(|| "a week".to_string())
        )
        .is_err());
    }

    fn lookup(vars: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_lookup(|n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn providers_need_their_client_id_and_an_oidc_issuer_must_be_https_or_loopback() {
        let c = lookup(&[
            ("github_client_id", "gh-id"),
            ("github_client_secret", "gh-secret-value"),
        ])
        .unwrap();
        let gh = c.login_provider("github").unwrap();
        assert_eq!(gh.client_id, "gh-id");
        assert!(c.login_provider("google").is_none());
        // The secret is held but never printed.
        assert!(!format!("{c:?}").contains("gh-secret-value"));
        let c = lookup(&[
            ("oidc_issuer", "http://127.0.0.1:9999/"),
            ("oidc_client_id", "cli"),
        ])
        .unwrap();
        assert_eq!(
            c.login_provider("oidc").unwrap().issuer.as_deref(),
            Some("http://127.0.0.1:9999")
        );
        for bad in [
            "http://auth.example.com",
            "http://127.0.0.1.evil.example",
            "ftp://x",
        ] {
            let e = lookup(&[("oidc_issuer", bad), ("oidc_client_id", "cli")]).unwrap_err();
            assert!(e.contains("https://"), "{bad}: {e}");
        }
        assert!(lookup(&[("oidc_issuer", "https://auth.example.com")]).is_err());
        assert!(lookup(&[("oidc_client_id", "cli")]).is_err());
        assert!(lookup(&[
            ("oidc_issuer", "https://auth.example.com"),
            ("oidc_client_id", "cli")
        ])
        .is_ok());
    }
}
