//! `weir plugin new` makes a crate that passes its own test, builds for wasm32-wasip2 and runs
//! under `weir plugin run`: the plugin developer's first five minutes, end to end.

use std::process::Command;

use weir_tests::{target_dir, weir_command};

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // The outer build's settings are not the new crate's.
    for var in [
        "CARGO_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_MANIFEST_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The manifest paths of the workspace members of the crate at `dir`: the crate itself and
/// every path dependency inside it (one outside, such as an SDK on the build machine, is not a
/// member).
fn path_packages(dir: &std::path::Path) -> Vec<String> {
    let metadata = run_ok(
        cargo()
            .current_dir(dir)
            .args(["metadata", "--format-version", "1", "--no-deps"]),
        "cargo metadata in the new crate",
    );
    let metadata: serde_json::Value = serde_json::from_str(&metadata).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["manifest_path"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_new_plugin_builds_passes_its_test_and_runs_under_weir() {
    // The binary alone, away from the tree it was built in, makes the crate; the crate is then
    // moved, as a user would: it must name nothing of the build machine and still build.
    let bin_dir = tempfile::tempdir().unwrap();
    let weir = bin_dir.path().join("weir");
    std::fs::copy(weir_tests::weir_bin(), &weir).unwrap();
    let made = tempfile::tempdir().unwrap();
    run_ok(
        Command::new(&weir)
            .args(["plugin", "new", "hello-step", "--dir"])
            .arg(made.path())
            .current_dir(made.path())
            .env("WEIR_CACHE_DIR", weir_tests::process_plugin_cache()),
        "weir plugin new",
    );
    let work = tempfile::tempdir().unwrap();
    let krate = work.path().join("hello-step");
    std::fs::rename(made.path().join("hello-step"), &krate).unwrap();
    let root = weir_tests::repo_root().display().to_string();
    for text in [
        std::fs::read_to_string(krate.join("Cargo.toml")).unwrap(),
        std::fs::read_to_string(krate.join("weir-sdk/Cargo.toml")).unwrap(),
    ] {
        assert!(!text.contains(&root), "{text}");
    }
    let packages = path_packages(&krate);
    assert_eq!(packages.len(), 3, "{packages:?}");
    for manifest in &packages {
        assert!(
            std::path::Path::new(manifest).starts_with(&krate),
            "{manifest} is outside the new crate"
        );
    }
    // Shared target folders, so serde and the rest compile once across test runs.
    let shared = target_dir().join("scaffold");

    let tests = run_ok(
        cargo()
            .current_dir(&krate)
            .args(["test", "--target-dir"])
            .arg(shared.join("native")),
        "cargo test in the new crate",
    );
    assert!(tests.contains("3 passed"), "{tests}");

    run_ok(
        cargo()
            .current_dir(&krate)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--target-dir",
            ])
            .arg(shared.join("wasm")),
        "cargo build --target wasm32-wasip2 in the new crate",
    );
    let wasm = shared.join("wasm/wasm32-wasip2/release/hello_step.wasm");
    assert!(wasm.exists(), "{} was not built", wasm.display());

    std::fs::write(work.path().join("in.json"), r#"{"name": "Ada"}"#).unwrap();
    std::fs::write(work.path().join("cfg.json"), r#"{"greeting": "Welcome"}"#).unwrap();
    let out = weir_command()
        .args(["plugin", "run"])
        .arg(&wasm)
        .arg("--input")
        .arg(work.path().join("in.json"))
        .arg("--config")
        .arg(work.path().join("cfg.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let output: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output, serde_json::json!({"message": "Welcome, Ada!"}));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[info] greeting Ada"));

    // A failing step: exit status 1 and the error's kind on stderr.
    std::fs::write(work.path().join("bad.json"), r#"{"name": ""}"#).unwrap();
    let out = weir_command()
        .args(["plugin", "run"])
        .arg(&wasm)
        .arg("--input")
        .arg(work.path().join("bad.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid-input") && stderr.contains("name is empty"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
