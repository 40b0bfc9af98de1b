//! The one scope table: which scope each tool action needs, checked before any handler
//! runs. Each row comes from the action's own declaration in `crate::tools`; this module
//! is the table's public face.

pub use crate::access::{satisfied, Need, SCOPES};

/// `(tool, action, need)`: every action a tool offers, in tool order. An action missing
/// here does not exist.
pub const TABLE: &[(&str, &str, Need)] = crate::tools::TABLE;

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
