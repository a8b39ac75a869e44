//! `template`: renders text from a Jinja template (MiniJinja's dialect) with the step's input as
//! the variables, for messages, e-mail bodies and payloads of later steps.
//!
//! Input: any JSON value. When it is an object, each member is a variable (`{{ title }}`); the
//! whole input is always also there as `input` (`{{ input.title }}`, or `{{ input }}` for a
//! string), and `input` wins when the object has a member of that name.
//!
//! ```toml
//! [[steps]]
//! id = "message"
//! plugin = "template"
//! input.issue = "$.webhook.body.issue"
//! config.template = """
//! New issue #{{ issue.number }}: {{ issue.title }} by {{ issue.user.login }}
//! {%- if issue.labels %} [{{ issue.labels | map(attribute="name") | join(", ") }}]{% endif %}"""
//!
//! [[steps]]
//! id = "payload"
//! plugin = "template"
//! input.issue = "$.webhook.body.issue"
//! config.output = "json"
//! config.template = '{"text": {{ issue.title | tojson }}, "link": {{ issue.html_url | tojson }}}'
//! ```
//!
//! Config:
//!
//! - `template` (required): the template. The syntax is at
//!   <https://docs.rs/minijinja/latest/minijinja/syntax/>; the standard filters (`upper`,
//!   `default`, `join`, `tojson`, ...) and tests (`is defined`, ...) are there. Nothing is
//!   escaped, since the output is a message, not HTML; as in Jinja, one newline at the very end
//!   is dropped. A template that does not parse is an error of the flow when it loads; one that
//!   uses a filter, test or function that does not exist is a `config` error of the run, with
//!   the line.
//! - `output`: `"text"` (the default) outputs the rendered text as a JSON string. `"json"` parses
//!   the rendered text as JSON and outputs that value; text that is not JSON is a `config` error
//!   (the template is what has to change, typically by putting values through `tojson`), showing
//!   the JSON error and the start of the text.
//! - `strict`: `true` (the default) makes using a variable the input does not have, even in
//!   `{% if x %}`, an `invalid-input` error that names it and the line, such as
//!   ``undefined value: `issue.user` is undefined (in template:2)``. Test optional values with
//!   `{% if x is defined %}` or give them a fallback with `x | default("...")`. `false` renders a
//!   missing variable, or any attribute of one, as empty text.
//!
//! Any other key is a `config` error. Other failures while rendering, such as adding a number to
//! a string from the input, are `invalid-input` errors.
//!
//! Values keep their JSON types: `{{ 42 }}` prints `42` and `{{ 2.5 }}` prints `2.5`, but
//! `true`, `false` and `null` print as Jinja's `True`, `False` and `None`. Use `tojson` for JSON
//! spelling, or `x | default("none given", true)` to replace a `null`.

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, context};
use serde::Deserialize;
use serde_json::Value;
use weir_sdk::{Context, StepError};

/// The name errors give the template: `(in template:3)` is line 3 of `template`.
const NAME: &str = "template";

/// How many characters of the rendered text a JSON error shows.
const SHOWN_CHARS: usize = 200;

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The template source.
    template: String,
    /// What the rendered text becomes.
    #[serde(default)]
    output: Output,
    /// Whether a variable the input lacks is an error (`true`) or empty text (`false`).
    #[serde(default = "strict_by_default")]
    strict: bool,
}

/// A typo in a variable name should fail the run, not send a message with a hole in it.
fn strict_by_default() -> bool {
    true
}

/// What the step outputs.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Output {
    /// The rendered text as a JSON string.
    #[default]
    Text,
    /// The rendered text parsed as JSON.
    Json,
}

/// The environment templates render in.
fn environment(strict: bool) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Not strict means empty text for anything missing: `Chainable`, unlike `Lenient`, also
    // lets `{{ pr.title }}` through when `pr` itself is missing.
    env.set_undefined_behavior(if strict {
        UndefinedBehavior::Strict
    } else {
        UndefinedBehavior::Chainable
    });
    // Debug mode tracks where undefined values come from, so that the error for one says
    // "`issue.user` is undefined" rather than only "undefined value". It is off by default in
    // release builds, which the component is.
    env.set_debug(true);
    env
}

/// `validate-config`: Weir calls it when the flow loads, so a template that does not parse is
/// an error at the flow's `config` line rather than at the first run.
fn check(config: &Config) -> Result<(), StepError> {
    environment(config.strict)
        .template_from_named_str(NAME, &config.template)
        .map(drop)
        .map_err(|e| StepError::Config(e.to_string()))
}

#[weir_sdk::step(validate = check)]
fn run(_ctx: &Context, input: Value, config: Config) -> Result<Value, StepError> {
    let env = environment(config.strict);
    let template = env
        .template_from_named_str(NAME, &config.template)
        .map_err(|e| StepError::Config(e.to_string()))?;

    let whole = variable(input);
    // `..whole` adds an object's members; for any other input it adds nothing.
    let vars = context! { input => whole.clone(), ..whole };
    let text = template.render(vars).map_err(|e| render_error(&e))?;
    weir_sdk::debug!("rendered {} bytes", text.len());

    match config.output {
        Output::Text => Ok(Value::String(text)),
        Output::Json => serde_json::from_str(&text).map_err(|e| {
            StepError::Config(format!(
                "output = \"json\": the rendered text is not JSON ({e}); it starts with: {}",
                start_of(&text)
            ))
        }),
    }
}

/// A JSON value as a template value. Integers stay integers, so `{{ 3 }}` does not print `3.0`.
fn variable(value: Value) -> minijinja::Value {
    match value {
        Value::Null => minijinja::Value::from(()),
        Value::Bool(b) => b.into(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.into(),
            (None, Some(u), _) => u.into(),
            (None, None, f) => f.unwrap_or(f64::NAN).into(),
        },
        Value::String(s) => s.into(),
        Value::Array(items) => items.into_iter().map(variable).collect(),
        Value::Object(members) => {
            minijinja::Value::from_pairs(members.into_iter().map(|(k, v)| (k, variable(v))))
        }
    }
}

/// The step error for a failed render: a template that refers to a filter, test or function
/// that does not exist is wrong whatever the input, everything else depends on the input.
fn render_error(error: &minijinja::Error) -> StepError {
    let message = error.to_string();
    match error.kind() {
        ErrorKind::UnknownFilter
        | ErrorKind::UnknownTest
        | ErrorKind::UnknownFunction
        | ErrorKind::SyntaxError => StepError::Config(message),
        _ => StepError::InvalidInput(message),
    }
}

/// The first [`SHOWN_CHARS`] characters of `text`, quoted, with `…` when there is more.
fn start_of(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weir_sdk::testing::call;

    /// The output of a render that must succeed.
    fn rendered(input: Value, config: Value) -> Value {
        match call(run, input, config).output {
            Ok(output) => output,
            Err(e) => panic!("expected a rendering, got {e}"),
        }
    }

    /// The text of a render with `template` that must succeed.
    fn text(input: Value, template: &str) -> String {
        match rendered(input, json!({ "template": template })) {
            Value::String(text) => text,
            other => panic!("expected text, got {other}"),
        }
    }

    /// The error of a call that must fail.
    fn error(input: Value, config: Value) -> StepError {
        match call(run, input, config).output {
            Ok(output) => panic!("expected an error, got {output}"),
            Err(e) => e,
        }
    }

    #[test]
    fn validate_config_refuses_a_template_that_does_not_parse_and_unknown_keys() {
        use weir_sdk::testing::validate_config;
        let ok = json!({"template": "Hi {{ name }}", "output": "text", "strict": false});
        assert_eq!(validate_config(run, Some(check), ok), Ok(()));
        let broken = validate_config(run, Some(check), json!({"template": "{% if %}"}));
        assert!(broken.unwrap_err().contains("syntax error"));
        let unknown = validate_config(run, Some(check), json!({"template": "x", "strikt": true}));
        assert!(unknown.unwrap_err().contains("unknown field `strikt`"));
        let missing = validate_config(run, Some(check), json!({}));
        assert!(missing.unwrap_err().contains("missing field `template`"));
    }

    fn issue() -> Value {
        json!({
            "number": 42,
            "title": "Crash on <start> & \"exit\"",
            "user": {"login": "octocat"},
            "labels": [{"name": "bug"}, {"name": "ui"}],
            "milestone": null,
            "score": 2.5,
        })
    }

    /// The templates of the module documentation, as TOML gives them to the step.
    #[test]
    fn the_documented_examples_render() {
        let input = json!({"issue": {
            "number": 42, "title": "Crash", "user": {"login": "octocat"},
            "labels": [{"name": "bug"}, {"name": "ui"}], "html_url": "https://x/42",
        }});
        let message = "New issue #{{ issue.number }}: {{ issue.title }} by {{ issue.user.login }}\n\
                       {%- if issue.labels %} [{{ issue.labels | map(attribute=\"name\") | join(\", \") }}]{% endif %}";
        assert_eq!(
            text(input.clone(), message),
            "New issue #42: Crash by octocat [bug, ui]"
        );
        let payload =
            r#"{"text": {{ issue.title | tojson }}, "link": {{ issue.html_url | tojson }}}"#;
        assert_eq!(
            rendered(input, json!({"template": payload, "output": "json"})),
            json!({"text": "Crash", "link": "https://x/42"})
        );
    }

    #[test]
    fn renders_the_members_of_the_input_as_variables() {
        let input = json!({"number": 42, "title": "Crash on start", "user": "octocat"});
        assert_eq!(
            rendered(
                input,
                json!({"template": "#{{ number }}: {{ title }} by {{ user }}"})
            ),
            json!("#42: Crash on start by octocat")
        );
    }

    #[test]
    fn reaches_into_nested_objects_and_arrays() {
        let input = json!({"issue": issue()});
        assert_eq!(
            text(
                input,
                "{{ issue.user.login }} {{ issue['labels'][1].name }}"
            ),
            "octocat ui"
        );
    }

    #[test]
    fn loops_over_arrays() {
        let template = "{% for label in labels %}{{ loop.index }}.{{ label.name }}\
                        {% if not loop.last %}, {% endif %}{% endfor %}";
        assert_eq!(text(issue(), template), "1.bug, 2.ui");
        let joined = r#"{{ labels | map(attribute="name") | join(", ") | upper }}"#;
        assert_eq!(text(issue(), joined), "BUG, UI");
    }

    #[test]
    fn numbers_print_as_given_and_null_as_none() {
        assert_eq!(
            text(issue(), "{{ number }} {{ score }} {{ milestone }}"),
            "42 2.5 None"
        );
        let template = r#"{{ milestone | default("no milestone", true) }}"#;
        assert_eq!(text(issue(), template), "no milestone");
        let big = json!({"n": u64::MAX, "m": -7});
        assert_eq!(text(big, "{{ n }} {{ m }}"), "18446744073709551615 -7");
    }

    #[test]
    fn nothing_is_escaped() {
        assert_eq!(text(issue(), "{{ title }}"), r#"Crash on <start> & "exit""#);
    }

    #[test]
    fn one_trailing_newline_is_dropped() {
        assert_eq!(text(json!({"a": 1}), "a={{ a }}\n"), "a=1");
        assert_eq!(text(json!({"a": 1}), "a={{ a }}\n\n"), "a=1\n");
    }

    #[test]
    fn tojson_renders_values_as_json() {
        let template = "{{ user | tojson }}|{{ title | tojson }}|{{ milestone | tojson }}";
        let out = text(issue(), template);
        let parts: Vec<Value> = out
            .split('|')
            .map(|part| serde_json::from_str(part).unwrap())
            .collect();
        assert_eq!(
            parts,
            [
                json!({"login": "octocat"}),
                json!("Crash on <start> & \"exit\""),
                json!(null)
            ]
        );
    }

    #[test]
    fn json_output_is_the_parsed_text() {
        let config = json!({
            "template": r#"{"text": {{ title | tojson }}, "n": {{ number }}, "tags": {{ labels | map(attribute="name") | list | tojson }}}"#,
            "output": "json",
        });
        assert_eq!(
            rendered(issue(), config),
            json!({"text": "Crash on <start> & \"exit\"", "n": 42, "tags": ["bug", "ui"]})
        );
    }

    #[test]
    fn json_output_can_be_any_json_value() {
        let config = json!({"template": "{{ number }}", "output": "json"});
        assert_eq!(rendered(issue(), config), json!(42));
    }

    #[test]
    fn text_that_is_not_json_is_a_config_error_showing_its_start() {
        let config = json!({"template": r#"{"text": "{{ title }}"}"#, "output": "json"});
        let StepError::Config(message) = error(issue(), config) else {
            panic!("expected a config error");
        };
        assert!(
            message.starts_with("output = \"json\": the rendered text is not JSON (expected"),
            "{message}"
        );
        assert!(
            message.ends_with(r#"it starts with: "{\"text\": \"Crash on <start> & \"exit\"\"}""#),
            "{message}"
        );
    }

    #[test]
    fn a_long_text_that_is_not_json_is_shown_cut() {
        let config = json!({"template": "{{ 'x' * 500 }}", "output": "json"});
        let StepError::Config(message) = error(json!({}), config) else {
            panic!("expected a config error");
        };
        let shown = format!("it starts with: \"{}\"…", "x".repeat(SHOWN_CHARS));
        assert!(message.ends_with(&shown), "{message}");
    }

    #[test]
    fn strict_makes_an_undefined_variable_an_input_error_naming_it() {
        let template = "Issue\n{{ issue.user.login }}";
        assert_eq!(
            error(
                json!({"issue": {"number": 1}}),
                json!({"template": template})
            ),
            StepError::InvalidInput(
                "undefined value: `issue.user` is undefined (in template:2)".into()
            )
        );
        assert_eq!(
            error(
                json!({}),
                json!({"template": "{% for l in labels %}{% endfor %}"})
            ),
            StepError::InvalidInput(
                "undefined value: `labels` is undefined (in template:1)".into()
            )
        );
    }

    #[test]
    fn strict_still_allows_checking_for_optional_values() {
        let template =
            r#"{{ title | default("untitled") }}{% if body is defined %}: {{ body }}{% endif %}"#;
        assert_eq!(text(json!({}), template), "untitled");
        assert_eq!(text(json!({"title": "T", "body": "B"}), template), "T: B");
    }

    #[test]
    fn lenient_renders_undefined_values_empty() {
        let config = json!({
            "template": "[{{ missing }}|{{ missing.deeper.still }}|{% for x in missing %}{{ x }}{% endfor %}]",
            "strict": false,
        });
        assert_eq!(rendered(json!({}), config), json!("[||]"));
    }

    #[test]
    fn the_whole_input_is_also_input() {
        assert_eq!(text(json!({"a": 1}), "{{ a }} {{ input.a }}"), "1 1");
        assert_eq!(
            text(json!({"input": "shadowed"}), "{{ input.input }}"),
            "shadowed"
        );
    }

    #[test]
    fn input_that_is_not_an_object_is_input() {
        assert_eq!(text(json!("closed"), "state: {{ input }}"), "state: closed");
        assert_eq!(text(json!([1, 2, 3]), "{{ input | sum }}"), "6");
        assert_eq!(text(json!(7), "{{ input * 2 }}"), "14");
        assert_eq!(text(json!(null), "{{ input is none }}"), "True");
    }

    #[test]
    fn an_operation_the_input_does_not_support_is_an_input_error() {
        let e = error(
            json!({"n": 1, "s": "x"}),
            json!({"template": "{{ n + s }}"}),
        );
        assert!(matches!(e, StepError::InvalidInput(_)), "{e}");
        assert!(e.message().contains("(in template:1)"), "{e}");
    }

    #[test]
    fn a_syntax_error_is_a_config_error_with_the_line() {
        assert_eq!(
            error(
                json!({}),
                json!({"template": "line one\n{% for x in xs %}{{ x }"})
            ),
            StepError::Config(
                "syntax error: unexpected `}`, expected end of variable block (in template:2)"
                    .into()
            )
        );
        assert_eq!(
            error(json!({}), json!({"template": "{% if x %}never closed"})),
            StepError::Config(
                "syntax error: unexpected end of input, expected end of block (in template:1)"
                    .into()
            )
        );
    }

    #[test]
    fn an_unknown_filter_is_a_config_error() {
        assert_eq!(
            error(json!({"a": "x"}), json!({"template": "{{ a | shout }}"})),
            StepError::Config("unknown filter: filter shout is unknown (in template:1)".into())
        );
    }

    #[test]
    fn a_missing_template_is_a_config_error() {
        let e = error(json!({}), json!({"output": "text"}));
        assert!(matches!(e, StepError::Config(_)), "{e}");
        assert!(e.message().contains("missing field `template`"), "{e}");
    }

    #[test]
    fn an_unknown_key_is_a_config_error() {
        let e = error(json!({}), json!({"template": "x", "strcit": false}));
        assert!(matches!(e, StepError::Config(_)), "{e}");
        assert!(e.message().contains("unknown field `strcit`"), "{e}");
    }

    #[test]
    fn an_unknown_output_is_a_config_error() {
        let e = error(json!({}), json!({"template": "x", "output": "yaml"}));
        assert!(matches!(e, StepError::Config(_)), "{e}");
        assert!(e.message().contains("unknown variant `yaml`"), "{e}");
        assert!(e.message().contains("expected `text` or `json`"), "{e}");
    }

    #[test]
    fn rendering_is_logged() {
        let out = call(run, json!({"a": "é"}), json!({"template": "{{ a }}!"}));
        assert_eq!(out.output.unwrap(), json!("é!"));
        assert_eq!(out.logs.len(), 1);
        assert_eq!(out.logs[0].level, weir_sdk::Level::Debug);
        assert_eq!(out.logs[0].message, "rendered 3 bytes");
    }
}
