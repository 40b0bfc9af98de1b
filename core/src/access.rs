//! What an action may require of its caller, and the scopes keys may hold. The table of
//! which action needs what is declared with the tools ([`crate::scopes::TABLE`]).

/// What an action requires of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Anyone, even without credentials (signing in: `session.device-init`, ...).
    Anyone,
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
        Need::Anyone | Need::Authenticated => true,
        Need::Admin => all,
        Need::Scopes(req) => all || req.iter().all(|r| holds(held, r)),
    }
}

/// Whether `held` covers the one scope `scope`: itself, `*`, or a wildcard over its tool
/// (`secret.*` covers `secret.get`; `execution.*` covers `execution`).
pub fn holds(held: &[String], scope: &str) -> bool {
    held.iter().any(|h| {
        h == "*"
            || h == scope
            || h.strip_suffix(".*").is_some_and(|tool| {
                scope == tool
                    || scope
                        .strip_prefix(tool)
                        .is_some_and(|rest| rest.starts_with('.'))
            })
    })
}

/// Whether `s` is a scope string a user may be granted: one of [`SCOPES`], `*`, or a
/// wildcard `tool.*` over the tool of one of them.
pub fn grantable(s: &str) -> bool {
    s == "*"
        || SCOPES.contains(&s)
        || s.strip_suffix(".*").is_some_and(|tool| {
            SCOPES
                .iter()
                .any(|k| *k == tool || k.split('.').next() == Some(tool))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_their_tool_only() {
        let held = vec!["secret.*".to_string()];
        assert!(holds(&held, "secret.get"));
        assert!(holds(&held, "secret.set"));
        assert!(!holds(&held, "secretive.get"));
        assert!(!holds(&held, "key.create"));
        assert!(holds(&["execution.*".to_string()], "execution"));
        assert!(satisfied(&["*".to_string()], Need::Admin));
        assert!(!satisfied(&held, Need::Admin));
        assert!(grantable("secret.*") && grantable("audit.list") && grantable("*"));
        assert!(!grantable("users_manage") && !grantable("bogus.*"));
    }
}
