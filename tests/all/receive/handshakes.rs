//! Handshakes: a sender's challenge answered where the flow enables it, without a run.

use weir_tests::{FlowDir, Weir, get, post_with, send};

use super::{ECHO_STEP, SLACK_SECRET, slack_headers};

/// Each handshake is answered with its challenge as `text/plain`, only where the flow enables
/// it, a wrong token is refused, and none of them starts a run.
#[test]
fn handshakes_are_answered_without_a_run() {
    let flows = FlowDir::empty();
    flows.write(
        "slack.toml",
        &format!(
            "name = \"Slack\"\n[webhook]\nverify = {{ scheme = \"slack\", secret = \"${{SLACK_SECRET}}\" }}\nslack_url_verification = true\n{ECHO_STEP}"
        ),
    );
    flows.write(
        "meta.toml",
        &format!(
            "name = \"Meta\"\n[webhook]\nmeta_verify_token = \"${{META_TOKEN}}\"\n{ECHO_STEP}"
        ),
    );
    flows.write(
        "graph.toml",
        &format!("name = \"Graph\"\n[webhook]\ngraph_validation = true\n{ECHO_STEP}"),
    );
    flows.write(
        "dropbox.toml",
        &format!("name = \"Dropbox\"\n[webhook]\necho_challenge = true\n{ECHO_STEP}"),
    );
    flows.write("plain.toml", &format!("name = \"Plain\"\n{ECHO_STEP}"));
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with_env(
        flows.path(),
        &data.path().join("weir.redb"),
        &[],
        &[
            ("SLACK_SECRET", SLACK_SECRET),
            ("META_TOKEN", "meta-verify-token-123"),
        ],
    );
    let text = |answer: &weir_tests::Answer| String::from_utf8_lossy(&answer.body).into_owned();
    let is_plain_text = |answer: &weir_tests::Answer| {
        assert!(
            answer
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{:?}",
            answer.headers
        );
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    };

    // Slack: signed url_verification echoes the challenge; unsigned is refused.
    let slack = weir.webhook_url("slack");
    let body = br#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let headers = slack_headers(SLACK_SECRET, body);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let answer = post_with(&slack, "application/json", body, &headers);
    assert_eq!(answer.status, 200, "{}", text(&answer));
    is_plain_text(&answer);
    assert_eq!(
        text(&answer),
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    let forged = post_with(&slack, "application/json", body, &[]);
    assert_eq!(forged.status, 401, "{}", text(&forged));

    // Meta: the right token gets the challenge, a wrong one 403.
    let meta = weir.webhook_url("meta");
    let answer = get(&format!(
        "{meta}?hub.mode=subscribe&hub.verify_token=meta-verify-token-123&hub.challenge=1158201444"
    ));
    assert_eq!(answer.status, 200, "{}", text(&answer));
    is_plain_text(&answer);
    assert_eq!(text(&answer), "1158201444");
    let wrong = get(&format!(
        "{meta}?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1158201444"
    ));
    assert_eq!(wrong.status, 403, "{}", text(&wrong));
    assert!(!text(&wrong).contains("1158201444"));

    // Microsoft Graph: the validation token, URL-decoded, on a POST.
    let graph = weir.webhook_url("graph");
    let answer = send(
        "POST",
        &format!("{graph}?validationToken=Validation%3A%20Testing%20client%20application"),
        "text/plain",
        b"",
    )
    .unwrap();
    assert_eq!(answer.status, 200, "{}", text(&answer));
    is_plain_text(&answer);
    assert_eq!(text(&answer), "Validation: Testing client application");

    // Dropbox: GET ?challenge= echoed.
    let dropbox = weir.webhook_url("dropbox");
    let answer = get(&format!("{dropbox}?challenge=abc123"));
    assert_eq!(answer.status, 200);
    is_plain_text(&answer);
    assert_eq!(text(&answer), "abc123");

    // A flow without the keys answers none of them: its GET is 405, its POST a run.
    let plain = weir.webhook_url("plain");
    assert_eq!(get(&format!("{plain}?challenge=abc123")).status, 405);
    assert_eq!(
        get(&format!(
            "{plain}?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1"
        ))
        .status,
        405
    );
    assert_eq!(weir.count_runs(), 0, "handshakes start no run");
    let answer = send(
        "POST",
        &format!("{plain}?validationToken=abc"),
        "application/json",
        b"{}",
    )
    .unwrap();
    assert_eq!(answer.status, 202);
    // A Slack flow's ordinary event still runs.
    let event = br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}"#;
    let headers = slack_headers(SLACK_SECRET, event);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let answer = post_with(&slack, "application/json", event, &headers);
    assert_eq!(answer.status, 202, "{}", text(&answer));
    let run = weir.wait_run(answer.json()["run_id"].as_str().unwrap());
    assert_eq!(run["run"]["status"], "succeeded");
    assert_eq!(weir.count_runs(), 2);
}
