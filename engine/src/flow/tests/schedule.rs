//! `concurrency` and `order_by`.

use super::*;

#[test]
fn concurrency_and_order_by_load_and_default_to_none() {
    let flow = load(MINIMAL);
    assert_eq!((flow.concurrency, flow.order_by.is_none()), (None, true));
    let flow = load(&format!(
        "concurrency = 3\norder_by = \"$.webhook.body.customer\"\n{MINIMAL}"
    ));
    assert_eq!(flow.concurrency, Some(3));
    let order_by = flow.order_by.expect("order_by");
    assert_eq!(order_by.as_str(), "$.webhook.body.customer");
    let webhook = json!({"webhook": {"body": {"customer": "acme"}}});
    assert_eq!(order_by.select(&webhook), vec![&json!("acme")]);
}

#[test]
fn bad_concurrency_and_order_by_are_located() {
    assert_eq!(
        errors("name = \"x\"\nconcurrency = 0\n"),
        vec![
            "2:15: `concurrency` must be from 1 to 1048576 (runs of this flow executing at once), found 0"
        ]
    );
    assert_eq!(
        errors("name = \"x\"\nconcurrency = -2\n"),
        vec![
            "2:15: `concurrency` must be from 1 to 1048576 (runs of this flow executing at once), found -2"
        ]
    );
    assert_eq!(
        errors("name = \"x\"\nconcurrency = \"4\"\n"),
        vec![
            "2:15: `concurrency` must be a whole number of runs, such as `concurrency = 4`, found string"
        ]
    );
    assert_eq!(
        errors("name = \"x\"\norder_by = \"customer\"\n"),
        vec![
            "2:12: `order_by` must be a JSONPath query starting with `$.webhook`, such as \
             \"$.webhook.body.customer\""
        ]
    );
    assert_eq!(
        errors("name = \"x\"\norder_by = \"$.webhook.body.items[*].id\"\n"),
        vec![
            "2:12: `order_by` must select at most one value (names and indexes only), \
             and `$.webhook.body.items[*].id` can select several"
        ]
    );
    assert_eq!(
        errors(&format!("order_by = \"$.steps.only.output\"\n{MINIMAL}")),
        vec![
            "1:12: `order_by` is read when the webhook arrives, before any step runs: \
             `$.steps.only.output` must start with `$.webhook`"
        ]
    );
}
