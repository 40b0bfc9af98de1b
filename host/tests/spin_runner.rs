//! `SpinRunner` against a real spin-sdk 5.2 component (`host/tests/spin-guest`), over loopback.
//!
//! The guest is built by `cyfr-test-guests` (with every other test guest) into
//! `<workspace>/target/wasm`. One server is shared by the tests; it runs on its own thread and
//! runtime.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use cyfr_host::db::{LocalDb, SqlValue};
use cyfr_host::spin_runner::{InternalService, RouterConfig, SpinRunner, MAX_REQUEST_BODY};

const INTERNAL_AUTHORITY: &str = "host.cyfr.internal";

/// The test guest's bytes (built once per process by `cyfr-test-guests`).
fn guest_wasm() -> Vec<u8> {
    cyfr_test_guests::guest("cyfr-spin-test-guest").to_vec()
}

/// A recorded call to the internal service.
#[derive(Debug, Clone)]
struct InternalCall {
    method: String,
    uri: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

#[derive(Default)]
struct RecordingInternal {
    calls: Mutex<Vec<InternalCall>>,
}

impl InternalService for RecordingInternal {
    fn handle(
        &self,
        req: http::Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = http::Response<Bytes>> + Send>> {
        let call = InternalCall {
            method: req.method().to_string(),
            uri: req.uri().to_string(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body: req.body().to_vec(),
        };
        self.calls.lock().unwrap().push(call);
        let path = req.uri().path().to_owned();
        Box::pin(async move {
            http::Response::builder()
                .status(if path == "/v1/ping" { 200 } else { 404 })
                .header("x-internal", "yes")
                .body(Bytes::from_static(b"pong"))
                .unwrap()
        })
    }
}

struct Harness {
    addr: SocketAddr,
    internal: Arc<RecordingInternal>,
    db: Arc<LocalDb>,
    rt: tokio::runtime::Handle,
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cyfr-spin-runner-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(db: Arc<LocalDb>) -> RouterConfig {
    RouterConfig {
        wasm: guest_wasm(),
        db,
        variables: HashMap::from([
            ("greeting".to_owned(), "hello from the host".to_owned()),
            ("MixedCase".to_owned(), "mixed".to_owned()),
            ("session_ttl_hours".to_owned(), "12".to_owned()),
            (
                "internal_authority".to_owned(),
                INTERNAL_AUTHORITY.to_owned(),
            ),
        ]),
        internal_authority: INTERNAL_AUTHORITY.to_owned(),
        compiled_cache: None,
        dynamic_variables: None,
        allowed_outbound: Vec::new(),
        host_tls: None,
    }
}

/// The shared server: `SpinRunner::serve` on 127.0.0.1:0, on its own thread and runtime.
fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let handle = rt.handle().clone();
            rt.block_on(async move {
                let db = Arc::new(
                    LocalDb::open(temp_dir("shared").join("cyfr.db"))
                        .await
                        .unwrap(),
                );
                let internal = Arc::new(RecordingInternal::default());
                let runner = Arc::new(
                    // Every test here shares this server and sends without a key from
                    // one address: the anonymous rate is for floods, not for them.
                    SpinRunner::new(config(db.clone()), internal.clone())
                        .expect("SpinRunner::new")
                        .with_limits(cyfr_host::spin_runner::limits::ServeLimits {
                            anon_burst: 100_000,
                            ..Default::default()
                        }),
                );
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                tx.send(Harness {
                    addr,
                    internal,
                    db,
                    rt: handle,
                })
                .unwrap();
                runner
                    .serve(listener, std::future::pending())
                    .await
                    .unwrap();
            });
        });
        rx.recv().expect("server thread failed to start")
    })
}

struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s
}

/// Reads one `Connection: close` response to EOF.
fn read_response(mut s: TcpStream) -> Resp {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..nl]).unwrap().trim(), 16).unwrap();
        data = &data[nl + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Sends one request on a fresh connection; returns the response and the client's address.
fn send(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (Resp, SocketAddr) {
    let addr = harness().addr;
    let mut s = connect(addr);
    let local = s.local_addr().unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    (read_response(s), local)
}

fn get(path: &str) -> Resp {
    send("GET", path, &[], b"").0
}

#[test]
fn spoofed_client_addr_is_replaced_by_the_real_peer() {
    let (resp, local) = send(
        "GET",
        "/headers?a=b",
        &[
            ("spin-client-addr", "6.6.6.6:666"),
            ("Spin-Client-Addr", "7.7.7.7:777"),
            ("spin-full-url", "http://evil.example/"),
            ("spin-path-info", "/evil"),
        ],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let addr = harness().addr;
    assert_eq!(
        resp.text(),
        format!(
            "client-addr={local}\nclient-addr-count=1\nfull-url=http://{addr}/headers?a=b\npath-info=/headers\n"
        )
    );
}

#[test]
fn sqlite_round_trip_persists_across_requests() {
    let first = get("/sql?v=alpha");
    assert_eq!(first.status, 200, "{}", first.text());
    let first = first.text();
    let second = get("/sql?v=beta");
    assert_eq!(second.status, 200, "{}", second.text());
    let second = second.text();

    // Each request is a fresh instance; the rows live in the host's database.
    assert!(first.contains("changes=1 columns=id,v,b,r,n\n"), "{first}");
    assert!(first.contains(":alpha:[1, 2, 3]:0.5:true\n"), "{first}");
    assert!(second.contains(":alpha:[1, 2, 3]:0.5:true\n"), "{second}");
    assert!(second.contains(":beta:[1, 2, 3]:0.5:true\n"), "{second}");
    let rowid = |s: &str| -> i64 {
        s.strip_prefix("rowid=")
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(rowid(&second) > rowid(&first));

    // And the host sees them through the same LocalDb.
    let h = harness();
    let db = h.db.clone();
    let rows =
        h.rt.block_on(async move {
            db.execute(
                "SELECT v, b FROM items WHERE v IN (?, ?) ORDER BY id",
                vec![
                    SqlValue::Text("alpha".into()),
                    SqlValue::Text("beta".into()),
                ],
            )
            .await
        })
        .unwrap();
    assert_eq!(
        rows.rows,
        vec![
            vec![
                SqlValue::Text("alpha".into()),
                SqlValue::Blob(vec![1, 2, 3])
            ],
            vec![SqlValue::Text("beta".into()), SqlValue::Blob(vec![1, 2, 3])],
        ]
    );
}

/// A guest that opens a transaction and never commits it holds the shared connection only
/// until its connection (or its whole instance, on a trap) goes: the transaction is rolled
/// back and the next request's statements run at once instead of waiting out BUSY_TIMEOUT.
#[test]
fn a_transaction_a_guest_leaves_open_is_rolled_back_and_frees_the_database() {
    for how in ["drop", "trap"] {
        let resp = get(&format!("/sql-abandon?how={how}"));
        let expected = if how == "trap" { 500 } else { 200 };
        assert_eq!(resp.status, expected, "{how}: {}", resp.text());
        let after = get(&format!("/sql?v=after-{how}"));
        assert_eq!(after.status, 200, "{how}: {}", after.text());
        assert!(
            after.text().contains(&format!(":after-{how}:")),
            "{}",
            after.text()
        );
        let h = harness();
        let db = h.db.clone();
        let left =
            h.rt.block_on(async move {
                db.execute(
                    "SELECT count(*) FROM items WHERE v = ?",
                    vec![SqlValue::Text(format!("abandoned-{how}"))],
                )
                .await
            })
            .unwrap();
        assert_eq!(left.rows, vec![vec![SqlValue::Integer(0)]], "{how}");
    }
}

#[test]
fn sqlite_errors_map_to_spin_errors() {
    let resp = get("/sql-error");
    assert_eq!(resp.status, 200);
    let text = resp.text();
    // (wit-bindgen's Debug for the guest-side `error` variant.)
    assert!(text.starts_with("open=Error::NoSuchDatabase\n"), "{text}");
    assert!(text.contains("execute=Error::Io(\""), "{text}");
    assert!(text.contains("no such table"), "{text}");
}

#[test]
fn variables_are_read_from_the_config() {
    let r = get("/var?name=greeting");
    assert_eq!(
        (r.status, r.text()),
        (200, "hello from the host".to_owned())
    );
    // Looked up lower-cased, like Spin.
    let r = get("/var?name=GREETING");
    assert_eq!(
        (r.status, r.text()),
        (200, "hello from the host".to_owned())
    );
    let r = get("/var?name=mixedcase");
    assert_eq!((r.status, r.text()), (200, "mixed".to_owned()));
    let r = get("/var?name=missing");
    assert_eq!(
        (r.status, r.text()),
        (404, "Error::Undefined(\"missing\")".to_owned())
    );
}

#[test]
fn the_router_gets_all_its_variables_in_one_call() {
    // The router's names only (`config::VARIABLES`), not every variable the runner holds.
    let r = get(&format!("/var?name={}", cyfr_core::config::BUNDLE_VARIABLE));
    assert_eq!(r.status, 200, "{}", r.text());
    let all = cyfr_core::config::unbundle(&r.text()).expect("a bundle");
    assert_eq!(
        all,
        HashMap::from([("session_ttl_hours".to_owned(), "12".to_owned())])
    );
}

#[test]
fn internal_authority_is_answered_in_process() {
    let r = get("/internal");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "status=200 x-internal=yes body=pong");

    let calls = harness().internal.calls.lock().unwrap().clone();
    let call = calls
        .iter()
        .find(|c| c.uri.ends_with("/v1/ping?x=1"))
        .expect("the internal service saw the call");
    assert_eq!(call.method, "POST");
    assert_eq!(call.uri, format!("http://{INTERNAL_AUTHORITY}/v1/ping?x=1"));
    assert_eq!(call.headers.get("x-test").map(String::as_str), Some("yes"));
    assert_eq!(
        call.headers.get("host").map(String::as_str),
        Some(INTERNAL_AUTHORITY)
    );
    assert_eq!(call.body, b"ping-body");
}

#[test]
fn every_other_outbound_request_is_refused() {
    let own = format!("http://{}/headers", harness().addr);
    for url in [
        "http://example.com/",
        "https://example.com/v1/ping",
        "http://host.cyfr.internal.evil.com/v1/ping",
        "http://host.cyfr.internal:8080/v1/ping",
        own.as_str(),
    ] {
        let r = get(&format!("/external?url={url}"));
        assert_eq!(r.status, 502, "{url}: {}", r.text());
        assert_eq!(
            r.text(),
            "refused: Http(ErrorCode::HttpRequestDenied)",
            "{url}"
        );
    }
    let calls = harness().internal.calls.lock().unwrap().clone();
    assert!(
        calls.iter().all(|c| c.uri.ends_with("/v1/ping?x=1")),
        "only /internal reaches the internal service: {calls:?}"
    );
}

#[test]
fn oversize_body_gets_413() {
    // Declared too large: refused before reading anything.
    let addr = harness().addr;
    let mut s = connect(addr);
    write!(
        s,
        "POST /upload HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        MAX_REQUEST_BODY + 1
    )
    .unwrap();
    let r = read_response(s);
    assert_eq!(r.status, 413, "{}", r.text());

    // Chunked (no length) past the limit.
    let mut s = connect(addr);
    write!(
        s,
        "POST /upload HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..9 {
                if write!(s, "{:x}\r\n", chunk.len()).is_err()
                    || s.write_all(&chunk).is_err()
                    || s.write_all(b"\r\n").is_err()
                {
                    return;
                }
            }
            let _ = s.write_all(b"0\r\n\r\n");
        })
    };
    let r = read_response(s);
    writer.join().unwrap();
    assert_eq!(r.status, 413, "{}", r.text());

    // Exactly the limit is fine and reaches the guest intact.
    let body = vec![b'y'; MAX_REQUEST_BODY];
    let (r, _) = send("POST", "/upload", &[], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), format!("len={MAX_REQUEST_BODY}"));
}

#[test]
fn guest_trap_gives_500_and_the_server_keeps_serving() {
    for _ in 0..3 {
        let r = get("/panic");
        assert_eq!(r.status, 500, "{}", r.text());
        let r = get("/headers");
        assert_eq!(r.status, 200, "{}", r.text());
        // A trap after the response head was set and part of the body written is a 500 too,
        // not a truncated 200.
        let r = get("/trap-mid-body");
        assert_eq!(r.status, 500, "{}", r.text());
        assert!(!r.text().contains("partial"), "{}", r.text());
    }
    let r = get("/no-such-path");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("text/plain")
    );
}

#[test]
fn concurrent_requests_each_get_an_instance() {
    let threads: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let path = if i % 4 == 0 {
                    "/panic"
                } else {
                    "/var?name=greeting"
                };
                (i, get(path).status)
            })
        })
        .collect();
    for t in threads {
        let (i, status) = t.join().unwrap();
        assert_eq!(status, if i % 4 == 0 { 500 } else { 200 }, "request {i}");
    }
}

#[test]
fn keep_alive_connection_serves_several_requests() {
    let addr = harness().addr;
    let mut s = connect(addr);
    for i in 0..3 {
        let last = i == 2;
        write!(
            s,
            "GET /var?name=greeting HTTP/1.1\r\nhost: {addr}\r\n{}\r\n",
            if last { "connection: close\r\n" } else { "" }
        )
        .unwrap();
        if last {
            break;
        }
        // Read exactly one response (content-length framed).
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .expect("content-length");
        let mut body = vec![0; len];
        s.read_exact(&mut body).unwrap();
        assert_eq!(body, b"hello from the host");
    }
    let r = read_response(s);
    assert_eq!(
        (r.status, r.text()),
        (200, "hello from the host".to_owned())
    );
}

#[test]
fn serve_returns_after_shutdown() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = Arc::new(
            LocalDb::open(temp_dir("shutdown").join("cyfr.db"))
                .await
                .unwrap(),
        );
        let runner =
            Arc::new(SpinRunner::new(config(db), Arc::new(RecordingInternal::default())).unwrap());
        // `handle` can also be called directly.
        let req = http::Request::get("/var?name=greeting")
            .header("host", "x")
            .body(Bytes::new())
            .unwrap();
        let resp = runner
            .handle(req, "127.0.0.1:1".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(resp.body().as_ref(), b"hello from the host");
        let req = http::Request::get("/panic").body(Bytes::new()).unwrap();
        assert!(runner
            .handle(req, "127.0.0.1:1".parse().unwrap())
            .await
            .is_err());

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(runner.serve(listener, async {
            let _ = stopped.await;
        }));
        let resp = tokio::task::spawn_blocking(move || {
            let mut s = connect(addr);
            write!(
                s,
                "GET /headers HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
            )
            .unwrap();
            read_response(s).status
        })
        .await
        .unwrap();
        assert_eq!(resp, 200);
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("serve returned")
            .unwrap()
            .unwrap();
        assert!(TcpStream::connect(addr).is_err(), "listener closed");
    });
}
