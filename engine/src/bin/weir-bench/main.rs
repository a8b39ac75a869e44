//! Weir's benchmarks. Each prints its figures next to a baseline measured in the same run, so a
//! noisy shared machine shows up in both.
//!
//!     cargo run --release -p weir --bin weir-bench -- plugin
//!     cargo run --release -p weir --bin weir-bench -- webhook [--rounds N]
//!     cargo run --release -p weir --bin weir-bench -- floor [--rounds N]
//!     cargo run --release -p weir --bin weir-bench -- disk [--dir DIR]
//!     cargo run --release -p weir --bin weir-bench -- memory [--weir PATH] [--serve-arg ARG]...

/// mimalloc: allocations on the gateway's threads are freed on the store writer's, which
/// glibc's malloc makes contend on its arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod disk;
mod floor;
mod memory;
mod webhook;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use weir::plugin::{CallContext, HostConfig, Limits, Plugin, PluginHost};

/// Weir's benchmarks: each prints its figures next to a baseline measured in the same run.
#[derive(clap::Parser)]
#[command(name = "weir-bench")]
struct Cli {
    #[command(subcommand)]
    bench: Option<Bench>,
}

#[derive(clap::Subcommand)]
enum Bench {
    /// The per-step overhead of the `transform` plugin (the default).
    Plugin,
    /// Weir's webhook endpoint against a bare warp server, completed runs/s and memory.
    Webhook {
        /// Rounds per concurrency; the figures are their median and range.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        rounds: u64,
    },
    /// The durable floor written three ways (one writer thread, four, none) against the bare
    /// server: what any server that keeps every acknowledged webhook on this disk can answer.
    Floor {
        /// Rounds per concurrency; the figures are their median and range.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        rounds: u64,
    },
    /// What durable writes cost on the disk holding DIR, as Weir's journal makes them.
    Disk {
        /// A directory on the disk to measure: where Weir's `--data` file will be.
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
    },
    /// Weir's peak memory while it takes in and runs four 40 MB webhooks sent at once.
    Memory {
        /// The `weir` binary to measure (default: the release binary next to this one).
        #[arg(long)]
        weir: Option<std::path::PathBuf>,
        /// An argument for `weir serve`, such as `--serve-arg=--payload-budget=0` (repeatable).
        #[arg(long = "serve-arg", allow_hyphen_values = true)]
        serve_args: Vec<String>,
    },
    /// Serves the bare warp baseline in a process of its own, as `webhook` needs it: prints
    /// `bare: ADDR` and serves until its stdin closes.
    #[command(hide = true)]
    BareServer {
        /// Serve the durable floor instead: each body written to a file in this directory
        /// (by direct I/O, synced) before the answer.
        #[arg(long)]
        durable: Option<std::path::PathBuf>,
        /// Who writes the floor's bodies.
        #[arg(long, value_enum, default_value_t = floor::Writers::One)]
        writers: floor::Writers,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = <Cli as clap::Parser>::parse();
    match cli.bench.unwrap_or(Bench::Plugin) {
        Bench::Plugin => bench_plugin(),
        Bench::Webhook { rounds } => {
            webhook::bench(usize::try_from(rounds).context("--rounds is too large")?)
        }
        Bench::Disk { dir } => disk::bench(&dir),
        Bench::Floor { rounds } => {
            floor::bench(usize::try_from(rounds).context("--rounds is too large")?)
        }
        Bench::Memory { weir, serve_args } => memory::bench(weir, &serve_args),
        Bench::BareServer { durable, writers } => webhook::serve_bare(durable, writers),
    }
}

/// A JSON object of about 1 KiB.
fn input_1k() -> String {
    let mut fields = serde_json::Map::new();
    for i in 0..32 {
        fields.insert(
            format!("field_{i:02}"),
            serde_json::json!(format!("value number {i:04}")),
        );
    }
    fields.insert(
        "nested".into(),
        serde_json::json!({"list": [1, 2, 3, 4, 5], "flag": true}),
    );
    serde_json::Value::Object(fields).to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn call_loop(plugin: &Plugin, input: &str, n: usize) -> Vec<Duration> {
    let ctx = CallContext::default();
    let limits = Limits::default();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let call = plugin.call(&ctx, input, "{}", &limits);
        times.push(start.elapsed());
        assert!(call.result.is_ok(), "transform failed: {:?}", call.result);
    }
    times
}

fn throughput(plugin: &Plugin, input: &str, threads: usize, per_thread: usize) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| call_loop(plugin, input, per_thread));
        }
    });
    (threads * per_thread) as f64 / start.elapsed().as_secs_f64()
}

fn bench_plugin() -> anyhow::Result<()> {
    let input = input_1k();
    println!(
        "plugin benchmark: built-in `transform`, fresh instance per call, {} B JSON input",
        input.len()
    );
    for pooling in [true, false] {
        let host = PluginHost::new(HostConfig {
            cache_dir: None,
            no_pooling: !pooling,
        })
        .context("starting the plugin host")?;
        let plugin = host.load_builtin("transform")?;
        call_loop(&plugin, &input, 2_000); // warm-up
        let mut times = call_loop(&plugin, &input, 20_000);
        times.sort();
        let label = if host.pooling() {
            "pooling allocator"
        } else {
            "on-demand allocator"
        };
        println!("  {label}:");
        println!(
            "    instantiate + call: median {:.1} µs, p99 {:.1} µs",
            percentile(&times, 0.5).as_secs_f64() * 1e6,
            percentile(&times, 0.99).as_secs_f64() * 1e6
        );
        println!(
            "    1 thread:  {:>8.0} calls/s",
            throughput(&plugin, &input, 1, 20_000)
        );
        println!(
            "    2 threads: {:>8.0} calls/s",
            throughput(&plugin, &input, 2, 20_000)
        );
        if !pooling {
            println!("  (on-demand is the baseline: the pooling allocator should beat it)");
        }
    }
    println!("targets: median <= 50 µs, >= 15,000 calls/s");
    Ok(())
}
