use super::*;

const BODY: &[u8] = br#"{"id":"evt_1"}"#;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

fn check(verify: &Verify, headers: &[(&str, &str)], query: &str) -> Result<(), Refusal> {
    check_at(verify, headers, query).map(|_| ())
}

fn check_at(verify: &Verify, headers: &[(&str, &str)], query: &str) -> Result<usize, Refusal> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    verify.check(
        &Request {
            headers: &headers,
            query,
            body: BODY,
        },
        now(),
    )
}

/// The HMAC-SHA256 of the parts, in order, to sign test requests with.
fn hmac(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    mac
}

fn hex_mac(key: &[u8], parts: &[&[u8]]) -> String {
    hex::encode(hmac(key, parts).finalize().into_bytes())
}

/// The example in GitHub's "Validating webhook deliveries" documentation.
#[test]
fn github_matches_its_documented_example() {
    assert_eq!(
        hex_mac(b"It's a Secret to Everybody", &[b"Hello, World!"]),
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
}

#[test]
fn github() {
    let verify = Verify::Github {
        secret: "s3cret".into(),
    };
    let good = format!("sha256={}", hex_mac(b"s3cret", &[BODY]));
    assert_eq!(
        check(&verify, &[("x-hub-signature-256", &good)], ""),
        Ok(())
    );
    let wrong = format!("sha256={}", hex_mac(b"other", &[BODY]));
    assert_eq!(
        check(&verify, &[("x-hub-signature-256", &wrong)], ""),
        Err(Refusal::Mismatch)
    );
    assert_eq!(
        check(&verify, &[], ""),
        Err(Refusal::Missing("x-hub-signature-256".into()))
    );
    assert!(matches!(
        check(&verify, &[("x-hub-signature-256", "sha1=00")], ""),
        Err(Refusal::Malformed(..))
    ));
}

/// With two secrets (rotation), a request signed with either passes, and the check says
/// which; one signed with neither does not.
#[test]
fn rotated_secrets_each_pass_and_say_which_matched() {
    let secrets = || Secrets::new(vec![b"new-secret".to_vec(), b"old-secret".to_vec()]).unwrap();
    let github = Verify::Github { secret: secrets() };
    for (position, key) in [(0, &b"new-secret"[..]), (1, &b"old-secret"[..])] {
        let signature = format!("sha256={}", hex_mac(key, &[BODY]));
        assert_eq!(
            check_at(&github, &[("x-hub-signature-256", &signature)], ""),
            Ok(position)
        );
    }
    let forged = format!("sha256={}", hex_mac(b"guessed", &[BODY]));
    assert_eq!(
        check_at(&github, &[("x-hub-signature-256", &forged)], ""),
        Err(Refusal::Mismatch)
    );
    let ts = "1750000000";
    let slack = Verify::Slack {
        secret: secrets(),
        tolerance: DEFAULT_TOLERANCE,
    };
    let signature = format!(
        "v0={}",
        hex_mac(b"old-secret", &[b"v0:", ts.as_bytes(), b":", BODY])
    );
    let headers = [
        ("x-slack-request-timestamp", ts),
        ("x-slack-signature", signature.as_str()),
    ];
    assert_eq!(check_at(&slack, &headers, ""), Ok(1));
    let stripe = Verify::Stripe {
        secret: secrets(),
        tolerance: DEFAULT_TOLERANCE,
    };
    let v1 = hex_mac(b"new-secret", &[ts.as_bytes(), b".", BODY]);
    let header = format!("t={ts},v1={v1}");
    assert_eq!(
        check_at(&stripe, &[("stripe-signature", &header)], ""),
        Ok(0)
    );
    let token = Verify::Token {
        token: secrets(),
        place: TokenPlace::Bearer,
    };
    assert_eq!(
        check_at(&token, &[("authorization", "Bearer old-secret")], ""),
        Ok(1)
    );
    assert_eq!(
        check_at(&token, &[("authorization", "Bearer other")], ""),
        Err(Refusal::Credentials)
    );
    let basic = Verify::Basic {
        username: "u".into(),
        password: secrets(),
    };
    let header = format!("Basic {}", STANDARD.encode("u:old-secret"));
    assert_eq!(check_at(&basic, &[("authorization", &header)], ""), Ok(1));
    assert!(!format!("{github:?}").contains("secret\""), "{github:?}");
    assert!(!format!("{:?}", secrets()).contains("new"));
}

#[test]
fn stripe_checks_the_signature_then_the_time() {
    let verify = Verify::Stripe {
        secret: "whsec_test".into(),
        tolerance: DEFAULT_TOLERANCE,
    };
    let t = "1750000000";
    let good = hex_mac(b"whsec_test", &[t.as_bytes(), b".", BODY]);
    // A rolled secret: one of several v1 signatures matches.
    let header = format!("t={t},v1={},v1={good},v0=ignored", "ab".repeat(32));
    assert_eq!(check(&verify, &[("stripe-signature", &header)], ""), Ok(()));

    let old = "1749999000";
    let stale = format!(
        "t={old},v1={}",
        hex_mac(b"whsec_test", &[old.as_bytes(), b".", BODY])
    );
    assert_eq!(
        check(&verify, &[("stripe-signature", &stale)], ""),
        Err(Refusal::Stale(DEFAULT_TOLERANCE))
    );
    // Moving the timestamp breaks the signature.
    let moved = format!("t=1750000001,v1={good}");
    assert_eq!(
        check(&verify, &[("stripe-signature", &moved)], ""),
        Err(Refusal::Mismatch)
    );
}

#[test]
fn slack() {
    let verify = Verify::Slack {
        secret: "8f742231b10e8888abcd99yyyzzz85a5".into(),
        tolerance: DEFAULT_TOLERANCE,
    };
    let ts = "1750000010";
    let good = format!(
        "v0={}",
        hex_mac(
            b"8f742231b10e8888abcd99yyyzzz85a5",
            &[b"v0:", ts.as_bytes(), b":", BODY]
        )
    );
    let headers = [
        ("x-slack-request-timestamp", ts),
        ("x-slack-signature", good.as_str()),
    ];
    assert_eq!(check(&verify, &headers, ""), Ok(()));
    let headers = [
        ("x-slack-request-timestamp", "1750000011"),
        ("x-slack-signature", good.as_str()),
    ];
    assert_eq!(check(&verify, &headers, ""), Err(Refusal::Mismatch));
}

#[test]
fn standard_webhooks() {
    let key = standard_webhooks_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let verify = Verify::StandardWebhooks {
        key: key.clone().into(),
        tolerance: DEFAULT_TOLERANCE,
    };
    let (id, ts) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", "1750000000");
    let signature = STANDARD.encode(
        hmac(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", BODY])
            .finalize()
            .into_bytes(),
    );
    let list = format!("v1,bm90IGl0 v1,{signature}");
    let headers = [
        ("webhook-id", id),
        ("webhook-timestamp", ts),
        ("webhook-signature", list.as_str()),
    ];
    assert_eq!(check(&verify, &headers, ""), Ok(()));
    let headers = [
        ("webhook-id", "msg_other"),
        ("webhook-timestamp", ts),
        ("webhook-signature", list.as_str()),
    ];
    assert_eq!(check(&verify, &headers, ""), Err(Refusal::Mismatch));
    assert!(standard_webhooks_key("whsec_***").is_err());
}

#[test]
fn generic_hmac_with_prefix_and_base64() {
    let verify = Verify::Hmac {
        secret: "k".into(),
        header: "x-signature".into(),
        prefix: "sha256=".into(),
        encoding: Encoding::Base64,
        algorithm: Algorithm::Sha256,
    };
    let good = format!(
        "sha256={}",
        STANDARD.encode(hmac(b"k", &[BODY]).finalize().into_bytes())
    );
    assert_eq!(check(&verify, &[("x-signature", &good)], ""), Ok(()));
    let hex = format!("sha256={}", hex_mac(b"k", &[BODY]));
    assert!(matches!(
        check(&verify, &[("x-signature", &hex)], ""),
        Err(Refusal::Malformed(..) | Refusal::Mismatch)
    ));
}

/// RFC 4231 test case 2 (SHA-256, SHA-512) and RFC 2202 test case 2 (SHA-1): key "Jefe".
#[test]
fn generic_hmac_with_each_algorithm() {
    let signed = |verify: &Verify, signature: &str| {
        let headers = vec![("x-signature".to_owned(), signature.to_owned())];
        verify.check(
            &Request {
                headers: &headers,
                query: "",
                body: b"what do ya want for nothing?",
            },
            now(),
        )
    };
    let cases = [
        (Algorithm::Sha1, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
        (
            Algorithm::Sha256,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            Algorithm::Sha512,
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ),
    ];
    for (algorithm, expected) in cases {
        let verify = Verify::Hmac {
            secret: "Jefe".into(),
            header: "x-signature".into(),
            prefix: String::new(),
            encoding: Encoding::Hex,
            algorithm,
        };
        assert_eq!(signed(&verify, expected), Ok(0), "{algorithm:?}");
        // Another algorithm's signature of the same body does not pass.
        for (other, signature) in cases {
            if other != algorithm {
                assert_eq!(
                    signed(&verify, signature),
                    Err(Refusal::Mismatch),
                    "{algorithm:?} given {other:?}"
                );
            }
        }
    }
}

#[test]
fn tokens_and_basic_auth() {
    let bearer = Verify::Token {
        token: "t0ken".into(),
        place: TokenPlace::Bearer,
    };
    assert_eq!(
        check(&bearer, &[("authorization", "Bearer t0ken")], ""),
        Ok(())
    );
    assert_eq!(
        check(&bearer, &[("authorization", "Bearer t0ke")], ""),
        Err(Refusal::Credentials)
    );
    let query = Verify::Token {
        token: "a b".into(),
        place: TokenPlace::Query("key".into()),
    };
    assert_eq!(check(&query, &[], "x=1&key=a+b"), Ok(()));
    assert_eq!(check(&query, &[], "x=1"), Err(Refusal::Credentials));
    let header = Verify::Token {
        token: "t".into(),
        place: TokenPlace::Header("x-token".into()),
    };
    assert_eq!(check(&header, &[("x-token", "t")], ""), Ok(()));

    let basic = Verify::Basic {
        username: "hook".into(),
        password: "pa:ss".into(),
    };
    let good = format!("Basic {}", STANDARD.encode("hook:pa:ss"));
    assert_eq!(check(&basic, &[("authorization", &good)], ""), Ok(()));
    let bad = format!("Basic {}", STANDARD.encode("hook:pass"));
    assert_eq!(
        check(&basic, &[("authorization", &bad)], ""),
        Err(Refusal::Credentials)
    );
}

#[test]
fn auth_scheme_names_are_case_insensitive() {
    let bearer = Verify::Token {
        token: "t0ken".into(),
        place: TokenPlace::Bearer,
    };
    for header in ["bearer t0ken", "BEARER t0ken", "Bearer   t0ken"] {
        assert_eq!(
            check(&bearer, &[("authorization", header)], ""),
            Ok(()),
            "{header}"
        );
    }
    assert!(matches!(
        check(&bearer, &[("authorization", "Bearert0ken")], ""),
        Err(Refusal::Malformed(..))
    ));
    let basic = Verify::Basic {
        username: "hook".into(),
        password: "pass".into(),
    };
    let encoded = STANDARD.encode("hook:pass");
    for scheme in ["basic", "BASIC", "bAsIc"] {
        let header = format!("{scheme} {encoded}");
        assert_eq!(
            check(&basic, &[("authorization", &header)], ""),
            Ok(()),
            "{header}"
        );
    }
}

#[test]
fn debug_never_shows_a_secret() {
    let key = b"0123456789abcdef-key".to_vec();
    let schemes = [
        Verify::Github {
            secret: "gh-secret-value".into(),
        },
        Verify::Stripe {
            secret: "gh-secret-value".into(),
            tolerance: DEFAULT_TOLERANCE,
        },
        Verify::StandardWebhooks {
            key: key.clone().into(),
            tolerance: DEFAULT_TOLERANCE,
        },
        Verify::Hmac {
            secret: "gh-secret-value".into(),
            header: "x-signature".into(),
            prefix: String::new(),
            encoding: Encoding::Hex,
            algorithm: Algorithm::Sha256,
        },
        Verify::Token {
            token: "gh-secret-value".into(),
            place: TokenPlace::Query("key".into()),
        },
        Verify::Basic {
            username: "hook".into(),
            password: "gh-secret-value".into(),
        },
    ];
    for verify in schemes {
        let shown = format!("{verify:?} {verify:#?}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(!shown.contains("gh-secret-value"), "{shown}");
        // The key's bytes, as `Vec<u8>`'s Debug would list them.
        assert!(!shown.contains("48, 49, 50"), "{shown}");
    }
}

#[test]
fn keys_under_16_bytes_are_refused() {
    assert!(key_too_short(b"").is_some());
    assert!(key_too_short(b"fifteen bytes!!").is_some());
    assert!(key_too_short(b"sixteen bytes!!!").is_none());
    for secret in ["whsec_", "whsec_AA==", "whsec_AAAAAAAAAAAAAAAAAAAA"] {
        let why = standard_webhooks_key(secret).unwrap_err();
        assert!(why.contains("at least 16 bytes"), "{why}");
    }
}
