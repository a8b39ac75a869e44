//! The built-in plugins as the engine runs them: compiled to components, embedded in `weir`,
//! called through the host. Their own crates test the logic natively; these tests check the
//! real component for each: happy path, bad input, bad config.

use serde_json::{Value, json};
use weir::plugin::{CallContext, Limits, StepFailure};
use weir_tests::host;

fn run(plugin: &str, input: Value, config: Value) -> Result<Value, StepFailure> {
    let plugin = host().load_builtin(plugin).expect("built-in loads");
    plugin
        .call(
            &CallContext::default(),
            &input.to_string(),
            &config.to_string(),
            &Limits::default(),
        )
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
