//! `slack`: posts a message to a Slack incoming webhook, through the step's granted outbound
//! HTTP (`allow_hosts = ["https://hooks.slack.com"]`).
//!
//! Config: `url`, the incoming-webhook URL (keep it in the environment:
//! `url = "${SLACK_WEBHOOK_URL}"`); optional `username`, `icon_emoji`, `channel`.
//!
//! Input: the message text as a string, or an object with `text` and/or `blocks` (and any
//! other field Slack takes), sent as is.
//!
//! Output: `{ "status": 200, "response": "ok" }`. Slack's error answers (`invalid_payload`,
//! `no_text`, ...) are `upstream` errors with Slack's words.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use weir_sdk::http::Request;
use weir_sdk::{Context, StepError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    username: Option<String>,
    icon_emoji: Option<String>,
    channel: Option<String>,
}

#[derive(Debug, Serialize)]
struct Output {
    status: u16,
    response: String,
}

impl Config {
    fn check(&self) -> Result<(), StepError> {
        let lower = self.url.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            return Err(StepError::Config(
                "`url` must be the incoming-webhook URL, https://hooks.slack.com/services/…".into(),
            ));
        }
        Ok(())
    }
}

/// The JSON Slack gets: the input as a message, with the config's extras where it sets none.
fn message(input: Value, config: &Config) -> Result<Value, StepError> {
    let mut message = match input {
        Value::String(text) if !text.trim().is_empty() => {
            let mut m = Map::new();
            m.insert("text".into(), Value::String(text));
            m
        }
        Value::Object(m) if m.contains_key("text") || m.contains_key("blocks") => m,
        _ => {
            return Err(StepError::InvalidInput(
                "the input must be the message text, or an object with `text` or `blocks`".into(),
            ));
        }
    };
    for (key, value) in [
        ("username", &config.username),
        ("icon_emoji", &config.icon_emoji),
        ("channel", &config.channel),
    ] {
        if let Some(value) = value {
            message
                .entry(key)
                .or_insert_with(|| Value::String(value.clone()));
        }
    }
    Ok(Value::Object(message))
}

#[weir_sdk::step]
fn run(_ctx: &Context, input: Value, config: Config) -> Result<Output, StepError> {
    config.check()?;
    let message = message(input, &config)?;
    let response = Request::new("POST", &config.url).json(&message)?.send()?;
    let text = response.text();
    if !(200..300).contains(&response.status) {
        return Err(StepError::Upstream(format!(
            "Slack answered {}: {}",
            response.status,
            text.chars().take(300).collect::<String>()
        )));
    }
    Ok(Output {
        status: response.status,
        response: text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weir_sdk::testing::call;

    fn config() -> Config {
        Config {
            url: "https://hooks.slack.com/services/T/B/X".into(),
            username: Some("weir".into()),
            icon_emoji: None,
            channel: None,
        }
    }

    #[test]
    fn text_and_blocks_become_the_message() {
        assert_eq!(
            message(json!("New issue #42"), &config()).unwrap(),
            json!({"text": "New issue #42", "username": "weir"})
        );
        let blocks = json!({"blocks": [{"type": "divider"}], "username": "me"});
        assert_eq!(message(blocks.clone(), &config()).unwrap(), blocks);
    }

    #[test]
    fn bad_input_is_an_invalid_input_error() {
        for input in [json!(""), json!(3), json!({"txt": "x"}), json!(null)] {
            let err = call(
                run,
                input.clone(),
                json!({"url": "https://hooks.slack.com/x"}),
            )
            .output
            .unwrap_err();
            assert_eq!(err.kind(), "invalid-input", "{input}: {err}");
        }
    }

    #[test]
    fn bad_config_is_a_config_error() {
        for config in [
            json!({}),
            json!({"url": "hooks.slack.com/services/x"}),
            json!({"url": "https://hooks.slack.com/x", "emoji": ":x:"}),
        ] {
            let err = call(run, json!("hi"), config.clone()).output.unwrap_err();
            assert_eq!(err.kind(), "config", "{config}: {err}");
        }
    }
}
