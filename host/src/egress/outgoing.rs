//! The request as it goes upstream for one hop: the guest's headers under the host's header
//! rules, its body encoded (multipart included), and `{{secret:…}}` substituted at the last
//! moment — after [`super::decide`] allowed the hop.

use bytes::Bytes;
use http_body_util::Full;

use super::abi::{Body, Part, PartContent};
use super::inject::{Secrets, SECRET_OPEN};
use super::redact::Redactor;
use super::{Denied, ErrorKind, Target};

/// Headers the host sets or that make no sense from a guest: never forwarded.
const DROPPED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    // The host asks for `identity`: a compressed body would carry a secret past redaction.
    "accept-encoding",
];

/// The most header bytes (names and values, after substitution) one request may carry.
const MAX_HEADER_BYTES: u64 = 64 * 1024;

/// Headers not resent when a redirect leaves the original origin.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

const BODY: &str = "the request body is";

/// What building a hop's request needs from the execution.
pub(crate) struct Builder<'a> {
    pub(crate) secrets: &'a Secrets,
    pub(crate) redactor: &'a Redactor,
    /// The policy's `max_request_size`.
    pub(crate) max_request_bytes: u64,
}

impl Builder<'_> {
    /// Builds the headers and body for one hop to `target`; `cross_origin` when a redirect
    /// has left the first hop's origin.
    pub(crate) fn build(
        &self,
        target: &Target,
        headers: &[(String, String)],
        body: &Body,
        cross_origin: bool,
    ) -> Result<http::Request<Full<Bytes>>, Denied> {
        let (body_bytes, multipart_type) = self.body(body)?;
        if body_bytes.len() as u64 > self.max_request_bytes {
            return Err(Denied::new(
                ErrorKind::RequestTooLarge,
                format!(
                    "the request body is {} bytes, over the {}-byte limit (max_request_size)",
                    body_bytes.len(),
                    self.max_request_bytes
                ),
            ));
        }
        let method = http::Method::from_bytes(target.method.as_bytes())
            .map_err(|_| bad(format!("`{}` is not an HTTP method", target.method)))?;
        let mut builder = http::Request::builder()
            .method(method)
            .uri(target.path_and_query())
            .header(http::header::HOST, target.host_header());
        let mut has_user_agent = false;
        for (name, value) in self.headers(headers, multipart_type.is_some(), cross_origin)? {
            has_user_agent |= name == http::header::USER_AGENT;
            builder = builder.header(name, value);
        }
        if let Some(ct) = multipart_type {
            builder = builder.header(http::header::CONTENT_TYPE, ct);
        }
        if !has_user_agent {
            builder = builder.header(http::header::USER_AGENT, "cyfr-catalyst/0.1");
        }
        builder = builder.header(http::header::ACCEPT_ENCODING, "identity");
        builder
            .body(Full::new(Bytes::from(body_bytes)))
            .map_err(|e| bad(format!("cannot build the request: {e}")))
    }

    /// The guest's headers as sent: the dropped ones left out, credentials and secrets not
    /// resent across origins, `{{secret:…}}` substituted within [`MAX_HEADER_BYTES`].
    fn headers(
        &self,
        headers: &[(String, String)],
        multipart: bool,
        cross_origin: bool,
    ) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, Denied> {
        let mut budget = MAX_HEADER_BYTES;
        let mut out = Vec::new();
        for (name, template) in headers {
            let lower = name.to_ascii_lowercase();
            if DROPPED_HEADERS.contains(&lower.as_str()) {
                continue;
            }
            if multipart && lower == "content-type" {
                continue;
            }
            if cross_origin
                && (CREDENTIAL_HEADERS.contains(&lower.as_str()) || template.contains(SECRET_OPEN))
            {
                continue;
            }
            let header_name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("`{name}` is not a valid header name")))?;
            let value = self.secrets.substitute(
                template,
                &mut budget,
                MAX_HEADER_BYTES,
                "the request headers are",
            )?;
            // A value the guest read (`secrets/read`) and put in a header is not resent
            // across origins either.
            if cross_origin && self.redactor.contains(value.as_bytes()) {
                continue;
            }
            budget = budget.saturating_sub(name.len() as u64);
            let header_value = http::HeaderValue::from_str(&value).map_err(|_| {
                bad(format!(
                    "the value of header `{name}` is not a valid header value"
                ))
            })?;
            out.push((header_name, header_value));
        }
        Ok(out)
    }

    /// The body bytes (secrets substituted in text) and, for multipart, its content type.
    fn body(&self, body: &Body) -> Result<(Vec<u8>, Option<String>), Denied> {
        let limit = self.max_request_bytes;
        let mut budget = limit;
        Ok(match body {
            Body::Empty => (Vec::new(), None),
            Body::Text(t) => (
                self.secrets
                    .substitute(t, &mut budget, limit, BODY)?
                    .into_bytes(),
                None,
            ),
            Body::Binary(b) => (b.clone(), None),
            Body::Multipart(parts) => {
                let (bytes, boundary) = self.multipart(parts, &mut budget)?;
                (
                    bytes,
                    Some(format!("multipart/form-data; boundary={boundary}")),
                )
            }
        })
    }

    /// `multipart/form-data` under a random boundary; the body and the boundary.
    fn multipart(&self, parts: &[Part], budget: &mut u64) -> Result<(Vec<u8>, String), Denied> {
        let limit = self.max_request_bytes;
        let mut random = [0u8; 12];
        let _ = getrandom::fill(&mut random);
        let boundary = format!(
            "cyfr-{}",
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            let mut disposition = format!(
                "Content-Disposition: form-data; name=\"{}\"",
                p.name.replace('"', "%22")
            );
            if let Some(f) = &p.filename {
                disposition.push_str(&format!("; filename=\"{}\"", f.replace('"', "%22")));
            }
            out.extend_from_slice(disposition.as_bytes());
            out.extend_from_slice(b"\r\n");
            if let Some(ct) = &p.content_type {
                out.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            match &p.content {
                PartContent::Value(v) => out
                    .extend_from_slice(self.secrets.substitute(v, budget, limit, BODY)?.as_bytes()),
                PartContent::Data(d) => out.extend_from_slice(d),
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        Ok((out, boundary))
    }
}

fn bad(message: String) -> Denied {
    Denied::new(ErrorKind::HttpError, message)
}
