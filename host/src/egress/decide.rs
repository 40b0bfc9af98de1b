//! The egress hook: [`Gate::decide`] is asked about every hop of an outbound request (the
//! first request and each redirect) before anything is substituted or sent, the way
//! wasmtime-wasi-http's `send_request` hook or Spin's outbound interceptor is. It walks the
//! [`Policy`], the cross-origin rule, the request budget and the deadline, resolves the name,
//! checks every address, and answers [`Decision::Allow`] with the address to connect to —
//! pinned, so the client makes no second lookup (no DNS-rebinding window) — or
//! [`Decision::Refuse`] with a typed refusal.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use tokio::time::Instant;
use url::Url;

use super::{Denied, ErrorKind, Policy, Target};

/// A boxed future, as [`Resolve::resolve`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Name resolution, a seam for tests: the executor uses [`SystemResolver`] unless told
/// otherwise. Whatever it answers is checked by [`Policy::check_addr`] and the connection goes
/// to the checked address.
pub trait Resolve: Send + Sync {
    /// The addresses of `host`.
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>>;
}

/// The operating system's resolver (`getaddrinfo`, on a blocking thread).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, port)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// `scheme://host:port` as [`Target::origin`] gives it.
pub(crate) type Origin = (bool, String, u16);

/// One hop of an outbound request, as [`Gate::decide`] is asked about it.
pub(crate) struct Hop<'a> {
    /// The method of this hop (a redirect may have turned it into GET).
    pub(crate) method: &'a str,
    /// The URL of this hop.
    pub(crate) url: &'a Url,
    /// The first hop's origin; `None` for the first hop itself.
    pub(crate) first_origin: Option<&'a Origin>,
    /// An earlier hop already left the first origin.
    pub(crate) crossed: bool,
    /// The body injects a secret or holds one the guest read.
    pub(crate) body_carries_secret: bool,
    /// When the whole request must be done.
    pub(crate) deadline: Instant,
}

/// What [`Gate::decide`] answers.
pub(crate) enum Decision {
    /// Send it, to exactly this address.
    Allow(Pinned),
    /// Do not send it.
    Refuse(Denied),
}

/// An allowed hop: where it goes, and the one address that was checked for it.
pub(crate) struct Pinned {
    /// The checked URL and method.
    pub(crate) target: Target,
    /// The first resolved address the policy allows; the only one connected to.
    pub(crate) addr: SocketAddr,
    /// This hop or an earlier one left the first hop's origin.
    pub(crate) cross_origin: bool,
}

/// The egress decisions of one execution: its policy, its resolver and its request budget.
pub(crate) struct Gate {
    pub(crate) policy: Policy,
    resolver: Arc<dyn Resolve>,
    /// Hops counted against `max_requests` so far.
    sent: u64,
}

impl Gate {
    /// A gate for `policy`, resolving through `resolver`.
    pub(crate) fn new(policy: Policy, resolver: Arc<dyn Resolve>) -> Gate {
        Gate {
            policy,
            resolver,
            sent: 0,
        }
    }

    /// Outbound requests counted so far (each redirect hop counts).
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    /// Decides one hop, in this order: the policy (scheme, host, port, method, rules), a
    /// secret-carrying body leaving the first origin, the request budget, the deadline, then
    /// DNS and every answer's address.
    pub(crate) async fn decide(&mut self, hop: &Hop<'_>) -> Decision {
        match self.walk(hop).await {
            Ok(pinned) => Decision::Allow(pinned),
            Err(d) => Decision::Refuse(d),
        }
    }

    async fn walk(&mut self, hop: &Hop<'_>) -> Result<Pinned, Denied> {
        let target = self.policy.check(hop.method, hop.url)?;
        let cross_origin = hop.crossed
            || hop
                .first_origin
                .is_some_and(|first| *first != target.origin());
        if cross_origin && hop.body_carries_secret {
            return Err(Denied::new(
                ErrorKind::HttpError,
                "refusing to resend a request body that carries a secret to another origin",
            ));
        }
        if self.sent >= self.policy.max_requests {
            return Err(Denied::new(
                ErrorKind::RateLimited,
                format!(
                    "this execution already sent its {} outbound requests (max_outbound_requests)",
                    self.policy.max_requests
                ),
            ));
        }
        if Instant::now() >= hop.deadline {
            return Err(Denied::new(
                ErrorKind::Timeout,
                "no time is left for this request",
            ));
        }
        // Counted before the lookup: a name lookup is itself traffic (a guest could spell
        // data into names under a wildcard domain it controls).
        self.sent += 1;
        let addr = self.resolve(&target, hop.deadline).await?;
        Ok(Pinned {
            target,
            addr,
            cross_origin,
        })
    }

    /// Resolves the target's host and picks the first address the policy allows.
    async fn resolve(&self, target: &Target, deadline: Instant) -> Result<SocketAddr, Denied> {
        let ips =
            tokio::time::timeout_at(deadline, self.resolver.resolve(&target.host, target.port))
                .await
                .map_err(|_| {
                    Denied::new(
                        ErrorKind::Timeout,
                        format!("resolving {} took too long", target.host),
                    )
                })?
                .map_err(|e| {
                    Denied::new(
                        ErrorKind::DnsError,
                        format!("could not resolve {}: {e}", target.host),
                    )
                })?;
        if ips.is_empty() {
            return Err(Denied::new(
                ErrorKind::DnsError,
                format!("{} has no addresses", target.host),
            ));
        }
        let mut refused = None;
        for ip in ips {
            match self.policy.check_addr(target, ip) {
                Ok(()) => return Ok(SocketAddr::new(ip, target.port)),
                Err(d) => {
                    refused.get_or_insert(d);
                }
            }
        }
        Err(refused.expect("at least one address was checked"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cyfr_core::host_api::Egress;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers fixed addresses and counts lookups.
    struct Fixed(Vec<IpAddr>, AtomicUsize);

    impl Resolve for Fixed {
        fn resolve<'a>(
            &'a self,
            _: &'a str,
            _: u16,
        ) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
            self.1.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { Ok(self.0.clone()) })
        }
    }

    fn gate(addrs: &[&str], max_requests: u64) -> (Gate, Arc<Fixed>) {
        let resolver = Arc::new(Fixed(
            addrs.iter().map(|a| a.parse().unwrap()).collect(),
            AtomicUsize::new(0),
        ));
        let policy = Policy::from_wire(&Egress {
            allowed_domains: vec!["api.example.com".into(), "other.example.com".into()],
            allowed_methods: vec!["GET".into()],
            rules: vec![],
            allowed_private_ips: vec![],
            max_request_bytes: 1024,
            max_response_bytes: 1024,
            max_requests,
        });
        (Gate::new(policy, resolver.clone()), resolver)
    }

    fn hop<'a>(url: &'a Url, first: Option<&'a Origin>, secret_body: bool) -> Hop<'a> {
        Hop {
            method: "GET",
            url,
            first_origin: first,
            crossed: false,
            body_carries_secret: secret_body,
            deadline: Instant::now() + std::time::Duration::from_secs(5),
        }
    }

    fn refused(d: Decision) -> Denied {
        match d {
            Decision::Allow(p) => panic!("allowed to {}", p.addr),
            Decision::Refuse(d) => d,
        }
    }

    #[tokio::test]
    async fn the_first_allowed_address_is_pinned_and_each_hop_counts_before_the_lookup() {
        let (mut g, resolver) = gate(&["127.0.0.1", "93.184.216.34", "93.184.216.35"], 2);
        let url = Url::parse("https://api.example.com/x").unwrap();
        let Decision::Allow(p) = g.decide(&hop(&url, None, false)).await else {
            panic!("refused");
        };
        assert_eq!(p.addr, "93.184.216.34:443".parse().unwrap());
        assert!(!p.cross_origin);
        let (mut g, resolver2) = gate(&["10.0.0.1"], 1);
        let d = refused(g.decide(&hop(&url, None, false)).await);
        assert_eq!(d.kind, ErrorKind::PrivateIpBlocked);
        // The refused lookup still counted: the budget is spent.
        let d = refused(g.decide(&hop(&url, None, false)).await);
        assert_eq!(d.kind, ErrorKind::RateLimited);
        assert_eq!((g.sent(), resolver2.1.load(Ordering::SeqCst)), (1, 1));
        assert_eq!(resolver.1.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn policy_comes_first_and_a_secret_body_never_leaves_its_origin() {
        let (mut g, resolver) = gate(&["93.184.216.34"], 0);
        let blocked = Url::parse("https://evil.example.net/").unwrap();
        let d = refused(g.decide(&hop(&blocked, None, true)).await);
        assert_eq!(d.kind, ErrorKind::DomainBlocked);
        let first: Origin = (true, "api.example.com".into(), 443);
        let other = Url::parse("https://other.example.com/").unwrap();
        let d = refused(g.decide(&hop(&other, Some(&first), true)).await);
        assert_eq!(d.kind, ErrorKind::HttpError);
        let d = refused(g.decide(&hop(&other, Some(&first), false)).await);
        assert_eq!(d.kind, ErrorKind::RateLimited);
        assert_eq!(resolver.1.load(Ordering::SeqCst), 0);
    }
}
