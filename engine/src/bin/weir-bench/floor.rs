//! The durable floor: the bare warp server that also puts every request body on the disk
//! before it answers, the least any server must do to say "every acknowledged webhook is on
//! disk". It does nothing else: no database, no index, no run, no token; what it measures is
//! what this disk's durable writes cost a server that waits for them.
//!
//! Each write costs as little as a durable write can on Linux: every body that is waiting
//! goes into one `pwrite` (a group commit) to a file opened `O_DIRECT | O_DSYNC` (returning
//! once the bytes are on the disk, past its write-back cache), over blocks that were written
//! before (zeros written at start), so that no write changes the file's size or extents and
//! none needs the file system's own journal. Where the file system refuses `O_DIRECT`, the
//! write goes through the page cache and `fdatasync`.
//!
//! Who writes is left, and [`Writers`] has three ways: one writer thread (the floor that
//! `weir-bench webhook` compares Weir with); four writer threads taking turns, so that writes
//! are in flight together, which this disk overlaps (`weir-bench disk`); and no writer thread,
//! the request that finds no write going on writing every waiting body on its own runtime
//! thread, so that no thread is woken to write. `weir-bench floor` measures the three against
//! the bare server: what a server that keeps every acknowledged webhook on this disk can
//! answer, whichever way it writes.
//!
//! It shares no code with Weir's store (its own `open_direct`, its own aligned buffer), so that
//! a change to Weir's journal cannot move the baseline Weir is compared with.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use tokio::sync::oneshot;

/// The file's size; writes go round it.
const FILE_BYTES: u64 = 64 << 20;
const BLOCK: usize = 4096;
/// At most this much of bodies goes into one write.
const MAX_WRITE: usize = 1 << 20;

type Waiting = (Bytes, oneshot::Sender<bool>);

/// Who writes the bodies to the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Writers {
    /// One writer thread takes every waiting body and writes them in one write.
    One,
    /// Four writer threads take turns at the waiting bodies, so that up to four writes are in
    /// flight together.
    Four,
    /// No writer thread: the request that finds no write going on writes every waiting body
    /// itself, on its runtime thread, then again while more wait; the others wait for it.
    Inline,
}

impl Writers {
    fn label(self) -> &'static str {
        match self {
            Self::One => "1 writer thread",
            Self::Four => "4 writer threads",
            Self::Inline => "no writer thread",
        }
    }
}

/// Puts bodies on the disk; cloned into each request's handler.
#[derive(Clone)]
pub struct DurableLog {
    hand: Hand,
    stats: Arc<Stats>,
}

#[derive(Clone)]
enum Hand {
    /// To the writer threads.
    Threads(Sender<Waiting>),
    /// Written by the requests themselves.
    Inline(Arc<InlineLog>),
}

/// The file and where the next write goes, for writers that share them.
struct Target {
    file: File,
    direct: bool,
    /// The next write's offset.
    offset: Mutex<u64>,
}

impl Target {
    /// Reserves `len` bytes (whole blocks) for one write; writes go round the file.
    fn reserve(&self, len: usize) -> u64 {
        let mut next = lock(&self.offset);
        if *next + len as u64 > FILE_BYTES {
            *next = 0;
        }
        let at = *next;
        *next += len as u64;
        at
    }
}

/// [`Writers::Inline`]: the bodies waiting, and whether a request is writing.
struct InlineLog {
    target: Target,
    waiting: Mutex<(Vec<Waiting>, bool)>,
    buffer: Mutex<Aligned>,
}

/// What the writer did so far (served as JSON on `GET /stats`).
#[derive(Default)]
struct Stats {
    writes: AtomicU64,
    bodies: AtomicU64,
    bytes: AtomicU64,
    write_us: AtomicU64,
}

/// What a floor's writer did between two readings of its `GET /stats`.
pub struct WritesBetween {
    pub writes: f64,
    pub kib_each: f64,
    pub bodies_each: f64,
    pub ms_each: f64,
}

impl WritesBetween {
    pub fn new(before: &serde_json::Value, after: &serde_json::Value) -> Self {
        let delta =
            |key: &str| after[key].as_f64().unwrap_or(0.0) - before[key].as_f64().unwrap_or(0.0);
        let writes = delta("writes");
        let per = writes.max(1.0);
        Self {
            writes,
            kib_each: delta("bytes") / per / 1024.0,
            bodies_each: delta("bodies") / per,
            ms_each: delta("write_us") / per / 1e3,
        }
    }
}

impl DurableLog {
    /// Creates the file in `dir`, fills it with zeros, and starts the writer threads, if any.
    pub fn start(dir: &Path, writers: Writers) -> anyhow::Result<(Self, &'static str)> {
        let path = dir.join("floor.log");
        let file = zero_filled(&path, FILE_BYTES)?;
        let direct = open_direct(&path);
        let how = if direct.is_some() {
            "direct I/O"
        } else {
            "page cache and fdatasync"
        };
        let (file, direct) = match direct {
            Some(direct) => (direct, true),
            None => (file, false),
        };
        let target = Target {
            file,
            direct,
            offset: Mutex::new(0),
        };
        let stats = Arc::new(Stats::default());
        let threads = match writers {
            Writers::One => 1,
            Writers::Four => 4,
            Writers::Inline => {
                let log = InlineLog {
                    target,
                    waiting: Mutex::new((Vec::new(), false)),
                    buffer: Mutex::new(Aligned::new(MAX_WRITE + 2 * BLOCK)),
                };
                let hand = Hand::Inline(Arc::new(log));
                return Ok((Self { hand, stats }, how));
            }
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Arc::new((Mutex::new(rx), target));
        for _ in 0..threads {
            let shared = Arc::clone(&shared);
            let counting = Arc::clone(&stats);
            std::thread::Builder::new()
                .name("floor-writer".into())
                .spawn(move || write_loop(&shared.0, &shared.1, &counting))?;
        }
        Ok((
            Self {
                hand: Hand::Threads(tx),
                stats,
            },
            how,
        ))
    }

    /// The writer's counters: `writes`, `bodies`, `bytes`, `write_us` (time in the writes).
    pub fn stats(&self) -> serde_json::Value {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        serde_json::json!({
            "writes": get(&self.stats.writes),
            "bodies": get(&self.stats.bodies),
            "bytes": get(&self.stats.bytes),
            "write_us": get(&self.stats.write_us),
        })
    }

    /// Returns once `body` is on the disk; false if it could not be written.
    pub async fn write(&self, body: Bytes) -> bool {
        let (done, wait) = oneshot::channel();
        match &self.hand {
            Hand::Threads(tx) => {
                if tx.send((body, done)).is_err() {
                    return false;
                }
            }
            Hand::Inline(log) => log.write(body, done, &self.stats),
        }
        wait.await.unwrap_or(false)
    }
}

impl InlineLog {
    /// Queues `body`; if no request is writing, writes every waiting body (this one
    /// included), on this thread, until none waits.
    fn write(&self, body: Bytes, done: oneshot::Sender<bool>, stats: &Stats) {
        {
            let mut waiting = lock(&self.waiting);
            waiting.0.push((body, done));
            if std::mem::replace(&mut waiting.1, true) {
                return;
            }
        }
        let mut buffer = lock(&self.buffer);
        let mut batch = Vec::new();
        loop {
            {
                let mut waiting = lock(&self.waiting);
                if waiting.0.is_empty() {
                    waiting.1 = false;
                    return;
                }
                let mut len = 0;
                let take = waiting
                    .0
                    .iter()
                    .take_while(|(body, _)| {
                        len += 4 + body.len();
                        len <= MAX_WRITE
                    })
                    .count()
                    .max(1);
                batch.extend(waiting.0.drain(..take));
            }
            write_batch(&self.target, buffer.as_mut(), &mut batch, stats);
        }
    }
}

/// `mutex` locked; a writer that panicked left nothing half-done that the others could see.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `path` opened for writes that return once the bytes are on the disk and skip the page
/// cache (`O_DIRECT | O_DSYNC`); `None` where the file system refuses it, and off Linux.
#[cfg(target_os = "linux")]
pub fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(path)
        .ok()
}

#[cfg(not(target_os = "linux"))]
pub fn open_direct(_path: &Path) -> Option<File> {
    None
}

/// A writer thread. Each turn: every waiting body (up to [`MAX_WRITE`]) in one write, then
/// the senders are answered. With several threads, each holds the channel only while it takes
/// its batch, so that the next can take the next batch while this one writes.
fn write_loop(rx: &Mutex<Receiver<Waiting>>, target: &Target, stats: &Stats) {
    let mut buffer = Aligned::new(MAX_WRITE + 2 * BLOCK);
    let mut batch: Vec<Waiting> = Vec::new();
    loop {
        {
            let rx = lock(rx);
            let Ok(first) = rx.recv() else { return };
            let mut len = 4 + first.0.len();
            batch.push(first);
            while len < MAX_WRITE {
                match rx.try_recv() {
                    Ok(next) => {
                        len += 4 + next.0.len();
                        batch.push(next);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
        }
        write_batch(target, buffer.as_mut(), &mut batch, stats);
    }
}

/// Writes `batch`, each body behind its length, padded with zeros to whole blocks, in one
/// write at the next offset; then answers its senders (false if it could not be written).
fn write_batch(target: &Target, aligned: &mut [u8], batch: &mut Vec<Waiting>, stats: &Stats) {
    let mut end = 0;
    let mut ok = true;
    for (body, _) in batch.iter() {
        let record = 4 + body.len();
        if end + record > aligned.len() - BLOCK {
            // A body larger than a write: the floor's payloads never are.
            ok = false;
            break;
        }
        aligned[end..end + 4].copy_from_slice(&(body.len() as u32).to_le_bytes());
        aligned[end + 4..end + record].copy_from_slice(body);
        end += record;
    }
    let padded = end.div_ceil(BLOCK) * BLOCK;
    aligned[end..padded].fill(0);
    if ok {
        let offset = target.reserve(padded);
        let started = Instant::now();
        ok = target.file.write_all_at(&aligned[..padded], offset).is_ok()
            && (target.direct || target.file.sync_data().is_ok());
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        stats.writes.fetch_add(1, Ordering::Relaxed);
        stats
            .bodies
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats.bytes.fetch_add(padded as u64, Ordering::Relaxed);
        stats.write_us.fetch_add(micros, Ordering::Relaxed);
    }
    for (_, done) in batch.drain(..) {
        let _ = done.send(ok);
    }
}

/// Creates `path` (or empties it) and writes `len` bytes of zeros through it, synced: blocks a
/// later write can overwrite without changing the file's size or extents.
pub fn zero_filled(path: &Path, len: u64) -> anyhow::Result<File> {
    let zeros = vec![0u8; 1 << 20];
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut at = 0;
    while at < len {
        let n = zeros.len().min(usize::try_from(len - at)?);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_all()?;
    Ok(file)
}

/// A zeroed buffer whose start is block-aligned, as direct I/O wants: one allocation, used
/// from its first aligned byte.
pub struct Aligned {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    pub fn new(len: usize) -> Self {
        let bytes = vec![0u8; len + BLOCK];
        let start = bytes.as_ptr().align_offset(BLOCK).min(BLOCK);
        Self { bytes, start, len }
    }

    pub fn as_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + self.len]
    }
}

/// `weir-bench floor`: the bare server and the floor written each way ([`Writers`]), each in
/// a process of its own, one after the other in each round at concurrency 16 and 64 (so
/// that the noise of a shared machine falls on all); then the median of the rounds.
pub fn bench(rounds: usize) -> anyhow::Result<()> {
    use crate::webhook::{get_json, load, median, start_bare};

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let (bare, _) = start_bare(None)?;
        let mut floors = Vec::new();
        for &writers in <Writers as clap::ValueEnum>::value_variants() {
            let dir = tempfile::tempdir()?;
            let (server, how) = start_bare(Some((dir.path(), writers)))?;
            floors.push((writers, server, how.unwrap_or_default(), dir));
        }
        println!(
            "durable floor benchmark: the bare server, then the floor with each writer ({}), \
             {} s per phase, {rounds} round(s) per concurrency",
            floors[0].2,
            crate::webhook::PHASE.as_secs()
        );
        let mut summary = Vec::new();
        for concurrency in [16, 64] {
            // Per round: the bare server's rate, then each floor's.
            let mut measured: Vec<(f64, Vec<f64>)> = Vec::new();
            for round in 1..=rounds {
                println!("-- c={concurrency}, round {round} of {rounds}");
                println!(
                    "{:<26} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}",
                    "", "req/s", "p50 ms", "p99 ms", "/ bare", "writes", "bodies", "ms each"
                );
                let base = load(bare.addr, "/hook", concurrency).await?;
                println!(
                    "{:<26} {:>9.0} {:>7.2} {:>7.2}",
                    "bare warp",
                    base.rps(),
                    base.percentile_ms(0.5),
                    base.percentile_ms(0.99)
                );
                // Each round starts with the next floor, so that none is always measured first.
                let mut rates = vec![0.0; floors.len()];
                for turn in 0..floors.len() {
                    let i = (turn + round - 1) % floors.len();
                    let (writers, server, ..) = &floors[i];
                    let before = get_json(server.addr, "/stats").await?;
                    let durable = load(server.addr, "/hook", concurrency).await?;
                    let after = get_json(server.addr, "/stats").await?;
                    let done = WritesBetween::new(&before, &after);
                    println!(
                        "{:<26} {:>9.0} {:>7.2} {:>7.2} {:>7.2} {:>7.0} {:>7.1} {:>8.2}",
                        format!("floor, {}", writers.label()),
                        durable.rps(),
                        durable.percentile_ms(0.5),
                        durable.percentile_ms(0.99),
                        durable.rps() / base.rps(),
                        done.writes,
                        done.bodies_each,
                        done.ms_each,
                    );
                    if durable.refused > 0 {
                        println!("  {} answers were not 2xx", durable.refused);
                    }
                    rates[i] = durable.rps();
                }
                measured.push((base.rps(), rates));
            }
            summary.push((concurrency, measured));
        }
        println!("== floor / bare, median of {rounds} round(s) (lowest–highest)");
        for (concurrency, measured) in &summary {
            let (bare, _, _) = median(measured.iter().map(|(bare, _)| *bare));
            let mut best = (0.0, "");
            let mut line = format!("c={concurrency}: bare {bare:.0} req/s");
            for (i, (writers, ..)) in floors.iter().enumerate() {
                let (ratio, lo, hi) = median(measured.iter().map(|(bare, rates)| rates[i] / bare));
                line += &format!("; {} {ratio:.2} ({lo:.2}–{hi:.2})", writers.label());
                if ratio > best.0 {
                    best = (ratio, writers.label());
                }
            }
            println!("{line}");
            println!(
                "     best: {:.2} of the bare server ({}); Weir's target is 0.5",
                best.0, best.1
            );
        }
        anyhow::Ok(())
    })
}
