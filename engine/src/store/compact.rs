//! `weir compact`: shrinks a stopped store's file to what it holds.
//!
//! redb reuses the pages that deleted runs free, so a store under a retention limit stops
//! growing, but its file never shrinks on its own. Compaction moves every page toward the
//! start and cuts the file. The journal is applied first (as any open does, in a durable
//! commit), so every frame left in it is one the store holds already and that no open applies
//! again: compaction changes where pages lie, never what the tables hold or the journal
//! sequence number the store records.

use std::path::Path;

use redb::{Database, DatabaseError};

use super::error::StoreError;
use super::{Options, Store};

/// Why a store could not be compacted.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Another process (a running Weir) has the file open.
    #[error(
        "the store {0} is in use (a running Weir holds it): stop Weir, then compact, or keep it running: its freed pages are reused"
    )]
    InUse(String),
    #[error("there is no store at {0}")]
    Missing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The file's length before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    pub before: u64,
    pub after: u64,
}

fn open(path: &Path) -> Result<Database, CompactError> {
    Database::builder().open(path).map_err(|e| match e {
        DatabaseError::DatabaseAlreadyOpen => CompactError::InUse(path.display().to_string()),
        other => {
            StoreError::Storage(format!("cannot open the store {}: {other}", path.display())).into()
        }
    })
}

/// Compacts the store file at `path`, which no process may have open.
pub fn compact(path: &Path) -> Result<Compacted, CompactError> {
    if !path.is_file() {
        return Err(CompactError::Missing(path.display().to_string()));
    }
    // Refuse before the store's own open, whose error would not say why.
    drop(open(path)?);
    // Opening the store applies what its journal holds beyond the file; closing it waits for
    // the writer, which has nothing left to make durable.
    drop(Store::open_with(path, Options::default())?);
    let length = |path: &Path| {
        std::fs::metadata(path)
            .map(|m| m.len())
            .map_err(|e| StoreError::Storage(format!("cannot read {}: {e}", path.display())))
    };
    let before = length(path)?;
    let mut db = open(path)?;
    db.compact()
        .map_err(|e| StoreError::Storage(format!("compacting {}: {e}", path.display())))?;
    drop(db);
    Ok(Compacted {
        before,
        after: length(path)?,
    })
}
