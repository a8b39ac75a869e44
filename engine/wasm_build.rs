// Builds a cargo workspace of WebAssembly components for wasm32-wasip2 from a build script.
// Shared by engine/build.rs (the built-in plugins) and tests/build.rs (the test guests) through
// `include!`, so both add the target the same way when a new machine lacks it.

use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip2";

/// Makes sure the wasm32-wasip2 standard library is installed for the toolchain running this
/// build, adding it with rustup when it is missing (a new machine has only its host target and
/// `RUSTUP_AUTO_INSTALL=0`).
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = &sysroot
        && sysroot.join("lib/rustlib").join(WASM_TARGET).exists()
    {
        return;
    }
    println!("cargo:warning=the {WASM_TARGET} target is missing; adding it with `rustup target add {WASM_TARGET}`");
    let mut add = Command::new("rustup");
    add.args(["target", "add", WASM_TARGET]);
    if let Ok(toolchain) = std::env::var("RUSTUP_TOOLCHAIN") {
        add.args(["--toolchain", &toolchain]);
    }
    match add.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "`rustup target add {WASM_TARGET}` failed ({status}); run it by hand, then build again"
        ),
        Err(e) => panic!(
            "cannot run rustup to add the {WASM_TARGET} target ({e}); install it with \
             `rustup target add {WASM_TARGET}` (or your toolchain's equivalent), then build again"
        ),
    }
}

/// The directory for wasm build output: `<target dir>/wasm`, shared by every wasm workspace of
/// the repository so the SDK and its dependencies compile once.
fn wasm_target_dir(workspace_root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root.join("target"))
        .join("wasm")
}

/// Builds every crate of the workspace at `manifest` in release mode for wasm32-wasip2 and
/// returns the folder holding the `.wasm` files.
fn build_wasm_workspace(manifest: &Path, target_dir: &Path) -> PathBuf {
    ensure_wasm_target();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--workspace", "--target", WASM_TARGET])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir);
    // The outer build's flags are for the host; they must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {}: {e}", manifest.display()));
    assert!(
        status.success(),
        "building the WebAssembly components of {} failed ({status})",
        manifest.display()
    );
    target_dir.join(WASM_TARGET).join("release")
}

/// Tells cargo to run the build script again when anything under `dir` changes, except build
/// output.
fn rerun_if_changed_under(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        if path.is_dir() {
            rerun_if_changed_under(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
