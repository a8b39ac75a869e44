//! Reading a flow file: TOML with spans in, a checked [`Flow`] or every problem out.
//!
//! serde stops at the first error, and a user fixing a flow wants them all, so the loader walks
//! the spanned document `toml` parses (`DeTable`) and records a problem wherever it finds one,
//! then carries on with the next key, the next step. A flow is built only when nothing was
//! found.

use std::ffi::OsStr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::{Diagnostic, Diagnostics, LineIndex};
use super::id::FlowId;
use super::mapping::Mapping;
use super::redact::Redactor;
use super::{Flow, LoadContext, Step, WebhookSpec};
use mapping::{Scope, written_ids};

mod mapping;
mod retain;
mod retry;
mod schedule;
mod step;
mod values;
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
    "retain",
];

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
        let retain = match table.get("retain") {
            None => Some(super::Retain::default()),
            Some(item) => self.retain(item),
        };

        let (id, name, description, webhook, steps, answer, on_failure, retain) = (
            id?,
            name?,
            description?,
            webhook?,
            steps?,
            answer?,
            on_failure?,
            retain?,
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
        let reads = Flow::context_reads(&steps, answer.as_ref(), on_failure.is_some());
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
            retain,
            reads,
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
}
