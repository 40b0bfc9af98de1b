//! The Spin entry point: a `wasi:http` component that adapts `cyfr-core` to Spin.
//!
//! `Db` is Spin SQLite (`spin:sqlite@3.0.0`, the `default` database), configuration comes
//! from Spin variables, and runs are dispatched to the host over outbound HTTP (the policy
//! is core's `hosts::HostPool`; this adapter only sends). Nothing here outlives a request:
//! Spin gives every request a fresh instance.

use cyfr_core::app::App;
use cyfr_core::config::{unbundle, Config, BUNDLE_VARIABLE, VARIABLES};
use cyfr_core::db::{Db, DbError, Rows, Stmt, Value};
use cyfr_core::dispatch::Chunks;
use cyfr_core::env::Env;
use cyfr_core::hosts::{self, Answer, HostPool, OutboundRequest, SendError, Transport};
use cyfr_core::http::HttpResponse;
use cyfr_core::stream::{self, Closed, Streaming};
use futures::{SinkExt, StreamExt};
use spin_sdk::http::{
    IncomingRequest, IncomingResponse, Method, OutgoingResponse, Request, Response,
    ResponseOutparam,
};
use spin_sdk::sqlite3::{self, Connection};
use std::cell::RefCell;
use std::pin::Pin;

mod wire;

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    // Our runner hands over every variable in one call; on Spin each is read by name.
    let bundle = spin_sdk::variables::get(BUNDLE_VARIABLE)
        .ok()
        .and_then(|b| unbundle(&b));
    let config = match Config::from_lookup(|name| match &bundle {
        Some(all) => all.get(name).cloned(),
        None => VARIABLES
            .contains(&name)
            .then(|| spin_sdk::variables::get(name).ok())
            .flatten(),
    }) {
        Ok(c) => c,
        Err(e) => {
            return wire::send_whole(out, &text(500, &format!("cyfr router misconfigured: {e}")))
        }
    };
    // Opened on the first statement: `/health` and refusals before any SQL open nothing.
    let whole = match &bundle {
        Some(all) => {
            std::cell::OnceCell::from(all.get("sqlite_batch").is_some_and(|v| batches_whole(v)))
        }
        None => std::cell::OnceCell::new(),
    };
    let db = SpinDb(std::cell::OnceCell::new(), whole);
    let req = match wire::read_request(req) {
        Ok(r) => r,
        Err(e) => return wire::send_whole(out, &text(400, &e)),
    };
    // A `tools/call` whose client accepts an event stream streams its run's events; the
    // outparam is set by the first one (or, when none came, by the whole answer below).
    let sink = SpinSink {
        head: stream::head(&config, &req),
        out: RefCell::new(Some(out)),
        body: RefCell::new(None),
    };
    let wanted = stream::wanted(&req);
    let dispatch = Streaming::new(HostPool::new(&config, SpinTransport, WasiEnv), sink, wanted);
    let app = App::new(db, dispatch, WasiEnv, config);
    let resp = app.handle(req).await;
    match app.dispatch.tail(&resp) {
        Some(tail) => {
            if !tail.is_empty() {
                let _ = cyfr_core::stream::Sink::send(app.dispatch.sink(), &tail).await;
            }
            // Dropping the body ends the stream.
        }
        None => {
            let Some(out) = app.dispatch.sink().out.take() else {
                return;
            };
            wire::send_whole(out, &resp)
        }
    }
}

type BodySink = Pin<Box<dyn futures::Sink<Vec<u8>, Error = ()>>>;

/// The response as an event stream: the head goes out with the first write.
struct SpinSink {
    head: Vec<(String, String)>,
    out: RefCell<Option<ResponseOutparam>>,
    body: RefCell<Option<BodySink>>,
}

impl cyfr_core::stream::Sink for SpinSink {
    async fn send(&self, bytes: &[u8]) -> Result<(), Closed> {
        if let Some(out) = self.out.take() {
            let mut b = Response::builder();
            b.status(200);
            for (k, v) in &self.head {
                b.header(k.as_str(), v.as_str());
            }
            let resp =
                OutgoingResponse::try_from(b.body(Vec::new()).build()).map_err(|_| Closed)?;
            let body: BodySink = Box::pin(resp.take_body().sink_map_err(|_| ()));
            out.set(resp);
            self.body.replace(Some(body));
        }
        // Taken out for the write: no borrow is held across the await.
        let mut body = self.body.take().ok_or(Closed)?;
        let sent = body.send(bytes.to_vec()).await;
        self.body.replace(Some(body));
        sent.map_err(|_| Closed)
    }

    async fn sleep(&self, ms: u64) {
        // Blocking is fine: this instance serves only this stream, which has nothing else
        // to do until the next poll.
        wasi::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
    }
}

fn text(status: u16, msg: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: msg.as_bytes().to_vec(),
    }
}

/// The method as the wire spells it.
fn method_name(method: &Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Patch => "PATCH",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        _ => "OTHER",
    }
}

/// Whether a `sqlite_batch` value says the runner takes a whole batch in one call.
fn batches_whole(v: &str) -> bool {
    v.trim() == "1"
}

/// Spin SQLite behind the core's `Db`, its connection opened on first use; whether the
/// runner takes a whole batch in one call (`sqlite_batch`, see `cyfr_core::sql_batch`) comes
/// with the variables' bundle, else is read on the first batch.
struct SpinDb(std::cell::OnceCell<Connection>, std::cell::OnceCell<bool>);

impl SpinDb {
    fn connection(&self) -> Result<&Connection, DbError> {
        if let Some(c) = self.0.get() {
            return Ok(c);
        }
        let c = Connection::open_default()
            .map_err(|e| DbError(format!("cannot open the database: {e:?}")))?;
        Ok(self.0.get_or_init(|| c))
    }
}

impl Db for SpinDb {
    async fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        let params: Vec<sqlite3::Value> = params
            .iter()
            .map(|p| match p {
                Value::Null => sqlite3::Value::Null,
                Value::Integer(n) => sqlite3::Value::Integer(*n),
                Value::Real(f) => sqlite3::Value::Real(*f),
                Value::Text(s) => sqlite3::Value::Text(s.clone()),
                Value::Blob(b) => sqlite3::Value::Blob(b.clone()),
            })
            .collect();
        let result = self
            .connection()?
            .execute(sql, &params)
            .map_err(|e| DbError(format!("{e:?}")))?;
        let rows = result
            .rows
            .into_iter()
            .map(|r| {
                r.values
                    .into_iter()
                    .map(|v| match v {
                        sqlite3::Value::Null => Value::Null,
                        sqlite3::Value::Integer(n) => Value::Integer(n),
                        sqlite3::Value::Real(f) => Value::Real(f),
                        sqlite3::Value::Text(s) => Value::Text(s),
                        sqlite3::Value::Blob(b) => Value::Blob(b),
                    })
                    .collect()
            })
            .collect();
        Ok(Rows {
            columns: result.columns,
            rows,
        })
    }

    async fn batch(&self, stmts: &[Stmt], atomic: bool) -> Result<Vec<Rows>, DbError> {
        let whole = *self.1.get_or_init(|| {
            spin_sdk::variables::get("sqlite_batch").is_ok_and(|v| batches_whole(&v))
        });
        // One plain statement is one call either way; an atomic one would be three.
        if !whole || stmts.is_empty() || (stmts.len() == 1 && !atomic) {
            return cyfr_core::db::batch_by_queries(self, stmts, atomic).await;
        }
        let (sql, params) = cyfr_core::sql_batch::encode(stmts, atomic);
        let all = self.query(&sql, &params).await?;
        cyfr_core::sql_batch::decode_results(all).map_err(DbError)
    }
}

/// WASI clocks and randomness.
struct WasiEnv;

impl Env for WasiEnv {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    fn fill_random(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("WASI random is always available");
    }
}

/// Outbound `wasi:http`: the core's [`HostPool`] decides where each request goes, with
/// which token and body; this only sends it and says whether it could have been delivered.
struct SpinTransport;

/// The Spin request for one of core's outbound requests.
fn spin_request(req: OutboundRequest) -> Request {
    let method = match req.method {
        hosts::Method::Get => Method::Get,
        hosts::Method::Post => Method::Post,
        hosts::Method::Put => Method::Put,
    };
    let mut b = Request::builder();
    b.method(method).uri(req.url);
    for (name, value) in req.headers {
        b.header(name, value);
    }
    b.body(req.body).build()
}

impl Transport for SpinTransport {
    async fn send(&self, req: OutboundRequest) -> Result<Answer, SendError> {
        match spin_sdk::http::send::<_, Response>(spin_request(req)).await {
            Ok(resp) => Ok(Answer {
                status: *resp.status(),
                body: resp.into_body(),
            }),
            Err(e) => Err(classify(e)),
        }
    }

    async fn send_streamed(
        &self,
        req: OutboundRequest,
        chunks: &impl Chunks,
    ) -> Result<Answer, SendError> {
        let resp = spin_sdk::http::send::<_, IncomingResponse>(spin_request(req))
            .await
            .map_err(classify)?;
        let status = resp.status();
        if status != 200 {
            let body = resp
                .into_body()
                .await
                .map_err(|e| SendError::Failed(format!("reading the host's answer: {e}")))?;
            return Ok(Answer { status, body });
        }
        // The body as it arrives: a streamed run's events.
        let mut stream = resp.take_body_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| SendError::Failed(format!("reading the host's answer: {e}")))?;
            chunks.chunk(&chunk).await;
        }
        drop(resp);
        Ok(Answer {
            status,
            body: Vec::new(),
        })
    }
}

/// Whether a failed send reached the host. Only the `wasi:http` error codes that end a
/// request before any byte of it was written mean "not sent": refused, unresolvable or
/// unreachable destinations, a connect that timed out, and requests the platform denied.
/// A body that could not be written whole counts too: the runtime closes the body stream
/// when the connect fails (often before the refusal itself is reported), and a host acts
/// only on a whole body, so nothing ran.
fn classify(e: spin_sdk::http::SendError) -> SendError {
    use spin_sdk::http::ErrorCode;
    let text = e.to_string();
    match e {
        spin_sdk::http::SendError::Io(_) => {
            SendError::NotSent(format!("writing the request: {text}"))
        }
        spin_sdk::http::SendError::Http(
            ErrorCode::ConnectionRefused
            | ErrorCode::DnsTimeout
            | ErrorCode::DnsError(_)
            | ErrorCode::DestinationNotFound
            | ErrorCode::DestinationUnavailable
            | ErrorCode::ConnectionTimeout
            | ErrorCode::HttpRequestDenied,
        ) => SendError::NotSent(text),
        _ => SendError::Failed(text),
    }
}
