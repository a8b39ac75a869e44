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

    embed_sdk(&root.join("sdk"), &embed_dir);
}

/// Embeds the SDK's sources (`sdk/`, its macros and WIT) in the binary as
/// `scaffold::SDK_FILES`, so that `weir plugin new` can write the SDK beside a new crate
/// wherever the binary runs. Every file under `sdk/` but build output is taken.
fn embed_sdk(sdk: &Path, embed_dir: &Path) {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("sdk/ is readable")
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap_or_default();
            if name == "target" || name == "Cargo.lock" || name.to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                walk(&path, files);
            } else {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(sdk, &mut files);
    let mut code = String::from("/// The SDK's sources: (path under `sdk/`, contents).\n");
    code.push_str("pub const SDK_FILES: &[(&str, &str)] = &[\n");
    for file in &files {
        let relative = file.strip_prefix(sdk).expect("under sdk/");
        writeln!(
            code,
            "    ({:?}, include_str!({:?})),",
            relative.display().to_string(),
            file.display().to_string()
        )
        .expect("writing to a String");
    }
    code.push_str("];\n");
    std::fs::write(embed_dir.join("sdk_files.rs"), code).expect("OUT_DIR is writable");
}
