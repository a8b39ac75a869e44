//! Issue 20 (items 3, 5 and parts of 12), as a user meets them: short HMAC keys refused at
//! load, `${ENV}` values masked out of what runs store and serve, dedupe keys that keep their
//! JSON type, case-insensitive `Authorization` schemes, and `.wasm` plugins kept in the flows
//! folder unless the server allows more.

use base64::Engine as _;
use serde_json::{Value, json};
use weir_tests::{FlowDir, Weir, post_json, post_with, weir_command};

const API_KEY: &str = "supersecretapikey123";

/// Item 3: every HMAC scheme refuses a key under 16 bytes (after decoding, for `whsec_`) when
/// the flow loads, with the file and line; `serve` keeps the flow out of service.
#[test]
fn short_hmac_keys_are_refused_at_load_with_file_and_line() {
    let flows = FlowDir::empty();
    let cases = [
        (
            "sw-empty",
            r#"{ scheme = "standard-webhooks", secret = "whsec_" }"#,
        ),
        (
            "sw-one",
            r#"{ scheme = "standard-webhooks", secret = "whsec_AA==" }"#,
        ),
        (
            "gh",
            r#"{ scheme = "github", secret = "${WEIR_TEST_SHORT}" }"#,
        ),
        ("stripe", r#"{ scheme = "stripe", secret = "whsec_short" }"#),
        ("slack", r#"{ scheme = "slack", secret = "0123456789" }"#),
        (
            "hmac",
            r#"{ scheme = "hmac", secret = "k", header = "x-s" }"#,
        ),
    ];
    for (id, verify) in cases {
        flows.write(
            &format!("{id}.toml"),
            &format!("name = \"{id}\"\n[webhook]\nverify = {verify}\n"),
        );
    }
    let out = weir_command()
        .arg("validate")
        .arg(flows.path())
        .env("WEIR_TEST_SHORT", "abc")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (id, _) in cases {
        let file = flows.path().join(format!("{id}.toml"));
        let line = stderr
            .lines()
            .find(|line| line.starts_with(&format!("{}:3:", file.display())))
            .unwrap_or_else(|| panic!("no error at {id}.toml line 3: {stderr}"));
        assert!(line.contains("at least 16 bytes"), "{line}");
    }
    assert!(stderr.contains("6 of 6 flow files have errors"), "{stderr}");

    // Served: the flow is in error and its webhook takes nothing.
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with_env(
        flows.path(),
        &data.path().join("weir.redb"),
        &[],
        &[("WEIR_TEST_SHORT", "abc")],
    );
    let flow = weir.flow("sw-one");
    assert_eq!(flow["status"], "error", "{flow:#}");
    assert_eq!(flow["errors"][0]["line"], 3, "{flow:#}");
    let answer = post_json(&weir.webhook_url("sw-one"), &json!({}));
    assert_eq!(answer.status, 404);
}

/// A flow that uses `API_KEY` in a template, hands the result to a filter that checks it in
/// full (so the step got the real value), and answers with it.
const SECRET_FLOWS: &[(&str, &str)] = &[
    (
        "passes.toml",
        r#"name = "passes"
[webhook]
respond = "result"
[[steps]]
id = "render"
plugin = "template"
input.who = "$.webhook.body.who"
config.template = "key ${API_KEY} for {{ who }}"
[[steps]]
id = "check"
plugin = "filter"
input = "$.steps.render.output"
config.equals = "key ${API_KEY} for ada"
"#,
    ),
    // A step whose error holds the value: the filter shows what it got.
    (
        "fails.toml",
        r#"name = "fails"
[[steps]]
id = "render"
plugin = "template"
input.who = "$.webhook.body.who"
config.template = "key ${API_KEY} for {{ who }}"
[[steps]]
id = "check"
plugin = "filter"
input = "$.steps.render.output"
config.equals = "something else"
"#,
    ),
    // The issue's reproduction: a filter that compares with the secret itself.
    (
        "guess.toml",
        r#"name = "guess"
[[steps]]
id = "check"
plugin = "filter"
input = "$.webhook.body.guess"
config = { equals = "${API_KEY}" }
"#,
    ),
];

/// Item 5: a flow's `${ENV}` values never appear in what a run stores or the API serves (step
/// input, output, error; the run's error; the result a waiting sender gets); they read
/// `[redacted:NAME]`. Steps still get the real values.
#[test]
fn env_values_are_masked_in_everything_a_run_stores_and_serves() {
    let flows = FlowDir::empty();
    for (name, source) in SECRET_FLOWS {
        flows.write(name, source);
    }
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with_env(
        flows.path(),
        &data.path().join("weir.redb"),
        &[],
        &[("API_KEY", API_KEY)],
    );
    let masked = "key [redacted:API_KEY] for ada";

    // The filter passed: the template's real output reached it. The sender gets it masked.
    let answer = post_json(&weir.webhook_url("passes"), &json!({"who": "ada"}));
    assert_eq!(
        answer.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json(), json!(masked));
    let passes = answer.header("x-weir-run-id").unwrap().to_owned();
    let run = weir.wait_run(&passes);
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(run["steps"][0]["output"], masked, "{run:#}");
    assert_eq!(run["steps"][1]["input"], masked, "{run:#}");
    assert_eq!(run["steps"][1]["output"], masked, "{run:#}");

    let fails = post_json(&weir.webhook_url("fails"), &json!({"who": "ada"})).json()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = weir.wait_run(&fails);
    assert_eq!(run["run"]["status"], "filtered", "{run:#}");
    let error = run["run"]["error"].as_str().unwrap();
    assert!(error.contains(masked), "{error}");
    let step_error = run["steps"][1]["error"]["message"].as_str().unwrap();
    assert!(step_error.contains(masked), "{step_error}");

    let guess = post_json(&weir.webhook_url("guess"), &json!({"guess": "guess"})).json()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(weir.wait_run(&guess)["run"]["status"], "filtered");

    // Nothing the API serves about any of these runs holds the value.
    let mut served = vec![weir.api("/api/runs").json()];
    for id in [&passes, &fails, &guess] {
        served.push(weir.api(&format!("/api/runs/{id}")).json());
        served.push(weir.api(&format!("/api/runs/{id}/payload")).json());
    }
    served.push(weir.api("/api/flows").json());
    for answer in served {
        assert!(!answer.to_string().contains(API_KEY), "{answer:#}");
    }
}

/// Item 12: a dedupe key keeps its JSON type: `1` and `"1"` are two deliveries.
#[test]
fn dedupe_keys_keep_their_json_type() {
    let flows = FlowDir::empty();
    flows.write(
        "events.toml",
        "name = \"events\"\n[webhook]\ndedupe = \"$.webhook.body.id\"\n",
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let url = weir.webhook_url("events");
    let send = |id: Value| {
        let answer = post_json(&url, &json!({ "id": id }));
        (answer.status, answer.json()["duplicate"].clone())
    };
    assert_eq!(send(json!(1)), (202, json!(false)));
    assert_eq!(send(json!("1")), (202, json!(false)), "\"1\" is not 1");
    assert_eq!(send(json!(true)), (202, json!(false)));
    assert_eq!(
        send(json!("true")),
        (202, json!(false)),
        "\"true\" is not true"
    );
    // Each is still deduped against itself.
    assert_eq!(send(json!(1)), (200, json!(true)));
    assert_eq!(send(json!("1")), (200, json!(true)));
    assert_eq!(weir.count_runs(), 4);
}

/// Item 12: `Authorization` scheme names are case-insensitive (RFC 7235), for `token`'s
/// bearer and for `basic`.
#[test]
fn authorization_scheme_names_are_case_insensitive() {
    let flows = FlowDir::empty();
    flows.write(
        "bearer.toml",
        "name = \"bearer\"\n[webhook]\nverify = { scheme = \"token\", token = \"${WEIR_TEST_TOKEN}\" }\n",
    );
    flows.write(
        "basic.toml",
        "name = \"basic\"\n[webhook]\nverify = { scheme = \"basic\", username = \"hook\", password = \"${WEIR_TEST_TOKEN}\" }\n",
    );
    let data = tempfile::tempdir().unwrap();
    let token = "a-shared-token-0123";
    let weir = Weir::start_with_env(
        flows.path(),
        &data.path().join("weir.redb"),
        &[],
        &[("WEIR_TEST_TOKEN", token)],
    );
    let post = |flow: &str, authorization: &str| {
        post_with(
            &weir.webhook_url(flow),
            "application/json",
            b"{}",
            &[("authorization", authorization)],
        )
        .status
    };
    for scheme in ["Bearer", "bearer", "BEARER"] {
        assert_eq!(
            post("bearer", &format!("{scheme} {token}")),
            202,
            "{scheme}"
        );
    }
    assert_eq!(post("bearer", &format!("bearer {token}x")), 401);
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("hook:{token}").as_bytes());
    for scheme in ["Basic", "basic", "BASIC"] {
        assert_eq!(
            post("basic", &format!("{scheme} {credentials}")),
            202,
            "{scheme}"
        );
    }
}

/// Item 12: a `.wasm` plugin outside the flows folder is refused at its `plugin` line, unless
/// the server is started with `--plugin-dir` naming its folder, or `--plugins-anywhere`.
#[test]
fn plugin_files_outside_the_flows_folder_are_refused_unless_allowed() {
    let outside = tempfile::tempdir().unwrap();
    let wasm = outside.path().join("echo.wasm");
    std::fs::copy(weir_tests::RAW_WASM, &wasm).unwrap();
    let flows = FlowDir::empty();
    flows.write(
        "outside.toml",
        &format!(
            "name = \"outside\"\n[[steps]]\nid = \"echo\"\nplugin = \"{}\"\n",
            wasm.display()
        ),
    );
    let validate = |extra: &[&str]| {
        weir_command()
            .arg("validate")
            .arg(flows.path())
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = validate(&[]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let file = flows.path().join("outside.toml");
    assert!(
        stderr.contains(&format!("{}:4:10: error: in step 'echo'", file.display()))
            && stderr.contains("is outside the flows folder"),
        "{stderr}"
    );
    for allowed in [
        vec!["--plugins-anywhere"],
        vec!["--plugin-dir", outside.path().to_str().unwrap()],
    ] {
        let out = validate(&allowed);
        assert!(
            out.status.success(),
            "{allowed:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A relative path that climbs out is refused the same way.
    flows.write(
        "climbs.toml",
        "name = \"climbs\"\n[[steps]]\nid = \"echo\"\nplugin = \"../x/echo.wasm\"\n",
    );
    let out = validate(&["--plugin-dir", outside.path().to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("climbs.toml:4:10: error: in step 'echo': plugin file `../x/echo.wasm` is outside the flows folder"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(flows.path().join("climbs.toml")).unwrap();

    // Served: the flow is in error until the server allows the folder.
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    assert_eq!(weir.flow("outside")["status"], "error");
    drop(weir);
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--plugins-anywhere"],
    );
    assert_eq!(weir.flow("outside")["status"], "ok");
}

/// Item 9: beside `--concurrency`, executing runs hold at most `--payload-budget` bytes of
/// request body: two runs whose bodies do not fit in it together run one after the other,
/// however many may run at once.
#[test]
fn runs_whose_bodies_exceed_the_payload_budget_together_run_one_at_a_time() {
    let flows = FlowDir::empty();
    flows.write(
        "slow.toml",
        &format!(
            "name = \"slow\"\n[[steps]]\nid = \"spin\"\nplugin = \"{}\"\n\
             config = {{ mode = \"spin\", ms = 400 }}\n",
            weir_tests::HOSTILE_WASM
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--payload-budget", "48 KiB", "--concurrency", "8"],
    );
    let url = weir.webhook_url("slow");
    let body = json!({ "pad": "x".repeat(30 << 10) });
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let answer = post_json(&url, &body);
            assert_eq!(answer.status, 202);
            answer.json()["run_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let runs: Vec<Value> = ids
        .iter()
        .map(|id| weir.wait_run(id)["run"].clone())
        .collect();
    for run in &runs {
        assert_eq!(run["status"], "succeeded", "{run:#}");
    }
    let at = |run: &Value, field: &str| run[field].as_str().unwrap().to_owned();
    // RFC 3339 UTC with milliseconds compares as text.
    let (first, second) = if at(&runs[0], "started_at") <= at(&runs[1], "started_at") {
        (&runs[0], &runs[1])
    } else {
        (&runs[1], &runs[0])
    };
    assert!(
        at(second, "started_at") >= at(first, "finished_at"),
        "the second run started before the first finished: {first:#} {second:#}"
    );
}
