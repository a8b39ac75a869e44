//! Error flows: when a run fails for good, the flow its flow names in `on_failure` starts with
//! the failed run's context, like n8n's error workflow.
//!
//! The new run is an ordinary stored run of the error flow. Its request is made here, not
//! received: its path is [`ERROR_FLOW_PATH`] followed by the failed run's id (not an HTTP
//! path, so no webhook can pass for one), and its JSON body holds `failed` and the failed
//! run's `webhook`, which become `$.failed` and `$.webhook` of its context. A run started this
//! way never starts another one, so a failing error flow cannot loop. Its dedupe key is the
//! failed run's id, so a failed run that runs again after a crash starts its error flow once.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::retry::Timer;
use super::steps::{FailedStep, initial_context};
use crate::catalog::Catalog;
use crate::store::{ERROR_FLOW_PATH, NewRun, RawRequest, Run, RunId, Store};

/// Starts `target`, the `on_failure` flow of `run`'s flow, for `run`, which failed with
/// `error` at `step`. Failures to do so are logged: the failed run's own status stands.
#[allow(clippy::too_many_arguments)]
pub(super) async fn start(
    catalog: &Catalog,
    store: &Store,
    timer: &Timer,
    target: &str,
    run: &Run,
    step: Option<&FailedStep>,
    error: Option<&str>,
    webhook: Value,
) {
    if run.error_flow_of.is_some() {
        tracing::info!(run = %run.id, flow = %run.flow_id, "a run of an error flow failed; it starts no other");
        return;
    }
    let snapshot = catalog.snapshot();
    let Some(live) = snapshot
        .flows
        .get(target)
        .and_then(|entry| entry.live.clone())
    else {
        tracing::warn!(
            run = %run.id,
            flow = %run.flow_id,
            on_failure = %target,
            "the on_failure flow does not exist or does not load; no error flow started"
        );
        return;
    };
    let failed = json!({
        "run": {
            "id": run.id,
            "flow": run.flow_id,
            "received_at": run.received_at,
            "status": "failed",
            "error": error,
        },
        "step": step.map(|s| json!({ "id": s.id, "plugin": s.plugin, "input": s.input })),
        "error": match step {
            Some(s) => json!({ "kind": s.error.kind, "message": s.error.message }),
            None => json!({ "kind": "run", "message": error }),
        },
    });
    let body = match serde_json::to_vec(&json!({ "failed": failed, "webhook": webhook })) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(run = %run.id, error = %e, "cannot encode the error flow's context");
            return;
        }
    };
    let size = body.len() as u64;
    let marker = format!("{ERROR_FLOW_PATH}{}", run.id);
    let new = NewRun {
        flow_id: target.to_owned(),
        flow_version: live.flow.version.clone(),
        request: RawRequest {
            method: "POST".into(),
            path: marker.clone(),
            query: String::new(),
            headers: vec![("content-type".into(), "application/json".into())],
            body,
            remote_addr: None,
            received_at: SystemTime::now(),
        },
        dedupe_key: Some(marker),
        dedupe_window: None,
    };
    match store.accept(new).await {
        Ok(accepted) if !accepted.duplicate => {
            tracing::info!(run = %run.id, error_run = %accepted.id, on_failure = %target, "error flow started");
            catalog.events().run_accepted(accepted.id, target);
            timer.submit(accepted.id, size);
        }
        Ok(accepted) => {
            tracing::debug!(run = %run.id, error_run = %accepted.id, "error flow already started");
        }
        Err(e) => {
            tracing::error!(run = %run.id, on_failure = %target, error = %e, "cannot start the error flow");
        }
    }
}

/// The initial context of a run an error flow started, from its request body; `None` for any
/// other run.
pub(super) fn context_of(run: &Run, body: &[u8]) -> Option<Value> {
    let _: RunId = run.error_flow_of?;
    let mut document: Value = serde_json::from_slice(body).ok()?;
    let failed = document.get_mut("failed").map(Value::take)?;
    let webhook = document
        .get_mut("webhook")
        .map(Value::take)
        .unwrap_or(Value::Null);
    Some(initial_context(webhook, Some(failed)))
}
