//! What loads: defaults, every key read, the version.

use super::*;

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
