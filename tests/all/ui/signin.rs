//! The admin token's sign-in form.

use weir_tests::browser::Browser;
use weir_tests::{FlowDir, Weir};

use super::{WAIT, runtime};

#[test]
fn with_an_admin_token_the_ui_asks_for_it_once_and_never_puts_it_in_a_url() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let token = "ui-test-admin-token-7d1e0c";
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--admin-token", token],
    );
    runtime().block_on(async {
        let browser = Browser::start("admin_token").await;
        browser.open(&format!("{}/flows", weir.admin)).await;
        let input = browser.wait("form.signin input#token", WAIT).await;
        browser.screenshot("signin").await;
        input.send_keys("not-the-token-at-all").await.unwrap();
        browser.click("form.signin button[type=submit]", WAIT).await;
        browser
            .wait_text("#signin-error", "not accepted", WAIT)
            .await;
        browser.screenshot("signin-wrong").await;
        let input = browser.wait("form.signin input#token", WAIT).await;
        input.clear().await.unwrap();
        input.send_keys(token).await.unwrap();
        browser.click("form.signin button[type=submit]", WAIT).await;
        browser
            .wait_text(".flow-card", "GitHub issues to Slack", WAIT)
            .await;
        // The event stream authenticates the same way.
        browser.wait(r#"#live[data-state="live"]"#, WAIT).await;
        browser.screenshot("signed-in").await;
        // Kept for the session: a reload does not ask again.
        browser.client.refresh().await.unwrap();
        browser
            .wait_text(".flow-card", "GitHub issues to Slack", WAIT)
            .await;
        let urls = browser.requested_urls().await;
        assert!(
            urls.iter().all(|u| !u.contains(token)),
            "the token is in a URL: {urls:?}"
        );
        browser.assert_only_origin(&weir.admin).await;
        browser.close().await;
    });
}
