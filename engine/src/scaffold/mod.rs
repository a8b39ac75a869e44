//! `weir plugin new`: a new plugin crate on the SDK that builds for wasm32-wasip2 and passes
//! its own test as generated.

use std::path::{Path, PathBuf};

/// Why a plugin crate could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "'{0}' is not a valid plugin name: use lower-case letters, digits and '-', starting with a letter"
    )]
    BadName(String),
    #[error("{} already exists; choose another name or folder", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The SDK this binary was built with; generated crates depend on it by path.
pub fn bundled_sdk() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk"))
}

/// Creates `parent/name/` with a plugin crate depending on the SDK at `sdk`.
pub fn new_plugin(parent: &Path, name: &str, sdk: &Path) -> Result<PathBuf, ScaffoldError> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    let sdk = std::fs::canonicalize(sdk).unwrap_or_else(|_| sdk.to_owned());
    let crate_name = name.replace('-', "_");
    let files = [
        (
            "Cargo.toml",
            include_str!("template/Cargo.toml.txt")
                .replace("{{name}}", name)
                .replace("{{sdk}}", &sdk.display().to_string().replace('\\', "/")),
        ),
        ("src/lib.rs", include_str!("template/lib.rs.txt").to_owned()),
        (
            "README.md",
            include_str!("template/README.md.txt")
                .replace("{{name}}", name)
                .replace("{{crate_name}}", &crate_name),
        ),
        (".gitignore", "/target\n".to_owned()),
    ];
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_names_and_existing_folders() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "Upper", "1abc", "a b", "a_b", "../x"] {
            assert!(matches!(
                new_plugin(dir.path(), bad, &bundled_sdk()),
                Err(ScaffoldError::BadName(_))
            ));
        }
        new_plugin(dir.path(), "greet", &bundled_sdk()).unwrap();
        assert!(dir.path().join("greet/src/lib.rs").exists());
        assert!(matches!(
            new_plugin(dir.path(), "greet", &bundled_sdk()),
            Err(ScaffoldError::Exists(_))
        ));
    }
}
