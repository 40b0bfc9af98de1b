//! What an action may require of its caller, and the scopes keys may hold. The table of
//! which action needs what is declared with the tools ([`crate::scopes::TABLE`]).

/// What an action requires of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Any authenticated caller.
    Authenticated,
    /// All of these scopes.
    Scopes(&'static [&'static str]),
    /// An admin key (or a caller holding every scope, `*`).
    Admin,
}

/// The scopes of the integration guide. Keys may hold only these (admin keys hold `*`).
pub const SCOPES: &[&str] = &[
    "execution",
    "component.search",
    "component.info",
    "secret.get",
    "secret.set",
    "secret.delete",
    "permission.get",
    "permission.set",
    "key.create",
    "key.revoke",
    "audit.list",
    "policy.get",
    "policy.set",
];

/// Whether a holder of `held` scopes satisfies `need`.
pub fn satisfied(held: &[String], need: Need) -> bool {
    let all = held.iter().any(|s| s == "*");
    match need {
        Need::Authenticated => true,
        Need::Admin => all,
        Need::Scopes(req) => all || req.iter().all(|r| held.iter().any(|h| h == r)),
    }
}
