//! Builds the built-in step plugins (`plugins/`, one crate each) for wasm32-wasip2 and embeds
//! them in the `weir` binary as `plugin::builtin::PLUGINS`.

use std::fmt::Write as _;

include!("wasm_build.rs");

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("engine/ lives in the workspace root");
    let plugins = root.join("plugins");
    rerun_if_changed_under(&plugins);
    rerun_if_changed_under(&root.join("sdk"));
    println!("cargo:rerun-if-changed=wasm_build.rs");

    let out_dir = wasm_target_dir(root);
    let release = build_wasm_workspace(&plugins.join("Cargo.toml"), &out_dir);

    let mut names: Vec<String> = std::fs::read_dir(&plugins)
        .expect("plugins/ is readable")
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();

    let embed_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let mut code = String::from("/// The built-in plugins: (name, component bytes).\n");
    code.push_str("pub const PLUGINS: &[(&str, &[u8])] = &[\n");
    for name in &names {
        let artifact = release.join(format!("weir_plugin_{}.wasm", name.replace('-', "_")));
        let embedded = embed_dir.join(format!("{name}.wasm"));
        std::fs::copy(&artifact, &embedded)
            .unwrap_or_else(|e| panic!("plugin {name}: {} is missing: {e}", artifact.display()));
        writeln!(
            code,
            "    ({name:?}, include_bytes!({:?})),",
            embedded.display().to_string()
        )
        .expect("writing to a String");
    }
    code.push_str("];\n");
    std::fs::write(embed_dir.join("builtin_plugins.rs"), code).expect("OUT_DIR is writable");
}
