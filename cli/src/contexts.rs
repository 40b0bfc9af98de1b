//! Contexts: named servers the CLI talks to, in `~/.cyfr/config.yaml` (the integration
//! guide's file), with CYFR's `~/.cyfr/config.json` read too when present (same keys:
//! `{"current_context": "local", "contexts": {"local": {"url": "…", "session_id": "…"}}}`;
//! the yaml may add `api_key`). The yaml wins over the json for a name both hold, and is
//! the only file written (mode 0600: it may hold a key or a session).
//!
//! The yaml is read as the subset this module writes: a two-level mapping of plain, `'…'`
//! or `"…"` scalars, `#` comments, indentation by spaces.

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One named server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// The server's URL (with or without `/mcp`).
    pub url: Option<String>,
    /// An API key to send, if this context keeps one.
    pub api_key: Option<String>,
    /// A login session (`cyfr login`), if one is stored.
    pub session_id: Option<String>,
}

/// Every context and which one is current.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contexts {
    /// The context used when `--context` is not given.
    pub current_context: Option<String>,
    /// By name.
    pub contexts: BTreeMap<String, Context>,
}

/// `~/.cyfr` (from `HOME`).
pub fn dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set"))?;
    Ok(PathBuf::from(home).join(".cyfr"))
}

/// The contexts of `~/.cyfr/config.yaml` over those of `~/.cyfr/config.json`; empty when
/// neither exists.
pub fn load() -> Result<Contexts> {
    load_from(&dir()?)
}

/// [`load`] from a given directory.
pub fn load_from(dir: &Path) -> Result<Contexts> {
    let mut all = Contexts::default();
    let json_path = dir.join("config.json");
    if let Some(text) = read(&json_path)? {
        let v: Json = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", json_path.display()))?;
        all = from_json(&v);
    }
    let yaml_path = dir.join("config.yaml");
    if let Some(text) = read(&yaml_path)? {
        let y = parse_yaml(&text).with_context(|| format!("reading {}", yaml_path.display()))?;
        if y.current_context.is_some() {
            all.current_context = y.current_context;
        }
        all.contexts.extend(y.contexts);
    }
    Ok(all)
}

impl Contexts {
    /// The context named `name`, else the current one; `None` when there is none (an
    /// unknown `name` is an error: a typo must not silently talk to another server).
    pub fn current(&self, name: Option<&str>) -> Result<Option<(String, Context)>> {
        match name {
            Some(n) => match self.contexts.get(n) {
                Some(c) => Ok(Some((n.to_string(), c.clone()))),
                None => bail!(
                    "no context `{n}` in ~/.cyfr/config.yaml; add it with `cyfr context add {n} URL`"
                ),
            },
            None => Ok(self
                .current_context
                .as_ref()
                .and_then(|n| self.contexts.get(n).map(|c| (n.clone(), c.clone())))),
        }
    }

    /// Writes `~/.cyfr/config.yaml` (mode 0600, the directory 0700).
    pub fn save(&self) -> Result<PathBuf> {
        self.save_to(&dir()?)
    }

    /// [`Contexts::save`] into a given directory.
    pub fn save_to(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let path = dir.join("config.yaml");
        let tmp = dir.join("config.yaml.tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        {
            use std::io::Write;
            let mut f = opts
                .open(&tmp)
                .with_context(|| format!("writing {}", tmp.display()))?;
            f.write_all(self.to_yaml().as_bytes())?;
            f.sync_all()?;
        }
        #[cfg(unix)]
        {
            // An older file made with a wider mode keeps it through `open`; the new one must not.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        }
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// The yaml text [`Contexts::save`] writes.
    pub fn to_yaml(&self) -> String {
        let mut out = String::from("# cyfr CLI contexts (cyfr context list|set|add)\n");
        if let Some(c) = &self.current_context {
            out.push_str(&format!("current_context: {}\n", quote(c)));
        }
        out.push_str("contexts:\n");
        for (name, c) in &self.contexts {
            out.push_str(&format!("  {}:\n", quote(name)));
            for (k, v) in [
                ("url", &c.url),
                ("api_key", &c.api_key),
                ("session_id", &c.session_id),
            ] {
                if let Some(v) = v {
                    out.push_str(&format!("    {k}: {}\n", quote(v)));
                }
            }
        }
        out
    }
}

fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn from_json(v: &Json) -> Contexts {
    let s = |c: &Json, k: &str| c.get(k).and_then(Json::as_str).map(String::from);
    let contexts = v
        .get("contexts")
        .and_then(Json::as_object)
        .map(|m| {
            m.iter()
                .map(|(name, c)| {
                    (
                        name.clone(),
                        Context {
                            url: s(c, "url"),
                            api_key: s(c, "api_key"),
                            session_id: s(c, "session_id"),
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Contexts {
        current_context: s(v, "current_context"),
        contexts,
    }
}

/// A scalar as yaml: double-quoted (JSON string escapes are valid yaml ones).
fn quote(s: &str) -> String {
    json!(s).to_string()
}

fn scalar(raw: &str, line: usize) -> Result<String> {
    let raw = raw.trim();
    if raw.starts_with('"') {
        return serde_json::from_str(raw).map_err(|_| anyhow!("line {line}: bad quoted string"));
    }
    if let Some(inner) = raw.strip_prefix('\'') {
        let inner = inner
            .strip_suffix('\'')
            .ok_or_else(|| anyhow!("line {line}: unterminated quote"))?;
        return Ok(inner.replace("''", "'"));
    }
    // A plain scalar ends at ` #` (a comment).
    Ok(raw.split(" #").next().unwrap_or("").trim().to_string())
}

fn parse_yaml(text: &str) -> Result<Contexts> {
    let mut out = Contexts::default();
    let mut in_contexts = false;
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let (key, value) = trimmed
            .split_once(':')
            .ok_or_else(|| anyhow!("line {n}: expected `key: value`"))?;
        let key = scalar(key, n)?;
        let value = value.trim();
        let has_value = !(value.is_empty() || value.starts_with('#'));
        match indent {
            0 => {
                in_contexts = key == "contexts";
                current = None;
                if key == "current_context" && has_value {
                    out.current_context = Some(scalar(value, n)?);
                }
            }
            _ if !in_contexts => {}
            _ if !has_value => {
                out.contexts.insert(key.clone(), Context::default());
                current = Some(key);
            }
            _ => {
                let name = current
                    .as_ref()
                    .ok_or_else(|| anyhow!("line {n}: `{key}` outside a context"))?;
                let c = out.contexts.entry(name.clone()).or_default();
                let v = Some(scalar(value, n)?);
                match key.as_str() {
                    "url" => c.url = v,
                    "api_key" => c.api_key = v,
                    "session_id" => c.session_id = v,
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_round_trips_and_reads_the_guides_hand_written_form() {
        let mut c = Contexts {
            current_context: Some("prod".into()),
            ..Default::default()
        };
        c.contexts.insert(
            "prod".into(),
            Context {
                url: Some("https://cyfr.example.com".into()),
                api_key: Some("cyfr_sk_x\"y".into()),
                session_id: None,
            },
        );
        assert_eq!(parse_yaml(&c.to_yaml()).unwrap(), c);
        let hand = "# mine\ncurrent_context: local\ncontexts:\n  local:\n    url: http://localhost:4000 # dev\n    session_id: 'ab''c'\n";
        let y = parse_yaml(hand).unwrap();
        assert_eq!(y.current_context.as_deref(), Some("local"));
        let local = &y.contexts["local"];
        assert_eq!(local.url.as_deref(), Some("http://localhost:4000"));
        assert_eq!(local.session_id.as_deref(), Some("ab'c"));
    }

    #[test]
    fn an_unknown_context_is_an_error_not_another_server() {
        let c = Contexts::default();
        assert!(c.current(Some("prdo")).is_err());
        assert!(c.current(None).unwrap().is_none());
    }
}
