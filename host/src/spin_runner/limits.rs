//! Limits of the native servers (`cyfr up`, `cyfr host`) that hold before any credential is
//! checked: read deadlines, a cap on connections (in total and per peer IP), a per-peer rate
//! for requests without credentials, and request ids. All in memory: they protect this
//! process; per-key limits live in SQL so they hold across instances.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits; [`ServeLimits::from_env`] reads overrides (milliseconds and counts).
#[derive(Clone, Debug)]
pub struct ServeLimits {
    /// Time a client has to send a request's headers (`CYFR_HEADER_TIMEOUT_MS`, 10 s).
    pub header_timeout: Duration,
    /// Time a client has to send a request's whole body (`CYFR_BODY_TIMEOUT_MS`, 30 s).
    pub body_timeout: Duration,
    /// Open connections at once (`CYFR_MAX_CONNECTIONS`, 1024); more are accepted and closed.
    pub max_connections: usize,
    /// Open connections at once from one IP (`CYFR_MAX_CONNECTIONS_PER_PEER`, 64).
    pub max_connections_per_peer: usize,
    /// Requests without an `Authorization` header one IP may send at once
    /// (`CYFR_ANON_BURST`, 30) …
    pub anon_burst: u32,
    /// … and per second after that (`CYFR_ANON_PER_SEC`, 10).
    pub anon_per_sec: u32,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_connections_per_peer: 64,
            anon_burst: 30,
            anon_per_sec: 10,
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
}

impl ServeLimits {
    /// The defaults, with any `CYFR_*` override from the environment.
    pub fn from_env() -> ServeLimits {
        let mut l = ServeLimits::default();
        if let Some(ms) = env_u64("CYFR_HEADER_TIMEOUT_MS") {
            l.header_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = env_u64("CYFR_BODY_TIMEOUT_MS") {
            l.body_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = env_u64("CYFR_MAX_CONNECTIONS") {
            l.max_connections = n as usize;
        }
        if let Some(n) = env_u64("CYFR_MAX_CONNECTIONS_PER_PEER") {
            l.max_connections_per_peer = n as usize;
        }
        if let Some(n) = env_u64("CYFR_ANON_BURST") {
            l.anon_burst = n.min(u32::MAX as u64) as u32;
        }
        if let Some(n) = env_u64("CYFR_ANON_PER_SEC") {
            l.anon_per_sec = n.min(u32::MAX as u64) as u32;
        }
        l
    }
}

/// Admits connections under the total and per-peer caps.
pub struct ConnGate {
    total: Arc<Semaphore>,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    per_peer_max: usize,
}

/// One admitted connection; dropping it frees its places.
pub struct ConnPermit {
    _total: OwnedSemaphorePermit,
    gate: Arc<ConnGate>,
    ip: IpAddr,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnRefused {
    /// The server holds its maximum of connections.
    Total,
    /// This peer holds its maximum of connections.
    PerPeer,
}

impl ConnGate {
    /// A gate for these limits.
    pub fn new(limits: &ServeLimits) -> Arc<ConnGate> {
        Arc::new(ConnGate {
            total: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            per_peer: Mutex::new(HashMap::new()),
            per_peer_max: limits.max_connections_per_peer.max(1),
        })
    }

    /// Admits a connection from `ip`, or says which cap it is over.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, ConnRefused> {
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| ConnRefused::Total)?;
        let mut peers = self.per_peer.lock().unwrap_or_else(|p| p.into_inner());
        let n = peers.entry(ip).or_insert(0);
        if *n >= self.per_peer_max {
            return Err(ConnRefused::PerPeer);
        }
        *n += 1;
        Ok(ConnPermit {
            _total: total,
            gate: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut peers = self.gate.per_peer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = peers.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // No entry is kept for a peer without connections: the map stays bounded.
                peers.remove(&self.ip);
            }
        }
    }
}

/// The per-peer rate of requests without credentials.
pub struct AnonLimiter(governor::DefaultKeyedRateLimiter<IpAddr>);

impl AnonLimiter {
    /// A limiter for these limits.
    pub fn new(limits: &ServeLimits) -> AnonLimiter {
        let rate = NonZeroU32::new(limits.anon_per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.anon_burst).unwrap_or(NonZeroU32::MIN);
        AnonLimiter(governor::RateLimiter::keyed(
            governor::Quota::per_second(rate).allow_burst(burst),
        ))
    }

    /// `Err(wait)` when `ip` is over its rate.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.0
            .check_key(&ip)
            .map_err(|nu| nu.wait_time_from(self.0.clock().now()))
    }

    /// Forgets peers whose state is back to full (bounds memory).
    pub fn forget_idle(&self) {
        self.0.retain_recent();
    }
}

/// The request id: the client's `x-request-id` when sane (≤ 64 of `[A-Za-z0-9._-]`), else a new one.
pub fn request_id(incoming: Option<&http::HeaderValue>) -> String {
    if let Some(v) = incoming.and_then(|v| v.to_str().ok()) {
        if cyfr_core::http::sane_request_id(v) {
            return v.to_string();
        }
    }
    let mut b = [0u8; 12];
    // Ids need only be unique enough to correlate logs; no secret rests on them.
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_peer_cap_frees_on_drop() {
        let l = ServeLimits {
            max_connections: 3,
            max_connections_per_peer: 2,
            ..ServeLimits::default()
        };
        let g = ConnGate::new(&l);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let p1 = g.admit(a).unwrap();
        let _p2 = g.admit(a).unwrap();
        assert_eq!(g.admit(a).err(), Some(ConnRefused::PerPeer));
        let _p3 = g.admit(b).unwrap();
        assert_eq!(g.admit(b).err(), Some(ConnRefused::Total));
        drop(p1);
        assert!(g.admit(a).is_ok());
    }

    #[test]
    fn request_ids_are_sane_or_new() {
        let ok = http::HeaderValue::from_static("abc-1.2_3");
        assert_eq!(request_id(Some(&ok)), "abc-1.2_3");
        let bad = http::HeaderValue::from_static("a b\"<script>");
        let id = request_id(Some(&bad));
        assert_eq!(id.len(), 24);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        let long = http::HeaderValue::from_str(&"a".repeat(65)).unwrap();
        assert_ne!(request_id(Some(&long)), "a".repeat(65));
    }
}
