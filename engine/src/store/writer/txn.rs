//! The tables of one write transaction, opened as ops first need them, and how an op's
//! failure is told from the database's.

use redb::{Table, WriteTransaction};

use super::super::error::StoreError;
use super::super::tables::{
    DEDUPE, DONE_BY_FLOW_STATUS, DONE_BY_STATUS, FLOW_VERSION_PLUGINS, FLOW_VERSIONS, LIVE,
    OUTCOMES, PLUGINS, REDELIVERIES, REJECTION_COUNTS, REJECTION_NEXT, REJECTIONS, REQUESTS,
    RUNS_BY_FLOW, STEPS, State, TOKENS, bundle, run_of, state_of,
};
use super::super::tables::{FINISHED_BY_FLOW, PREVIOUS_TOKENS, REPLAYS};
use super::super::types::{Run, RunId};

/// Why an op failed: on its own (answer it, go on with the batch), or because the database
/// failed (abort the batch).
pub(super) enum OpError {
    Op(StoreError),
    Fatal(StoreError),
}

impl From<StoreError> for OpError {
    fn from(err: StoreError) -> Self {
        OpError::Op(err)
    }
}

macro_rules! fatal_from {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for OpError {
            fn from(err: $ty) -> Self {
                OpError::Fatal(StoreError::from(err))
            }
        }
    )*};
}

fatal_from!(redb::StorageError, redb::TableError);

/// The [`FINISHED_BY_FLOW`] table.
type FinishedByFlow<'t> = Table<'t, (&'static str, u128), (u8, u64)>;

/// The tables of one batch's transaction. The two every accept writes are opened with it;
/// the others when an op first needs them: opening a table is not free, and a burst of
/// accepts makes batches that need no other.
pub(super) struct WriteTables<'t> {
    txn: &'t WriteTransaction,
    pub(super) requests: Table<'t, u128, &'static [u8]>,
    pub(super) live: Table<'t, u128, (u8, u32, u64)>,
    outcomes: Option<Table<'t, u128, &'static [u8]>>,
    steps: Option<Table<'t, (u128, u32), &'static [u8]>>,
    by_flow: Option<Table<'t, (&'static str, u128), ()>>,
    done_by_status: Option<Table<'t, (u8, u128), ()>>,
    done_by_flow_status: Option<Table<'t, (&'static str, u8, u128), ()>>,
    dedupe: Option<Table<'t, (&'static str, &'static str), u128>>,
    flow_versions: Option<Table<'t, (&'static str, &'static str), &'static str>>,
    flow_version_plugins: Option<Table<'t, (&'static str, &'static str), &'static str>>,
    plugins: Option<Table<'t, &'static str, &'static [u8]>>,
    tokens: Option<Table<'t, &'static str, &'static str>>,
    rejections: Option<Table<'t, (&'static str, u16), &'static [u8]>>,
    rejection_next: Option<Table<'t, &'static str, u64>>,
    rejection_counts: Option<Table<'t, (&'static str, &'static str), u64>>,
    redeliveries: Option<Table<'t, u128, u64>>,
    finished_by_flow: Option<FinishedByFlow<'t>>,
    replays: Option<Table<'t, (u128, u128), ()>>,
    previous_tokens: Option<Table<'t, &'static str, (&'static str, u64)>>,
    /// The requests accepted in this transaction and not yet stored.
    pub(super) bundle: bundle::Builder,
}

/// The table in `slot`, opened in `txn` the first time.
fn lazy<'a, 't, K: redb::Key + 'static, V: redb::Value + 'static>(
    slot: &'a mut Option<Table<'t, K, V>>,
    txn: &'t WriteTransaction,
    definition: redb::TableDefinition<K, V>,
) -> Result<&'a mut Table<'t, K, V>, redb::TableError> {
    match slot {
        Some(table) => Ok(table),
        None => Ok(slot.insert(txn.open_table(definition)?)),
    }
}

macro_rules! lazy_tables {
    ($($name:ident: $definition:ident, $key:ty, $value:ty;)*) => {
        impl<'t> WriteTables<'t> {
            $(
                pub(super) fn $name(&mut self) -> Result<&mut Table<'t, $key, $value>, redb::TableError> {
                    lazy(&mut self.$name, self.txn, $definition)
                }
            )*
        }
    };
}

lazy_tables! {
    outcomes: OUTCOMES, u128, &'static [u8];
    steps: STEPS, (u128, u32), &'static [u8];
    by_flow: RUNS_BY_FLOW, (&'static str, u128), ();
    done_by_status: DONE_BY_STATUS, (u8, u128), ();
    done_by_flow_status: DONE_BY_FLOW_STATUS, (&'static str, u8, u128), ();
    dedupe: DEDUPE, (&'static str, &'static str), u128;
    flow_versions: FLOW_VERSIONS, (&'static str, &'static str), &'static str;
    flow_version_plugins: FLOW_VERSION_PLUGINS, (&'static str, &'static str), &'static str;
    plugins: PLUGINS, &'static str, &'static [u8];
    tokens: TOKENS, &'static str, &'static str;
    rejections: REJECTIONS, (&'static str, u16), &'static [u8];
    rejection_next: REJECTION_NEXT, &'static str, u64;
    rejection_counts: REJECTION_COUNTS, (&'static str, &'static str), u64;
    redeliveries: REDELIVERIES, u128, u64;
    finished_by_flow: FINISHED_BY_FLOW, (&'static str, u128), (u8, u64);
    replays: REPLAYS, (u128, u128), ();
    previous_tokens: PREVIOUS_TOKENS, &'static str, (&'static str, u64);
}

impl<'t> WriteTables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(WriteTables {
            txn,
            requests: txn.open_table(REQUESTS)?,
            live: txn.open_table(LIVE)?,
            outcomes: None,
            steps: None,
            by_flow: None,
            done_by_status: None,
            done_by_flow_status: None,
            dedupe: None,
            flow_versions: None,
            flow_version_plugins: None,
            plugins: None,
            tokens: None,
            rejections: None,
            rejection_next: None,
            rejection_counts: None,
            redeliveries: None,
            finished_by_flow: None,
            replays: None,
            previous_tokens: None,
            bundle: bundle::Builder::default(),
        })
    }

    /// Stores the requests accepted so far as one bundle. Called before the transaction
    /// commits and before anything reads [`REQUESTS`] in it.
    pub fn flush_bundle(&mut self) -> Result<(), redb::StorageError> {
        if let Some((key, value)) = self.bundle.take() {
            self.requests.insert(key, value.as_slice())?;
        }
        Ok(())
    }

    /// What `read` makes of a live run's stored request.
    pub fn with_request<R>(
        &mut self,
        id: RunId,
        read: impl FnOnce(&[u8]) -> Result<R, StoreError>,
    ) -> Result<R, OpError> {
        self.flush_bundle()?;
        let found = bundle::find(&self.requests, id)
            .map_err(fatal_if_storage)?
            .ok_or_else(|| StoreError::Corrupt(format!("run {id} is live but has no request")))?;
        Ok(read(found.bytes())?)
    }

    /// The run's state; `NotFound` for an unknown run.
    pub fn load_state(&mut self, id: RunId) -> Result<State, OpError> {
        let outcomes = lazy(&mut self.outcomes, self.txn, OUTCOMES)?;
        state_of(&self.live, outcomes, id)
            .map_err(fatal_if_storage)?
            .ok_or_else(|| StoreError::NotFound(format!("run {id}")).into())
    }

    /// The run as shown; `NotFound` for an unknown run.
    pub fn load_run(&mut self, id: RunId) -> Result<Run, OpError> {
        let outcomes = lazy(&mut self.outcomes, self.txn, OUTCOMES)?;
        run_of(&self.requests, &self.live, outcomes, id)
            .map_err(fatal_if_storage)?
            .ok_or_else(|| StoreError::NotFound(format!("run {id}")).into())
    }
}

/// A read error of the database aborts the batch; an undecodable record fails only its op.
pub(super) fn fatal_if_storage(err: StoreError) -> OpError {
    match err {
        StoreError::Corrupt(_) | StoreError::NotFound(_) | StoreError::Conflict(_) => {
            OpError::Op(err)
        }
        other => OpError::Fatal(other),
    }
}
