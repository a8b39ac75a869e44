//! Returns its input as its output, unchecked: `"not json"` in, `not json` out.

wit_bindgen::generate!({
    path: "../../../sdk/wit",
    world: "step-plugin",
});

struct Raw;

impl exports::weir::plugin::step::Guest for Raw {
    fn run(
        _ctx: weir::plugin::types::Context,
        input: String,
        _config: String,
    ) -> Result<String, weir::plugin::types::StepError> {
        // The input is JSON text; its string value is handed back as the "JSON" output.
        Ok(input.trim_matches('"').to_owned())
    }

    fn validate_config(_config: String) -> Result<(), String> {
        Ok(())
    }
}

export!(Raw);
