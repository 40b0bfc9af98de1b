//! Host policy: the limits a component runs under. Defaults from the guide.

use crate::units::format_duration_ms;
use serde_json::{json, Value as Json};

/// The one `allowed_tools` matcher: `tool.action` exactly, or `tool.*`; nothing else.
pub fn tool_allowed(allowed: &[String], tool: &str, action: &str) -> bool {
    allowed.iter().any(|entry| match entry.split_once('.') {
        Some((t, "*")) => t == tool,
        Some((t, a)) => t == tool && a == action,
        None => false,
    })
}

/// The effective policy of a component.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Domains a catalyst may reach (deny-all when empty).
    pub allowed_domains: Vec<String>,
    /// HTTP methods allowed.
    pub allowed_methods: Vec<String>,
    /// Requests per window, per user per component.
    pub rate_limit: crate::units::Rate,
    /// Wall-clock limit in ms.
    pub timeout_ms: u64,
    /// Linear memory cap.
    pub max_memory_bytes: u64,
    /// Input size cap.
    pub max_request_size: u64,
    /// Output size cap.
    pub max_response_size: u64,
    /// MCP tools a formula may call (deny-all when empty).
    pub allowed_tools: Vec<String>,
    /// Optional finer egress rules, `METHOD host/path-prefix`; when set, a request must match one.
    pub allowed_requests: Vec<String>,
    /// Private, loopback or link-local networks (CIDRs) a catalyst may reach anyway.
    pub allowed_private_ips: Vec<String>,
    /// Outbound HTTP requests one execution may make (its own budget, apart from `rate_limit`).
    pub max_outbound_requests: u64,
    /// CYFR's storage paths a formula may use; kept and shown (cyfr has no storage tool yet).
    pub allowed_storage_paths: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed_domains: Vec::new(),
            allowed_methods: ["GET", "POST", "PUT", "DELETE", "PATCH"]
                .map(String::from)
                .to_vec(),
            rate_limit: crate::units::Rate {
                requests: 100,
                window_ms: 60_000,
            },
            timeout_ms: 30_000,
            max_memory_bytes: 64 << 20,
            max_request_size: 1 << 20,
            max_response_size: 5 << 20,
            allowed_tools: Vec::new(),
            allowed_requests: Vec::new(),
            allowed_private_ips: Vec::new(),
            max_outbound_requests: 100,
            allowed_storage_paths: Vec::new(),
        }
    }
}

impl Policy {
    /// The JSON form reported as `policy_applied`.
    pub fn to_json(&self) -> Json {
        json!({
            "allowed_domains": self.allowed_domains,
            "allowed_methods": self.allowed_methods,
            "rate_limit": { "requests": self.rate_limit.requests, "window": format_duration_ms(self.rate_limit.window_ms) },
            "timeout": format_duration_ms(self.timeout_ms),
            "max_memory_bytes": self.max_memory_bytes,
            "max_request_size": self.max_request_size,
            "max_response_size": self.max_response_size,
            "allowed_tools": self.allowed_tools,
            "allowed_requests": self.allowed_requests,
            "allowed_private_ips": self.allowed_private_ips,
            "max_outbound_requests": self.max_outbound_requests,
            "allowed_storage_paths": self.allowed_storage_paths,
        })
    }

    /// The egress part, as the host enforces it.
    pub fn egress(&self) -> crate::host_api::Egress {
        crate::host_api::Egress {
            allowed_domains: self.allowed_domains.clone(),
            allowed_methods: self.allowed_methods.clone(),
            rules: self.allowed_requests.clone(),
            allowed_private_ips: self.allowed_private_ips.clone(),
            max_request_bytes: self.max_request_size,
            max_response_bytes: self.max_response_size,
            max_requests: self.max_outbound_requests,
        }
    }
}

/// Every policy field, in the guide's order.
pub const FIELDS: &[&str] = &[
    "allowed_domains",
    "allowed_methods",
    "rate_limit",
    "timeout",
    "max_memory_bytes",
    "max_request_size",
    "max_response_size",
    "allowed_tools",
    "allowed_requests",
    "allowed_private_ips",
    "max_outbound_requests",
    "allowed_storage_paths",
];

/// Fields whose value is a list of strings.
const LIST_FIELDS: &[&str] = &[
    "allowed_domains",
    "allowed_methods",
    "allowed_tools",
    "allowed_requests",
    "allowed_private_ips",
    "allowed_storage_paths",
];

/// A field's value as CYFR's `update_field` sends it — always a string — read as the type
/// the field holds: a list from its JSON text (`"[\"a.com\"]"`) or as comma-separated
/// entries (`"a.com,b.com"`), `rate_limit` from its JSON object text, integers from digits.
/// Values that are not strings, and strings of string fields, pass unchanged.
pub fn coerce(field: &str, v: Json) -> Json {
    let Json::String(s) = &v else { return v };
    let t = s.trim();
    if LIST_FIELDS.contains(&field) {
        return match serde_json::from_str::<Json>(t) {
            Ok(list @ Json::Array(_)) => list,
            _ => Json::Array(
                t.split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(|e| Json::String(e.into()))
                    .collect(),
            ),
        };
    }
    match field {
        "rate_limit" if t.starts_with('{') => serde_json::from_str(t).unwrap_or(v),
        "max_memory_bytes" | "max_request_size" | "max_response_size" | "max_outbound_requests" => {
            t.parse::<u64>().map(Json::from).unwrap_or(v)
        }
        _ => v,
    }
}

/// An `allowed_domains` entry: `api.example.com`, `*.example.com`, optionally `:port`.
/// IP addresses are refused: an allowlist names hosts, and private addresses have their
/// own field (`allowed_private_ips`).
fn check_domain(d: &str) -> Result<(), String> {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port {
        if !p.parse::<u16>().is_ok_and(|n| n > 0) {
            return Err(format!("`{d}`: the port must be 1-65535"));
        }
    }
    let bare = host.strip_prefix("*.").unwrap_or(host);
    let labels_ok = !bare.is_empty()
        && !bare.contains('*')
        && bare
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !labels_ok {
        return Err(format!("`{d}` is not a domain or `*.domain` wildcard"));
    }
    // A last label of digits (or hex) makes it an IP address to URL parsers.
    let last = bare.rsplit('.').next().unwrap_or("");
    if last.chars().all(|c| c.is_ascii_digit())
        || last.starts_with("0x")
        || bare.parse::<std::net::IpAddr>().is_ok()
    {
        return Err(format!("`{d}` is an IP address; name hosts in allowed_domains and put private networks in allowed_private_ips"));
    }
    Ok(())
}

/// Caps no policy may exceed, whatever an admin sets.
const MAX_TIMEOUT_MS: u64 = 15 * 60_000;
/// Largest `max_memory_bytes` a policy may set; the host sizes its instance slots to it.
pub const MAX_MEMORY_BYTES: u64 = 1 << 30;

fn string_list(field: &str, v: &Json) -> Result<Vec<String>, String> {
    v.as_array()
        .filter(|a| a.iter().all(Json::is_string))
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .map(String::from)
                .collect()
        })
        .ok_or_else(|| format!("`{field}` must be an array of strings, e.g. [\"api.example.com\"]"))
}

/// Known upper-case HTTP methods, given in either case.
fn methods(field: &str, v: &Json) -> Result<Vec<String>, String> {
    let list = string_list(field, v)?;
    let known = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
    let list: Vec<String> = list.into_iter().map(|m| m.to_ascii_uppercase()).collect();
    if let Some(m) = list.iter().find(|m| !known.contains(&m.as_str())) {
        return Err(format!(
            "`{m}` is not an HTTP method cyfr allows ({})",
            known.join(", ")
        ));
    }
    Ok(list)
}

/// A duration like "30s", at most [`MAX_TIMEOUT_MS`].
fn timeout_ms(v: &Json) -> Result<u64, String> {
    let ms = match v {
        Json::String(s) => crate::units::parse_duration_ms(s)?,
        _ => return Err("`timeout` must be a string like \"30s\"".into()),
    };
    if ms > MAX_TIMEOUT_MS {
        return Err(format!(
            "`timeout` may be at most {}m",
            MAX_TIMEOUT_MS / 60_000
        ));
    }
    Ok(ms)
}

/// Rules `METHOD host/path-prefix`.
fn requests(field: &str, v: &Json) -> Result<Vec<String>, String> {
    let list = string_list(field, v)?;
    for r in &list {
        let (method, target) = r
            .split_once(' ')
            .ok_or_else(|| format!("`{r}` must look like \"POST api.example.com/v1/path\""))?;
        let known = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
        if !known.contains(&method)
            || target.is_empty()
            || target.contains("://")
            || target.starts_with('/')
        {
            return Err(format!("`{r}` must look like \"POST api.example.com/v1/path\" (upper-case method, host, optional path prefix)"));
        }
    }
    Ok(list)
}

impl Policy {
    /// Sets one field from its JSON value, checking it. Unknown fields are refused.
    pub fn set_field(&mut self, field: &str, v: &Json) -> Result<(), String> {
        use crate::units::Rate;
        // Sizes are read the same for every size field; the message names the field.
        let parse_size =
            |v: &Json| crate::units::parse_size(v).map_err(|e| format!("`{field}`: {e}"));
        match field {
            "allowed_domains" => {
                let list = string_list(field, v)?;
                for d in &list {
                    check_domain(d)?;
                }
                self.allowed_domains = list.into_iter().map(|d| d.to_ascii_lowercase()).collect();
            }
            "allowed_methods" => self.allowed_methods = methods(field, v)?,
            "rate_limit" => self.rate_limit = Rate::parse(v)?,
            "timeout" => self.timeout_ms = timeout_ms(v)?,
            "max_memory_bytes" => {
                let n = parse_size(v)?;
                if !(1 << 20..=MAX_MEMORY_BYTES).contains(&n) {
                    return Err("`max_memory_bytes` must be between 1MB and 1GB".into());
                }
                self.max_memory_bytes = n;
            }
            "max_request_size" => self.max_request_size = parse_size(v)?,
            "max_response_size" => self.max_response_size = parse_size(v)?,
            "allowed_tools" => {
                let list = string_list(field, v)?;
                if let Some(t) = list.iter().find(|t| !t.contains('.')) {
                    return Err(format!("`{t}` must be tool.action or tool.*"));
                }
                self.allowed_tools = list;
            }
            "allowed_requests" => self.allowed_requests = requests(field, v)?,
            "allowed_private_ips" => {
                let list = string_list(field, v)?;
                crate::ipallow::NetList::parse(&list.join(","))
                    .map_err(|e| format!("`allowed_private_ips`: {e}"))?;
                self.allowed_private_ips = list;
            }
            "max_outbound_requests" => {
                self.max_outbound_requests = v
                    .as_u64()
                    .filter(|n| *n <= 10_000)
                    .ok_or("`max_outbound_requests` must be an integer from 0 to 10000")?;
            }
            "allowed_storage_paths" => {
                let list = string_list(field, v)?;
                if let Some(p) = list.iter().find(|p| p.split('/').any(|s| s == "..")) {
                    return Err(format!("`{p}`: storage paths may not hold `..`"));
                }
                self.allowed_storage_paths = list;
            }
            other => {
                return Err(format!(
                    "unknown policy field `{other}`; fields are: {}",
                    FIELDS.join(", ")
                ))
            }
        }
        Ok(())
    }

    /// Applies stored fields over the defaults.
    pub fn from_fields(fields: &serde_json::Map<String, Json>) -> Result<Policy, String> {
        let mut p = Policy::default();
        for (k, v) in fields {
            p.set_field(k, v)?;
        }
        Ok(p)
    }
}

/// Loads the stored fields for a reference key (`type:ns.name:version` or `type:ns.name`).
pub async fn stored_fields(
    db: &impl crate::db::Db,
    key: &str,
) -> crate::errors::Result<Option<serde_json::Map<String, Json>>> {
    let s = stored_fields_stmt(key);
    let rows = db.query(&s.sql, &s.params).await?;
    Ok(rows
        .first()
        .and_then(|r| serde_json::from_str(&r.text("fields")).ok()))
}

/// The read of [`stored_fields`], to send ahead.
pub fn stored_fields_stmt(key: &str) -> crate::db::Stmt {
    crate::db::Stmt::new(
        "SELECT fields FROM policies WHERE reference = ?",
        vec![key.into()],
    )
}

/// The policy a component runs under: a version-less policy for the component, then the
/// exact version's fields over it, over the defaults. One read, [`effective_stmt`].
pub async fn effective(
    db: &impl crate::db::Db,
    c: &crate::registry::Component,
) -> crate::errors::Result<Policy> {
    let s = effective_stmt(unversioned(c));
    let rows = db.query(&s.sql, &s.params).await?;
    effective_of(&rows, c)
}

/// The effective policy of `c` from rows of `(reference, fields)` holding (at least) its
/// version-less and its version's stored policies: [`effective`]'s rule, for rows read
/// another way (a component tool's, read with its component).
pub fn effective_of(
    rows: &crate::db::Rows,
    c: &crate::registry::Component,
) -> crate::errors::Result<Policy> {
    let unversioned = unversioned(c);
    let stored = |key: &str| {
        rows.iter()
            .find(|r| r.text("reference") == key)
            .and_then(|r| {
                serde_json::from_str::<serde_json::Map<String, Json>>(&r.text("fields")).ok()
            })
            .unwrap_or_default()
    };
    let mut fields = stored(unversioned);
    fields.extend(stored(&c.reference));
    Policy::from_fields(&fields).map_err(|e| {
        crate::errors::Error::internal(format!("stored policy for {} is invalid: {e}", c.reference))
    })
}

/// The reference without exactly its version (not "up to the last `:`", which a version
/// that contains one would shift).
fn unversioned(c: &crate::registry::Component) -> &str {
    c.reference
        .strip_suffix(&format!(":{}", c.version))
        .unwrap_or_default()
}

/// The read of [`effective`]: the version-less policy of `unversioned`
/// (`type:namespace.name`) and the policies of each of its versions (`…:version`; the range
/// `[key:, key;)` holds exactly those, `;` sorting right after `:`), on the primary key.
pub fn effective_stmt(unversioned: &str) -> crate::db::Stmt {
    crate::db::Stmt::new(
        "SELECT reference, fields FROM policies WHERE reference = ?1 OR (reference >= ?1 || ':' AND reference < ?1 || ';')",
        vec![unversioned.into()],
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn allowed_tools_match_exactly_or_by_tool_wildcard_and_nothing_else() {
        let allowed: Vec<String> = ["component.*", "key.create"].map(String::from).to_vec();
        assert!(super::tool_allowed(&allowed, "component", "search"));
        assert!(super::tool_allowed(&allowed, "key", "create"));
        assert!(!super::tool_allowed(&allowed, "key", "revoke"));
        assert!(!super::tool_allowed(&allowed, "components", "search"));
        assert!(
            !super::tool_allowed(&["*".to_string()], "key", "create"),
            "no global wildcard"
        );
        assert!(
            !super::tool_allowed(&[], "system", "status"),
            "deny by default"
        );
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_checked_and_unknown_ones_refused() {
        let mut p = Policy::default();
        p.set_field("timeout", &json!("60s")).unwrap();
        assert_eq!(p.timeout_ms, 60_000);
        p.set_field(
            "allowed_domains",
            &json!(["API.example.com", "*.stripe.com"]),
        )
        .unwrap();
        assert_eq!(p.allowed_domains, vec!["api.example.com", "*.stripe.com"]);
        p.set_field("max_response_size", &json!("5MB")).unwrap();
        assert_eq!(p.max_response_size, 5 << 20);
        assert!(p.set_field("timeout", &json!(60)).is_err());
        assert!(p
            .set_field("allowed_domains", &json!(["exa mple.com"]))
            .is_err());
        assert!(p.set_field("allowed_domains", &json!(["*"])).is_err());
        assert!(p
            .set_field("allowed_domains", &json!(["127.0.0.1"]))
            .is_err());
        assert!(p.set_field("allowed_domains", &json!(["0x7f.1"])).is_err());
        assert!(p
            .set_field("allowed_domains", &json!(["api.example.com:0"]))
            .is_err());
        p.set_field(
            "allowed_domains",
            &json!(["api.example.com:8443", "*.example.org"]),
        )
        .unwrap();
        assert!(p.set_field("allowed_methods", &json!(["CONNECT"])).is_err());
        assert!(p
            .set_field("colour", &json!("red"))
            .unwrap_err()
            .contains("unknown policy field"));
    }
}
