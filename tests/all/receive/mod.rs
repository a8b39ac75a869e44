//! Receiving what real senders send (issue 23), a module per concern: handshakes, the default
//! dedupe per verify scheme, secret rotation, content types and encodings (`bodies`), who may
//! send (`senders`), and answers the sender wants. The signing helpers they share are here.

mod answers;
mod bodies;
mod dedupe;
mod handshakes;
mod rotation;
mod senders;

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{KeyInit as _, Mac as _};
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The headers Slack signs a body with.
fn slack_headers(secret: &str, body: &[u8]) -> [(String, String); 2] {
    let ts = now().to_string();
    let signature = hmac_hex(secret.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body]);
    [
        ("x-slack-request-timestamp".into(), ts),
        ("x-slack-signature".into(), format!("v0={signature}")),
    ]
}

/// A step that passes the webhook's body through, for flows that only need to run.
const ECHO_STEP: &str = r#"
[[steps]]
id = "echo"
plugin = "transform"
input = "$.webhook.body"
"#;

/// The `X-Hub-Signature-256` header GitHub signs a body with.
fn github_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(secret.as_bytes(), &[body]))
}
