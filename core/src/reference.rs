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

/// A `type` argument: none, or one of the three kinds (anything else is -32602).
pub fn type_hint(t: Option<&str>) -> crate::errors::Result<Option<ComponentType>> {
    match t {
        None => Ok(None),
        Some(t) => Ok(Some(ComponentType::parse(t).ok_or_else(|| {
            crate::errors::Error::invalid_params(format!(
                "`type` must be reagent, catalyst or formula (got `{t}`)"
            ))
        })?)),
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

/// A component named without its type (`local.claude:0.1.0`, `claude`): the registry
/// finds which type it is, and refuses a name that more than one type uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Untyped {
    /// e.g. `local`.
    pub namespace: String,
    /// e.g. `claude`.
    pub name: String,
    /// A semver version; `None` means the highest registered.
    pub version: Option<String>,
}

impl Untyped {
    /// `namespace.name:version` (or without the version).
    pub fn shown(&self) -> String {
        match &self.version {
            Some(v) => format!("{}.{}:{v}", self.namespace, self.name),
            None => format!("{}.{}", self.namespace, self.name),
        }
    }
}

/// What a caller names: a typed reference, or an untyped one to look up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The type is known (written, hinted, or read from a `{"local": …}` path).
    Typed(Reference),
    /// The registry decides the type.
    Untyped(Untyped),
}

/// The namespace of a bare name (`claude`, `claude:0.1.0`), as in CYFR.
pub const DEFAULT_NAMESPACE: &str = "local";

/// The refusal of a malformed reference `s`.
fn bad_ref(s: &str, why: &str) -> Error {
    Error::new(
        Code::ComponentNotFound,
        format!("invalid component reference `{s}`: {why}"),
    )
}

impl Target {
    /// Parses the string forms: `type:ns.name:version`, `c:`/`r:`/`f:` shorthands, `@` as
    /// the version separator, `ns.name[:version]`, a bare `name[:version]` (namespace
    /// `local`), and CYFR's legacy `ns:name:version`. `type_hint` supplies the type when
    /// the string has none; without either the reference is [`Target::Untyped`].
    pub fn parse(s: &str, type_hint: Option<ComponentType>) -> Result<Target> {
        let bad = |why: &str| bad_ref(s, why);
        let t = s.trim();
        // `@` never occurs in a name or a semver version, so one `@` is the separator.
        let t = match t.matches('@').count() {
            0 => t.to_string(),
            1 if !t.contains(':') || t.split(':').count() == 2 => t.replacen('@', ":", 1),
            _ => return Err(bad("use one `@` (or `:`) before the version")),
        };
        let parts: Vec<&str> = t.split(':').collect();
        let (ctype, namespace, id, version) = match parts.as_slice() {
            [ty, id, v] => match ComponentType::parse(ty) {
                Some(ct) => (Some(ct), None, *id, Some(*v)),
                // CYFR's legacy `namespace:name:version`.
                None if valid_name(ty) && !id.contains('.') => (None, Some(*ty), *id, Some(*v)),
                None => {
                    return Err(bad(
                        "type must be reagent, catalyst or formula (or r, c, f)",
                    ))
                }
            },
            [a, b] => match ComponentType::parse(a) {
                // `c:1.0.0` is the component `c` at 1.0.0 rather than a type without an id.
                Some(_) if Semver::parse(b).is_some() => (None, None, *a, Some(*b)),
                Some(ct) => (Some(ct), None, *b, None),
                None => (None, None, *a, Some(*b)),
            },
            [id] => (None, None, *id, None),
            _ => return Err(bad("expected type:namespace.name:version")),
        };
        if let (Some(hint), Some(ct)) = (type_hint, ctype) {
            if hint != ct {
                return Err(bad(&format!(
                    "it names a {} but `type` says {}",
                    ct.as_str(),
                    hint.as_str()
                )));
            }
        }
        let (namespace, name) = match (namespace, id.split_once('.')) {
            (Some(ns), None) => (ns, id),
            (None, Some((ns, name))) => (ns, name),
            (None, None) => (DEFAULT_NAMESPACE, id),
            (Some(_), Some(_)) => return Err(bad("expected namespace:name:version")),
        };
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
        Ok(Target::of(ctype.or(type_hint), namespace, name, version))
    }

    /// Typed when the type is known, else untyped (names and version already checked).
    pub fn of(
        ctype: Option<ComponentType>,
        namespace: &str,
        name: &str,
        version: Option<String>,
    ) -> Target {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        match ctype {
            Some(ctype) => Target::Typed(Reference {
                ctype,
                namespace,
                name,
                version,
            }),
            None => Target::Untyped(Untyped {
                namespace,
                name,
                version,
            }),
        }
    }

    /// Parses the JSON forms: a string, `{"registry": "…"}`, or `{"local": PATH}` with PATH
    /// in the registry layout; `{"arca": …}` and `{"oci": …}` are refused as unsupported.
    pub fn from_json(v: &Json, type_hint: Option<ComponentType>) -> Result<Target> {
        let o = match v {
            Json::String(s) => return Target::parse(s, type_hint),
            Json::Object(o) => o,
            _ => return Err(Error::invalid_params(REF_FORMS)),
        };
        if let Some(r) = o.get("registry") {
            return match r {
                Json::String(s) => Target::parse(s, type_hint),
                _ => Err(Error::invalid_params("`reference.registry` must be a string like \"reagent:cyfr.json-transform:0.1.0\"")),
            };
        }
        if let Some(p) = o.get("local") {
            let p = p.as_str().ok_or_else(|| {
                Error::invalid_params("`reference.local` must be a path string like \"components/catalysts/local/claude/0.1.0/catalyst.wasm\"")
            })?;
            let r = local_path(p)?;
            if let Some(hint) = type_hint.filter(|h| *h != r.ctype) {
                return Err(bad_ref(
                    p,
                    &format!(
                        "it is a {} but `type` says {}",
                        r.ctype.as_str(),
                        hint.as_str()
                    ),
                ));
            }
            return Ok(Target::Typed(r));
        }
        for store in ["arca", "oci"] {
            if o.contains_key(store) {
                return Err(Error::invalid_params(format!(
                    "`{{\"{store}\": …}}` references are not supported by this server; register the component and use its registry reference (\"type:namespace.name:version\") or {{\"local\": PATH}}"
                )));
            }
        }
        Err(Error::invalid_params(REF_FORMS))
    }
}

impl Target {
    /// The typed reference, or a refusal naming what is missing.
    pub fn typed(self, shown: &str) -> Result<Reference> {
        match self {
            Target::Typed(r) => Ok(r),
            Target::Untyped(_) => Err(bad_ref(shown, "say the type, e.g. `reagent:ns.name:1.0.0`")),
        }
    }
}

const REF_FORMS: &str = "`reference` must be a string like \"reagent:cyfr.json-transform:0.1.0\", {\"registry\": \"…\"} or {\"local\": \"components/reagents/cyfr/json-transform/0.1.0/reagent.wasm\"}";

/// A `{"local": PATH}` reference read lexically (core reads no files): PATH is a component's
/// wasm in the registry layout `components/{type}s/{ns}/{name}/{version}/{type}.wasm`,
/// relative to the project or to the components root (`{type}s/…`), or absolute under a
/// `components` directory. It names the registered component of that type, id and version;
/// `.`/`..` segments, empty segments and backslashes are refused.
pub fn local_path(p: &str) -> Result<Reference> {
    let bad = |why: &str| bad_ref(p, why);
    const LAYOUT: &str = "the path must be components/{type}s/{namespace}/{name}/{version}/{type}.wasm, e.g. components/catalysts/local/claude/0.1.0/catalyst.wasm";
    if p.is_empty() || p.len() > 1024 || p.contains('\\') || p.chars().any(char::is_control) {
        return Err(bad(LAYOUT));
    }
    let rel = p.strip_prefix("./").unwrap_or(p);
    let absolute = rel.starts_with('/');
    let segs: Vec<&str> = rel.trim_start_matches('/').split('/').collect();
    if segs.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
        return Err(bad("the path may not hold `.`, `..` or empty segments; it must stay inside the components directory"));
    }
    if segs.len() < 5 {
        return Err(bad(LAYOUT));
    }
    let (prefix, tail) = segs.split_at(segs.len() - 5);
    let prefix_ok = match prefix {
        [] => !absolute,
        [.., last] => *last == "components" && (absolute || prefix.len() == 1),
    };
    let [dir, ns, name, version, file] = tail else {
        return Err(bad(LAYOUT));
    };
    let ctype = dir
        .strip_suffix('s')
        .and_then(|t| ComponentType::parse(t).filter(|c| c.as_str() == t));
    let Some(ctype) = ctype.filter(|c| *file == format!("{}.wasm", c.as_str())) else {
        return Err(bad(LAYOUT));
    };
    if !prefix_ok {
        return Err(bad(LAYOUT));
    }
    if !valid_name(ns) || !valid_name(name) || Semver::parse(version).is_none() {
        return Err(bad(
            "the namespace, name and version in the path must be a valid id and semver version",
        ));
    }
    Ok(Reference {
        ctype,
        namespace: ns.to_string(),
        name: name.to_string(),
        version: Some(version.to_string()),
    })
}

impl Reference {
    /// Parses the string form (see [`Target::parse`]); the type must be written or hinted
    /// (`local.claude:0.1.0` with `"type": "catalyst"`).
    pub fn parse(s: &str, type_hint: Option<ComponentType>) -> Result<Reference> {
        Target::parse(s, type_hint)?.typed(s)
    }

    /// Parses the JSON forms (see [`Target::from_json`]); the type must be known.
    pub fn from_json(v: &Json, type_hint: Option<ComponentType>) -> Result<Reference> {
        Target::from_json(v, type_hint)?.typed(&v.to_string())
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
            "x.y:local.claude:0.1.0",
            "c:local.claude@0.1.0@0.2.0",
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
    fn cyfr_forms_bare_names_at_and_legacy_parse() {
        let typed = |s: &str| match Target::parse(s, None).unwrap() {
            Target::Typed(r) => r.canonical(),
            Target::Untyped(u) => panic!("{s} is untyped: {u:?}"),
        };
        let untyped = |s: &str| match Target::parse(s, None).unwrap() {
            Target::Untyped(u) => u.shown(),
            Target::Typed(r) => panic!("{s} is typed: {r:?}"),
        };
        assert_eq!(typed("c:local.claude@0.1.0"), "catalyst:local.claude:0.1.0");
        assert_eq!(
            typed("catalyst:claude:0.1.0"),
            "catalyst:local.claude:0.1.0"
        );
        assert_eq!(typed("c:claude"), "catalyst:local.claude");
        assert_eq!(untyped("claude"), "local.claude");
        assert_eq!(untyped("claude:0.1.0"), "local.claude:0.1.0");
        assert_eq!(untyped("claude@0.1.0"), "local.claude:0.1.0");
        assert_eq!(untyped("cyfr.http:latest"), "cyfr.http");
        assert_eq!(untyped("cyfr:http:0.1.0"), "cyfr.http:0.1.0");
        // `r:1.0.0`: the component `r` at 1.0.0, not a type with no id.
        assert_eq!(untyped("r:1.0.0"), "local.r:1.0.0");
        // A hint types what the string does not.
        assert_eq!(
            Reference::parse("claude@0.1.0", Some(ComponentType::Catalyst))
                .unwrap()
                .canonical(),
            "catalyst:local.claude:0.1.0"
        );
        // Where the type is required, an untyped reference says so.
        let e = Reference::parse("claude", None).unwrap_err();
        assert!(e.message.contains("say the type"), "{}", e.message);
    }

    #[test]
    fn local_paths_in_the_registry_layout_name_their_component() {
        for p in [
            "components/catalysts/local/claude/0.1.0/catalyst.wasm",
            "./components/catalysts/local/claude/0.1.0/catalyst.wasm",
            "catalysts/local/claude/0.1.0/catalyst.wasm",
            "/srv/cyfr/components/catalysts/local/claude/0.1.0/catalyst.wasm",
        ] {
            let r = Reference::from_json(&serde_json::json!({ "local": p }), None)
                .unwrap_or_else(|e| panic!("{p}: {}", e.message));
            assert_eq!(r.canonical(), "catalyst:local.claude:0.1.0", "{p}");
        }
    }

    #[test]
    fn local_paths_outside_the_layout_or_climbing_out_are_refused() {
        for p in [
            "components/catalysts/local/claude/0.1.0/../../../../../etc/passwd",
            "components/catalysts/local/../local/claude/0.1.0/catalyst.wasm",
            "../components/catalysts/local/claude/0.1.0/catalyst.wasm",
            "components/catalysts/local/claude/0.1.0/./catalyst.wasm",
            "components//catalysts/local/claude/0.1.0/catalyst.wasm",
            "components\\catalysts\\local\\claude\\0.1.0\\catalyst.wasm",
            "/etc/catalysts/local/claude/0.1.0/catalyst.wasm",
            "/catalysts/local/claude/0.1.0/catalyst.wasm",
            "other/components/catalysts/local/claude/0.1.0/catalyst.wasm",
            "components/catalysts/local/claude/0.1.0/reagent.wasm",
            "components/catalyst/local/claude/0.1.0/catalyst.wasm",
            "components/catalysts/local/claude/latest/catalyst.wasm",
            "components/catalysts/Local/claude/0.1.0/catalyst.wasm",
            "components/catalysts/local/claude/0.1.0/catalyst.wasm/",
            "claude.wasm",
            "",
        ] {
            let e = Reference::from_json(&serde_json::json!({ "local": p }), None).expect_err(p);
            assert_eq!(e.code, Code::ComponentNotFound, "{p}");
        }
        assert!(Reference::from_json(
            &serde_json::json!({ "local": "components/reagents/local/x/0.1.0/reagent.wasm" }),
            Some(ComponentType::Catalyst)
        )
        .is_err());
        for store in ["arca", "oci"] {
            let e = Reference::from_json(&serde_json::json!({ store: "x" }), None).unwrap_err();
            assert!(e.message.contains("not supported"), "{}", e.message);
        }
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
