//! IP allowlists and the one rule for who the client is behind proxies.

use ipnet::IpNet;
use std::net::IpAddr;

/// A list of networks (exact addresses become /32 or /128).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetList(pub Vec<IpNet>);

impl NetList {
    /// Parses `"140.82.112.0/20,10.0.0.1,2001:db8::/32"`.
    pub fn parse(s: &str) -> Result<NetList, String> {
        let mut nets = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = if part.contains('/') {
                part.parse::<IpNet>()
                    .map_err(|_| format!("`{part}` is not a valid CIDR network"))?
            } else {
                let ip: IpAddr = part
                    .parse()
                    .map_err(|_| format!("`{part}` is not a valid IP address"))?;
                IpNet::from(ip)
            };
            nets.push(net.trunc());
        }
        Ok(NetList(nets))
    }

    /// Whether `ip` lies in one of the networks. IPv4-mapped IPv6 addresses are compared as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// Whether every address of `net` lies in one network of the list (an empty list,
    /// which allows everyone, covers everything).
    pub fn covers(&self, net: &IpNet) -> bool {
        self.is_empty() || self.0.iter().any(|n| n.contains(net))
    }

    /// Whether the list is empty (an empty allowlist allows everyone).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The text form, comma-separated.
    pub fn to_text(&self) -> String {
        self.0
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy, in which case
/// `X-Forwarded-For` is walked from the right and the first address that is not a trusted
/// proxy is the client. A header from anyone else is ignored, so it cannot be spoofed.
/// A hop that does not parse (after `ip:port` and `[v6]:port` forms) ends the walk with no
/// client at all (`None`): whoever wrote it is unknown, so checks that need an address
/// fail closed rather than treat the trusted proxy as the client.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted: &NetList,
) -> Option<IpAddr> {
    if !trusted.contains(peer) {
        return Some(canonical(peer));
    }
    let hops: Vec<&str> = forwarded_for
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .collect();
    let mut client = canonical(peer);
    for hop in hops.iter().rev() {
        client = canonical(parse_hop(hop)?);
        if !trusted.contains(client) {
            return Some(client);
        }
    }
    Some(client)
}

/// One `X-Forwarded-For` hop: `1.2.3.4`, `2001:db8::1`, `1.2.3.4:5678`, `[2001:db8::1]` or
/// `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    hop.strip_prefix('[')?
        .strip_suffix(']')?
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// Whether the request reached us over a channel that may carry secrets: HTTPS, HTTPS at
/// a trusted proxy (`X-Forwarded-Proto`), or a loopback client talking to us directly.
pub fn transport_secure(
    scheme: Option<&str>,
    peer: Option<IpAddr>,
    forwarded_proto: Option<&str>,
    trusted: &NetList,
) -> bool {
    if scheme == Some("https") {
        return true;
    }
    let Some(peer) = peer.map(canonical) else {
        return false;
    };
    // A trusted proxy (even one on this machine) speaks for a client elsewhere: only its
    // word that the client used HTTPS counts, and its word is the right-most value (what
    // the client sent itself comes before it, in the same line or an earlier one).
    if trusted.contains(peer) {
        return forwarded_proto
            .is_some_and(|p| p.rsplit(',').next().map(str::trim) == Some("https"));
    }
    peer.is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn allowlist_matches_cidrs_exact_ips_and_ipv6() {
        let l = NetList::parse("140.82.112.0/20, 10.0.0.1,2001:db8::/32").unwrap();
        assert!(l.contains(ip("140.82.127.255")));
        assert!(!l.contains(ip("140.82.128.0")));
        assert!(l.contains(ip("10.0.0.1")));
        assert!(!l.contains(ip("10.0.0.2")));
        assert!(l.contains(ip("2001:db8::1")));
        assert!(l.contains(ip("::ffff:10.0.0.1")));
        assert!(NetList::parse("10.0.0.300").is_err());
        assert!(NetList::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn secrets_need_https_unless_loopback_or_behind_a_trusted_tls_proxy() {
        let trusted = NetList::parse("10.0.0.1").unwrap();
        assert!(transport_secure(
            Some("https"),
            Some(ip("203.0.113.1")),
            None,
            &trusted
        ));
        assert!(transport_secure(
            Some("http"),
            Some(ip("127.0.0.1")),
            None,
            &trusted
        ));
        assert!(transport_secure(
            Some("http"),
            Some(ip("::ffff:127.0.0.1")),
            None,
            &trusted
        ));
        assert!(!transport_secure(
            Some("http"),
            Some(ip("203.0.113.1")),
            Some("https"),
            &trusted
        ));
        assert!(transport_secure(
            Some("http"),
            Some(ip("10.0.0.1")),
            Some("https"),
            &trusted
        ));
        assert!(!transport_secure(
            Some("http"),
            Some(ip("10.0.0.1")),
            Some("http"),
            &trusted
        ));
        assert!(!transport_secure(None, None, None, &trusted));
        let local_proxy = NetList::parse("127.0.0.1").unwrap();
        assert!(!transport_secure(
            Some("http"),
            Some(ip("127.0.0.1")),
            Some("http"),
            &local_proxy
        ));
        assert!(transport_secure(
            Some("http"),
            Some(ip("127.0.0.1")),
            Some("https"),
            &local_proxy
        ));
        // A client's own `https` in front of what the proxy appended is not believed.
        let from_proxy =
            |proto| transport_secure(Some("http"), Some(ip("10.0.0.1")), Some(proto), &trusted);
        assert!(!from_proxy("https, http"));
        assert!(from_proxy("http, https"));
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let trusted = NetList::parse("127.0.0.1").unwrap();
        let xff = ["10.9.9.9"];
        assert_eq!(
            client_ip(ip("192.0.2.7"), xff.iter().copied(), &trusted),
            Some(ip("192.0.2.7"))
        );
    }

    #[test]
    fn forwarded_for_from_trusted_proxy_yields_rightmost_untrusted_hop() {
        let trusted = NetList::parse("127.0.0.1,10.0.0.0/8").unwrap();
        // The client put a fake address first; our proxies appended the real one.
        let xff = ["6.6.6.6, 203.0.113.5, 10.1.1.1"];
        assert_eq!(
            client_ip(ip("127.0.0.1"), xff.iter().copied(), &trusted),
            Some(ip("203.0.113.5"))
        );
    }

    #[test]
    fn a_malformed_rightmost_hop_leaves_the_client_unknown_not_the_proxy() {
        let trusted = NetList::parse("127.0.0.1,10.0.0.0/8").unwrap();
        for xff in [
            "garbage",
            "203.0.113.5, garbage",
            "203.0.113.5, 10.1.1.1, garbage",
            "",
            "1.2.3.4:99999",
            "[::1",
        ] {
            assert_eq!(
                client_ip(ip("127.0.0.1"), [xff].into_iter(), &trusted),
                None,
                "{xff:?}"
            );
        }
        // A malformed hop left of the client does not matter: the walk stopped at the client.
        assert_eq!(
            client_ip(
                ip("127.0.0.1"),
                ["garbage, 203.0.113.5"].into_iter(),
                &trusted
            ),
            Some(ip("203.0.113.5"))
        );
    }

    #[test]
    fn forwarded_hops_with_ports_parse_to_their_addresses() {
        let trusted = NetList::parse("127.0.0.1,10.0.0.0/8").unwrap();
        let c = |xff: &str| client_ip(ip("127.0.0.1"), [xff].into_iter(), &trusted);
        assert_eq!(c("1.2.3.4:5678"), Some(ip("1.2.3.4")));
        assert_eq!(c("[2001:db8::1]:443"), Some(ip("2001:db8::1")));
        assert_eq!(c("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(c("203.0.113.5, 10.1.1.1:80"), Some(ip("203.0.113.5")));
        // A port does not hide a trusted proxy: the walk goes on past it.
        assert_eq!(
            c("203.0.113.9, [::ffff:10.0.0.2]:8080"),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn covers_means_every_address_of_the_net_is_inside() {
        let l = NetList::parse("10.0.0.0/8,2001:db8::/32").unwrap();
        assert!(l.covers(&"10.1.0.0/16".parse().unwrap()));
        assert!(l.covers(&"10.0.0.7/32".parse().unwrap()));
        assert!(!l.covers(&"0.0.0.0/0".parse().unwrap()));
        assert!(!l.covers(&"11.0.0.0/16".parse().unwrap()));
        assert!(!l.covers(&"2001:db8::/16".parse().unwrap()));
        assert!(NetList::default().covers(&"0.0.0.0/0".parse().unwrap()));
    }
}
