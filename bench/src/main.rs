//! Weir's benchmarks, one subcommand per file. Each prints its figures next to a baseline
//! measured in the same run, so that a noisy shared machine shows up in both.
//!
//!     cargo run --release -p weir-bench -- plugin
//!     cargo run --release -p weir-bench -- webhook [--rounds N]
//!     cargo run --release -p weir-bench -- respond [--rounds N]
//!     cargo run --release -p weir-bench -- forgeries [--requests N] [--rounds N]
//!     cargo run --release -p weir-bench -- memory [--weir PATH] [--serve-arg ARG]...
//!     cargo run --release -p weir-bench -- outbound
//!     cargo run --release -p weir-bench -- history [--runs N] [--flows N] [--requests N]
//!     cargo run --release -p weir-bench -- prune [--runs N] [--churn N]
//!     cargo run --release -p weir-bench -- store
//!
//! The method and the current figures are in BENCHMARKS.md at the repository's root.

/// The same allocator as the `weir` binary, so that the plugin benchmark, which runs Weir's
/// plugin host in this process, measures what `weir serve` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod floor;
mod forgeries;
mod history;
mod memory;
mod outbound;
mod plugin;
mod prune;
mod respond;
mod store;
mod webhook;

use anyhow::Context as _;

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
    /// Weir's webhook endpoint against a bare warp server and a durable floor, completed
    /// runs/s and peak memory.
    Webhook {
        /// Rounds per concurrency; the figures are their median and range.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        rounds: u64,
    },
    /// A flow answering with its run's result (`respond = "result"`, two `transform` steps)
    /// against the same flow answering 202, at concurrency 64.
    Respond {
        /// Rounds; the figures are their median and range.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        rounds: u64,
    },
    /// GitHub-signed webhooks at concurrency 32, alone and while as many connections send
    /// forged signatures: accepted/s and p99 of both, forgeries/s, and their ratio.
    Forgeries {
        /// Valid webhooks per phase.
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(32..))]
        requests: u64,
        /// Rounds; the figures are their median and range.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        rounds: u64,
    },
    /// Weir's peak memory while it takes in and runs four 40 MB webhooks sent at once.
    Memory {
        /// The `weir` binary to measure (default: built like `webhook` does).
        #[arg(long)]
        weir: Option<std::path::PathBuf>,
        /// An argument for `weir serve`, such as `--serve-arg=--payload-budget=0` (repeatable).
        #[arg(long = "serve-arg", allow_hyphen_values = true)]
        serve_args: Vec<String>,
    },
    /// A one-step `http` flow against a loopback sink: completed runs/s and the latency a
    /// call adds over the sink's own.
    Outbound,
    /// A store of a million runs across 100 flows (made through the store's API), then the
    /// admin API's run lists, a deep cursor and flow stats on it: p50/p99 through HTTP.
    History {
        /// Runs in the store.
        #[arg(long, default_value_t = 1_000_000)]
        runs: u64,
        /// Flows they are spread over.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..1000))]
        flows: u64,
        /// Requests timed per query.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
        requests: u64,
    },
    /// Retention: a store of `--runs` finished runs whose pruner deletes half while webhooks
    /// arrive (ingest rate with and without), then `--churn` more runs come and go (file
    /// length before and after).
    Prune {
        #[arg(long, default_value_t = 1_000_000)]
        runs: usize,
        #[arg(long, default_value_t = 500_000)]
        churn: usize,
    },
    /// The store alone, through its API (no HTTP): accepts/s by 1 to 256 concurrent callers,
    /// then runs' progress (start, five steps, finish) per second, progress synced and not.
    Store,
    /// Serves a baseline in a process of its own, as `webhook` needs it: prints `bare: ADDR`
    /// and serves until its stdin closes.
    #[command(hide = true)]
    BareServer {
        /// Serve the durable floor instead: each body written to a file in this directory
        /// (by direct I/O, synced) before the answer.
        #[arg(long)]
        durable: Option<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = <Cli as clap::Parser>::parse();
    match cli.bench.unwrap_or(Bench::Plugin) {
        Bench::Plugin => plugin::bench(),
        Bench::Webhook { rounds } => {
            webhook::bench(usize::try_from(rounds).context("--rounds is too large")?)
        }
        Bench::Respond { rounds } => {
            respond::bench(usize::try_from(rounds).context("--rounds is too large")?)
        }
        Bench::Forgeries { requests, rounds } => forgeries::bench(
            usize::try_from(requests).context("--requests is too large")?,
            usize::try_from(rounds).context("--rounds is too large")?,
        ),
        Bench::Memory { weir, serve_args } => memory::bench(weir, &serve_args),
        Bench::Outbound => outbound::bench(),
        Bench::History {
            runs,
            flows,
            requests,
        } => history::bench(
            runs,
            usize::try_from(flows).context("--flows is too large")?,
            usize::try_from(requests).context("--requests is too large")?,
        ),
        Bench::Prune { runs, churn } => prune::bench(runs, churn),
        Bench::Store => store::bench(),
        Bench::BareServer { durable } => webhook::serve_bare(durable),
    }
}
