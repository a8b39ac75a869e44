//! Each kind of mistake in a flow file, reported with its line, column and message, all at once.

use super::*;

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
            "2:1: unknown key `colour` at the top level; allowed keys: name, description, concurrency, order_by, on_failure, webhook, steps, retain",
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
