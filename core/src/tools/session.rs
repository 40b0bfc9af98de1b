//! The `session` tool: signing in with the device flow (`device-init`, `device-poll`, callable
//! without credentials), `whoami`, `logout`, and `approve` — cyfr's own verification, where
//! an admin approves (or denies) a pending user code for a user. Users get only what they
//! were granted (`permission.set`), never admin by default.

use super::decl::{actions, NoArgs};
use crate::access::Need;
use crate::args::{fields, loose_bool, opt_str, required};
use crate::auth::Identity;
use crate::config::{Config, LoginProvider};
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Code, Error, Result};
use crate::logins::{self, LoginUser};
use crate::oauth;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value as Json};

pub(super) const DESCRIPTION: &str = "Sign in (device flow: device-init, then device-poll until complete), whoami, logout; approve a pending user code (admin).";

actions! {
    /// The `session` tool's actions.
    tool "session": Action, Calls {
        DeviceInit = "device-init", InitArgs, Need::Anyone, false;
        DevicePoll = "device-poll", PollArgs, Need::Anyone, false;
        Login = "login", NoArgs, Need::Anyone, false;
        Whoami = "whoami", NoArgs, Need::Anyone, false;
        Logout = "logout", NoArgs, Need::Authenticated, false;
        Approve = "approve", ApproveArgs, Need::Admin, false;
    }
}

fields!(
    Provider = "provider",
    DeviceCode = "device_code",
    UserCode = "user_code",
    User = "user",
    Email = "email",
    DisplayName = "display_name"
);

/// `session.device-init`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct InitArgs {
    /// device-init/poll: github, google, oidc, or cyfr (its own verification); default: the configured provider, else cyfr
    #[serde(default, deserialize_with = "opt_str::<Provider, _>")]
    provider: Option<String>,
}

/// `session.device-poll`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct PollArgs {
    /// device-poll: the device_code device-init returned
    #[serde(default, deserialize_with = "opt_str::<DeviceCode, _>")]
    device_code: Option<String>,
    /// device-init/poll: github, google, oidc, or cyfr (its own verification); default: the configured provider, else cyfr
    #[serde(default, deserialize_with = "opt_str::<Provider, _>")]
    provider: Option<String>,
}

/// `session.approve`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct ApproveArgs {
    /// approve: the code the person was shown (ABCD-EFGH)
    #[serde(default, deserialize_with = "opt_str::<UserCode, _>")]
    user_code: Option<String>,
    /// approve: the user id the session signs in as
    #[serde(default, deserialize_with = "opt_str::<User, _>")]
    user: Option<String>,
    /// approve: the user's email
    #[serde(default, deserialize_with = "opt_str::<Email, _>")]
    email: Option<String>,
    /// approve: the user's display name
    #[serde(default, deserialize_with = "opt_str::<DisplayName, _>")]
    display_name: Option<String>,
    /// approve: deny the code instead
    #[serde(default, deserialize_with = "loose_bool")]
    deny: Option<bool>,
}

/// The provider asked for: `None` is cyfr's own verification. Without `provider`, the one
/// configured provider runs the flow (the first of github, google, oidc), else cyfr's own.
fn provider<'a>(config: &'a Config, asked: Option<&str>) -> Result<Option<&'a LoginProvider>> {
    match asked {
        None => Ok(config.login_providers.first()),
        Some("cyfr") => Ok(None),
        Some(p @ ("github" | "google" | "oidc")) => match config.login_provider(p) {
            Some(found) => Ok(Some(found)),
            None => {
                let var = format!("CYFR_{}_CLIENT_ID", p.to_ascii_uppercase());
                Err(Error::invalid_params(format!(
                    "{p} client ID not configured. Set {var}"
                )))
            }
        },
        Some(other) => Err(Error::invalid_params(format!(
            "provider `{other}` must be github, google, oidc or cyfr"
        ))),
    }
}

/// Asks the provider about a pending code and writes what it said: at most one more round
/// trip (the provider's HTTP calls are not database round trips).
async fn poll_provider<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    p: logins::ProviderPoll,
) -> Result<Json> {
    let Some(provider) = cx.config.login_provider(&p.provider) else {
        // The provider was unconfigured since: its code yields nothing.
        return logins::provider_said(&cx.db, &cx.env, &p, "expired").await;
    };
    let ends = oauth::endpoints(&cx.dispatch, provider).await?;
    let token = match oauth::poll(&cx.dispatch, provider, &ends, &p.device_code).await? {
        oauth::Token::Pending => {
            return logins::provider_said(&cx.db, &cx.env, &p, "pending").await
        }
        oauth::Token::SlowDown => {
            return logins::provider_said(&cx.db, &cx.env, &p, "slow_down").await
        }
        oauth::Token::Expired => {
            return logins::provider_said(&cx.db, &cx.env, &p, "expired").await
        }
        oauth::Token::Denied => return logins::provider_said(&cx.db, &cx.env, &p, "denied").await,
        oauth::Token::Granted(t) => t,
    };
    let user = oauth::identity(&cx.dispatch, provider, &ends, &token).await?;
    if !logins::allowed(&cx.config.allowed_users, &user) {
        logins::provider_said(&cx.db, &cx.env, &p, "denied").await?;
        return Err(not_allowed(&user.sub));
    }
    logins::provider_complete(&cx.db, &cx.env, &p, &user, cx.config.session_ttl_ms).await
}

fn not_allowed(user: &str) -> Error {
    Error::new(
        Code::InsufficientPermissions,
        format!("`{user}` is not an allowed user (CYFR_ALLOWED_USER)"),
    )
}

/// A poll's first read, sent ahead with the caller check.
pub(super) fn read_ahead(a: Action, args: &Json) -> Vec<crate::db::Stmt> {
    match a.call(args) {
        Ok(Calls::DevicePoll(PollArgs {
            device_code: Some(c),
            ..
        })) => vec![logins::poll_peek_stmt(&c)],
        _ => Vec::new(),
    }
}

pub(super) async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: Option<&Identity>,
    args: Calls,
) -> Result<Json> {
    match args {
        Calls::DeviceInit(a) => {
            if let Some(p) = provider(&cx.config, a.provider.as_deref())? {
                let ends = oauth::endpoints(&cx.dispatch, p).await?;
                let g = oauth::start(&cx.dispatch, p, &ends).await?;
                let mut answer = logins::device_init_provider(
                    &cx.db,
                    &cx.env,
                    p.name,
                    &g.device_code,
                    &g.user_code,
                    g.expires_in,
                    g.interval,
                )
                .await?;
                answer["verification_uri"] = json!(g.verification_uri);
                if let Some(c) = g.verification_uri_complete {
                    answer["verification_uri_complete"] = json!(c);
                }
                answer["provider"] = json!(p.name);
                return Ok(answer);
            }
            let uri = match &cx.config.router_url {
                Some(base) => format!("{base}{}", logins::VERIFICATION_PATH),
                None => logins::VERIFICATION_PATH.to_string(),
            };
            logins::device_init(&cx.db, &cx.env, "cyfr", &uri).await
        }
        Calls::DevicePoll(a) => {
            // Which provider runs a code is the stored row's; `provider` is only checked.
            provider(&cx.config, a.provider.as_deref())?;
            let code = required::<DeviceCode>(&a.device_code)?;
            match logins::device_poll(&cx.db, &cx.env, code, cx.config.session_ttl_ms).await? {
                logins::Poll::Answer(v) => Ok(v),
                logins::Poll::Provider(p) => poll_provider(cx, p).await,
            }
        }
        Calls::Login(NoArgs {}) => Ok(json!({
            "message": "Login uses the device flow: call session device-init, open verification_uri, then poll device-poll until complete (`cyfr login` does this)",
            "redirect": logins::VERIFICATION_PATH,
        })),
        Calls::Whoami(NoArgs {}) => {
            let who = who.ok_or_else(|| {
                Error::new(
                    Code::AuthRequired,
                    "Not authenticated. Run 'cyfr login' to sign in.",
                )
            })?;
            let mut permissions = who.key.scopes.clone();
            permissions.sort();
            Ok(match &who.user {
                Some(u) => json!({
                    "user_id": u.sub,
                    "org_id": u.org,
                    "scope": u.scope,
                    "email": u.email,
                    "permissions": permissions,
                    "via": "user",
                }),
                None => json!({
                    "user_id": who.id(),
                    "org_id": null,
                    "scope": "personal",
                    "key": who.actor(),
                    "permissions": permissions,
                    "via": "api_key",
                }),
            })
        }
        Calls::Logout(NoArgs {}) => {
            // An API key (or a token without session_id) has no session to end here.
            let Some(hash) = who
                .and_then(|w| w.user.as_ref())
                .and_then(|u| u.session_hash.clone())
            else {
                return Ok(json!({ "message": "Logged out successfully", "ended": false }));
            };
            logins::logout(&cx.db, &hash, cx.env.now_ms()).await?;
            Ok(json!({ "message": "Logged out successfully", "ended": true }))
        }
        Calls::Approve(a) => {
            let code = required::<UserCode>(&a.user_code)?;
            if a.deny.unwrap_or(false) {
                logins::decide(&cx.db, code, None, cx.env.now_ms()).await?;
                return Ok(json!({ "user_code": code, "approved": false }));
            }
            let u = LoginUser {
                sub: required::<User>(&a.user)?.trim().to_string(),
                email: a.email,
                name: a.display_name,
            };
            if !logins::allowed(&cx.config.allowed_users, &u) {
                return Err(not_allowed(&u.sub));
            }
            logins::decide(&cx.db, code, Some(&u), cx.env.now_ms()).await?;
            Ok(json!({ "user_code": code, "approved": true, "user": u.sub }))
        }
    }
}
