//! The load generator: C workers, each with one keep-alive HTTP/1.1 connection (or, for the
//! in-process rows, one call at a time), a warm-up, then a measured window.
//!
//! [`HttpClient::fresh`] opens a new connection for every request instead (and resolves a
//! host name first if told to), the way cyfr's egress does for a catalyst's requests.
//!
//! A request counts when it *finishes* inside the measured window `[warm_end, end]`; workers
//! stop starting requests at `end`. Only verified responses count as completed; anything else
//! (transport error, non-200, wrong body) is an error and the worker reconnects.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

/// Checks a response body.
pub type Verify = fn(&[u8]) -> Result<(), String>;

/// One HTTP request, sent over and over.
pub struct HttpTarget {
    pub addr: SocketAddr,
    pub method: Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub verify: Verify,
    /// Whether `verify` also sees the bodies of non-200 answers (which otherwise count as
    /// errors unread): for a mode that sorts documented refusals from failures.
    pub verify_errors: bool,
}

/// Something a worker does repeatedly.
pub trait Client {
    fn call(&mut self) -> impl Future<Output = Result<(), String>>;
}

/// A worker's keep-alive connection to an [`HttpTarget`] (or, made with
/// [`HttpClient::fresh`], a new connection per request).
pub struct HttpClient {
    target: Arc<HttpTarget>,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Close the connection after every request.
    fresh: bool,
    /// With `fresh`: resolve this host (`getaddrinfo`, as `tokio::net::lookup_host` does it)
    /// before every connection and connect to its first IPv4 address on the target's port.
    resolve: Option<String>,
}

impl HttpClient {
    pub fn new(target: Arc<HttpTarget>) -> HttpClient {
        HttpClient {
            target,
            sender: None,
            fresh: false,
            resolve: None,
        }
    }

    /// A client that opens a new TCP connection for every request and closes it once the
    /// response body is read; with `resolve`, it also looks that host name up every time.
    pub fn fresh(target: Arc<HttpTarget>, resolve: Option<String>) -> HttpClient {
        HttpClient {
            target,
            sender: None,
            fresh: true,
            resolve,
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let mut addr = self.target.addr;
        if let Some(host) = &self.resolve {
            let found = tokio::net::lookup_host((host.as_str(), addr.port()))
                .await
                .map_err(|e| format!("resolving {host}: {e}"))?;
            addr = found
                .into_iter()
                .find(SocketAddr::is_ipv4)
                .ok_or_else(|| format!("{host} has no IPv4 address"))?;
        }
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn once(&mut self) -> Result<(), String> {
        // Servers close keep-alive connections left idle past their header deadline (cyfr's:
        // 10 s). One found closed before anything was sent on it is replaced, as pooled
        // clients do; a request that was sent and failed still counts as an error.
        if self.sender.as_ref().is_some_and(|s| s.is_closed()) {
            self.sender = None;
        }
        if self.sender.is_none() {
            self.sender = Some(self.connect().await?);
        }
        if self.sender.as_mut().unwrap().ready().await.is_err() {
            self.sender = Some(self.connect().await?);
        }
        let sender = self.sender.as_mut().unwrap();
        sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let t = &self.target;
        let mut req = Request::builder()
            .method(t.method.clone())
            .uri(t.path.as_str())
            .header(hyper::header::HOST, t.addr.to_string());
        for (k, v) in &t.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(t.body.clone()))
            .map_err(|e| format!("request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        if status != hyper::StatusCode::OK && !t.verify_errors {
            return Err(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
        (t.verify)(&body)
    }
}

impl Client for HttpClient {
    async fn call(&mut self) -> Result<(), String> {
        let r = self.once().await;
        if r.is_err() || self.fresh {
            self.sender = None; // reconnect next time (dropping the sender closes the connection)
        }
        r
    }
}

/// A call made in-process (no HTTP): the future runs wherever the closure puts it.
pub type CallFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A worker calling a [`CallFn`].
pub struct InProcClient(pub CallFn);

impl Client for InProcClient {
    async fn call(&mut self) -> Result<(), String> {
        (self.0)().await
    }
}

/// What one scenario measured.
#[derive(Clone, Debug)]
pub struct Stats {
    pub name: String,
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub rps: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// CPU used by this process during the measured window, in cores (from /proc).
    pub self_cpu_cores: f64,
    /// CPU used by everything else on the machine during the window, in cores: anything
    /// well above zero means the numbers were disturbed.
    pub other_cpu_cores: f64,
}

impl Stats {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "completed": self.completed,
            "errors": self.errors,
            "first_error": self.first_error,
            "seconds": self.seconds,
            "requests_per_second": round(self.rps, 1),
            "latency_ms": {
                "mean": round(self.mean_ms, 3),
                "p50": round(self.p50_ms, 3),
                "p90": round(self.p90_ms, 3),
                "p99": round(self.p99_ms, 3),
                "max": round(self.max_ms, 3),
            },
            "cpu_cores_used": { "this_process": round(self.self_cpu_cores, 2), "other_processes": round(self.other_cpu_cores, 2) },
        })
    }
}

pub fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

#[derive(Default)]
struct WorkerResult {
    latencies_ns: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// Runs `concurrency` workers made by `make` for `warmup` and then `measure`, on the current
/// thread (a current-thread runtime with a `LocalSet`), and summarizes the measured window.
pub async fn run<C, M>(
    name: &str,
    concurrency: usize,
    warmup: Duration,
    measure: Duration,
    make: M,
) -> Stats
where
    C: Client + 'static,
    M: Fn() -> C,
{
    let local = tokio::task::LocalSet::new();
    let start = Instant::now();
    let warm_end = start + warmup;
    let end = warm_end + measure;
    let mut handles = Vec::new();
    for _ in 0..concurrency {
        let mut client = make();
        handles.push(local.spawn_local(async move {
            let mut r = WorkerResult {
                latencies_ns: Vec::with_capacity(1 << 16),
                ..Default::default()
            };
            while Instant::now() < end {
                let t0 = Instant::now();
                let outcome = client.call().await;
                let t1 = Instant::now();
                if t1 < warm_end || t1 > end {
                    if let Err(e) = outcome {
                        // Failures during warm-up still matter: keep the first one for the report.
                        r.first_error.get_or_insert(format!("(warm-up) {e}"));
                        // Do not spin on an unreachable server.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    continue;
                }
                match outcome {
                    Ok(()) => r.latencies_ns.push((t1 - t0).as_nanos() as u64),
                    Err(e) => {
                        r.errors += 1;
                        if r.first_error
                            .as_deref()
                            .is_none_or(|f| f.starts_with("(warm-up)"))
                        {
                            r.first_error = Some(e);
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            r
        }));
    }
    let sampler = local.spawn_local(async move {
        tokio::time::sleep_until(warm_end.into()).await;
        let a = CpuSample::now();
        tokio::time::sleep_until(end.into()).await;
        let b = CpuSample::now();
        a.zip(b).map(|(a, b)| {
            let secs = (b.at - a.at).as_secs_f64() * CLK_TCK;
            let own = (b.own - a.own) as f64 / secs;
            (own, ((b.busy - a.busy) as f64 / secs - own).max(0.0))
        })
    });
    let (results, cpu) = local
        .run_until(async move {
            let mut out = Vec::new();
            for h in handles {
                out.push(h.await.expect("worker panicked"));
            }
            (out, sampler.await.ok().flatten())
        })
        .await;
    let (self_cpu_cores, other_cpu_cores) = cpu.unwrap_or((f64::NAN, f64::NAN));

    let mut all: Vec<u64> = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for r in results {
        all.extend(r.latencies_ns);
        errors += r.errors;
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    all.sort_unstable();
    let seconds = measure.as_secs_f64();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return f64::NAN;
        }
        // Nearest rank.
        let rank = ((p * all.len() as f64).ceil() as usize).clamp(1, all.len());
        all[rank - 1] as f64 / 1e6
    };
    let mean_ms = if all.is_empty() {
        f64::NAN
    } else {
        all.iter().map(|&n| n as f64).sum::<f64>() / all.len() as f64 / 1e6
    };
    Stats {
        name: name.to_string(),
        completed: all.len() as u64,
        errors,
        first_error,
        seconds,
        rps: all.len() as f64 / seconds,
        mean_ms,
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        max_ms: all.last().map(|&n| n as f64 / 1e6).unwrap_or(f64::NAN),
        self_cpu_cores,
        other_cpu_cores,
    }
}

/// Linux clock ticks per second for /proc times (USER_HZ; 100 on every mainstream kernel).
const CLK_TCK: f64 = 100.0;

/// Busy CPU time of the whole machine and of this process, in clock ticks.
struct CpuSample {
    at: Instant,
    busy: u64,
    own: u64,
}

impl CpuSample {
    fn now() -> Option<CpuSample> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let f: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let busy = f.first()?
            + f.get(1)?
            + f.get(2)?
            + f.get(5)?
            + f.get(6)?
            + f.get(7).copied().unwrap_or(0);
        let me = std::fs::read_to_string("/proc/self/stat").ok()?;
        let rest: Vec<&str> = me.rsplit_once(')')?.1.split_whitespace().collect();
        // After the command: state(0) ... utime(11) stime(12).
        let own = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
        Some(CpuSample {
            at: Instant::now(),
            busy,
            own,
        })
    }
}
