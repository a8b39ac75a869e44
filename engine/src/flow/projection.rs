//! What of the run context a flow's queries can read, so that a large JSON body is decoded
//! only as far as the flow looks into it.
//!
//! A [`Projection`] is a tree of member names with [`Projection::All`] leaves. It is built
//! from the queries a flow evaluates against its run context (each step's `when` and
//! `input`, the `answer`), conservatively: a query keeps every member it names on its way
//! down, and everything below the first segment that is not a name selector (an index, a
//! wildcard, a slice, a filter, a descendant segment) or below its last segment. Absolute
//! queries inside filters (`[?@.id == $.webhook.body.id]`) are read the same way. So every
//! node a query can select, and every node a filter can compare, is in the projection; what
//! the projection leaves out, no query of the flow can tell apart from the whole.
//!
//! [`Projection::decode`] parses JSON through a projection: members it leaves out are parsed (the text
//! must be valid JSON, to the same nesting limit as a whole parse) but not kept, so the
//! decoded value holds only what the flow reads.

use std::collections::BTreeMap;
use std::fmt;

use jsonpath_rust::parser::model::{
    Comparable, Comparison, FilterAtom, FnArg, Segment, Selector, SingularQuery,
    SingularQuerySegment, Test, TestFunction,
};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::query::Query;

/// The part of a JSON document that is read: all of it, or some of its members (none, when
/// the map is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    /// The whole node.
    All,
    /// These members of the node, when it is an object, each with what of it is read. A node
    /// that is not an object is read only by its type (a name selects nothing in it).
    Fields(BTreeMap<String, Projection>),
}

impl Default for Projection {
    /// Nothing is read.
    fn default() -> Projection {
        Projection::Fields(BTreeMap::new())
    }
}

/// One step of a path into a document, as far as a projection tells them apart.
enum Step<'a> {
    Name(&'a str),
    /// Anything that is not a single name: everything below is read.
    Other,
}

impl Projection {
    /// Adds what `query`, evaluated on the document this projection is of, can read.
    pub fn add_query(&mut self, query: &Query) {
        self.add_segments(&query.ast().segments);
    }

    /// Parses the JSON text `bytes`, keeping what this projection reads: the whole value for
    /// [`Projection::All`], else the projected members of an object, an empty array for an
    /// array and the value itself for anything else.
    pub fn decode(&self, bytes: &[u8]) -> serde_json::Result<Value> {
        if *self == Projection::All {
            return serde_json::from_slice(bytes);
        }
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let value = Projected(self).deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(value)
    }

    /// Adds the whole node at `path` (member names from this node).
    pub fn add_whole(&mut self, path: &[&str]) {
        self.add_path(path.iter().map(|name| Step::Name(name)));
    }

    /// What of the member `name` is read; `None` when nothing is.
    pub fn member(&self, name: &str) -> Option<&Projection> {
        match self {
            Projection::All => Some(&Projection::All),
            Projection::Fields(fields) => fields.get(name),
        }
    }

    /// Adds a path into the document: every node on it, and everything below its end.
    fn add_path<'a>(&mut self, mut steps: impl Iterator<Item = Step<'a>>) {
        let mut at = self;
        loop {
            if *at == Projection::All {
                return;
            }
            match steps.next() {
                Some(Step::Name(name)) => {
                    let Projection::Fields(fields) = at else {
                        return;
                    };
                    at = fields.entry(name.to_owned()).or_default();
                }
                Some(Step::Other) | None => {
                    *at = Projection::All;
                    return;
                }
            }
        }
    }

    /// Adds what a query of these segments reads: the nodes on its path, and the absolute
    /// queries of its filters. `self` is the projection of the root.
    fn add_segments(&mut self, segments: &[Segment]) {
        self.add_path_of(segments);
        for segment in segments {
            self.add_roots_of_segment(segment);
        }
    }

    /// Adds the nodes on the path of these segments, from the node this projection is of.
    fn add_path_of(&mut self, segments: &[Segment]) {
        let split = segments
            .iter()
            .position(|segment| !matches!(segment, Segment::Selector(Selector::Name(_))))
            .unwrap_or(segments.len());
        let (names, rest) = segments.split_at(split);
        let names: Vec<&str> = names
            .iter()
            .filter_map(|segment| match segment {
                Segment::Selector(Selector::Name(name)) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        match rest.first() {
            // A union of names (`['a','b']`): each member, then the rest of the query below it.
            Some(Segment::Selectors(selectors))
                if selectors.iter().all(|s| matches!(s, Selector::Name(_))) =>
            {
                for selector in selectors {
                    if let Selector::Name(name) = selector {
                        let mut below = Projection::default();
                        below.add_path_of(&rest[1..]);
                        self.graft(&names, name, below);
                    }
                }
            }
            other => self.add_path(
                names
                    .into_iter()
                    .map(Step::Name)
                    .chain(other.map(|_| Step::Other)),
            ),
        }
    }

    /// Puts `below` at `prefix` + `name`, merged with what is there.
    fn graft(&mut self, prefix: &[&str], name: &str, below: Projection) {
        let mut at = self;
        for step in prefix.iter().copied().chain(std::iter::once(name)) {
            let Projection::Fields(fields) = at else {
                return;
            };
            at = fields.entry(step.to_owned()).or_default();
        }
        at.merge(below);
    }

    fn merge(&mut self, other: Projection) {
        match (&mut *self, other) {
            (Projection::All, _) => {}
            (_, Projection::All) => *self = Projection::All,
            (Projection::Fields(mine), Projection::Fields(theirs)) => {
                for (name, below) in theirs {
                    mine.entry(name).or_default().merge(below);
                }
            }
        }
    }

    /// Adds the absolute queries that filters within `segment` evaluate.
    fn add_roots_of_segment(&mut self, segment: &Segment) {
        match segment {
            Segment::Descendant(inner) => self.add_roots_of_segment(inner),
            Segment::Selector(selector) => self.add_roots_of_selector(selector),
            Segment::Selectors(selectors) => {
                for selector in selectors {
                    self.add_roots_of_selector(selector);
                }
            }
        }
    }

    fn add_roots_of_selector(&mut self, selector: &Selector) {
        if let Selector::Filter(filter) = selector {
            self.add_roots_of_filter(filter);
        }
    }

    fn add_roots_of_filter(&mut self, filter: &jsonpath_rust::parser::model::Filter) {
        use jsonpath_rust::parser::model::Filter;
        match filter {
            Filter::Or(filters) | Filter::And(filters) => {
                for filter in filters {
                    self.add_roots_of_filter(filter);
                }
            }
            Filter::Atom(FilterAtom::Filter { expr, .. }) => self.add_roots_of_filter(expr),
            Filter::Atom(FilterAtom::Test { expr, .. }) => self.add_roots_of_test(expr),
            Filter::Atom(FilterAtom::Comparison(comparison)) => {
                let (left, right) = match comparison.as_ref() {
                    Comparison::Eq(l, r)
                    | Comparison::Ne(l, r)
                    | Comparison::Gt(l, r)
                    | Comparison::Gte(l, r)
                    | Comparison::Lt(l, r)
                    | Comparison::Lte(l, r) => (l, r),
                };
                self.add_roots_of_comparable(left);
                self.add_roots_of_comparable(right);
            }
        }
    }

    fn add_roots_of_comparable(&mut self, comparable: &Comparable) {
        match comparable {
            Comparable::Literal(_) | Comparable::SingularQuery(SingularQuery::Current(_)) => {}
            Comparable::SingularQuery(SingularQuery::Root(segments)) => {
                self.add_path(segments.iter().map(|segment| match segment {
                    SingularQuerySegment::Name(name) => Step::Name(name),
                    SingularQuerySegment::Index(_) => Step::Other,
                }));
            }
            Comparable::Function(function) => self.add_roots_of_function(function),
        }
    }

    fn add_roots_of_test(&mut self, test: &Test) {
        match test {
            // Relative to a node below a filter, which is read whole; its own filters may
            // still name the root.
            Test::RelQuery(segments) => {
                for segment in segments {
                    self.add_roots_of_segment(segment);
                }
            }
            Test::AbsQuery(query) => self.add_segments(&query.segments),
            Test::Function(function) => self.add_roots_of_function(function),
        }
    }

    fn add_roots_of_function(&mut self, function: &TestFunction) {
        let args: Vec<&FnArg> = match function {
            TestFunction::Custom(_, args) => args.iter().collect(),
            TestFunction::Length(arg) => vec![arg.as_ref()],
            TestFunction::Value(arg) | TestFunction::Count(arg) => vec![arg],
            TestFunction::Search(a, b) | TestFunction::Match(a, b) => vec![a, b],
        };
        for arg in args {
            match arg {
                FnArg::Literal(_) => {}
                FnArg::Test(test) => self.add_roots_of_test(test),
                FnArg::Filter(filter) => self.add_roots_of_filter(filter),
            }
        }
    }
}

/// A value decoded through a projection.
struct Projected<'a>(&'a Projection);

impl<'de> DeserializeSeed<'de> for Projected<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self.0 {
            Projection::All => de::Deserialize::deserialize(deserializer),
            Projection::Fields(fields) => deserializer.deserialize_any(FieldsVisitor(fields)),
        }
    }
}

struct FieldsVisitor<'a>(&'a BTreeMap<String, Projection>);

impl<'de> Visitor<'de> for FieldsVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            match self.0.get(&name) {
                Some(below) => {
                    kept.insert(name, map.next_value_seed(Projected(below))?);
                }
                None => {
                    map.next_value::<Skipped>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<Skipped>()?.is_some() {}
        Ok(Value::Array(Vec::new()))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// A value parsed and dropped. Unlike [`IgnoredAny`], which serde_json skips without counting
/// its nesting, it goes through `deserialize_any`, so a body too deeply nested for a whole
/// parse is too deeply nested here as well.
struct Skipped;

impl<'de> de::Deserialize<'de> for Skipped {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Skipped, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skipped;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skipped, A::Error> {
        while map.next_entry::<IgnoredAny, Skipped>()?.is_some() {}
        Ok(Skipped)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skipped, A::Error> {
        while seq.next_element::<Skipped>()?.is_some() {}
        Ok(Skipped)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_str<E>(self, _: &str) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_unit<E>(self) -> Result<Skipped, E> {
        Ok(Skipped)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use crate::flow::query::tests::properties::{document, valid_query};

    use super::*;

    fn projection(queries: &[&str]) -> Projection {
        let mut projection = Projection::default();
        for query in queries {
            projection.add_query(&Query::parse(query).unwrap());
        }
        projection
    }

    fn fields(pairs: &[(&str, Projection)]) -> Projection {
        Projection::Fields(
            pairs
                .iter()
                .map(|(name, below)| ((*name).to_owned(), below.clone()))
                .collect(),
        )
    }

    #[test]
    fn names_are_kept_down_to_the_first_other_segment() {
        use Projection::All;
        assert_eq!(
            projection(&["$.webhook.body.issue.title", "$.webhook.body.items[0].id"]),
            fields(&[(
                "webhook",
                fields(&[(
                    "body",
                    fields(&[("issue", fields(&[("title", All)])), ("items", All)])
                )])
            )])
        );
        assert_eq!(projection(&["$"]), All);
        assert_eq!(projection(&["$..id"]), All);
        assert_eq!(
            projection(&["$.steps.a.output", "$.webhook.*"]),
            fields(&[
                ("steps", fields(&[("a", fields(&[("output", All)]))])),
                ("webhook", All)
            ])
        );
        assert_eq!(
            projection(&["$.webhook['a','b'].c"]),
            fields(&[(
                "webhook",
                fields(&[("a", fields(&[("c", All)])), ("b", fields(&[("c", All)]))])
            )])
        );
    }

    #[test]
    fn root_queries_inside_filters_are_read() {
        use Projection::All;
        assert_eq!(
            projection(&["$.steps.list.output[?@.id == $.webhook.body.id]"]),
            fields(&[
                ("steps", fields(&[("list", fields(&[("output", All)]))])),
                ("webhook", fields(&[("body", fields(&[("id", All)]))]))
            ])
        );
        assert_eq!(
            projection(&["$.a[?length($.webhook.body.name) > 2 && $.webhook.head]"]),
            fields(&[
                ("a", All),
                (
                    "webhook",
                    fields(&[("body", fields(&[("name", All)])), ("head", All)])
                )
            ])
        );
    }

    #[test]
    fn a_projected_body_keeps_what_is_read_and_parses_all_of_it() {
        let body = br#"{"action":"opened","issue":{"number":1,"title":"t","body":"long"},"items":[{"id":1}],"n":3}"#;
        let read = projection(&["$.action", "$.issue.title"]);
        assert_eq!(
            read.decode(body).unwrap(),
            json!({"action": "opened", "issue": {"title": "t"}})
        );
        assert!(read.decode(br#"{"action":"opened","x":[1,}"#).is_err());
        assert!(read.decode(br#"{"action":"opened"} trailing"#).is_err());
        assert_eq!(read.decode(b"[1,2]").unwrap(), json!([]));
        assert_eq!(read.decode(b"\"text\"").unwrap(), json!("text"));
    }

    #[test]
    fn nesting_past_the_limit_fails_in_skipped_members_too() {
        let deep = format!(r#"{{"a":1,"b":{}{}}}"#, "[".repeat(200), "]".repeat(200));
        assert!(serde_json::from_str::<Value>(&deep).is_err());
        assert!(projection(&["$.a"]).decode(deep.as_bytes()).is_err());
    }

    /// The shared query strategy's segments, and filters that name the root.
    fn query() -> impl Strategy<Value = String> {
        let segment = prop_oneof![
            "[a-c]".prop_map(|n| format!(".{n}")),
            (0i64..3).prop_map(|i| format!("[{i}]")),
            Just("[*]".to_owned()),
            Just("..a".to_owned()),
            Just("['a','b']".to_owned()),
            Just("[?@.a == $.b]".to_owned()),
            Just("[?@ == 1]".to_owned()),
        ];
        prop::collection::vec(segment, 0..4).prop_map(|s| format!("${}", s.concat()))
    }

    proptest! {
        /// Whatever a query selects in the whole document, it selects the same in the
        /// document decoded through the projection of that query (and another one).
        #[test]
        fn a_query_selects_the_same_in_its_projection(
            document in document(),
            q in prop_oneof![query(), valid_query()],
            other in prop_oneof![query(), valid_query()],
        ) {
            let q = Query::parse(&q).unwrap();
            let mut read = Projection::default();
            read.add_query(&q);
            read.add_query(&Query::parse(&other).unwrap());
            let text = serde_json::to_vec(&document).unwrap();
            let projected = read.decode(&text).unwrap();
            prop_assert_eq!(q.select(&projected), q.select(&document));
        }
    }
}
