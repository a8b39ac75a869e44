//! A step's table (`[[steps]]`): its id, plugin, outbound grants and the keys other
//! submodules read (mappings, retries).

use std::time::Duration;

use serde_json::{Map, Value};
use toml::de::{DeTable, DeValue};

use super::mapping::{Scope, WrittenId, written_ids};
use super::{Item, Loader};
use crate::flow::id::StepId;
use crate::flow::mapping::Node;
use crate::flow::query::Query;
use crate::flow::retry::RetryPolicy;
use crate::flow::{MAX_MEMORY, MAX_TIMEOUT, MIN_MEMORY, PluginRef};
use crate::plugin::outbound::{Grant, MAX_MAX_REQUEST, MAX_MAX_RESPONSE, Outbound};

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

/// The id reserved for the request that starts a run (`$.webhook`).
const WEBHOOK_STEP: &str = "webhook";

/// A step as far as it could be read; the ids are attached once the whole flow is known good.
pub(super) struct StepDraft {
    pub(super) id: Option<StepId>,
    pub(super) plugin: Option<PluginRef>,
    pub(super) plugin_at: (usize, usize),
    pub(super) config_at: (usize, usize),
    pub(super) when: Option<Query>,
    pub(super) input: Node,
    pub(super) config: Value,
    pub(super) env_config: Vec<String>,
    pub(super) timeout: Option<Duration>,
    pub(super) memory: Option<u64>,
    pub(super) outbound: Outbound,
    pub(super) retry: RetryPolicy,
}

impl Loader<'_, '_> {
    pub(super) fn steps(&mut self, item: &Item<'_>) -> Option<Vec<StepDraft>> {
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

    pub(super) fn step(
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
    pub(super) fn outbound(&mut self, table: &DeTable<'_>) -> Option<Outbound> {
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

    pub(super) fn step_id(
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

    pub(super) fn plugin(&mut self, item: &Item<'_>) -> Option<PluginRef> {
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
}
