//! `cyfr init --edge`: the secrets of a deployment whose database and variables live on a
//! platform (Cloudflare Workers, Fermyon Cloud, SpinKube, a plain `spin up`), made here and
//! printed once as the values to paste into that platform's commands. Nothing is written:
//! no database, no key file, no config.

use crate::Output;
use anyhow::Result;
use base64::Engine;
use serde_json::json;
use zeroize::Zeroizing;

/// The secrets of one edge deployment; dropped (and zeroed) once printed.
struct Secrets {
    /// The first admin key, raw (the router stores only its hash).
    admin_key: Zeroizing<String>,
    /// SHA-256 hex of `admin_key`: the `bootstrap_admin_key` variable.
    admin_hash: String,
    /// The `master_keys` variable: one base64 32-byte key-encryption key.
    master_keys: Zeroizing<String>,
    /// The `host_token_key` variable (and `cyfr host`'s CYFR_HOST_TOKEN_KEY).
    host_token_key: Zeroizing<String>,
}

fn random(n: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut b = Zeroizing::new(vec![0u8; n]);
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    Ok(b)
}

impl Secrets {
    fn generate() -> Result<Secrets> {
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // The same shape as the router's keys: prefix + 24 random bytes in base64url.
        let admin_key = Zeroizing::new(format!("cyfr_ak_{}", b64url.encode(&*random(24)?)));
        // As the router stores and compares it (`keys::hash_raw`).
        let admin_hash = cyfr_core::keys::hash_raw(&admin_key);
        Ok(Secrets {
            admin_hash,
            admin_key,
            master_keys: Zeroizing::new(
                base64::engine::general_purpose::STANDARD.encode(&*random(32)?),
            ),
            host_token_key: Zeroizing::new(b64url.encode(&*random(32)?)),
        })
    }

    /// The router's variables to set, by their `config::VARIABLES` names.
    fn variables(&self) -> [(&'static str, &str); 3] {
        [
            ("master_keys", &self.master_keys),
            ("host_token_key", &self.host_token_key),
            ("bootstrap_admin_key", &self.admin_hash),
        ]
    }
}

/// The steps per target, each a command line to run as printed.
fn steps(s: &Secrets) -> serde_json::Value {
    let vars = s.variables();
    debug_assert!(vars
        .iter()
        .all(|(n, _)| cyfr_core::config::VARIABLES.contains(n)));
    // A Worker reads each variable under its VARIABLES name: secrets of the same name.
    let mut cloudflare = vec!["npx wrangler d1 create cyfr".to_string()];
    cloudflare.extend(
        vars.iter()
            .map(|(n, v)| format!("printf '%s' '{v}' | npx wrangler secret put {n}")),
    );
    cloudflare.push("npx wrangler deploy".into());
    // The host's origin and public key are known once `cyfr host` runs: placeholders.
    let host_vars = [
        ("host_url", "https://YOUR-CYFR-HOST:4100"),
        ("host_key", "PUBLIC-KEY-CYFR-HOST-PRINTS"),
    ];
    let fermyon = vec![format!(
        "spin deploy {}",
        vars.iter()
            .chain(host_vars.iter())
            .map(|(n, v)| format!("--variable {n}='{v}'"))
            .collect::<Vec<_>>()
            .join(" ")
    )];
    let spin_up = vec![format!(
        "{} spin up --runtime-config-file runtime-config.toml",
        vars.iter()
            .chain(host_vars.iter())
            .map(|(n, v)| format!("SPIN_VARIABLE_{}='{v}'", n.to_ascii_uppercase()))
            .collect::<Vec<_>>()
            .join(" ")
    )];
    let spinkube = vec![format!(
        "kubectl create secret generic cyfr-secrets {}",
        vars.iter()
            .map(|(n, v)| format!("--from-literal={n}='{v}'"))
            .collect::<Vec<_>>()
            .join(" ")
    )];
    let host = vec![format!(
        "CYFR_HOST_TOKEN_KEY='{}' cyfr host --listen 0.0.0.0:4100",
        &*s.host_token_key
    )];
    json!({
        "cloudflare": cloudflare,
        "fermyon": fermyon,
        "spin_up": spin_up,
        "spinkube": spinkube,
        "cyfr_host": host,
    })
}

/// Prints a new deployment's secrets and the steps that put them in place.
pub fn init(out: &Output) -> Result<()> {
    let s = Secrets::generate()?;
    let steps = steps(&s);
    let mut variables = serde_json::Map::new();
    for (n, v) in s.variables() {
        variables.insert(n.into(), v.into());
    }
    out.show(
        &json!({
            "admin_key": &*s.admin_key,
            "variables": variables,
            "steps": steps,
            "written": [],
        }),
        || {
            let list = |k: &str| {
                steps[k]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|l| format!("    {}", l.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            format!(
                "New edge deployment. Nothing was written to disk: copy what you need now.\n\n\
                 First admin key (shown only this once; it is in none of the platform commands below,\n\
                 which carry only its SHA-256):\n\n    {key}\n\n\
                 Start each line with a space so your shell keeps it out of its history.\n\n\
                 First the host the router dispatches to, on a machine it can reach (it prints\n\
                 the URL#KEY: the URL is host_url, the KEY host_key below):\n{host}\n\n\
                 Cloudflare Workers (D1; the router migrates it on its first request):\n{cf}\n\n\
                 Fermyon Cloud (change them later with `spin cloud variables set NAME=VALUE --app cyfr`):\n{fermyon}\n\n\
                 Self-hosted Spin (spin up; see docs/deploy/):\n{spin}\n\n\
                 SpinKube (a Secret the SpinApp's variables read; see docs/deploy/spinapp.yaml):\n{kube}\n\n\
                 Then, once deployed:\n    export CYFR_URL=https://YOUR-ROUTER/mcp CYFR_API_KEY={key}\n    cyfr key list\n\n\
                 The first request with that key creates it as the admin key; after that,\n\
                 bootstrap_admin_key does nothing (any key in the database turns it off).",
                key = &*s.admin_key,
                cf = list("cloudflare"),
                fermyon = list("fermyon"),
                spin = list("spin_up"),
                kube = list("spinkube"),
                host = list("cyfr_host"),
            )
        },
    );
    Ok(())
}
