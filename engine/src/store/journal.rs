//! The journal: a redo log that makes the writer's commits durable with one synced sequential
//! write, instead of redb's fsync of every page a commit touched.
//!
//! Why: a redb commit writes 10 to 40 pages scattered over the file, and syncing scattered
//! pages costs several times what the same bytes cost written and synced in one piece. With
//! the journal, the writer commits to redb without an fsync (`Durability::None`, visible to
//! readers at once), then appends the batch's redo record to the `Journal` and syncs it (by
//! direct I/O where the file system has it, see `Journal`). The callers of a batch are
//! answered once its record is synced. The writer thread does this itself: handing the record
//! to a thread of its own, so that the writer could apply the next batch meanwhile, costs a
//! wake-up per batch, more than the overlap wins on a machine with few busy cores. Handing the write to an io_uring does not
//! avoid that wake-up: on a disk with a write-back cache and no FUA the kernel runs an
//! `O_DSYNC` write on a worker thread. Nor do several frames in flight at once: they make
//! smaller batches. The measurements behind these choices are in BENCHMARKS.md.
//!
//! A checkpoint is an ordinary durable redb commit. It makes every record before it redundant,
//! so the journal then starts again at its beginning. The writer checkpoints when it is idle,
//! when the journal passes `CHECKPOINT_AFTER` bytes, and for the rare writes that are not
//! journaled (tokens, flow versions, recovery).
//!
//! The file is a sequence of frames: `len: u32`, `crc32: u32` (of the rest), `seq: u64`, then
//! `len` bytes of entries. Each frame holds one redb commit; `seq` counts them, and the redb
//! file keeps the `seq` of its last commit in `META` (`store::tables`). At open, the
//! frames that follow one another from the start of the file, with valid checksums and
//! consecutive `seq`, are read; those after the store's `seq` are applied again. A torn last
//! frame fails its checksum; frames left from before the journal restarted have smaller
//! `seq` and end the chain.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::error::StoreError;
use super::types::{RunId, RunOutcome};

/// Once the journal holds this much, the writer checkpoints so it can start again.
pub(super) const CHECKPOINT_AFTER: u64 = 64 << 20;

/// The [`META`](super::tables::META) key holding the `seq` of the store's last commit.
pub(super) const SEQ_KEY: &str = "journal_seq";

const HEADER: usize = 16;

/// The journal next to a store file: `weir.redb` → `weir.redb-journal`.
pub fn path_for(store: &Path) -> PathBuf {
    let mut name = store.file_name().unwrap_or_default().to_os_string();
    name.push("-journal");
    store.with_file_name(name)
}

/// One change, as the writer applied it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Entry {
    Accept {
        id: RunId,
        flow_id: String,
        dedupe_key: Option<String>,
        bytes: Vec<u8>,
    },
    Start {
        id: RunId,
        at_ms: u64,
    },
    Step {
        id: RunId,
        index: u32,
        step_id: String,
        bytes: Vec<u8>,
    },
    Finish {
        id: RunId,
        outcome: RunOutcome,
        error: Option<String>,
        at_ms: u64,
    },
}

/// The entries of one commit, encoded as they are applied.
#[derive(Default)]
pub(super) struct Redo {
    bytes: Vec<u8>,
}

impl Redo {
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn id(&mut self, tag: u8, id: RunId) {
        self.bytes.push(tag);
        self.bytes.extend_from_slice(&id.as_u128().to_le_bytes());
    }

    fn blob(&mut self, value: &[u8]) {
        // Bodies are capped far below 4 GiB (max_body), as are step records.
        let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(&value[..len as usize]);
    }

    fn optional(&mut self, value: Option<&str>) {
        match value {
            None => self.bytes.push(0),
            Some(value) => {
                self.bytes.push(1);
                self.blob(value.as_bytes());
            }
        }
    }

    pub fn accept(&mut self, id: RunId, flow_id: &str, dedupe_key: Option<&str>, bytes: &[u8]) {
        self.id(1, id);
        self.blob(flow_id.as_bytes());
        self.optional(dedupe_key);
        self.blob(bytes);
    }

    pub fn start(&mut self, id: RunId, at_ms: u64) {
        self.id(2, id);
        self.bytes.extend_from_slice(&at_ms.to_le_bytes());
    }

    pub fn step(&mut self, id: RunId, index: u32, step_id: &str, bytes: &[u8]) {
        self.id(3, id);
        self.bytes.extend_from_slice(&index.to_le_bytes());
        self.blob(step_id.as_bytes());
        self.blob(bytes);
    }

    pub fn finish(&mut self, id: RunId, outcome: RunOutcome, error: Option<&str>, at_ms: u64) {
        self.id(4, id);
        self.bytes.push(match outcome {
            RunOutcome::Succeeded => 0,
            RunOutcome::Failed => 1,
            RunOutcome::Filtered => 2,
        });
        self.optional(error);
        self.bytes.extend_from_slice(&at_ms.to_le_bytes());
    }
}

/// Reads entries back; every read checks its bounds, since the frame's checksum is the only
/// thing vouching for it.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], StoreError> {
        if self.0.len() < n {
            return Err(StoreError::Corrupt("a journal entry is cut short".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        let mut raw = [0; 4];
        raw.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(raw))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        let mut raw = [0; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }

    fn id(&mut self) -> Result<RunId, StoreError> {
        let mut raw = [0; 16];
        raw.copy_from_slice(self.take(16)?);
        Ok(RunId::from(u128::from_le_bytes(raw)))
    }

    fn blob(&mut self) -> Result<Vec<u8>, StoreError> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }

    fn string(&mut self) -> Result<String, StoreError> {
        String::from_utf8(self.blob()?)
            .map_err(|_| StoreError::Corrupt("a journal entry holds invalid UTF-8".into()))
    }

    fn optional(&mut self) -> Result<Option<String>, StoreError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            other => Err(StoreError::Corrupt(format!(
                "a journal entry has option tag {other}"
            ))),
        }
    }

    fn entry(&mut self) -> Result<Entry, StoreError> {
        let tag = self.u8()?;
        let id = self.id()?;
        Ok(match tag {
            1 => Entry::Accept {
                id,
                flow_id: self.string()?,
                dedupe_key: self.optional()?,
                bytes: self.blob()?,
            },
            2 => Entry::Start {
                id,
                at_ms: self.u64()?,
            },
            3 => Entry::Step {
                id,
                index: self.u32()?,
                step_id: self.string()?,
                bytes: self.blob()?,
            },
            4 => Entry::Finish {
                id,
                outcome: match self.u8()? {
                    0 => RunOutcome::Succeeded,
                    1 => RunOutcome::Failed,
                    2 => RunOutcome::Filtered,
                    other => {
                        return Err(StoreError::Corrupt(format!(
                            "a journal entry has outcome {other}"
                        )));
                    }
                },
                error: self.optional()?,
                at_ms: self.u64()?,
            },
            other => {
                return Err(StoreError::Corrupt(format!(
                    "a journal entry has kind {other}"
                )));
            }
        })
    }
}

/// The entries of a frame's payload.
pub(super) fn decode(payload: &[u8]) -> Result<Vec<Entry>, StoreError> {
    let mut cursor = Cursor(payload);
    let mut entries = Vec::new();
    while !cursor.0.is_empty() {
        entries.push(cursor.entry()?);
    }
    Ok(entries)
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Appends one frame to `out`.
pub(super) fn frame(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(seq, payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

/// The frames that follow one another from the start of `data`: `(seq, payload)`.
pub(super) fn frames(data: &[u8]) -> Vec<(u64, &[u8])> {
    let mut frames = Vec::new();
    let mut at = 0;
    let mut last: Option<u64> = None;
    while data.len() - at >= HEADER {
        let word = |from: usize| {
            let mut raw = [0; 4];
            raw.copy_from_slice(&data[at + from..at + from + 4]);
            u32::from_le_bytes(raw)
        };
        let len = word(0) as usize;
        let crc = word(4);
        let mut raw = [0; 8];
        raw.copy_from_slice(&data[at + 8..at + 16]);
        let seq = u64::from_le_bytes(raw);
        let Some(payload) = data.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if checksum(seq, payload) != crc || last.is_some_and(|last| seq != last + 1) {
            break;
        }
        frames.push((seq, payload));
        last = Some(seq);
        at += HEADER + len;
    }
    frames
}

/// Opens (creating if needed) the journal and reads its whole content.
pub(super) fn open(path: &Path) -> Result<(File, Vec<u8>), StoreError> {
    let io = |e: std::io::Error| {
        StoreError::Storage(format!("cannot open the journal {}: {e}", path.display()))
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).map_err(io)?;
    Ok((file, data))
}

/// Opens the journal again for writing frames straight to the disk (`O_DIRECT | O_DSYNC`);
/// `None` where the file system refuses it (tmpfs, some network file systems), and on systems
/// other than Linux.
#[cfg(target_os = "linux")]
pub(super) fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(path)
        .inspect_err(|e| {
            tracing::debug!(journal = %path.display(), error = %e, "no direct I/O for the journal; it is written through the page cache and fdatasync'd");
        })
        .ok()
}

#[cfg(not(target_os = "linux"))]
pub(super) fn open_direct(_path: &Path) -> Option<File> {
    None
}

/// What a direct write is aligned to: offset, length and memory. Disks have 512-byte or
/// 4 KiB logical blocks; 4 KiB suits both.
const BLOCK: usize = 4096;

/// A function that answers one caller once its writes are durable, or with the error.
pub(super) type Pending = Box<dyn FnOnce(Option<StoreError>) + Send>;

/// The journal file, written by the writer thread.
///
/// Frames go to the disk by direct I/O where the file system allows it: one `pwrite` through
/// a file opened `O_DIRECT | O_DSYNC` returns once the frame is on the disk, without copying
/// it into the page cache and writing it back from there as `fdatasync` does: the journal's
/// write then takes the writer thread almost no CPU (BENCHMARKS.md).
///
/// A direct write covers whole [`BLOCK`]s, so the block the last frame ended in is written
/// again, with the same bytes, in front of the next frame, and the rest of the new frame's
/// last block is zeros. A torn write leaves each sector old or new, and the old bytes of a
/// rewritten block are the new ones, so no frame already answered can be damaged. Elsewhere
/// a frame is written through the page cache and `fdatasync`'d.
pub(super) struct Journal {
    file: File,
    /// The same file opened `O_DIRECT | O_DSYNC`; `None`: written through the page cache.
    direct: Option<File>,
    /// The bytes from the start of the block that `offset` is in up to `offset`: what a
    /// direct write rewrites in front of the next frame.
    tail: Vec<u8>,
    path: PathBuf,
    /// Where the next frame goes.
    offset: u64,
    /// The journal could not be written: the writer makes every commit durable in redb.
    pub failed: bool,
    /// The journal passed [`CHECKPOINT_AFTER`]: the next commit should be a checkpoint.
    pub want_checkpoint: bool,
    counters: Arc<super::writer::Counters>,
    buffer: Vec<u8>,
}

impl Journal {
    /// A journal whose next frame goes at its beginning (whatever it holds was applied at
    /// open and is checkpointed).
    pub fn new(file: File, path: PathBuf, counters: Arc<super::writer::Counters>) -> Self {
        Journal {
            file,
            direct: None,
            tail: Vec::new(),
            path,
            offset: 0,
            failed: false,
            want_checkpoint: false,
            counters,
            buffer: Vec::new(),
        }
    }

    /// Frames are written by direct I/O through `direct`, [`open_direct`]'s file.
    pub fn with_direct(mut self, direct: Option<File>) -> Self {
        self.direct = direct;
        self.counters
            .journal_direct
            .store(self.direct.is_some(), Ordering::Relaxed);
        self
    }

    /// Appends one commit's frame and syncs it. `Ok` once it, and every frame before it, is
    /// on disk. A failure is reported once, and the journal is not written again.
    pub fn append(&mut self, seq: u64, payload: &[u8]) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::Storage(
                "the journal failed earlier; the store is read-only until restarted".into(),
            ));
        }
        if payload.is_empty() {
            return Ok(());
        }
        // The buffer holds [padding to a BLOCK-aligned address][tail][frame][zeros to the
        // end of a block], so that the bytes from the tail on can be written directly.
        let framed = HEADER + payload.len();
        self.buffer.clear();
        self.buffer
            .reserve(BLOCK + self.tail.len() + framed + BLOCK);
        let padding = self.buffer.as_ptr().align_offset(BLOCK);
        if padding >= BLOCK {
            // Not expected for bytes; without an aligned address there is no direct write.
            self.direct = None;
            self.counters.journal_direct.store(false, Ordering::Relaxed);
        }
        let start = if self.direct.is_some() { padding } else { 0 };
        self.buffer.resize(start, 0);
        self.buffer.extend_from_slice(&self.tail);
        let at = self.buffer.len();
        frame(&mut self.buffer, seq, payload);
        let used = self.buffer.len() - start;
        self.buffer.resize(start + used.next_multiple_of(BLOCK), 0);
        let started = std::time::Instant::now();
        let direct = self.direct.as_ref().map(|direct| {
            direct.write_all_at(&self.buffer[start..], self.offset - self.tail.len() as u64)
        });
        let written = match direct {
            Some(Err(e)) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::warn!(journal = %self.path.display(), error = %e, "direct I/O refused; the journal is written through the page cache from now on");
                self.direct = None;
                self.counters.journal_direct.store(false, Ordering::Relaxed);
                self.write_buffered(at..at + framed)
            }
            Some(result) => result,
            None => self.write_buffered(at..at + framed),
        };
        match written {
            Ok(()) => {
                let counters = &self.counters;
                counters.journal_syncs.fetch_add(1, Ordering::Relaxed);
                counters
                    .journal_bytes
                    .fetch_add(framed as u64, Ordering::Relaxed);
                // The new tail: what of the frame's last block the frame and the tail filled.
                let end = start + used;
                self.tail.clear();
                self.tail
                    .extend_from_slice(&self.buffer[end - used % BLOCK..end]);
                counters.journal_sync_us.fetch_add(
                    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                self.offset += framed as u64;
                if self.offset >= CHECKPOINT_AFTER {
                    self.want_checkpoint = true;
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(journal = %self.path.display(), error = %e, "writing the journal failed; commits now go to redb with an fsync each");
                self.failed = true;
                Err(StoreError::Storage(format!(
                    "writing the journal {}: {e}",
                    self.path.display()
                )))
            }
        }
    }

    /// Writes `range` of the buffer at `offset` through the page cache and syncs it.
    fn write_buffered(&self, range: std::ops::Range<usize>) -> std::io::Result<()> {
        self.file
            .write_all_at(&self.buffer[range], self.offset)
            .and_then(|()| self.file.sync_data())
    }

    /// redb holds everything up to here durably: the journal starts again at its beginning.
    pub fn checkpointed(&mut self) {
        self.offset = 0;
        self.tail.clear();
        self.want_checkpoint = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Entry> {
        vec![
            Entry::Accept {
                id: RunId::from(7),
                flow_id: "github".into(),
                dedupe_key: Some("abc".into()),
                bytes: b"request bytes".to_vec(),
            },
            Entry::Start {
                id: RunId::from(7),
                at_ms: 42,
            },
            Entry::Step {
                id: RunId::from(7),
                index: 1,
                step_id: "shape".into(),
                bytes: b"{}".to_vec(),
            },
            Entry::Finish {
                id: RunId::from(7),
                outcome: RunOutcome::Failed,
                error: Some("boom".into()),
                at_ms: 43,
            },
        ]
    }

    fn encode(entries: &[Entry]) -> Vec<u8> {
        let mut redo = Redo::default();
        for entry in entries {
            match entry {
                Entry::Accept {
                    id,
                    flow_id,
                    dedupe_key,
                    bytes,
                } => redo.accept(*id, flow_id, dedupe_key.as_deref(), bytes),
                Entry::Start { id, at_ms } => redo.start(*id, *at_ms),
                Entry::Step {
                    id,
                    index,
                    step_id,
                    bytes,
                } => redo.step(*id, *index, step_id, bytes),
                Entry::Finish {
                    id,
                    outcome,
                    error,
                    at_ms,
                } => redo.finish(*id, *outcome, error.as_deref(), *at_ms),
            }
        }
        redo.bytes().to_vec()
    }

    #[test]
    fn entries_read_back_as_written() {
        let payload = encode(&entries());
        assert_eq!(decode(&payload).unwrap(), entries());
        // Cut anywhere, the payload reads as the entries before the cut or as an error, never
        // as a panic or a wrong entry.
        for cut in 0..payload.len() {
            if let Ok(read) = decode(&payload[..cut]) {
                assert_eq!(read[..], entries()[..read.len()], "cut at {cut}");
            }
        }
    }

    #[test]
    fn the_chain_ends_at_a_torn_frame_or_one_left_from_before_a_restart() {
        let payload = encode(&entries());
        let mut data = Vec::new();
        frame(&mut data, 5, &payload);
        frame(&mut data, 6, b"");
        let two = data.len();
        frame(&mut data, 7, &payload);
        let read: Vec<u64> = frames(&data).iter().map(|(seq, _)| *seq).collect();
        assert_eq!(read, [5, 6, 7]);

        // A torn last frame fails its checksum.
        let mut torn = data.clone();
        let last = torn.len() - 3;
        torn[last] ^= 0xff;
        assert_eq!(frames(&torn).len(), 2);
        assert_eq!(frames(&data[..data.len() - 1]).len(), 2);

        // The journal restarted after seq 7: new frames 8 and 9 overwrite the start, and the
        // old frame 7 that follows them does not belong to the chain.
        let mut restarted = Vec::new();
        frame(&mut restarted, 8, &payload);
        frame(&mut restarted, 9, b"");
        assert_eq!(restarted.len(), two);
        restarted.extend_from_slice(&data[two..]);
        let read: Vec<u64> = frames(&restarted).iter().map(|(seq, _)| *seq).collect();
        assert_eq!(read, [8, 9]);

        // Zeros (a file extended but never written) are not a frame.
        assert!(frames(&[0; 64]).is_empty());
    }

    #[test]
    fn the_journal_sits_next_to_the_store() {
        assert_eq!(
            path_for(Path::new("/data/weir.redb")),
            Path::new("/data/weir.redb-journal")
        );
    }

    #[test]
    fn appended_frames_read_back_and_a_checkpoint_starts_the_file_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("weir.redb-journal");
        let (file, _) = open(&path).expect("journal");
        let counters = Arc::new(super::super::writer::Counters::default());
        let mut journal = Journal::new(file, path.clone(), Arc::clone(&counters));
        journal.append(1, b"first").expect("append");
        journal.append(2, b"second").expect("append");
        // A commit that journaled nothing writes nothing.
        journal.append(3, b"").expect("append");
        let data = std::fs::read(&path).expect("read");
        assert_eq!(frames(&data), vec![(1, &b"first"[..]), (2, &b"second"[..])]);
        assert_eq!(counters.journal_syncs.load(Ordering::Relaxed), 2);

        // After a checkpoint the next frame goes at the start; the older one behind it has a
        // smaller seq and ends the chain.
        journal.checkpointed();
        journal.append(3, b"third").expect("append");
        let data = std::fs::read(&path).expect("read");
        assert_eq!(frames(&data), vec![(3, &b"third"[..])]);
        assert!(!journal.want_checkpoint);
    }

    #[test]
    fn frames_written_by_direct_io_read_back_whatever_blocks_they_end_in() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("weir.redb-journal");
        let (file, _) = open(&path).expect("journal");
        let Some(direct) = open_direct(&path) else {
            eprintln!("the temp dir's file system refuses O_DIRECT: nothing to test here");
            return;
        };
        let counters = Arc::new(super::super::writer::Counters::default());
        let mut journal =
            Journal::new(file, path.clone(), Arc::clone(&counters)).with_direct(Some(direct));
        // A frame that ends exactly at a block's end, then ones that end inside a block and
        // that span several blocks.
        let payloads: Vec<Vec<u8>> = [BLOCK - HEADER, 1, 5000, 3 * BLOCK + 7, 100]
            .iter()
            .enumerate()
            .map(|(i, &len)| (0..len).map(|b| (b * 31 + i) as u8).collect())
            .collect();
        let mut expected = Vec::new();
        for (seq, payload) in (1..).zip(&payloads) {
            journal.append(seq, payload).expect("append");
            expected.push((seq, payload.as_slice()));
            let data = std::fs::read(&path).expect("read");
            assert_eq!(frames(&data), expected, "after frame {seq}");
        }
        assert!(
            counters.journal_direct.load(Ordering::Relaxed),
            "direct I/O was given up"
        );

        // After a checkpoint the file starts again with the next frame.
        journal.checkpointed();
        journal.append(6, b"again").expect("append");
        let data = std::fs::read(&path).expect("read");
        assert_eq!(frames(&data), vec![(6, &b"again"[..])]);
    }

    #[test]
    fn a_failed_write_is_reported_and_the_journal_is_not_written_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("weir.redb-journal");
        std::fs::write(&path, b"").expect("create");
        // Opened read-only, so writing fails as a full or broken disk would.
        let file = File::open(&path).expect("open");
        let mut journal = Journal::new(file, path.clone(), Arc::default());
        let err = journal.append(1, b"entry").expect_err("a read-only file");
        assert!(
            err.to_string().contains("writing the journal"),
            "unexpected error: {err}"
        );
        assert!(journal.failed);
        let again = journal.append(2, b"entry").expect_err("failed before");
        assert!(
            again.to_string().contains("failed earlier"),
            "unexpected error: {again}"
        );
    }
}
