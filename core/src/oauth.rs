//! The OAuth 2.0 device authorization grant (RFC 8628) with an identity provider — GitHub,
//! Google, or any OIDC issuer found by discovery — over [`Dispatch::fetch`]. No storage
//! (`logins` keeps the codes): this only speaks to the provider. What is secret — the
//! client secret sent, the device code and access token received — never goes into an
//! error message.

use crate::config::LoginProvider;
use crate::dispatch::{Dispatch, Method, OutboundRequest};
use crate::errors::{Code, Error, Result};
use crate::logins::LoginUser;
use serde_json::Value as Json;
use zeroize::Zeroizing;

/// The grant type of a device-code token request (RFC 8628 §3.4).
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Where a provider's device authorization, token and user endpoints are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// The device authorization endpoint.
    pub device: String,
    /// The token endpoint.
    pub token: String,
    /// The user endpoint (OIDC userinfo, GitHub `/user`).
    pub user: String,
}

/// What the provider's device authorization endpoint answered.
pub struct DeviceGrant {
    /// The provider's device code: kept on the server only.
    pub device_code: Zeroizing<String>,
    /// The code the person enters.
    pub user_code: String,
    /// Where they enter it.
    pub verification_uri: String,
    /// The same with the code filled in, if the provider gives one.
    pub verification_uri_complete: Option<String>,
    /// Seconds the code lives.
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u64,
}

/// One poll of the token endpoint.
pub enum Token {
    /// `authorization_pending`.
    Pending,
    /// `slow_down`: poll 5 s less often.
    SlowDown,
    /// `expired_token`.
    Expired,
    /// `access_denied`.
    Denied,
    /// The access token.
    Granted(Zeroizing<String>),
}

/// `scheme://authority` of a URL.
fn origin(url: &str) -> &str {
    match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            &url[..i + 3 + rest.find('/').unwrap_or(rest.len())]
        }
        None => url,
    }
}

fn failed(p: &LoginProvider, what: &str) -> Error {
    Error::new(Code::Internal, format!("{} device flow: {what}", p.name))
}

/// `application/x-www-form-urlencoded`.
fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

/// Sends `req` and reads a JSON answer (any status); the status with it.
async fn exchange(
    d: &impl Dispatch,
    p: &LoginProvider,
    req: OutboundRequest,
) -> Result<(u16, Json)> {
    let url = req.url.clone();
    let a = d
        .fetch(req)
        .await
        .map_err(|_| failed(p, &format!("cannot reach {}", origin(&url))))?;
    let v = serde_json::from_slice(&a.body).map_err(|_| {
        failed(
            p,
            &format!("{} answered HTTP {} without JSON", origin(&url), a.status),
        )
    })?;
    Ok((a.status, v))
}

fn post(url: &str, body: Vec<u8>) -> OutboundRequest {
    OutboundRequest {
        method: Method::Post,
        url: url.to_string(),
        headers: vec![
            ("content-type", "application/x-www-form-urlencoded".into()),
            ("accept", "application/json".into()),
        ],
        body,
    }
}

fn text(v: &Json, field: &str) -> Option<String> {
    v.get(field)
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

/// The provider's endpoints: GitHub's and Google's fixed ones, or an OIDC issuer's from
/// its discovery document — which must name the configured issuer and keep every endpoint
/// on the issuer's origin (the only one the platform lets the router reach).
pub async fn endpoints(d: &impl Dispatch, p: &LoginProvider) -> Result<Endpoints> {
    match p.name {
        "github" => Ok(Endpoints {
            device: "https://github.com/login/device/code".into(),
            token: "https://github.com/login/oauth/access_token".into(),
            user: "https://api.github.com/user".into(),
        }),
        "google" => Ok(Endpoints {
            device: "https://oauth2.googleapis.com/device/code".into(),
            token: "https://oauth2.googleapis.com/token".into(),
            user: "https://openidconnect.googleapis.com/v1/userinfo".into(),
        }),
        _ => {
            let issuer = p
                .issuer
                .as_deref()
                .ok_or_else(|| failed(p, "no issuer configured"))?;
            let req = OutboundRequest {
                method: Method::Get,
                url: format!("{issuer}/.well-known/openid-configuration"),
                headers: vec![("accept", "application/json".into())],
                body: Vec::new(),
            };
            let (status, doc) = exchange(d, p, req).await?;
            if status != 200 {
                return Err(failed(p, &format!("discovery answered HTTP {status}")));
            }
            if text(&doc, "issuer")
                .as_deref()
                .map(|i| i.trim_end_matches('/'))
                != Some(issuer)
            {
                return Err(failed(p, "the discovery document names another issuer"));
            }
            let field = |name: &str| -> Result<String> {
                let url = text(&doc, name).ok_or_else(|| {
                    failed(p, &format!("the issuer has no {name} (no device flow)"))
                })?;
                if origin(&url) != origin(issuer) {
                    return Err(failed(
                        p,
                        &format!("{name} is not on the issuer's origin {}", origin(issuer)),
                    ));
                }
                Ok(url)
            };
            Ok(Endpoints {
                device: field("device_authorization_endpoint")?,
                token: field("token_endpoint")?,
                user: field("userinfo_endpoint")?,
            })
        }
    }
}

fn client<'a>(p: &'a LoginProvider, pairs: &mut Vec<(&'a str, &'a str)>) {
    pairs.push(("client_id", &p.client_id));
    if let Some(s) = &p.client_secret {
        pairs.push(("client_secret", s.as_str()));
    }
}

/// Starts the provider's device flow (RFC 8628 §3.1-3.2).
pub async fn start(d: &impl Dispatch, p: &LoginProvider, e: &Endpoints) -> Result<DeviceGrant> {
    let scope = if p.name == "github" {
        "read:user"
    } else {
        "openid email profile"
    };
    let mut pairs = vec![("scope", scope)];
    client(p, &mut pairs);
    let (status, v) = exchange(d, p, post(&e.device, form(&pairs))).await?;
    let code = text(&v, "device_code");
    let user_code = text(&v, "user_code");
    // Google spells it verification_url.
    let uri = text(&v, "verification_uri").or_else(|| text(&v, "verification_url"));
    let (Some(code), Some(user_code), Some(uri), 200) = (code, user_code, uri, status) else {
        return Err(failed(
            p,
            &format!(
                "the device authorization was refused (HTTP {status}{})",
                error_name(&v)
                    .map(|e| format!(", `{e}`"))
                    .unwrap_or_default()
            ),
        ));
    };
    let secs = |f: &str, default: u64| v.get(f).and_then(Json::as_u64).unwrap_or(default);
    Ok(DeviceGrant {
        device_code: Zeroizing::new(code),
        user_code,
        verification_uri: uri,
        verification_uri_complete: text(&v, "verification_uri_complete"),
        expires_in: secs("expires_in", 900).clamp(60, 1800),
        interval: secs("interval", 5).clamp(5, 60),
    })
}

/// The OAuth `error` of an answer, when it is a plain error name (nothing else is echoed).
fn error_name(v: &Json) -> Option<&str> {
    v.get("error")
        .and_then(Json::as_str)
        .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
}

/// One token request for `device_code` (RFC 8628 §3.4-3.5).
pub async fn poll(
    d: &impl Dispatch,
    p: &LoginProvider,
    e: &Endpoints,
    device_code: &str,
) -> Result<Token> {
    let mut pairs = vec![("grant_type", DEVICE_GRANT), ("device_code", device_code)];
    client(p, &mut pairs);
    let (status, v) = exchange(d, p, post(&e.token, form(&pairs))).await?;
    if let (200, Some(t)) = (status, text(&v, "access_token")) {
        return Ok(Token::Granted(Zeroizing::new(t)));
    }
    match error_name(&v) {
        Some("authorization_pending") => Ok(Token::Pending),
        Some("slow_down") => Ok(Token::SlowDown),
        Some("expired_token") => Ok(Token::Expired),
        Some("access_denied") => Ok(Token::Denied),
        other => Err(Error::new(
            Code::Internal,
            format!(
                "Failed to poll for token: {} answered HTTP {status}{}",
                p.name,
                other.map(|e| format!(" `{e}`")).unwrap_or_default()
            ),
        )),
    }
}

/// The signed-in user: `github:<id>`, `google:<sub>` or `oidc:<issuer>#<sub>`, with an
/// email only when the provider vouches for it (GitHub's public email, OIDC's
/// `email_verified`).
pub async fn identity(
    d: &impl Dispatch,
    p: &LoginProvider,
    e: &Endpoints,
    access_token: &str,
) -> Result<LoginUser> {
    let req = OutboundRequest {
        method: Method::Get,
        url: e.user.clone(),
        headers: vec![
            ("authorization", format!("Bearer {access_token}")),
            ("accept", "application/json".into()),
            ("user-agent", "cyfr".into()),
        ],
        body: Vec::new(),
    };
    let (status, v) = exchange(d, p, req).await?;
    if status != 200 {
        return Err(failed(
            p,
            &format!("could not read the user (HTTP {status})"),
        ));
    }
    let user = if p.name == "github" {
        let id = v
            .get("id")
            .and_then(Json::as_u64)
            .ok_or_else(|| failed(p, "the user has no id"))?;
        LoginUser {
            sub: format!("github:{id}"),
            email: text(&v, "email"),
            name: text(&v, "name").or_else(|| text(&v, "login")),
        }
    } else {
        let sub = text(&v, "sub").ok_or_else(|| failed(p, "the user has no sub"))?;
        let verified = matches!(v.get("email_verified"), Some(Json::Bool(true)))
            || v.get("email_verified").and_then(Json::as_str) == Some("true");
        LoginUser {
            sub: match p.name {
                "google" => format!("google:{sub}"),
                _ => format!("oidc:{}#{sub}", p.issuer.as_deref().unwrap_or("")),
            },
            email: text(&v, "email").filter(|_| verified),
            name: text(&v, "name").or_else(|| text(&v, "preferred_username")),
        }
    };
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_fixed_endpoints_are_on_the_authorities_the_platform_allows() {
        struct Nowhere;
        impl Dispatch for Nowhere {
            async fn run(
                &self,
                _: &crate::host_api::RunRequest,
            ) -> std::result::Result<crate::host_api::RunResponse, crate::dispatch::DispatchError>
            {
                unreachable!()
            }
            async fn put_artifact(
                &self,
                _: &str,
                _: &[u8],
            ) -> std::result::Result<(), crate::dispatch::DispatchError> {
                unreachable!()
            }
            async fn cancel(
                &self,
                _: &str,
            ) -> std::result::Result<bool, crate::dispatch::DispatchError> {
                unreachable!()
            }
            async fn load_directory(
                &self,
                _: &str,
            ) -> std::result::Result<crate::host_api::LoadedComponent, crate::dispatch::DispatchError>
            {
                unreachable!()
            }
        }
        for name in ["github", "google"] {
            let p = LoginProvider {
                name,
                client_id: "x".into(),
                client_secret: None,
                issuer: None,
            };
            let e = endpoints(&Nowhere, &p).await.unwrap();
            for url in [e.device, e.token, e.user] {
                let authority = origin(&url).trim_start_matches("https://");
                assert!(url.starts_with("https://"), "{url}");
                assert!(p.authorities().iter().any(|a| a == authority), "{url}");
            }
        }
        let p = LoginProvider {
            name: "oidc",
            client_id: "x".into(),
            client_secret: None,
            issuer: Some("http://127.0.0.1:8/realm".into()),
        };
        assert_eq!(p.authorities(), vec!["127.0.0.1:8".to_string()]);
    }

    #[test]
    fn forms_are_percent_encoded_and_origins_cut_at_the_path() {
        assert_eq!(
            form(&[("grant_type", DEVICE_GRANT), ("scope", "openid email")]),
            b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&scope=openid%20email"
        );
        assert_eq!(origin("http://127.0.0.1:9/a/b"), "http://127.0.0.1:9");
        assert_eq!(
            origin("https://auth.example.com"),
            "https://auth.example.com"
        );
        assert_ne!(
            origin("https://auth.example.com.evil.example/token"),
            "https://auth.example.com"
        );
    }
}
