//! `weir plugin new`: a new plugin crate on the SDK that builds for wasm32-wasip2 and passes
//! its own test as generated.
//!
//! The binary carries the SDK's sources (`sdk/`, its macros and WIT, embedded by
//! `engine/build.rs`) and writes them into the new crate as `weir-sdk/`, a path dependency: the
//! crate builds wherever it is, with only the `weir` binary at hand and no checkout of Weir.
//! `--sdk PATH` depends on an SDK folder of your own instead.

use std::path::{Path, PathBuf};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));
}

/// The folder of the new crate the bundled SDK is written to.
const SDK_DIR: &str = "weir-sdk";

/// The edition of the workspace the SDK is built in (`[workspace.package]` of the root
/// `Cargo.toml`; a test keeps the two equal): cargo gives build scripts no variable for it.
const EDITION: &str = "2024";

/// Why a plugin crate could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "'{0}' is not a valid plugin name: use lower-case letters, digits and '-', starting with a letter"
    )]
    BadName(String),
    #[error("{} already exists; choose another name or folder", .0.display())]
    Exists(PathBuf),
    #[error(
        "{} is not a weir-sdk folder (no Cargo.toml of a package named weir-sdk); leave out \
         --sdk to use the SDK this binary carries",
        .0.display()
    )]
    NotAnSdk(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Creates `parent/name/`, a plugin crate depending on the SDK this binary carries (written
/// into the crate as `weir-sdk/`), or on the SDK folder `sdk` when given.
pub fn new_plugin(parent: &Path, name: &str, sdk: Option<&Path>) -> Result<PathBuf, ScaffoldError> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    let sdk_path = match sdk {
        Some(sdk) => {
            let manifest = std::fs::read_to_string(sdk.join("Cargo.toml")).unwrap_or_default();
            if !manifest.lines().any(|l| l.trim() == r#"name = "weir-sdk""#) {
                return Err(ScaffoldError::NotAnSdk(sdk.to_owned()));
            }
            std::fs::canonicalize(sdk)
                .unwrap_or_else(|_| sdk.to_owned())
                .display()
                .to_string()
                .replace('\\', "/")
        }
        None => SDK_DIR.to_owned(),
    };
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    let crate_name = name.replace('-', "_");
    let mut files = vec![
        (
            PathBuf::from("Cargo.toml"),
            include_str!("template/Cargo.toml.txt")
                .replace("{{name}}", name)
                .replace("{{sdk}}", &sdk_path),
        ),
        (
            PathBuf::from("src/lib.rs"),
            include_str!("template/lib.rs.txt").to_owned(),
        ),
        (
            PathBuf::from("README.md"),
            include_str!("template/README.md.txt")
                .replace("{{name}}", name)
                .replace("{{crate_name}}", &crate_name),
        ),
        (PathBuf::from(".gitignore"), "/target\n".to_owned()),
    ];
    if sdk.is_none() {
        files.extend(bundled_sdk_files().map(|(path, text)| (Path::new(SDK_DIR).join(path), text)));
    }
    for (file, contents) in files {
        let path = dir.join(file);
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, &contents)
        };
        write().map_err(|source| ScaffoldError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(dir)
}

/// The SDK's files as the new crate gets them: its manifests made standalone, since the
/// workspace they inherit from (Weir's) is not there.
fn bundled_sdk_files() -> impl Iterator<Item = (&'static str, String)> {
    embedded::SDK_FILES.iter().map(|&(path, text)| {
        let text = if path.ends_with("Cargo.toml") {
            standalone(text)
        } else {
            text.to_owned()
        };
        (path, text)
    })
}

/// A member's manifest without what it inherits from the workspace: the package fields get
/// this build's values, and `[lints] workspace = true` goes.
fn standalone(manifest: &str) -> String {
    let mut out = String::with_capacity(manifest.len());
    let mut lines = manifest.lines().peekable();
    while let Some(line) = lines.next() {
        let replaced = match line.trim() {
            "[lints]" if lines.peek().map(|l| l.trim()) == Some("workspace = true") => {
                lines.next();
                continue;
            }
            "version.workspace = true" => format!("version = {:?}", env!("CARGO_PKG_VERSION")),
            "edition.workspace = true" => format!("edition = {EDITION:?}"),
            "rust-version.workspace = true" => {
                format!("rust-version = {:?}", env!("CARGO_PKG_RUST_VERSION"))
            }
            "license.workspace = true" => format!("license = {:?}", env!("CARGO_PKG_LICENSE")),
            _ => line.to_owned(),
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_names_existing_folders_and_folders_that_are_not_an_sdk() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "Upper", "1abc", "a b", "a_b", "../x"] {
            assert!(matches!(
                new_plugin(dir.path(), bad, None),
                Err(ScaffoldError::BadName(_))
            ));
        }
        new_plugin(dir.path(), "greet", None).unwrap();
        assert!(dir.path().join("greet/src/lib.rs").exists());
        assert!(matches!(
            new_plugin(dir.path(), "greet", None),
            Err(ScaffoldError::Exists(_))
        ));
        assert!(matches!(
            new_plugin(dir.path(), "other", Some(dir.path())),
            Err(ScaffoldError::NotAnSdk(_))
        ));
        assert!(!dir.path().join("other").exists());
    }

    #[test]
    fn the_bundled_sdk_is_written_into_the_crate_with_standalone_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let krate = new_plugin(dir.path(), "greet", None).unwrap();
        let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(r#"weir-sdk = { path = "weir-sdk" }"#),
            "{manifest}"
        );
        for file in [
            "Cargo.toml",
            "src/lib.rs",
            "macros/Cargo.toml",
            "macros/src/lib.rs",
            "wit/step.wit",
        ] {
            assert!(
                krate.join("weir-sdk").join(file).is_file(),
                "{file} is missing"
            );
        }
        for file in ["weir-sdk/Cargo.toml", "weir-sdk/macros/Cargo.toml"] {
            let text = std::fs::read_to_string(krate.join(file)).unwrap();
            assert!(!text.contains("workspace"), "{file}:\n{text}");
            assert!(
                text.contains(&format!("edition = {EDITION:?}")),
                "{file}:\n{text}"
            );
        }
    }

    #[test]
    fn the_embedded_edition_is_the_workspace_edition() {
        let root =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml")).unwrap();
        assert!(root.contains(&format!("edition = {EDITION:?}")));
    }
}
