//! A tiny Spin HTTP component exercising every host interface the cyfr router uses:
//! inbound wasi:http, `spin:sqlite/sqlite@3.0.0`, `fermyon:spin/variables@2.0.0` and
//! outbound wasi:http. Built by `host/tests/spin_runner.rs`.

use spin_sdk::http::conversions::TryFromIncomingRequest;
use spin_sdk::http::{
    Fields, IncomingRequest, IntoResponse, Method, OutgoingResponse, Request, Response,
    ResponseOutparam,
};
use spin_sdk::http_component;
use spin_sdk::sqlite3::{Connection, Value};

fn text(status: u16, body: impl Into<String>) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(body.into())
        .build()
}

fn header(req: &Request, name: &str) -> String {
    req.header(name)
        .and_then(|v| v.as_str())
        .unwrap_or("<none>")
        .to_owned()
}

fn query_param(req: &Request, key: &str) -> Option<String> {
    req.query().split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_owned())
    })
}

/// The native wasi:http form of the handler, so that `/trap-mid-body` can set its response
/// and then trap while the body is being written; everything else goes through `route`.
#[http_component]
async fn handle(incoming: IncomingRequest, response_out: ResponseOutparam) {
    if incoming.path_with_query().as_deref() == Some("/trap-mid-body") {
        let response = OutgoingResponse::new(Fields::new());
        response.set_status_code(200).unwrap();
        response_out
            .set_with_body(response, b"partial body".to_vec())
            .await
            .unwrap();
        panic!("test guest trapping after starting its response body");
    }
    let response = match Request::try_from_incoming_request(incoming).await {
        Ok(req) => route(req).await.into_response(),
        Err(e) => text(400, format!("{e:?}")),
    };
    let mut response = response;
    let body = std::mem::take(response.body_mut());
    let response: OutgoingResponse = response.try_into().expect("convertible response");
    response_out
        .set_with_body(response, body)
        .await
        .expect("writing the response body");
}

async fn route(req: Request) -> anyhow::Result<Response> {
    let path = req.path().to_owned();
    match path.as_str() {
        // Echo the headers the host sets.
        "/headers" => Ok(text(
            200,
            format!(
                "client-addr={}\nclient-addr-count={}\nfull-url={}\npath-info={}\n",
                header(&req, "spin-client-addr"),
                req.headers()
                    .filter(|(k, _)| *k == "spin-client-addr")
                    .count(),
                header(&req, "spin-full-url"),
                header(&req, "spin-path-info"),
            ),
        )),
        // Append `v` to a table and list everything in it.
        "/sql" => {
            let v = query_param(&req, "v").unwrap_or_default();
            let db = Connection::open_default()?;
            db.execute(
                "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, v TEXT NOT NULL, b BLOB, r REAL, n)",
                &[],
            )?;
            db.execute(
                "INSERT INTO items (v, b, r, n) VALUES (?, ?, ?, ?)",
                &[
                    Value::Text(v),
                    Value::Blob(vec![1, 2, 3]),
                    Value::Real(0.5),
                    Value::Null,
                ],
            )?;
            let rowid = db.last_insert_rowid();
            let changes = db.changes();
            let rows = db.execute("SELECT id, v, b, r, n FROM items ORDER BY id", &[])?;
            let mut out = format!(
                "rowid={rowid} changes={changes} columns={}\n",
                rows.columns.join(",")
            );
            for row in rows.rows() {
                let id: i64 = row.get("id").unwrap_or(-1);
                let v: &str = row.get("v").unwrap_or("?");
                let b: &[u8] = row.get("b").unwrap_or(&[]);
                let r: f64 = row.get("r").unwrap_or(-1.0);
                let n_is_null = row.get::<&str>("n").is_none();
                out.push_str(&format!("{id}:{v}:{b:?}:{r}:{n_is_null}\n"));
            }
            Ok(text(200, out))
        }
        // Open a transaction, write in it, and leave without committing: by returning
        // (`how=drop`, the connection resource is dropped) or by trapping (`how=trap`).
        "/sql-abandon" => {
            let how = query_param(&req, "how").unwrap_or_default();
            let db = Connection::open_default()?;
            db.execute(
                "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, v TEXT NOT NULL, b BLOB, r REAL, n)",
                &[],
            )?;
            db.execute("BEGIN IMMEDIATE", &[])?;
            db.execute(
                "INSERT INTO items (v) VALUES (?)",
                &[Value::Text(format!("abandoned-{how}"))],
            )?;
            if how == "trap" {
                panic!("test guest trapping inside a transaction");
            }
            Ok(text(200, "left without COMMIT"))
        }
        "/sql-error" => Ok(match db_error() {
            Ok(()) => text(200, "no error?"),
            Err(e) => text(200, e),
        }),
        // Read a variable.
        "/var" => {
            let name = query_param(&req, "name").unwrap_or_default();
            Ok(match spin_sdk::variables::get(&name) {
                Ok(v) => text(200, v),
                Err(e) => text(404, format!("{e:?}")),
            })
        }
        // Outbound call answered in-process by the host's InternalService.
        "/internal" => {
            let authority = spin_sdk::variables::get("internal_authority")?;
            let outbound = Request::builder()
                .method(Method::Post)
                .uri(format!("http://{authority}/v1/ping?x=1"))
                .header("x-test", "yes")
                .body("ping-body")
                .build();
            let resp: Response = spin_sdk::http::send(outbound).await?;
            Ok(text(
                200,
                format!(
                    "status={} x-internal={} body={}",
                    resp.status(),
                    resp.header("x-internal")
                        .and_then(|v| v.as_str())
                        .unwrap_or("<none>"),
                    String::from_utf8_lossy(resp.body())
                ),
            ))
        }
        // Outbound call to anything else: must be refused by the host.
        "/external" => {
            let target = query_param(&req, "url").unwrap_or_else(|| "http://example.com/".into());
            let outbound = Request::builder().method(Method::Get).uri(target).build();
            Ok(match spin_sdk::http::send::<_, Response>(outbound).await {
                Ok(resp) => text(200, format!("unexpectedly allowed: {}", resp.status())),
                Err(e) => text(502, format!("refused: {e:?}")),
            })
        }
        "/upload" => Ok(text(200, format!("len={}", req.body().len()))),
        "/panic" => panic!("test guest asked to panic"),
        _ => Ok(text(404, "no such path")),
    }
}

fn db_error() -> Result<(), String> {
    let err = match Connection::open("not-configured") {
        Ok(_) => return Err("opened a database that should not exist".into()),
        Err(e) => format!("open={e:?}"),
    };
    let db = Connection::open_default().map_err(|e| format!("{e:?}"))?;
    let exec = match db.execute("SELECT * FROM no_such_table", &[]) {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("{e:?}"),
    };
    Err(format!("{err}\nexecute={exec}"))
}
