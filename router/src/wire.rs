//! The incoming request and the whole answer, read and written on `wasi:http` directly.
//!
//! spin-sdk's `Request` parses the URI with `http`, keeps the headers in a map and reads the
//! body through its executor's pollables; the core wants none of that. Here a request is a
//! handful of host calls (method, path, one `entries` for all headers, the body in large
//! reads) and an answer is one `Fields::from_list` and a few writes. Each request has an
//! instance of its own, so blocking on a stream blocks nothing else.

use cyfr_core::http::{HttpRequest, HttpResponse};
use spin_sdk::http::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};
use wasi::io::streams::StreamError;

/// How much one read of the request body asks for.
const READ_SIZE: u64 = 64 * 1024;

/// The request as the core sees it. Spin's own headers (`spin-*`) are not passed on; the
/// peer and the scheme come from the two of them that Spin sets and a client cannot. Lines
/// of one name are combined into one comma-separated value (RFC 9110, 5.3), so a reader of
/// one value sees them all: a proxy's appended `X-Forwarded-Proto` stays right-most, and
/// two `Authorization` lines make one credential that matches nothing.
pub(crate) fn read_request(req: IncomingRequest) -> Result<HttpRequest, String> {
    let method = crate::method_name(&req.method()).to_string();
    let path_with_query = req.path_with_query().unwrap_or_else(|| "/".into());
    let path = match path_with_query.split_once('?') {
        Some((p, _)) => p.to_string(),
        None => path_with_query,
    };
    let fields = req.headers();
    let entries = fields.entries();
    drop(fields);
    let (mut peer, mut scheme) = (None, None);
    let mut headers = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            name.to_ascii_lowercase()
        } else {
            name
        };
        let value = String::from_utf8(value).unwrap_or_default();
        match name.as_str() {
            // Spin sets spin-client-addr from the TCP peer; a client cannot supply it.
            "spin-client-addr" => {
                peer = value
                    .parse::<std::net::SocketAddr>()
                    .map(|a| a.ip())
                    .ok()
                    .or_else(|| value.parse().ok())
            }
            // Spin records the URL it received, scheme included.
            "spin-full-url" => {
                scheme = value.split_once("://").map(|(s, _)| s.to_ascii_lowercase())
            }
            _ => {}
        }
        if name.starts_with("spin-") {
            continue;
        }
        match headers
            .iter_mut()
            .find(|(k, _): &&mut (String, String)| *k == name)
        {
            Some((_, v)) => {
                v.push_str(", ");
                v.push_str(&value);
            }
            None => headers.push((name, value)),
        }
    }
    let body = read_body(req)?;
    Ok(HttpRequest {
        method,
        path,
        headers,
        body,
        peer,
        scheme,
    })
}

fn read_body(req: IncomingRequest) -> Result<Vec<u8>, String> {
    let incoming = req
        .consume()
        .map_err(|()| "the request body was already taken")?;
    let stream = incoming
        .stream()
        .map_err(|()| "the request body cannot be read")?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(READ_SIZE) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(format!("reading the request body: {}", e.to_debug_string()))
            }
        }
    }
    drop(stream);
    drop(spin_sdk::wit::wasi::http0_2_0::types::IncomingBody::finish(
        incoming,
    ));
    Ok(body)
}

/// Sends `resp` as the whole answer. A header `wasi:http` refuses, or a client gone
/// mid-body, is logged; the runner then answers 500 (or the client saw a cut body).
pub(crate) fn send_whole(out: ResponseOutparam, resp: &HttpResponse) {
    let list: Vec<(String, Vec<u8>)> = resp
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    let fields = match Fields::from_list(&list) {
        Ok(f) => f,
        Err(e) => return eprintln!("cyfr router: a header of the response was refused: {e:?}"),
    };
    let response = OutgoingResponse::new(fields);
    if response.set_status_code(resp.status).is_err() {
        return eprintln!("cyfr router: status {} refused", resp.status);
    }
    let Ok(body) = response.body() else {
        return eprintln!("cyfr router: the response has no body to write");
    };
    // Set first: the runner reads the body only once it has the response.
    out.set(response);
    if let Err(e) = write_all(&body, &resp.body) {
        return eprintln!("cyfr router: could not send the response: {e}");
    }
    if let Err(e) = OutgoingBody::finish(body, None) {
        eprintln!("cyfr router: could not finish the response: {e:?}");
    }
}

fn write_all(body: &OutgoingBody, mut bytes: &[u8]) -> Result<(), String> {
    let stream = body
        .write()
        .map_err(|()| "the response body cannot be written".to_string())?;
    let failed = |e: StreamError| match e {
        StreamError::Closed => "the client went away".to_string(),
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
    };
    while !bytes.is_empty() {
        let room = stream.check_write().map_err(failed)?;
        if room == 0 {
            stream.subscribe().block();
            continue;
        }
        let n = bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        stream.write(&bytes[..n]).map_err(failed)?;
        bytes = &bytes[n..];
    }
    stream.blocking_flush().map_err(failed)
}
