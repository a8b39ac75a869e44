//! Flow files as a user writes them: what loads, what each mistake reports (line, column and
//! message), and what mappings give at run time.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;

mod env;
mod errors;
mod examples;
mod load;
mod mapping;
mod retain;
mod retry;
mod schedule;
mod steps;
mod webhook;

const FILE: &str = "/srv/flows/test.toml";

fn env(name: &str) -> Option<String> {
    match name {
        "SLACK_URL" => Some("https://hooks.slack.example/T000/B000".to_owned()),
        "API_TOKEN" => Some("s3cret".to_owned()),
        "HOOK_SECRET" => Some("a-webhook-secret-of-32-bytes-ok!".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn builtin(name: &str) -> bool {
    matches!(name, "filter" | "template" | "transform")
}

fn load_at(path: &str, source: &str) -> Result<Flow, Diagnostics> {
    parse_flow_with(
        Path::new(path),
        source,
        &LoadContext {
            env: &env,
            is_builtin: &builtin,
            plugin_exists: &|plugin: &Path| plugin == Path::new("/srv/flows/plugins/shout.wasm"),
            plugin_places: &PluginPlaces::default(),
        },
    )
}

fn load(source: &str) -> Flow {
    load_at(FILE, source).unwrap_or_else(|err| panic!("flow should load:\n{err}"))
}

/// The problems of `source` as `line:column: message`.
fn errors(source: &str) -> Vec<String> {
    errors_at(FILE, source)
}

fn errors_at(path: &str, source: &str) -> Vec<String> {
    match load_at(path, source) {
        Ok(_) => panic!("flow should not load"),
        Err(diagnostics) => diagnostics
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect(),
    }
}

/// A run context with this webhook body and these step outputs.
fn context(body: Value, outputs: &[(&str, Value)]) -> Value {
    let steps: serde_json::Map<String, Value> = outputs
        .iter()
        .map(|(id, output)| ((*id).to_owned(), json!({ "output": output })))
        .collect();
    json!({ "webhook": { "method": "POST", "body": body }, "steps": steps })
}

const MINIMAL: &str = r#"
name = "Minimal"

[[steps]]
id = "only"
plugin = "transform"
"#;

fn step_of(source: &str) -> Step {
    let mut flow = load(source);
    flow.steps.pop().expect("a step")
}
