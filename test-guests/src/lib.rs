//! The one place that builds the workspace's wasm test guests.
//!
//! Every test guest (the example components, `tests/fixtures/*`, `host/tests/spin-guest`) is
//! built by one `cargo build --release --target wasm32-wasip2 -p … -p …` per process, into
//! `<workspace>/target/wasm` (a target dir of its own, so the nested cargo never waits on the
//! lock of the cargo running the tests; `cli/build.rs` builds `router.wasm` there too). A file
//! lock there keeps parallel test binaries from building at once; the second finds the
//! build done. [`guest`] hands out a guest's bytes, [`path`] its file; a package that is
//! not in [`GUESTS`] is refused, so no test silently runs something else.
#![deny(missing_docs)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Every test guest, by package name. A workspace member under `components/`,
/// `tests/fixtures/` or `host/tests/` must be listed (a test checks it).
pub const GUESTS: &[&str] = &[
    // components/: the example reagents, catalysts and formula.
    "json-transform",
    "text-stats",
    "http-catalyst",
    "claude-catalyst",
    "fetch-stats-formula",
    // tests/fixtures/
    "memory-bomb",
    "endless-loop",
    "slow-progress",
    "catalyst-probe",
    "formula-probe",
    // the MCP conformance suite's fixture tools (scripts/mcp-check.sh registers them)
    "conformance-content",
    "conformance-error",
    "conformance-input",
    // host/tests/spin-guest: a spin-sdk component for the Spin runner's tests.
    "cyfr-spin-test-guest",
    // tests/fixtures/http-floor: the runner's floor for cyfr-bench (answers without reading).
    "http-floor",
];

/// The workspace root: `$CYFR_WORKSPACE_DIR` if set, else this crate's parent directory.
pub fn workspace() -> PathBuf {
    match std::env::var_os("CYFR_WORKSPACE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("test-guests/ has a parent")
            .to_path_buf(),
    }
}

/// `<workspace>/target/wasm`: the wasm builds' target dir (caches of tests live there too).
pub fn target_dir() -> PathBuf {
    workspace().join("target").join("wasm")
}

/// Where the built `.wasm` files are: `<workspace>/target/wasm/wasm32-wasip2/release`.
pub fn release_dir() -> PathBuf {
    target_dir().join("wasm32-wasip2").join("release")
}

/// The built file of `package` (building every guest first, once per process).
///
/// Panics if `package` is not one of [`GUESTS`] or the build fails.
pub fn path(package: &str) -> PathBuf {
    assert!(
        GUESTS.contains(&package),
        "{package} is not a test guest (see cyfr_test_guests::GUESTS)"
    );
    if let Err(e) = build_all() {
        panic!("{e}");
    }
    file_of(package)
}

/// The bytes of `package`, read once per process after the build (see [`path`]).
pub fn guest(package: &str) -> &'static [u8] {
    static READ: OnceLock<HashMap<&'static str, Vec<u8>>> = OnceLock::new();
    let read = READ.get_or_init(|| {
        GUESTS
            .iter()
            .map(|p| {
                let file = path(p);
                let bytes =
                    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                (*p, bytes)
            })
            .collect()
    });
    match read.get(package) {
        Some(bytes) => bytes,
        None => panic!("{package} is not a test guest (see cyfr_test_guests::GUESTS)"),
    }
}

/// Builds every guest once per process; later calls return the first outcome.
pub fn build_all() -> Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT.get_or_init(|| build(GUESTS)).clone()
}

/// Builds every guest and `cyfr-router` in one cargo run (for the benchmark, which serves
/// the router as `cyfr up` does).
pub fn build_with_router() -> Result<(), String> {
    let mut packages = vec!["cyfr-router"];
    packages.extend_from_slice(GUESTS);
    build(&packages)
}

/// One `cargo build --release --locked --target wasm32-wasip2 -p …` of `packages` into
/// [`target_dir`], under the directory's file lock. The error carries cargo's stderr.
pub fn build(packages: &[&str]) -> Result<(), String> {
    let target = target_dir();
    std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    let lock_path = target.join(".test-guests.lock");
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    // Released when `lock` is dropped (or the process dies).
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace())
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
        ]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    // The outer build's flags are for the host target, not for wasm (as in cli/build.rs).
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("running cargo to build the test guests: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the test guests failed (is the wasm32-wasip2 target installed?):\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// The built file of `package`: its library name (`-` → `_`) with `.wasm`.
fn file_of(package: &str) -> PathBuf {
    release_dir().join(format!("{}.wasm", package.replace('-', "_")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every wasm member of the workspace (a path under components/, tests/fixtures/ or
    /// host/tests/) is a listed guest, and every listed guest is a member.
    #[test]
    fn every_wasm_member_is_a_guest() {
        let root = workspace();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let members: Vec<&str> = manifest
            .lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix('"')?.strip_suffix("\","))
            .filter(|m| {
                ["components/", "tests/fixtures/", "host/tests/"]
                    .iter()
                    .any(|dir| m.starts_with(dir))
            })
            .collect();
        let mut named = Vec::new();
        for m in &members {
            let toml = std::fs::read_to_string(root.join(m).join("Cargo.toml")).unwrap();
            let name = toml
                .lines()
                .find_map(|l| l.trim().strip_prefix("name = \"")?.strip_suffix('"'))
                .unwrap_or_else(|| panic!("{m}/Cargo.toml names no package"));
            assert!(
                GUESTS.contains(&name),
                "{m} ({name}) is a wasm member but not in GUESTS"
            );
            named.push(name.to_string());
        }
        for g in GUESTS {
            assert!(
                named.iter().any(|n| n == g),
                "{g} is not a workspace member"
            );
        }
    }
}
