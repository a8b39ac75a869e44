//! `transform`: outputs its mapped input. The flow's `input` mapping does the shaping, so this
//! step is how a flow builds a new JSON document from the webhook and earlier outputs.
//!
//! Config: none (anything given is ignored).

use serde_json::value::RawValue;
use weir_sdk::{Context, NoConfig, StepError};

/// The input is passed through as raw JSON text: it is already valid JSON (the host made it),
/// so there is nothing to gain from building a tree only to write it out again.
#[weir_sdk::step]
fn run(
    _ctx: &Context,
    input: Box<RawValue>,
    _config: NoConfig,
) -> Result<Box<RawValue>, StepError> {
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weir_sdk::testing::call;

    #[test]
    fn outputs_its_input_unchanged() {
        let input = json!({"text": "hi", "n": [1, 2, {"deep": null}]});
        let out = call(run, input.clone(), json!({}));
        assert_eq!(out.output.unwrap(), input);
    }

    #[test]
    fn any_json_value_is_valid_input() {
        for input in [json!(null), json!("s"), json!(3.5), json!([])] {
            assert_eq!(call(run, input.clone(), json!({})).output.unwrap(), input);
        }
    }

    #[test]
    fn config_is_ignored_whatever_it_is() {
        let out = call(run, json!({"a": 1}), json!(["unexpected", 1]));
        assert_eq!(out.output.unwrap(), json!({"a": 1}));
    }
}
