//! The commands that work on files, without a server: `validate`, `run`, `plugin run`, and
//! `check` and `compact` of a stopped store. `serve` is in `main.rs`, the commands that talk to
//! a running server's admin API in `remote.rs`.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use weir::plugin::{CallContext, HostConfig, Limits, PluginHost};

fn read_json(source: &str, what: &str) -> anyhow::Result<String> {
    let text = if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .with_context(|| format!("reading the {what} from standard input"))?;
        text
    } else {
        std::fs::read_to_string(source)
            .with_context(|| format!("reading the {what} from {source}"))?
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .with_context(|| format!("the {what} is not valid JSON"))?;
    Ok(text)
}

pub(crate) fn plugin_run(
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
    let host = local_host()?;
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
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    if let Err(refused) = runtime.block_on(loaded.validate_config(&config, &limits)) {
        bail!("the plugin refuses the config: {refused}");
    }
    let call = runtime.block_on(loaded.call(&ctx, &input, &config, &limits));
    for line in &call.logs {
        eprintln!(
            "[{}] {}",
            serde_json::to_value(line.level)?.as_str().unwrap_or("log"),
            line.message
        );
    }
    match call.result {
        Ok(output) => {
            println!("{}", serde_json::to_string_pretty(&output)?);
            Ok(())
        }
        Err(failure) => bail!("step failed: {failure}"),
    }
}

/// The flow files named on the command line: files as they are, folders by their `*.toml`.
fn flow_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let defaults = [PathBuf::from("./flows")];
    let paths = if paths.is_empty() {
        &defaults[..]
    } else {
        paths
    };
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// The plugin host of the commands that run without a server (`step`, `run`, `validate`):
/// the default compile cache, pooling where it works.
fn local_host() -> Result<PluginHost, weir::plugin::PluginError> {
    PluginHost::new(HostConfig {
        cache_dir: HostConfig::default_cache_dir(),
        no_pooling: false,
    })
}

/// Loads every step's plugin and has it check the step's config, as `serve` does, so that a
/// file that is not a valid step component, or a config the plugin cannot use, fails
/// validation rather than the first load or run. One error per step: at its `plugin` value
/// when the plugin does not load, at its `config` value when the plugin refuses the config.
fn check_plugins(
    flow: &weir::flow::Flow,
    file: &Path,
    host: &mut Option<Result<PluginHost, String>>,
    runtime: &tokio::runtime::Runtime,
) -> Vec<weir::flow::Diagnostic> {
    let mut errors = Vec::new();
    for step in &flow.steps {
        let host = host.get_or_insert_with(|| {
            local_host().map_err(|e| format!("cannot start the plugin host: {e}"))
        });
        let loaded = match host {
            Ok(host) => match &step.plugin {
                weir::flow::PluginRef::Builtin(name) => host.load_builtin(name),
                weir::flow::PluginRef::Path(path) => host.load_file(path),
            }
            .map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        match loaded {
            Ok(plugin) => errors
                .extend(runtime.block_on(weir::catalog::check_config(flow, step, &plugin, file))),
            Err(problem) => {
                let (line, column) = step.plugin_at;
                errors.push(weir::flow::Diagnostic {
                    file: file.to_owned(),
                    line,
                    column,
                    message: format!("in step '{}': {problem}", step.id),
                });
            }
        }
    }
    errors
}

fn load_flow(
    path: &Path,
    plugin_places: &weir::flow::PluginPlaces,
) -> Result<weir::flow::Flow, String> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: error: cannot read: {e}", path.display()))?;
    let context = weir::flow::LoadContext {
        env: &|name: &str| std::env::var(name).ok(),
        is_builtin: &|name: &str| PluginHost::builtin_names().any(|n| n == name),
        plugin_exists: &|plugin: &Path| plugin.is_file(),
        plugin_places,
    };
    weir::flow::parse_flow_with(path, &source, &context).map_err(|d| d.to_string())
}

pub(crate) fn compact_store(data: &Path) -> ExitCode {
    match weir::store::compact(data) {
        Ok(done) => {
            println!(
                "{}: {} before, {} after",
                data.display(),
                bytesize::ByteSize(done.before),
                bytesize::ByteSize(done.after)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

pub(crate) fn check_store(data: &Path) -> ExitCode {
    let report = match weir::store::check(data) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    for damaged in &report.damaged {
        println!("damaged: {damaged}");
    }
    if report.pending_commits > 0 {
        println!(
            "journal: {} commits not yet in the store file; Weir applies them when it starts",
            report.pending_commits
        );
    }
    println!(
        "{}: {} runs, {} records read, {} damaged",
        data.display(),
        report.runs,
        report.records,
        report.damaged.len()
    );
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub(crate) fn validate(paths: &[PathBuf], plugin_places: &weir::flow::PluginPlaces) -> ExitCode {
    let files = match flow_files(paths) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if files.is_empty() {
        eprintln!("error: no flow files found");
        return ExitCode::FAILURE;
    }
    let mut failed = 0;
    // Built for the first flow that parses.
    let mut host = None;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    for file in &files {
        let checked = load_flow(file, plugin_places).and_then(|flow| {
            let errors = check_plugins(&flow, file, &mut host, &runtime);
            if errors.is_empty() {
                Ok(flow)
            } else {
                Err(weir::flow::Diagnostics(errors).to_string())
            }
        });
        match checked {
            Ok(flow) => println!(
                "ok: {} ({} steps, version {})",
                file.display(),
                flow.steps.len(),
                flow.version
            ),
            Err(errors) => {
                failed += 1;
                eprintln!("{errors}");
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} flow files have errors", files.len());
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints each step record; keeps the last one's place and attempts, to resume a retry.
#[derive(Default)]
struct PrintSink {
    last: Option<weir::run::Resume>,
}

impl weir::run::StepSink for PrintSink {
    async fn record(&mut self, step: weir::store::StepRecord) {
        self.last = Some(weir::run::Resume {
            index: step.index as usize,
            attempts: step.attempts.clone(),
        });
        let status = serde_json::to_value(step.status).ok();
        let status = status.as_ref().and_then(|s| s.as_str()).unwrap_or("?");
        eprintln!(
            "── step {} ({}): {} in {} µs",
            step.step_id, step.plugin, status, step.duration_us
        );
        for line in &step.logs {
            eprintln!("   [{}] {}", line.level, line.message);
        }
        if let Some(error) = &step.error {
            eprintln!("   error ({}): {}", error.kind, error.message);
        }
        if let Some(output) = &step.output {
            println!(
                "{}",
                serde_json::json!({ "step": step.step_id, "output": output })
            );
        }
    }
}

pub(crate) fn run_flow(
    flow_path: &Path,
    payload: &str,
    headers: &[String],
    method: &str,
    plugin_places: &weir::flow::PluginPlaces,
    extra_ca: Option<&Path>,
) -> anyhow::Result<()> {
    let flow = load_flow(flow_path, plugin_places).map_err(|e| anyhow::anyhow!("{e}"))?;
    let body = if payload == "-" {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .context("reading the payload from standard input")?;
        body
    } else {
        std::fs::read(payload).with_context(|| format!("reading the payload {payload}"))?
    };
    let mut header_list = Vec::new();
    for header in headers {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("header '{header}' is not 'Name: value'"))?;
        header_list.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    if !header_list.iter().any(|(n, _)| n == "content-type") {
        header_list.push(("content-type".into(), "application/json".into()));
    }
    let mut host = local_host()?;
    if let Some(pem) = extra_ca {
        host.set_outbound(
            weir::plugin::outbound::OutboundConfig::new(Some(pem))
                .context("setting up outbound HTTPS")?,
        );
    }
    let mut plugins = Vec::new();
    for step in &flow.steps {
        let plugin = match &step.plugin {
            weir::flow::PluginRef::Builtin(name) => host.load_builtin(name)?,
            weir::flow::PluginRef::Path(path) => host.load_file(path)?,
        };
        plugins.push(plugin);
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let refused: Vec<_> = flow
        .steps
        .iter()
        .zip(&plugins)
        .filter_map(|(step, plugin)| {
            runtime.block_on(weir::catalog::check_config(&flow, step, plugin, flow_path))
        })
        .collect();
    if !refused.is_empty() {
        bail!("{}", weir::flow::Diagnostics(refused));
    }
    let request = weir::store::RawRequest {
        method: method.to_ascii_uppercase(),
        path: format!("/hooks/{}/local", flow.id),
        query: String::new(),
        headers: header_list,
        body,
        remote_addr: None,
        received_at: std::time::SystemTime::now(),
    };
    // What the gateway would check before storing the webhook.
    if let Some(verify) = &flow.webhook.verify {
        let signed = weir::verify::Request {
            headers: &request.headers,
            query: &request.query,
            body: &request.body,
        };
        if let Err(refusal) = verify.check(&signed, request.received_at) {
            bail!(
                "the webhook would be refused with 401: it fails its {} check: {refusal}",
                verify.scheme()
            );
        }
        eprintln!("verify: the {} check passes", verify.scheme());
    }
    let webhook = weir::run::payload::webhook_document("local", &request);
    if flow.webhook.dedupe.is_some() {
        let context = serde_json::json!({ "webhook": &webhook });
        match flow.webhook.dedupe_key(&context) {
            Some(key) => eprintln!("dedupe key: {}", key.escape_debug()),
            None => eprintln!("dedupe key: none (the query selects nothing; never a duplicate)"),
        }
    }
    let live = std::sync::Arc::new(weir::catalog::LiveFlow { flow, plugins });
    let info = weir::run::RunInfo {
        run_id: "local".into(),
        attempt: 1,
    };
    let mut sink = PrintSink::default();
    let mut outcome = runtime.block_on(weir::run::execute_steps(
        live.clone(),
        webhook,
        &info,
        &mut sink,
    ));
    // A step with attempts left is tried again at the time the engine chose (its backoff),
    // from where it failed, as `serve` resumes a retrying run.
    while let (Some(at), Some(resume)) = (outcome.retry_at, sink.last.take()) {
        let wait = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        eprintln!(
            "{}; retrying in {} ms",
            outcome.error.as_deref().unwrap_or("the step failed"),
            wait.as_millis()
        );
        std::thread::sleep(wait);
        outcome = runtime.block_on(weir::run::execute_from(
            live.clone(),
            outcome.context,
            resume,
            &info,
            &mut sink,
        ));
    }
    let status = serde_json::to_value(outcome.outcome)?;
    eprintln!("run {}", status.as_str().unwrap_or("?"));
    match (outcome.outcome, outcome.error) {
        (weir::store::RunOutcome::Failed, Some(error)) => bail!("{error}"),
        (_, Some(note)) => {
            eprintln!("{note}");
            Ok(())
        }
        _ => Ok(()),
    }
}
