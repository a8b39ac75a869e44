//! Secret rotation: several secrets accepted, the one that matched recorded by position.

use hmac::{KeyInit as _, Mac as _};
use weir_tests::{FlowDir, Weir, post_with};

use super::{ECHO_STEP, github_signature, hmac_hex, now, slack_headers};

/// Rotating a secret: with `secret = ["${NEW}", "${OLD}"]` a webhook signed with either passes,
/// and its run records which one matched by position (0 the new, 1 the old), never the
/// value; for every HMAC scheme, `token` and `basic`. A flow without `verify` records none.
#[test]
fn a_run_records_which_of_its_rotating_secrets_matched() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    const NEW: &str = "the-new-secret-of-32-bytes-long!";
    const OLD: &str = "the-old-secret-of-32-bytes-long!";
    let text = |answer: &weir_tests::Answer| String::from_utf8_lossy(&answer.body).into_owned();
    let new_key = STANDARD.encode(NEW);
    let old_key = STANDARD.encode(OLD);
    let flows = FlowDir::empty();
    let verify = [
        (
            "github",
            r#"scheme = "github", secret = ["${NEW}", "${OLD}"]"#,
        ),
        (
            "stripe",
            r#"scheme = "stripe", secret = ["${NEW}", "${OLD}"]"#,
        ),
        (
            "slack",
            r#"scheme = "slack", secret = ["${NEW}", "${OLD}"]"#,
        ),
        (
            "standard-webhooks",
            r#"scheme = "standard-webhooks", secret = ["whsec_${NEW_KEY}", "whsec_${OLD_KEY}"]"#,
        ),
        (
            "hmac",
            r#"scheme = "hmac", header = "X-Signature", encoding = "base64", algorithm = "sha512", secret = ["${NEW}", "${OLD}"]"#,
        ),
        ("token", r#"scheme = "token", token = ["${NEW}", "${OLD}"]"#),
        (
            "basic",
            r#"scheme = "basic", username = "sender", password = ["${NEW}", "${OLD}"]"#,
        ),
    ];
    for (id, verify) in verify {
        flows.write(
            &format!("{id}.toml"),
            &format!("name = \"{id}\"\n[webhook]\nverify = {{ {verify} }}\n{ECHO_STEP}"),
        );
    }
    flows.write("open.toml", &format!("name = \"open\"\n{ECHO_STEP}"));
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with_env(
        flows.path(),
        &data.path().join("weir.redb"),
        &[],
        &[
            ("NEW", NEW),
            ("OLD", OLD),
            ("NEW_KEY", &new_key),
            ("OLD_KEY", &old_key),
        ],
    );

    // The headers that sign `body` for `scheme` with `secret`.
    let sign = |scheme: &str, secret: &str, body: &[u8], n: usize| -> Vec<(String, String)> {
        let t = now().to_string();
        match scheme {
            "github" => vec![("x-hub-signature-256".into(), github_signature(secret, body))],
            "stripe" => {
                let v1 = hmac_hex(secret.as_bytes(), &[t.as_bytes(), b".", body]);
                vec![("stripe-signature".into(), format!("t={t},v1={v1}"))]
            }
            "slack" => slack_headers(secret, body).to_vec(),
            "standard-webhooks" => {
                let id = format!("msg_{n}");
                let mut mac =
                    hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                for part in [id.as_bytes(), b".", t.as_bytes(), b".", body] {
                    mac.update(part);
                }
                let signature = STANDARD.encode(mac.finalize().into_bytes());
                vec![
                    ("webhook-id".into(), id),
                    ("webhook-timestamp".into(), t),
                    ("webhook-signature".into(), format!("v1,{signature}")),
                ]
            }
            "hmac" => {
                let mut mac =
                    hmac::Hmac::<sha2::Sha512>::new_from_slice(secret.as_bytes()).unwrap();
                mac.update(body);
                vec![(
                    "x-signature".into(),
                    STANDARD.encode(mac.finalize().into_bytes()),
                )]
            }
            "token" => vec![("authorization".into(), format!("Bearer {secret}"))],
            "basic" => vec![(
                "authorization".into(),
                format!("Basic {}", STANDARD.encode(format!("sender:{secret}"))),
            )],
            other => unreachable!("{other}"),
        }
    };
    let mut n = 0;
    let mut deliver = |flow: &str, secret: Option<&str>| {
        n += 1;
        // A new event id each time, so no default dedupe takes one for a redelivery.
        let body = format!(r#"{{"id":"evt_{n}","event_id":"Ev{n}","n":{n}}}"#);
        let headers = secret.map_or_else(Vec::new, |secret| sign(flow, secret, body.as_bytes(), n));
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let answer = post_with(
            &weir.webhook_url(flow),
            "application/json",
            body.as_bytes(),
            &headers,
        );
        assert_eq!(answer.status, 202, "{flow}: {}", text(&answer));
        weir.wait_run(&answer.accepted_run_id())
    };
    for (scheme, _) in verify {
        for (secret, position) in [(OLD, 1), (NEW, 0)] {
            let run = deliver(scheme, Some(secret));
            assert_eq!(run["run"]["status"], "succeeded", "{scheme}: {run}");
            assert_eq!(
                run["run"]["verify"],
                serde_json::json!({ "scheme": scheme, "secret": position }),
                "{scheme} signed with secret {position}"
            );
            let shown = run["run"]["verify"].to_string();
            assert!(
                !shown.contains(secret) && !shown.contains(&STANDARD.encode(secret)),
                "{shown}"
            );
        }
        // A wrong secret is still refused.
        let body = br#"{"id":"forged"}"#;
        let forged = sign(scheme, "a-third-secret-nobody-was-given", body, 0);
        let forged: Vec<(&str, &str)> = forged
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let answer = post_with(&weir.webhook_url(scheme), "application/json", body, &forged);
        assert_eq!(answer.status, 401, "{scheme}: {}", text(&answer));
    }
    // The list shows it too; a flow without `verify` records none.
    let listed = weir.api("/api/runs?flow=basic&limit=1").json();
    assert_eq!(
        listed["runs"][0]["verify"],
        serde_json::json!({ "scheme": "basic", "secret": 0 })
    );
    let open = deliver("open", None);
    assert!(open["run"].get("verify").is_none(), "{open}");
}
