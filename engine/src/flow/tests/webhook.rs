//! The `[webhook]` table: dedupe, respond, verify and its secrets, allow_ips, the answer.

use super::*;

#[test]
fn dedupe_reads_one_value_of_the_webhook() {
    let flow = load(
        r#"name = "x"
[webhook]
dedupe = "$.webhook.headers['x-github-delivery']"
"#,
    );
    let spec = &flow.webhook;
    let key = |webhook: Value| spec.dedupe_key(&json!({ "webhook": webhook }));
    assert_eq!(
        key(json!({"headers": {"x-github-delivery": "d-1"}})),
        Some("d-1".into())
    );
    assert_eq!(
        key(json!({"headers": {"x-github-delivery": 42}})),
        Some("\u{0}42".into())
    );
    // Issue 20, item 12: keys keep their JSON type; `1` and `"1"` are different deliveries,
    // and a string cannot pass for a typed key.
    let keys: Vec<Option<String>> = [
        json!(1),
        json!("1"),
        json!("\u{0}1"),
        json!(true),
        json!("true"),
        json!([1]),
        json!("[1]"),
    ]
    .into_iter()
    .map(|value| key(json!({"headers": {"x-github-delivery": value}})))
    .collect();
    for (i, a) in keys.iter().enumerate() {
        assert!(a.is_some());
        for b in &keys[i + 1..] {
            assert_ne!(a, b, "{keys:?}");
        }
    }
    // Nothing selected, or null: never a duplicate.
    assert_eq!(key(json!({"headers": {}})), None);
    assert_eq!(key(json!({"headers": {"x-github-delivery": null}})), None);
    assert_eq!(load(MINIMAL).webhook.dedupe_key(&json!({})), None);
    assert_eq!(
        spec.dedupe_window, None,
        "by default a value holds for good"
    );
}

#[test]
fn dedupe_window_is_a_duration_that_goes_with_dedupe() {
    let flow = load(
        r#"name = "x"
[webhook]
dedupe = "$.webhook.body.id"
dedupe_window = "3d"
"#,
    );
    assert_eq!(
        flow.webhook.dedupe_window,
        Some(Duration::from_secs(3 * 24 * 3600))
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\ndedupe_window = \"1h\"\n"),
        vec![
            "3:17: `dedupe_window` only applies with `dedupe` (or a `verify` scheme that brings one)"
        ]
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\ndedupe = true\n"),
        vec![
            "3:10: `dedupe = true` is not a query: write the JSONPath of the delivery id, such as \
             \"$.webhook.headers['x-request-id']\", or `false` to turn dedupe off"
        ]
    );
    assert_eq!(
        errors(
            "name = \"x\"\n[webhook]\ndedupe = \"$.webhook.body.id\"\ndedupe_window = \"soon\"\n"
        ),
        vec![
            "4:17: `dedupe_window` = \"soon\" is not a duration (expected number at 0); \
             write it like \"5s\" or \"2m 30s\""
        ]
    );
}

#[test]
fn dedupe_must_be_a_singular_query_on_the_webhook() {
    let source = r#"name = "x"
[webhook]
dedupe = "$.steps.a.output"

[[steps]]
id = "a"
plugin = "transform"
"#;
    assert_eq!(
        errors(source),
        vec![
            "3:10: `dedupe` is read when the webhook arrives, before any step runs: \
             `$.steps.a.output` must start with `$.webhook`"
        ]
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\ndedupe = \"$.webhook.body.items[*].id\"\n"),
        vec![
            "3:10: `dedupe` must select at most one value (names and indexes only), \
             and `$.webhook.body.items[*].id` can select several"
        ]
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\ndedupe = \"delivery\"\n"),
        vec![
            "3:10: `dedupe` must be a JSONPath query starting with `$.webhook`, such as \
             \"$.webhook.headers['x-github-delivery']\""
        ]
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\ndedupe = \"$.webhook[\"\n").len(),
        1
    );
}

#[test]
fn respond_is_accepted_unless_the_flow_asks_for_its_result() {
    use crate::flow::{DEFAULT_RESPOND_TIMEOUT, Respond};
    assert_eq!(load(MINIMAL).webhook.respond, Respond::Accepted);
    let with = |webhook: &str| {
        load(&format!("name = \"x\"\n[webhook]\n{webhook}\n"))
            .webhook
            .respond
    };
    assert_eq!(with("respond = \"accepted\""), Respond::Accepted);
    assert_eq!(
        with("respond = \"result\""),
        Respond::Result {
            timeout: DEFAULT_RESPOND_TIMEOUT
        }
    );
    assert_eq!(
        with("respond = \"result\"\nrespond_timeout = \"1m 30s\""),
        Respond::Result {
            timeout: std::time::Duration::from_secs(90)
        }
    );

    let errors_of = |webhook: &str| errors(&format!("name = \"x\"\n[webhook]\n{webhook}\n"));
    assert_eq!(
        errors_of("respond = \"sync\""),
        vec!["3:11: `respond` = \"sync\" is not one of \"accepted\", \"result\""]
    );
    assert_eq!(
        errors_of("respond_timeout = \"5s\""),
        vec!["3:19: `respond_timeout` only applies with `respond = \"result\"`"]
    );
    let too_long = errors_of("respond = \"result\"\nrespond_timeout = \"1h\"");
    assert_eq!(too_long.len(), 1);
    assert!(
        too_long[0].starts_with("4:19: `respond_timeout` must be at most"),
        "{too_long:?}"
    );
}

#[test]
fn verify_reads_each_scheme_with_secrets_from_the_environment() {
    use crate::verify::{Algorithm, DEFAULT_TOLERANCE, Encoding, TokenPlace, Verify};
    let with = |verify: &str| {
        load(&format!("name = \"x\"\n[webhook]\nverify = {verify}\n"))
            .webhook
            .verify
            .expect("a verify")
    };
    assert_eq!(
        with(r#"{ scheme = "github", secret = "${HOOK_SECRET}" }"#),
        Verify::Github {
            secret: "a-webhook-secret-of-32-bytes-ok!".into()
        }
    );
    assert_eq!(
        with(r#"{ scheme = "stripe", secret = "whsec_0123456789abcdef", tolerance = "10m" }"#),
        Verify::Stripe {
            secret: "whsec_0123456789abcdef".into(),
            tolerance: std::time::Duration::from_secs(600)
        }
    );
    assert_eq!(
        with(r#"{ scheme = "slack", secret = "0123456789abcdef" }"#),
        Verify::Slack {
            secret: "0123456789abcdef".into(),
            tolerance: DEFAULT_TOLERANCE
        }
    );
    assert_eq!(
        with(
            r#"{ scheme = "hmac", secret = "0123456789abcdef", header = "X-Signature", prefix = "sha256=", encoding = "base64" }"#
        ),
        Verify::Hmac {
            secret: "0123456789abcdef".into(),
            header: "x-signature".into(),
            prefix: "sha256=".into(),
            encoding: Encoding::Base64,
            algorithm: Algorithm::Sha256,
        }
    );
    assert_eq!(
        with(
            r#"{ scheme = "hmac", secret = "0123456789abcdef", header = "X-Hub-Signature", prefix = "sha1=", algorithm = "sha1" }"#
        ),
        Verify::Hmac {
            secret: "0123456789abcdef".into(),
            header: "x-hub-signature".into(),
            prefix: "sha1=".into(),
            encoding: Encoding::Hex,
            algorithm: Algorithm::Sha1,
        }
    );
    assert_eq!(
        with(r#"{ scheme = "token", token = "t", query = "key" }"#),
        Verify::Token {
            token: "t".into(),
            place: TokenPlace::Query("key".into())
        }
    );
    assert_eq!(
        with(r#"{ scheme = "token", token = "t" }"#),
        Verify::Token {
            token: "t".into(),
            place: TokenPlace::Bearer
        }
    );
    assert!(matches!(
        with(
            r#"{ scheme = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }"#
        ),
        Verify::StandardWebhooks { .. }
    ));
    assert!(matches!(
        with(r#"{ scheme = "basic", username = "u", password = "p" }"#),
        Verify::Basic { .. }
    ));
}

#[test]
fn verify_problems_are_reported_where_they_are() {
    let errors_of = |verify: &str| errors(&format!("name = \"x\"\n[webhook]\nverify = {verify}\n"));
    assert_eq!(
        errors_of(r#"{ scheme = "gitlab", secret = "x" }"#),
        vec![
            "3:21: `verify` scheme \"gitlab\" is not one of github, stripe, slack, standard-webhooks, hmac, token, basic"
        ]
    );
    assert_eq!(
        errors_of(r#"{ scheme = "github" }"#),
        vec!["3:10: `verify` with scheme \"github\" needs `secret`"]
    );
    assert_eq!(
        errors_of(r#"{ scheme = "github", secret = "${EMPTY}" }"#),
        vec!["3:40: `secret` is empty"]
    );
    let missing = errors_of(r#"{ scheme = "github", secret = "${NOT_SET}" }"#);
    assert_eq!(missing.len(), 1);
    assert!(missing[0].contains("`NOT_SET` is not set"), "{missing:?}");
    assert_eq!(
        errors_of(r#"{ scheme = "github", secret = "0123456789abcdef", tolerance = "1m" }"#),
        vec![
            "3:60: unknown key `tolerance` in verify (scheme \"github\"); allowed keys: scheme, secret"
        ]
    );
    assert_eq!(
        errors_of(r#"{ scheme = "token", token = "t", header = "x-t", query = "t" }"#),
        vec!["3:10: `verify` takes the token from a `header` or a `query` parameter, not both"]
    );
    assert_eq!(
        errors_of(r#"{ scheme = "standard-webhooks", secret = "whsec_***" }"#),
        vec!["3:51: `secret`: a standard-webhooks secret is `whsec_` followed by base64"]
    );
    assert_eq!(
        errors_of(r#"{ scheme = "hmac", secret = "k", header = "x-s", algorithm = "md5" }"#),
        vec!["3:71: `algorithm` = \"md5\" is not one of \"sha256\", \"sha512\", \"sha1\""]
    );
    assert_eq!(
        errors_of(r#""github""#),
        vec![
            "3:10: `verify` must be a table such as { scheme = \"github\", secret = \"${GITHUB_WEBHOOK_SECRET}\" }, found string"
        ]
    );
}

/// Issue 20, item 3: every HMAC scheme refuses a key under 16 bytes at load, where it is
/// written, and says how long it is but not what it is.
#[test]
fn hmac_keys_under_16_bytes_are_refused_at_load() {
    let errors_of = |verify: &str| errors(&format!("name = \"x\"\n[webhook]\nverify = {verify}\n"));
    for scheme in ["github", "stripe", "slack"] {
        let errors = errors_of(&format!(
            r#"{{ scheme = "{scheme}", secret = "${{API_TOKEN}}" }}"#
        ));
        assert_eq!(errors.len(), 1, "{scheme}: {errors:?}");
        let at = format!("3:{}: `secret`: the key is 6 bytes", 34 + scheme.len());
        assert!(errors[0].starts_with(&at), "{scheme}: {errors:?}");
        assert!(errors[0].contains("at least 16 bytes"), "{errors:?}");
        assert!(!errors[0].contains("s3cret"), "{errors:?}");
    }
    let hmac = errors_of(r#"{ scheme = "hmac", secret = "fifteen bytes!!", header = "x-s" }"#);
    assert_eq!(hmac.len(), 1, "{hmac:?}");
    assert!(
        hmac[0].starts_with("3:38: `secret`: the key is 15 bytes"),
        "{hmac:?}"
    );
    // Standard Webhooks keys are counted once decoded: `whsec_` is empty, `whsec_AA==` 1 byte.
    for (secret, bytes) in [
        ("whsec_", 0),
        ("whsec_AA==", 1),
        ("whsec_AAAAAAAAAAAAAAAAAAAA", 15),
    ] {
        let errors = errors_of(&format!(
            r#"{{ scheme = "standard-webhooks", secret = "{secret}" }}"#
        ));
        assert_eq!(
            errors,
            vec![format!(
                "3:51: `secret`: the key of this standard-webhooks secret decodes to {bytes} bytes; HMAC keys must be at least 16 bytes (Standard Webhooks secrets are 24 to 64)"
            )]
        );
    }
    // 16 bytes load.
    errors_of_none(r#"{ scheme = "hmac", secret = "sixteen bytes!!!", header = "x-s" }"#);
    errors_of_none(
        r#"{ scheme = "standard-webhooks", secret = "whsec_AAAAAAAAAAAAAAAAAAAAAA==" }"#,
    );
}

fn errors_of_none(verify: &str) {
    load(&format!("name = \"x\"\n[webhook]\nverify = {verify}\n"));
}

/// `secret` may list secrets to rotate through; each is checked where it is written.
#[test]
fn a_secret_may_be_a_list_to_rotate() {
    use crate::verify::{Secrets, Verify};
    let flow = load(
        "name = \"x\"\n[webhook]\nverify = { scheme = \"github\", secret = [\"${HOOK_SECRET}\", \"an-older-secret-of-24-bytes\"] }\n",
    );
    assert_eq!(
        flow.webhook.verify,
        Some(Verify::Github {
            secret: Secrets::new(vec![
                b"a-webhook-secret-of-32-bytes-ok!".to_vec(),
                b"an-older-secret-of-24-bytes".to_vec()
            ])
            .unwrap()
        })
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\nverify = { scheme = \"github\", secret = [] }\n"),
        vec!["3:40: `secret` lists no secret; write one, or the new and the old while rotating"]
    );
    assert_eq!(
        errors(
            "name = \"x\"\n[webhook]\nverify = { scheme = \"github\", secret = [\"${HOOK_SECRET}\", \"short\"] }\n"
        ),
        vec![
            "3:59: `secret`: the key is 5 bytes; HMAC keys must be at least 16 bytes (use the secret your sender generated, or 32 random bytes)"
        ]
    );
}

#[test]
fn allow_ips_are_networks_checked_where_written() {
    let flow = load("name = \"x\"\n[webhook]\nallow_ips = [\"192.0.2.0/24\", \"2001:db8::1\"]\n");
    let nets: Vec<String> = flow
        .webhook
        .allow_ips
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["192.0.2.0/24", "2001:db8::1/128"]);
    assert_eq!(
        errors(
            "name = \"x\"\n[webhook]\nallow_ips = [\"192.0.2.0/24\", \"10.1.2.3/8\", \"nope\"]\n"
        ),
        vec![
            "3:30: `allow_ips`: `10.1.2.3/8` has bits set past its /8 prefix; did you mean `10.0.0.0/8`?",
            "3:44: `allow_ips`: `nope` is not an address or a CIDR network such as \"192.0.2.0/24\""
        ]
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\nallow_ips = []\n"),
        vec![
            "3:13: `allow_ips` lists no network, so no webhook could arrive; leave it out to accept any sender"
        ]
    );
}

#[test]
fn an_answer_is_checked_at_load() {
    let flow = load("name = \"x\"\n[webhook]\nanswer = { status = 204 }\n");
    assert!(flow.answer.is_some_and(|a| a.is_constant()));
    assert_eq!(
        errors("name = \"x\"\n[webhook]\nanswer = { status = 500 }\n"),
        vec![
            "3:21: with `respond = \"accepted\"` the answer's `status` is one of 200, 201, 202, 204: the webhook was stored"
        ]
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\nanswer = { body = \"$.webhook.body\" }\n"),
        vec![
            "3:10: with `respond = \"accepted\"` the answer is sent before the run, so it cannot read the run context: write literal values, or use `respond = \"result\"`"
        ]
    );
    assert_eq!(
        errors(
            "name = \"x\"\n[webhook]\nrespond = \"result\"\nanswer = { body = \"$.steps.nope.output\", colour = 1 }\n"
        ),
        vec![
            "4:19: step 'nope' is not an earlier step: no step has that id",
            "4:42: unknown key `colour` in answer; allowed keys: status, headers, body"
        ]
    );
    assert_eq!(
        errors("name = \"x\"\n[webhook]\nanswer = { headers = { \"bad name\" = \"v\" } }\n"),
        vec!["3:10: the answer's header `bad name: v` is not a valid HTTP header"]
    );
}
