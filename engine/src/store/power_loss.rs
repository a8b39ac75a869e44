//! Power-loss tests: the real store, on a simulated disk under both redb and the journal that
//! keeps every write in memory and can lose power at any I/O.
//!
//! At the cut, everything synced survives. Of what was written since each file's last sync,
//! each 512-byte sector survives old or new (model 1, `Tear::OldOrNew`), or old, new or
//! garbage (model 2, `Tear::Garbage`); a file's length is its synced or its latest one. From
//! the cut on, every I/O fails. The surviving bytes are then opened as a fresh store, which
//! must hold every write answered `Ok` (see `check`).
//!
//! Each trial draws its workload and cut point from its seed, printed on failure; set
//! `WEIR_POWER_LOSS_SEED` to run one seed again, `WEIR_POWER_LOSS_TRIALS` for another number
//! of trials. The long run is
//! `cargo test --release -p weir --lib -- --ignored power_loss_long`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::sync::{Arc, Mutex, MutexGuard};

use proptest::prelude::RngExt as _;
use proptest::test_runner::{RngAlgorithm, TestRng};
use redb::{Database, StorageBackend};

use super::journal::{BLOCK, JournalIo};
use super::{
    NewRun, Options, PluginBlob, RunFilter, RunId, RunOutcome, RunStatus, StepRecord, Store,
    StoreError,
};

const SECTOR: usize = 512;
const REDB: usize = 0;
const JOURNAL: usize = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tear {
    /// Each unsynced sector is left old or new.
    OldOrNew,
    /// Each unsynced sector is left old, new, or garbage.
    Garbage,
}

#[derive(Debug, Default, Clone)]
struct File {
    /// What the last sync made durable.
    durable: Vec<u8>,
    /// What reads see.
    live: Vec<u8>,
    /// Writes since the last sync, in order.
    pending: Vec<(usize, Vec<u8>)>,
}

#[derive(Debug)]
struct DiskState {
    files: [File; 2],
    /// I/O operations (writes, syncs, length changes) so far.
    ops: u64,
    /// Power is lost at this operation.
    cut_at: u64,
    /// The bytes that survived, once power was lost.
    survived: Option<[Vec<u8>; 2]>,
    tear: Tear,
    rng: TestRng,
}

/// A disk holding the store file and its journal.
#[derive(Debug, Clone)]
struct Disk(Arc<Mutex<DiskState>>);

fn lost() -> std::io::Error {
    std::io::Error::other("the power is off")
}

impl Disk {
    fn new(files: [Vec<u8>; 2], cut_at: u64, tear: Tear, rng: TestRng) -> Disk {
        let files = files.map(|bytes| File {
            durable: bytes.clone(),
            live: bytes,
            pending: Vec::new(),
        });
        Disk(Arc::new(Mutex::new(DiskState {
            files,
            ops: 0,
            cut_at,
            survived: None,
            tear,
            rng,
        })))
    }

    fn state(&self) -> MutexGuard<'_, DiskState> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_cut(&self) -> bool {
        self.state().survived.is_some()
    }

    fn ops(&self) -> u64 {
        self.state().ops
    }

    /// Loses power at the `n`th I/O from now.
    fn arm(&self, n: u64) {
        let mut state = self.state();
        state.cut_at = state.ops + n;
    }

    /// Cuts the power now (if it is still on) and returns what survived.
    fn cut(&self) -> [Vec<u8>; 2] {
        let mut state = self.state();
        if state.survived.is_none() {
            state.lose_power();
        }
        state.survived.clone().unwrap_or_default()
    }

    fn file(&self, index: usize) -> DiskFile {
        DiskFile {
            disk: self.clone(),
            index,
        }
    }
}

impl DiskState {
    /// Counts one I/O; `Err` once the power is off, including for the I/O that cuts it
    /// (after `in_flight` has been applied to the live bytes, so that it can be torn).
    fn io(&mut self, in_flight: impl FnOnce(&mut Self)) -> std::io::Result<()> {
        if self.survived.is_some() {
            return Err(lost());
        }
        self.ops += 1;
        if self.ops >= self.cut_at {
            in_flight(self);
            self.lose_power();
            return Err(lost());
        }
        Ok(())
    }

    fn lose_power(&mut self) {
        let tear = self.tear;
        let mut survived: [Vec<u8>; 2] = Default::default();
        for (index, out) in survived.iter_mut().enumerate() {
            let file = &self.files[index];
            let mut image = file.durable.clone();
            let len = if self.rng.random_bool(0.5) {
                file.live.len()
            } else {
                file.durable.len()
            };
            image.resize(image.len().max(file.live.len()), 0);
            for (offset, data) in &file.pending {
                // Sectors are aligned on the disk, not on the write.
                let mut at = *offset;
                let end = offset + data.len();
                while at < end {
                    let sector_end = ((at / SECTOR) + 1) * SECTOR;
                    let piece = at..sector_end.min(end);
                    // redb's header (its first sector: the god byte and both commit slots) is
                    // left old or new in both models: redb assumes it (its design's
                    // "powersafe overwrite"), and a garbage header loses the whole file.
                    let header = index == REDB && at < SECTOR;
                    let fate = match tear {
                        Tear::Garbage if !header => self.rng.random_range(0..3),
                        _ => self.rng.random_range(0..2),
                    };
                    match fate {
                        0 => {}
                        1 => image[piece.clone()]
                            .copy_from_slice(&data[piece.start - offset..piece.end - offset]),
                        _ => {
                            // The whole sector is garbage, not just the part being written.
                            let sector = (at / SECTOR) * SECTOR..sector_end.min(image.len());
                            self.rng.fill(&mut image[sector]);
                        }
                    }
                    at = piece.end;
                }
            }
            image.resize(len, 0);
            *out = image;
        }
        self.survived = Some(survived);
    }
}

/// One file of a [`Disk`].
#[derive(Debug, Clone)]
struct DiskFile {
    disk: Disk,
    index: usize,
}

impl DiskFile {
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let index = self.index;
        let offset = usize::try_from(offset).map_err(|_| lost())?;
        let apply = move |state: &mut DiskState| {
            let file = &mut state.files[index];
            if file.live.len() < offset + data.len() {
                file.live.resize(offset + data.len(), 0);
            }
            file.live[offset..offset + data.len()].copy_from_slice(data);
            file.pending.push((offset, data.to_vec()));
        };
        let mut state = self.disk.state();
        let mut applied = false;
        state.io(|state| {
            apply(state);
            applied = true;
        })?;
        if !applied {
            apply(&mut state);
        }
        Ok(())
    }

    fn sync(&self) -> std::io::Result<()> {
        let index = self.index;
        let mut state = self.disk.state();
        state.io(|_| {})?;
        let file = &mut state.files[index];
        let pending = std::mem::take(&mut file.pending);
        file.durable.resize(file.live.len(), 0);
        for (offset, data) in pending {
            file.durable[offset..offset + data.len()].copy_from_slice(&data);
        }
        file.durable.truncate(file.live.len());
        Ok(())
    }
}

impl StorageBackend for DiskFile {
    fn len(&self) -> Result<u64, std::io::Error> {
        let state = self.disk.state();
        if state.survived.is_some() {
            return Err(lost());
        }
        Ok(state.files[self.index].live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let state = self.disk.state();
        if state.survived.is_some() {
            return Err(lost());
        }
        let live = &state.files[self.index].live;
        let offset = usize::try_from(offset).map_err(|_| lost())?;
        let bytes = live
            .get(offset..offset + out.len())
            .ok_or_else(|| std::io::Error::from(ErrorKind::UnexpectedEof))?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let index = self.index;
        let len = usize::try_from(len).map_err(|_| lost())?;
        let mut state = self.disk.state();
        state.io(|_| {})?;
        let file = &mut state.files[index];
        file.live.resize(len, 0);
        // A shrink drops the pending writes past the end; an extension reads as zeros.
        file.pending.retain_mut(|(offset, data)| {
            data.truncate(len.saturating_sub(*offset));
            !data.is_empty()
        });
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        DiskFile::sync(self)
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        DiskFile::write(self, offset, data)
    }
}

impl JournalIo for DiskFile {
    fn write_durably(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        debug_assert_eq!(offset % BLOCK as u64, 0);
        DiskFile::write(self, offset, data)?;
        DiskFile::sync(self)
    }

    fn is_direct(&self) -> bool {
        false
    }
}

/// Opens a store on the disk's two files.
fn open(disk: &Disk) -> Result<Store, StoreError> {
    let db = Database::builder()
        .set_cache_size(1 << 20)
        .create_with_backend(disk.file(REDB))
        .map_err(|e| StoreError::Storage(format!("cannot open the store: {e}")))?;
    let journal = disk.state().files[JOURNAL].live.clone();
    Store::open_parts(
        db,
        Box::new(disk.file(JOURNAL)),
        journal,
        "weir.redb-journal".into(),
        &Options::default(),
    )
}

/// What the workload was told.
#[derive(Default, Debug)]
struct Told {
    /// Bodies of runs answered `Ok`, by run id.
    accepted: BTreeMap<RunId, Vec<u8>>,
    /// Bodies answered with an error while the power was on: they must not be there.
    refused: BTreeSet<Vec<u8>>,
    /// Every body sent.
    sent: BTreeSet<Vec<u8>>,
    /// Runs whose start was answered `Ok`.
    started: BTreeSet<RunId>,
    /// The steps sent for each run.
    steps: BTreeMap<RunId, Vec<StepRecord>>,
    /// The outcome sent for each run.
    finished: BTreeMap<RunId, RunOutcome>,
    token: Option<String>,
    version_stored: bool,
}

fn new_run(body: Vec<u8>) -> NewRun {
    super::tests::new_run("f", &body)
}

fn step(index: u32) -> StepRecord {
    super::tests::step(index, &format!("s{index}"))
}

const PLUGIN: &[u8] = b"\0asm plugin bytes";

/// Drives accepts, starts, step records and finishes (and a token, a flow version and now and
/// then a sync) until the disk loses power.
async fn workload(store: &Store, disk: &Disk, rng: &mut TestRng, told: &mut Told) {
    match store.token_for("f").await {
        Ok(token) => told.token = Some(token),
        Err(_) => return,
    }
    let plugins = vec![PluginBlob {
        hash: "abc".into(),
        bytes: Arc::from(PLUGIN),
    }];
    match store.put_flow_version("f", "v1", "source", plugins).await {
        Ok(()) => told.version_stored = true,
        Err(_) => return,
    }
    let mut counter = 0u64;
    let mut queued: Vec<RunId> = Vec::new();
    let mut running: Vec<RunId> = Vec::new();
    for _ in 0..25 {
        if disk.is_cut() {
            return;
        }
        match rng.random_range(0..10) {
            0..4 => {
                let n = rng.random_range(1..5);
                let mut bodies = Vec::new();
                let accepts = (0..n).map(|_| {
                    counter += 1;
                    // Some bodies span sectors and blocks.
                    let size = if rng.random_bool(0.2) { 3000 } else { 40 };
                    let mut body = format!("body-{counter}-").into_bytes();
                    body.resize(size, b'x' + (counter % 3) as u8);
                    bodies.push(body.clone());
                    told.sent.insert(body.clone());
                    store.accept(new_run(body))
                });
                let answers = futures_util::future::join_all(accepts.collect::<Vec<_>>()).await;
                for (body, answer) in bodies.into_iter().zip(answers) {
                    match answer {
                        Ok(accepted) => {
                            told.accepted.insert(accepted.id, body);
                            queued.push(accepted.id);
                        }
                        Err(_) if !disk.is_cut() => {
                            told.refused.insert(body);
                        }
                        Err(_) => {}
                    }
                }
            }
            4..6 if !queued.is_empty() => {
                let id = queued.remove(rng.random_range(0..queued.len()));
                if store.start_run(id).await.is_ok() {
                    told.started.insert(id);
                    running.push(id);
                }
            }
            6..8 if !running.is_empty() => {
                let id = running[rng.random_range(0..running.len())];
                let steps = told.steps.entry(id).or_default();
                let record = step(steps.len() as u32);
                steps.push(record.clone());
                let _ = store.record_step(id, record).await;
            }
            8 if !running.is_empty() => {
                let id = running.remove(rng.random_range(0..running.len()));
                let outcome = [
                    RunOutcome::Succeeded,
                    RunOutcome::Failed,
                    RunOutcome::Filtered,
                ][rng.random_range(0..3)];
                told.finished.insert(id, outcome);
                let _ = store.finish(id, outcome, None).await;
            }
            9 => {
                let _ = store.sync().await;
            }
            _ => {}
        }
    }
}

/// Every run in the store, newest first.
fn all_runs(store: &Store) -> Result<Vec<super::Run>, String> {
    let mut runs = Vec::new();
    let mut filter = RunFilter {
        limit: RunFilter::MAX_LIMIT,
        ..RunFilter::default()
    };
    loop {
        let page = store
            .list_runs(&filter)
            .map_err(|e| format!("listing runs: {e}"))?;
        runs.extend(page.runs);
        match page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor),
            None => return Ok(runs),
        }
    }
}

/// Opens what survived and checks it against what the workload was told.
async fn check(survived: [Vec<u8>; 2], told: &Told, rng: TestRng) -> Result<(), String> {
    let disk = Disk::new(survived, u64::MAX, Tear::OldOrNew, rng);
    let store = open(&disk).map_err(|e| format!("the store does not open: {e}"))?;
    let runs = all_runs(&store)?;
    let mut seen = BTreeSet::new();
    for run in &runs {
        let request = store
            .get_request(run.id)
            .map_err(|e| format!("run {}: {e}", run.id))?
            .ok_or_else(|| format!("run {} is listed but has no request", run.id))?;
        if !told.sent.contains(&request.body) {
            return Err(format!("run {} holds a body never sent", run.id));
        }
        if told.refused.contains(&request.body) {
            return Err(format!("run {} was refused, yet it is there", run.id));
        }
        if !seen.insert(request.body.clone()) {
            return Err(format!("a webhook is there twice (run {})", run.id));
        }
        if let Some(status) = run.status.is_final().then_some(run.status) {
            let sent = told.finished.get(&run.id).copied().map(RunStatus::from);
            if sent != Some(status) {
                return Err(format!(
                    "run {} ended {status}, but {sent:?} was sent",
                    run.id
                ));
            }
        }
        let steps = store.get_steps(run.id).map_err(|e| e.to_string())?;
        let sent = told
            .steps
            .get(&run.id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if steps.len() > sent.len() || steps[..] != sent[..steps.len()] {
            return Err(format!(
                "run {} holds steps never sent in that order",
                run.id
            ));
        }
    }
    for (id, body) in &told.accepted {
        let request = store
            .get_request(*id)
            .map_err(|e| format!("run {id}: {e}"))?
            .ok_or_else(|| format!("acknowledged run {id} is lost"))?;
        if &request.body != body {
            return Err(format!("acknowledged run {id} holds other bytes"));
        }
    }
    if let Some(token) = &told.token
        && store.token("f").map_err(|e| e.to_string())?.as_ref() != Some(token)
    {
        return Err("the flow's token changed".into());
    }
    if told.version_stored {
        let source = store.flow_version("f", "v1").map_err(|e| e.to_string())?;
        let plugin = store.plugin_blob("abc").map_err(|e| e.to_string())?;
        if source.as_deref() != Some("source") || plugin.as_deref() != Some(PLUGIN) {
            return Err("a stored flow version is lost".into());
        }
    }

    // Every run resumes: the live ones are queued again and run to the end.
    let live = store
        .recover()
        .await
        .map_err(|e| format!("recover failed: {e}"))?;
    for id in &live {
        let (run, request) = store
            .claim_run(*id)
            .await
            .map_err(|e| format!("run {id} does not start again: {e}"))?;
        if told.started.contains(id) && run.attempt < 2 {
            return Err(format!(
                "run {id} started before the cut but its attempt is 1"
            ));
        }
        if !told.sent.contains(&request.body) {
            return Err(format!("run {id} resumes with other bytes"));
        }
        store
            .record_step(*id, step(0))
            .await
            .map_err(|e| format!("run {id}: {e}"))?;
        store
            .finish(*id, RunOutcome::Succeeded, None)
            .await
            .map_err(|e| format!("run {id} does not finish: {e}"))?;
    }
    if store.queue_len().map_err(|e| e.to_string())? != 0 {
        return Err("runs are still live after every one finished".into());
    }
    // New runs get new ids.
    let newest = runs.iter().map(|run| run.id).max();
    let next = store
        .accept(new_run(b"after".to_vec()))
        .await
        .map_err(|e| format!("no accept after the restart: {e}"))?;
    if newest.is_some_and(|newest| next.id <= newest) {
        return Err("a new run's id is not above every stored one".into());
    }
    Ok(())
}

fn rng_for(seed: u64, salt: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&salt.to_le_bytes());
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// How many I/Os a trial's workload takes without a cut, to draw cut points from.
fn ios_without_cut(runtime: &tokio::runtime::Runtime) -> u64 {
    let disk = Disk::new(Default::default(), u64::MAX, Tear::OldOrNew, rng_for(0, 0));
    let store = open(&disk).expect("a store on a disk that never fails");
    let before = disk.ops();
    let mut told = Told::default();
    runtime.block_on(workload(&store, &disk, &mut rng_for(0, 1), &mut told));
    drop(store);
    disk.ops() - before
}

/// One trial: a workload on a fresh store, cut at a point drawn from the seed, then checked.
///
/// The cut comes after the store file was created: creating it is made atomic by a rename
/// (`Store::open_with`), which this disk does not simulate.
fn trial(runtime: &tokio::runtime::Runtime, seed: u64, tear: Tear, ios: u64) -> Result<(), String> {
    let mut rng = rng_for(seed, 0);
    let disk = Disk::new(Default::default(), u64::MAX, tear, rng_for(seed, 1));
    let store = open(&disk).map_err(|e| format!("a new store does not open: {e}"))?;
    let cut_at = rng.random_range(1..=ios);
    disk.arm(cut_at);
    let mut told = Told::default();
    runtime.block_on(workload(&store, &disk, &mut rng, &mut told));
    let survived = disk.cut();
    drop(store);
    runtime
        .block_on(check(survived, &told, rng_for(seed, 2)))
        .map_err(|e| format!("cut at I/O {cut_at} of the workload: {e}"))
}

fn run_trials(tear: Tear, trials: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ios = ios_without_cut(&runtime);
    let (first, count) = match std::env::var("WEIR_POWER_LOSS_SEED") {
        Ok(seed) => (seed.parse().expect("WEIR_POWER_LOSS_SEED is a number"), 1),
        Err(_) => (
            u64::from(std::process::id()) << 32 ^ super::types::to_ms(std::time::SystemTime::now()),
            std::env::var("WEIR_POWER_LOSS_TRIALS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(trials),
        ),
    };
    let started = std::time::Instant::now();
    for seed in first..first + count {
        if let Err(e) = trial(&runtime, seed, tear, ios) {
            panic!(
                "power-loss trial failed ({tear:?}): {e}\nrun it again with WEIR_POWER_LOSS_SEED={seed}"
            );
        }
    }
    eprintln!(
        "{count} power-loss trials ({tear:?}, cut among {ios} I/Os) passed in {:.1?}",
        started.elapsed()
    );
}

#[test]
fn power_loss_with_sectors_left_old_or_new() {
    run_trials(Tear::OldOrNew, 1000);
}

#[test]
fn power_loss_with_garbage_sectors() {
    run_trials(Tear::Garbage, 1000);
}

#[test]
#[ignore = "long: 100,000 cut points per model, for release checks"]
fn power_loss_long() {
    run_trials(Tear::OldOrNew, 100_000);
    run_trials(Tear::Garbage, 100_000);
}
