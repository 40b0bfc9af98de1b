//! Component references: `catalyst:local.claude:0.1.0`, `c:local.claude:0.1.0`,
//! `{"registry": "…"}`; a missing version means the highest registered one.

use crate::errors::{Code, Error, Result};
use serde_json::Value as Json;

/// The three kinds of component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentType {
    /// Pure compute.
    Reagent,
    /// May call allow-listed HTTP APIs and read granted secrets.
    Catalyst,
    /// Composes other components and tools.
    Formula,
}

impl ComponentType {
    /// Parses `reagent`/`r`, `catalyst`/`c`, `formula`/`f`.
    pub fn parse(s: &str) -> Option<ComponentType> {
        match s {
            "reagent" | "r" => Some(ComponentType::Reagent),
            "catalyst" | "c" => Some(ComponentType::Catalyst),
            "formula" | "f" => Some(ComponentType::Formula),
            _ => None,
        }
    }
    /// `reagent`, `catalyst` or `formula`.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentType::Reagent => "reagent",
            ComponentType::Catalyst => "catalyst",
            ComponentType::Formula => "formula",
        }
    }
}

/// The JSON Schema of a `type` argument: one of the three kinds.
pub fn type_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "enum": ["reagent", "catalyst", "formula"] })
}

/// A parsed reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Reagent, catalyst or formula.
    pub ctype: ComponentType,
    /// e.g. `local`.
    pub namespace: String,
    /// e.g. `claude`.
    pub name: String,
    /// A semver version; `None` means the highest registered.
    pub version: Option<String>,
}

impl Reference {
    /// Parses the string form. `type_hint` supplies the type when the string has none
    /// (`local.claude:0.1.0` with `"type": "catalyst"`).
    pub fn parse(s: &str, type_hint: Option<ComponentType>) -> Result<Reference> {
        let bad = |why: &str| {
            Error::new(
                Code::ComponentNotFound,
                format!("invalid component reference `{s}`: {why}"),
            )
        };
        let parts: Vec<&str> = s.trim().split(':').collect();
        let (ctype, id, version) = match parts.as_slice() {
            [t, id, v] => (
                ComponentType::parse(t)
                    .ok_or_else(|| bad("type must be reagent, catalyst or formula (or r, c, f)"))?,
                *id,
                Some(*v),
            ),
            [a, b] => match ComponentType::parse(a) {
                Some(t) => (t, *b, None),
                None => (
                    type_hint.ok_or_else(|| bad("say the type, e.g. `reagent:ns.name:1.0.0`"))?,
                    *a,
                    Some(*b),
                ),
            },
            [id] => (
                type_hint.ok_or_else(|| bad("say the type, e.g. `reagent:ns.name:1.0.0`"))?,
                *id,
                None,
            ),
            _ => return Err(bad("expected type:namespace.name:version")),
        };
        if let Some(hint) = type_hint {
            if hint != ctype {
                return Err(bad(&format!(
                    "it names a {} but `type` says {}",
                    ctype.as_str(),
                    hint.as_str()
                )));
            }
        }
        let (namespace, name) = id
            .split_once('.')
            .ok_or_else(|| bad("the id must be namespace.name"))?;
        if !valid_name(namespace) || !valid_name(name) {
            return Err(bad("namespace and name are lower-case letters, digits and '-', 1-64 characters, not starting or ending with '-'"));
        }
        let version = match version {
            None | Some("latest") => None,
            Some(v) => {
                Semver::parse(v).ok_or_else(|| bad("the version must be semver 2.0.0, like 0.1.0 or 1.0.0-rc.1 (identifiers of [0-9A-Za-z-], no leading zeros)"))?;
                Some(v.to_string())
            }
        };
        Ok(Reference {
            ctype,
            namespace: namespace.into(),
            name: name.into(),
            version,
        })
    }

    /// Parses the JSON forms `execution.run` accepts: a string or `{"registry": "…"}`.
    pub fn from_json(v: &Json, type_hint: Option<ComponentType>) -> Result<Reference> {
        match v {
            Json::String(s) => Reference::parse(s, type_hint),
            Json::Object(o) if o.contains_key("registry") => match o.get("registry") {
                Some(Json::String(s)) => Reference::parse(s, type_hint),
                _ => Err(Error::invalid_params("`reference.registry` must be a string like \"reagent:cyfr.json-transform:0.1.0\"")),
            },
            Json::Object(o) if o.contains_key("local") => Err(Error::new(
                Code::ComponentNotFound,
                "`{\"local\": …}` references are not supported by this server; register the component and use its registry reference",
            )),
            _ => Err(Error::invalid_params("`reference` must be a string like \"reagent:cyfr.json-transform:0.1.0\" or {\"registry\": \"…\"}")),
        }
    }

    /// `type:namespace.name:version` (or without the version when unresolved).
    pub fn canonical(&self) -> String {
        match &self.version {
            Some(v) => format!(
                "{}:{}.{}:{}",
                self.ctype.as_str(),
                self.namespace,
                self.name,
                v
            ),
            None => format!("{}:{}.{}", self.ctype.as_str(), self.namespace, self.name),
        }
    }
}

/// Whether `s` is a valid namespace or name.
pub fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 64
        && b.iter().all(|c| ok(c) || *c == b'-')
        && ok(&b[0])
        && ok(&b[b.len() - 1])
}

/// Longest version accepted: keeps keys and error messages small.
pub const MAX_VERSION_LEN: usize = 128;

/// A semver 2.0.0 version (`semver` crate: identifiers of `[0-9A-Za-z-]` only, no leading
/// zeros in numeric ones), ordered by semver precedence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Semver(semver::Version);

impl Semver {
    /// Parses `1.2.3`, `1.2.3-rc.1`, `1.2.3+build`; anything else (`1.0.0-x:y`, `v1.0.0`,
    /// markup, non-ASCII) is `None`.
    pub fn parse(s: &str) -> Option<Semver> {
        if s.len() > MAX_VERSION_LEN {
            return None;
        }
        semver::Version::parse(s).ok().map(Semver)
    }

    /// A string whose byte order is the version's precedence: numbers fixed-width; each
    /// pre-release identifier `0`+length+digits (numeric, so compared numerically and below
    /// alphanumeric) or `1`+text, joined by `!` (below every identifier character, so a
    /// shorter prefix sorts first); a release ends in `~`, above every pre-release. Build
    /// metadata is ignored.
    pub fn sort_key(&self) -> String {
        let v = &self.0;
        let pre = if v.pre.is_empty() {
            "~".to_string()
        } else {
            v.pre
                .as_str()
                .split('.')
                .map(|id| {
                    if id.bytes().all(|c| c.is_ascii_digit()) {
                        format!("0{:03}{id}", id.len())
                    } else {
                        format!("1{id}")
                    }
                })
                .collect::<Vec<_>>()
                .join("!")
        };
        format!("{:020}.{:020}.{:020}.{pre}", v.major, v.minor, v.patch)
    }
}

impl PartialOrd for Semver {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Semver {
    /// Semver precedence; build metadata only breaks ties so that the order is total.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .cmp_precedence(&other.0)
            .then_with(|| self.0.build.cmp(&other.0.build))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_short_and_object_forms_parse_to_the_same_reference() {
        let a = Reference::parse("catalyst:local.claude:0.1.0", None).unwrap();
        let b = Reference::parse("c:local.claude:0.1.0", None).unwrap();
        let c = Reference::from_json(
            &serde_json::json!({"registry": "catalyst:local.claude:0.1.0"}),
            None,
        )
        .unwrap();
        let d = Reference::parse("local.claude:0.1.0", Some(ComponentType::Catalyst)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a, d);
        assert_eq!(a.canonical(), "catalyst:local.claude:0.1.0");
        assert_eq!(
            Reference::parse("r:cyfr.json-transform", None)
                .unwrap()
                .version,
            None
        );
    }

    #[test]
    fn bad_references_are_refused_with_component_not_found() {
        for s in [
            "x:local.claude:0.1.0",
            "c:claude:0.1.0",
            "c:Local.claude:0.1.0",
            "c:local.claude:1.0",
            "c:local.-x:1.0.0",
            "c:a.b:01.0.0",
        ] {
            let e = Reference::parse(s, None).unwrap_err();
            assert_eq!(e.code, Code::ComponentNotFound, "{s}");
        }
        assert!(Reference::parse("r:local.x:1.0.0", Some(ComponentType::Catalyst)).is_err());
    }

    #[test]
    fn semver_refuses_characters_outside_its_identifiers() {
        for bad in [
            "0.1.0-{{secret:rc.1",
            "1.0.0-a:b",
            "1.0.0-",
            "1.0.0-a..b",
            "1.0.0-01",
            "1.0.0+",
            "1.0.0+a b",
            "1.0.0-rc.1+x:y",
        ] {
            assert!(Semver::parse(bad).is_none(), "{bad}");
        }
        for good in [
            "1.0.0-rc.1",
            "1.0.0-0a.1",
            "1.0.0-x-y",
            "1.0.0+build.5",
            "1.0.0-alpha+001",
        ] {
            assert!(Semver::parse(good).is_some(), "{good}");
        }
    }

    #[test]
    fn semver_orders_by_precedence_not_text() {
        let k = |s| Semver::parse(s).unwrap().sort_key();
        assert!(k("0.10.0") > k("0.9.0"));
        assert!(k("1.0.0") > k("1.0.0-rc.1"));
        assert!(Semver::parse("1.0").is_none());
        assert!(Semver::parse("1.0.0-").is_none());
    }

    #[test]
    fn versions_outside_semver_identifier_characters_are_refused() {
        // `:` would let a versioned reference escape a version-less policy.
        for v in [
            "1.0.0-x:y",
            "1.0.0-<b>",
            "1.0.0-a\u{202e}b",
            "1.0.0+a:b",
            "v1.0.0",
            "1.0.0-01",
            "1.0.0-a..b",
            "1.0.0 ",
            "01.0.0",
            "1.0.0-é",
        ] {
            assert!(Semver::parse(v).is_none(), "{v:?}");
            // (A reference as a whole is trimmed, so only the trailing space passes there.)
            if v != "1.0.0 " {
                assert_eq!(
                    Reference::parse(&format!("r:local.x:{v}"), None)
                        .unwrap_err()
                        .code,
                    Code::ComponentNotFound,
                    "{v:?}"
                );
            }
        }
        for v in [
            "1.0.0-rc.1",
            "1.0.0-x-y.7",
            "1.0.0+build.01",
            "1.0.0-alpha+001",
        ] {
            assert!(Semver::parse(v).is_some(), "{v}");
        }
        assert!(Semver::parse(&format!("1.0.0-{}", "a".repeat(MAX_VERSION_LEN))).is_none());
    }

    #[test]
    fn semver_precedence_follows_the_spec_in_key_and_ord() {
        // The spec's own example chain, plus numeric-vs-numeric and prefix cases.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc",
            "1.0.0-rc.1",
            "1.0.0-rc.9",
            "1.0.0-rc.10",
            "1.0.0-rc-a",
            "1.0.0",
            "1.0.1",
            "1.10.0",
            "2.0.0",
        ];
        for w in chain.windows(2) {
            let (a, b) = (Semver::parse(w[0]).unwrap(), Semver::parse(w[1]).unwrap());
            assert!(a < b, "{} < {}", w[0], w[1]);
            assert!(a.sort_key() < b.sort_key(), "key {} < {}", w[0], w[1]);
        }
        let (a, b) = (
            Semver::parse("1.0.0+x").unwrap(),
            Semver::parse("1.0.0+y").unwrap(),
        );
        assert_eq!(a.sort_key(), b.sort_key(), "build metadata is ignored");
    }
}
