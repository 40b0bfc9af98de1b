//! Streaming redaction: a response body handed out chunk by chunk (`stream-read`) never
//! shows a granted secret, however the chunks split it.

use cyfr_host::egress::fuzzing;

/// The input is `secret \0 body`, the body cut into chunks at the offsets its first bytes give.
pub fn target(data: &[u8]) {
    let Some(split) = data.iter().position(|b| *b == 0) else {
        return;
    };
    let (secret, rest) = (&data[..split], &data[split + 1..]);
    let Some((&cuts, rest)) = rest.split_first() else {
        return;
    };
    let base64 = cuts & 1 == 1;
    // Cut lengths from the next few bytes, the rest is the body.
    let n = (cuts >> 1) as usize % 8;
    if rest.len() < n {
        return;
    }
    let (lens, body) = rest.split_at(n);
    let mut chunks = Vec::new();
    let mut at = 0;
    for l in lens {
        let end = (at + *l as usize % 64).min(body.len());
        chunks.push(&body[at..end]);
        at = end;
    }
    chunks.push(&body[at..]);
    let out = fuzzing::stream(&[secret.to_vec()], &chunks, base64);
    // cyfr's secrets are strings (UTF-8): a byte string that is only a prefix of a UTF-8
    // sequence can show up inside a character of the text, and no secret can be one.
    if !super::redact::checkable(secret) || std::str::from_utf8(secret).is_err() {
        return;
    }
    let shown: Vec<u8> = if base64 {
        use base64::Engine;
        let mut all = Vec::new();
        for piece in &out {
            all.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(piece)
                    .unwrap_or_else(|e| panic!("piece `{piece}` is not base64: {e}")),
            );
        }
        all
    } else {
        out.concat().into_bytes()
    };
    assert!(
        find(&shown, secret).is_none(),
        "the stream handed out the secret"
    );
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Secrets in bodies, split anywhere.
pub fn corpus() -> Vec<Vec<u8>> {
    vec![
        b"sk-live-0123456789abcdef\0\x0a\x03\x07\x05\x01\x09{\"token\":\"sk-live-0123456789abcdef\",\"n\":1}".to_vec(),
        b"hunter2hunter2\0\x07\x04\x04\x0c\x01The password is hunter2hunter2, again hunter2hunter2.".to_vec(),
        b"p@ss/w+rd=42!\0\x04\x05\x09url=p%40ss%2Fw%2Brd%3D42%21&b64=cEBzcy93K3JkPTQyIQ==".to_vec(),
        b"caf\xc3\xa9-secret-\xe2\x82\xac\0\x06\x01\x01\x01caf\xc3\xa9-secret-\xe2\x82\xac tail".to_vec(),
    ]
}
