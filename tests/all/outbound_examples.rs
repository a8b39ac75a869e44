//! The delivering example flows (`examples/flows/`) end to end, their destinations pointed at
//! loopback sinks: the grant line of each is rewritten to the sink's literal address, and the
//! URLs and secrets come from the environment as in production.

use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use weir_tests::sink::{Reply, Sink};
use weir_tests::{FlowDir, Weir, post_json, repo_root, weir_command};

/// The example flow `name`, its `allow_hosts` line replaced by a grant of `sink`.
fn example(name: &str, grant: &str, sink: &Sink) -> String {
    let text = std::fs::read_to_string(repo_root().join("examples/flows").join(name))
        .expect("the example exists");
    let line = format!("allow_hosts = [\"{grant}\"]");
    assert!(text.contains(&line), "{name} grants {grant}");
    text.replace(
        &line,
        &format!("allow_hosts = [\"http://127.0.0.1:{}\"]", sink.port()),
    )
}

fn serve(name: &str, flow: &str, env: &[(&str, &str)]) -> (FlowDir, tempfile::TempDir, Weir) {
    let flows = FlowDir::empty();
    flows.write(name, flow);
    let data = tempfile::tempdir().expect("temp dir");
    let weir = Weir::start_with_env(flows.path(), &data.path().join("weir.redb"), &[], env);
    (flows, data, weir)
}

fn run(weir: &Weir, flow: &str, body: Value) -> Value {
    let answer = post_json(&weir.webhook_url(flow), &body);
    assert_eq!(
        answer.status,
        202,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    weir.wait_run(answer.json()["run_id"].as_str().expect("a run id"))
}

#[test]
fn github_issues_reach_slack() {
    let slack = Sink::start(|_| Reply::text(200, "ok"));
    let url = slack.url("/services/T000/B000/XXXXXXXXXXXX");
    let flow = example("github-slack.toml", "https://hooks.slack.com", &slack);
    let (_flows, _data, weir) = serve("github-slack.toml", &flow, &[("SLACK_WEBHOOK_URL", &url)]);
    let run = run(
        &weir,
        "github-slack",
        json!({"action": "opened", "issue": {"number": 42, "title": "Crash on start",
               "html_url": "https://github.com/acme/app/issues/42", "user": {"login": "octocat"}}}),
    );
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    let slack_step = &run["steps"][2];
    assert_eq!(
        slack_step["output"],
        json!({"status": 200, "response": "ok"})
    );
    let call = &slack_step["calls"][0];
    assert_eq!(call["status"], 200);
    // The URL is a secret from the environment: the record masks it.
    assert_eq!(call["url"], "[redacted:SLACK_WEBHOOK_URL]", "{call}");
    let received = slack.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].target, "/services/T000/B000/XXXXXXXXXXXX");
    assert_eq!(
        received[0].json(),
        json!({"text": "New issue #42: Crash on start by octocat (https://github.com/acme/app/issues/42)"})
    );
}

#[test]
fn stripe_payments_reach_the_service_signed() {
    const SECRET: &str = "a-signing-secret-of-32-bytes-ok!";
    // The service checks the signature as a real one would, and refuses a bad one.
    let service = Sink::start(|request| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(&request.body);
        let expected = hex::encode(mac.finalize().into_bytes());
        if request.header("x-weir-signature") == Some(expected.as_str()) {
            Reply::json(202, &json!({"accepted": true}))
        } else {
            Reply::text(401, "bad signature")
        }
    });
    let flow = example("stripe-signed.toml", "http://127.0.0.1:9090", &service);
    let url = service.url("/payments");
    let (_flows, _data, weir) = serve(
        "stripe-signed.toml",
        &flow,
        &[
            ("PAYMENTS_SERVICE_URL", &url),
            ("PAYMENTS_SIGNING_SECRET", SECRET),
        ],
    );
    let run = run(
        &weir,
        "stripe-signed",
        json!({"id": "evt_1", "type": "payment_intent.succeeded",
               "data": {"object": {"id": "pi_1", "amount": 2500, "currency": "eur", "customer": "cus_42"}}}),
    );
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    let forward = &run["steps"][3];
    assert_eq!(forward["output"]["status"], 202);
    assert_eq!(forward["output"]["body"], json!({"accepted": true}));
    assert_eq!(forward["calls"][0]["status"], 202);
    let received = service.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].json(),
        json!({"id": "pi_1", "amount": 2500, "currency": "eur", "customer": "cus_42"})
    );
    assert_eq!(received[0].header("content-type"), Some("application/json"));
}

#[test]
fn form_posts_are_validated_then_forwarded() {
    let tickets = Sink::start(|_| Reply::json(201, &json!({"ticket": 1})));
    let flow = example("form-forward.toml", "https://tickets.example.com", &tickets);
    let url = tickets.url("/api/contact");
    let (_flows, _data, weir) = serve("form-forward.toml", &flow, &[("FORM_FORWARD_URL", &url)]);
    let run_ok = run(
        &weir,
        "form-forward",
        json!({"name": "Ada", "email": "ada@example.com", "message": "Hello"}),
    );
    assert_eq!(run_ok["run"]["status"], "succeeded", "{run_ok:#}");
    assert_eq!(run_ok["steps"][1]["output"]["body"], json!({"ticket": 1}));
    let bad = run(&weir, "form-forward", json!({"email": "not-an-address"}));
    assert_eq!(bad["run"]["status"], "failed");
    let error = &bad["steps"][0]["error"];
    assert_eq!(error["kind"], "invalid-input");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("/email: "), "{message}");
    assert!(
        message.contains("\"message\" is a required property"),
        "{message}"
    );
    assert_eq!(
        tickets.requests().len(),
        1,
        "the bad post was not forwarded"
    );
}

#[test]
fn without_their_secrets_the_examples_name_the_missing_variables() {
    let out = weir_command()
        .arg("validate")
        .arg(repo_root().join("examples/flows"))
        .env_remove("SLACK_WEBHOOK_URL")
        .env_remove("PAYMENTS_SERVICE_URL")
        .env_remove("PAYMENTS_SIGNING_SECRET")
        .env_remove("FORM_FORWARD_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "SLACK_WEBHOOK_URL",
        "PAYMENTS_SERVICE_URL",
        "PAYMENTS_SIGNING_SECRET",
        "FORM_FORWARD_URL",
    ] {
        assert!(
            text.contains(&format!("environment variable `{name}` is not set")),
            "{name}: {text}"
        );
    }
}
