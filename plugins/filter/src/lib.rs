//! `filter`: lets a run go on only when its input meets every condition of the config. When one
//! fails, the run ends with status `filtered` (not a failure) and the reason names the condition
//! and the value it got, such as `equals: got "closed", not the configured value`. A reason never
//! shows a configured value: config strings may come from `${ENV}` and hold secrets. When all
//! hold, the output is the input unchanged, so later steps can read it as
//! `$.steps.<id>.output`.
//!
//! Input: any JSON value. The flow's `input` mapping picks the value to test:
//!
//! ```toml
//! [[steps]]
//! id = "opened"
//! plugin = "filter"
//! input = "$.webhook.body.action"
//! config = { one_of = ["opened", "reopened"] }
//!
//! [[steps]]
//! id = "big-order"
//! plugin = "filter"
//! input = "$.webhook.body.total"
//! config = { gte = 100, lt = 10000 }
//! ```
//!
//! Config: one or more conditions, all of which must hold. They are checked in this order and
//! the first that fails is the reason:
//!
//! | key          | holds when the input                                                      |
//! |--------------|---------------------------------------------------------------------------|
//! | `equals`     | equals the value (deep equality; numbers compare by value, `1` = `1.0`)  |
//! | `not_equals` | does not equal the value (same equality)                                  |
//! | `exists`     | `true`: is not `null`; `false`: is `null`                                 |
//! | `one_of`     | equals one of the values of a non-empty array (same equality)            |
//! | `matches`    | is a string the regex matches somewhere in (use `^…$` for all of it)     |
//! | `gt`, `gte`  | is a number greater than / at least the bound                             |
//! | `lt`, `lte`  | is a number less than / at most the bound                                 |
//!
//! The number conditions also take a string that parses as a finite number (`"42"`, `"-1.5"`,
//! `"1e3"`), because form posts and query strings carry numbers as text. Anything else, such as
//! `"abc"`, `null` or `[1]`, fails the condition. `equals` never converts: `"1"` is not `1`.
//!
//! The regex syntax is that of the `regex` crate (<https://docs.rs/regex/latest/regex/#syntax>);
//! `(?i)` makes it case-insensitive.
//!
//! A config without conditions, with a key that is not a condition, with a value of the wrong
//! type, with an empty `one_of` or with a regex that does not compile is a `config` error.

use regex::Regex;
use serde::{Deserialize, Deserializer};
use serde_json::{Number, Value};
use weir_sdk::{Context, StepError};

/// The step's config as written in the flow; [`Config::conditions`] turns it into what runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of conditions")]
struct Config {
    #[serde(default, deserialize_with = "present")]
    equals: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    not_equals: Option<Value>,
    exists: Option<bool>,
    one_of: Option<Vec<Value>>,
    matches: Option<String>,
    gt: Option<f64>,
    gte: Option<f64>,
    lt: Option<f64>,
    lte: Option<f64>,
}

/// Deserializes a key that is present as `Some`, even when its value is `null`, so that
/// `{"equals": null}` is a condition rather than no condition at all.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// One check of the input, ready to run: regexes are compiled.
#[derive(Debug)]
enum Condition {
    Equals(Value),
    NotEquals(Value),
    Exists(bool),
    OneOf(Vec<Value>),
    Matches(Regex),
    /// A number bound: `gt`, `gte`, `lt` or `lte`.
    Bound(Comparison, f64),
}

/// How a number bound compares the input with its bound.
#[derive(Debug, Clone, Copy)]
enum Comparison {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Comparison {
    /// The config key.
    fn key(self) -> &'static str {
        match self {
            Comparison::Gt => "gt",
            Comparison::Gte => "gte",
            Comparison::Lt => "lt",
            Comparison::Lte => "lte",
        }
    }

    /// Completes "expected a number …" in a reason.
    fn phrase(self) -> &'static str {
        match self {
            Comparison::Gt => "greater than",
            Comparison::Gte => "at least",
            Comparison::Lt => "less than",
            Comparison::Lte => "at most",
        }
    }

    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Comparison::Gt => value > bound,
            Comparison::Gte => value >= bound,
            Comparison::Lt => value < bound,
            Comparison::Lte => value <= bound,
        }
    }
}

impl Config {
    /// The conditions in checking order, or a `config` error for a config that cannot work.
    fn conditions(&self) -> Result<Vec<Condition>, StepError> {
        let mut conditions = Vec::new();
        if let Some(value) = &self.equals {
            conditions.push(Condition::Equals(value.clone()));
        }
        if let Some(value) = &self.not_equals {
            conditions.push(Condition::NotEquals(value.clone()));
        }
        if let Some(wanted) = self.exists {
            conditions.push(Condition::Exists(wanted));
        }
        if let Some(values) = &self.one_of {
            if values.is_empty() {
                return Err(StepError::Config(
                    "one_of needs at least one value: with none, every run would be filtered"
                        .into(),
                ));
            }
            conditions.push(Condition::OneOf(values.clone()));
        }
        if let Some(pattern) = &self.matches {
            let regex = Regex::new(pattern).map_err(|e| {
                StepError::Config(format!("matches: invalid regex {pattern:?}: {e}"))
            })?;
            conditions.push(Condition::Matches(regex));
        }
        for (comparison, bound) in [
            (Comparison::Gt, self.gt),
            (Comparison::Gte, self.gte),
            (Comparison::Lt, self.lt),
            (Comparison::Lte, self.lte),
        ] {
            if let Some(bound) = bound {
                conditions.push(Condition::Bound(comparison, bound));
            }
        }
        if conditions.is_empty() {
            return Err(StepError::Config(
                "filter needs at least one condition: \
                 equals, not_equals, exists, one_of, matches, gt, gte, lt, lte"
                    .into(),
            ));
        }
        Ok(conditions)
    }
}

impl Condition {
    /// The config key, for logs and reasons.
    fn key(&self) -> &'static str {
        match self {
            Condition::Equals(_) => "equals",
            Condition::NotEquals(_) => "not_equals",
            Condition::Exists(_) => "exists",
            Condition::OneOf(_) => "one_of",
            Condition::Matches(_) => "matches",
            Condition::Bound(comparison, _) => comparison.key(),
        }
    }

    /// `Ok` when the input meets the condition, otherwise the reason the run is filtered.
    fn check(&self, input: &Value) -> Result<(), String> {
        let got = shown(input);
        let key = self.key();
        match self {
            Condition::Equals(expected) if same(input, expected) => Ok(()),
            // Configured values are not shown (they may be secrets), and neither is an input
            // equal to one.
            Condition::Equals(_) => Err(format!("{key}: got {got}, not the configured value")),
            Condition::NotEquals(excluded) if !same(input, excluded) => Ok(()),
            Condition::NotEquals(_) => Err(format!("{key}: got the value it excludes")),
            Condition::Exists(wanted) if *wanted != input.is_null() => Ok(()),
            Condition::Exists(true) => Err(format!("{key}: expected a value, got null")),
            Condition::Exists(false) => Err(format!("{key}: expected null, got {got}")),
            Condition::OneOf(values) if values.iter().any(|v| same(input, v)) => Ok(()),
            Condition::OneOf(_) => Err(format!("{key}: got {got}, none of the configured values")),
            Condition::Matches(regex) => match input {
                Value::String(text) if regex.is_match(text) => Ok(()),
                Value::String(_) => Err(format!(
                    "{key}: got {got}, which the configured pattern does not match"
                )),
                _ => Err(format!("{key}: expected a string, got {got}")),
            },
            Condition::Bound(comparison, bound) => match number(input) {
                Some(value) if comparison.holds(value, *bound) => Ok(()),
                Some(_) => Err(format!(
                    "{key}: expected a number {} {bound}, got {got}",
                    comparison.phrase()
                )),
                None => Err(format!("{key}: expected a number, got {got}")),
            },
        }
    }
}

/// JSON equality in which numbers compare by value (`1` equals `1.0`), at any depth.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => same_number(a, b),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, a)| b.get(key).is_some_and(|b| same(a, b)))
        }
        _ => a == b,
    }
}

/// Integers compare exactly (an `f64` cannot tell 2^53 from 2^53 + 1); anything with a fraction
/// or exponent compares as `f64`.
fn same_number(a: &Number, b: &Number) -> bool {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (a.as_u64(), b.as_u64()) {
        return a == b;
    }
    a.as_f64() == b.as_f64()
}

/// The input as a number for `gt`, `gte`, `lt` and `lte`: a JSON number, or a string that
/// parses as a finite one.
fn number(input: &Value) -> Option<f64> {
    match input {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    }
}

/// How many characters of a value a reason shows; a whole webhook body would drown the message.
const SHOWN_CHARS: usize = 120;

/// A value as compact JSON for a reason, cut to [`SHOWN_CHARS`] characters.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// `validate-config`: Weir calls it when the flow loads, so a config that cannot work is an
/// error at the flow's `config` line rather than at the first run.
fn check(config: &Config) -> Result<(), StepError> {
    config.conditions().map(drop)
}

#[weir_sdk::step(validate = check)]
fn run(_ctx: &Context, input: Value, config: Config) -> Result<Value, StepError> {
    let conditions = config.conditions()?;
    for condition in &conditions {
        condition.check(&input).map_err(StepError::Filtered)?;
        weir_sdk::debug!("{} holds", condition.key());
    }
    let held: Vec<&str> = conditions.iter().map(Condition::key).collect();
    weir_sdk::info!("passed: {}", held.join(", "));
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weir_sdk::testing::call;

    /// The output of a call that must pass.
    fn passes(input: Value, config: Value) -> Value {
        match call(run, input, config).output {
            Ok(output) => output,
            Err(e) => panic!("expected the input to pass, got {e}"),
        }
    }

    /// The reason of a call that must be filtered.
    fn filtered(input: Value, config: Value) -> String {
        match call(run, input, config).output {
            Err(StepError::Filtered(reason)) => reason,
            other => panic!("expected filtered, got {other:?}"),
        }
    }

    /// The message of a call that must fail with a config error.
    fn config_error(config: Value) -> String {
        match call(run, json!("x"), config).output {
            Err(StepError::Config(message)) => message,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn a_passing_input_is_the_output_unchanged() {
        let input = json!({"action": "opened", "n": [1, {"deep": null}]});
        let config = json!({"exists": true});
        assert_eq!(passes(input.clone(), config), input);
    }

    #[test]
    fn equals() {
        passes(json!("opened"), json!({"equals": "opened"}));
        assert_eq!(
            filtered(json!("closed"), json!({"equals": "opened"})),
            r#"equals: got "closed", not the configured value"#
        );
    }

    #[test]
    fn equals_compares_numbers_by_value() {
        passes(json!(1), json!({"equals": 1.0}));
        passes(json!(1.0), json!({"equals": 1}));
        passes(json!(-3), json!({"equals": -3.0}));
        passes(json!({"n": [1.0]}), json!({"equals": {"n": [1]}}));
        assert_eq!(
            filtered(json!(1.5), json!({"equals": 1})),
            "equals: got 1.5, not the configured value"
        );
    }

    #[test]
    fn equals_tells_large_integers_apart() {
        // 2^53 and 2^53 + 1 are the same f64.
        let big = 9_007_199_254_740_992_i64;
        filtered(json!(big + 1), json!({"equals": big}));
        passes(json!(u64::MAX), json!({"equals": u64::MAX}));
    }

    #[test]
    fn equals_is_deep_and_does_not_convert() {
        let issue = json!({"labels": ["bug"], "user": {"login": "octocat"}});
        passes(issue.clone(), json!({"equals": issue}));
        assert_eq!(
            filtered(
                json!({"labels": ["bug"]}),
                json!({"equals": {"labels": ["bug", "ui"]}})
            ),
            r#"equals: got {"labels":["bug"]}, not the configured value"#
        );
        assert_eq!(
            filtered(json!({"a": 1}), json!({"equals": {"a": 1, "b": null}})),
            r#"equals: got {"a":1}, not the configured value"#
        );
        assert_eq!(
            filtered(json!("1"), json!({"equals": 1})),
            r#"equals: got "1", not the configured value"#
        );
        assert_eq!(
            filtered(json!(true), json!({"equals": "true"})),
            "equals: got true, not the configured value"
        );
    }

    #[test]
    fn equals_null_is_a_condition() {
        passes(json!(null), json!({"equals": null}));
        assert_eq!(
            filtered(json!(0), json!({"equals": null})),
            "equals: got 0, not the configured value"
        );
    }

    #[test]
    fn not_equals() {
        passes(json!("opened"), json!({"not_equals": "closed"}));
        passes(json!(null), json!({"not_equals": "closed"}));
        assert_eq!(
            filtered(json!(2.0), json!({"not_equals": 2})),
            "not_equals: got the value it excludes"
        );
    }

    #[test]
    fn exists() {
        passes(json!("x"), json!({"exists": true}));
        passes(json!(false), json!({"exists": true}));
        passes(json!(""), json!({"exists": true}));
        passes(json!(null), json!({"exists": false}));
        assert_eq!(
            filtered(json!(null), json!({"exists": true})),
            "exists: expected a value, got null"
        );
        assert_eq!(
            filtered(json!({"a": 1}), json!({"exists": false})),
            r#"exists: expected null, got {"a":1}"#
        );
    }

    #[test]
    fn one_of() {
        let config = json!({"one_of": ["opened", "reopened", 3]});
        passes(json!("reopened"), config.clone());
        passes(json!(3.0), config.clone());
        assert_eq!(
            filtered(json!("closed"), config),
            r#"one_of: got "closed", none of the configured values"#
        );
    }

    #[test]
    fn matches() {
        let config = json!({"matches": r"^v\d+\.\d+$"});
        passes(json!("v1.20"), config.clone());
        assert_eq!(
            filtered(json!("v1.x"), config),
            r#"matches: got "v1.x", which the configured pattern does not match"#
        );
    }

    #[test]
    fn matches_finds_a_match_anywhere_unless_anchored() {
        passes(json!("fix: crash on start"), json!({"matches": "crash"}));
        passes(json!("WIP: docs"), json!({"matches": "(?i)^wip"}));
        passes(json!("١٢"), json!({"matches": r"^\d+$"}));
    }

    #[test]
    fn matches_needs_a_string() {
        for (input, got) in [
            (json!(42), "42"),
            (json!(null), "null"),
            (json!(["a"]), r#"["a"]"#),
        ] {
            assert_eq!(
                filtered(input, json!({"matches": "a"})),
                format!("matches: expected a string, got {got}")
            );
        }
    }

    #[test]
    fn number_bounds() {
        let cases = [
            ("gt", 5, 6, 5, "gt: expected a number greater than 5, got 5"),
            ("gte", 5, 5, 4, "gte: expected a number at least 5, got 4"),
            ("lt", 5, 4, 5, "lt: expected a number less than 5, got 5"),
            ("lte", 5, 5, 6, "lte: expected a number at most 5, got 6"),
        ];
        for (key, bound, passing, failing, reason) in cases {
            passes(json!(passing), json!({ key: bound }));
            assert_eq!(filtered(json!(failing), json!({ key: bound })), reason);
        }
    }

    #[test]
    fn number_bounds_compare_fractions() {
        passes(json!(0.5), json!({"gt": 0.25, "lt": 1}));
        assert_eq!(
            filtered(json!(2.5), json!({"lte": 2.25})),
            "lte: expected a number at most 2.25, got 2.5"
        );
    }

    #[test]
    fn number_bounds_take_numeric_strings() {
        passes(json!("42"), json!({"gt": 41}));
        passes(json!("-1.5"), json!({"lt": 0}));
        passes(json!("1e3"), json!({"gte": 1000}));
        assert_eq!(
            filtered(json!("7"), json!({"gt": 7})),
            r#"gt: expected a number greater than 7, got "7""#
        );
    }

    #[test]
    fn number_bounds_need_a_number() {
        for (input, got) in [
            (json!("abc"), r#""abc""#),
            (json!(""), r#""""#),
            (json!("inf"), r#""inf""#),
            (json!("NaN"), r#""NaN""#),
            (json!(null), "null"),
            (json!(true), "true"),
            (json!([1]), "[1]"),
        ] {
            assert_eq!(
                filtered(input, json!({"gte": 0})),
                format!("gte: expected a number, got {got}")
            );
        }
    }

    #[test]
    fn all_conditions_must_hold() {
        let config = json!({"exists": true, "matches": "^pi_", "not_equals": "pi_test"});
        assert_eq!(passes(json!("pi_42"), config.clone()), json!("pi_42"));
        assert_eq!(
            filtered(json!("pi_test"), config.clone()),
            "not_equals: got the value it excludes"
        );
        assert_eq!(
            filtered(json!("ch_1"), config),
            r#"matches: got "ch_1", which the configured pattern does not match"#
        );
    }

    #[test]
    fn the_first_failing_condition_in_documented_order_is_the_reason() {
        let config = json!({"lt": 0, "equals": 1, "one_of": [2]});
        assert_eq!(
            filtered(json!(5), config),
            "equals: got 5, not the configured value"
        );
    }

    #[test]
    fn a_range_of_numbers() {
        let config = json!({"gte": 100, "lt": 10000});
        passes(json!(100), config.clone());
        passes(json!(9999.5), config.clone());
        assert_eq!(
            filtered(json!(10000), config),
            "lt: expected a number less than 10000, got 10000"
        );
    }

    #[test]
    fn a_long_value_is_cut_in_the_reason() {
        let long = "é".repeat(500);
        let reason = filtered(json!(long), json!({"equals": "short"}));
        let got = reason
            .strip_prefix("equals: got ")
            .and_then(|rest| rest.strip_suffix(", not the configured value"))
            .unwrap();
        assert_eq!(got, format!("\"{}…", "é".repeat(SHOWN_CHARS - 1)));
    }

    /// Issue 20, item 5: a config value may be a secret from `${ENV}`; no reason shows it.
    #[test]
    fn reasons_never_show_a_configured_value() {
        let secret = "supersecretapikey123";
        for config in [
            json!({"equals": secret}),
            json!({"not_equals": "guess"}),
            json!({"one_of": [secret, "other"]}),
            json!({"matches": format!("^{secret}$")}),
        ] {
            let reason = filtered(json!("guess"), config.clone());
            assert!(!reason.contains(secret), "{config}: {reason}");
        }
    }

    #[test]
    fn passing_conditions_are_logged() {
        let out = call(run, json!(7), json!({"gt": 1, "exists": true}));
        assert_eq!(out.output.unwrap(), json!(7));
        let logs: Vec<_> = out
            .logs
            .iter()
            .map(|l| (l.level, l.message.as_str()))
            .collect();
        assert_eq!(
            logs,
            [
                (weir_sdk::Level::Debug, "exists holds"),
                (weir_sdk::Level::Debug, "gt holds"),
                (weir_sdk::Level::Info, "passed: exists, gt"),
            ]
        );
    }

    #[test]
    fn a_filtered_call_logs_what_held_before_the_failure() {
        let out = call(run, json!(0), json!({"gt": 1, "exists": true}));
        assert!(matches!(out.output, Err(StepError::Filtered(_))));
        let logs: Vec<_> = out.logs.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(logs, ["exists holds"]);
    }

    #[test]
    fn validate_config_refuses_what_run_would_refuse_and_accepts_the_rest() {
        use weir_sdk::testing::validate_config;
        assert_eq!(
            validate_config(run, Some(check), json!({"matches": "^(opened|reopened)$"})),
            Ok(())
        );
        for config in [
            json!({}),
            json!({"equal": "opened"}),
            json!({"matches": "(unclosed"}),
            json!({"one_of": []}),
            json!({"gt": "x"}),
        ] {
            let message = validate_config(run, Some(check), config.clone()).unwrap_err();
            assert_eq!(message, config_error(config));
        }
    }

    #[test]
    fn an_empty_config_is_a_config_error() {
        assert_eq!(
            config_error(json!({})),
            "filter needs at least one condition: \
             equals, not_equals, exists, one_of, matches, gt, gte, lt, lte"
        );
    }

    #[test]
    fn an_unknown_key_is_a_config_error() {
        let message = config_error(json!({"equal": "opened"}));
        assert!(message.contains("unknown field `equal`"), "{message}");
        assert!(message.contains("`equals`"), "{message}");
    }

    #[test]
    fn an_invalid_regex_is_a_config_error() {
        let message = config_error(json!({"matches": "(unclosed"}));
        assert!(
            message.starts_with(r#"matches: invalid regex "(unclosed": "#),
            "{message}"
        );
        assert!(message.contains("unclosed group"), "{message}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_a_config_error() {
        for (config, expected) in [
            (json!({"gt": "x"}), "expected f64"),
            (json!({"exists": "yes"}), "expected a boolean"),
            (json!({"one_of": "opened"}), "expected a sequence"),
            (json!({"matches": 1}), "expected a string"),
        ] {
            let message = config_error(config);
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn an_empty_one_of_is_a_config_error() {
        assert_eq!(
            config_error(json!({"one_of": []})),
            "one_of needs at least one value: with none, every run would be filtered"
        );
    }

    #[test]
    fn a_config_that_is_not_a_table_is_a_config_error() {
        let message = config_error(json!("opened"));
        assert!(
            message.contains("expected a table of conditions"),
            "{message}"
        );
    }

    #[test]
    fn any_json_value_can_be_tested() {
        for input in [
            json!(null),
            json!(true),
            json!(0),
            json!("s"),
            json!([]),
            json!({}),
        ] {
            passes(input.clone(), json!({"equals": input}));
        }
    }
}
