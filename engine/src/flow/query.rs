//! JSONPath queries (RFC 9535), parsed once when a flow loads and evaluated on every run.
//!
//! [`Query`] is the one query layer of Weir: mappings, `when` conditions and the JSONPath
//! compliance test all go through it, so what the test measures is what flows get. Parsing and
//! evaluation are done by the `jsonpath-rust` crate; this wrapper adds what a flow needs on top:
//! singularity (RFC 9535 §2.3.5.1), the names a query starts with (to check references between
//! steps) and parse errors with a position.

use std::fmt;

use jsonpath_rust::parser::Rule;
use jsonpath_rust::parser::errors::JsonPathError;
use jsonpath_rust::parser::model::{
    Comparable, Comparison, Filter, FilterAtom, FnArg, JpQuery, Segment, Selector, Test,
    TestFunction,
};
use pest::error::InputLocation;
use serde_json::Value;
use thiserror::Error;

/// A parsed JSONPath query.
#[derive(Debug, Clone)]
pub struct Query {
    text: String,
    ast: JpQuery,
}

/// A JSONPath query that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid JSONPath `{query}`: {reason}")]
pub struct QueryError {
    /// The query text as written.
    pub query: String,
    /// The parser's explanation.
    pub reason: String,
    /// Byte offset in `query` where the parser stopped, when it knows.
    pub offset: Option<usize>,
}

impl Query {
    /// Parses `text` as an RFC 9535 JSONPath query (it must start with `$`, no surrounding
    /// whitespace).
    pub fn parse(text: &str) -> Result<Query, QueryError> {
        let ast =
            jsonpath_rust::parser::parse_json_path(text).map_err(|err| query_error(text, err))?;
        // The library parses function calls without checking their types; RFC 9535 makes an
        // ill-typed query invalid, and a flow should learn that when it loads, not per request.
        well_typed::segments(&ast.segments).map_err(|reason| QueryError {
            query: text.to_owned(),
            reason,
            offset: None,
        })?;
        Ok(Query {
            text: text.to_owned(),
            ast,
        })
    }

    /// The parsed query.
    pub(crate) fn ast(&self) -> &JpQuery {
        &self.ast
    }

    /// The query as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the query can select at most one node: only name and index selectors, one per
    /// segment, no wildcards, slices, filters or descendants (RFC 9535 §2.3.5.1).
    pub fn is_singular(&self) -> bool {
        self.ast.segments.iter().all(|segment| {
            matches!(
                segment,
                Segment::Selector(Selector::Name(_) | Selector::Index(_))
            )
        })
    }

    /// The nodes the query selects in `document`, in the order RFC 9535 gives them (an empty
    /// list when it selects nothing).
    pub fn select<'a>(&self, document: &'a Value) -> Vec<&'a Value> {
        if self.is_singular() {
            return self.select_singular(document).into_iter().collect();
        }
        // The library only fails when a query's result is a computed value rather than nodes,
        // which the queries `parse` accepts do not produce; treat that as selecting nothing.
        jsonpath_rust::query::js_path_process(&self.ast, document)
            .map(|nodes| nodes.into_iter().map(|node| node.val).collect())
            .unwrap_or_default()
    }

    /// A singular query's node, found by walking the document: the common mapping
    /// (`$.webhook.body.issue.number`) needs no allocation. RFC 9535 §2.3.1.2 and §2.3.3.2: a
    /// name selects an object's member, an index an array's element (negative from the end),
    /// anything else selects nothing.
    fn select_singular<'a>(&self, document: &'a Value) -> Option<&'a Value> {
        self.ast
            .segments
            .iter()
            .try_fold(document, |node, segment| match segment {
                Segment::Selector(Selector::Name(name)) => node.as_object()?.get(name),
                Segment::Selector(Selector::Index(index)) => {
                    let array = node.as_array()?;
                    let at = if *index < 0 {
                        usize::try_from(index.unsigned_abs())
                            .ok()
                            .and_then(|back| array.len().checked_sub(back))?
                    } else {
                        usize::try_from(*index).ok()?
                    };
                    array.get(at)
                }
                _ => None,
            })
    }

    /// The member names selected by segment `index` (0 is the first after `$`), when that
    /// segment selects members by name only (`.a`, `['a']`, `['a','b']`); `None` for any other
    /// kind of segment or when the query is shorter.
    pub(crate) fn segment_names(&self, index: usize) -> Option<Vec<&str>> {
        match self.ast.segments.get(index)? {
            Segment::Selector(Selector::Name(name)) => Some(vec![name.as_str()]),
            Segment::Selectors(selectors) => selectors
                .iter()
                .map(|selector| match selector {
                    Selector::Name(name) => Some(name.as_str()),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for Query {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Query {}

fn query_error(text: &str, err: JsonPathError) -> QueryError {
    let (reason, offset) = match err {
        JsonPathError::PestError(pest_error) => {
            let offset = match pest_error.location {
                InputLocation::Pos(pos) | InputLocation::Span((pos, _)) => pos,
            };
            let found = text
                .get(offset..)
                .and_then(|rest| rest.chars().next())
                .map_or_else(|| "end of query".to_owned(), |c| format!("`{c}`"));
            let expected = pest_error
                .renamed_rules(describe_rule)
                .variant
                .message()
                .into_owned();
            let position = text
                .get(..offset)
                .map_or(offset, |head| head.chars().count())
                + 1;
            (
                format!("{expected}, found {found} at position {position}"),
                Some(offset),
            )
        }
        JsonPathError::InvalidJsonPath(reason) => (reason, None),
        other => (other.to_string(), None),
    };
    QueryError {
        query: text.to_owned(),
        reason,
        offset,
    }
}

/// The well-typedness rules of RFC 9535 §2.4.3 for function expressions in filters.
mod well_typed {
    use super::*;

    /// The declared result type of a function (RFC 9535 §2.4.4 to §2.4.8).
    enum Returns {
        Value,
        Logical,
    }

    fn singular(segments: &[Segment]) -> bool {
        segments.iter().all(|segment| {
            matches!(
                segment,
                Segment::Selector(Selector::Name(_) | Selector::Index(_))
            )
        })
    }

    pub(super) fn segments(segments: &[Segment]) -> Result<(), String> {
        segments.iter().try_for_each(segment)
    }

    fn segment(segment: &Segment) -> Result<(), String> {
        match segment {
            Segment::Descendant(inner) => self::segment(inner),
            Segment::Selector(selector) => self::selector(selector),
            Segment::Selectors(selectors) => selectors.iter().try_for_each(self::selector),
        }
    }

    fn selector(selector: &Selector) -> Result<(), String> {
        match selector {
            Selector::Filter(filter) => self::filter(filter),
            _ => Ok(()),
        }
    }

    fn filter(filter: &Filter) -> Result<(), String> {
        match filter {
            Filter::Or(filters) | Filter::And(filters) => filters.iter().try_for_each(self::filter),
            Filter::Atom(FilterAtom::Filter { expr, .. }) => self::filter(expr),
            Filter::Atom(FilterAtom::Test { expr, .. }) => match expr.as_ref() {
                Test::RelQuery(segments) => self::segments(segments),
                Test::AbsQuery(query) => self::segments(&query.segments),
                Test::Function(function) => match self::function(function)? {
                    Returns::Logical => Ok(()),
                    Returns::Value => Err(format!(
                        "the result of `{0}` must be compared, as in `{0}(...) > 0`",
                        name(function)
                    )),
                },
            },
            Filter::Atom(FilterAtom::Comparison(comparison)) => {
                let (left, right) = match comparison.as_ref() {
                    Comparison::Eq(l, r)
                    | Comparison::Ne(l, r)
                    | Comparison::Gt(l, r)
                    | Comparison::Gte(l, r)
                    | Comparison::Lt(l, r)
                    | Comparison::Lte(l, r) => (l, r),
                };
                comparable(left)?;
                comparable(right)
            }
        }
    }

    fn comparable(comparable: &Comparable) -> Result<(), String> {
        match comparable {
            Comparable::Function(function) => match self::function(function)? {
                Returns::Value => Ok(()),
                Returns::Logical => Err(format!(
                    "`{}` gives true or false and cannot be compared",
                    name(function)
                )),
            },
            Comparable::Literal(_) | Comparable::SingularQuery(_) => Ok(()),
        }
    }

    fn function(function: &TestFunction) -> Result<Returns, String> {
        match function {
            TestFunction::Length(arg) => value_argument(function, arg).map(|()| Returns::Value),
            TestFunction::Count(arg) | TestFunction::Value(arg) => {
                nodes_argument(function, arg).map(|()| Returns::Value)
            }
            TestFunction::Match(a, b) | TestFunction::Search(a, b) => {
                value_argument(function, a)?;
                value_argument(function, b)?;
                Ok(Returns::Logical)
            }
            TestFunction::Custom(name, _) => Err(format!(
                "unknown function `{name}`; RFC 9535 defines length, count, value, match and search"
            )),
        }
    }

    /// A ValueType parameter takes a literal, a singular query or a function giving a value.
    fn value_argument(function: &TestFunction, arg: &FnArg) -> Result<(), String> {
        let ok = match arg {
            FnArg::Literal(_) => true,
            FnArg::Test(test) => match test.as_ref() {
                Test::RelQuery(segments) => singular(segments) && self::segments(segments).is_ok(),
                Test::AbsQuery(query) => {
                    singular(&query.segments) && self::segments(&query.segments).is_ok()
                }
                Test::Function(inner) => matches!(self::function(inner)?, Returns::Value),
            },
            FnArg::Filter(_) => false,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "`{}` takes a value: a literal, a singular query or a function giving a value",
                name(function)
            ))
        }
    }

    /// A NodesType parameter takes a query.
    fn nodes_argument(function: &TestFunction, arg: &FnArg) -> Result<(), String> {
        match arg {
            FnArg::Test(test) => match test.as_ref() {
                Test::RelQuery(segments) => self::segments(segments),
                Test::AbsQuery(query) => self::segments(&query.segments),
                Test::Function(_) => Err(format!("`{}` takes a query", name(function))),
            },
            FnArg::Literal(_) | FnArg::Filter(_) => {
                Err(format!("`{}` takes a query", name(function)))
            }
        }
    }

    fn name(function: &TestFunction) -> &str {
        match function {
            TestFunction::Length(_) => "length",
            TestFunction::Count(_) => "count",
            TestFunction::Value(_) => "value",
            TestFunction::Match(..) => "match",
            TestFunction::Search(..) => "search",
            TestFunction::Custom(name, _) => name,
        }
    }
}

/// Names grammar rules as a reader of an error message knows them.
fn describe_rule(rule: &Rule) -> String {
    match rule {
        Rule::jp_query => "a query starting with `$`".into(),
        Rule::EOI => "end of query".into(),
        Rule::segment => "`.name` or `[...]`".into(),
        Rule::wildcard_selector => "`*`".into(),
        Rule::ALPHA | Rule::member_name_shorthand => "a member name".into(),
        Rule::bracketed_selection => "`[`".into(),
        Rule::selector => "a selector".into(),
        Rule::comparable => "a value to compare".into(),
        Rule::logical_expr | Rule::atom_expr | Rule::logical_expr_and => {
            "a filter expression".into()
        }
        Rule::comp_op => "a comparison operator".into(),
        other => format!("{other:?}").replace('_', " "),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn query(text: &str) -> Query {
        Query::parse(text).unwrap()
    }

    #[test]
    fn singular_queries_use_only_names_and_indexes() {
        for singular in ["$", "$.a", "$['a'][0]", "$.a[-1].b", "$.steps.x.output"] {
            assert!(query(singular).is_singular(), "{singular}");
        }
        for plural in [
            "$.a[*]",
            "$..a",
            "$.a[0:2]",
            "$.a[?@.b]",
            "$['a','b']",
            "$.*",
        ] {
            assert!(!query(plural).is_singular(), "{plural}");
        }
    }

    #[test]
    fn selects_nodes_in_document_order() {
        let document = json!({"a": [1, 2, 3], "b": {"c": true}});
        assert_eq!(query("$.a[1]").select(&document), vec![&json!(2)]);
        assert_eq!(
            query("$.a[*]").select(&document),
            vec![&json!(1), &json!(2), &json!(3)]
        );
        assert!(query("$.missing").select(&document).is_empty());
    }

    #[test]
    fn parse_errors_point_at_the_problem() {
        let err = Query::parse("$.[").unwrap_err();
        assert_eq!(err.offset, Some(2));
        assert_eq!(
            err.to_string(),
            "invalid JSONPath `$.[`: expected `*` or a member name, found `[` at position 3"
        );
        let err = Query::parse("webhook.body").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid JSONPath `webhook.body`: expected a query starting with `$`, found `w` at position 1"
        );
    }

    #[test]
    fn names_of_leading_segments() {
        let q = query("$.steps['a','b'].output");
        assert_eq!(q.segment_names(0), Some(vec!["steps"]));
        assert_eq!(q.segment_names(1), Some(vec!["a", "b"]));
        assert_eq!(q.segment_names(3), None);
        assert_eq!(query("$.steps[*]").segment_names(1), None);
    }

    pub(crate) mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Pieces of JSONPath, so that generated text is often close to a query and reaches
        /// deep into the parser, the type check and evaluation.
        const PIECES: &[&str] = &[
            "$",
            "@",
            ".",
            "..",
            "[",
            "]",
            "*",
            "?",
            "(",
            ")",
            "'",
            "\"",
            ",",
            ":",
            "==",
            "!=",
            "<",
            "<=",
            ">",
            ">=",
            "&&",
            "||",
            "!",
            "-",
            "0",
            "1",
            "-1",
            "2:",
            "::-1",
            "9007199254740993",
            "99999999999999999999",
            "a",
            "b",
            "webhook",
            "steps",
            "length",
            "count",
            "match",
            "search",
            "value",
            "true",
            "null",
            "1e3",
            " ",
            "\\",
            "\\u0041",
            "\\ud800",
            "é",
            "\u{1F600}",
        ];

        /// Text made of JSONPath pieces, most of it starting with `$`.
        pub(in crate::flow) fn jsonpath_ish() -> impl Strategy<Value = String> {
            (
                prop::bool::weighted(0.9),
                proptest::collection::vec(prop::sample::select(PIECES), 0..16),
            )
                .prop_map(|(rooted, pieces)| {
                    let mut text = if rooted {
                        "$".to_owned()
                    } else {
                        String::new()
                    };
                    text.extend(pieces);
                    text
                })
        }

        /// One segment that always parses: a name, an index, a wildcard, a slice, a union, a
        /// descendant or a filter.
        fn segment() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z]{1,3}".prop_map(|name| format!(".{name}")),
                (-3i64..4).prop_map(|index| format!("[{index}]")),
                Just(".*".to_owned()),
                Just("[*]".to_owned()),
                (-3i64..3, -3i64..3).prop_map(|(from, to)| format!("[{from}:{to}]")),
                Just("['a','b']".to_owned()),
                "[a-z]{1,3}".prop_map(|name| format!("..{name}")),
                Just("[?@.a > 1]".to_owned()),
                Just("[?length(@) >= 1]".to_owned()),
                Just("[?count(@.*) == 2 && @.a]".to_owned()),
                Just("[?match(@.b, 'a.*')]".to_owned()),
                Just("[?value(@..a) == null]".to_owned()),
            ]
        }

        /// A query that parses.
        pub(in crate::flow) fn valid_query() -> impl Strategy<Value = String> {
            proptest::collection::vec(segment(), 0..5)
                .prop_map(|segments| format!("${}", segments.concat()))
        }

        /// Any JSON document, a few levels deep.
        pub(in crate::flow) fn document() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                "[a-c]{0,2}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 48, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    proptest::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                        .prop_map(|members| Value::Object(members.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn arbitrary_text_never_panics_the_parser(
                text in prop_oneof![jsonpath_ish(), any::<String>()],
            ) {
                if let Err(err) = Query::parse(&text) {
                    prop_assert_eq!(&err.query, &text);
                    prop_assert!(err.offset.is_none_or(|at| at <= text.len()));
                }
            }

            #[test]
            fn every_parsed_query_selects_without_panicking(
                text in prop_oneof![jsonpath_ish(), valid_query()],
                document in document(),
            ) {
                if let Ok(query) = Query::parse(&text) {
                    prop_assert_eq!(query.as_str(), text.as_str());
                    let nodes = query.select(&document);
                    if query.is_singular() {
                        prop_assert!(nodes.len() <= 1);
                    }
                }
            }

            #[test]
            fn generated_valid_queries_parse(text in valid_query()) {
                prop_assert!(Query::parse(&text).is_ok(), "{} does not parse", text);
            }
        }
    }
}
