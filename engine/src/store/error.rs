//! What can go wrong in the store, one variant per way a caller reacts.

/// An error of the store.
///
/// `Clone` because one failed group commit answers every caller in the batch with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Too many accepts are waiting for the writer. Nothing was stored; the gateway answers
    /// 503 with `Retry-After`.
    #[error("the store is overloaded: too many webhooks are waiting to be written, retry later")]
    Overloaded,
    /// The writer has stopped (the store is closing, or its thread died). Nothing was stored.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The database failed (disk full, I/O error, …). Nothing of the failed write was committed.
    #[error("storage failed: {0}")]
    Storage(String),
    /// No such run (or other record).
    #[error("{0} not found")]
    NotFound(String),
    /// The write contradicts what is stored: the run is not in a status that allows it, or a
    /// flow version is already stored with another source.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored record could not be decoded.
    #[error("corrupt store: {0}")]
    Corrupt(String),
}

macro_rules! storage_from {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for StoreError {
            fn from(err: $ty) -> Self {
                StoreError::Storage(err.to_string())
            }
        }
    )*};
}

storage_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
);
