//! Queries as a flow writes them: a step's `when`, its `input` mapping (with `$path` and
//! `$default`), and the scope that says which steps a query may read.

use std::ops::Range;

use serde_json::Value;
use toml::de::{DeTable, DeValue};

use super::{Item, Loader};
use crate::flow::mapping::{Node, Selection, place_index, place_key};
use crate::flow::query::Query;

const DEFAULT_KEYS: &[&str] = &["$path", "$default"];

/// The raw id of a step as written, kept to check ids and references across steps.
pub(super) struct WrittenId {
    pub(super) text: String,
    pub(super) offset: usize,
}

impl Loader<'_, '_> {
    pub(super) fn when(&mut self, item: &Item<'_>, scope: &Scope<'_>) -> Option<Query> {
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
    pub(super) fn query(
        &mut self,
        text: &str,
        span: Range<usize>,
        scope: &Scope<'_>,
    ) -> Option<Query> {
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

    pub(super) fn mapping(&mut self, item: &Item<'_>, place: &str, scope: &Scope<'_>) -> Node {
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
    pub(super) fn defaulted(
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
}

/// Every step id as written, to tell a later step from a missing one in reference errors.
pub(super) fn written_ids(steps: &Item<'_>) -> Vec<Option<WrittenId>> {
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

/// Which steps a query in step `index` may read: those written before it.
pub(super) struct Scope<'w> {
    pub(super) index: usize,
    pub(super) written: &'w [Option<WrittenId>],
}

impl Scope<'_> {
    /// Why `step` cannot be read from here, or `None` when it can.
    pub(super) fn not_earlier(&self, step: &str) -> Option<&'static str> {
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
