//! Who may send: `allow_ips` and forwarding headers from a trusted proxy.

use weir_tests::{FlowDir, Weir, post_with};

use super::ECHO_STEP;

/// `allow_ips` admits only its networks; forwarding headers count only from a
/// `--trusted-proxy`, and then name the sender that is checked and stored.
#[test]
fn allow_ips_with_and_without_a_trusted_proxy() {
    let flows = FlowDir::empty();
    flows.write(
        "local.toml",
        &format!(
            "name = \"local\"\n[webhook]\nallow_ips = [\"127.0.0.0/8\", \"::1\"]\n{ECHO_STEP}"
        ),
    );
    flows.write(
        "partner.toml",
        &format!("name = \"partner\"\n[webhook]\nallow_ips = [\"192.0.2.0/24\"]\n{ECHO_STEP}"),
    );
    let forwarded = |ip: &str| [("x-forwarded-for", ip.to_owned())];
    let post = |weir: &Weir, flow: &str, headers: &[(&str, String)]| {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        post_with(&weir.webhook_url(flow), "application/json", b"{}", &headers)
    };

    let data = tempfile::tempdir().unwrap();
    let direct = Weir::start(flows.path(), &data.path().join("direct.redb"));
    assert_eq!(post(&direct, "local", &[]).status, 202);
    let refused = post(&direct, "partner", &[]);
    assert_eq!(refused.status, 403);
    assert!(
        String::from_utf8_lossy(&refused.body)
            .contains("127.0.0.1 is not among this flow's allow_ips"),
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    // A forged header from an untrusted peer changes nothing.
    assert_eq!(
        post(&direct, "partner", &forwarded("192.0.2.7")).status,
        403
    );

    let proxied = Weir::start_with(
        flows.path(),
        &data.path().join("proxied.redb"),
        &["--trusted-proxy", "127.0.0.1"],
    );
    let answer = post(&proxied, "partner", &forwarded("198.51.100.1, 192.0.2.7"));
    assert_eq!(
        answer.status,
        202,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let id = answer.json()["run_id"].as_str().unwrap().to_owned();
    let payload = proxied.api(&format!("/api/runs/{id}/payload")).json();
    assert_eq!(payload["remote_addr"], "192.0.2.7");
    assert_eq!(
        post(&proxied, "local", &forwarded("198.51.100.1")).status,
        403
    );
    // Through the proxy without the header, the sender is unknown.
    assert_eq!(post(&proxied, "partner", &[]).status, 403);
    assert_eq!(direct.count_runs() + proxied.count_runs(), 2);
}
