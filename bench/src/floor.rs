//! The durable floor: the bare warp server that also puts every request body on the disk
//! before it answers, the least any server must do to say "every acknowledged webhook is on
//! disk". It does nothing else: no database, no index, no run, no token; what it measures is
//! what this disk's durable writes cost a server that waits for them.
//!
//! Each write costs as little as a durable write can on Linux: one writer thread puts every
//! body that is waiting into one `pwrite` (a group commit) to a file opened
//! `O_DIRECT | O_DSYNC` (returning once the bytes are on the disk, past its write-back cache),
//! over blocks that were written before (zeros written at start), so that no write changes the
//! file's size or extents and none needs the file system's own journal. Where the file system
//! refuses `O_DIRECT`, the write goes through the page cache and `fdatasync`.
//!
//! It shares no code with Weir's store (its own `open_direct`, its own aligned buffer), so that
//! a change to Weir's journal cannot move the baseline Weir is compared with.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender};

use anyhow::Context as _;
use bytes::Bytes;
use tokio::sync::oneshot;

/// The file's size; writes go round it.
const FILE_BYTES: u64 = 64 << 20;
const BLOCK: usize = 4096;
/// At most this much of bodies goes into one write.
const MAX_WRITE: usize = 1 << 20;

/// A body waiting for the writer, and who to tell once it is written (false if it could not be).
type Waiting = (Bytes, oneshot::Sender<bool>);

/// Puts bodies on the disk; cloned into each request's handler.
#[derive(Clone)]
pub struct DurableLog {
    writer: Sender<Waiting>,
}

impl DurableLog {
    /// Creates the file in `dir`, fills it with zeros, and starts the writer thread. Also says
    /// how the writes reach the disk.
    pub fn start(dir: &Path) -> anyhow::Result<(Self, &'static str)> {
        let path = dir.join("floor.log");
        let zeroed = zero_filled(&path, FILE_BYTES)?;
        let (file, direct) = match open_direct(&path) {
            Some(direct) => (direct, true),
            None => (zeroed, false),
        };
        let how = if direct {
            "direct I/O"
        } else {
            "page cache and fdatasync"
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("floor-writer".into())
            .spawn(move || write_loop(&rx, &file, direct))?;
        Ok((Self { writer: tx }, how))
    }

    /// Returns once `body` is on the disk; false if it could not be written.
    pub async fn write(&self, body: Bytes) -> bool {
        let (done, wait) = oneshot::channel();
        if self.writer.send((body, done)).is_err() {
            return false;
        }
        wait.await.unwrap_or(false)
    }
}

/// `path` opened for writes that return once the bytes are on the disk and skip the page
/// cache (`O_DIRECT | O_DSYNC`); `None` where the file system refuses it, and off Linux.
#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(path)
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> Option<File> {
    None
}

/// The writer thread. Each turn: every waiting body (up to [`MAX_WRITE`]) behind its length,
/// padded with zeros to whole blocks, in one write at the next offset; then the senders are
/// answered. Ends when every [`DurableLog`] is dropped.
fn write_loop(rx: &Receiver<Waiting>, file: &File, direct: bool) {
    let mut aligned = Aligned::new(MAX_WRITE + 2 * BLOCK);
    let buffer = aligned.as_mut();
    let mut offset = 0u64;
    let mut batch: Vec<Waiting> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut len = 4 + first.0.len();
        batch.push(first);
        while len < MAX_WRITE {
            let Ok(next) = rx.try_recv() else { break };
            len += 4 + next.0.len();
            batch.push(next);
        }
        let mut end = 0;
        let mut ok = true;
        for (body, _) in &batch {
            let record = 4 + body.len();
            if end + record > buffer.len() - BLOCK {
                // A body larger than a write: the benchmark's payloads never are.
                ok = false;
                break;
            }
            buffer[end..end + 4].copy_from_slice(&(body.len() as u32).to_le_bytes());
            buffer[end + 4..end + record].copy_from_slice(body);
            end += record;
        }
        let padded = end.div_ceil(BLOCK) * BLOCK;
        buffer[end..padded].fill(0);
        if ok {
            if offset + padded as u64 > FILE_BYTES {
                offset = 0;
            }
            ok = file.write_all_at(&buffer[..padded], offset).is_ok()
                && (direct || file.sync_data().is_ok());
            offset += padded as u64;
        }
        for (_, done) in batch.drain(..) {
            let _ = done.send(ok);
        }
    }
}

/// Creates `path` (or empties it) and writes `len` bytes of zeros through it, synced: blocks a
/// later write can overwrite without changing the file's size or extents.
fn zero_filled(path: &Path, len: u64) -> anyhow::Result<File> {
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
struct Aligned {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let bytes = vec![0u8; len + BLOCK];
        let start = bytes.as_ptr().align_offset(BLOCK).min(BLOCK);
        Self { bytes, start, len }
    }

    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + self.len]
    }
}
