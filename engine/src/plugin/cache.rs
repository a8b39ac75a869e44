//! Compiled components kept on disk by content hash, so a restart loads them instead of
//! compiling them again.
//!
//! The key is the SHA-256 of the component bytes plus wasmtime's compatibility hash of the
//! engine's configuration: an artifact only loads into an engine built the same way.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

pub(super) struct Cache {
    dir: PathBuf,
    engine_key: u64,
}

impl Cache {
    pub(super) fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Cache {
            dir,
            engine_key: hasher.finish(),
        }
    }

    /// Returns the component and whether it came from the cache. Cache trouble (unwritable
    /// folder, stale or damaged file) never fails a load: it falls back to `compile`.
    pub(super) fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        compile: impl FnOnce() -> wasmtime::Result<Component>,
    ) -> wasmtime::Result<(Component, bool)> {
        let digest = hex::encode(Sha256::digest(bytes));
        let path = self
            .dir
            .join(format!("{digest}-{:016x}.cwasm", self.engine_key));
        // Read into memory rather than mmap: a file changed under a mapping (by anyone) would
        // crash the process with SIGBUS; a copy can only fail to deserialize.
        if let Ok(artifact) = std::fs::read(&path) {
            // SAFETY: files in the cache folder are written by `store` below from
            // `Component::serialize` of an engine with this same compatibility hash (it is part
            // of the file name); wasmtime also checks the header and version before using it.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring a damaged cache entry")
                }
            }
        }
        let component = compile()?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write the plugin cache");
        }
        Ok((component, false))
    }

    fn store(&self, path: &std::path::Path, component: &Component) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
        // Write then rename, so a reader never sees half a file.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}
