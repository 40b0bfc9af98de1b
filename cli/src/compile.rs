//! `cyfr build DIR`: compiles a component's `src/` crate for wasm32-wasip2 into `{type}.wasm`.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value as Json;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

/// The component type a directory's manifest declares.
pub fn manifest_type(dir: &Path) -> Result<String> {
    let path = dir.join("cyfr-manifest.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Json = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    match v.get("type").and_then(Json::as_str) {
        Some(t @ ("reagent" | "catalyst" | "formula")) => Ok(t.to_string()),
        _ => bail!(
            "{}: field `type` must be one of reagent, catalyst, formula",
            path.display()
        ),
    }
}

/// Whether `{type}.wasm` is missing or older than anything under `src/`.
pub fn needs_build(dir: &Path) -> Result<bool> {
    let wasm = dir.join(format!("{}.wasm", manifest_type(dir)?));
    let Ok(built) = std::fs::metadata(&wasm).and_then(|m| m.modified()) else {
        return Ok(true);
    };
    let src = dir.join("src");
    if !src.exists() {
        return Ok(false);
    }
    Ok(newest(&src)? > built)
}

fn newest(dir: &Path) -> Result<SystemTime> {
    let mut t = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        let m = entry.metadata()?;
        let this = if m.is_dir() {
            newest(&entry.path())?
        } else {
            m.modified()?
        };
        t = t.max(this);
    }
    Ok(t)
}

fn ensure_target() -> Result<()> {
    let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(()); // No rustup: trust the toolchain; cargo will say if the target is missing.
    };
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == "wasm32-wasip2")
    {
        return Ok(());
    }
    eprintln!("Installing the wasm32-wasip2 target (rustup target add wasm32-wasip2)...");
    let ok = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()?
        .success();
    if !ok {
        bail!("`rustup target add wasm32-wasip2` failed");
    }
    Ok(())
}

/// Builds the component in `dir` and returns the path of the `{type}.wasm` written.
/// Cargo's progress goes to stderr as it happens.
pub fn build(dir: &Path) -> Result<PathBuf> {
    let ctype = manifest_type(dir)?;
    let manifest = dir.join("src").join("Cargo.toml");
    if !manifest.exists() {
        bail!("{} has no src/Cargo.toml to build", dir.display());
    }
    ensure_target()?;
    eprintln!("Building {} ({ctype}) for wasm32-wasip2...", dir.display());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("running cargo")?;
    let canonical_manifest = manifest.canonicalize()?;
    let mut artifact: Option<PathBuf> = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line?;
        let Ok(msg) = serde_json::from_str::<Json>(&line) else {
            continue;
        };
        if msg.get("reason").and_then(Json::as_str) != Some("compiler-artifact") {
            continue;
        }
        let same = msg
            .get("manifest_path")
            .and_then(Json::as_str)
            .and_then(|p| Path::new(p).canonicalize().ok())
            == Some(canonical_manifest.clone());
        if !same {
            continue;
        }
        if let Some(files) = msg.get("filenames").and_then(Json::as_array) {
            if let Some(w) = files
                .iter()
                .filter_map(Json::as_str)
                .find(|f| f.ends_with(".wasm"))
            {
                artifact = Some(PathBuf::from(w));
            }
        }
    }
    if !child.wait()?.success() {
        bail!("cargo build failed for {}", dir.display());
    }
    let artifact = artifact.ok_or_else(|| {
        anyhow!(
            "cargo built no .wasm for {} (is it a cdylib?)",
            manifest.display()
        )
    })?;
    let dest = dir.join(format!("{ctype}.wasm"));
    std::fs::copy(&artifact, &dest)
        .with_context(|| format!("copying {} to {}", artifact.display(), dest.display()))?;
    Ok(dest)
}
