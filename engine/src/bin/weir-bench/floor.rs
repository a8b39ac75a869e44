//! The durable floor: the bare warp server that also puts every request body on the disk
//! before it answers, the least any server must do to say "every acknowledged webhook is on
//! disk". It does nothing else: no database, no index, no run, no token; what it measures is
//! what this disk's durable writes cost a server that waits for them.
//!
//! Each write costs as little as a durable write can on Linux: one writer thread takes every
//! body that is waiting (a group commit) and writes them in one `pwrite` to a file opened
//! `O_DIRECT | O_DSYNC` (returning once the bytes are on the disk, past its write-back cache),
//! over blocks that were written before (zeros written at start), so that no write changes the
//! file's size or extents and none needs the file system's own journal. Where the file system
//! refuses `O_DIRECT`, the write goes through the page cache and `fdatasync`. It is not a hard
//! ceiling: a writer that never waited between writes could answer more (README, Benchmarks).
//!
//! It shares no code with Weir's store (its own `open_direct`, its own aligned buffer), so that
//! a change to Weir's journal cannot move the baseline Weir is compared with.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
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

/// Hands bodies to the writer thread; cloned into each request's handler.
#[derive(Clone)]
pub struct DurableLog {
    tx: Sender<Waiting>,
    stats: Arc<Stats>,
}

/// What the writer did so far (served as JSON on `GET /stats`).
#[derive(Default)]
struct Stats {
    writes: AtomicU64,
    bodies: AtomicU64,
    bytes: AtomicU64,
    write_us: AtomicU64,
}

impl DurableLog {
    /// Creates the file in `dir`, fills it with zeros, and starts the writer thread.
    pub fn start(dir: &Path) -> anyhow::Result<(Self, &'static str)> {
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
        let (tx, rx) = std::sync::mpsc::channel();
        let stats = Arc::new(Stats::default());
        let counting = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("floor-writer".into())
            .spawn(move || write_loop(&file, direct, &rx, &counting))?;
        Ok((Self { tx, stats }, how))
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
        if self.tx.send((body, done)).is_err() {
            return false;
        }
        wait.await.unwrap_or(false)
    }
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

/// Each turn: every waiting body (up to [`MAX_WRITE`]), each behind its length, padded with
/// zeros to whole blocks, in one write at the next offset; then the senders are answered.
///
/// One writer, not several: with four writer threads taking turns at the channel (each write
/// in flight beside the others', which this disk overlaps, see `weir-bench disk`), the floor
/// did worse on 2 cores: at concurrency 16, 28.3–30.6k against 31.8–38.6k/s, batches of 3.9
/// bodies instead of 5.8 and each write slower; at 64, 51.8–54.1k against 46.2–60.0k
/// (2026-11-29, two alternating pairs).
fn write_loop(file: &File, direct: bool, rx: &Receiver<Waiting>, stats: &Stats) {
    let mut buffer = Aligned::new(MAX_WRITE + 2 * BLOCK);
    let aligned = buffer.as_mut();
    let mut offset: u64 = 0;
    let mut batch: Vec<Waiting> = Vec::new();
    while let Ok(first) = rx.recv() {
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
        let mut end = 0;
        let mut ok = true;
        for (body, _) in &batch {
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
        if offset + padded as u64 > FILE_BYTES {
            offset = 0;
        }
        if ok {
            let started = Instant::now();
            ok = file.write_all_at(&aligned[..padded], offset).is_ok()
                && (direct || file.sync_data().is_ok());
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            stats.writes.fetch_add(1, Ordering::Relaxed);
            stats
                .bodies
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            stats.bytes.fetch_add(padded as u64, Ordering::Relaxed);
            stats.write_us.fetch_add(micros, Ordering::Relaxed);
        }
        offset += padded as u64;
        for (_, done) in batch.drain(..) {
            let _ = done.send(ok);
        }
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
