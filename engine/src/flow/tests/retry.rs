//! A step's retry keys and the flow's `on_failure`.

use super::*;

#[test]
fn retry_keys_load_with_their_defaults() {
    let flow = load(
        r#"
name = "Flaky"
on_failure = "alerts"

[[steps]]
id = "call"
plugin = "transform"
retries = 4
backoff = "2s"
jitter = "20%"
retry_on_trap = true

[[steps]]
id = "after"
plugin = "transform"
"#,
    );
    assert_eq!(flow.on_failure.as_ref().map(FlowId::as_str), Some("alerts"));
    let retry = &flow.steps[0].retry;
    assert_eq!(retry.retries, 4);
    assert_eq!(retry.backoff, Duration::from_secs(2));
    assert_eq!(retry.max_backoff, Duration::from_secs(300));
    assert_eq!(retry.jitter, Jitter::Percent(0.2));
    assert!(retry.on_trap);
    assert_eq!(flow.steps[1].retry, RetryPolicy::default());
    assert_eq!(flow.steps[1].retry.retries, 0);
}

#[test]
fn bad_retry_values_are_located() {
    let source = r#"name = "Flaky"
on_failure = "Not An Id"
[[steps]]
id = "a"
plugin = "transform"
retries = 21
[[steps]]
id = "b"
plugin = "transform"
retries = 2
backoff = "10s"
max_backoff = "1s"
jitter = "lots"
[[steps]]
id = "c"
plugin = "transform"
backoff = "1s"
"#;
    let errors = errors(source);
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(errors[0].starts_with("2:14: `on_failure` = \"Not An Id\" is not a flow id"));
    assert_eq!(
        errors[1],
        "6:11: in step 'a': `retries` must be a whole number from 0 to 20"
    );
    assert_eq!(
        errors[2],
        "12:15: in step 'b': `max_backoff` must not be shorter than `backoff`"
    );
    assert!(errors[3].starts_with("13:10: in step 'b': `jitter` = \"lots\" is not a jitter"));
    assert_eq!(
        errors[4],
        "17:11: in step 'c': `backoff` has no effect without `retries`: add `retries = 3`"
    );
}
