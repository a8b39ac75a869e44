//! Builds the test guests (`tests/guests/`, plugins that misbehave on purpose) for
//! wasm32-wasip2 and exposes their paths to the tests as `env!("WEIR_TEST_<NAME>_WASM")`.

include!("../engine/wasm_build.rs");

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("tests/ lives in the workspace root");
    let guests = manifest_dir.join("guests");
    rerun_if_changed_under(&guests);
    rerun_if_changed_under(&root.join("sdk"));
    println!("cargo:rerun-if-changed=../engine/wasm_build.rs");
    let release = build_wasm_workspace(&guests.join("Cargo.toml"), &wasm_target_dir(root));
    for (name, var) in [
        ("hostile", "WEIR_TEST_HOSTILE_WASM"),
        ("raw", "WEIR_TEST_RAW_WASM"),
    ] {
        let path = release.join(format!("weir_test_{name}.wasm"));
        assert!(path.exists(), "{} was not built", path.display());
        println!("cargo:rustc-env={var}={}", path.display());
    }
}
