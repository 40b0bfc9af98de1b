//! The `session` tool: signing in with the device flow (`device-init`, `device-poll`, callable
//! without credentials), `whoami`, `logout`, and `approve` — cyfr's own verification, where
//! an admin approves (or denies) a pending user code for a user. Users get only what they
//! were granted (`permission.set`), never admin by default.

use super::decl::{actions, NoArgs};
use crate::access::Need;
use crate::args::{fields, loose_bool, opt_str, required};
use crate::auth::Identity;
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Code, Error, Result};
use crate::logins::{self, LoginUser};
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
    /// device-init/poll: github, google, oidc, or cyfr (its own verification; the default when no provider is configured)
    #[serde(default, deserialize_with = "opt_str::<Provider, _>")]
    provider: Option<String>,
}

/// `session.device-poll`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct PollArgs {
    /// device-poll: the device_code device-init returned
    #[serde(default, deserialize_with = "opt_str::<DeviceCode, _>")]
    device_code: Option<String>,
    /// device-init/poll: github, google, oidc, or cyfr (its own verification; the default when no provider is configured)
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

fn provider(cx_providers: &[String], asked: Option<&str>) -> Result<String> {
    match asked.unwrap_or("cyfr") {
        "cyfr" => Ok("cyfr".into()),
        p @ ("github" | "google" | "oidc") => {
            if !cx_providers.iter().any(|c| c == p) {
                let var = format!("CYFR_{}_CLIENT_ID", p.to_ascii_uppercase());
                return Err(Error::invalid_params(format!(
                    "{p} client ID not configured. Set {var}"
                )));
            }
            Err(Error::invalid_params(format!(
                "the {p} device flow is not available in this build yet; omit `provider` to use cyfr's own verification"
            )))
        }
        other => Err(Error::invalid_params(format!(
            "provider `{other}` must be github, google, oidc or cyfr"
        ))),
    }
}

pub(super) async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: Option<&Identity>,
    args: Calls,
) -> Result<Json> {
    match args {
        Calls::DeviceInit(a) => {
            let p = provider(&cx.config.login_providers, a.provider.as_deref())?;
            let uri = match &cx.config.router_url {
                Some(base) => format!("{base}{}", logins::VERIFICATION_PATH),
                None => logins::VERIFICATION_PATH.to_string(),
            };
            logins::device_init(&cx.db, &cx.env, &p, &uri).await
        }
        Calls::DevicePoll(a) => {
            provider(&cx.config.login_providers, a.provider.as_deref())?;
            let code = required::<DeviceCode>(&a.device_code)?;
            logins::device_poll(&cx.db, &cx.env, code, cx.config.session_ttl_ms).await
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
            let user = required::<User>(&a.user)?.trim().to_string();
            let allowed = &cx.config.allowed_users;
            if !allowed.is_empty()
                && !allowed
                    .iter()
                    .any(|u| *u == user || Some(u.as_str()) == a.email.as_deref())
            {
                return Err(Error::new(
                    Code::InsufficientPermissions,
                    format!("`{user}` is not an allowed user (CYFR_ALLOWED_USER)"),
                ));
            }
            let u = LoginUser {
                sub: user,
                email: a.email,
                name: a.display_name,
            };
            logins::decide(&cx.db, code, Some(&u), cx.env.now_ms()).await?;
            Ok(json!({ "user_code": code, "approved": true, "user": u.sub }))
        }
    }
}
