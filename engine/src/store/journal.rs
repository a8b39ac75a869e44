//! The journal file: frames of [entries](super::entry), each one redb commit's changes,
//! written with one synced write per commit. What the journal guarantees and when it is
//! written is in the store's module doc (`store`, "Durability"); this is the file format.
//!
//! The file is a sequence of frames, each starting at a multiple of [`BLOCK`]:
//! `len: u32`, `crc32: u32` (of `seq` and the payload), `seq: u64`, `len` bytes of payload
//! (entries), then zeros up to the next multiple of [`BLOCK`]. Each frame holds one redb
//! commit; `seq` counts them, and the redb file keeps the `seq` of its last commit in `META`.
//! At open, the frames that follow one another from the start of the file, with valid
//! checksums and consecutive `seq`, are read; those after the store's `seq` are applied
//! again. A torn last frame fails its checksum; frames left from before the journal restarted
//! have smaller `seq` and end the chain.
//!
//! Because every frame starts on a fresh block and is padded to the end of its last one, a
//! write never touches a block that holds an earlier frame: a write torn by a power loss can
//! damage only the frame being written, never one already acknowledged, whatever the disk
//! does to the sectors it was writing (left old, new, or garbage). The cost is at most one
//! block of padding per commit.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Counters;
use super::error::StoreError;

/// Once the journal holds this much, the writer checkpoints so it can start again.
pub(super) const CHECKPOINT_AFTER: u64 = 64 << 20;

/// The [`META`](super::tables::META) key holding the `seq` of the store's last commit.
pub(super) const SEQ_KEY: &str = "journal_seq";

const HEADER: usize = 16;

/// Frames start at multiples of this, and are written in whole blocks: disks have 512-byte
/// or 4 KiB sectors, and direct I/O needs offset, length and memory aligned to the logical
/// block size; 4 KiB suits both.
pub(super) const BLOCK: usize = 4096;

/// The journal next to a store file: `weir.redb` → `weir.redb-journal`.
pub fn path_for(store: &Path) -> PathBuf {
    let mut name = store.file_name().unwrap_or_default().to_os_string();
    name.push("-journal");
    store.with_file_name(name)
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The length of the frame of a `payload_len`-byte payload: header and payload, padded.
fn frame_len(payload_len: usize) -> usize {
    (HEADER + payload_len).next_multiple_of(BLOCK)
}

/// The most bytes of a frame written at once: a larger frame (a transaction of large
/// bodies) is written in pieces of this size through one reused buffer, rather than copied
/// whole next to the payload it was encoded from.
const PIECE: usize = 1 << 20;

/// The header of a frame of `payload`.
fn header(seq: u64, payload: &[u8]) -> [u8; HEADER] {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut header = [0; HEADER];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..8].copy_from_slice(&checksum(seq, payload).to_le_bytes());
    header[8..].copy_from_slice(&seq.to_le_bytes());
    header
}

/// Appends one frame to `out`, padded with zeros to a multiple of [`BLOCK`] bytes (the
/// journal writes the same bytes piece by piece).
#[cfg(test)]
pub(super) fn frame(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    frame_piece(
        out,
        &header(seq, payload),
        payload,
        0..frame_len(payload.len()),
    );
}

/// Appends bytes `range` of the frame of `header` and `payload` to `out`.
fn frame_piece(
    out: &mut Vec<u8>,
    header: &[u8; HEADER],
    payload: &[u8],
    range: std::ops::Range<usize>,
) {
    let end = range.end;
    let mut at = range.start;
    if at < HEADER {
        let to = end.min(HEADER);
        out.extend_from_slice(&header[at..to]);
        at = to;
    }
    let payload_end = HEADER + payload.len();
    if at < end && at < payload_end {
        let to = end.min(payload_end);
        out.extend_from_slice(&payload[at - HEADER..to - HEADER]);
        at = to;
    }
    out.resize(out.len() + (end - at), 0);
}

/// A frame read back from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Frame<'a> {
    pub seq: u64,
    /// Where it starts in the file, for error messages.
    pub offset: u64,
    pub payload: &'a [u8],
}

/// The frames that follow one another from the start of `data`.
pub(super) fn frames(data: &[u8]) -> Vec<Frame<'_>> {
    let mut frames = Vec::new();
    let mut at = 0;
    let mut last: Option<u64> = None;
    while let Some(header) = data.get(at..at + HEADER) {
        let word = |from: usize| {
            let mut raw = [0; 4];
            raw.copy_from_slice(&header[from..from + 4]);
            u32::from_le_bytes(raw)
        };
        let len = word(0) as usize;
        let crc = word(4);
        let mut raw = [0; 8];
        raw.copy_from_slice(&header[8..16]);
        let seq = u64::from_le_bytes(raw);
        let Some(payload) = data.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if checksum(seq, payload) != crc
            || last.is_some_and(|last| Some(seq) != last.checked_add(1))
        {
            break;
        }
        frames.push(Frame {
            seq,
            offset: at as u64,
            payload,
        });
        last = Some(seq);
        at = (at + HEADER + len).next_multiple_of(BLOCK);
    }
    frames
}

/// Opens (creating if needed) the journal and reads its whole content; the directory is
/// synced so that a journal just created is still there after a power loss.
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
    sync_dir(path)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).map_err(io)?;
    Ok((file, data))
}

/// Syncs the directory holding `path`, so that the file's name is durable: a file created and
/// then synced may otherwise vanish in a power loss, data and all.
pub(super) fn sync_dir(path: &Path) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|dir| dir.sync_all()).map_err(|e| {
        StoreError::Storage(format!("cannot sync the directory {}: {e}", dir.display()))
    })
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

/// Where the journal's frames go: a file, or in tests a simulated disk that can lose power.
pub(super) trait JournalIo: Send {
    /// Writes `data` at `offset` and returns once it is on stable storage. `offset`, the
    /// length of `data` and its address are multiples of [`BLOCK`].
    fn write_durably(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()>;

    /// Whether writes bypass the page cache.
    fn is_direct(&self) -> bool;
}

/// The journal file. Frames go to the disk by direct I/O where the file system allows it:
/// one `pwrite` through a file opened `O_DIRECT | O_DSYNC` returns once the frame is on the
/// disk, without copying it into the page cache and writing it back from there as `fdatasync`
/// does. Elsewhere a frame is written through the page cache and `fdatasync`'d.
pub(super) struct FileIo {
    file: File,
    /// The same file opened `O_DIRECT | O_DSYNC`; `None`: written through the page cache.
    direct: Option<File>,
    path: PathBuf,
}

impl FileIo {
    pub fn new(file: File, direct: Option<File>, path: PathBuf) -> Self {
        FileIo { file, direct, path }
    }
}

impl JournalIo for FileIo {
    fn write_durably(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        if let Some(direct) = &self.direct {
            match direct.write_all_at(data, offset) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::warn!(journal = %self.path.display(), error = %e, "direct I/O refused; the journal is written through the page cache from now on");
                    self.direct = None;
                }
                other => return other,
            }
        }
        self.file
            .write_all_at(data, offset)
            .and_then(|()| self.file.sync_data())
    }

    fn is_direct(&self) -> bool {
        self.direct.is_some()
    }
}

/// The journal, written by the writer thread.
pub(super) struct Journal {
    io: Box<dyn JournalIo>,
    path: PathBuf,
    /// Where the next frame goes; always a multiple of [`BLOCK`].
    offset: u64,
    /// The journal could not be written: the writer makes every commit durable in redb.
    pub failed: bool,
    /// The journal passed [`CHECKPOINT_AFTER`]: the next commit should be a checkpoint.
    pub want_checkpoint: bool,
    counters: Arc<Counters>,
    buffer: Vec<u8>,
}

impl Journal {
    /// A journal whose next frame goes at its beginning (whatever it holds was applied at
    /// open and is checkpointed).
    pub fn new(io: Box<dyn JournalIo>, path: PathBuf, counters: Arc<Counters>) -> Self {
        counters
            .journal_direct
            .store(io.is_direct(), Ordering::Relaxed);
        Journal {
            io,
            path,
            offset: 0,
            failed: false,
            want_checkpoint: false,
            counters,
            buffer: Vec::new(),
        }
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
        let started = std::time::Instant::now();
        let header = header(seq, payload);
        let framed = frame_len(payload.len());
        // Piece by piece, each at a BLOCK-aligned address in the buffer, for direct I/O. The
        // frame is only acknowledged once every piece is on the disk; a crash in between
        // leaves a frame that fails its checksum, as a torn write does.
        let mut written = Ok(());
        for from in (0..framed).step_by(PIECE) {
            self.buffer.clear();
            self.buffer.reserve(BLOCK + PIECE);
            let start = self.buffer.as_ptr().align_offset(BLOCK).min(BLOCK);
            self.buffer.resize(start, 0);
            frame_piece(
                &mut self.buffer,
                &header,
                payload,
                from..framed.min(from + PIECE),
            );
            written = self
                .io
                .write_durably(self.offset + from as u64, &self.buffer[start..]);
            if written.is_err() {
                break;
            }
        }
        let counters = &self.counters;
        counters
            .journal_direct
            .store(self.io.is_direct(), Ordering::Relaxed);
        match written {
            Ok(()) => {
                let framed = framed as u64;
                counters.journal_syncs.fetch_add(1, Ordering::Relaxed);
                counters.journal_bytes.fetch_add(framed, Ordering::Relaxed);
                let took = started.elapsed();
                counters.journal_sync_us.fetch_add(
                    u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                if let Some(observer) = counters.latency.get() {
                    observer.journal_sync(took);
                }
                self.offset += framed;
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

    /// redb holds everything up to here durably: the journal starts again at its beginning.
    pub fn checkpointed(&mut self) {
        self.offset = 0;
        self.want_checkpoint = false;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn seqs(data: &[u8]) -> Vec<u64> {
        frames(data).iter().map(|f| f.seq).collect()
    }

    fn file_journal(path: &Path, direct: Option<File>) -> (Journal, Arc<Counters>) {
        let (file, _) = open(path).expect("journal");
        let counters = Arc::new(Counters::default());
        let io = FileIo::new(file, direct, path.to_owned());
        (
            Journal::new(Box::new(io), path.to_owned(), Arc::clone(&counters)),
            counters,
        )
    }

    #[test]
    fn the_chain_ends_at_a_torn_frame_or_one_left_from_before_a_restart() {
        let mut data = Vec::new();
        frame(&mut data, 5, b"payload");
        frame(&mut data, 6, b"");
        let two = data.len();
        assert_eq!(two, 2 * BLOCK, "each frame fills whole blocks");
        frame(&mut data, 7, &[9; BLOCK]);
        assert_eq!(seqs(&data), [5, 6, 7]);
        assert_eq!(frames(&data)[2].offset, two as u64);

        // A torn last frame fails its checksum.
        let mut torn = data.clone();
        torn[two + HEADER + 100] ^= 0xff;
        assert_eq!(seqs(&torn), [5, 6]);
        assert_eq!(seqs(&data[..two + HEADER + 10]), [5, 6]);

        // The journal restarted after seq 7: new frames 8 and 9 overwrite the start, and the
        // old frame 7 that follows them does not belong to the chain.
        let mut restarted = Vec::new();
        frame(&mut restarted, 8, b"payload");
        frame(&mut restarted, 9, b"");
        restarted.extend_from_slice(&data[two..]);
        assert_eq!(seqs(&restarted), [8, 9]);

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
        let (mut journal, counters) = file_journal(&path, None);
        journal.append(1, b"first").expect("append");
        journal.append(2, b"second").expect("append");
        // A commit that journaled nothing writes nothing.
        journal.append(3, b"").expect("append");
        let data = std::fs::read(&path).expect("read");
        assert_eq!(data.len(), 2 * BLOCK);
        let read: Vec<_> = frames(&data).iter().map(|f| (f.seq, f.payload)).collect();
        assert_eq!(read, vec![(1, &b"first"[..]), (2, &b"second"[..])]);
        assert_eq!(counters.journal_syncs.load(Ordering::Relaxed), 2);

        // After a checkpoint the next frame goes at the start; the older one behind it has a
        // smaller seq and ends the chain.
        journal.checkpointed();
        journal.append(3, b"third").expect("append");
        let data = std::fs::read(&path).expect("read");
        let read: Vec<_> = frames(&data).iter().map(|f| (f.seq, f.payload)).collect();
        assert_eq!(read, vec![(3, &b"third"[..])]);
        assert!(!journal.want_checkpoint);
    }

    #[test]
    fn a_frame_written_in_pieces_is_the_frame() {
        for len in [1, PIECE - HEADER, PIECE - HEADER + 1, 2 * PIECE + 3] {
            let payload: Vec<u8> = (0..len).map(|b| (b * 7) as u8).collect();
            let mut whole = Vec::new();
            frame(&mut whole, 9, &payload);
            let mut pieces = Vec::new();
            let header = header(9, &payload);
            for from in (0..whole.len()).step_by(PIECE) {
                frame_piece(
                    &mut pieces,
                    &header,
                    &payload,
                    from..whole.len().min(from + PIECE),
                );
            }
            assert_eq!(pieces, whole, "payload of {len} bytes");
            assert_eq!(frames(&whole).len(), 1);
        }
    }

    #[test]
    fn frames_written_by_direct_io_read_back_whatever_their_size() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("weir.redb-journal");
        drop(open(&path).expect("create"));
        let Some(direct) = open_direct(&path) else {
            eprintln!("the temp dir's file system refuses O_DIRECT: nothing to test here");
            return;
        };
        let (mut journal, counters) = file_journal(&path, Some(direct));
        // A frame that ends exactly at a block's end, then ones that end inside a block and
        // that span several blocks.
        let payloads: Vec<Vec<u8>> = [BLOCK - HEADER, 1, 5000, 3 * BLOCK + 7, 100, 3 * PIECE + 5]
            .iter()
            .enumerate()
            .map(|(i, &len)| (0..len).map(|b| (b * 31 + i) as u8).collect())
            .collect();
        let mut expected = Vec::new();
        for (seq, payload) in (1..).zip(&payloads) {
            journal.append(seq, payload).expect("append");
            expected.push((seq, payload.as_slice()));
            let data = std::fs::read(&path).expect("read");
            let read: Vec<_> = frames(&data).iter().map(|f| (f.seq, f.payload)).collect();
            assert_eq!(read, expected, "after frame {seq}");
        }
        assert!(
            counters.journal_direct.load(Ordering::Relaxed),
            "direct I/O was given up"
        );
    }

    #[test]
    fn a_failed_write_is_reported_and_the_journal_is_not_written_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("weir.redb-journal");
        std::fs::write(&path, b"").expect("create");
        // Opened read-only, so writing fails as a full or broken disk would.
        let file = File::open(&path).expect("open");
        let io = FileIo::new(file, None, path.clone());
        let mut journal = Journal::new(Box::new(io), path.clone(), Arc::default());
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

    proptest! {
        #[test]
        fn frames_round_trip_and_arbitrary_bytes_never_panic(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..5000), 0..4),
            first in any::<u64>(),
            noise in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut data = Vec::new();
            let mut seq = first;
            for payload in &payloads {
                frame(&mut data, seq, payload);
                seq = seq.wrapping_add(1);
            }
            let read: Vec<&[u8]> = frames(&data).iter().map(|f| f.payload).collect();
            // A chain stops where `seq` would wrap.
            let whole = payloads.len().min(usize::try_from(u64::MAX - first).unwrap_or(usize::MAX).saturating_add(1));
            prop_assert_eq!(read, payloads[..whole].iter().map(Vec::as_slice).collect::<Vec<_>>());
            let _ = frames(&noise);
            data.extend_from_slice(&noise);
            let _ = frames(&data);
        }
    }
}
