//! Refused webhooks on record (issue 23 item 5): a refusal after the URL's token matched is
//! kept in the flow's ring with its credentials redacted; unknown flows and wrong tokens stay
//! a silent 404; a flood of forgeries leaves the ring at its size and the file bounded.

use std::time::Duration;

use serde_json::Value;
use weir_tests::{FlowDir, Weir, post_with, send, wait_for};

const SECRET: &str = "github-webhook-secret-0123456789";

fn signed_flow() -> FlowDir {
    let flows = FlowDir::empty();
    flows.write(
        "signed.toml",
        r#"name = "signed"
[webhook]
verify = { scheme = "github", secret = "${GH}" }

[[steps]]
id = "echo"
plugin = "transform"
input = "$.webhook.body"
"#,
    );
    flows
}

fn start(flows: &FlowDir, data: &tempfile::TempDir) -> Weir {
    Weir::start_with_env(
        flows.path(),
        &data.path().join("weir.redb"),
        &[],
        &[("GH", SECRET)],
    )
}

fn total(weir: &Weir) -> u64 {
    weir.flow("signed")["rejections"]["total"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn refusals_of_a_known_flow_are_kept_with_credentials_redacted() {
    let flows = signed_flow();
    let data = tempfile::tempdir().unwrap();
    let weir = start(&flows, &data);
    let url = weir.webhook_url("signed");
    let token = url.rsplit('/').next().unwrap().to_owned();
    assert_eq!(total(&weir), 0);

    let body = vec![b'x'; 10 * 1024];
    let forged = post_with(
        &url,
        "application/json",
        &body,
        &[
            ("x-hub-signature-256", "sha256=00"),
            ("authorization", "Bearer sk-live-do-not-keep"),
            ("cookie", "session=do-not-keep"),
        ],
    );
    assert_eq!(forged.status, 401);
    let wrong_method = send("PUT", &url, "application/json", b"{}").unwrap();
    assert_eq!(wrong_method.status, 405);
    let wrong_token = post_with(
        &format!("{}x", url),
        "application/json",
        b"{}",
        &[("x-hub-signature-256", "sha256=00")],
    );
    assert_eq!(wrong_token.status, 404);

    wait_for(Duration::from_secs(30), "two refusals on record", || {
        (total(&weir) >= 2).then_some(())
    });
    let flow = weir.flow("signed");
    assert_eq!(flow["rejections"]["total"], 2, "{}", flow["rejections"]);
    assert_eq!(flow["rejections"]["by_reason"]["verify"], 1);
    assert_eq!(flow["rejections"]["by_reason"]["method"], 1);

    let answer = weir.api("/api/flows/signed/rejections");
    assert_eq!(answer.status, 200);
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    for secret in [token.as_str(), "sk-live-do-not-keep", "session=do-not-keep"] {
        assert!(!text.contains(secret), "{secret} is in {text}");
    }
    let page = answer.json();
    let rows = page["rejections"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{page}");
    // Newest first: the wrong method, then the forged signature.
    let (method, verify) = (&rows[0], &rows[1]);
    assert_eq!(method["reason"], "method");
    assert_eq!(method["status"], 405);
    assert_eq!(method["method"], "PUT");
    assert_eq!(method["body"], Value::Null);
    assert_eq!(verify["reason"], "verify");
    assert_eq!(verify["status"], 401);
    assert!(
        verify["message"].as_str().unwrap().contains("github"),
        "{verify}"
    );
    assert_eq!(verify["method"], "POST");
    assert_eq!(verify["path"], "/hooks/signed/[redacted]");
    let header = |name: &str| {
        verify["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|pair| pair[0] == name)
            .map(|pair| pair[1].clone())
    };
    assert_eq!(header("authorization").unwrap(), "Bearer [redacted]");
    assert_eq!(header("cookie").unwrap(), "[redacted]");
    assert_eq!(header("x-hub-signature-256").unwrap(), "sha256=00");
    assert_eq!(verify["body"].as_str().unwrap().len(), 4096);
    assert_eq!(verify["body_encoding"], "utf-8");
    assert_eq!(verify["body_size"], 10 * 1024);
    assert_eq!(verify["body_truncated"], true);
    assert!(
        verify["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1")
    );

    // Paging by cursor.
    let first = weir.api("/api/flows/signed/rejections?limit=1").json();
    assert_eq!(first["rejections"][0]["reason"], "method");
    let cursor = first["next_cursor"].as_u64().unwrap();
    let second = weir
        .api(&format!(
            "/api/flows/signed/rejections?limit=1&cursor={cursor}"
        ))
        .json();
    assert_eq!(second["rejections"][0]["reason"], "verify");
    assert_eq!(second["next_cursor"], Value::Null);

    assert_eq!(weir.api("/api/flows/signed/rejections?limit=0").status, 400);
    assert_eq!(
        weir.api("/api/flows/signed/rejections?cursor=x").status,
        400
    );
    assert_eq!(weir.api("/api/flows/signed/rejections?page=1").status, 400);
    assert_eq!(weir.api("/api/flows/nope/rejections").status, 404);
    // No run was started by any of them.
    assert_eq!(weir.count_runs(), 0);
}

/// 20,000 forged webhooks leave the ring at 1,000 rows and the store file about where the
/// first 1,000 left it.
#[test]
fn a_flood_of_forgeries_keeps_the_ring_at_its_size() {
    const FORGED: u64 = 20_000;
    const SENDERS: u64 = 4;
    let flows = signed_flow();
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("weir.redb");
    let weir = start(&flows, &data);
    let url = weir.webhook_url("signed");
    let forge = |count: u64| {
        let senders: Vec<_> = (0..SENDERS)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || {
                    for _ in 0..count / SENDERS {
                        let answer = post_with(
                            &url,
                            "application/json",
                            br#"{"forged":true,"padding":"0123456789abcdef0123456789abcdef"}"#,
                            &[("x-hub-signature-256", "sha256=00")],
                        );
                        assert_eq!(answer.status, 401);
                    }
                })
            })
            .collect();
        for sender in senders {
            sender.join().unwrap();
        }
    };
    let kept = |at_least: u64| {
        wait_for(
            Duration::from_secs(60),
            &format!("{at_least} refusals counted"),
            || (total(&weir) >= at_least).then_some(()),
        )
    };
    forge(1000);
    kept(1000);
    let full = std::fs::metadata(&file).unwrap().len();
    forge(FORGED - 1000);
    kept(FORGED);
    assert_eq!(total(&weir), FORGED);

    let page = weir.api("/api/flows/signed/rejections?limit=1000").json();
    let rows = page["rejections"].as_array().unwrap();
    assert_eq!(rows.len(), 1000);
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(rows[0]["seq"], FORGED - 1);
    assert_eq!(rows[999]["seq"], FORGED - 1000);
    let after = std::fs::metadata(&file).unwrap().len();
    assert!(
        after <= full + full / 2 + (1 << 20),
        "the store file grew from {full} to {after} bytes while the ring stayed at 1,000 rows"
    );
}
