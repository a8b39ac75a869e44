//! Hot reload: the flows folder is watched with notify and reloaded after a quiet moment.
//!
//! The folder itself is watched, not each file, so editors that save by writing a new file and
//! renaming it over the old one (vim, many IDEs) are seen like any other change. Events are
//! debounced: a reload starts once no event has come for [`QUIET`], and at most [`MAX_WAIT`]
//! after the first one, so a flurry of writes is one reload.

use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::{Catalog, CatalogError};

const QUIET: Duration = Duration::from_millis(75);
const MAX_WAIT: Duration = Duration::from_millis(500);

/// Keeps the folder watched while alive.
pub struct Watcher {
    _watcher: notify::RecommendedWatcher,
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
        let task = tokio::spawn(async move {
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
            }
        });
        Ok(Watcher {
            _watcher: watcher,
            task,
        })
    }
}
