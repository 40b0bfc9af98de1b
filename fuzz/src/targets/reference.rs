//! References (`type:namespace.name:version`, short and object forms) and versions.

use crate::gen;
use cyfr_core::reference::{local_path, valid_name, ComponentType, Reference, Semver, Target};

const KEYS: &[&str] = &[
    "type",
    "namespace",
    "name",
    "version",
    "reference",
    "id",
    "registry",
    "local",
];

/// Parses the input as a reference string, a JSON reference and a version.
pub fn target(data: &[u8]) {
    if let Some(mut u) = gen::structured(data) {
        let Ok(hint) = u.int_in_range(0u8..=3) else {
            return;
        };
        let hint = [
            None,
            Some(ComponentType::Reagent),
            Some(ComponentType::Catalyst),
            Some(ComponentType::Formula),
        ][hint as usize];
        let Ok(v) = gen::value(&mut u, KEYS, 0) else {
            return;
        };
        if let Ok(r) = Reference::from_json(&v, hint) {
            check(&r);
        }
        if let Ok(t) = Target::from_json(&v, hint) {
            check_target(&t);
        }
        if let Ok(s) = gen::string(&mut u, KEYS) {
            one(&s, hint);
        }
        return;
    }
    let text = gen::text(data);
    one(&text, None);
    if let Ok(v) = serde_json::from_str(&text) {
        if let Ok(r) = Reference::from_json(&v, Some(ComponentType::Reagent)) {
            check(&r);
        }
    }
}

fn one(s: &str, hint: Option<ComponentType>) {
    if let Ok(r) = Reference::parse(s, hint) {
        check(&r);
    }
    if let Ok(t) = Target::parse(s, hint) {
        check_target(&t);
    }
    if let Ok(r) = local_path(s) {
        // A path accepted as a `{"local": …}` reference never climbs out of its directory.
        assert!(
            !s.split('/')
                .any(|seg| seg == ".." || (seg == "." && !s.starts_with("./"))),
            "accepted `{s}`"
        );
        assert!(r.version.is_some(), "a local path names its version: {s}");
        check(&r);
    }
    let _ = valid_name(s);
    let _ = ComponentType::parse(s);
    if let Some(v) = Semver::parse(s) {
        // A parsed version sorts, and parsing is deterministic.
        assert_eq!(Semver::parse(s).map(|w| w.sort_key()), Some(v.sort_key()));
    }
}

/// A parsed reference is well formed, and its canonical form parses back to itself.
fn check(r: &Reference) {
    assert!(
        valid_name(&r.namespace) && valid_name(&r.name),
        "accepted bad name in {r:?}"
    );
    if let Some(v) = &r.version {
        assert!(Semver::parse(v).is_some(), "accepted bad version in {r:?}");
    }
    let c = r.canonical();
    let again = Reference::parse(&c, None)
        .unwrap_or_else(|e| panic!("canonical `{c}` does not parse: {e:?}"));
    assert_eq!(again.canonical(), c);
}

/// A typed target is a well-formed reference; an untyped one has a valid id and version.
fn check_target(t: &Target) {
    match t {
        Target::Typed(r) => check(r),
        Target::Untyped(u) => {
            assert!(valid_name(&u.namespace) && valid_name(&u.name), "{u:?}");
            if let Some(v) = &u.version {
                assert!(Semver::parse(v).is_some(), "{u:?}");
            }
        }
    }
}

/// Valid references and versions.
pub fn corpus() -> Vec<Vec<u8>> {
    super::lines(&[
        "reagent:cyfr.json-transform:0.1.0",
        "catalyst:local.claude",
        "formula:cyfr.fetch-stats:0.1.0",
        "r:local.x:1.0.0-rc.1",
        "c:cyfr.http:0.1.0+build.5",
        "f:a.b",
        "local.text-stats:1.2.3",
        "1.2.3-alpha.1+meta",
        r#"{"type":"reagent","namespace":"cyfr","name":"json-transform","version":"0.1.0"}"#,
        r#""catalyst:cyfr.http:0.1.0""#,
        r#"{"reference":"reagent:local.x"}"#,
        "claude@0.1.0",
        "local:claude:0.1.0",
        "components/catalysts/local/claude/0.1.0/catalyst.wasm",
        r#"{"local":"components/reagents/cyfr/x/1.0.0/reagent.wasm"}"#,
    ])
}
