//! `json-schema`: validates its input against a JSON Schema (draft 2020-12) from config, and
//! fails listing every violation with its JSON pointer. A valid input is the output, as is.
//!
//! Config: `schema`, the schema as a TOML table or as JSON text. References resolve within
//! the schema only: no network, no files.

use serde::Deserialize;
use serde_json::Value;
use weir_sdk::{Context, StepError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    schema: Value,
}

/// The most violations listed in one error; the rest are counted.
const MAX_LISTED: usize = 50;

impl Config {
    /// The schema compiled: the check a flow's config must pass before any webhook comes.
    fn validator(&self) -> Result<jsonschema::Validator, StepError> {
        let schema = match &self.schema {
            Value::String(text) => serde_json::from_str(text)
                .map_err(|e| StepError::Config(format!("`schema` is text but not JSON: {e}")))?,
            other => other.clone(),
        };
        if !schema.is_object() && !schema.is_boolean() {
            return Err(StepError::Config(
                "`schema` must be a JSON Schema: an object (or true/false)".into(),
            ));
        }
        jsonschema::draft202012::new(&schema)
            .map_err(|e| StepError::Config(format!("`schema` is not a valid JSON Schema: {e}")))
    }
}

/// `validate-config`: Weir calls it when the flow loads, so a schema that does not compile is
/// an error at the flow's `config` line rather than at the first run.
fn check(config: &Config) -> Result<(), StepError> {
    config.validator().map(drop)
}

#[weir_sdk::step(validate = check)]
fn run(_ctx: &Context, input: Value, config: Config) -> Result<Value, StepError> {
    let validator = config.validator()?;
    let violations: Vec<String> = validator
        .iter_errors(&input)
        .map(|e| {
            let pointer = e.instance_path().to_string();
            let at = if pointer.is_empty() {
                "/"
            } else {
                pointer.as_str()
            };
            format!("{at}: {e}")
        })
        .collect();
    if violations.is_empty() {
        return Ok(input);
    }
    let count = violations.len();
    let mut listed = violations
        .into_iter()
        .take(MAX_LISTED)
        .collect::<Vec<_>>()
        .join("; ");
    if count > MAX_LISTED {
        listed.push_str(&format!("; and {} more", count - MAX_LISTED));
    }
    let noun = if count == 1 {
        "violation"
    } else {
        "violations"
    };
    Err(StepError::InvalidInput(format!(
        "the input does not match the schema ({count} {noun}): {listed}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weir_sdk::testing::{call, validate_config};

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["email", "name"],
            "properties": {
                "email": {"type": "string", "pattern": "^[^@]+@[^@]+$"},
                "name": {"type": "string", "minLength": 1},
                "age": {"type": "integer", "minimum": 0}
            }
        })
    }

    #[test]
    fn a_valid_input_is_the_output() {
        let input = json!({"email": "ada@example.com", "name": "Ada", "age": 36});
        let out = call(run, input.clone(), json!({"schema": schema()}));
        assert_eq!(out.output.unwrap(), input);
        // The schema may be JSON text, too.
        let text = schema().to_string();
        let out = call(run, input.clone(), json!({"schema": text}));
        assert_eq!(out.output.unwrap(), input);
    }

    #[test]
    fn every_violation_is_listed_with_its_pointer() {
        let out = call(
            run,
            json!({"email": "nope", "age": -1}),
            json!({"schema": schema()}),
        );
        let err = out.output.unwrap_err();
        assert_eq!(err.kind(), "invalid-input");
        let message = err.message();
        assert!(message.contains("(3 violations)"), "{message}");
        assert!(message.contains("/email: "), "{message}");
        assert!(message.contains("/age: "), "{message}");
        assert!(
            message.contains("/: \"name\" is a required property"),
            "{message}"
        );
    }

    #[test]
    fn bad_config_is_a_config_error() {
        for config in [
            json!({}),
            json!({"schema": 3}),
            json!({"schema": "{not json"}),
            json!({"schema": {"type": "no-such-type"}}),
            json!({"schema": {"$ref": "https://example.com/schema.json"}}),
            json!({"schema": {}, "draft": 7}),
        ] {
            let err = call(run, json!({}), config.clone()).output.unwrap_err();
            assert_eq!(err.kind(), "config", "{config}: {err}");
            // Refused when the flow loads, with the same message.
            let checked = validate_config(run, Some(check), config.clone());
            assert_eq!(checked, Err(err.message().to_owned()), "{config}");
        }
        assert_eq!(
            validate_config(run, Some(check), json!({"schema": schema()})),
            Ok(())
        );
    }
}
