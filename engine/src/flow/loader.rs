//! Reading a flow file: TOML with spans in, a checked [`Flow`] or every problem out.
//!
//! serde stops at the first error, and a user fixing a flow wants them all, so the loader walks
//! the spanned document `toml` parses (`DeTable`) and records a problem wherever it finds one,
//! then carries on with the next key, the next step. A flow is built only when nothing was
//! found.

use std::ffi::OsStr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::{Diagnostic, Diagnostics, LineIndex};
use super::env::interpolate;
use super::id::{FlowId, StepId};
use super::mapping::{Mapping, Node, Selection, place_index, place_key};
use super::query::Query;
use super::redact::Redactor;
use super::retry::RetryPolicy;
use super::{Flow, LoadContext, MAX_MEMORY, MAX_TIMEOUT, MIN_MEMORY, PluginRef, Step, WebhookSpec};
use crate::plugin::outbound::{Grant, MAX_MAX_REQUEST, MAX_MAX_RESPONSE, Outbound};
mod schedule;
mod step;
mod webhook;

type Item<'i> = Spanned<DeValue<'i>>;

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "concurrency",
    "order_by",
    "on_failure",
    "webhook",
    "steps",
];
const STEP_KEYS: &[&str] = &[
    "id",
    "plugin",
    "when",
    "input",
    "config",
    "timeout",
    "memory",
    "allow_hosts",
    "allow_private",
    "max_response",
    "max_request",
    "retries",
    "backoff",
    "max_backoff",
    "jitter",
    "retry_on_trap",
];
const DEFAULT_KEYS: &[&str] = &["$path", "$default"];

/// The id reserved for the request that starts a run (`$.webhook`).
const WEBHOOK_STEP: &str = "webhook";

pub(crate) fn load(path: &Path, source: &str, ctx: &LoadContext<'_>) -> Result<Flow, Diagnostics> {
    let mut loader = Loader {
        source,
        lines: LineIndex::new(source),
        ctx,
        flow_dir: path.parent().unwrap_or(Path::new("")).to_path_buf(),
        step_label: None,
        problems: Vec::new(),
        env_used: Vec::new(),
    };
    let flow = loader.flow(path);
    let Loader {
        lines,
        mut problems,
        ..
    } = loader;
    match flow {
        Some(flow) if problems.is_empty() => Ok(flow),
        _ => {
            if problems.is_empty() {
                // Every `None` above records a problem; this only guards against a loader bug.
                problems.push((0, "internal error: the flow could not be built".to_owned()));
            }
            problems.sort_by_key(|(offset, _)| *offset);
            Err(Diagnostics(
                problems
                    .into_iter()
                    .map(|(offset, message)| {
                        let (line, column) = lines.line_col(offset);
                        Diagnostic {
                            file: path.to_path_buf(),
                            line,
                            column,
                            message,
                        }
                    })
                    .collect(),
            ))
        }
    }
}

/// The raw id of a step as written, kept to check ids and references across steps.
struct WrittenId {
    text: String,
    offset: usize,
}

/// A step as far as it could be read; the ids are attached once the whole flow is known good.
struct StepDraft {
    id: Option<StepId>,
    plugin: Option<PluginRef>,
    plugin_at: (usize, usize),
    config_at: (usize, usize),
    when: Option<Query>,
    input: Node,
    config: Value,
    env_config: Vec<String>,
    timeout: Option<Duration>,
    memory: Option<u64>,
    outbound: Outbound,
    retry: RetryPolicy,
}

struct Loader<'s, 'c> {
    source: &'s str,
    lines: LineIndex<'s>,
    ctx: &'c LoadContext<'c>,
    /// The folder of the flow file; plugin paths are relative to it.
    flow_dir: PathBuf,
    /// `step 'x'` while reading a step, to prefix its messages.
    step_label: Option<String>,
    /// (byte offset, message)
    problems: Vec<(usize, String)>,
    /// Every `${NAME}` the flow reads, with its value: what its redactor masks.
    env_used: Vec<(String, String)>,
}

impl Loader<'_, '_> {
    fn error(&mut self, offset: usize, message: impl Into<String>) {
        let message = message.into();
        let message = match &self.step_label {
            Some(label) => format!("in {label}: {message}"),
            None => message,
        };
        self.problems.push((offset, message));
    }

    fn flow(&mut self, path: &Path) -> Option<Flow> {
        let document = match DeTable::parse(self.source) {
            Ok(document) => document,
            Err(err) => {
                let offset = err.span().map_or(0, |span| span.start);
                self.error(offset, format!("invalid TOML: {}", err.message()));
                return None;
            }
        };
        let id = self.flow_id(path);
        let table = document.get_ref();
        self.unknown_keys(table, TOP_KEYS, "at the top level");

        let name = match table.get("name") {
            None => {
                self.error(
                    0,
                    "missing `name`: give the flow a display name, \
                     such as `name = \"GitHub issues to Slack\"`",
                );
                None
            }
            Some(item) => self.string(item, "name").and_then(|name| {
                if name.trim().is_empty() {
                    self.error(item.span().start, "`name` must not be empty");
                    None
                } else {
                    Some(name.to_owned())
                }
            }),
        };
        let description = match table.get("description") {
            None => Some(None),
            Some(item) => self
                .string(item, "description")
                .map(|text| Some(text.to_owned())),
        };
        let concurrency = match table.get("concurrency") {
            None => Some(None),
            Some(item) => self.concurrency(item).map(Some),
        };
        let order_by = match table.get("order_by") {
            None => Some(None),
            Some(item) => self.order_by(item).map(Some),
        };
        let webhook = match table.get("webhook") {
            None => Some(WebhookSpec::default()),
            Some(item) => self.webhook(item),
        };
        let steps = match table.get("steps") {
            None => Some(Vec::new()),
            Some(item) => self.steps(item),
        };
        // The answer may read every step's output.
        let answer_item = table
            .get("webhook")
            .and_then(|webhook| webhook.get_ref().as_table())
            .and_then(|webhook| webhook.get("answer"));
        let answer = match answer_item {
            None => Some(None),
            Some(item) => {
                let written = table.get("steps").map(written_ids).unwrap_or_default();
                let scope = Scope {
                    index: written.len(),
                    written: &written,
                };
                let respond = webhook.as_ref().map(|w| w.respond);
                self.answer(item, respond, &scope, id.clone()).map(Some)
            }
        };

        let on_failure = match table.get("on_failure") {
            None => Some(None),
            Some(item) => self.on_failure(item).map(Some),
        };

        let (id, name, description, webhook, steps, answer, on_failure) = (
            id?,
            name?,
            description?,
            webhook?,
            steps?,
            answer?,
            on_failure?,
        );
        let (concurrency, order_by) = (concurrency?, order_by?);
        let steps = steps
            .into_iter()
            .map(|draft| {
                let step = draft.id?;
                Some(Step {
                    plugin: draft.plugin?,
                    plugin_at: draft.plugin_at,
                    config_at: draft.config_at,
                    when: draft.when,
                    input: Mapping::new(id.clone(), step.clone(), draft.input),
                    config: draft.config,
                    env_config: draft.env_config,
                    timeout: draft.timeout,
                    memory: draft.memory,
                    outbound: draft.outbound,
                    retry: draft.retry,
                    id: step,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Flow {
            id,
            name,
            description,
            webhook,
            steps,
            version: hex::encode(&Sha256::digest(self.source.as_bytes())[..8]),
            source_path: path.to_path_buf(),
            redactor: Redactor::new(std::mem::take(&mut self.env_used)),
            answer,
            concurrency,
            order_by,
            on_failure,
        })
    }

    fn flow_id(&mut self, path: &Path) -> Option<FlowId> {
        match path.file_stem().and_then(OsStr::to_str) {
            Some(stem) => match FlowId::new(stem) {
                Ok(id) => Some(id),
                Err(err) => {
                    self.error(
                        0,
                        format!(
                            "{err} (the flow id is the file name without `.toml`; \
                             rename the file)"
                        ),
                    );
                    None
                }
            },
            None => {
                self.error(
                    0,
                    format!(
                        "`{}` has no usable file name to take the flow id from",
                        path.display()
                    ),
                );
                None
            }
        }
    }

    fn unknown_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], context: &str) {
        for key in table.keys() {
            if !allowed.contains(&key.get_ref().as_ref()) {
                self.error(
                    key.span().start,
                    format!(
                        "unknown key `{}` {context}; allowed keys: {}",
                        key.get_ref(),
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    fn wrong_type(&mut self, item: &Item<'_>, what: &str, expected: &str) {
        self.error(
            item.span().start,
            format!(
                "`{what}` must be {expected}, found {}",
                item.get_ref().type_str()
            ),
        );
    }

    fn string<'a>(&mut self, item: &'a Item<'_>, what: &str) -> Option<&'a str> {
        match item.get_ref() {
            DeValue::String(text) => Some(text),
            _ => {
                self.wrong_type(item, what, "a string");
                None
            }
        }
    }

    /// The file offset of byte `index` of the string `value` written at `span`; the start of the
    /// string when it is written with escapes or over several lines, where the two differ.
    fn offset_in_string(&self, span: Range<usize>, value: &str, index: usize) -> usize {
        let raw = self.source.get(span.clone()).unwrap_or_default();
        let plain = ["\"", "'"].iter().any(|quote| {
            raw.len() >= 2
                && raw.starts_with(quote)
                && raw.ends_with(quote)
                && !raw.starts_with(&quote.repeat(3))
                && raw.get(1..raw.len() - 1) == Some(value)
        });
        if plain {
            span.start + 1 + index
        } else {
            span.start
        }
    }

    /// A byte size written as text ("1 MiB", "512 KiB") or as a number of bytes.
    fn size(&mut self, item: &Item<'_>, what: &str, min: u64, max: u64) -> Option<u64> {
        let bytes = match item.get_ref() {
            DeValue::String(text) => {
                match text.trim().parse::<bytesize::ByteSize>() {
                    Ok(size) => size.0,
                    Err(err) => {
                        self.error(
                        item.span().start,
                        format!("`{what}` = \"{text}\" is not a size ({err}); write it like \"64 MiB\""),
                    );
                        return None;
                    }
                }
            }
            DeValue::Integer(int) => {
                match u64::from_str_radix(int.as_str(), int.radix()) {
                    Ok(bytes) => bytes,
                    Err(_) => {
                        self.error(
                        item.span().start,
                        format!("`{what}` must be a positive number of bytes or a size like \"64 MiB\""),
                    );
                        return None;
                    }
                }
            }
            _ => {
                self.wrong_type(item, what, "a size such as \"64 MiB\"");
                return None;
            }
        };
        if bytes < min {
            self.error(
                item.span().start,
                format!("`{what}` must be at least {}", human_size(min)),
            );
            None
        } else if bytes > max {
            self.error(
                item.span().start,
                format!("`{what}` must be at most {}", human_size(max)),
            );
            None
        } else {
            Some(bytes)
        }
    }

    fn duration(&mut self, item: &Item<'_>, what: &str, max: Duration) -> Option<Duration> {
        let text = match item.get_ref() {
            DeValue::String(text) => text,
            _ => {
                self.wrong_type(item, what, "a duration such as \"5s\"");
                return None;
            }
        };
        match humantime::parse_duration(text) {
            Err(err) => {
                self.error(
                    item.span().start,
                    format!(
                        "`{what}` = \"{text}\" is not a duration ({err}); \
                         write it like \"5s\" or \"2m 30s\""
                    ),
                );
                None
            }
            Ok(duration) if duration.is_zero() => {
                self.error(
                    item.span().start,
                    format!("`{what}` must be longer than 0s"),
                );
                None
            }
            Ok(duration) if duration > max => {
                self.error(
                    item.span().start,
                    format!(
                        "`{what}` must be at most {}",
                        humantime::format_duration(max)
                    ),
                );
                None
            }
            Ok(duration) => Some(duration),
        }
    }

    // ---- [[steps]] ----

    fn steps(&mut self, item: &Item<'_>) -> Option<Vec<StepDraft>> {
        let DeValue::Array(array) = item.get_ref() else {
            self.wrong_type(item, "steps", "an array of tables (`[[steps]]`)");
            return None;
        };
        let written = written_ids(item);
        let mut drafts = Vec::with_capacity(array.len());
        for (index, step) in array.iter().enumerate() {
            self.step_label = Some(match &written[index] {
                Some(id) => format!("step '{}'", id.text),
                None => format!("step #{}", index + 1),
            });
            drafts.push(self.step(step, index, &written));
            self.step_label = None;
        }
        drafts.into_iter().collect()
    }

    fn step(
        &mut self,
        item: &Item<'_>,
        index: usize,
        written: &[Option<WrittenId>],
    ) -> Option<StepDraft> {
        let DeValue::Table(table) = item.get_ref() else {
            self.wrong_type(item, "steps", "an array of tables (`[[steps]]`)");
            return None;
        };
        self.unknown_keys(table, STEP_KEYS, "in a step");
        let start = item.span().start;
        let scope = Scope { index, written };

        let id = match table.get("id") {
            None => {
                self.error(
                    start,
                    "missing `id`: give the step an id such as `id = \"notify\"`",
                );
                None
            }
            Some(item) => self.step_id(item, index, written),
        };
        let plugin_at = self
            .lines
            .line_col(table.get("plugin").map_or(start, |item| item.span().start));
        let plugin = match table.get("plugin") {
            None => {
                self.error(
                    start,
                    "missing `plugin`: the name of a built-in plugin or the path of a .wasm file",
                );
                None
            }
            Some(item) => self.plugin(item),
        };
        let when = match table.get("when") {
            None => Some(None),
            Some(item) => self.when(item, &scope).map(Some),
        };
        let input = match table.get("input") {
            None => Node::Literal(Value::Object(Map::new())),
            Some(item) => self.mapping(item, "input", &scope),
        };
        // Where the plugin's `validate-config` errors point: the `config` value, or the
        // `plugin` value for a step with no config (the plugin refused an empty one).
        let config_at = match table.get("config") {
            Some(item) => self.lines.line_col(item.span().start),
            None => plugin_at,
        };
        let mut env_config = Vec::new();
        let config = match table.get("config") {
            None => Value::Object(Map::new()),
            Some(item) => self.config(item, String::new(), &mut env_config),
        };
        let timeout = match table.get("timeout") {
            None => Some(None),
            Some(item) => self.duration(item, "timeout", MAX_TIMEOUT).map(Some),
        };
        let memory = match table.get("memory") {
            None => Some(None),
            Some(item) => self.size(item, "memory", MIN_MEMORY, MAX_MEMORY).map(Some),
        };
        let outbound = self.outbound(table);
        let retry = self.retry(table);
        Some(StepDraft {
            id,
            plugin,
            plugin_at,
            config_at,
            when: when?,
            input,
            config,
            env_config,
            timeout: timeout?,
            memory: memory?,
            outbound: outbound?,
            retry: retry?,
        })
    }

    /// `allow_hosts`, `allow_private`, `max_response` and `max_request`: what the step may
    /// reach over HTTP. The last three only apply with `allow_hosts`.
    fn outbound(&mut self, table: &DeTable<'_>) -> Option<Outbound> {
        let mut outbound = Outbound::default();
        let mut ok = true;
        match table.get("allow_hosts") {
            None => {
                for key in ["allow_private", "max_response", "max_request"] {
                    if let Some(item) = table.get(key) {
                        self.error(
                            item.span().start,
                            format!(
                                "`{key}` only applies with `allow_hosts`, the hosts the step may call"
                            ),
                        );
                        ok = false;
                    }
                }
            }
            Some(item) => {
                let DeValue::Array(array) = item.get_ref() else {
                    self.wrong_type(
                        item,
                        "allow_hosts",
                        "an array of grants such as [\"https://hooks.slack.com\"]",
                    );
                    return None;
                };
                for element in array.iter() {
                    let Some(text) = self.string(element, "allow_hosts") else {
                        ok = false;
                        continue;
                    };
                    match Grant::parse(text) {
                        Ok(grant) => outbound.grants.hosts.push(grant),
                        Err(err) => {
                            self.error(element.span().start, err.to_string());
                            ok = false;
                        }
                    }
                }
            }
        }
        if let Some(item) = table.get("allow_private") {
            match item.get_ref() {
                DeValue::Boolean(value) => outbound.grants.allow_private = *value,
                _ => {
                    self.wrong_type(item, "allow_private", "true or false");
                    ok = false;
                }
            }
        }
        if let Some(item) = table.get("max_response") {
            match self.size(item, "max_response", 1, MAX_MAX_RESPONSE) {
                Some(bytes) => outbound.max_response = bytes,
                None => ok = false,
            }
        }
        if let Some(item) = table.get("max_request") {
            match self.size(item, "max_request", 1, MAX_MAX_REQUEST) {
                Some(bytes) => outbound.max_request = bytes,
                None => ok = false,
            }
        }
        ok.then_some(outbound)
    }

    fn step_id(
        &mut self,
        item: &Item<'_>,
        index: usize,
        written: &[Option<WrittenId>],
    ) -> Option<StepId> {
        let text = self.string(item, "id")?;
        let offset = item.span().start;
        if text == WEBHOOK_STEP {
            self.error(
                offset,
                "the step id 'webhook' is reserved: `$.webhook` is the request that starts the run",
            );
            return None;
        }
        let id = match StepId::new(text) {
            Ok(id) => id,
            Err(err) => {
                self.error(offset, err.to_string());
                return None;
            }
        };
        let first = written[..index]
            .iter()
            .flatten()
            .find(|earlier| earlier.text == text)
            .map(|earlier| earlier.offset);
        if let Some(first) = first {
            let (line, _) = self.lines.line_col(first);
            self.error(
                offset,
                format!("duplicate step id '{text}': line {line} already uses it"),
            );
            return None;
        }
        Some(id)
    }

    fn plugin(&mut self, item: &Item<'_>) -> Option<PluginRef> {
        let name = self.string(item, "plugin")?;
        if name.ends_with(".wasm") {
            let joined = self.flow_dir.join(name);
            let path = std::path::absolute(&joined).unwrap_or(joined);
            if !self.ctx.plugin_places.allows(&self.flow_dir, &path) {
                self.error(
                    item.span().start,
                    format!(
                        "plugin file `{name}` is outside the flows folder ({}); keep plugins in \
                         the flows folder, or start Weir with --plugin-dir DIR (a folder it may \
                         load plugins from) or --plugins-anywhere",
                        self.flow_dir.display()
                    ),
                );
                None
            } else if (self.ctx.plugin_exists)(&path) {
                Some(PluginRef::Path(path))
            } else {
                self.error(
                    item.span().start,
                    format!(
                        "plugin file `{name}` not found (looked for {}); \
                         plugin paths are relative to the flow file's folder",
                        path.display()
                    ),
                );
                None
            }
        } else if (self.ctx.is_builtin)(name) {
            Some(PluginRef::Builtin(name.to_owned()))
        } else {
            self.error(
                item.span().start,
                format!(
                    "unknown plugin `{name}`: it is not a built-in plugin, \
                     and a plugin file must end in `.wasm`"
                ),
            );
            None
        }
    }

    fn when(&mut self, item: &Item<'_>, scope: &Scope<'_>) -> Option<Query> {
        let text = self.string(item, "when")?;
        if !text.starts_with('$') || text.starts_with("$$") {
            self.error(
                item.span().start,
                "`when` must be a JSONPath query starting with `$`, such as \"$.webhook.body.action\"",
            );
            return None;
        }
        self.query(text, item.span(), scope)
    }

    /// Parses a query written as the string `text` at `span` and checks what it refers to.
    fn query(&mut self, text: &str, span: Range<usize>, scope: &Scope<'_>) -> Option<Query> {
        let query = match Query::parse(text) {
            Ok(query) => query,
            Err(err) => {
                let offset = match err.offset {
                    Some(index) => self.offset_in_string(span, text, index),
                    None => span.start,
                };
                self.error(offset, err.to_string());
                return None;
            }
        };
        let roots = query.segment_names(0).unwrap_or_default();
        if roots.is_empty()
            || roots
                .iter()
                .any(|root| !["webhook", "steps", "failed"].contains(root))
        {
            self.error(
                span.start,
                format!(
                    "`{text}` must start with `$.webhook`, `$.steps` or `$.failed`: \
                     the run context has only these members (`failed` in runs started \
                     by another flow's `on_failure`)"
                ),
            );
            return None;
        }
        if roots.contains(&"steps") {
            let mut ok = true;
            for step in query.segment_names(1).unwrap_or_default() {
                if let Some(reason) = scope.not_earlier(step) {
                    self.error(
                        span.start,
                        format!("step '{step}' is not an earlier step: {reason}"),
                    );
                    ok = false;
                }
            }
            if !ok {
                return None;
            }
        }
        Some(query)
    }

    // ---- mappings ----

    fn mapping(&mut self, item: &Item<'_>, place: &str, scope: &Scope<'_>) -> Node {
        match item.get_ref() {
            DeValue::String(text) => {
                if let Some(rest) = text.strip_prefix("$$") {
                    Node::Literal(Value::String(format!("${rest}")))
                } else if text.starts_with('$') {
                    match self.query(text, item.span(), scope) {
                        Some(query) => Node::Query(Box::new(Selection {
                            place: place.to_owned(),
                            query,
                            default: None,
                        })),
                        None => Node::Literal(Value::Null),
                    }
                } else {
                    Node::Literal(Value::String(text.to_string()))
                }
            }
            DeValue::Array(array) => Node::array(
                array
                    .iter()
                    .enumerate()
                    .map(|(i, element)| self.mapping(element, &place_index(place, i), scope))
                    .collect(),
            ),
            DeValue::Table(table)
                if table.contains_key("$path") || table.contains_key("$default") =>
            {
                self.defaulted(item, table, place, scope)
            }
            DeValue::Table(table) => Node::object(
                table
                    .iter()
                    .map(|(key, value)| {
                        let node = self.mapping(value, &place_key(place, key.get_ref()), scope);
                        (key.get_ref().to_string(), node)
                    })
                    .collect(),
            ),
            _ => Node::Literal(self.scalar(item)),
        }
    }

    /// `{ "$path" = "$.a", "$default" = ... }`
    fn defaulted(
        &mut self,
        item: &Item<'_>,
        table: &DeTable<'_>,
        place: &str,
        scope: &Scope<'_>,
    ) -> Node {
        self.unknown_keys(table, DEFAULT_KEYS, "in a mapping with a default");
        let (Some(path), Some(default)) = (table.get("$path"), table.get("$default")) else {
            self.error(
                item.span().start,
                "a mapping with a default needs both \"$path\" (the query) \
                 and \"$default\" (the value when it selects nothing)",
            );
            return Node::Literal(Value::Null);
        };
        let default = self.literal(default);
        let query = match path.get_ref() {
            DeValue::String(text) if text.starts_with('$') && !text.starts_with("$$") => {
                self.query(text, path.span(), scope)
            }
            _ => {
                self.error(
                    path.span().start,
                    "\"$path\" must be a JSONPath query starting with `$`, such as \"$.webhook.body.name\"",
                );
                None
            }
        };
        let Some(query) = query else {
            return Node::Literal(Value::Null);
        };
        if !query.is_singular() {
            self.error(
                path.span().start,
                format!(
                    "\"$default\" only applies to a singular query; \
                     `{query}` always gives an array (empty when it selects nothing)"
                ),
            );
            return Node::Literal(Value::Null);
        }
        Node::Query(Box::new(Selection {
            place: place.to_owned(),
            query,
            default: Some(default),
        }))
    }

    // ---- values ----

    /// A TOML value as JSON, strings taken as written.
    fn literal(&mut self, item: &Item<'_>) -> Value {
        match item.get_ref() {
            DeValue::String(text) => Value::String(text.to_string()),
            DeValue::Array(array) => {
                Value::Array(array.iter().map(|element| self.literal(element)).collect())
            }
            DeValue::Table(table) => Value::Object(
                table
                    .iter()
                    .map(|(key, value)| (key.get_ref().to_string(), self.literal(value)))
                    .collect(),
            ),
            _ => self.scalar(item),
        }
    }

    /// A config value as JSON, with `${NAME}` in strings replaced; the JSON Pointer of every
    /// string that took a value from the environment goes to `from_env`.
    fn config(&mut self, item: &Item<'_>, pointer: String, from_env: &mut Vec<String>) -> Value {
        match item.get_ref() {
            DeValue::String(text) => match interpolate(text, self.ctx.env) {
                Ok(interpolated) => {
                    if interpolated.from_env {
                        from_env.push(pointer);
                    }
                    self.env_used.extend(interpolated.used);
                    Value::String(interpolated.value)
                }
                Err(problems) => {
                    for problem in problems {
                        let offset = self.offset_in_string(item.span(), text, problem.offset());
                        self.error(offset, problem.message());
                    }
                    Value::Null
                }
            },
            DeValue::Array(array) => Value::Array(
                array
                    .iter()
                    .enumerate()
                    .map(|(i, element)| self.config(element, format!("{pointer}/{i}"), from_env))
                    .collect(),
            ),
            DeValue::Table(table) => Value::Object(
                table
                    .iter()
                    .map(|(key, value)| {
                        let key = key.get_ref().to_string();
                        let escaped = key.replace('~', "~0").replace('/', "~1");
                        let value = self.config(value, format!("{pointer}/{escaped}"), from_env);
                        (key, value)
                    })
                    .collect(),
            ),
            _ => self.scalar(item),
        }
    }

    /// A number, boolean or datetime as JSON.
    fn scalar(&mut self, item: &Item<'_>) -> Value {
        match item.get_ref() {
            DeValue::Integer(int) => {
                if let Ok(n) = i64::from_str_radix(int.as_str(), int.radix()) {
                    Value::from(n)
                } else if let Ok(n) = u64::from_str_radix(int.as_str(), int.radix()) {
                    Value::from(n)
                } else {
                    self.error(
                        item.span().start,
                        format!("integer {int} does not fit in 64 bits"),
                    );
                    Value::Null
                }
            }
            DeValue::Float(float) => {
                match float
                    .as_str()
                    .parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                {
                    Some(n) => Value::Number(n),
                    None => {
                        self.error(
                            item.span().start,
                            format!("{float} cannot be represented in JSON: use a finite number"),
                        );
                        Value::Null
                    }
                }
            }
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Datetime(datetime) => Value::String(datetime.to_string()),
            DeValue::String(text) => Value::String(text.to_string()),
            DeValue::Array(_) | DeValue::Table(_) => self.literal(item),
        }
    }
}

/// Which steps a query in step `index` may read: those written before it.
/// Every step id as written, to tell a later step from a missing one in reference errors.
fn written_ids(steps: &Item<'_>) -> Vec<Option<WrittenId>> {
    let Some(array) = steps.get_ref().as_array() else {
        return Vec::new();
    };
    array
        .iter()
        .map(|step| {
            let id = step.get_ref().as_table()?.get("id")?;
            Some(WrittenId {
                text: id.get_ref().as_str()?.to_owned(),
                offset: id.span().start,
            })
        })
        .collect()
}

struct Scope<'w> {
    index: usize,
    written: &'w [Option<WrittenId>],
}

impl Scope<'_> {
    /// Why `step` cannot be read from here, or `None` when it can.
    fn not_earlier(&self, step: &str) -> Option<&'static str> {
        let position = self
            .written
            .iter()
            .position(|id| id.as_ref().is_some_and(|id| id.text == step));
        match position {
            Some(position) if position < self.index => None,
            Some(position) if position == self.index => Some("a step cannot read its own output"),
            Some(_) => Some("it comes later in the file, so its output does not exist yet"),
            None => Some("no step has that id"),
        }
    }
}

fn human_size(bytes: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes == 1 {
        "1 byte".to_owned()
    } else {
        format!("{bytes} bytes")
    }
}
