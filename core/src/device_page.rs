//! cyfr's own device verification page, `/auth/device`: where a pending user code from
//! `session.device-init` is approved (or denied) for a user by someone signing in with an
//! admin key — the self-hoster's way without an OAuth provider. Only the HTTP of the page
//! lives here; the rule is `logins::decide`, the same as `session.approve`.

use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::http::{HttpRequest, HttpResponse};
use crate::logins::{self, LoginUser};
use crate::{audit, auth};

/// The page's path.
pub const PATH: &str = logins::VERIFICATION_PATH;

/// Largest form accepted.
const MAX_FORM_BYTES: usize = 8 << 10;

/// `GET` shows the form; `POST` decides a code.
pub async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    req: &HttpRequest,
) -> HttpResponse {
    match req.method.as_str() {
        "GET" => page(200, "", ""),
        "POST" => decide(cx, req).await,
        _ => {
            let mut r = HttpResponse::empty(405);
            r.headers.push(("allow".into(), "GET, POST".into()));
            r
        }
    }
}

async fn decide<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    req: &HttpRequest,
) -> HttpResponse {
    // A page elsewhere must not post here (the key it would need is the real guard).
    if let Some(origin) = req.header("origin") {
        if !cx.config.origin_allowed(origin) && !same_origin(req, origin) {
            return page(403, "", "This page may only be submitted from itself.");
        }
    }
    if !cx.secure(req) {
        return page(
            403,
            "",
            "An admin key may only be sent over HTTPS or from this machine.",
        );
    }
    if req.body.len() > MAX_FORM_BYTES {
        return page(413, "", "Form too large.");
    }
    let form = parse_form(&String::from_utf8_lossy(&req.body));
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let code = get("user_code").unwrap_or_default();
    let now = cx.env.now_ms();
    let key = get("admin_key").unwrap_or_default();
    let who = match auth::authenticate_key(&cx.db, &cx.config, req, &key, now).await {
        Ok(w) if w.is_admin() => w,
        _ => {
            let _ = audit::insert(
                &cx.db,
                &audit::Entry {
                    at: now,
                    request_id: crate::env::random_token(&cx.env, 12),
                    event: "auth".into(),
                    actor: Some(format!("{}...", key.chars().take(12).collect::<String>())),
                    tool: Some("session".into()),
                    action: Some("approve".into()),
                    outcome: Some(audit::Outcome::AuthFailure),
                    error_code: Some(-33002),
                    ..Default::default()
                },
            )
            .await;
            return page(401, &code, "That is not an admin key.");
        }
    };
    let deny = get("decision").as_deref() == Some("deny");
    let user = get("user").map(|sub| LoginUser {
        sub,
        email: get("email"),
        name: None,
    });
    let allowed = &cx.config.allowed_users;
    if let (false, Some(u)) = (deny, &user) {
        if !allowed.is_empty()
            && !allowed
                .iter()
                .any(|a| *a == u.sub || Some(a) == u.email.as_ref())
        {
            return page(403, &code, "That user is not allowed to sign in here.");
        }
    }
    let result = match (deny, &user) {
        (true, _) => logins::decide(&cx.db, &code, None, now).await,
        (false, Some(u)) => logins::decide(&cx.db, &code, Some(u), now).await,
        (false, None) => return page(400, &code, "Name the user who signs in."),
    };
    let _ = audit::insert(
        &cx.db,
        &audit::Entry {
            at: now,
            request_id: crate::env::random_token(&cx.env, 12),
            event: "change".into(),
            actor: Some(who.actor()),
            actor_id: Some(who.id().to_string()),
            tool: Some("session".into()),
            action: Some(if deny { "deny" } else { "approve" }.into()),
            outcome: Some(match &result {
                Ok(()) => audit::Outcome::Ok,
                Err(_) => audit::Outcome::Error,
            }),
            detail: user
                .as_ref()
                .map(|u| serde_json::json!({ "subject": u.sub })),
            ..Default::default()
        },
    )
    .await;
    match result {
        Ok(()) if deny => page(200, "", "Denied. The device will not be signed in."),
        Ok(()) => page(200, "", "Approved. Return to your terminal."),
        Err(e) => page(400, &code, &e.message),
    }
}

fn same_origin(req: &HttpRequest, origin: &str) -> bool {
    let host = req.header("host").unwrap_or("");
    !host.is_empty()
        && (origin.eq_ignore_ascii_case(&format!("https://{host}"))
            || origin.eq_ignore_ascii_case(&format!("http://{host}")))
}

/// `application/x-www-form-urlencoded` pairs.
fn parse_form(body: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match std::str::from_utf8(&b[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The page, with `code` filled in and `message` shown (both escaped).
fn page(status: u16, code: &str, message: &str) -> HttpResponse {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>cyfr: approve a device</title></head><body>\
         <h1>Approve a device sign-in</h1><p>{}</p>\
         <form method=\"post\" action=\"{PATH}\">\
         <label>Code <input name=\"user_code\" value=\"{}\" autocomplete=\"off\" required></label><br>\
         <label>User <input name=\"user\" autocomplete=\"off\"></label><br>\
         <label>Email <input name=\"email\" type=\"email\" autocomplete=\"off\"></label><br>\
         <label>Admin key <input name=\"admin_key\" type=\"password\" autocomplete=\"off\" required></label><br>\
         <button name=\"decision\" value=\"approve\">Approve</button> <button name=\"decision\" value=\"deny\">Deny</button>\
         </form></body></html>",
        escape(message),
        escape(code)
    );
    HttpResponse {
        status,
        headers: vec![
            ("content-type".into(), "text/html; charset=utf-8".into()),
            (
                "content-security-policy".into(),
                "default-src 'none'; form-action 'self'; frame-ancestors 'none'".into(),
            ),
            ("x-frame-options".into(), "DENY".into()),
            ("cache-control".into(), "no-store".into()),
            ("referrer-policy".into(), "no-referrer".into()),
        ],
        body: body.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn forms_decode_and_pages_escape() {
        let f = super::parse_form("user_code=BCDF-GHJK&user=a%40b.c&x=%zz+y&email=");
        assert_eq!(f[0], ("user_code".into(), "BCDF-GHJK".into()));
        assert_eq!(f[1].1, "a@b.c");
        assert_eq!(f[2].1, "%zz y");
        let p = super::page(200, "<script>", "\"x\"");
        let body = String::from_utf8(p.body).unwrap();
        assert!(!body.contains("<script>") && body.contains("&lt;script&gt;"));
    }
}
