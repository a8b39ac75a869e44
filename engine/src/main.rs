//! The `weir` command line.

/// mimalloc: allocations on the gateway's threads are freed on the store writer's, which
/// glibc's malloc makes contend on its arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

mod local;
mod remote;
use weir::plugin::HostConfig;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Receive webhooks, keep them safely, run flows on them."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines on stderr are written: `text` for people, `json` (one object a line,
    /// fields first-class) for log collectors. `WEIR_LOG` sets the filter (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "WEIR_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Sends `tracing` events to stderr in `format`, filtered by `WEIR_LOG` (default `info`).
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
}

#[derive(Subcommand)]
// Parsed once per process: the size of `serve`'s options costs nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Receive webhooks and run the flows of a folder, with hot reload.
    Serve(ServeArgs),
    /// Replay runs on a running Weir (through its admin API): one run by id, or every run
    /// the filters select (at most --max, newest first).
    Replay(remote::ReplayArgs),
    /// Manage flows' webhook URL tokens on a running Weir (through its admin API).
    #[command(subcommand)]
    Token(remote::TokenCommand),
    /// Check flow files; exits 0 when all are valid, 1 otherwise (for flow authors' CI).
    Validate {
        /// Flow files or folders of flow files (default: ./flows).
        paths: Vec<PathBuf>,
        #[command(flatten)]
        plugin_places: PluginPlacesArgs,
    },
    /// Run a flow once, locally, with no server: prints each step's output.
    Run {
        /// The flow file.
        flow: PathBuf,
        /// The webhook body: a file, or - for standard input.
        #[arg(long)]
        payload: String,
        /// A request header, `Name: value` (repeatable). Default content type: application/json.
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// The request method.
        #[arg(long, default_value = "POST")]
        method: String,
        #[command(flatten)]
        plugin_places: PluginPlacesArgs,
        /// A PEM file of CA certificates that steps' HTTPS calls trust besides the webpki
        /// roots, as `weir serve --extra-ca`.
        #[arg(long, value_name = "PEM", env = "WEIR_EXTRA_CA")]
        extra_ca: Option<PathBuf>,
    },
    /// Write, run and test step plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Check a store (stop Weir first): walks every record and the journal, and reports each
    /// damaged one; exits 0 when none is, 1 when any is, 2 when the file cannot be opened.
    Check {
        /// The store file.
        #[arg(long, default_value = "./weir.redb", env = "WEIR_DATA")]
        data: PathBuf,
    },
    /// Shrink a store's file to what it holds (stop Weir first: a running Weir reuses freed
    /// pages but never shrinks the file). Prints the sizes before and after; exits 0 when
    /// done, 2 when the file cannot be compacted (missing, or in use by a running Weir).
    Compact {
        /// The store file.
        #[arg(long, default_value = "./weir.redb", env = "WEIR_DATA")]
        data: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The flows folder (watched: edits take effect within a second).
    #[arg(long, default_value = "./flows", env = "WEIR_FLOWS")]
    flows: PathBuf,
    /// The redb file keeping runs, payloads, flow versions and URL tokens.
    #[arg(long, default_value = "./weir.redb", env = "WEIR_DATA")]
    data: PathBuf,
    /// Where webhooks are received.
    #[arg(long, default_value = "127.0.0.1:8080", env = "WEIR_LISTEN")]
    listen: std::net::SocketAddr,
    /// Where the admin API listens (local-only unless --admin-token is set).
    #[arg(long, default_value = "127.0.0.1:8081", env = "WEIR_ADMIN_LISTEN")]
    admin_listen: std::net::SocketAddr,
    /// The base of webhook URLs as senders must use it (default: http://<listen address>).
    #[arg(long, env = "WEIR_PUBLIC_URL")]
    public_url: Option<String>,
    /// Bearer token required on the admin API (at least 16 bytes; required to listen beyond
    /// loopback).
    #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Without an admin token, a `Host` name the admin API answers besides localhost,
    /// 127.0.0.0/8 and [::1] (repeatable; the env var takes a comma-separated list). Other
    /// Hosts get 421, which stops DNS-rebinding pages.
    #[arg(long = "admin-host", env = "WEIR_ADMIN_HOSTS", value_delimiter = ',')]
    admin_hosts: Vec<String>,
    /// Connections the webhook listener keeps open at once; lowered to fit the open-files
    /// limit. When full, a new connection closes the one idle longest.
    #[arg(long, default_value_t = 4096, env = "WEIR_MAX_CONNECTIONS")]
    max_connections: usize,
    /// Connections the admin listener keeps open at once: its own budget, so a webhook flood
    /// cannot lock admins out.
    #[arg(long, default_value_t = 64, env = "WEIR_ADMIN_MAX_CONNECTIONS")]
    admin_max_connections: usize,
    /// The longest a request head (request line and headers) may take from its first byte.
    #[arg(long, default_value = "10s", env = "WEIR_HEADER_TIMEOUT", value_parser = humantime::parse_duration)]
    header_timeout: std::time::Duration,
    /// How long a connection stays open with no request in progress and nothing received
    /// (before its first request, and between keep-alive requests).
    #[arg(long, default_value = "30s", env = "WEIR_IDLE_TIMEOUT", value_parser = humantime::parse_duration)]
    idle_timeout: std::time::Duration,
    /// The longest a webhook body may take to arrive; past it the sender gets 408.
    #[arg(long, default_value = "30s", env = "WEIR_BODY_TIMEOUT", value_parser = humantime::parse_duration)]
    body_timeout: std::time::Duration,
    /// A proxy (CIDR or address, repeatable or comma-separated) whose `X-Forwarded-For` or
    /// `Forwarded` header names the webhook's sender; from any other peer those headers are
    /// ignored. Flows' `allow_ips` and stored remote addresses use the sender's address.
    #[arg(long = "trusted-proxy", env = "WEIR_TRUSTED_PROXIES", value_delimiter = ',', value_parser = weir::flow::parse_ip_net)]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// The largest request head (path, query and headers) on either listener, at least
    /// 8 KiB; past it, 431. A flow's `max_head` can only ask less.
    #[arg(long, default_value = "64 KiB", env = "WEIR_MAX_HEAD")]
    max_head: bytesize::ByteSize,
    /// Runs executing at once.
    #[arg(long, default_value_t = 256, env = "WEIR_CONCURRENCY")]
    concurrency: usize,
    /// Webhooks that may wait to be written to disk; past it the gateway answers 503.
    #[arg(long, default_value_t = 1024, env = "WEIR_ACCEPT_QUEUE")]
    accept_queue: usize,
    /// On SIGTERM or Ctrl-C, how long to let open requests and executing runs finish before
    /// exiting; connections still open are closed, and runs cut off run again at the next start.
    #[arg(long, default_value = "10s", env = "WEIR_SHUTDOWN_GRACE", value_parser = humantime::parse_duration)]
    shutdown_grace: std::time::Duration,
    /// Bytes of request body the executing runs may hold at once, beside --concurrency: a run
    /// waits for room for its body before it starts (a larger body runs alone). Each byte of
    /// body costs a few in memory while its run executes. 0: no limit.
    #[arg(long, default_value = "64 MiB", env = "WEIR_PAYLOAD_BUDGET")]
    payload_budget: bytesize::ByteSize,
    #[command(flatten)]
    plugin_places: PluginPlacesArgs,
    /// A PEM file of CA certificates that steps' HTTPS calls trust besides the webpki roots
    /// (a private PKI, or a test CA).
    #[arg(long, value_name = "PEM", env = "WEIR_EXTRA_CA")]
    extra_ca: Option<PathBuf>,
    /// Delete finished runs received longer ago than this (e.g. 30d), with their payloads and
    /// steps. Default: runs are kept for good. Flows may keep less (`retain` in the flow).
    #[arg(long, value_name = "AGE", env = "WEIR_RETAIN", value_parser = humantime::parse_duration)]
    retain: Option<std::time::Duration>,
    /// Keep at most this many runs: the oldest finished ones beyond it are deleted.
    /// Default: no limit.
    #[arg(long, value_name = "N", env = "WEIR_RETAIN_RUNS", value_parser = clap::value_parser!(u64).range(1..))]
    retain_runs: Option<u64>,
    /// Keep the bytes the store uses (not the file's length, which redb reuses rather than
    /// shrinks: see `weir compact`) under this (e.g. 10GiB), deleting the oldest finished runs.
    /// Default: no limit.
    #[arg(long, value_name = "SIZE", env = "WEIR_RETAIN_BYTES")]
    retain_bytes: Option<bytesize::ByteSize>,
}

/// Where flows may load `.wasm` plugins from: the flows folder, unless these say more.
#[derive(clap::Args)]
struct PluginPlacesArgs {
    /// Let flows load `.wasm` plugins from anywhere the server can read, not only from the
    /// flows folder.
    #[arg(long, env = "WEIR_PLUGINS_ANYWHERE")]
    plugins_anywhere: bool,
    /// A folder flows may load `.wasm` plugins from, besides the flows folder (repeatable;
    /// in the environment variable, separated by `:`).
    #[arg(
        long = "plugin-dir",
        value_name = "DIR",
        env = "WEIR_PLUGIN_DIRS",
        value_delimiter = ':'
    )]
    plugin_dirs: Vec<PathBuf>,
}

impl PluginPlacesArgs {
    fn places(&self) -> weir::flow::PluginPlaces {
        weir::flow::PluginPlaces {
            anywhere: self.plugins_anywhere,
            dirs: self.plugin_dirs.clone(),
        }
    }
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Run one step plugin once: prints its output JSON, its logs on stderr.
    Run {
        /// A built-in plugin's name, or the path of a .wasm component.
        plugin: String,
        /// The step's input JSON: a file, or - for standard input.
        #[arg(long, default_value = "-")]
        input: String,
        /// The step's config JSON file (default: {}).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Longest the step may run.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Memory the step may use, e.g. "64 MiB".
        #[arg(long, default_value = "64 MiB")]
        memory: bytesize::ByteSize,
    },
    /// Create a new plugin crate on the Weir SDK.
    New {
        /// The plugin's name (lower-case letters, digits, '-').
        name: String,
        /// The folder to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// A weir-sdk folder to depend on, instead of the SDK this binary carries (written into
        /// the new crate as weir-sdk/).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Replay(args) => remote::replay(args),
        Command::Token(remote::TokenCommand::Rotate {
            flow,
            overlap,
            admin,
        }) => remote::rotate_token(&flow, overlap, &admin),
        Command::Validate {
            paths,
            plugin_places,
        } => return local::validate(&paths, &plugin_places.places()),
        Command::Check { data } => return local::check_store(&data),
        Command::Compact { data } => return local::compact_store(&data),
        Command::Run {
            flow,
            payload,
            headers,
            method,
            plugin_places,
            extra_ca,
        } => local::run_flow(
            &flow,
            &payload,
            &headers,
            &method,
            &plugin_places.places(),
            extra_ca.as_deref(),
        ),
        Command::Plugin(PluginCommand::Run {
            plugin,
            input,
            config,
            timeout,
            memory,
        }) => local::plugin_run(&plugin, &input, config.as_deref(), timeout, memory.as_u64()),
        Command::Plugin(PluginCommand::New { name, dir, sdk }) => {
            weir::scaffold::new_plugin(&dir, &name, sdk.as_deref())
                .map(|path| {
                    println!("created {}", path.display());
                    println!(
                        "next: cd {} && cargo test && cargo build --release --target wasm32-wasip2",
                        path.display()
                    );
                })
                .map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<weir::server::ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let running = weir::server::start(weir::server::ServeConfig {
            flows: args.flows,
            data: args.data,
            listen: args.listen,
            admin_listen: args.admin_listen,
            public_url: args.public_url,
            admin_token: args.admin_token,
            admin_hosts: args.admin_hosts,
            max_connections: args.max_connections,
            admin_max_connections: args.admin_max_connections,
            header_timeout: args.header_timeout,
            idle_timeout: args.idle_timeout,
            body_timeout: args.body_timeout,
            trusted_proxies: args.trusted_proxies,
            max_head: usize::try_from(args.max_head.as_u64()).unwrap_or(usize::MAX),
            concurrency: args.concurrency,
            accept_queue: args.accept_queue,
            shutdown_grace: args.shutdown_grace,
            payload_budget: args.payload_budget.as_u64(),
            plugin_places: args.plugin_places.places(),
            cache_dir: HostConfig::default_cache_dir(),
            extra_ca: args.extra_ca,
            retain: weir::retention::Limits {
                age: args.retain,
                runs: args.retain_runs,
                bytes: args.retain_bytes.map(|size| size.as_u64()),
            },
        })
        .await?;
        // Tests and scripts read these two lines to find ephemeral ports.
        println!("webhooks: http://{}", running.webhook_addr);
        println!("admin: http://{}", running.admin_addr);
        shutdown_signal().await;
        tracing::info!("shutting down");
        running.shutdown().await;
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
