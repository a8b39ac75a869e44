//! Hot reload: the flows folder is watched with notify and reloaded after a quiet moment.
//!
//! The folder itself is watched, not each file, so editors that save by writing a new file and
//! renaming it over the old one (vim, many IDEs) are seen like any other change. So is every
//! folder holding a `.wasm` file a flow names (added after each reload), so rebuilding a
//! plugin reloads the flows that use it. Events are
//! debounced: a reload starts once no event has come for [`QUIET`], and at most [`MAX_WAIT`]
//! after the first one, so a flurry of writes is one reload.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::{Catalog, CatalogError};

const QUIET: Duration = Duration::from_millis(75);
const MAX_WAIT: Duration = Duration::from_millis(500);

/// Keeps the folder watched while alive.
pub struct Watcher {
    _watcher: Arc<Mutex<notify::RecommendedWatcher>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watcher {
    pub(super) fn start(catalog: Catalog) -> Result<Watcher, CatalogError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let dir = catalog.dir().to_owned();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Err(e) = &event {
                    tracing::warn!(error = %e, "watching the flows folder");
                }
                let _ = tx.send(());
            })
            .map_err(|e| CatalogError::Watch {
                dir: dir.clone(),
                message: e.to_string(),
            })?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| CatalogError::Watch {
                dir: dir.clone(),
                message: e.to_string(),
            })?;
        let watcher = Arc::new(Mutex::new(watcher));
        let mut watched = HashSet::from([dir.clone()]);
        watch_plugin_folders(&catalog, &watcher, &mut watched);
        let task = {
            let watcher = watcher.clone();
            tokio::spawn(async move {
                while rx.recv().await.is_some() {
                    let first = tokio::time::Instant::now();
                    loop {
                        let left = MAX_WAIT.saturating_sub(first.elapsed());
                        match tokio::time::timeout(QUIET.min(left), rx.recv()).await {
                            Ok(Some(())) if !left.is_zero() => continue,
                            Ok(None) => return,
                            _ => break,
                        }
                    }
                    match catalog.reload().await {
                        Ok(report) => tracing::debug!(?report, "flows folder reloaded"),
                        Err(e) => tracing::error!(error = %e, "reloading the flows folder"),
                    }
                    watch_plugin_folders(&catalog, &watcher, &mut watched);
                }
            })
        };
        Ok(Watcher {
            _watcher: watcher,
            task,
        })
    }
}

/// Adds a watch on each folder that holds a plugin file a flow names and is not watched yet.
/// Folders are never unwatched: a stray event only costs a reload that finds nothing changed.
fn watch_plugin_folders(
    catalog: &Catalog,
    watcher: &Mutex<notify::RecommendedWatcher>,
    watched: &mut HashSet<PathBuf>,
) {
    let snapshot = catalog.snapshot();
    let folders: HashSet<PathBuf> = snapshot
        .flows
        .values()
        .flat_map(|entry| entry.plugin_files())
        .filter_map(Path::parent)
        .map(Path::to_owned)
        .collect();
    for folder in folders {
        if watched.contains(&folder) {
            continue;
        }
        let mut watcher = watcher.lock().unwrap_or_else(|e| e.into_inner());
        match watcher.watch(&folder, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watched.insert(folder);
            }
            // A folder that does not exist yet: the flow shows the missing file; the next
            // reload tries again.
            Err(e) => {
                tracing::debug!(folder = %folder.display(), error = %e, "cannot watch a plugin folder")
            }
        }
    }
}
