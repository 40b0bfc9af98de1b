//! The egress policy matcher: the one place that decides whether a catalyst may send a request
//! to a URL, and whether an address a name resolved to may be connected to.
//!
//! Checked, in this order, for the first request and again for every redirect hop:
//!
//! 1. **Scheme**: `http` or `https` only.
//! 2. **User info**: a URL with `user@` or `user:pass@` is refused (it hides the real host
//!    from a casual reader and has no use here).
//! 3. **Host**: URLs are parsed the WHATWG way (the `url` crate, as browsers do), so every
//!    spelling of an IPv4 address — `2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1` — becomes an IP
//!    literal; IP literals (v4 and v6) never match a domain entry and are refused. Host names
//!    are compared in lower case (IDNs as punycode), with one trailing dot removed; a name
//!    with an empty label, a numeric last label or characters outside `[a-z0-9_-]` is refused.
//! 4. **Domain**: `allowed_domains` entries are exact names or `*.example.com` wildcards; a
//!    wildcard matches any name ending in `.example.com` (any depth) and never `example.com`
//!    itself. An entry may name a port (`api.example.com:8443`).
//! 5. **Port**: the scheme's default port (80 for http, 443 for https), or the port an entry
//!    names. Any other port is allowed only when the address finally connected to lies in
//!    `allowed_private_ips` (an administrator who opened a private network for a catalyst
//!    chose those services, on whatever port they listen); see [`Policy::check_addr`].
//! 6. **Method**: upper-cased, must be in `allowed_methods`.
//! 7. **Rules**: when `rules` (`METHOD host[:port][/path-prefix]`) is non-empty a request must
//!    match one; the host part follows the domain rules above and the path prefix matches
//!    whole segments (`/v1/messages` matches `/v1/messages` and `/v1/messages/batches`, not
//!    `/v1/messages-x`), on the path as normalised by the URL parser (`..`, `%2e%2e` resolved);
//!    what a server could still decode into a separator (`%2f`, `..;`) is refused.
//!    No rule for the host and path: `domain_blocked`; a rule for them but not the method:
//!    `method_blocked`.
//!
//! After DNS resolution each address is classified ([`special_range`]): loopback, private
//! (RFC 1918, ULA), link-local (including 169.254.169.254), unspecified, CGNAT, multicast,
//! broadcast, documentation/benchmark/reserved ranges and every IPv6 form that embeds an IPv4
//! address (mapped, compatible, NAT64, 6to4, Teredo) are refused unless the address lies in
//! `allowed_private_ips` (an IPv4-mapped address is matched there only by its IPv4 form).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use url::{Host, Url};

/// A refusal or failure (its kind and a message for the guest): the host's one guest error
/// type, named for what it is here.
pub use crate::guest_error::GuestError as Denied;
/// Why a request was refused or failed: the host's one table of guest error types.
pub use crate::guest_error::Kind as ErrorKind;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// `*.suffix`: the suffix without `*.`.
    Wildcard(String),
}

impl Pattern {
    fn parse(text: &str) -> Option<Pattern> {
        let text = text.trim().to_ascii_lowercase();
        let text = text.strip_suffix('.').unwrap_or(&text).to_string();
        let (wild, bare) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, text),
        };
        if !valid_host_name(&bare) {
            return None;
        }
        Some(if wild {
            Pattern::Wildcard(bare)
        } else {
            Pattern::Exact(bare)
        })
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            Pattern::Exact(name) => host == name,
            Pattern::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|head| !head.is_empty()),
        }
    }
}

/// `host[:port]` → pattern and optional port.
fn parse_host_port(text: &str) -> Option<(Pattern, Option<u16>)> {
    match text.rsplit_once(':') {
        Some((host, port)) => Some((Pattern::parse(host)?, Some(port.parse().ok()?))),
        None => Some((Pattern::parse(text)?, None)),
    }
}

#[derive(Clone, Debug)]
struct Rule {
    method: String,
    host: Pattern,
    port: Option<u16>,
    /// Path prefix, starting with `/` (just `/` when the rule names none).
    path: String,
}

/// The egress policy of one execution, parsed from the wire form. Entries that do not parse
/// are dropped (and logged): a bad entry can only narrow what is allowed, never widen it.
#[derive(Clone, Debug)]
pub struct Policy {
    domains: Vec<(Pattern, Option<u16>)>,
    methods: Vec<String>,
    rules: Vec<Rule>,
    /// The wire form had rules (even if none of them parsed): a request must match one.
    rules_required: bool,
    private_allowed: Vec<IpNet>,
    /// Largest request body, in bytes (after `{{secret:…}}` substitution).
    pub max_request_bytes: u64,
    /// Largest response body (a fetch), or all streamed bytes of an execution together.
    pub max_response_bytes: u64,
    /// Outbound requests (each redirect hop counts) one execution may send.
    pub max_requests: u64,
}

/// A URL that passed [`Policy::check`]: where to connect and what to send.
#[derive(Clone, Debug)]
pub struct Target {
    /// The URL as parsed.
    pub url: Url,
    /// `true` for https.
    pub tls: bool,
    /// Lower-case host name without a trailing dot: DNS name, TLS server name, `Host` header.
    pub host: String,
    /// The port to connect to.
    pub port: u16,
    /// Whether the port is the scheme's default or named by the matching entry. If not, only
    /// an address inside `allowed_private_ips` may be connected to.
    pub port_allowed: bool,
    /// The upper-case method.
    pub method: String,
}

impl Target {
    /// The `Host` header value: the name, plus the port when it is not the default.
    pub fn host_header(&self) -> String {
        if self.port == default_port(self.tls) {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Path and query as sent on the request line.
    pub fn path_and_query(&self) -> String {
        let mut p = self.url.path().to_string();
        if let Some(q) = self.url.query() {
            p.push('?');
            p.push_str(q);
        }
        p
    }

    /// `scheme://host[:port]`, to tell whether a redirect changes origin.
    pub fn origin(&self) -> (bool, String, u16) {
        (self.tls, self.host.clone(), self.port)
    }
}

fn default_port(tls: bool) -> u16 {
    if tls {
        443
    } else {
        80
    }
}

/// A host name this policy can talk about: labels of `[a-z0-9_-]`, none empty, and a last
/// label that is not numeric (which some resolvers would read as an IPv4 address).
fn valid_host_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.iter().any(|l| {
        l.is_empty()
            || l.len() > 63
            || !l
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    }) {
        return false;
    }
    let last = labels[labels.len() - 1];
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || (last.starts_with("0x") && last[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    !numeric
}

impl Policy {
    /// Parses the wire form sent by the router.
    pub fn from_wire(egress: &cyfr_core::host_api::Egress) -> Policy {
        let mut domains = Vec::new();
        for d in &egress.allowed_domains {
            match parse_host_port(d) {
                Some(entry) => domains.push(entry),
                None => {
                    tracing::warn!(entry = %d, "ignoring an allowed_domains entry that is not a host name or *.wildcard")
                }
            }
        }
        let mut rules = Vec::new();
        for r in &egress.rules {
            let parsed = r.split_once(' ').and_then(|(method, target)| {
                let target = target.trim();
                let (hostport, path) = match target.find('/') {
                    Some(i) => (&target[..i], &target[i..]),
                    None => (target, "/"),
                };
                let (host, port) = parse_host_port(hostport)?;
                Some(Rule {
                    method: method.trim().to_ascii_uppercase(),
                    host,
                    port,
                    path: path.to_string(),
                })
            });
            match parsed {
                Some(rule) => rules.push(rule),
                None => {
                    tracing::warn!(rule = %r, "ignoring an egress rule that is not `METHOD host/path-prefix`")
                }
            }
        }
        let mut private_allowed = Vec::new();
        for net in &egress.allowed_private_ips {
            let net = net.trim();
            let parsed = net
                .parse::<IpNet>()
                .ok()
                .or_else(|| net.parse::<IpAddr>().ok().map(IpNet::from));
            match parsed {
                Some(n) => private_allowed.push(n),
                None => {
                    tracing::warn!(entry = %net, "ignoring an allowed_private_ips entry that is not an IP or CIDR")
                }
            }
        }
        Policy {
            domains,
            methods: egress
                .allowed_methods
                .iter()
                .map(|m| m.trim().to_ascii_uppercase())
                .collect(),
            rules,
            rules_required: !egress.rules.is_empty(),
            private_allowed,
            max_request_bytes: egress.max_request_bytes,
            max_response_bytes: egress.max_response_bytes,
            max_requests: egress.max_requests,
        }
    }

    /// Checks a request's method and URL before anything is resolved or sent.
    pub fn check(&self, method: &str, url: &Url) -> Result<Target, Denied> {
        use ErrorKind::*;
        let (tls, host) = url_host(url)?;
        let port = url.port_or_known_default().unwrap_or(default_port(tls));
        let matching: Vec<Option<u16>> = self
            .domains
            .iter()
            .filter(|(p, _)| p.matches(&host))
            .map(|(_, port)| *port)
            .collect();
        if matching.is_empty() {
            return Err(Denied::new(
                DomainBlocked,
                format!("{host} is not in allowed_domains"),
            ));
        }
        let port_allowed = matching
            .iter()
            .any(|p| p.map_or(port == default_port(tls), |named| named == port));
        if !port_allowed && self.private_allowed.is_empty() {
            return Err(Denied::new(
                DomainBlocked,
                format!(
                    "port {port} of {host} is not allowed (only {} unless an allowed_domains entry names the port)",
                    default_port(tls)
                ),
            ));
        }
        let method = method.trim().to_ascii_uppercase();
        if !self.methods.contains(&method) {
            return Err(Denied::new(
                MethodBlocked,
                format!("method {method} is not in allowed_methods"),
            ));
        }
        if self.rules_required {
            self.check_rules(&method, &host, port, url.path())?;
        }
        Ok(Target {
            url: url.clone(),
            tls,
            host,
            port,
            port_allowed,
            method,
        })
    }

    /// With `rules`, a request must match one: `domain_blocked` when none matches its host
    /// and path, `method_blocked` when one does but not for its method.
    fn check_rules(&self, method: &str, host: &str, port: u16, path: &str) -> Result<(), Denied> {
        use ErrorKind::*;
        if let Some(trick) = path_trick(path) {
            return Err(Denied::new(
                DomainBlocked,
                format!("the path of {host}{path} has `{trick}`, which allowed_requests rules do not allow (a server could read it as a separator)"),
            ));
        }
        let here: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| {
                r.host.matches(host)
                    && r.port.is_none_or(|p| p == port)
                    && path_has_prefix(path, &r.path)
            })
            .collect();
        if here.is_empty() {
            return Err(Denied::new(
                DomainBlocked,
                format!("no allowed_requests rule matches {method} {host}{path}"),
            ));
        }
        if !here.iter().any(|r| r.method == method) {
            return Err(Denied::new(
                MethodBlocked,
                format!("no allowed_requests rule allows {method} for {host}{path}"),
            ));
        }
        Ok(())
    }

    /// Whether `ip` may be connected to for `target` (after [`Policy::check`] passed).
    pub fn check_addr(&self, target: &Target, ip: IpAddr) -> Result<(), Denied> {
        let allowed_private = self.private_allowed_contains(ip);
        if let Some(range) = special_range(ip) {
            if !allowed_private {
                return Err(Denied::new(
                    ErrorKind::PrivateIpBlocked,
                    format!(
                        "{} resolved to {ip} ({range}), which is not in allowed_private_ips",
                        target.host
                    ),
                ));
            }
        }
        if !target.port_allowed && !allowed_private {
            return Err(Denied::new(
                ErrorKind::DomainBlocked,
                format!(
                    "port {} of {} is not allowed (only {} unless an allowed_domains entry names the port)",
                    target.port,
                    target.host,
                    default_port(target.tls)
                ),
            ));
        }
        Ok(())
    }

    /// An IPv4-mapped address is matched as the IPv4 address it is, never by an IPv6 range
    /// (`::/0` must not open 169.254.169.254 by way of `::ffff:169.254.169.254`).
    fn private_allowed_contains(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.private_allowed.iter().any(|n| n.contains(&canonical))
    }
}

/// The scheme (`true` for https) and the host name of `url`, lower case without a trailing
/// dot: refused for another scheme, user info, an IP literal or a name this policy cannot
/// talk about.
fn url_host(url: &Url) -> Result<(bool, String), Denied> {
    use ErrorKind::DomainBlocked;
    let tls = match url.scheme() {
        "https" => true,
        "http" => false,
        other => {
            return Err(Denied::new(
                DomainBlocked,
                format!("scheme `{other}` is not allowed; only http and https"),
            ))
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Denied::new(
            DomainBlocked,
            "URLs with user info (user@host) are not allowed",
        ));
    }
    let host = match url.host() {
        Some(Host::Domain(d)) => d.to_ascii_lowercase(),
        Some(Host::Ipv4(ip)) => {
            return Err(Denied::new(
                DomainBlocked,
                format!(
                    "IP address {ip} is not allowed: requests must name a host in allowed_domains"
                ),
            ))
        }
        Some(Host::Ipv6(ip)) => {
            return Err(Denied::new(
                DomainBlocked,
                format!(
                "IP address [{ip}] is not allowed: requests must name a host in allowed_domains"
            ),
            ))
        }
        None => return Err(Denied::new(DomainBlocked, "the URL has no host")),
    };
    let host = host.strip_suffix('.').unwrap_or(&host).to_string();
    if !valid_host_name(&host) {
        return Err(Denied::new(
            DomainBlocked,
            format!("`{host}` is not a host name this policy allows"),
        ));
    }
    Ok((tls, host))
}

/// What in an already normalised path a server might still decode into `/`, `\`, `.` or a
/// path parameter, and so step out of an allowed_requests prefix (`/v1/messages/..%2fadmin`,
/// `..;/admin`): encoded separators, dots, NULs and `%25` (encoded twice), and `;`.
fn path_trick(path: &str) -> Option<&'static str> {
    const TRICKS: &[&str] = &["%2f", "%5c", "%2e", "%00", "%25", ";"];
    let lower = path.to_ascii_lowercase();
    TRICKS.iter().find(|t| lower.contains(**t)).copied()
}

/// `/v1/messages` is a prefix of `/v1/messages` and `/v1/messages/x`, not of `/v1/messagesx`.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    if prefix.is_empty() || prefix == "/" {
        return true;
    }
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The name of the reserved range `ip` lies in, or `None` for an ordinary public address.
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "unspecified / this network"),
        ([10, 0, 0, 0], 8, "private (RFC 1918)"),
        ([100, 64, 0, 0], 10, "carrier-grade NAT"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([172, 16, 0, 0], 12, "private (RFC 1918)"),
        ([192, 0, 0, 0], 24, "IETF protocol assignments"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 88, 99, 0], 24, "6to4 relay"),
        ([192, 168, 0, 0], 16, "private (RFC 1918)"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved / broadcast"),
    ];
    RANGES
        .iter()
        .find(|(net, len, _)| in_v4(ip, *net, *len))
        .map(|(_, _, name)| *name)
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if s[0..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff {
        return Some("IPv4-mapped");
    }
    if s[0..6] == [0, 0, 0, 0, 0, 0] {
        return Some("IPv4-compatible");
    }
    if s[0..6] == [0, 0, 0, 0, 0xffff, 0] {
        return Some("IPv4-translated");
    }
    if s[0] == 0x64 && s[1] == 0xff9b {
        return Some("NAT64");
    }
    if s[0] == 0x0100 && s[1..4] == [0, 0, 0] {
        return Some("discard-only");
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return Some("Teredo");
    }
    if s[0] == 0x2001 && s[1] == 0x0db8 {
        return Some("documentation");
    }
    if s[0] == 0x2001 && (s[1] & 0xfe00) == 0 {
        return Some("IETF protocol assignments (benchmarking, ORCHID, ...)");
    }
    if s[0] == 0x3fff && (s[1] & 0xf000) == 0 {
        return Some("documentation");
    }
    if s[0] == 0x5f00 {
        return Some("segment routing (SRv6 SIDs)");
    }
    if s[0] == 0x2002 {
        return Some("6to4");
    }
    if (s[0] & 0xfe00) == 0xfc00 {
        return Some("unique local (ULA)");
    }
    if (s[0] & 0xffc0) == 0xfe80 {
        return Some("link-local");
    }
    if (s[0] & 0xffc0) == 0xfec0 {
        return Some("site-local");
    }
    if (s[0] & 0xff00) == 0xff00 {
        return Some("multicast");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use cyfr_core::host_api::Egress;

    fn policy(domains: &[&str], rules: &[&str], private: &[&str]) -> Policy {
        Policy::from_wire(&Egress {
            allowed_domains: domains.iter().map(|s| s.to_string()).collect(),
            allowed_methods: vec!["GET".into(), "POST".into()],
            rules: rules.iter().map(|s| s.to_string()).collect(),
            allowed_private_ips: private.iter().map(|s| s.to_string()).collect(),
            max_request_bytes: 1024,
            max_response_bytes: 1024,
            max_requests: 10,
        })
    }

    fn check(p: &Policy, method: &str, url: &str) -> Result<Target, Denied> {
        let url = Url::parse(url).map_err(|e| Denied::new(ErrorKind::HttpError, e.to_string()))?;
        p.check(method, &url)
    }

    fn kind(r: Result<Target, Denied>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(d) => d.kind.as_str(),
        }
    }

    #[test]
    fn exact_and_wildcard_domains_case_and_trailing_dot() {
        let p = policy(&["api.example.com", "*.svc.example.org"], &[], &[]);
        assert_eq!(kind(check(&p, "GET", "https://api.example.com/x")), "ok");
        assert_eq!(kind(check(&p, "GET", "https://API.Example.COM./x")), "ok");
        assert_eq!(
            check(&p, "get", "https://api.example.com./").unwrap().host,
            "api.example.com"
        );
        assert_eq!(kind(check(&p, "GET", "https://a.svc.example.org/")), "ok");
        assert_eq!(kind(check(&p, "GET", "https://a.b.svc.example.org/")), "ok");
        // The wildcard never matches the apex, nor a name that merely ends the same way.
        assert_eq!(
            kind(check(&p, "GET", "https://svc.example.org/")),
            "domain_blocked"
        );
        assert_eq!(
            kind(check(&p, "GET", "https://evilsvc.example.org/")),
            "domain_blocked"
        );
        assert_eq!(
            kind(check(&p, "GET", "https://example.com/")),
            "domain_blocked"
        );
        assert_eq!(
            kind(check(&p, "GET", "https://api.example.com.evil.test/")),
            "domain_blocked"
        );
        assert_eq!(
            kind(check(&p, "GET", "https://api.example.com../")),
            "domain_blocked"
        );
    }

    #[test]
    fn ip_literals_in_every_spelling_are_refused() {
        let p = policy(
            &["api.example.com", "127.0.0.1", "2130706433"],
            &[],
            &["0.0.0.0/0"],
        );
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://017700000001/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://2130706433./",
        ] {
            let r = check(&p, "GET", url);
            assert_eq!(kind(r.clone()), "domain_blocked", "{url}: {r:?}");
        }
    }

    #[test]
    fn userinfo_scheme_and_port_tricks_are_refused() {
        let p = policy(&["api.example.com", "alt.example.com:8443"], &[], &[]);
        for url in [
            "https://api.example.com@evil.test/",
            "https://user:pw@api.example.com/",
            "https://evil.test#@api.example.com/",
            "https://evil.test\\@api.example.com/",
            "ftp://api.example.com/",
            "file:///etc/passwd",
            "https://api.example.com:8443/",
            "http://api.example.com:443/",
            "https://api.example.com:22/",
            "https://alt.example.com/",
        ] {
            assert_eq!(kind(check(&p, "GET", url)), "domain_blocked", "{url}");
        }
        assert_eq!(kind(check(&p, "GET", "https://api.example.com:443/")), "ok");
        assert_eq!(kind(check(&p, "GET", "http://api.example.com:80/")), "ok");
        assert_eq!(
            kind(check(&p, "GET", "https://alt.example.com:8443/")),
            "ok"
        );
    }

    #[test]
    fn methods_and_rules() {
        let p = policy(&["api.example.com"], &[], &[]);
        assert_eq!(
            kind(check(&p, "DELETE", "https://api.example.com/")),
            "method_blocked"
        );
        let p = policy(
            &["api.example.com", "*.example.org"],
            &["POST api.example.com/v1/messages", "GET *.example.org"],
            &[],
        );
        assert_eq!(
            kind(check(&p, "POST", "https://api.example.com/v1/messages")),
            "ok"
        );
        assert_eq!(
            kind(check(
                &p,
                "POST",
                "https://api.example.com/v1/messages/batches"
            )),
            "ok"
        );
        assert_eq!(
            kind(check(&p, "POST", "https://api.example.com/v1/messages?x=1")),
            "ok"
        );
        assert_eq!(
            kind(check(&p, "GET", "https://api.example.com/v1/messages")),
            "method_blocked"
        );
        assert_eq!(
            kind(check(&p, "POST", "https://api.example.com/v1/messagesx")),
            "domain_blocked"
        );
        assert_eq!(
            kind(check(&p, "POST", "https://api.example.com/v1/other")),
            "domain_blocked"
        );
        assert_eq!(
            kind(check(
                &p,
                "POST",
                "https://api.example.com/v1/messages/../../admin"
            )),
            "domain_blocked"
        );
        assert_eq!(
            kind(check(
                &p,
                "POST",
                "https://api.example.com/v1/messages/%2e%2e/%2e%2e/admin"
            )),
            "domain_blocked"
        );
        assert_eq!(
            kind(check(&p, "GET", "https://a.example.org/anything")),
            "ok"
        );
        // What a server behind might still decode into a separator cannot leave the prefix.
        for path in [
            "/v1/messages/..%2fadmin",
            "/v1/messages/%2e%2e%2fadmin",
            "/v1/messages/..%5cadmin",
            "/v1/messages/..;/admin",
            "/v1/messages/..%00/admin",
            "/v1/messages/%252e%252e/admin",
            "/v1/messages/..%2Fadmin",
        ] {
            let url = format!("https://api.example.com{path}");
            assert_eq!(kind(check(&p, "POST", &url)), "domain_blocked", "{path}");
        }
    }

    #[test]
    fn special_addresses_need_allowed_private_ips() {
        let p = policy(&["api.example.com"], &[], &["127.0.0.1/32", "10.1.0.0/16"]);
        let t = check(&p, "GET", "https://api.example.com/").unwrap();
        let blocked = [
            "169.254.169.254",
            "127.0.0.2",
            "10.2.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:169.254.169.254",
            "::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "3fff::1",
            "2001:2::1",
            "2001:20::1",
            "5f00::1",
        ];
        for ip in blocked {
            let r = p.check_addr(&t, ip.parse().unwrap());
            assert_eq!(r.unwrap_err().kind, ErrorKind::PrivateIpBlocked, "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "::ffff:127.0.0.1",
            "93.184.216.34",
            "2606:4700::1111",
        ] {
            assert!(p.check_addr(&t, ip.parse().unwrap()).is_ok(), "{ip}");
        }
    }

    #[test]
    fn an_ipv6_range_does_not_open_ipv4_mapped_addresses() {
        let p = policy(&["api.example.com"], &[], &["::/0"]);
        let t = check(&p, "GET", "https://api.example.com/").unwrap();
        assert!(p.check_addr(&t, "fd00::1".parse().unwrap()).is_ok());
        for ip in [
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
            "169.254.169.254",
        ] {
            let r = p.check_addr(&t, ip.parse().unwrap());
            assert_eq!(r.unwrap_err().kind, ErrorKind::PrivateIpBlocked, "{ip}");
        }
    }

    #[test]
    fn odd_ports_only_to_allowed_private_networks() {
        let p = policy(&["localhost"], &[], &["127.0.0.1/32"]);
        let t = check(&p, "GET", "http://localhost:8080/").unwrap();
        assert!(!t.port_allowed);
        assert_eq!(t.host_header(), "localhost:8080");
        assert!(p.check_addr(&t, "127.0.0.1".parse().unwrap()).is_ok());
        assert_eq!(
            p.check_addr(&t, "93.184.216.34".parse().unwrap())
                .unwrap_err()
                .kind,
            ErrorKind::DomainBlocked
        );
        let t = check(&p, "GET", "http://localhost/").unwrap();
        assert_eq!(t.host_header(), "localhost");
        assert!(p.check_addr(&t, "93.184.216.34".parse().unwrap()).is_ok());
    }

    #[test]
    fn bad_entries_narrow_never_widen() {
        let p = policy(
            &["*", "*.", "", "1.2.3.4", "ok.example.com"],
            &["garbage"],
            &["not-a-cidr"],
        );
        // The one rule did not parse: no request matches a rule, so none may be sent.
        assert_eq!(
            kind(check(&p, "GET", "https://ok.example.com/")),
            "domain_blocked"
        );
        let p = policy(
            &["*", "*.", "", "1.2.3.4", "ok.example.com"],
            &[],
            &["not-a-cidr"],
        );
        assert_eq!(kind(check(&p, "GET", "https://ok.example.com/")), "ok");
        assert_eq!(
            kind(check(&p, "GET", "https://other.example.com/")),
            "domain_blocked"
        );
        let t = check(&p, "GET", "https://ok.example.com/").unwrap();
        assert!(p.check_addr(&t, "127.0.0.1".parse().unwrap()).is_err());
    }
}
