//! The context every service works in: the three seams to the outside ([`Db`], [`Dispatch`],
//! [`Env`]) and the deployment's [`Config`]. It knows nothing of HTTP, JSON-RPC or tools;
//! the transport ([`crate::app`]) is a thin layer over it.

use crate::config::Config;
use crate::db::{Ahead, Db};
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::http::HttpRequest;

/// SQL, the hosts, the clock and randomness, and the settings: what a service needs.
pub struct Context<D, X, E> {
    /// SQL storage, with the request's read-ahead ([`Ahead`]).
    pub db: Ahead<D>,
    /// Where component runs go.
    pub dispatch: X,
    /// Clock and randomness.
    pub env: E,
    /// Deployment settings.
    pub config: Config,
}

impl<D: Db, X: Dispatch, E: Env> Context<D, X, E> {
    /// The context of one request (a router instance serves one; nothing is kept between).
    pub fn new(db: D, dispatch: X, env: E, config: Config) -> Self {
        Context {
            db: Ahead::new(db),
            dispatch,
            env,
            config,
        }
    }

    /// Whether this request's transport may carry secrets (HTTPS, loopback, or development mode).
    pub fn secure(&self, req: &HttpRequest) -> bool {
        self.config.dev_mode
            || crate::ipallow::transport_secure(
                req.scheme.as_deref(),
                req.peer,
                // Every line: a trusted proxy appends its own after any the client sent.
                req.header_all("x-forwarded-proto").last(),
                &self.config.trusted_proxies,
            )
    }

    /// The key-encryption keys, or a clear error when none are configured.
    pub fn kms(&self) -> crate::errors::Result<&crate::kms::LocalKms> {
        self.config.kms.as_deref().ok_or_else(|| {
            crate::errors::Error::internal("no master key is configured: set the `master_keys` variable (cyfr up does this from DATA_DIR/master.key or CYFR_MASTER_KEY)")
        })
    }
}
