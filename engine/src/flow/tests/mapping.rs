//! What mappings and `when` give at run time.

use super::*;

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
