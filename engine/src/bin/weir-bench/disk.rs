//! `weir-bench disk [--dir DIR]`: what durable writes cost on the disk that holds DIR (the
//! current directory by default: put it where `--data` will be), in the ways Weir's journal
//! and the durable floor write. Every webhook Weir acknowledges waits for one such write (one
//! per group commit), so this is the first figure to look at on a new machine: at low
//! concurrency it, more than Weir, sets how many webhooks a second can be acknowledged.
//!
//! Each case writes for [`CASE`], from one thread or from 2, 4 or 8 at once (each in a region
//! of its own), and prints the writes a second all threads made together and the time one took.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::floor::{Aligned, open_direct, zero_filled};

const CASE: Duration = Duration::from_millis(1500);
/// Each thread's region of the file; writes go round it.
const REGION: u64 = 8 << 20;
const THREADS: [usize; 4] = [1, 2, 4, 8];

/// How a case reaches the disk.
#[derive(Clone, Copy)]
enum Way {
    /// `O_DIRECT | O_DSYNC` over blocks written before: Weir's journal once it has gone round
    /// its file, and the durable floor.
    DirectOverwrite,
    /// `O_DIRECT | O_DSYNC`, each write extending the file: Weir's journal on its first pass.
    DirectAppend,
    /// Through the page cache, then `fdatasync`: Weir's journal where `O_DIRECT` is refused.
    CacheFdatasync,
}

impl Way {
    fn label(self) -> &'static str {
        match self {
            Way::DirectOverwrite => "direct I/O, overwriting",
            Way::DirectAppend => "direct I/O, extending the file",
            Way::CacheFdatasync => "page cache + fdatasync",
        }
    }
}

pub fn bench(dir: &Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir_in(dir)
        .with_context(|| format!("creating a scratch directory in {}", dir.display()))?;
    // Written once, for every case that overwrites; each extending case starts a file anew.
    let written = dir.path().join("written");
    let cache = zero_filled(
        &written,
        REGION * *THREADS.iter().max().unwrap_or(&1) as u64,
    )?;
    let direct = open_direct(&written);
    let appended = dir.path().join("appended");
    println!(
        "disk benchmark in {}: durable writes, {} ms per case",
        dir.path().display(),
        CASE.as_millis()
    );
    if direct.is_none() {
        println!(
            "  this file system refuses O_DIRECT: only the page cache and fdatasync are measured"
        );
    }
    println!(
        "{:<32} {:>8} {:>8} {:>12} {:>10}",
        "", "size", "threads", "writes/s", "ms each"
    );
    let mut cases = Vec::new();
    for size in [8 << 10, 24 << 10] {
        if direct.is_some() {
            for threads in THREADS {
                cases.push((Way::DirectOverwrite, size, threads));
            }
            cases.push((Way::DirectAppend, size, 1));
        }
        cases.push((Way::CacheFdatasync, size, 1));
    }
    for (way, size, threads) in cases {
        let appending;
        let file = match (way, &direct) {
            (Way::DirectOverwrite, Some(direct)) => direct,
            (Way::DirectAppend, _) => {
                zero_filled(&appended, 0)?;
                appending = open_direct(&appended).context("O_DIRECT")?;
                &appending
            }
            _ => &cache,
        };
        let (writes, elapsed) = case(file, way, size, threads)?;
        let rate = writes as f64 / elapsed.as_secs_f64();
        println!(
            "{:<32} {:>6} K {:>8} {:>12.0} {:>10.3}",
            way.label(),
            size >> 10,
            threads,
            rate,
            threads as f64 / rate * 1e3
        );
    }
    println!(
        "a durable webhook server answers at most (writes/s) x (webhooks per write) a second; \
         threads that write at once show whether this disk overlaps its flushes"
    );
    Ok(())
}

/// Writes `size`-byte blocks to `file` from `threads` threads for [`CASE`]; how many, and how
/// long.
fn case(file: &File, way: Way, size: usize, threads: usize) -> anyhow::Result<(u64, Duration)> {
    let sync = matches!(way, Way::CacheFdatasync);
    let started = Instant::now();
    let deadline = started + CASE;
    let counts = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads as u64)
            .map(|i| s.spawn(move || write_until(file, i * REGION, size, sync, way, deadline)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a writer panicked")))
            })
            .collect::<anyhow::Result<Vec<u64>>>()
    })?;
    Ok((counts.iter().sum(), started.elapsed()))
}

fn write_until(
    file: &File,
    base: u64,
    size: usize,
    sync: bool,
    way: Way,
    deadline: Instant,
) -> anyhow::Result<u64> {
    let mut buffer = Aligned::new(size);
    buffer.as_mut().fill(b'w');
    let mut writes = 0u64;
    let mut offset = 0u64;
    while Instant::now() < deadline {
        if offset + size as u64 > REGION && !matches!(way, Way::DirectAppend) {
            offset = 0;
        }
        file.write_all_at(buffer.as_mut(), base + offset)?;
        if sync {
            file.sync_data()?;
        }
        offset += size as u64;
        writes += 1;
    }
    Ok(writes)
}
