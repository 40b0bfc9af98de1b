//! The one scope table: which scope each tool action needs. Checked before any handler runs.

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

/// `(tool, action, need)`: every action a tool offers. An action missing here does not exist.
pub const TABLE: &[(&str, &str, Need)] = &[
    ("execution", "run", Need::Scopes(&["execution"])),
    ("execution", "list", Need::Scopes(&["execution"])),
    ("execution", "logs", Need::Scopes(&["execution"])),
    ("execution", "cancel", Need::Scopes(&["execution"])),
    ("component", "search", Need::Scopes(&["component.search"])),
    ("component", "resolve", Need::Scopes(&["component.search"])),
    ("component", "inspect", Need::Scopes(&["component.info"])),
    ("component", "register", Need::Admin),
    ("key", "create", Need::Scopes(&["key.create"])),
    ("key", "get", Need::Scopes(&["key.create"])),
    ("key", "list", Need::Scopes(&["key.create"])),
    ("key", "revoke", Need::Scopes(&["key.revoke"])),
    ("key", "rotate", Need::Scopes(&["key.create", "key.revoke"])),
    ("policy", "get", Need::Scopes(&["policy.get"])),
    ("policy", "get_effective", Need::Scopes(&["policy.get"])),
    ("policy", "list", Need::Scopes(&["policy.get"])),
    ("policy", "set", Need::Scopes(&["policy.set"])),
    ("policy", "update_field", Need::Scopes(&["policy.set"])),
    ("policy", "delete", Need::Scopes(&["policy.set"])),
    ("secret", "set", Need::Scopes(&["secret.set"])),
    ("secret", "get", Need::Scopes(&["secret.get"])),
    ("secret", "list", Need::Scopes(&["secret.get"])),
    ("secret", "delete", Need::Scopes(&["secret.delete"])),
    ("secret", "clear", Need::Scopes(&["secret.delete"])),
    ("secret", "grant", Need::Scopes(&["permission.set"])),
    ("secret", "revoke", Need::Scopes(&["permission.set"])),
    ("secret", "can_access", Need::Scopes(&["permission.get"])),
    ("get_encryption_instructions", "get", Need::Authenticated),
    ("system", "status", Need::Authenticated),
];

/// The requirement for `tool.action`, or `None` when there is no such action.
pub fn need(tool: &str, action: &str) -> Option<Need> {
    TABLE
        .iter()
        .find(|(t, a, _)| *t == tool && *a == action)
        .map(|(_, _, n)| *n)
}

/// The actions a tool offers, in table order.
pub fn actions(tool: &str) -> Vec<&'static str> {
    TABLE
        .iter()
        .filter(|(t, _, _)| *t == tool)
        .map(|(_, a, _)| *a)
        .collect()
}

/// Whether a holder of `held` scopes satisfies `need`.
pub fn satisfied(held: &[String], need: Need) -> bool {
    let all = held.iter().any(|s| s == "*");
    match need {
        Need::Authenticated => true,
        Need::Admin => all,
        Need::Scopes(req) => all || req.iter().all(|r| held.iter().any(|h| h == r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_required_scope_is_a_known_scope() {
        for (t, a, n) in TABLE {
            if let Need::Scopes(req) = n {
                for r in *req {
                    assert!(SCOPES.contains(r), "{t}.{a} needs unknown scope {r}");
                }
            }
        }
    }

    #[test]
    fn scopes_are_checked_exactly() {
        let exec = vec!["execution".to_string()];
        assert!(satisfied(&exec, need("execution", "run").unwrap()));
        assert!(!satisfied(&exec, need("component", "search").unwrap()));
        assert!(!satisfied(&exec, need("component", "register").unwrap()));
        assert!(satisfied(
            &["*".to_string()],
            need("component", "register").unwrap()
        ));
        assert!(need("key", "explode").is_none());
    }
}
