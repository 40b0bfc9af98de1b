//! `cyfr-manifest.json` parsing.

use crate::gen;
use cyfr_core::manifest::Manifest;
use cyfr_core::reference::{Reference, Semver};

const KEYS: &[&str] = &[
    "id",
    "type",
    "version",
    "description",
    "secrets",
    "schema",
    "input",
    "output",
    "policy",
    "allowed_domains",
    "limits",
    "name",
    "properties",
    "required",
];

/// Parses the input as a manifest; an accepted one names a valid reference.
pub fn target(data: &[u8]) {
    let parsed = if let Some(mut u) = gen::structured(data) {
        let Ok(mut m) = gen::object(&mut u, KEYS, 0) else {
            return;
        };
        // Mostly-valid skeletons reach the checks past `id`.
        if u.ratio(3u8, 4).unwrap_or(false) {
            m.entry("id").or_insert("reagent:local.fuzz".into());
            m.entry("type").or_insert("reagent".into());
            m.entry("version").or_insert("0.1.0".into());
        }
        Manifest::check(serde_json::Value::Object(m))
    } else {
        Manifest::parse(&gen::text(data))
    };
    if let Ok(m) = parsed {
        assert!(
            Semver::parse(&m.version).is_some(),
            "accepted version `{}`",
            m.version
        );
        let r = m.reference();
        Reference::parse(&r, None)
            .unwrap_or_else(|e| panic!("accepted manifest names a bad reference `{r}`: {e:?}"));
    }
}

/// The repository's real manifests and a small one.
pub fn corpus() -> Vec<Vec<u8>> {
    let mut c = super::lines(&[
        r#"{"id":"reagent:local.x","type":"reagent","version":"1.0.0","description":"x","secrets":[]}"#,
        r#"{"id":"catalyst:local.c","type":"catalyst","version":"0.1.0-rc.1","secrets":["API_KEY"],"schema":{"input":{"type":"object"}}}"#,
    ]);
    for p in [
        "components/reagents/cyfr/json-transform/0.1.0/cyfr-manifest.json",
        "components/reagents/cyfr/text-stats/0.1.0/cyfr-manifest.json",
        "components/catalysts/cyfr/http/0.1.0/cyfr-manifest.json",
        "components/formulas/cyfr/fetch-stats/0.1.0/cyfr-manifest.json",
    ] {
        if let Ok(b) = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../").to_string() + p) {
            c.push(b);
        }
    }
    c
}
