//! Webhooks through real HTTP: accepted (202 + run id, committed before the answer), run to the
//! end, and shown by the admin API; refusals (404, 404, 405, 413) store nothing.

use serde_json::json;
use weir_tests::{FlowDir, Weir, post_with, send};

fn github_issue() -> serde_json::Value {
    json!({
        "action": "opened",
        "issue": {
            "number": 42,
            "title": "Crash on start",
            "html_url": "https://github.com/acme/app/issues/42",
            "user": {"login": "octocat"}
        }
    })
}

#[test]
fn a_webhook_is_accepted_run_and_shown_with_every_step() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let url = weir.webhook_url("github-issues");
    assert!(url.starts_with(&weir.webhook), "{url}");

    let body = serde_json::to_vec_pretty(&github_issue()).unwrap();
    let answer = send(
        "POST",
        &format!("{url}?source=test"),
        "application/json",
        &body,
    )
    .unwrap();
    assert_eq!(
        answer.status,
        202,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    let run_id = answer.json()["run_id"].as_str().unwrap().to_owned();

    let run = weir.wait_run(&run_id);
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(run["run"]["flow_id"], "github-issues");
    assert_eq!(run["run"]["attempt"], 1);
    assert_eq!(
        run["run"]["flow_version"],
        weir.flow("github-issues")["version"]
    );
    assert_eq!(run["webhook"]["output"]["body"], github_issue());
    assert_eq!(run["webhook"]["output"]["query"], json!({"source": "test"}));
    let steps = run["steps"].as_array().unwrap();
    let ids: Vec<_> = steps
        .iter()
        .map(|s| s["step_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["opened", "message", "slack"]);
    assert!(steps.iter().all(|s| s["status"] == "succeeded"), "{run:#}");
    assert_eq!(steps[0]["input"], "opened");
    assert_eq!(
        steps[1]["output"],
        "New issue #42: Crash on start by octocat (https://github.com/acme/app/issues/42)"
    );
    assert_eq!(
        steps[2]["output"],
        json!({
            "text": "New issue #42: Crash on start by octocat (https://github.com/acme/app/issues/42)",
            "channel": "#issues"
        })
    );
    assert!(steps[1]["duration_us"].as_u64().is_some());
    assert!(steps[1]["started_at"].as_str().is_some());

    // The payload, decoded and byte for byte.
    let payload = weir.api(&format!("/api/runs/{run_id}/payload")).json();
    assert_eq!(payload["method"], "POST");
    assert_eq!(payload["body_encoding"], "json");
    assert_eq!(payload["body"], github_issue());
    assert_eq!(payload["headers"]["content-type"], "application/json");
    let raw = weir.api(&format!("/api/runs/{run_id}/payload?raw=true"));
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, body);
    assert_eq!(raw.header("content-type"), Some("application/json"));
}

#[test]
fn a_filtered_event_ends_as_filtered_and_says_why() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let mut event = github_issue();
    event["action"] = json!("closed");
    let answer = weir_tests::post_json(&weir.webhook_url("github-issues"), &event);
    let run = weir.wait_run(answer.json()["run_id"].as_str().unwrap());
    assert_eq!(run["run"]["status"], "filtered");
    assert!(
        run["run"]["error"].as_str().unwrap().contains("opened"),
        "{run:#}"
    );
    assert_eq!(run["steps"].as_array().unwrap().len(), 1);
    assert_eq!(run["steps"][0]["status"], "filtered");
}

#[test]
fn binary_bodies_are_kept_exactly() {
    let flows = FlowDir::empty();
    flows.write(
        "bin.toml",
        "name = \"binary\"\n[[steps]]\nid = \"copy\"\nplugin = \"transform\"\ninput = \"$.webhook.body\"\n",
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let body: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let answer = send(
        "POST",
        &weir.webhook_url("bin"),
        "application/octet-stream",
        &body,
    )
    .unwrap();
    assert_eq!(answer.status, 202);
    let run_id = answer.json()["run_id"].as_str().unwrap().to_owned();
    weir.wait_run(&run_id);
    let payload = weir.api(&format!("/api/runs/{run_id}/payload")).json();
    assert_eq!(payload["body_encoding"], "base64");
    assert_eq!(payload["size"], 5000);
    let raw = weir.api(&format!("/api/runs/{run_id}/payload?raw=true"));
    assert_eq!(raw.body, body);
    assert_eq!(raw.header("content-type"), Some("application/octet-stream"));
}

#[test]
fn refused_webhooks_get_404_404_405_413_and_store_nothing() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let url = weir.webhook_url("contact-form");
    let token = url.rsplit('/').next().unwrap().to_owned();

    let unknown_flow = send(
        "POST",
        &format!("{}/hooks/no-such-flow/{token}", weir.webhook),
        "application/json",
        b"{}",
    )
    .unwrap();
    let wrong_token = send(
        "POST",
        &format!("{}/hooks/contact-form/AAAAAAAAAAAAAAAAAAAAAA", weir.webhook),
        "application/json",
        b"{}",
    )
    .unwrap();
    assert_eq!(unknown_flow.status, 404);
    assert_eq!(wrong_token.status, 404);
    assert_eq!(
        unknown_flow.body, wrong_token.body,
        "the two 404s must not tell flows apart"
    );
    assert_eq!(unknown_flow.json()["error"]["status"], 404);

    let wrong_method = send("PUT", &url, "application/json", b"{}").unwrap();
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow"), Some("POST"));

    // contact-form's max_body is 64 KiB.
    let big = vec![b'a'; 64 * 1024 + 1];
    let too_big = send("POST", &url, "text/plain", &big).unwrap();
    assert_eq!(
        too_big.status,
        413,
        "{:?}",
        String::from_utf8_lossy(&too_big.body)
    );
    assert!(
        too_big.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_body")
    );

    assert_eq!(weir.count_runs(), 0, "a refused webhook stored a run");

    // At the limit it is accepted.
    let at_limit = vec![b'a'; 64 * 1024];
    assert_eq!(
        send("POST", &url, "text/plain", &at_limit).unwrap().status,
        202
    );
    assert_eq!(weir.count_runs(), 1);
}

#[test]
fn a_form_post_runs_the_contact_flow() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let answer = send(
        "POST",
        &weir.webhook_url("contact-form"),
        "application/x-www-form-urlencoded",
        b"name=Ada+Lovelace&email=ada%40example.com&message=Hello%21",
    )
    .unwrap();
    assert_eq!(answer.status, 202);
    let run = weir.wait_run(answer.json()["run_id"].as_str().unwrap());
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(
        run["steps"][1]["output"],
        "Contact form: Ada Lovelace <ada@example.com> wrote: Hello!"
    );
}

#[test]
fn a_stripe_payment_renders_a_receipt_with_a_default_email() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let event = json!({
        "id": "evt_1",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_1", "amount": 2000, "currency": "eur", "customer": "cus_9", "metadata": {}}}
    });
    let answer = weir_tests::post_json(&weir.webhook_url("stripe-payments"), &event);
    let run = weir.wait_run(answer.json()["run_id"].as_str().unwrap());
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(
        run["steps"][2]["output"],
        "Payment pi_1: 2000 (minor units) eur from cus_9 <no e-mail on file>"
    );
    // The example dedupes on the event id in the body: Stripe's retry of the same event is
    // answered with the first run, another event is a new run.
    let retry = weir_tests::post_json(&weir.webhook_url("stripe-payments"), &event);
    assert_eq!(retry.status, 200);
    assert_eq!(retry.json()["duplicate"], true);
    assert_eq!(retry.json()["run_id"], answer.json()["run_id"]);
    let mut other = event.clone();
    other["id"] = json!("evt_2");
    let other = weir_tests::post_json(&weir.webhook_url("stripe-payments"), &other);
    assert_eq!(other.status, 202);
    assert_eq!(weir.count_runs(), 2);
}

#[test]
fn a_failing_step_fails_the_run_and_names_the_step() {
    let flows = FlowDir::empty();
    flows.write(
        "strict.toml",
        r#"name = "strict"
[[steps]]
id = "needs-title"
plugin = "transform"
input.title = "$.webhook.body.title"
"#,
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let answer = weir_tests::post_json(&weir.webhook_url("strict"), &json!({"no": "title"}));
    let run = weir.wait_run(answer.json()["run_id"].as_str().unwrap());
    assert_eq!(run["run"]["status"], "failed");
    let error = run["run"]["error"].as_str().unwrap();
    assert!(
        error.contains("needs-title") && error.contains("$.webhook.body.title"),
        "{error}"
    );
    assert_eq!(run["steps"][0]["error"]["kind"], "mapping");
}

#[test]
fn a_store_that_cannot_keep_up_answers_503_with_retry_after_and_loses_nothing() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let running = runtime
        .block_on(weir::server::start(weir::server::ServeConfig {
            flows: flows.path().to_owned(),
            data: data.path().join("weir.redb"),
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            public_url: None,
            admin_token: None,
            admin_hosts: Vec::new(),
            max_connections: 256,
            admin_max_connections: 16,
            header_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(30),
            body_timeout: std::time::Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            max_head: 64 << 10,
            concurrency: 4,
            accept_queue: 2,
            shutdown_grace: std::time::Duration::from_secs(10),
            payload_budget: weir::run::DEFAULT_PAYLOAD_BUDGET,
            plugin_places: weir::flow::PluginPlaces::default(),
            cache_dir: Some(weir_tests::process_plugin_cache().to_owned()),
            extra_ca: None,
        }))
        .unwrap();
    let url = {
        let snapshot = running.catalog.snapshot();
        running
            .catalog
            .webhook_url(&snapshot.flows["contact-form"])
            .unwrap()
    };
    let pause = runtime.block_on(running.store.pause_writer()).unwrap();
    // Two webhooks wait for the paused writer; the third finds the queue full.
    let waiting: Vec<_> = (0..2)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                weir_tests::post_json(&url, &json!({"email": "a@b", "message": format!("m{i}")}))
            })
        })
        .collect();
    weir_tests::wait_for(
        std::time::Duration::from_secs(10),
        "two accepts to wait",
        || (running.store.stats().waiting_accepts == 2).then_some(()),
    );
    let refused = weir_tests::post_json(&url, &json!({"email": "a@b", "message": "m"}));
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    drop(pause);
    for waiting in waiting {
        assert_eq!(waiting.join().unwrap().status, 202);
    }
    assert_eq!(running.store.count_runs(None, None).unwrap(), 2);
    runtime.block_on(running.shutdown());
}

#[test]
fn a_redelivered_webhook_is_answered_with_its_first_run_and_not_run_again() {
    // The GitHub example dedupes on the X-GitHub-Delivery header.
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let url = weir.webhook_url("github-issues");
    let body = serde_json::to_vec(&github_issue()).unwrap();
    let deliver = |delivery: Option<&str>| {
        let headers: Vec<(&str, &str)> = delivery
            .map(|id| ("x-github-delivery", id))
            .into_iter()
            .collect();
        let answer = post_with(&url, "application/json", &body, &headers);
        let json = answer.json();
        (
            answer.status,
            json["run_id"].as_str().unwrap().to_owned(),
            json["duplicate"].clone(),
        )
    };

    let (status, first, duplicate) = deliver(Some("delivery-1"));
    assert_eq!((status, duplicate), (202, json!(false)));
    let (status, again, duplicate) = deliver(Some("delivery-1"));
    assert_eq!((status, duplicate), (200, json!(true)));
    assert_eq!(again, first);
    let (status, other, _) = deliver(Some("delivery-2"));
    assert_eq!(status, 202);
    assert_ne!(other, first);
    // Without the header there is nothing to dedupe on: every delivery is a run.
    let (status, bare_a, _) = deliver(None);
    assert_eq!(status, 202);
    let (status, bare_b, _) = deliver(None);
    assert_eq!(status, 202);
    assert_ne!(bare_a, bare_b);

    for id in [&first, &other, &bare_a, &bare_b] {
        assert_eq!(weir.wait_run(id)["run"]["status"], "succeeded");
    }
    assert_eq!(weir.count_runs(), 4);
}

/// `respond = "result"`: the sender waits for the run and gets its result: the last step's
/// output (200), nothing for a filtered run (204), the error for a failed one (500), and the
/// usual 202 when the run takes longer than `respond_timeout`.
#[test]
fn a_flow_that_responds_with_its_result() {
    let flows = FlowDir::empty();
    flows.write(
        "greet.toml",
        r#"name = "Greet"
[webhook]
respond = "result"

[[steps]]
id = "asked"
plugin = "filter"
input = "$.webhook.body.action"
config.equals = "greet"

[[steps]]
id = "greeting"
plugin = "template"
input.name = "$.webhook.body.name"
input.times = "$.webhook.body.times"
config.template = "Hello {{ name }} x{{ times }}"
"#,
    );
    flows.write(
        "slow.toml",
        &format!(
            r#"name = "Slow"
[webhook]
respond = "result"
respond_timeout = "200ms"

[[steps]]
id = "spin"
plugin = "{}"
config = {{ mode = "spin", ms = 1500 }}
"#,
            weir_tests::HOSTILE_WASM
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let greet = weir.webhook_url("greet");

    let ok = weir_tests::post_json(
        &greet,
        &json!({"action": "greet", "name": "Ada", "times": 2}),
    );
    assert_eq!(ok.status, 200, "{:?}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.json(), json!("Hello Ada x2"));
    assert_eq!(ok.header("x-weir-run-status"), Some("succeeded"));
    let id = ok.header("x-weir-run-id").unwrap().to_owned();
    assert_eq!(weir.wait_run(&id)["run"]["status"], "succeeded");

    let filtered = weir_tests::post_json(&greet, &json!({"action": "wave"}));
    assert_eq!(filtered.status, 204);
    assert_eq!(filtered.header("x-weir-run-status"), Some("filtered"));

    let failed = weir_tests::post_json(&greet, &json!({"action": "greet", "name": "Ada"}));
    assert_eq!(failed.status, 500);
    let error = failed.json();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("$.webhook.body.times"), "{message}");
    assert_eq!(
        weir.wait_run(error["run_id"].as_str().unwrap())["run"]["status"],
        "failed"
    );

    // Slower than its respond_timeout: 202 now, the run finishes later.
    let started = std::time::Instant::now();
    let slow = weir_tests::post_json(&weir.webhook_url("slow"), &json!({}));
    assert_eq!(
        slow.status,
        202,
        "{:?}",
        String::from_utf8_lossy(&slow.body)
    );
    assert!(started.elapsed() < std::time::Duration::from_millis(1500));
    let id = slow.json()["run_id"].as_str().unwrap().to_owned();
    assert_eq!(weir.wait_run(&id)["run"]["status"], "succeeded");
}

/// `verify`: a GitHub-signed webhook is accepted; unsigned, wrongly signed or tampered ones get
/// 401 with the reason and store nothing. The secret comes from the environment.
#[test]
fn a_webhook_that_fails_its_signature_check_is_refused_and_not_stored() {
    use hmac::{KeyInit as _, Mac as _};
    let sign = |secret: &[u8], body: &[u8]| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let flows = FlowDir::empty();
    flows.write(
        "signed.toml",
        r#"name = "Signed"
[webhook]
verify = { scheme = "github", secret = "${SIGNED_SECRET}" }

[[steps]]
id = "echo"
plugin = "transform"
input = "$.webhook.body"
"#,
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with_env(
        flows.path(),
        &data.path().join("weir.redb"),
        &[],
        &[("SIGNED_SECRET", "It's a Secret to Everybody")],
    );
    let url = weir.webhook_url("signed");
    let body = br#"{"zen":"Keep it logically awesome."}"#;
    let post =
        |headers: &[(&str, &str)], body: &[u8]| post_with(&url, "application/json", body, headers);

    let unsigned = post(&[], body);
    assert_eq!(unsigned.status, 401);
    let message = unsigned.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("x-hub-signature-256 header is missing"),
        "{message}"
    );

    let wrong = sign(b"not the secret", body);
    let answer = post(&[("x-hub-signature-256", &wrong)], body);
    assert_eq!(answer.status, 401);
    assert!(
        answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not match")
    );

    let good = sign(b"It's a Secret to Everybody", body);
    let tampered = post(
        &[("x-hub-signature-256", &good)],
        br#"{"zen":"Keep it logically awesome!"}"#,
    );
    assert_eq!(tampered.status, 401);
    assert_eq!(weir.count_runs(), 0);

    let signed = post(&[("x-hub-signature-256", &good)], body);
    assert_eq!(
        signed.status,
        202,
        "{:?}",
        String::from_utf8_lossy(&signed.body)
    );
    let run = weir.wait_run(signed.json()["run_id"].as_str().unwrap());
    assert_eq!(run["run"]["status"], "succeeded");
    assert_eq!(
        run["steps"][0]["output"],
        json!({"zen": "Keep it logically awesome."})
    );
    assert_eq!(weir.count_runs(), 1);
}

#[test]
fn a_run_that_calls_no_plugin_finishes_while_every_core_runs_a_slow_one() {
    // Plugin calls run on the executor's workers, one per core at most; the one worker more
    // must still claim and finish the runs that need no call.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let flows = FlowDir::empty();
    flows.write(
        "slow.toml",
        &format!(
            "name = \"slow\"\n[[steps]]\nid = \"spin\"\nplugin = \"{}\"\n\
             config = {{ mode = \"spin\", ms = 8000 }}\n",
            weir_tests::HOSTILE_WASM
        ),
    );
    flows.write(
        "skip.toml",
        "name = \"skip\"\n[[steps]]\nid = \"never\"\nplugin = \"transform\"\n\
         when = \"$.webhook.body.never\"\ninput = \"$.webhook.body\"\n",
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let slow: Vec<String> = (0..cores)
        .map(|n| {
            weir_tests::post_json(&weir.webhook_url("slow"), &json!({ "n": n })).json()["run_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let status = |id: &str| {
        weir.api(&format!("/api/runs/{id}")).json()["run"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    weir_tests::wait_for(
        std::time::Duration::from_secs(30),
        "every slow run to start",
        || slow.iter().all(|id| status(id) == "running").then_some(()),
    );

    let skip =
        weir_tests::post_json(&weir.webhook_url("skip"), &json!({ "n": 1 })).json()["run_id"]
            .as_str()
            .unwrap()
            .to_owned();
    let ended = weir_tests::wait_for(
        std::time::Duration::from_secs(30),
        "the run without a call to end",
        || Some(status(&skip)).filter(|s| s != "queued" && s != "running"),
    );
    assert_eq!(ended, "succeeded", "its only step is skipped by `when`");
    for id in &slow {
        assert_eq!(
            status(id),
            "running",
            "the run that called no plugin waited for a slow call to end"
        );
    }
}
