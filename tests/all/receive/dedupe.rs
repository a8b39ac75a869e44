//! The dedupe key a verify scheme brings without the flow saying so.

use weir_tests::{FlowDir, Weir, post_with};

use super::{ECHO_STEP, github_signature, hmac_hex, now};

/// A flow verified with `github` dedupes on `X-GitHub-Delivery` without saying so: 20
/// concurrent redeliveries make one run, the others are answered 200 with its id; with
/// `dedupe = false` each delivery runs.
#[test]
fn a_verify_scheme_brings_its_delivery_id_as_default_dedupe() {
    const SECRET: &str = "github-webhook-secret-0123456789";
    let flows = FlowDir::empty();
    for (id, extra) in [("deduped", ""), ("every", "dedupe = false\n")] {
        flows.write(
            &format!("{id}.toml"),
            &format!(
                "name = \"{id}\"\n[webhook]\nverify = {{ scheme = \"github\", secret = \"${{GH}}\" }}\n{extra}{ECHO_STEP}"
            ),
        );
    }
    flows.write(
        "stripe.toml",
        &format!(
            "name = \"stripe\"\n[webhook]\nverify = {{ scheme = \"stripe\", secret = \"${{GH}}\" }}\n{ECHO_STEP}"
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with_env(
        flows.path(),
        &data.path().join("weir.redb"),
        &[],
        &[("GH", SECRET)],
    );
    let deduped = weir.flow("deduped");
    assert_eq!(deduped["dedupe"], "$.webhook.headers['x-github-delivery']");
    assert_eq!(deduped["dedupe_from"], "verify scheme github");
    assert_eq!(deduped["dedupe_window_ms"], 7 * 24 * 3600 * 1000_u64);
    assert_eq!(weir.flow("every")["dedupe"], serde_json::Value::Null);
    assert_eq!(weir.flow("stripe")["dedupe"], "$.webhook.body.id");

    let body = br#"{"action":"opened","number":1}"#;
    let signature = github_signature(SECRET, body);
    let deliver = |flow: &str| {
        let url = weir.webhook_url(flow);
        let signature = signature.clone();
        std::thread::spawn(move || {
            post_with(
                &url,
                "application/json",
                body,
                &[
                    ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                    ("x-hub-signature-256", &signature),
                ],
            )
        })
    };
    let answers: Vec<_> = (0..20)
        .map(|_| deliver("deduped"))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let accepted: Vec<_> = answers.iter().filter(|a| a.status == 202).collect();
    let redelivered: Vec<_> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(
        accepted.len(),
        1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_eq!(redelivered.len(), 19);
    let first = accepted[0].json()["run_id"].as_str().unwrap().to_owned();
    for answer in &redelivered {
        assert_eq!(answer.json()["run_id"], first.as_str());
        assert_eq!(answer.json()["duplicate"], true);
    }
    weir.wait_run(&first);
    let run = weir.api(&format!("/api/runs/{first}")).json();
    assert_eq!(run["redeliveries"], 19, "{run}");

    let every: Vec<_> = (0..2).map(|_| deliver("every").join().unwrap()).collect();
    assert!(
        every.iter().all(|a| a.status == 202),
        "{:?}",
        every.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_ne!(every[0].json()["run_id"], every[1].json()["run_id"]);

    // Stripe's event id is in the body.
    let url = weir.webhook_url("stripe");
    let event = br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","type":"payment_intent.succeeded"}"#;
    let stripe_post = || {
        let t = now().to_string();
        let v1 = hmac_hex(SECRET.as_bytes(), &[t.as_bytes(), b".", event]);
        post_with(
            &url,
            "application/json",
            event,
            &[("stripe-signature", &format!("t={t},v1={v1}"))],
        )
    };
    assert_eq!(stripe_post().status, 202);
    assert_eq!(stripe_post().status, 200);
}
