//! Values from the environment (`${NAME}`) and the secrets they carry: where they land, and that nothing shows them.

use super::*;

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
