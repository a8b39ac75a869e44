//! The built-in plugins as the engine runs them: compiled to components, embedded in `weir`,
//! called through the host. Their own crates test the logic natively; these tests check the
//! real component for each: happy path, bad input, bad config.

use serde_json::{Value, json};
use weir::plugin::{CallContext, Limits, StepFailure};
use weir_tests::{block_on, host};

fn run(plugin: &str, input: Value, config: Value) -> Result<Value, StepFailure> {
    let plugin = host().load_builtin(plugin).expect("built-in loads");
    block_on(plugin.call(
        &CallContext::default(),
        &input.to_string(),
        &config.to_string(),
        &Limits::default(),
    ))
    .result
}

#[test]
fn transform_outputs_its_mapped_input() {
    let input = json!({"text": "hi", "list": [1, 2]});
    assert_eq!(run("transform", input.clone(), json!({})), Ok(input));
}

#[test]
fn transform_passes_any_json_and_ignores_config() {
    assert_eq!(
        run("transform", json!(null), json!({"x": 1})),
        Ok(json!(null))
    );
}

fn kind(result: Result<Value, StepFailure>) -> String {
    match result {
        Ok(v) => panic!("expected a failure, got {v}"),
        Err(e) => format!("{}: {e}", e.kind()),
    }
}

#[test]
fn filter_passes_its_input_when_the_condition_holds() {
    assert_eq!(
        run(
            "filter",
            json!("opened"),
            json!({"one_of": ["opened", "reopened"]})
        ),
        Ok(json!("opened"))
    );
    assert_eq!(
        run("filter", json!(150), json!({"gte": 100, "lt": 1000})),
        Ok(json!(150))
    );
}

#[test]
fn filter_filters_with_the_failed_condition_as_reason() {
    let failure = run("filter", json!("closed"), json!({"equals": "opened"})).unwrap_err();
    assert!(failure.is_filtered());
    assert_eq!(failure.kind(), "filtered");
    assert!(
        failure
            .to_string()
            .contains(r#"equals: got "closed", not the configured value"#),
        "{failure}"
    );
}

#[test]
fn filter_bad_input_and_bad_config() {
    // A condition that cannot apply to the input filters, saying why.
    let failure = run("filter", json!({"not": "a number"}), json!({"gt": 1})).unwrap_err();
    assert!(
        failure.is_filtered() && failure.to_string().contains("expected a number"),
        "{failure}"
    );
    // Config errors are config errors, not filtering.
    assert!(kind(run("filter", json!(1), json!({}))).starts_with("config:"));
    assert!(kind(run("filter", json!(1), json!({"equal": 1}))).starts_with("config:"));
    let bad_regex = kind(run("filter", json!("x"), json!({"matches": "(unclosed"})));
    assert!(
        bad_regex.starts_with("config:") && bad_regex.contains("(unclosed"),
        "{bad_regex}"
    );
}

#[test]
fn template_renders_text_and_json() {
    assert_eq!(
        run(
            "template",
            json!({"user": {"name": "Ada"}, "items": [1, 2, 3]}),
            json!({"template": "{{ user.name }} has {{ items | length }} items"})
        ),
        Ok(json!("Ada has 3 items"))
    );
    assert_eq!(
        run(
            "template",
            json!({"title": "Say \"hi\""}),
            json!({"template": "{\"text\": {{ title | tojson }}}", "output": "json"})
        ),
        Ok(json!({"text": "Say \"hi\""}))
    );
}

#[test]
fn template_bad_input_and_bad_config() {
    let undefined = kind(run(
        "template",
        json!({}),
        json!({"template": "Hi {{ name }}"}),
    ));
    assert!(
        undefined.starts_with("invalid-input:") && undefined.contains("name"),
        "{undefined}"
    );
    assert_eq!(
        run(
            "template",
            json!({}),
            json!({"template": "Hi {{ name }}!", "strict": false})
        ),
        Ok(json!("Hi !"))
    );
    assert!(
        kind(run("template", json!({}), json!({"template": "{% if %}"}))).starts_with("config:")
    );
    assert!(kind(run("template", json!({}), json!({}))).starts_with("config:"));
    assert!(
        kind(run(
            "template",
            json!({}),
            json!({"template": "x", "colour": 1})
        ))
        .starts_with("config:")
    );
}
