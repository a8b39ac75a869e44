//! Mappings: how a step's input is built from the run context.
//!
//! A mapping is written in TOML, parsed once when the flow loads (every JSONPath in it included)
//! and evaluated against the run context before the step runs. The rules are on [`Mapping`].

use std::fmt::Write as _;

use serde_json::{Map, Value};
use thiserror::Error;

use super::id::{FlowId, StepId};
use super::query::Query;

/// A step's `input`: a JSON value with JSONPath queries in some of its places.
///
/// The run context that queries read is one JSON document:
/// `{"webhook": {...}, "steps": {"<id>": {"output": ...}}}`.
///
/// - A string that starts with `$` is a JSONPath (RFC 9535) query over the run context. Its
///   first segment must be `webhook` or `steps`, and `$.steps.<id>` must name a step that comes
///   earlier in the file. The same holds for a step's `when`.
/// - A *singular* query (only name and index selectors, such as `$.webhook.body.issue.title` or
///   `$.webhook.body.items[0]`) gives the value it selects. A query that can select several nodes
///   (wildcards, slices, filters, descendants, `['a','b']`) gives a JSON array of every node it
///   selects, possibly empty.
/// - A singular query that selects nothing stops the run with an error naming the flow, the step,
///   the place (such as `input.issue.title`) and the query, unless the place has a default:
///   `{ "$path" = "$.webhook.body.name", "$default" = "anonymous" }`, an inline table with exactly
///   these two keys. The default is taken as written (it is not itself a mapping), and it is only
///   allowed on a singular query.
/// - `$$` at the start of a string escapes the `$`: `"$$5"` is the literal string `"$5"`.
/// - Any other string, number or boolean is itself; a TOML datetime becomes its string form.
/// - Tables map key by key and arrays element by element, recursively, so queries can sit at any
///   depth: `input = { title = "$.webhook.body.issue.title", labels = ["triage", "$.webhook.body.label"] }`.
/// - No `input` at all gives `{}`.
///
/// Every query is parsed and checked when the flow loads; evaluating a mapping never parses.
#[derive(Debug, Clone)]
pub struct Mapping {
    flow: FlowId,
    step: StepId,
    root: Node,
}

/// One place of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// A value without queries (a whole subtree without queries collapses into one literal).
    Literal(Value),
    /// A query to evaluate.
    Query(Box<Selection>),
    /// A table with at least one query inside.
    Object(Vec<(String, Node)>),
    /// An array with at least one query inside.
    Array(Vec<Node>),
}

/// A query at one place of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Selection {
    /// Where the query sits, such as `input.issue.title`, for error messages.
    pub(crate) place: String,
    pub(crate) query: Query,
    /// What a singular query that selects nothing gives instead of an error.
    pub(crate) default: Option<Value>,
}

impl Mapping {
    /// The mapping as a flow file writes it, for display: queries as their text (with
    /// `$path`/`$default` where a default is set), literal strings that start with `$` escaped
    /// as `$$`.
    pub fn to_json(&self) -> Value {
        fn literal(value: &Value) -> Value {
            match value {
                Value::String(s) if s.starts_with('$') => Value::String(format!("${s}")),
                Value::Array(items) => Value::Array(items.iter().map(literal).collect()),
                Value::Object(members) => Value::Object(
                    members
                        .iter()
                        .map(|(k, v)| (k.clone(), literal(v)))
                        .collect(),
                ),
                other => other.clone(),
            }
        }
        fn node(at: &Node) -> Value {
            match at {
                Node::Literal(value) => literal(value),
                Node::Query(selection) => match &selection.default {
                    None => Value::String(selection.query.as_str().to_owned()),
                    Some(default) => serde_json::json!({
                        "$path": selection.query.as_str(),
                        "$default": literal(default),
                    }),
                },
                Node::Object(members) => {
                    Value::Object(members.iter().map(|(k, v)| (k.clone(), node(v))).collect())
                }
                Node::Array(items) => Value::Array(items.iter().map(node).collect()),
            }
        }
        node(&self.root)
    }
}

impl Node {
    /// A table node, collapsed into a literal when none of its members holds a query.
    pub(crate) fn object(members: Vec<(String, Node)>) -> Node {
        if members
            .iter()
            .all(|(_, node)| matches!(node, Node::Literal(_)))
        {
            let map: Map<String, Value> = members
                .into_iter()
                .filter_map(|(key, node)| match node {
                    Node::Literal(value) => Some((key, value)),
                    _ => None,
                })
                .collect();
            Node::Literal(Value::Object(map))
        } else {
            Node::Object(members)
        }
    }

    /// An array node, collapsed into a literal when none of its elements holds a query.
    pub(crate) fn array(elements: Vec<Node>) -> Node {
        if elements.iter().all(|node| matches!(node, Node::Literal(_))) {
            Node::Literal(Value::Array(
                elements
                    .into_iter()
                    .filter_map(|node| match node {
                        Node::Literal(value) => Some(value),
                        _ => None,
                    })
                    .collect(),
            ))
        } else {
            Node::Array(elements)
        }
    }
}

/// A mapping that cannot be evaluated against a run context.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MappingError {
    /// A singular query without a default selected nothing.
    #[error(
        "flow '{flow}', step '{step}': {place} = \"{path}\" selected nothing; check the payload, or give the place a \"$default\""
    )]
    NothingSelected {
        /// The flow being run.
        flow: FlowId,
        /// The step whose input was being built.
        step: StepId,
        /// Where the query sits in the step, such as `input.issue.title`.
        place: String,
        /// The query as written.
        path: String,
    },
}

impl Mapping {
    pub(crate) fn new(flow: FlowId, step: StepId, root: Node) -> Mapping {
        Mapping { flow, step, root }
    }

    /// Builds the value this mapping describes from the run context `ctx`
    /// (`{"webhook": ..., "steps": {"<id>": {"output": ...}}}`).
    pub fn evaluate(&self, ctx: &Value) -> Result<Value, MappingError> {
        self.evaluate_node(&self.root, ctx)
    }

    /// Adds what the mapping's queries can read of the run context to `reads`.
    pub(crate) fn add_reads(&self, reads: &mut super::Projection) {
        fn walk(node: &Node, reads: &mut super::Projection) {
            match node {
                Node::Literal(_) => {}
                Node::Query(selection) => reads.add_query(&selection.query),
                Node::Object(members) => members.iter().for_each(|(_, node)| walk(node, reads)),
                Node::Array(items) => items.iter().for_each(|node| walk(node, reads)),
            }
        }
        walk(&self.root, reads);
    }

    /// True when the mapping holds no query, so its value never depends on the run.
    pub fn is_constant(&self) -> bool {
        matches!(self.root, Node::Literal(_))
    }

    fn evaluate_node(&self, node: &Node, ctx: &Value) -> Result<Value, MappingError> {
        match node {
            Node::Literal(value) => Ok(value.clone()),
            Node::Query(selection) => {
                let nodes = selection.query.select(ctx);
                if !selection.query.is_singular() {
                    return Ok(Value::Array(nodes.into_iter().cloned().collect()));
                }
                match (nodes.first(), &selection.default) {
                    (Some(value), _) => Ok((*value).clone()),
                    (None, Some(default)) => Ok(default.clone()),
                    (None, None) => Err(MappingError::NothingSelected {
                        flow: self.flow.clone(),
                        step: self.step.clone(),
                        place: selection.place.clone(),
                        path: selection.query.as_str().to_owned(),
                    }),
                }
            }
            Node::Object(members) => members
                .iter()
                .map(|(key, node)| Ok((key.clone(), self.evaluate_node(node, ctx)?)))
                .collect::<Result<Map<_, _>, _>>()
                .map(Value::Object),
            Node::Array(elements) => elements
                .iter()
                .map(|node| self.evaluate_node(node, ctx))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
        }
    }
}

/// Appends a table key to a place in TOML's dotted-key form, quoting keys that are not bare
/// (`input.issue`, `input."x-header"`).
pub(crate) fn place_key(place: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        format!("{place}.{key}")
    } else {
        let mut quoted = format!("{place}.\"");
        for c in key.chars() {
            match c {
                '"' => quoted.push_str("\\\""),
                '\\' => quoted.push_str("\\\\"),
                c if c.is_control() => {
                    let _ = write!(quoted, "\\u{:04X}", u32::from(c));
                }
                c => quoted.push(c),
            }
        }
        quoted.push('"');
        quoted
    }
}

/// Appends an array index to a place (`input.labels[1]`).
pub(crate) fn place_index(place: &str, index: usize) -> String {
    format!("{place}[{index}]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn selection(place: &str, query: &str, default: Option<Value>) -> Node {
        Node::Query(Box::new(Selection {
            place: place.to_owned(),
            query: Query::parse(query).unwrap(),
            default,
        }))
    }

    fn mapping(root: Node) -> Mapping {
        Mapping::new(
            FlowId::new("orders").unwrap(),
            StepId::new("notify").unwrap(),
            root,
        )
    }

    #[test]
    fn literal_subtrees_collapse() {
        let node = Node::object(vec![
            ("a".into(), Node::Literal(json!(1))),
            ("b".into(), Node::array(vec![Node::Literal(json!("x"))])),
        ]);
        assert_eq!(node, Node::Literal(json!({"a": 1, "b": ["x"]})));
        assert!(mapping(node).is_constant());
    }

    #[test]
    fn places_quote_keys_that_are_not_bare() {
        assert_eq!(place_key("input", "title"), "input.title");
        assert_eq!(place_key("input", "x.y"), "input.\"x.y\"");
        assert_eq!(place_key("input", "a\"b"), "input.\"a\\\"b\"");
        assert_eq!(place_index("input.tags", 2), "input.tags[2]");
    }

    #[test]
    fn missing_value_error_names_flow_step_place_and_path() {
        let m = mapping(selection("input.name", "$.webhook.body.name", None));
        let err = m.evaluate(&json!({"webhook": {"body": {}}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "flow 'orders', step 'notify': input.name = \"$.webhook.body.name\" selected nothing; check the payload, or give the place a \"$default\""
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::flow::query::tests::properties::{document, jsonpath_ish, valid_query};

        /// One segment of a singular query, and how it is written.
        #[derive(Debug, Clone)]
        enum Step {
            Name(String),
            Index(usize),
        }

        /// A mapping tree whose queries come from `queries` (those that parse).
        fn tree(queries: impl Strategy<Value = String> + 'static) -> impl Strategy<Value = Node> {
            let leaf = prop_oneof![
                document().prop_map(Node::Literal),
                (queries, proptest::option::of(document())).prop_filter_map(
                    "a query that parses",
                    |(text, default)| {
                        let query = Query::parse(&text).ok()?;
                        let default = default.filter(|_| query.is_singular());
                        Some(Node::Query(Box::new(Selection {
                            place: "input".to_owned(),
                            query,
                            default,
                        })))
                    },
                ),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(("[a-c]{1,2}", inner.clone()), 0..4)
                        .prop_map(Node::object),
                    proptest::collection::vec(inner, 0..4).prop_map(Node::array),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn evaluating_any_mapping_never_panics(
                root in tree(prop_oneof![valid_query(), jsonpath_ish()]),
                context in document(),
            ) {
                let constant = matches!(root, Node::Literal(_));
                let m = mapping(root);
                prop_assert_eq!(m.is_constant(), constant);
                match m.evaluate(&context) {
                    Ok(_) => {}
                    Err(MappingError::NothingSelected { place, .. }) => {
                        prop_assert_eq!(place, "input");
                    }
                }
            }

            /// A singular query gives exactly the value at its path, wherever it sits in a
            /// document with other members and elements around it.
            #[test]
            fn a_singular_query_gives_the_value_at_its_path(
                path in proptest::collection::vec(
                    prop_oneof![
                        "[a-z_][a-z0-9_]{0,4}".prop_map(Step::Name),
                        (0..3usize).prop_map(Step::Index),
                    ],
                    1..5,
                ),
                value in document(),
                filler in document(),
            ) {
                // Builds the document from the value outwards, with the filler beside it.
                let mut context = value.clone();
                for step in path.iter().rev() {
                    context = match step {
                        Step::Name(name) => {
                            let mut members = Map::new();
                            members.insert(format!("{name}_other"), filler.clone());
                            members.insert(name.clone(), context);
                            Value::Object(members)
                        }
                        Step::Index(index) => {
                            let mut elements = vec![filler.clone(); *index];
                            elements.push(context);
                            elements.push(filler.clone());
                            Value::Array(elements)
                        }
                    };
                }
                let text: String = std::iter::once("$".to_owned())
                    .chain(path.iter().map(|step| match step {
                        Step::Name(name) => format!(".{name}"),
                        Step::Index(index) => format!("[{index}]"),
                    }))
                    .collect();
                let m = mapping(selection("input.x", &text, None));
                prop_assert_eq!(m.evaluate(&context), Ok(value.clone()));
                // Inside a table, beside a literal, it gives the same value.
                let m = mapping(Node::object(vec![
                    ("x".into(), selection("input.x", &text, None)),
                    ("y".into(), Node::Literal(Value::from("y"))),
                ]));
                prop_assert_eq!(
                    m.evaluate(&context),
                    Ok(serde_json::json!({"x": value, "y": "y"}))
                );
            }

            #[test]
            fn a_missing_path_gives_the_default_or_names_the_place(
                name in "[a-z]{1,4}",
                default in proptest::option::of(document()),
            ) {
                let text = format!("$.webhook.{name}");
                let m = mapping(selection("input.x", &text, default.clone()));
                let got = m.evaluate(&serde_json::json!({"webhook": {}}));
                match default {
                    Some(default) => prop_assert_eq!(got, Ok(default)),
                    None => prop_assert_eq!(
                        got,
                        Err(MappingError::NothingSelected {
                            flow: FlowId::new("orders").unwrap(),
                            step: StepId::new("notify").unwrap(),
                            place: "input.x".to_owned(),
                            path: text,
                        })
                    ),
                }
            }
        }
    }
}
