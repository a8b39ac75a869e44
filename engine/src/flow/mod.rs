//! Flows: what runs when a webhook arrives, as read from `flows/<flow_id>.toml`.
//!
//! This module owns the flow model ([`Flow`], [`Step`], [`WebhookSpec`]), reading a flow file
//! with every problem reported at once and located by line and column ([`parse_flow`],
//! [`Diagnostics`]), the JSONPath [`Query`] layer, and the [`Mapping`]s that build each step's
//! input from the run context. It is pure: the caller passes the file's text, the environment
//! and what plugins exist, and nothing here reads files or the process environment itself
//! (except [`parse_flow`]'s check that a `.wasm` plugin file exists; [`parse_flow_with`] takes
//! that check from the caller too; and [`PluginPlaces`] following symbolic links to see where a
//! plugin file really is).
//!
//! A flow file looks like this:
//!
//! ```toml
//! name = "GitHub issues to Slack"                 # required
//! description = "Announce newly opened issues."   # optional
//! concurrency = 4          # optional: runs of this flow executing at once (1 to 2^20)
//! order_by = "$.webhook.body.customer"   # optional: runs with equal values execute one at a
//!                          # time, in accept order (see `crate::run`)
//!
//! [webhook]                # optional
//! methods = ["POST"]       # default ["POST"]
//! max_body = "1 MiB"       # default 1 MiB, at most 64 MiB
//! max_head = "64 KiB"      # path, query and headers; default 64 KiB, 1 KiB to 1 MiB
//! dedupe = "$.webhook.headers['x-github-delivery']"  # optional; a redelivery starts no run;
//!                          # default: the verify scheme's delivery id; `false`: off
//! dedupe_window = "3d"     # how long a value holds (default: 7d for a scheme's delivery id,
//!                          # else as long as runs are kept)
//! respond = "accepted"     # default; or "result": answer with the last step's output
//! respond_timeout = "10s"  # with "result": how long to wait before answering 202 (max 5m)
//! verify = { scheme = "github", secret = "${GITHUB_WEBHOOK_SECRET}" }  # see `crate::verify`
//! slack_url_verification = true   # handshakes, see `Handshakes`; all off by default
//! meta_verify_token = "${META_VERIFY_TOKEN}"
//! graph_validation = true
//! echo_challenge = true
//! allow_ips = ["192.0.2.0/24", "2001:db8::/32"]  # optional; others get 403
//! answer = { status = 200, headers = { "content-type" = "text/plain" }, body = "ok" }
//!                          # optional; with "result" its values may be queries on the run
//!
//! [[steps]]
//! id = "opened"                          # unique; `webhook` is reserved
//! plugin = "filter"                      # a built-in plugin, or a path ending in .wasm
//! when = "$.webhook.body.action"         # optional; the step is skipped when it selects nothing
//! input = "$.webhook.body.action"        # a mapping, see `Mapping`
//! config = { equals = "opened" }         # static JSON; strings take `${ENV}` values
//! timeout = "5s"                         # optional, up to 10 minutes
//! memory = "64 MiB"                      # optional, 1 MiB to 4 GiB
//! allow_hosts = ["https://hooks.slack.com", "https://*.example.com:8443"]  # optional: outbound HTTP
//! allow_private = false                  # with allow_hosts: exact names may resolve to private addresses
//! max_response = "10 MiB"                # with allow_hosts: largest response body (default 10 MiB)
//! max_request = "10 MiB"                 # with allow_hosts: largest request body (default 10 MiB)
//! ```

mod diagnostic;
mod env;
mod id;
mod loader;
mod mapping;
mod projection;
mod query;
mod redact;
mod retry;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use id::{FlowId, IdError, StepId};
pub use mapping::{Mapping, MappingError};
pub use projection::Projection;

/// A projection that reads nothing.
static NOTHING: Projection = Projection::Fields(std::collections::BTreeMap::new());
pub use query::{Query, QueryError};
pub use redact::{MIN_REDACTED_LEN, Redactor};
pub use retry::{Jitter, MAX_RETRIES, RetryPolicy};

/// The methods a webhook accepts when its flow does not say.
pub const DEFAULT_METHODS: &[&str] = &["POST"];
/// The largest request body a webhook accepts when its flow does not say: 1 MiB.
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;
/// The largest `max_body` a flow may ask for: 64 MiB. Bodies are kept whole in memory and on
/// disk, so this bounds what one sender can cost.
pub const MAX_MAX_BODY: u64 = 64 << 20;
/// The largest request head (path, query and headers) a webhook accepts when its flow does not
/// say: 64 KiB. The head is stored with every run, so `max_body` alone does not bound a run.
pub const DEFAULT_MAX_HEAD: u64 = 64 << 10;
/// The least `max_head` a flow may ask for: 1 KiB.
pub const MIN_MAX_HEAD: u64 = 1 << 10;
/// The largest `max_head` a flow may ask for: 1 MiB (the server's `--max-head` bounds every
/// head before any flow is chosen, so a flow asking more also needs it raised).
pub const MAX_MAX_HEAD: u64 = 1 << 20;
/// The largest `concurrency` a flow may ask for (the server's `--concurrency` bounds every
/// flow's runs beside it).
pub const MAX_CONCURRENCY: u32 = 1 << 20;
/// The longest `timeout` a step may ask for: 10 minutes.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The least `memory` a step may ask for: 1 MiB (a WebAssembly page is 64 KiB; less than this
/// does not run a Rust guest).
pub const MIN_MEMORY: u64 = 1 << 20;
/// The most `memory` a step may ask for: 4 GiB, the 32-bit WebAssembly address space.
pub const MAX_MEMORY: u64 = 4 << 30;

/// A checked flow, ready to run.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The file stem of the flow file.
    pub id: FlowId,
    /// Display name.
    pub name: String,
    /// What the flow is for, when the file says.
    pub description: Option<String>,
    /// What requests the webhook accepts.
    pub webhook: WebhookSpec,
    /// The steps, in file order (the order they run in).
    pub steps: Vec<Step>,
    /// The first 16 hex digits of the SHA-256 of the file's bytes: runs record the version they
    /// ran, and an unchanged file keeps its version across reloads.
    pub version: String,
    /// The flow file, as the caller named it.
    pub source_path: PathBuf,
    /// Masks the `${ENV}` values the flow uses (in config and `verify`) out of everything a
    /// run stores and serves.
    pub redactor: Redactor,
    /// `[webhook] answer`: what the sender is answered in place of the default, a mapping
    /// that gives `{status, headers, body}` (constant with `respond = "accepted"`; read from
    /// the run context at the end of the run with `respond = "result"`).
    pub answer: Option<Mapping>,
    /// `concurrency`: the most runs of this flow that execute at once; `None`: only the
    /// server's `--concurrency` bounds them.
    pub concurrency: Option<u32>,
    /// `order_by`: a singular query on `$.webhook`, read when the webhook arrives; runs whose
    /// values are equal execute one at a time, in the order they were accepted. Runs where it
    /// selects nothing (or `null`) share one lane of their own, also one at a time.
    pub order_by: Option<Query>,
    /// `on_failure`: the flow started with a failed run's context when a run of this one
    /// fails (after its retries). Runs started this way never start another.
    pub on_failure: Option<FlowId>,
    /// `retain`: how many and how old of the flow's finished runs the store keeps, beside
    /// `weir serve`'s own limits (a run goes once it is beyond any of them).
    pub retain: Retain,
    /// What of the run context the flow's queries can read (see [`Projection`]): a run
    /// decodes its JSON body only that far.
    pub reads: Projection,
}

/// A flow's `retain = { age = "7d", runs = 10000 }`; no limit where a key is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retain {
    /// Finished runs received longer ago than this are deleted.
    pub age: Option<Duration>,
    /// Only this many of the newest finished runs are kept.
    pub runs: Option<u64>,
}

impl Flow {
    /// What runs of a flow with these steps, `answer` and (when `whole_webhook`) an
    /// `on_failure`, which is given the webhook as it came, read of their context.
    pub(crate) fn context_reads(
        steps: &[Step],
        answer: Option<&Mapping>,
        whole_webhook: bool,
    ) -> Projection {
        let mut reads = Projection::default();
        for step in steps {
            if let Some(when) = &step.when {
                reads.add_query(when);
            }
            step.input.add_reads(&mut reads);
        }
        if let Some(answer) = answer {
            answer.add_reads(&mut reads);
        }
        if whole_webhook {
            reads.add_whole(&["webhook"]);
        }
        reads
    }

    /// What of its JSON body a run of this flow reads.
    pub fn body_reads(&self) -> &Projection {
        self.reads
            .member("webhook")
            .and_then(|webhook| webhook.member("body"))
            .unwrap_or(&NOTHING)
    }

    /// The step with id `id`.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|step| step.id.as_str() == id)
    }
}

/// What requests a flow's webhook accepts (`[webhook]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSpec {
    /// Accepted HTTP methods, upper-case, without duplicates; never empty.
    pub methods: Vec<String>,
    /// The largest accepted request body, in bytes.
    pub max_body: u64,
    /// The largest accepted request head (path, query and headers), in bytes.
    pub max_head: u64,
    /// A singular query on `$.webhook` whose value identifies a delivery: a webhook whose
    /// value was already accepted for this flow is answered with the first run and starts
    /// none. A webhook where it selects nothing (or `null`) is never a duplicate.
    pub dedupe: Option<Query>,
    /// Where `dedupe` comes from, when there is one.
    pub dedupe_from: Option<DedupeFrom>,
    /// How long a dedupe value holds (`dedupe_window`): a delivery whose first run came
    /// longer ago than this is a new run. `None`: for as long as the first run is kept.
    pub dedupe_window: Option<Duration>,
    /// What the sender is answered.
    pub respond: Respond,
    /// How a request proves it comes from the sender; checked before anything is stored.
    pub verify: Option<crate::verify::Verify>,
    /// The URL checks of senders that must see an answer before they send webhooks.
    pub handshakes: Handshakes,
    /// `allow_ips`: the networks a webhook may come from (see `--trusted-proxy` for senders
    /// behind a proxy); `None`: any.
    pub allow_ips: Option<Vec<ipnet::IpNet>>,
}

/// The handshakes a flow answers (`[webhook]` keys), each for the senders that use it. A
/// handshake is answered by the gateway, `200` with `text/plain`, and starts no run.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Handshakes {
    /// `slack_url_verification = true`: Slack's Events API sends
    /// `{"type": "url_verification", "challenge": …}` and wants the challenge back. Slack signs
    /// it, so it is answered only once the flow's `verify` passed.
    pub slack: bool,
    /// `meta_verify_token = "…"`: Meta (Facebook, WhatsApp, Instagram) subscribes with
    /// `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`; the challenge is echoed when
    /// the token matches this one (constant-time), and a wrong token gets `403`.
    pub meta_verify_token: Option<String>,
    /// `graph_validation = true`: Microsoft Graph validates a subscription's URL with
    /// `?validationToken=…` and wants it back within 10 seconds.
    pub graph: bool,
    /// `echo_challenge = true`: Dropbox and others send `GET ?challenge=…` and want it back.
    pub echo_challenge: bool,
}

impl std::fmt::Debug for Handshakes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshakes")
            .field("slack", &self.slack)
            .field(
                "meta_verify_token",
                &self.meta_verify_token.as_ref().map(|_| "[redacted]"),
            )
            .field("graph", &self.graph)
            .field("echo_challenge", &self.echo_challenge)
            .finish()
    }
}

/// Where a flow's dedupe query comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupeFrom {
    /// The flow's own `dedupe`.
    Flow,
    /// The delivery id of its `verify` scheme (named), which the flow did not turn off with
    /// `dedupe = false`.
    Scheme(&'static str),
}

/// How long the delivery id of a `verify` scheme holds when the flow does not say: 7 days,
/// longer than any sender keeps redelivering.
pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// A network as `allow_ips` and `--trusted-proxy` write it: CIDR (`192.0.2.0/24`) or one
/// address (`192.0.2.7`, `2001:db8::1`). Host bits set below the prefix are refused, since
/// `10.1.2.3/8` is more likely a typo than a wish for all of `10.0.0.0/8`.
pub fn parse_ip_net(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(ipnet::IpNet::from(ip));
    }
    let net: ipnet::IpNet = text.parse().map_err(|_| {
        format!("`{text}` is not an address or a CIDR network such as \"192.0.2.0/24\"")
    })?;
    if net.trunc() != net {
        return Err(format!(
            "`{text}` has bits set past its /{} prefix; did you mean `{}`?",
            net.prefix_len(),
            net.trunc()
        ));
    }
    Ok(net)
}

/// Why an evaluated `answer` (`{status, headers, body}`) cannot be sent, if it cannot: a
/// status outside 100–599, or headers that are not a table of valid names and string values.
pub fn check_answer(answer: &Value) -> Result<(), String> {
    if let Some(status) = answer.get("status")
        && !status.as_u64().is_some_and(|s| (100..=599).contains(&s))
    {
        return Err(format!(
            "the answer's `status` must be an HTTP status (100 to 599), not {status}"
        ));
    }
    if let Some(headers) = answer.get("headers") {
        let Some(headers) = headers.as_object() else {
            return Err("the answer's `headers` must be a table of names and strings".into());
        };
        for (name, value) in headers {
            let Some(value) = value.as_str() else {
                return Err(format!(
                    "the answer's header `{name}` must be a string, not {value}"
                ));
            };
            if warp::http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || warp::http::HeaderValue::from_str(value).is_err()
            {
                return Err(format!(
                    "the answer's header `{name}: {value}` is not a valid HTTP header"
                ));
            }
        }
    }
    Ok(())
}

/// What a webhook's sender is answered (`[webhook] respond`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Respond {
    /// `202` with the run id as soon as the webhook is stored; the run follows.
    #[default]
    Accepted,
    /// The run's result: the sender waits until the run ends, up to this long, then gets the
    /// `202` of [`Respond::Accepted`] while the run goes on.
    Result { timeout: Duration },
}

/// How long a `respond = "result"` webhook waits for its run when the flow does not say.
pub const DEFAULT_RESPOND_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `respond_timeout`: senders and proxies rarely wait longer.
pub const MAX_RESPOND_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest `dedupe_window`: a year; leave it out to dedupe for as long as runs are kept.
pub const MAX_DEDUPE_WINDOW: Duration = Duration::from_secs(365 * 24 * 3600);

/// The first character of a dedupe key that is not a plain string (see
/// [`WebhookSpec::dedupe_key`]). NUL: no header can hold it, and a body string seldom does.
pub const DEDUPE_TYPED: char = '\0';

impl WebhookSpec {
    /// The dedupe key of a webhook whose run context is `context` (`{"webhook": …}`);
    /// `None` when it selects nothing or `null`, or when the flow has no `dedupe`.
    ///
    /// The key keeps the value's JSON type, so `1` and `"1"` are different deliveries: a
    /// string is its own text (as keys were before types were kept, so that redeliveries
    /// across an upgrade still match), and any other value, or a string that starts with
    /// [`DEDUPE_TYPED`], is `DEDUPE_TYPED` followed by the value's JSON text. No plain string
    /// starts with `DEDUPE_TYPED`, and JSON texts of different values differ.
    pub fn dedupe_key(&self, context: &Value) -> Option<String> {
        let query = self.dedupe.as_ref()?;
        match query.select(context).first()? {
            Value::Null => None,
            Value::String(text) if !text.starts_with(DEDUPE_TYPED) => Some(text.clone()),
            other => Some(format!("{DEDUPE_TYPED}{other}")),
        }
    }
}

impl Default for WebhookSpec {
    fn default() -> Self {
        WebhookSpec {
            methods: DEFAULT_METHODS.iter().map(|m| (*m).to_owned()).collect(),
            max_body: DEFAULT_MAX_BODY,
            max_head: DEFAULT_MAX_HEAD,
            dedupe: None,
            dedupe_from: None,
            dedupe_window: None,
            respond: Respond::Accepted,
            verify: None,
            handshakes: Handshakes::default(),
            allow_ips: None,
        }
    }
}

/// The plugin a step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginRef {
    /// A plugin built into Weir, by name (`filter`, `template`, ...).
    Builtin(String),
    /// A WebAssembly component file, as an absolute path (written relative to the flow file's
    /// folder).
    Path(PathBuf),
}

/// One step of a flow. Its `Debug` shows [`Step::redacted_config`], never an `${ENV}` value.
#[derive(Clone)]
pub struct Step {
    /// Unique within the flow.
    pub id: StepId,
    /// What runs.
    pub plugin: PluginRef,
    /// Line and column (1-based) of the `plugin` value in the flow file, for problems found
    /// only when the plugin is loaded (a `.wasm` file that does not compile).
    pub plugin_at: (usize, usize),
    /// Line and column (1-based) of the `config` value (the `plugin` value when there is no
    /// `config`), for what the plugin's `validate-config` says of it.
    pub config_at: (usize, usize),
    /// The step runs only when this query selects at least one node (any node, even `false` or
    /// `null`); no condition means it always runs.
    pub when: Option<Query>,
    /// Builds the step's input from the run context.
    pub input: Mapping,
    /// Static configuration passed to the plugin, with `${ENV}` values filled in. May hold
    /// secrets: store or show [`Step::redacted_config`] instead.
    pub config: Value,
    /// JSON Pointers (RFC 6901) to the strings of `config` that took a value from `${ENV}`.
    pub env_config: Vec<String>,
    /// How long the step may run, when the flow says.
    pub timeout: Option<Duration>,
    /// How much memory the step may use in bytes, when the flow says.
    pub memory: Option<u64>,
    /// The hosts the step may call over HTTP and the size caps of those calls; nothing is
    /// granted by default.
    pub outbound: crate::plugin::outbound::Outbound,
    /// When a failed call runs again (`retries`, `backoff`, ...); no retries by default.
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("id", &self.id)
            .field("plugin", &self.plugin)
            .field("plugin_at", &self.plugin_at)
            .field("config_at", &self.config_at)
            .field("when", &self.when)
            .field("input", &self.input)
            .field("config", &self.redacted_config())
            .field("timeout", &self.timeout)
            .field("memory", &self.memory)
            .field("outbound", &self.outbound)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Step {
    /// Whether the step runs for this run context: true without a `when`, otherwise true when
    /// the `when` query selects at least one node.
    pub fn should_run(&self, ctx: &Value) -> bool {
        self.when
            .as_ref()
            .is_none_or(|when| !when.select(ctx).is_empty())
    }

    /// `config` with every string that took a value from the environment replaced by
    /// `"[redacted]"`, for storing and showing.
    pub fn redacted_config(&self) -> Value {
        let mut config = self.config.clone();
        for pointer in &self.env_config {
            if let Some(value) = config.pointer_mut(pointer) {
                *value = Value::String("[redacted]".to_owned());
            }
        }
        config
    }
}

/// What a flow file may refer to outside itself, supplied by the caller.
pub struct LoadContext<'a> {
    /// Looks up `${NAME}` values (in production, the process environment).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Whether a plugin name (one that does not end in `.wasm`) is built in.
    pub is_builtin: &'a dyn Fn(&str) -> bool,
    /// Whether a `.wasm` plugin file exists; gets the absolute path.
    pub plugin_exists: &'a dyn Fn(&Path) -> bool,
    /// Where `.wasm` plugin files may be.
    pub plugin_places: &'a PluginPlaces,
}

/// Where a flow's `.wasm` plugin files may be: by default only in the flow file's folder (the
/// flows folder) and below it, so that whoever edits flows cannot run any component the
/// server can read elsewhere on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginPlaces {
    /// Anywhere (`--plugins-anywhere`).
    pub anywhere: bool,
    /// These folders too (`--plugin-dir`), with the flows folder.
    pub dirs: Vec<PathBuf>,
}

impl PluginPlaces {
    /// Whether `plugin` (absolute) may be loaded by a flow in `flow_dir`. Paths are compared
    /// with `..` resolved and symbolic links followed where they exist, so neither leads out.
    pub fn allows(&self, flow_dir: &Path, plugin: &Path) -> bool {
        if self.anywhere {
            return true;
        }
        let plugin = resolved(plugin);
        std::iter::once(flow_dir)
            .chain(self.dirs.iter().map(PathBuf::as_path))
            .any(|dir| plugin.starts_with(resolved(dir)))
    }
}

/// `path` made absolute, through its symbolic links when it exists, else with `.` and `..`
/// resolved by their names.
fn resolved(path: &Path) -> PathBuf {
    // A flow file named without a folder is in the current one.
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Reads the flow file at `path` whose text is `source`.
///
/// `env` supplies `${NAME}` values and `builtin` says which plugin names are built in. A `.wasm`
/// plugin must exist as a file, relative to the flow file's folder, and lie in that folder (the
/// default [`PluginPlaces`]). Returns every problem of the
/// file at once when there is any.
pub fn parse_flow(
    path: &Path,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
    builtin: &dyn Fn(&str) -> bool,
) -> Result<Flow, Diagnostics> {
    parse_flow_with(
        path,
        source,
        &LoadContext {
            env,
            is_builtin: builtin,
            plugin_exists: &|plugin: &Path| plugin.is_file(),
            plugin_places: &PluginPlaces::default(),
        },
    )
}

/// Like [`parse_flow`], with every outside fact, plugin files included, from `ctx`.
pub fn parse_flow_with(
    path: &Path,
    source: &str,
    ctx: &LoadContext<'_>,
) -> Result<Flow, Diagnostics> {
    loader::load(path, source, ctx)
}

#[cfg(test)]
mod tests;
