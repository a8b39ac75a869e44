//! `http`: one HTTP request to a host the step is granted (`allow_hosts`), its answer as
//! output.
//!
//! Config (each may also come from the mapped input, which wins; `headers` and `query` are
//! merged, the input's over the config's):
//! - `url` (required): `http://` or `https://`;
//! - `method`: default `POST` when there is a body, else `GET`;
//! - `headers`: `{ name = "value" }`;
//! - `query`: `{ name = "value" }`, added to the URL's query, percent-encoded;
//! - `body`: a string is sent as text (`text/plain`), anything else as JSON
//!   (`application/json`), unless `content-type` is set;
//! - `expect` (config only): the statuses that count as success, default any 2xx.
//!
//! Output: `{ "status": 200, "headers": { name: value }, "body": … }`, the body parsed when it
//! is JSON, else text. An unexpected status or a failed connection is an `upstream` error
//! that says which.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weir_sdk::http::{HttpError, Request};
use weir_sdk::{Context, StepError};

/// What config and input may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Parts {
    url: Option<String>,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    query: BTreeMap<String, Scalar>,
    body: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(flatten)]
    parts: Parts,
    #[serde(default)]
    expect: Vec<u16>,
}

/// A query value: text, or a number or boolean written as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(t) => t.clone(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Output {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Value,
}

impl Config {
    /// The checks a flow's config must pass before any webhook comes.
    fn check(&self) -> Result<(), StepError> {
        if let Some(url) = &self.parts.url {
            check_url(url).map_err(StepError::Config)?;
        }
        if let Some(method) = &self.parts.method {
            check_method(method).map_err(StepError::Config)?;
        }
        if let Some(bad) = self.expect.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(StepError::Config(format!(
                "`expect` lists {bad}, which is not an HTTP status (100 to 599)"
            )));
        }
        Ok(())
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) || url.len() < 9 {
        return Err(format!(
            "`url` = `{url}` must be an http:// or https:// URL"
        ));
    }
    Ok(())
}

fn check_method(method: &str) -> Result<(), String> {
    let token = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        Ok(())
    } else {
        Err(format!("`method` = `{method}` is not an HTTP method"))
    }
}

/// `validate-config`: Weir calls it when the flow loads, so a bad `url`, `method` or `expect`
/// in config is an error at the flow's `config` line rather than at the first run.
fn check(config: &Config) -> Result<(), StepError> {
    config.check()
}

#[weir_sdk::step(validate = check)]
fn run(_ctx: &Context, input: Option<Parts>, config: Config) -> Result<Output, StepError> {
    config.check()?;
    let input = input.unwrap_or_default();
    let url = input.url.or(config.parts.url).ok_or_else(|| {
        StepError::Config("`url` is missing: set it in config or map it in input".into())
    })?;
    check_url(&url).map_err(StepError::InvalidInput)?;
    let body = input.body.or(config.parts.body);
    let method = input
        .method
        .or(config.parts.method)
        .unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.to_owned())
        .to_ascii_uppercase();
    check_method(&method).map_err(StepError::InvalidInput)?;

    let mut query = config.parts.query;
    query.extend(input.query);
    let url = with_query(&url, &query);
    let mut headers = config.parts.headers;
    for (name, value) in input.headers {
        headers.retain(|n, _| !n.eq_ignore_ascii_case(&name));
        headers.insert(name, value);
    }
    let mut request = Request::new(&method, &url);
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let has_type = headers
        .keys()
        .any(|n| n.eq_ignore_ascii_case("content-type"));
    request = match body {
        None | Some(Value::Null) => request,
        Some(Value::String(text)) => {
            if !has_type {
                request = request.header("content-type", "text/plain; charset=utf-8");
            }
            request.body(text)
        }
        Some(value) => request.json(&value)?,
    };

    let response = request.send().map_err(|e| match e {
        HttpError::InvalidRequest(_) => StepError::from(e),
        other => StepError::Upstream(format!("{method} {url}: {other}")),
    })?;
    let expected = if config.expect.is_empty() {
        (200..300).contains(&response.status)
    } else {
        config.expect.contains(&response.status)
    };
    if !expected {
        let err = response.clone().error_for_status().err().map_or_else(
            || format!("unexpected status {}", response.status),
            |e| e.to_string(),
        );
        return Err(StepError::Upstream(format!("{method} {url}: {err}")));
    }
    let json = response
        .header("content-type")
        .is_some_and(|t| t.contains("json"));
    let body = if json {
        serde_json::from_slice(&response.body).unwrap_or_else(|_| Value::String(response.text()))
    } else {
        Value::String(response.text())
    };
    let mut out_headers = BTreeMap::new();
    for (name, value) in &response.headers {
        out_headers
            .entry(name.to_ascii_lowercase())
            .and_modify(|v: &mut String| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    Ok(Output {
        status: response.status,
        headers: out_headers,
        body,
    })
}

/// `url` with `query` appended to its query string (before any fragment).
fn with_query(url: &str, query: &BTreeMap<String, Scalar>) -> String {
    if query.is_empty() {
        return url.to_owned();
    }
    let (base, fragment) = match url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (url, None),
    };
    let mut encoded = form_urlencoded::Serializer::new(String::new());
    for (name, value) in query {
        encoded.append_pair(name, &value.text());
    }
    let separator = if base.contains('?') { '&' } else { '?' };
    let mut out = format!("{base}{separator}{}", encoded.finish());
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weir_sdk::testing::{call, validate_config};

    #[test]
    fn query_values_are_encoded_and_appended() {
        let query: BTreeMap<String, Scalar> =
            serde_json::from_value(json!({"q": "a b&c", "n": 3, "yes": true})).unwrap();
        assert_eq!(
            with_query("https://h/p?x=1#top", &query),
            "https://h/p?x=1&n=3&q=a+b%26c&yes=true#top"
        );
        assert_eq!(with_query("https://h/p", &BTreeMap::new()), "https://h/p");
    }

    #[test]
    fn bad_config_is_a_config_error() {
        for (config, want) in [
            (
                json!({"url": "ftp://x/"}),
                "must be an http:// or https:// URL",
            ),
            (
                json!({"url": "https://x/", "method": "GE T"}),
                "is not an HTTP method",
            ),
            (json!({"url": "https://x/", "expect": [200, 700]}), "700"),
            (
                json!({"url": "https://x/", "retries": 3}),
                "unknown field `retries`",
            ),
            (json!({}), "`url` is missing"),
        ] {
            let out = call(run, json!({}), config.clone());
            let err = out.output.unwrap_err();
            assert_eq!(err.kind(), "config", "{config}: {err}");
            assert!(err.message().contains(want), "{config}: {err}");
            // The same config is refused when the flow loads, but for a missing `url`,
            // which the mapped input may still give.
            let checked = validate_config(run, Some(check), config.clone());
            if config == json!({}) {
                assert_eq!(checked, Ok(()));
            } else {
                let message = checked.unwrap_err();
                assert!(message.contains(want), "{config}: {message}");
            }
        }
        let good = json!({"url": "https://x/", "method": "PUT", "expect": [200, 404]});
        assert_eq!(validate_config(run, Some(check), good), Ok(()));
    }

    #[test]
    fn bad_input_is_an_invalid_input_error() {
        for input in [
            json!({"url": "javascript:alert(1)"}),
            json!({"method": "P O S T"}),
            json!({"headers": {"x": 1}}),
            json!({"unknown": 1}),
        ] {
            let out = call(run, input.clone(), json!({"url": "https://example.com/"}));
            let err = out.output.unwrap_err();
            assert_eq!(err.kind(), "invalid-input", "{input}: {err}");
        }
    }

    #[test]
    fn natively_the_request_is_built_then_unavailable() {
        let out = call(
            run,
            json!({"body": {"text": "hi"}}),
            json!({"url": "https://example.com/", "headers": {"authorization": "Bearer x"}}),
        );
        let err = out.output.unwrap_err();
        assert_eq!(err.kind(), "upstream");
        assert!(
            err.message().starts_with("POST https://example.com/: "),
            "{err}"
        );
    }
}
