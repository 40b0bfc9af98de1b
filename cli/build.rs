//! Builds `router.wasm` (the `cyfr-router` crate for wasm32-wasip2, release) so the `cyfr`
//! binary carries it. A nested cargo with its own target dir (`target/wasm`), so it never
//! waits on the lock the outer cargo holds. `spin.toml` names the same file.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    for p in [
        "router/src",
        "router/Cargo.toml",
        "core/src",
        "core/Cargo.toml",
        "migrations",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=CYFR_ROUTER_WASM");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("router.wasm");

    // A prebuilt router (e.g. from a packaging step) skips the nested build.
    if let Ok(prebuilt) = std::env::var("CYFR_ROUTER_WASM") {
        std::fs::copy(&prebuilt, &out)
            .unwrap_or_else(|e| panic!("CYFR_ROUTER_WASM={prebuilt}: {e}"));
        return;
    }

    let target_dir = workspace.join("target").join("wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "-p",
            "cyfr-router",
        ])
        .env("CARGO_TARGET_DIR", &target_dir);
    // The outer build's flags are for the host target, not for wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo to build router.wasm");
    if !status.success() {
        panic!("building router.wasm failed; is the wasm32-wasip2 target installed? (rustup target add wasm32-wasip2)");
    }
    let built = target_dir.join("wasm32-wasip2/release/cyfr_router.wasm");
    std::fs::copy(&built, &out).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
}
