//! Flow files as a user writes them: what loads, what each mistake reports (line, column and
//! message), and what mappings give at run time.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;

const FILE: &str = "/srv/flows/test.toml";

fn env(name: &str) -> Option<String> {
    match name {
        "SLACK_URL" => Some("https://hooks.slack.example/T000/B000".to_owned()),
        "API_TOKEN" => Some("s3cret".to_owned()),
        "HOOK_SECRET" => Some("a-webhook-secret-of-32-bytes-ok!".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn builtin(name: &str) -> bool {
    matches!(name, "filter" | "template" | "transform")
}

fn load_at(path: &str, source: &str) -> Result<Flow, Diagnostics> {
    parse_flow_with(
        Path::new(path),
        source,
        &LoadContext {
            env: &env,
            is_builtin: &builtin,
            plugin_exists: &|plugin: &Path| plugin == Path::new("/srv/flows/plugins/shout.wasm"),
            plugin_places: &PluginPlaces::default(),
        },
    )
}

fn load(source: &str) -> Flow {
    load_at(FILE, source).unwrap_or_else(|err| panic!("flow should load:\n{err}"))
}

/// The problems of `source` as `line:column: message`.
fn errors(source: &str) -> Vec<String> {
    errors_at(FILE, source)
}

fn errors_at(path: &str, source: &str) -> Vec<String> {
    match load_at(path, source) {
        Ok(_) => panic!("flow should not load"),
        Err(diagnostics) => diagnostics
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect(),
    }
}

/// A run context with this webhook body and these step outputs.
fn context(body: Value, outputs: &[(&str, Value)]) -> Value {
    let steps: serde_json::Map<String, Value> = outputs
        .iter()
        .map(|(id, output)| ((*id).to_owned(), json!({ "output": output })))
        .collect();
    json!({ "webhook": { "method": "POST", "body": body }, "steps": steps })
}

const MINIMAL: &str = r#"
name = "Minimal"

[[steps]]
id = "only"
plugin = "transform"
"#;

// ---- what loads ----

#[test]
fn minimal_flow_gets_the_defaults() {
    let flow = load(MINIMAL);
    assert_eq!(flow.id.as_str(), "test");
    assert_eq!(flow.name, "Minimal");
    assert_eq!(flow.description, None);
    assert_eq!(flow.webhook, WebhookSpec::default());
    assert_eq!(flow.webhook.methods, vec!["POST"]);
    assert_eq!(flow.webhook.max_body, 1024 * 1024);
    assert_eq!(flow.source_path, PathBuf::from(FILE));
    assert_eq!(flow.version.len(), 16);
    assert!(flow.version.chars().all(|c| c.is_ascii_hexdigit()));

    let step = &flow.steps[0];
    assert_eq!(step.id.as_str(), "only");
    assert_eq!(step.plugin, PluginRef::Builtin("transform".into()));
    assert!(step.when.is_none());
    assert_eq!(step.input.evaluate(&json!({})).unwrap(), json!({}));
    assert!(step.input.is_constant());
    assert_eq!(step.config, json!({}));
    assert_eq!((step.timeout, step.memory), (None, None));
}

#[test]
fn version_follows_the_bytes() {
    let a = load(MINIMAL).version;
    assert_eq!(a, load(MINIMAL).version);
    assert_ne!(a, load(&format!("{MINIMAL}\n# a comment\n")).version);
}

#[test]
fn every_field_is_read() {
    let flow = load(
        r#"
name = "Everything"
description = "All the fields."

[webhook]
methods = ["post", "PUT"]
max_body = "2 MiB"

[[steps]]
id = "first"
plugin = "plugins/shout.wasm"
when = "$.webhook.body.go"
input = "$.webhook.body"
config = { level = 3, ratio = 0.5, on = true, at = 2024-05-01T10:00:00Z, tags = ["a", "b"] }
timeout = "1m 30s"
memory = "128 MiB"

[[steps]]
id = "second"
plugin = "filter"
memory = 2097152
"#,
    );
    assert_eq!(flow.description.as_deref(), Some("All the fields."));
    assert_eq!(flow.webhook.methods, vec!["POST", "PUT"]);
    assert_eq!(flow.webhook.max_body, 2 << 20);
    let first = &flow.steps[0];
    assert_eq!(
        first.plugin,
        PluginRef::Path("/srv/flows/plugins/shout.wasm".into())
    );
    assert_eq!(
        first.when.as_ref().map(Query::as_str),
        Some("$.webhook.body.go")
    );
    assert_eq!(
        first.config,
        json!({"level": 3, "ratio": 0.5, "on": true, "at": "2024-05-01T10:00:00Z", "tags": ["a", "b"]})
    );
    assert_eq!(first.timeout, Some(std::time::Duration::from_secs(90)));
    assert_eq!(first.memory, Some(128 << 20));
    assert_eq!(flow.steps[1].memory, Some(2 << 20));
    assert_eq!(flow.step("second").map(|s| s.id.as_str()), Some("second"));
    assert!(flow.step("third").is_none());
}

#[test]
fn a_flow_may_have_no_steps() {
    assert!(load("name = \"Capture only\"").steps.is_empty());
}

// ---- each kind of mistake ----

#[test]
fn toml_syntax_error_is_one_diagnostic() {
    assert_eq!(
        errors("name = \"x\"\n[[steps]]\nid = \n"),
        vec!["3:6: invalid TOML: string values must be quoted, expected literal string"]
    );
    assert_eq!(
        errors("name = \"x\"\nname = \"y\"\n"),
        vec!["2:1: invalid TOML: duplicate key"]
    );
}

#[test]
fn diagnostics_display_like_a_compiler() {
    let err = load_at("flows/test.toml", "name = 1").unwrap_err();
    assert_eq!(
        err.to_string(),
        "flows/test.toml:1:8: error: `name` must be a string, found integer"
    );
}

#[test]
fn unknown_keys_list_the_allowed_ones() {
    let source = r#"name = "x"
colour = "blue"

[webhook]
respnd = "result"

[[steps]]
id = "a"
plugin = "filter"
tiemout = "5s"
input.name = { "$path" = "$.webhook.body.name", "$default" = "n", "$dflt" = 1 }
"#;
    assert_eq!(
        errors(source),
        vec![
            "2:1: unknown key `colour` at the top level; allowed keys: name, description, concurrency, order_by, on_failure, webhook, steps",
            "5:1: unknown key `respnd` in [webhook]; allowed keys: methods, max_body, max_head, dedupe, dedupe_window, respond, respond_timeout, verify, slack_url_verification, meta_verify_token, graph_validation, echo_challenge, allow_ips, answer",
            "10:1: in step 'a': unknown key `tiemout` in a step; allowed keys: id, plugin, when, input, config, timeout, memory, allow_hosts, allow_private, max_response, max_request, retries, backoff, max_backoff, jitter, retry_on_trap",
            "11:67: in step 'a': unknown key `$dflt` in a mapping with a default; allowed keys: $path, $default",
        ]
    );
}

#[test]
fn wrong_types_name_the_key_and_what_was_found() {
    let source = r#"name = 5
description = ["no"]
webhook = "POST"
steps = { id = "a" }
"#;
    assert_eq!(
        errors(source),
        vec![
            "1:8: `name` must be a string, found integer",
            "2:15: `description` must be a string, found array",
            "3:11: `webhook` must be a table (`[webhook]`), found string",
            "4:9: `steps` must be an array of tables (`[[steps]]`), found table",
        ]
    );
    let source = r#"name = "x"
[webhook]
methods = "POST"
max_body = true

[[steps]]
id = 7
plugin = ["filter"]
when = 1
timeout = 5
memory = 1.5
"#;
    assert_eq!(
        errors(source),
        vec![
            "3:11: `methods` must be an array of HTTP methods, such as [\"POST\"], found string",
            "4:12: `max_body` must be a size such as \"64 MiB\", found boolean",
            "7:6: in step #1: `id` must be a string, found integer",
            "8:10: in step #1: `plugin` must be a string, found array",
            "9:8: in step #1: `when` must be a string, found integer",
            "10:11: in step #1: `timeout` must be a duration such as \"5s\", found integer",
            "11:10: in step #1: `memory` must be a size such as \"64 MiB\", found float",
        ]
    );
}

#[test]
fn required_keys() {
    let source = r#"description = "no name"

[[steps]]
input = {}

[[steps]]
id = "b"
name = "x"
"#;
    assert_eq!(
        errors(source),
        vec![
            "1:1: missing `name`: give the flow a display name, such as `name = \"GitHub issues to Slack\"`",
            "3:1: in step #1: missing `id`: give the step an id such as `id = \"notify\"`",
            "3:1: in step #1: missing `plugin`: the name of a built-in plugin or the path of a .wasm file",
            "6:1: in step 'b': missing `plugin`: the name of a built-in plugin or the path of a .wasm file",
            "8:1: in step 'b': unknown key `name` in a step; allowed keys: id, plugin, when, input, config, timeout, memory, allow_hosts, allow_private, max_response, max_request, retries, backoff, max_backoff, jitter, retry_on_trap",
        ]
    );
    assert_eq!(
        errors("name = \"  \""),
        vec!["1:8: `name` must not be empty"]
    );
}

#[test]
fn bad_flow_id_from_the_file_name() {
    assert_eq!(
        errors_at("/srv/flows/GitHub Issues.toml", MINIMAL),
        vec![
            "1:1: invalid flow id 'GitHub Issues': use 1 to 64 characters from a-z, 0-9, '_' and '-', starting with a letter or digit (the flow id is the file name without `.toml`; rename the file)"
        ]
    );
}

#[test]
fn bad_step_ids() {
    let source = r#"name = "x"

[[steps]]
id = "Send Mail"
plugin = "filter"

[[steps]]
id = "webhook"
plugin = "filter"
"#;
    assert_eq!(
        errors(source),
        vec![
            "4:6: in step 'Send Mail': invalid step id 'Send Mail': use 1 to 64 characters from a-z, 0-9, '_' and '-', starting with a letter or digit",
            "8:6: in step 'webhook': the step id 'webhook' is reserved: `$.webhook` is the request that starts the run",
        ]
    );
}

#[test]
fn duplicate_step_id_points_at_the_second() {
    let source = r#"name = "x"

[[steps]]
id = "notify"
plugin = "filter"

[[steps]]
id = "notify"
plugin = "template"
"#;
    assert_eq!(
        errors(source),
        vec!["8:6: in step 'notify': duplicate step id 'notify': line 4 already uses it"]
    );
}

#[test]
fn unknown_plugins() {
    let source = r#"name = "x"

[[steps]]
id = "a"
plugin = "filtre"

[[steps]]
id = "b"
plugin = "plugins/missing.wasm"
"#;
    assert_eq!(
        errors(source),
        vec![
            "5:10: in step 'a': unknown plugin `filtre`: it is not a built-in plugin, and a plugin file must end in `.wasm`",
            "9:10: in step 'b': plugin file `plugins/missing.wasm` not found (looked for /srv/flows/plugins/missing.wasm); plugin paths are relative to the flow file's folder",
        ]
    );
}

#[test]
fn jsonpath_syntax_errors_point_into_the_string() {
    let source = r#"name = "x"

[[steps]]
id = "a"
plugin = "filter"
when = "$.webhook.[body"
input.title = "$.webhook.body.issue..title.]"
input.escaped = "$.webhook\u002e["
"#;
    assert_eq!(
        errors(source),
        vec![
            "6:19: in step 'a': invalid JSONPath `$.webhook.[body`: expected `*` or a member name, found `[` at position 11",
            "7:44: in step 'a': invalid JSONPath `$.webhook.body.issue..title.]`: expected `*` or a member name, found `]` at position 29",
            // With an escape in the TOML string the column is the string's start.
            "8:17: in step 'a': invalid JSONPath `$.webhook.[`: expected `*` or a member name, found `[` at position 11",
        ]
    );
}

#[test]
fn ill_typed_jsonpath_functions_are_rejected() {
    let source = r#"name = "x"

[[steps]]
id = "a"
plugin = "filter"
input = "$.webhook.body.items[?length(@.tags)]"
"#;
    assert_eq!(
        errors(source),
        vec![
            "6:9: in step 'a': invalid JSONPath `$.webhook.body.items[?length(@.tags)]`: the result of `length` must be compared, as in `length(...) > 0`"
        ]
    );
}

#[test]
fn references_must_be_to_earlier_steps() {
    let source = r#"name = "x"

[[steps]]
id = "first"
plugin = "transform"
when = "$.steps.second.output"
input.own = "$.steps.first.output"
input.later = "$.steps.second.output"

[[steps]]
id = "second"
plugin = "transform"
input.ok = "$.steps.first.output"
input.typo = "$.steps['frist'].output"
input.all = "$.steps.*.output"
"#;
    assert_eq!(
        errors(source),
        vec![
            "6:8: in step 'first': step 'second' is not an earlier step: it comes later in the file, so its output does not exist yet",
            "7:13: in step 'first': step 'first' is not an earlier step: a step cannot read its own output",
            "8:15: in step 'first': step 'second' is not an earlier step: it comes later in the file, so its output does not exist yet",
            "14:14: in step 'second': step 'frist' is not an earlier step: no step has that id",
        ]
    );
}

#[test]
fn queries_must_start_at_webhook_or_steps() {
    let source = r#"name = "x"

[[steps]]
id = "a"
plugin = "transform"
when = "$..action"
input.whole = "$"
input.body = "$.body.action"
input.both = "$['webhook','steps']"
"#;
    assert_eq!(
        errors(source),
        vec![
            "6:8: in step 'a': `$..action` must start with `$.webhook`, `$.steps` or `$.failed`: the run context has only these members (`failed` in runs started by another flow's `on_failure`)",
            "7:15: in step 'a': `$` must start with `$.webhook`, `$.steps` or `$.failed`: the run context has only these members (`failed` in runs started by another flow's `on_failure`)",
            "8:14: in step 'a': `$.body.action` must start with `$.webhook`, `$.steps` or `$.failed`: the run context has only these members (`failed` in runs started by another flow's `on_failure`)",
        ]
    );
}

#[test]
fn when_must_be_a_query() {
    let source = r#"name = "x"

[[steps]]
id = "a"
plugin = "filter"
when = "webhook.body.ok"
"#;
    assert_eq!(
        errors(source),
        vec![
            "6:8: in step 'a': `when` must be a JSONPath query starting with `$`, such as \"$.webhook.body.action\""
        ]
    );
}

#[test]
fn defaults_must_be_well_formed() {
    let source = r#"name = "x"

[[steps]]
id = "a"
plugin = "transform"
input.no_default = { "$path" = "$.webhook.body.a" }
input.no_path = { "$default" = 1 }
input.literal_path = { "$path" = "plain", "$default" = 1 }
input.plural = { "$path" = "$.webhook.body.items[*]", "$default" = [] }
"#;
    assert_eq!(
        errors(source),
        vec![
            "6:20: in step 'a': a mapping with a default needs both \"$path\" (the query) and \"$default\" (the value when it selects nothing)",
            "7:17: in step 'a': a mapping with a default needs both \"$path\" (the query) and \"$default\" (the value when it selects nothing)",
            "8:34: in step 'a': \"$path\" must be a JSONPath query starting with `$`, such as \"$.webhook.body.name\"",
            "9:28: in step 'a': \"$default\" only applies to a singular query; `$.webhook.body.items[*]` always gives an array (empty when it selects nothing)",
        ]
    );
}

#[test]
fn missing_environment_variables() {
    let source = r#"name = "x"

[[steps]]
id = "a"
plugin = "transform"
config.url = "${SLACK_URL}"
config.headers = { authorization = "Bearer ${MISSING_TOKEN}", other = "${ALSO_MISSING" }
config.list = ["${9}"]
"#;
    assert_eq!(
        errors(source),
        vec![
            "7:44: in step 'a': environment variable `MISSING_TOKEN` is not set (referenced as `${MISSING_TOKEN}`); set it before starting Weir, or write `$${` for a literal `${`",
            "7:72: in step 'a': `${` has no closing `}`; write `$${` for a literal `${`",
            "8:17: in step 'a': `${9}` is not a variable reference: names use A-Z, a-z, 0-9 and '_' and do not start with a digit; write `$${` for a literal `${`",
        ]
    );
}

#[test]
fn sizes_and_durations_are_checked() {
    let source = r#"name = "x"

[webhook]
max_body = "65 MiB"

[[steps]]
id = "a"
plugin = "filter"
timeout = "0s"
memory = "512 KiB"

[[steps]]
id = "b"
plugin = "filter"
timeout = "11m"
memory = "5 GiB"

[[steps]]
id = "c"
plugin = "filter"
timeout = "fast"
memory = "lots"
"#;
    assert_eq!(
        errors(source),
        vec![
            "4:12: `max_body` must be at most 64 MiB",
            "9:11: in step 'a': `timeout` must be longer than 0s",
            "10:10: in step 'a': `memory` must be at least 1 MiB",
            "15:11: in step 'b': `timeout` must be at most 10m",
            "16:10: in step 'b': `memory` must be at most 4 GiB",
            "21:11: in step 'c': `timeout` = \"fast\" is not a duration (expected number at 0); write it like \"5s\" or \"2m 30s\"",
            "22:10: in step 'c': `memory` = \"lots\" is not a size (couldn't parse \"lots\" into a ByteSize, cannot parse float from empty string); write it like \"64 MiB\"",
        ]
    );
    assert_eq!(
        errors("name = \"x\"\nwebhook.max_body = 0"),
        vec!["2:20: `max_body` must be at least 1 byte"]
    );
}

#[test]
fn methods_are_checked() {
    assert_eq!(
        errors("name = \"x\"\n[webhook]\nmethods = [\"GET\", \"get\", \"NOT A METHOD\", 3]"),
        vec![
            "3:19: `GET` is listed twice",
            "3:26: `NOT A METHOD` is not an HTTP method: a method is a token such as GET, POST or PUT",
            "3:42: `methods` must be a string, found integer",
        ]
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\nmethods = []"),
        vec!["3:11: `methods` must list at least one HTTP method, such as [\"POST\"]"]
    );
}

#[test]
fn non_finite_floats_do_not_become_json() {
    let source = "name = \"x\"\n[[steps]]\nid = \"a\"\nplugin = \"filter\"\nconfig.limit = inf\ninput.x = nan\n";
    assert_eq!(
        errors(source),
        vec![
            "5:16: in step 'a': inf cannot be represented in JSON: use a finite number",
            "6:11: in step 'a': nan cannot be represented in JSON: use a finite number",
        ]
    );
}

#[test]
fn every_error_of_a_file_is_reported_at_once_in_file_order() {
    let source = r#"name = ""
extra = 1

[webhook]
methods = ["P O S T"]
max_body = "1 TiB"

[[steps]]
id = "Opened"
plugin = "nope"
when = "$.steps.later.output"
config.secret = "${NOT_SET}"

[[steps]]
id = "later"
plugin = "template"
input.x = "$.webhook.["
timeout = "1 fortnight"
"#;
    let found = errors(source);
    assert_eq!(
        found
            .iter()
            .map(|e| e.split(": ").next().unwrap_or_default())
            .collect::<Vec<_>>(),
        vec![
            "1:8", "2:1", "5:12", "6:12", "9:6", "10:10", "11:8", "12:18", "17:22", "18:11"
        ],
        "{found:#?}"
    );
}

// ---- environment values ----

#[test]
fn config_takes_environment_values_and_remembers_where() {
    let flow = load(
        r#"name = "x"

[[steps]]
id = "post"
plugin = "transform"
config.url = "${SLACK_URL}"
config.headers = { authorization = "Bearer ${API_TOKEN}", "x/y" = "${API_TOKEN}" }
config.items = ["plain", "${API_TOKEN}"]
config.price = "$5 or $${NOT_ENV}"
input.raw = "not ${INTERPOLATED} in input"
"#,
    );
    let step = &flow.steps[0];
    assert_eq!(
        step.config,
        json!({
            "url": "https://hooks.slack.example/T000/B000",
            "headers": { "authorization": "Bearer s3cret", "x/y": "s3cret" },
            "items": ["plain", "s3cret"],
            "price": "$5 or ${NOT_ENV}",
        })
    );
    let mut pointers = step.env_config.clone();
    pointers.sort();
    assert_eq!(
        pointers,
        vec![
            "/headers/authorization",
            "/headers/x~1y",
            "/items/1",
            "/url"
        ]
    );
    assert_eq!(
        step.redacted_config(),
        json!({
            "url": "[redacted]",
            "headers": { "authorization": "[redacted]", "x/y": "[redacted]" },
            "items": ["plain", "[redacted]"],
            "price": "$5 or ${NOT_ENV}",
        })
    );
    assert_eq!(
        step.input.evaluate(&json!({})).unwrap(),
        json!({"raw": "not ${INTERPOLATED} in input"})
    );
}

// ---- mappings at run time ----

fn step_of(source: &str) -> Step {
    let mut flow = load(source);
    flow.steps.pop().expect("a step")
}

#[test]
fn singular_queries_give_their_value_and_others_an_array() {
    let step = step_of(
        r#"name = "x"
[[steps]]
id = "a"
plugin = "transform"
input.title = "$.webhook.body.issue.title"
input.first_label = "$.webhook.body.labels[0].name"
input.labels = "$.webhook.body.labels[*].name"
input.none = "$.webhook.body.labels[?@.name == 'nope']"
input.object = "$.webhook.body.issue"
"#,
    );
    let ctx = context(
        json!({"issue": {"title": "Crash"}, "labels": [{"name": "bug"}, {"name": "p1"}]}),
        &[],
    );
    assert_eq!(
        step.input.evaluate(&ctx).unwrap(),
        json!({
            "title": "Crash",
            "first_label": "bug",
            "labels": ["bug", "p1"],
            "none": [],
            "object": {"title": "Crash"},
        })
    );
}

#[test]
fn a_whole_input_can_be_one_query() {
    let step = step_of(
        "name = \"x\"\n[[steps]]\nid = \"a\"\nplugin = \"filter\"\ninput = \"$.webhook.body.action\"\n",
    );
    let ctx = context(json!({"action": "opened"}), &[]);
    assert_eq!(step.input.evaluate(&ctx).unwrap(), json!("opened"));
    assert!(!step.input.is_constant());
}

#[test]
fn missing_singular_value_is_an_error_naming_flow_step_place_and_path() {
    let step = step_of(
        r#"name = "x"
[[steps]]
id = "message"
plugin = "template"
input.issue = { title = "$.webhook.body.issue.title" }
"#,
    );
    let err = step.input.evaluate(&context(json!({}), &[])).unwrap_err();
    assert_eq!(
        err,
        MappingError::NothingSelected {
            flow: FlowId::new("test").unwrap(),
            step: StepId::new("message").unwrap(),
            place: "input.issue.title".into(),
            path: "$.webhook.body.issue.title".into(),
        }
    );
    assert_eq!(
        err.to_string(),
        "flow 'test', step 'message': input.issue.title = \"$.webhook.body.issue.title\" selected nothing; check the payload, or give the place a \"$default\""
    );
}

#[test]
fn defaults_apply_only_when_nothing_is_selected() {
    let step = step_of(
        r#"name = "x"
[[steps]]
id = "a"
plugin = "transform"
input.name = { "$path" = "$.webhook.body.name", "$default" = "anonymous" }
input.tags = { "$path" = "$.webhook.body.tags", "$default" = ["none", "$.not.a.query"] }
"#,
    );
    assert_eq!(
        step.input.evaluate(&context(json!({}), &[])).unwrap(),
        json!({"name": "anonymous", "tags": ["none", "$.not.a.query"]})
    );
    assert_eq!(
        step.input
            .evaluate(&context(json!({"name": null, "tags": ["x"]}), &[]))
            .unwrap(),
        json!({"name": null, "tags": ["x"]})
    );
}

#[test]
fn literals_escapes_and_nesting() {
    let step = step_of(
        r#"name = "x"

[[steps]]
id = "first"
plugin = "transform"

[[steps]]
id = "a"
plugin = "transform"
input.price = "$$5"
input.dollars = "$$$.webhook"
input.text = "costs $5"
input.count = 3
input.ok = true
input.when = 1979-05-27T07:32:00Z
input.nested = { list = ["fixed", "$.steps.first.output", { deep = "$.webhook.method" }], "odd key" = "$.webhook.body.x" }
"#,
    );
    let ctx = context(json!({"x": 1}), &[("first", json!({"done": true}))]);
    assert_eq!(
        step.input.evaluate(&ctx).unwrap(),
        json!({
            "price": "$5",
            "dollars": "$$.webhook",
            "text": "costs $5",
            "count": 3,
            "ok": true,
            "when": "1979-05-27T07:32:00Z",
            "nested": {
                "list": ["fixed", {"done": true}, {"deep": "POST"}],
                "odd key": 1,
            },
        })
    );
    let err = step
        .input
        .evaluate(&context(json!({}), &[("first", json!(1))]));
    assert!(
        matches!(&err, Err(MappingError::NothingSelected { place, .. }) if place == "input.nested.\"odd key\""),
        "{err:?}"
    );
}

#[test]
fn when_runs_the_step_only_if_something_is_selected() {
    let step = step_of(
        r#"name = "x"
[[steps]]
id = "a"
plugin = "filter"
when = "$.webhook.body[?@.state == 'open']"
"#,
    );
    assert!(step.should_run(&context(json!({"pr": {"state": "open"}}), &[])));
    assert!(!step.should_run(&context(json!({"pr": {"state": "closed"}}), &[])));

    let step = step_of(
        "name = \"x\"\n[[steps]]\nid = \"a\"\nplugin = \"filter\"\nwhen = \"$.webhook.body.draft\"\n",
    );
    assert!(step.should_run(&context(json!({"draft": false}), &[])));
    assert!(!step.should_run(&context(json!({}), &[])));
    assert!(step_of(MINIMAL).should_run(&json!({})));
}

// ---- the example flows in flows/ ----

const EXAMPLES: &[(&str, &str)] = &[
    (
        "flows/github-issues.toml",
        include_str!("../../../flows/github-issues.toml"),
    ),
    (
        "flows/stripe-payments.toml",
        include_str!("../../../flows/stripe-payments.toml"),
    ),
    (
        "flows/contact-form.toml",
        include_str!("../../../flows/contact-form.toml"),
    ),
];

fn example(name: &str) -> Flow {
    let (path, source) = EXAMPLES
        .iter()
        .find(|(path, _)| path.contains(name))
        .expect("an example flow");
    parse_flow(Path::new(path), source, &|_| None, &builtin)
        .unwrap_or_else(|err| panic!("{path} should load:\n{err}"))
}

#[test]
fn example_flows_load_without_environment() {
    for (path, _) in EXAMPLES {
        let stem = Path::new(path)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let flow = example(stem);
        assert_eq!(flow.id.as_str(), stem);
        assert!(!flow.steps.is_empty());
    }
}

#[test]
fn github_example_maps_an_issue_event() {
    let flow = example("github-issues");
    let ctx = context(
        json!({"action": "opened", "issue": {"number": 42, "title": "Crash on start",
               "html_url": "https://github.com/acme/app/issues/42", "user": {"login": "octocat"}}}),
        &[("message", json!("New issue #42"))],
    );
    let inputs: Vec<Value> = flow
        .steps
        .iter()
        .map(|step| step.input.evaluate(&ctx).unwrap())
        .collect();
    assert_eq!(
        inputs,
        vec![
            json!("opened"),
            json!({"number": 42, "title": "Crash on start", "user": "octocat",
                   "url": "https://github.com/acme/app/issues/42"}),
            json!({"text": "New issue #42", "channel": "#issues"}),
        ]
    );
    assert_eq!(flow.steps[0].config, json!({"equals": "opened"}));
}

#[test]
fn stripe_example_defaults_the_email() {
    let flow = example("stripe-payments");
    let ctx = context(
        json!({"type": "payment_intent.succeeded", "data": {"object": {
            "id": "pi_1", "amount": 2500, "currency": "eur", "customer": "cus_42"}}}),
        &[],
    );
    assert_eq!(
        flow.steps[1].input.evaluate(&ctx).unwrap(),
        json!({"id": "pi_1", "amount": 2500, "currency": "eur", "customer": "cus_42",
               "email": "no e-mail on file"})
    );
    assert_eq!(flow.webhook.max_body, 256 * 1024);
}

#[test]
fn contact_form_example_maps_form_fields() {
    let flow = example("contact-form");
    let ctx = context(
        json!({"email": "ada@example.com", "message": "Do you ship to Mars?"}),
        &[],
    );
    assert_eq!(
        flow.steps[0].input.evaluate(&ctx).unwrap(),
        json!({"name": "anonymous", "email": "ada@example.com", "message": "Do you ship to Mars?"})
    );
    let err = flow.steps[0]
        .input
        .evaluate(&context(json!({"email": "a@b.c"}), &[]))
        .unwrap_err();
    assert!(err.to_string().contains("input.message"), "{err}");
}

#[test]
fn dedupe_reads_one_value_of_the_webhook() {
    let flow = load(
        r#"name = "x"
[webhook]
dedupe = "$.webhook.headers['x-github-delivery']"
"#,
    );
    let spec = &flow.webhook;
    let key = |webhook: Value| spec.dedupe_key(&json!({ "webhook": webhook }));
    assert_eq!(
        key(json!({"headers": {"x-github-delivery": "d-1"}})),
        Some("d-1".into())
    );
    assert_eq!(
        key(json!({"headers": {"x-github-delivery": 42}})),
        Some("\u{0}42".into())
    );
    // Issue 20, item 12: keys keep their JSON type; `1` and `"1"` are different deliveries,
    // and a string cannot pass for a typed key.
    let keys: Vec<Option<String>> = [
        json!(1),
        json!("1"),
        json!("\u{0}1"),
        json!(true),
        json!("true"),
        json!([1]),
        json!("[1]"),
    ]
    .into_iter()
    .map(|value| key(json!({"headers": {"x-github-delivery": value}})))
    .collect();
    for (i, a) in keys.iter().enumerate() {
        assert!(a.is_some());
        for b in &keys[i + 1..] {
            assert_ne!(a, b, "{keys:?}");
        }
    }
    // Nothing selected, or null: never a duplicate.
    assert_eq!(key(json!({"headers": {}})), None);
    assert_eq!(key(json!({"headers": {"x-github-delivery": null}})), None);
    assert_eq!(load(MINIMAL).webhook.dedupe_key(&json!({})), None);
    assert_eq!(
        spec.dedupe_window, None,
        "by default a value holds for good"
    );
}

#[test]
fn dedupe_window_is_a_duration_that_goes_with_dedupe() {
    let flow = load(
        r#"name = "x"
[webhook]
dedupe = "$.webhook.body.id"
dedupe_window = "3d"
"#,
    );
    assert_eq!(
        flow.webhook.dedupe_window,
        Some(Duration::from_secs(3 * 24 * 3600))
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\ndedupe_window = \"1h\"\n"),
        vec![
            "3:17: `dedupe_window` only applies with `dedupe` (or a `verify` scheme that brings one)"
        ]
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\ndedupe = true\n"),
        vec![
            "3:10: `dedupe = true` is not a query: write the JSONPath of the delivery id, such as \
             \"$.webhook.headers['x-request-id']\", or `false` to turn dedupe off"
        ]
    );
    assert_eq!(
        errors(
            "name = \"x\"\n[webhook]\ndedupe = \"$.webhook.body.id\"\ndedupe_window = \"soon\"\n"
        ),
        vec![
            "4:17: `dedupe_window` = \"soon\" is not a duration (expected number at 0); \
             write it like \"5s\" or \"2m 30s\""
        ]
    );
}

#[test]
fn dedupe_must_be_a_singular_query_on_the_webhook() {
    let source = r#"name = "x"
[webhook]
dedupe = "$.steps.a.output"

[[steps]]
id = "a"
plugin = "transform"
"#;
    assert_eq!(
        errors(source),
        vec![
            "3:10: `dedupe` is read when the webhook arrives, before any step runs: \
             `$.steps.a.output` must start with `$.webhook`"
        ]
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\ndedupe = \"$.webhook.body.items[*].id\"\n"),
        vec![
            "3:10: `dedupe` must select at most one value (names and indexes only), \
             and `$.webhook.body.items[*].id` can select several"
        ]
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\ndedupe = \"delivery\"\n"),
        vec![
            "3:10: `dedupe` must be a JSONPath query starting with `$.webhook`, such as \
             \"$.webhook.headers['x-github-delivery']\""
        ]
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\ndedupe = \"$.webhook[\"\n").len(),
        1
    );
}

#[test]
fn respond_is_accepted_unless_the_flow_asks_for_its_result() {
    use crate::flow::{DEFAULT_RESPOND_TIMEOUT, Respond};
    assert_eq!(load(MINIMAL).webhook.respond, Respond::Accepted);
    let with = |webhook: &str| {
        load(&format!("name = \"x\"\n[webhook]\n{webhook}\n"))
            .webhook
            .respond
    };
    assert_eq!(with("respond = \"accepted\""), Respond::Accepted);
    assert_eq!(
        with("respond = \"result\""),
        Respond::Result {
            timeout: DEFAULT_RESPOND_TIMEOUT
        }
    );
    assert_eq!(
        with("respond = \"result\"\nrespond_timeout = \"1m 30s\""),
        Respond::Result {
            timeout: std::time::Duration::from_secs(90)
        }
    );

    let errors_of = |webhook: &str| errors(&format!("name = \"x\"\n[webhook]\n{webhook}\n"));
    assert_eq!(
        errors_of("respond = \"sync\""),
        vec!["3:11: `respond` = \"sync\" is not one of \"accepted\", \"result\""]
    );
    assert_eq!(
        errors_of("respond_timeout = \"5s\""),
        vec!["3:19: `respond_timeout` only applies with `respond = \"result\"`"]
    );
    let too_long = errors_of("respond = \"result\"\nrespond_timeout = \"1h\"");
    assert_eq!(too_long.len(), 1);
    assert!(
        too_long[0].starts_with("4:19: `respond_timeout` must be at most"),
        "{too_long:?}"
    );
}

#[test]
fn verify_reads_each_scheme_with_secrets_from_the_environment() {
    use crate::verify::{Algorithm, DEFAULT_TOLERANCE, Encoding, TokenPlace, Verify};
    let with = |verify: &str| {
        load(&format!("name = \"x\"\n[webhook]\nverify = {verify}\n"))
            .webhook
            .verify
            .expect("a verify")
    };
    assert_eq!(
        with(r#"{ scheme = "github", secret = "${HOOK_SECRET}" }"#),
        Verify::Github {
            secret: "a-webhook-secret-of-32-bytes-ok!".into()
        }
    );
    assert_eq!(
        with(r#"{ scheme = "stripe", secret = "whsec_0123456789abcdef", tolerance = "10m" }"#),
        Verify::Stripe {
            secret: "whsec_0123456789abcdef".into(),
            tolerance: std::time::Duration::from_secs(600)
        }
    );
    assert_eq!(
        with(r#"{ scheme = "slack", secret = "0123456789abcdef" }"#),
        Verify::Slack {
            secret: "0123456789abcdef".into(),
            tolerance: DEFAULT_TOLERANCE
        }
    );
    assert_eq!(
        with(
            r#"{ scheme = "hmac", secret = "0123456789abcdef", header = "X-Signature", prefix = "sha256=", encoding = "base64" }"#
        ),
        Verify::Hmac {
            secret: "0123456789abcdef".into(),
            header: "x-signature".into(),
            prefix: "sha256=".into(),
            encoding: Encoding::Base64,
            algorithm: Algorithm::Sha256,
        }
    );
    assert_eq!(
        with(
            r#"{ scheme = "hmac", secret = "0123456789abcdef", header = "X-Hub-Signature", prefix = "sha1=", algorithm = "sha1" }"#
        ),
        Verify::Hmac {
            secret: "0123456789abcdef".into(),
            header: "x-hub-signature".into(),
            prefix: "sha1=".into(),
            encoding: Encoding::Hex,
            algorithm: Algorithm::Sha1,
        }
    );
    assert_eq!(
        with(r#"{ scheme = "token", token = "t", query = "key" }"#),
        Verify::Token {
            token: "t".into(),
            place: TokenPlace::Query("key".into())
        }
    );
    assert_eq!(
        with(r#"{ scheme = "token", token = "t" }"#),
        Verify::Token {
            token: "t".into(),
            place: TokenPlace::Bearer
        }
    );
    assert!(matches!(
        with(
            r#"{ scheme = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }"#
        ),
        Verify::StandardWebhooks { .. }
    ));
    assert!(matches!(
        with(r#"{ scheme = "basic", username = "u", password = "p" }"#),
        Verify::Basic { .. }
    ));
}

#[test]
fn verify_problems_are_reported_where_they_are() {
    let errors_of = |verify: &str| errors(&format!("name = \"x\"\n[webhook]\nverify = {verify}\n"));
    assert_eq!(
        errors_of(r#"{ scheme = "gitlab", secret = "x" }"#),
        vec![
            "3:21: `verify` scheme \"gitlab\" is not one of github, stripe, slack, standard-webhooks, hmac, token, basic"
        ]
    );
    assert_eq!(
        errors_of(r#"{ scheme = "github" }"#),
        vec!["3:10: `verify` with scheme \"github\" needs `secret`"]
    );
    assert_eq!(
        errors_of(r#"{ scheme = "github", secret = "${EMPTY}" }"#),
        vec!["3:40: `secret` is empty"]
    );
    let missing = errors_of(r#"{ scheme = "github", secret = "${NOT_SET}" }"#);
    assert_eq!(missing.len(), 1);
    assert!(missing[0].contains("`NOT_SET` is not set"), "{missing:?}");
    assert_eq!(
        errors_of(r#"{ scheme = "github", secret = "0123456789abcdef", tolerance = "1m" }"#),
        vec![
            "3:60: unknown key `tolerance` in verify (scheme \"github\"); allowed keys: scheme, secret"
        ]
    );
    assert_eq!(
        errors_of(r#"{ scheme = "token", token = "t", header = "x-t", query = "t" }"#),
        vec!["3:10: `verify` takes the token from a `header` or a `query` parameter, not both"]
    );
    assert_eq!(
        errors_of(r#"{ scheme = "standard-webhooks", secret = "whsec_***" }"#),
        vec!["3:51: `secret`: a standard-webhooks secret is `whsec_` followed by base64"]
    );
    assert_eq!(
        errors_of(r#"{ scheme = "hmac", secret = "k", header = "x-s", algorithm = "md5" }"#),
        vec!["3:71: `algorithm` = \"md5\" is not one of \"sha256\", \"sha512\", \"sha1\""]
    );
    assert_eq!(
        errors_of(r#""github""#),
        vec![
            "3:10: `verify` must be a table such as { scheme = \"github\", secret = \"${GITHUB_WEBHOOK_SECRET}\" }, found string"
        ]
    );
}

/// Issue 20, item 3: every HMAC scheme refuses a key under 16 bytes at load, where it is
/// written, and says how long it is but not what it is.
#[test]
fn hmac_keys_under_16_bytes_are_refused_at_load() {
    let errors_of = |verify: &str| errors(&format!("name = \"x\"\n[webhook]\nverify = {verify}\n"));
    for scheme in ["github", "stripe", "slack"] {
        let errors = errors_of(&format!(
            r#"{{ scheme = "{scheme}", secret = "${{API_TOKEN}}" }}"#
        ));
        assert_eq!(errors.len(), 1, "{scheme}: {errors:?}");
        let at = format!("3:{}: `secret`: the key is 6 bytes", 34 + scheme.len());
        assert!(errors[0].starts_with(&at), "{scheme}: {errors:?}");
        assert!(errors[0].contains("at least 16 bytes"), "{errors:?}");
        assert!(!errors[0].contains("s3cret"), "{errors:?}");
    }
    let hmac = errors_of(r#"{ scheme = "hmac", secret = "fifteen bytes!!", header = "x-s" }"#);
    assert_eq!(hmac.len(), 1, "{hmac:?}");
    assert!(
        hmac[0].starts_with("3:38: `secret`: the key is 15 bytes"),
        "{hmac:?}"
    );
    // Standard Webhooks keys are counted once decoded: `whsec_` is empty, `whsec_AA==` 1 byte.
    for (secret, bytes) in [
        ("whsec_", 0),
        ("whsec_AA==", 1),
        ("whsec_AAAAAAAAAAAAAAAAAAAA", 15),
    ] {
        let errors = errors_of(&format!(
            r#"{{ scheme = "standard-webhooks", secret = "{secret}" }}"#
        ));
        assert_eq!(
            errors,
            vec![format!(
                "3:51: `secret`: the key of this standard-webhooks secret decodes to {bytes} bytes; HMAC keys must be at least 16 bytes (Standard Webhooks secrets are 24 to 64)"
            )]
        );
    }
    // 16 bytes load.
    errors_of_none(r#"{ scheme = "hmac", secret = "sixteen bytes!!!", header = "x-s" }"#);
    errors_of_none(
        r#"{ scheme = "standard-webhooks", secret = "whsec_AAAAAAAAAAAAAAAAAAAAAA==" }"#,
    );
}

fn errors_of_none(verify: &str) {
    load(&format!("name = \"x\"\n[webhook]\nverify = {verify}\n"));
}

/// Issue 20, item 12: a `.wasm` plugin outside the flows folder is refused at its `plugin`
/// line unless the server allows it (`--plugin-dir`, `--plugins-anywhere`).
#[test]
fn plugin_files_outside_the_flows_folder_are_refused() {
    let source =
        |plugin: &str| format!("name = \"x\"\n[[steps]]\nid = \"a\"\nplugin = \"{plugin}\"\n");
    let exists = |_: &Path| true;
    let load_with = |plugin: &str, places: &PluginPlaces| {
        parse_flow_with(
            Path::new(FILE),
            &source(plugin),
            &LoadContext {
                env: &env,
                is_builtin: &builtin,
                plugin_exists: &exists,
                plugin_places: places,
            },
        )
    };
    let strict = PluginPlaces::default();
    for plugin in ["../elsewhere/x.wasm", "/opt/x.wasm", "plugins/../../x.wasm"] {
        let errors: Vec<String> = load_with(plugin, &strict)
            .expect_err(plugin)
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(&format!(
                "4:10: in step 'a': plugin file `{plugin}` is outside the flows folder (/srv/flows)"
            )),
            "{errors:?}"
        );
        assert!(errors[0].contains("--plugins-anywhere"), "{errors:?}");
    }
    assert!(load_with("plugins/./x.wasm", &strict).is_ok());
    let anywhere = PluginPlaces {
        anywhere: true,
        dirs: Vec::new(),
    };
    assert!(load_with("/opt/x.wasm", &anywhere).is_ok());
    let opt = PluginPlaces {
        anywhere: false,
        dirs: vec![PathBuf::from("/opt/plugins")],
    };
    assert!(load_with("/opt/plugins/x.wasm", &opt).is_ok());
    assert!(load_with("/opt/plugins/../x.wasm", &opt).is_err());
}

/// Issue 20, item 12: `Debug` of a flow never shows a secret (config or `verify`).
#[test]
fn debug_of_a_flow_shows_no_secret() {
    let flow = load(
        r#"name = "x"
[webhook]
verify = { scheme = "github", secret = "${HOOK_SECRET}" }
[[steps]]
id = "post"
plugin = "template"
config.template = "${SLACK_URL} {{ x }}"
"#,
    );
    let shown = format!("{flow:?} {flow:#?}");
    assert!(
        !shown.contains("a-webhook-secret-of-32-bytes-ok!"),
        "{shown}"
    );
    assert!(!shown.contains("hooks.slack.example"), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
}

/// Issue 20, item 5: the flow's redactor masks every `${ENV}` value it uses, in config and
/// `verify`, by name.
#[test]
fn the_redactor_masks_the_values_a_flow_uses() {
    let flow = load(
        r#"name = "x"
[webhook]
verify = { scheme = "github", secret = "${HOOK_SECRET}" }
[[steps]]
id = "post"
plugin = "template"
config.template = "${SLACK_URL} {{ x }} ${API_TOKEN}"
"#,
    );
    let mut value = json!({
        "a": "to https://hooks.slack.example/T000/B000 with a-webhook-secret-of-32-bytes-ok!",
        "short": "s3cret",
    });
    flow.redactor.value(&mut value);
    assert_eq!(
        value,
        json!({
            "a": "to [redacted:SLACK_URL] with [redacted:HOOK_SECRET]",
            // Under MIN_REDACTED_LEN: not masked.
            "short": "s3cret",
        })
    );
}

#[test]
fn outbound_grants_are_read() {
    let step = step_of(
        r#"name = "x"
[[steps]]
id = "post"
plugin = "transform"
allow_hosts = ["https://hooks.slack.com", "https://*.example.com:8443", "http://127.0.0.1:9000"]
allow_private = true
max_response = "1 MiB"
max_request = 2048
"#,
    );
    let hosts: Vec<String> = step
        .outbound
        .grants
        .hosts
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        hosts,
        [
            "https://hooks.slack.com:443",
            "https://*.example.com:8443",
            "http://127.0.0.1:9000"
        ]
    );
    assert!(step.outbound.grants.allow_private);
    assert_eq!(step.outbound.max_response, 1 << 20);
    assert_eq!(step.outbound.max_request, 2048);

    let plain = step_of("name = \"x\"\n[[steps]]\nid = \"a\"\nplugin = \"transform\"\n");
    assert!(plain.outbound.grants.hosts.is_empty());
    assert_eq!(
        plain.outbound.max_response,
        crate::plugin::outbound::DEFAULT_MAX_RESPONSE
    );
}

#[test]
fn malformed_grants_are_located() {
    let source = r#"name = "x"
[[steps]]
id = "post"
plugin = "transform"
allow_hosts = ["https://hooks.slack.com/services/T0", "https://ok.example.com", "example.com", 7]
allow_private = "yes"
max_response = "1 GiB"

[[steps]]
id = "quiet"
plugin = "transform"
max_request = "1 KiB"
"#;
    assert_eq!(
        errors(source),
        vec![
            "5:16: in step 'post': `https://hooks.slack.com/services/T0`: a grant names a host, not a path; remove everything after the host and port",
            "5:81: in step 'post': `example.com` is not a host grant: write a scheme and a host, with an optional port, such as \"https://hooks.slack.com\" or \"http://127.0.0.1:9000\"",
            "5:96: in step 'post': `allow_hosts` must be a string, found integer",
            "6:17: in step 'post': `allow_private` must be true or false, found string",
            "7:16: in step 'post': `max_response` must be at most 256 MiB",
            "12:15: in step 'quiet': `max_request` only applies with `allow_hosts`, the hosts the step may call",
        ]
    );
}

/// `secret` may list secrets to rotate through; each is checked where it is written.
#[test]
fn a_secret_may_be_a_list_to_rotate() {
    use crate::verify::{Secrets, Verify};
    let flow = load(
        "name = \"x\"\n[webhook]\nverify = { scheme = \"github\", secret = [\"${HOOK_SECRET}\", \"an-older-secret-of-24-bytes\"] }\n",
    );
    assert_eq!(
        flow.webhook.verify,
        Some(Verify::Github {
            secret: Secrets::new(vec![
                b"a-webhook-secret-of-32-bytes-ok!".to_vec(),
                b"an-older-secret-of-24-bytes".to_vec()
            ])
            .unwrap()
        })
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\nverify = { scheme = \"github\", secret = [] }\n"),
        vec!["3:40: `secret` lists no secret; write one, or the new and the old while rotating"]
    );
    assert_eq!(
        errors(
            "name = \"x\"\n[webhook]\nverify = { scheme = \"github\", secret = [\"${HOOK_SECRET}\", \"short\"] }\n"
        ),
        vec![
            "3:59: `secret`: the key is 5 bytes; HMAC keys must be at least 16 bytes (use the secret your sender generated, or 32 random bytes)"
        ]
    );
}

#[test]
fn allow_ips_are_networks_checked_where_written() {
    let flow = load("name = \"x\"\n[webhook]\nallow_ips = [\"192.0.2.0/24\", \"2001:db8::1\"]\n");
    let nets: Vec<String> = flow
        .webhook
        .allow_ips
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["192.0.2.0/24", "2001:db8::1/128"]);
    assert_eq!(
        errors(
            "name = \"x\"\n[webhook]\nallow_ips = [\"192.0.2.0/24\", \"10.1.2.3/8\", \"nope\"]\n"
        ),
        vec![
            "3:30: `allow_ips`: `10.1.2.3/8` has bits set past its /8 prefix; did you mean `10.0.0.0/8`?",
            "3:44: `allow_ips`: `nope` is not an address or a CIDR network such as \"192.0.2.0/24\""
        ]
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\nallow_ips = []\n"),
        vec![
            "3:13: `allow_ips` lists no network, so no webhook could arrive; leave it out to accept any sender"
        ]
    );
}

#[test]
fn an_answer_is_checked_at_load() {
    let flow = load("name = \"x\"\n[webhook]\nanswer = { status = 204 }\n");
    assert!(flow.answer.is_some_and(|a| a.is_constant()));
    assert_eq!(
        errors("name = \"x\"\n[webhook]\nanswer = { status = 500 }\n"),
        vec![
            "3:21: with `respond = \"accepted\"` the answer's `status` is one of 200, 201, 202, 204: the webhook was stored"
        ]
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\nanswer = { body = \"$.webhook.body\" }\n"),
        vec![
            "3:10: with `respond = \"accepted\"` the answer is sent before the run, so it cannot read the run context: write literal values, or use `respond = \"result\"`"
        ]
    );
    assert_eq!(
        errors(
            "name = \"x\"\n[webhook]\nrespond = \"result\"\nanswer = { body = \"$.steps.nope.output\", colour = 1 }\n"
        ),
        vec![
            "4:19: step 'nope' is not an earlier step: no step has that id",
            "4:42: unknown key `colour` in answer; allowed keys: status, headers, body"
        ]
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\nanswer = { headers = { \"bad name\" = \"v\" } }\n"),
        vec!["3:10: the answer's header `bad name: v` is not a valid HTTP header"]
    );
}

// ---- concurrency and order_by ----

#[test]
fn concurrency_and_order_by_load_and_default_to_none() {
    let flow = load(MINIMAL);
    assert_eq!((flow.concurrency, flow.order_by.is_none()), (None, true));
    let flow = load(&format!(
        "concurrency = 3\norder_by = \"$.webhook.body.customer\"\n{MINIMAL}"
    ));
    assert_eq!(flow.concurrency, Some(3));
    let order_by = flow.order_by.expect("order_by");
    assert_eq!(order_by.as_str(), "$.webhook.body.customer");
    let webhook = json!({"webhook": {"body": {"customer": "acme"}}});
    assert_eq!(order_by.select(&webhook), vec![&json!("acme")]);
}

#[test]
fn bad_concurrency_and_order_by_are_located() {
    assert_eq!(
        errors("name = \"x\"\nconcurrency = 0\n"),
        vec![
            "2:15: `concurrency` must be from 1 to 1048576 (runs of this flow executing at once), found 0"
        ]
    );
    assert_eq!(
        errors("name = \"x\"\nconcurrency = -2\n"),
        vec![
            "2:15: `concurrency` must be from 1 to 1048576 (runs of this flow executing at once), found -2"
        ]
    );
    assert_eq!(
        errors("name = \"x\"\nconcurrency = \"4\"\n"),
        vec![
            "2:15: `concurrency` must be a whole number of runs, such as `concurrency = 4`, found string"
        ]
    );
    assert_eq!(
        errors("name = \"x\"\norder_by = \"customer\"\n"),
        vec![
            "2:12: `order_by` must be a JSONPath query starting with `$.webhook`, such as \
             \"$.webhook.body.customer\""
        ]
    );
    assert_eq!(
        errors("name = \"x\"\norder_by = \"$.webhook.body.items[*].id\"\n"),
        vec![
            "2:12: `order_by` must select at most one value (names and indexes only), \
             and `$.webhook.body.items[*].id` can select several"
        ]
    );
    assert_eq!(
        errors(&format!("order_by = \"$.steps.only.output\"\n{MINIMAL}")),
        vec![
            "1:12: `order_by` is read when the webhook arrives, before any step runs: \
             `$.steps.only.output` must start with `$.webhook`"
        ]
    );
}

// ---- retries and on_failure ----

#[test]
fn retry_keys_load_with_their_defaults() {
    let flow = load(
        r#"
name = "Flaky"
on_failure = "alerts"

[[steps]]
id = "call"
plugin = "transform"
retries = 4
backoff = "2s"
jitter = "20%"
retry_on_trap = true

[[steps]]
id = "after"
plugin = "transform"
"#,
    );
    assert_eq!(flow.on_failure.as_ref().map(FlowId::as_str), Some("alerts"));
    let retry = &flow.steps[0].retry;
    assert_eq!(retry.retries, 4);
    assert_eq!(retry.backoff, Duration::from_secs(2));
    assert_eq!(retry.max_backoff, Duration::from_secs(300));
    assert_eq!(retry.jitter, Jitter::Percent(0.2));
    assert!(retry.on_trap);
    assert_eq!(flow.steps[1].retry, RetryPolicy::default());
    assert_eq!(flow.steps[1].retry.retries, 0);
}

#[test]
fn bad_retry_values_are_located() {
    let source = r#"name = "Flaky"
on_failure = "Not An Id"
[[steps]]
id = "a"
plugin = "transform"
retries = 21
[[steps]]
id = "b"
plugin = "transform"
retries = 2
backoff = "10s"
max_backoff = "1s"
jitter = "lots"
[[steps]]
id = "c"
plugin = "transform"
backoff = "1s"
"#;
    let errors = errors(source);
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(errors[0].starts_with("2:14: `on_failure` = \"Not An Id\" is not a flow id"));
    assert_eq!(
        errors[1],
        "6:11: in step 'a': `retries` must be a whole number from 0 to 20"
    );
    assert_eq!(
        errors[2],
        "12:15: in step 'b': `max_backoff` must not be shorter than `backoff`"
    );
    assert!(errors[3].starts_with("13:10: in step 'b': `jitter` = \"lots\" is not a jitter"));
    assert_eq!(
        errors[4],
        "17:11: in step 'c': `backoff` has no effect without `retries`: add `retries = 3`"
    );
}
