//! The example flows in `flows/`: they load without environment and map what their services send.

use super::*;

const EXAMPLES: &[(&str, &str)] = &[
    (
        "flows/github-issues.toml",
        include_str!("../../../../flows/github-issues.toml"),
    ),
    (
        "flows/stripe-payments.toml",
        include_str!("../../../../flows/stripe-payments.toml"),
    ),
    (
        "flows/contact-form.toml",
        include_str!("../../../../flows/contact-form.toml"),
    ),
];

fn example(name: &str) -> Flow {
    let (path, source) = EXAMPLES
        .iter()
        .find(|(path, _)| path.contains(name))
        .expect("an example flow");
    parse_flow(Path::new(path), source, &|_| None, &builtin)
        .unwrap_or_else(|err| panic!("{path} should load:\n{err}"))
}

#[test]
fn example_flows_load_without_environment() {
    for (path, _) in EXAMPLES {
        let stem = Path::new(path)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let flow = example(stem);
        assert_eq!(flow.id.as_str(), stem);
        assert!(!flow.steps.is_empty());
    }
}

#[test]
fn github_example_maps_an_issue_event() {
    let flow = example("github-issues");
    let ctx = context(
        json!({"action": "opened", "issue": {"number": 42, "title": "Crash on start",
               "html_url": "https://github.com/acme/app/issues/42", "user": {"login": "octocat"}}}),
        &[("message", json!("New issue #42"))],
    );
    let inputs: Vec<Value> = flow
        .steps
        .iter()
        .map(|step| step.input.evaluate(&ctx).unwrap())
        .collect();
    assert_eq!(
        inputs,
        vec![
            json!("opened"),
            json!({"number": 42, "title": "Crash on start", "user": "octocat",
                   "url": "https://github.com/acme/app/issues/42"}),
            json!({"text": "New issue #42", "channel": "#issues"}),
        ]
    );
    assert_eq!(flow.steps[0].config, json!({"equals": "opened"}));
}

#[test]
fn stripe_example_defaults_the_email() {
    let flow = example("stripe-payments");
    let ctx = context(
        json!({"type": "payment_intent.succeeded", "data": {"object": {
            "id": "pi_1", "amount": 2500, "currency": "eur", "customer": "cus_42"}}}),
        &[],
    );
    assert_eq!(
        flow.steps[1].input.evaluate(&ctx).unwrap(),
        json!({"id": "pi_1", "amount": 2500, "currency": "eur", "customer": "cus_42",
               "email": "no e-mail on file"})
    );
    assert_eq!(flow.webhook.max_body, 256 * 1024);
}

#[test]
fn contact_form_example_maps_form_fields() {
    let flow = example("contact-form");
    let ctx = context(
        json!({"email": "ada@example.com", "message": "Do you ship to Mars?"}),
        &[],
    );
    assert_eq!(
        flow.steps[0].input.evaluate(&ctx).unwrap(),
        json!({"name": "anonymous", "email": "ada@example.com", "message": "Do you ship to Mars?"})
    );
    let err = flow.steps[0]
        .input
        .evaluate(&context(json!({"email": "a@b.c"}), &[]))
        .unwrap_err();
    assert!(err.to_string().contains("input.message"), "{err}");
}
