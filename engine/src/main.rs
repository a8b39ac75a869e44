//! The `weir` command line.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use weir::plugin::{CallContext, HostConfig, Limits, PluginHost};

#[derive(Parser)]
#[command(name = "weir", version, about = "Receive webhooks, keep them safely, run flows on them.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write, run and test step plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
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
        /// The weir-sdk crate to depend on (default: the SDK this binary was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plugin(PluginCommand::Run {
            plugin,
            input,
            config,
            timeout,
            memory,
        }) => plugin_run(&plugin, &input, config.as_deref(), timeout, memory.as_u64()),
        Command::Plugin(PluginCommand::New { name, dir, sdk }) => {
            let sdk = sdk.unwrap_or_else(weir::scaffold::bundled_sdk);
            weir::scaffold::new_plugin(&dir, &name, &sdk)
                .map(|path| {
                    println!("created {}", path.display());
                    println!("next: cd {} && cargo test && cargo build --release --target wasm32-wasip2", path.display());
                })
                .map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn read_json(source: &str, what: &str) -> anyhow::Result<String> {
    let text = if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .with_context(|| format!("reading the {what} from standard input"))?;
        text
    } else {
        std::fs::read_to_string(source).with_context(|| format!("reading the {what} from {source}"))?
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .with_context(|| format!("the {what} is not valid JSON"))?;
    Ok(text)
}

fn plugin_run(
    plugin: &str,
    input: &str,
    config: Option<&Path>,
    timeout: std::time::Duration,
    memory: u64,
) -> anyhow::Result<()> {
    let input = read_json(input, "input")?;
    let config = match config {
        Some(path) => read_json(&path.display().to_string(), "config")?,
        None => "{}".to_owned(),
    };
    let host = PluginHost::new(HostConfig {
        cache_dir: HostConfig::default_cache_dir(),
        no_pooling: false,
    })?;
    let loaded = if plugin.ends_with(".wasm") || Path::new(plugin).exists() {
        host.load_file(Path::new(plugin))?
    } else {
        host.load_builtin(plugin)?
    };
    let limits = Limits {
        timeout,
        memory,
        ..Limits::default()
    };
    let ctx = CallContext {
        run_id: "local".into(),
        flow_id: "local".into(),
        step_id: "step".into(),
        attempt: 1,
    };
    let call = loaded.call(&ctx, &input, &config, &limits);
    for line in &call.logs {
        eprintln!("[{}] {}", serde_json::to_value(line.level)?.as_str().unwrap_or("log"), line.message);
    }
    match call.result {
        Ok(output) => {
            println!("{}", serde_json::to_string_pretty(&output)?);
            Ok(())
        }
        Err(failure) => bail!("step failed ({}): {failure}", failure.kind()),
    }
}
