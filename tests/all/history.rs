//! Run history through the admin API: time and JSONPath filters with a bounded scan, flow
//! stats, replay (one run, in bulk, and from the command line), and URL token rotation.

use std::time::Duration;

use serde_json::{Value, json};
use weir_tests::{Answer, FlowDir, Weir, post_json, post_with, wait_for, weir_command};

const RELOAD: Duration = Duration::from_secs(10);

/// A flow whose one step maps `$.webhook.body.<field>`: a body without it fails the run.
fn mapping_flow(field: &str) -> String {
    format!(
        "name = \"mapping\"\n[[steps]]\nid = \"shape\"\nplugin = \"transform\"\ninput.value = \"$.webhook.body.{field}\"\n"
    )
}

fn post(weir: &Weir, path_and_query: &str) -> Answer {
    post_with(
        &format!("{}{path_and_query}", weir.admin),
        "application/json",
        b"",
        &[],
    )
}

fn ids(page: &Value) -> Vec<String> {
    page["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|run| run["id"].as_str().expect("an id").to_owned())
        .collect()
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[test]
fn runs_filter_by_time_and_by_a_jsonpath_over_the_webhook_with_a_bounded_scan() {
    let flows = FlowDir::empty();
    flows.write("events.toml", &mapping_flow("action"));
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let url = weir.webhook_url("events");
    // Oldest first: opened, closed, opened, closed, opened, closed.
    let sent: Vec<String> = (0..6)
        .map(|n| {
            let action = if n % 2 == 0 { "opened" } else { "closed" };
            post_json(&url, &json!({ "action": action, "n": n })).run_id()
        })
        .collect();
    for id in &sent {
        assert_eq!(weir.wait_run(id)["run"]["status"], "succeeded");
    }
    let opened: Vec<String> = [4, 2, 0].iter().map(|&n| sent[n].clone()).collect();

    // q: only the runs whose webhook it selects something in, newest first.
    let q = encode("$.webhook.body[?@.action=='opened']");
    let page = weir.api(&format!("/api/runs?q={q}")).json();
    assert_eq!(ids(&page), opened, "{page:#}");
    assert_eq!(page["scanned"], 6);
    assert_eq!(page["truncated"], false);
    assert_eq!(page["next_cursor"], Value::Null);
    assert!(
        page["runs"][0].get("body").is_none() && page["runs"][0].get("steps").is_none(),
        "list rows carry no payload or steps: {:#}",
        page["runs"][0]
    );

    // A scan limit stops early and says so; its cursor goes on where the scan stopped.
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    let mut requests = 0;
    loop {
        let mut path = format!("/api/runs?q={q}&scan_limit=2");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = weir.api(&path).json();
        requests += 1;
        assert!(page["scanned"].as_u64().unwrap() <= 2, "{page:#}");
        found.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(page["truncated"], true, "{page:#}");
                cursor = Some(next.to_owned());
            }
            None => break,
        }
        assert!(requests < 10, "the scan goes on forever");
    }
    assert_eq!(found, opened);
    assert!(requests >= 3, "six runs at two a request: {requests}");

    // A query matching nothing, and a bad one.
    let none = weir
        .api(&format!(
            "/api/runs?q={}",
            encode("$.webhook.body[?@.action=='merged']")
        ))
        .json();
    assert_eq!(ids(&none), Vec::<String>::new());
    let bad = weir.api(&format!("/api/runs?q={}", encode("webhook.body")));
    assert_eq!(bad.status, 400);
    assert!(String::from_utf8_lossy(&bad.body).contains("q is not a JSONPath"));

    // since/until: an age, or an RFC 3339 time, inclusive.
    assert_eq!(ids(&weir.api("/api/runs?since=1h").json()).len(), 6);
    assert_eq!(ids(&weir.api("/api/runs?until=1h").json()).len(), 0);
    // Windows go by the time a run was stored, which is at or just after its received_at:
    // each run below was stored before the next one was sent.
    let run = |id: &str| weir.api(&format!("/api/runs/{id}")).json()["run"].clone();
    let middle = run(&sent[3])["received_at"].as_str().unwrap().to_owned();
    let since = ids(&weir.api(&format!("/api/runs?since={middle}")).json());
    assert!(sent[3..].iter().all(|id| since.contains(id)), "{since:?}");
    let until = weir.api(&format!("/api/runs?until={middle}")).json();
    assert!(
        sent[..3].iter().all(|id| ids(&until).contains(id)),
        "{until:#}"
    );
    for row in until["runs"].as_array().unwrap() {
        assert!(row["received_at"].as_str().unwrap() <= middle.as_str());
    }
    assert!(!ids(&until).contains(&sent[5]));
    // Combined with a status and a flow, and paged by cursor.
    let page = weir
        .api("/api/runs?flow=events&status=succeeded&since=1h&limit=4")
        .json();
    assert_eq!(
        ids(&page),
        sent[2..].iter().rev().cloned().collect::<Vec<_>>()
    );
    let next = page["next_cursor"].as_str().expect("a second page");
    let rest = weir
        .api(&format!(
            "/api/runs?flow=events&status=succeeded&since=1h&limit=4&cursor={next}"
        ))
        .json();
    assert_eq!(ids(&rest), vec![sent[1].clone(), sent[0].clone()]);

    for (query, name) in [
        ("since=yesterday", "since"),
        ("until=2026-13-45T00:00:00Z", "until"),
    ] {
        let answer = weir.api(&format!("/api/runs?{query}"));
        assert_eq!(answer.status, 400, "{query}");
        let message = answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.starts_with(name), "{query}: {message}");
    }
    assert_eq!(weir.api("/api/runs?scan_limit=0").status, 400);

    // Stats: counts by status and durations over the last hour and day.
    let failing = post_json(&url, &json!({ "no": "action" })).run_id();
    assert_eq!(weir.wait_run(&failing)["run"]["status"], "failed");
    let stats = weir.api("/api/flows/events/stats").json();
    for window in ["last_hour", "last_day"] {
        assert_eq!(stats[window]["counts"]["succeeded"], 6, "{stats:#}");
        assert_eq!(stats[window]["counts"]["failed"], 1, "{stats:#}");
        let (p50, p95) = (&stats[window]["p50_ms"], &stats[window]["p95_ms"]);
        assert!(p50.as_u64().unwrap() <= p95.as_u64().unwrap(), "{stats:#}");
    }
    assert_eq!(weir.api("/api/flows/no-such-flow/stats").status, 404);
}

#[test]
fn a_failed_run_replays_after_its_flow_is_fixed_and_both_runs_link() {
    let flows = FlowDir::empty();
    flows.write("mapping.toml", &mapping_flow("title"));
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let url = weir.webhook_url("mapping");
    let failed = post_json(&url, &json!({ "name": "no title here" })).run_id();
    let first = weir.wait_run(&failed);
    assert_eq!(first["run"]["status"], "failed");
    assert_eq!(first["run"]["token"], "current");
    let original_version = first["run"]["flow_version"].clone();

    // The fix: map the field the sender does send.
    flows.write("mapping.toml", &mapping_flow("name"));
    wait_for(RELOAD, "the fixed flow to load", || {
        (weir.flow("mapping")["version"] != original_version).then_some(())
    });
    let answer = post(&weir, &format!("/api/runs/{failed}/replay"));
    assert_eq!(
        answer.status,
        202,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    let replay = answer.run_id();
    assert_eq!(answer.json()["replay_of"], failed.as_str());
    let replayed = weir.wait_run(&replay);
    assert_eq!(replayed["run"]["status"], "succeeded", "{replayed:#}");
    assert_eq!(replayed["run"]["replay_of"], failed.as_str());
    assert_eq!(replayed["run"]["token"], Value::Null);
    assert_ne!(replayed["run"]["flow_version"], original_version);
    assert_eq!(
        replayed["steps"][0]["output"],
        json!({ "value": "no title here" })
    );
    // The same request: body, headers and path.
    let payload = |id: &str| weir.api(&format!("/api/runs/{id}/payload")).json();
    let (before, after) = (payload(&failed), payload(&replay));
    for field in ["body", "headers", "path", "method", "query"] {
        assert_eq!(before[field], after[field], "{field}");
    }
    let old = weir.api(&format!("/api/runs/{failed}")).json();
    assert_eq!(old["replays"], json!([replay]));
    assert_eq!(old["run"]["replay_of"], Value::Null);

    // On the version the run ran, it fails again.
    let again = post(
        &weir,
        &format!("/api/runs/{failed}/replay?version=original"),
    )
    .run_id();
    let again = weir.wait_run(&again);
    assert_eq!(again["run"]["status"], "failed");
    assert_eq!(again["run"]["flow_version"], original_version);
    assert_eq!(
        weir.api(&format!("/api/runs/{failed}")).json()["replays"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Bad requests.
    assert_eq!(
        post(&weir, "/api/runs/00000000000000000000000000/replay").status,
        404
    );
    assert_eq!(post(&weir, "/api/runs/not-a-run/replay").status, 400);
    assert_eq!(
        post(&weir, &format!("/api/runs/{failed}/replay?version=newest")).status,
        400
    );

    // In bulk: the failed runs of the flow (the first one and its failing replay).
    let dry = post(
        &weir,
        "/api/runs/replay?flow=mapping&status=failed&since=1h&dry_run=true",
    );
    assert_eq!(dry.status, 200, "{:?}", String::from_utf8_lossy(&dry.body));
    let dry = dry.json();
    assert_eq!(dry["count"], 2, "{dry:#}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(weir.count_runs(), 3, "a dry run starts nothing");
    let bulk = post(&weir, "/api/runs/replay?flow=mapping&status=failed&max=1").json();
    assert_eq!(bulk["count"], 1, "{bulk:#}");
    let new: Vec<String> = bulk["run_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(new.len(), 1);
    assert_eq!(weir.wait_run(&new[0])["run"]["status"], "succeeded");
    assert_eq!(bulk["replays"][0]["run_id"], new[0].as_str());
    assert_eq!(post(&weir, "/api/runs/replay?max=1001").status, 400);
    assert_eq!(post(&weir, "/api/runs/replay?limit=5").status, 400);

    // The flow gone: 409, and nothing started.
    std::fs::remove_file(flows.path().join("mapping.toml")).unwrap();
    wait_for(RELOAD, "the flow to be removed", || {
        (weir.api("/api/flows/mapping").status == 404).then_some(())
    });
    let gone = post(&weir, &format!("/api/runs/{failed}/replay"));
    assert_eq!(gone.status, 409);
    assert!(
        gone.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("flow 'mapping' is gone")
    );
    assert_eq!(post(&weir, "/api/runs/replay?status=failed").status, 409);
    assert_eq!(weir.count_runs(), 4);
}

#[test]
fn the_command_line_replays_and_rotates_through_the_admin_api() {
    let flows = FlowDir::empty();
    flows.write("mapping.toml", &mapping_flow("title"));
    let data = tempfile::tempdir().unwrap();
    let token = "a-long-enough-admin-token-for-the-cli";
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--admin-token", token],
    );
    let hook = weir_tests::get_with(
        &format!("{}/api/flows/mapping", weir.admin),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .json()["webhook_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = post_json(&hook, &json!({ "name": "x" })).run_id();
    let cli = |args: &[&str]| {
        let output = weir_command()
            .args(args)
            .args(["--admin", &weir.admin])
            .env("WEIR_ADMIN_TOKEN", token)
            .output()
            .expect("weir runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    wait_for(Duration::from_secs(60), "the run to fail", || {
        let (_, out, _) = cli(&[
            "replay",
            "--flow",
            "mapping",
            "--status",
            "failed",
            "--dry-run",
        ]);
        (out.trim() == failed).then_some(())
    });
    let (code, out, err) = cli(&[
        "replay",
        "--flow",
        "mapping",
        "--status",
        "failed",
        "--since",
        "1h",
        "--dry-run",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), failed);
    assert!(err.contains("1 runs would be replayed"), "{err}");

    let (code, out, err) = cli(&["replay", &failed]);
    assert_eq!(code, Some(0), "{err}");
    let replay = out.trim().to_owned();
    assert_eq!(replay.len(), 26, "a run id: {out}");

    let (code, out, err) = cli(&["replay", "--flow", "mapping", "--max", "5"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");

    // Errors: the API's message and a non-zero exit.
    let (code, _, err) = cli(&["replay", "00000000000000000000000000"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("404") && err.contains("no run"), "{err}");
    let output = weir_command()
        .args(["replay", &failed, "--admin", &weir.admin])
        .env_remove("WEIR_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("401"));

    let (code, out, err) = cli(&["token", "rotate", "mapping", "--overlap", "0s"]);
    assert_eq!(code, Some(0), "{err}");
    let new_url = out.trim();
    assert!(
        new_url.contains("/hooks/mapping/") && new_url != hook,
        "{out}"
    );
    assert_eq!(
        post_json(&hook, &json!({})).status,
        404,
        "overlap 0s ends the old URL"
    );
    assert_eq!(post_json(new_url, &json!({ "title": "t" })).status, 202);
    let (code, _, err) = cli(&["token", "rotate", "no-such-flow"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no flow"), "{err}");
}

#[test]
fn a_rotated_token_works_during_its_overlap_and_gets_404_after_it() {
    let flows = FlowDir::empty();
    flows.write("mapping.toml", &mapping_flow("title"));
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let old = weir.webhook_url("mapping");

    let rotated = post(&weir, "/api/flows/mapping/rotate-token?overlap=1h");
    assert_eq!(
        rotated.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&rotated.body)
    );
    let rotated = rotated.json();
    let new = rotated["webhook_url"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(weir.webhook_url("mapping"), new);
    let expires = rotated["previous_expires_at"].as_str().unwrap().to_owned();
    assert!(expires.ends_with('Z'), "{expires}");

    // During the overlap both work, and each run records which it came through.
    let through_new = post_json(&new, &json!({ "title": "new" })).run_id();
    let through_old = post_json(&old, &json!({ "title": "old" })).run_id();
    assert_eq!(weir.wait_run(&through_new)["run"]["token"], "current");
    assert_eq!(weir.wait_run(&through_old)["run"]["token"], "previous");
    let listed = weir.api("/api/runs?flow=mapping").json();
    assert_eq!(listed["runs"][0]["token"], "previous", "{listed:#}");

    // The rotation is kept across a restart (SIGKILL), overlap included.
    let path = |url: &str| url[url.find("/hooks/").expect("a hook URL")..].to_owned();
    let (old_path, new_path) = (path(&old), path(&new));
    weir.kill();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let base = weir.webhook.trim_end_matches('/').to_owned();
    let (old, new) = (format!("{base}{old_path}"), format!("{base}{new_path}"));
    assert_eq!(weir.webhook_url("mapping"), new);
    let after_restart = post_json(&old, &json!({ "title": "old again" })).run_id();
    assert_eq!(weir.wait_run(&after_restart)["run"]["token"], "previous");

    // Rotated again with a short overlap: the token before it is out at once, the one it
    // replaces works until the overlap ends, then gets the same 404 as any wrong token.
    let rotated = post(&weir, "/api/flows/mapping/rotate-token?overlap=2s").json();
    let newest = rotated["webhook_url"].as_str().unwrap().to_owned();
    assert_eq!(post_json(&old, &json!({ "title": "x" })).status, 404);
    assert_eq!(post_json(&newest, &json!({ "title": "x" })).status, 202);
    wait_for(Duration::from_secs(30), "the overlap to end", || {
        (post_json(&new, &json!({ "title": "late" })).status == 404).then_some(())
    });
    let unknown = post_json(
        &format!(
            "{}/hooks/mapping/not-a-token",
            weir.webhook.trim_end_matches('/')
        ),
        &json!({}),
    );
    let late = post_json(&new, &json!({}));
    assert_eq!((late.status, late.body), (unknown.status, unknown.body));
    assert_eq!(post_json(&newest, &json!({ "title": "still" })).status, 202);

    // No overlap: the previous URL ends at once.
    let rotated = post(&weir, "/api/flows/mapping/rotate-token?overlap=0s").json();
    let last = rotated["webhook_url"].as_str().unwrap().to_owned();
    assert_eq!(post_json(&newest, &json!({ "title": "x" })).status, 404);
    assert_eq!(post_json(&last, &json!({ "title": "x" })).status, 202);

    assert_eq!(
        post(&weir, "/api/flows/no-such-flow/rotate-token").status,
        404
    );
    assert_eq!(
        post(&weir, "/api/flows/mapping/rotate-token?overlap=soon").status,
        400
    );
    assert_eq!(
        post(&weir, "/api/flows/mapping/rotate-token?after=1h").status,
        400
    );
}
