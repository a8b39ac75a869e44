//! Stored envelopes across versions: a run stored before a field existed still reads, and
//! says nothing of what it did not record.

use serde_json::json;

use super::*;

fn state() -> State {
    State {
        status: RunStatus::Succeeded,
        attempt: 1,
        started_at_ms: Some(1),
        finished_at_ms: Some(2),
        error: None,
        next_attempt_at_ms: None,
    }
}

#[test]
fn a_run_stored_before_verify_was_recorded_reads_without_it() {
    let id = RunId::from(7_u128);
    let old = br#"{"flow_id":"f","flow_version":"v","method":"POST","path":"/hooks/f/[redacted]","query":"","headers":[],"remote_addr":null,"received_at_ms":0,"dedupe_key":null}"#;
    let envelope: Envelope = decode("an older envelope", old).unwrap();
    assert_eq!(envelope.verify, None);
    assert_eq!(envelope.token, None);
    let shown = serde_json::to_value(state().to_run(id, &envelope, 0)).unwrap();
    assert!(shown.get("verify").is_none(), "{shown}");

    let verified = Envelope {
        verify: Some(VerifyUsed {
            scheme: "github".into(),
            secret: 1,
        }),
        ..envelope
    };
    let bytes = verified.encode(b"{}").unwrap();
    let back = Envelope::decode(id, &bytes).unwrap();
    assert_eq!(back.envelope.verify, verified.verify);
    assert_eq!(back.body, b"{}");
    let shown = serde_json::to_value(state().to_run(id, &back.envelope, 2)).unwrap();
    assert_eq!(shown["verify"], json!({"scheme": "github", "secret": 1}));
}
