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

#[test]
fn a_new_plugin_builds_passes_its_test_and_runs_under_weir() {
    let work = tempfile::tempdir().unwrap();
    run_ok(
        weir_command()
            .args(["plugin", "new", "hello-step", "--dir"])
            .arg(work.path()),
        "weir plugin new",
    );
    let krate = work.path().join("hello-step");
    // Shared target folders, so the SDK and serde compile once across test runs.
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
