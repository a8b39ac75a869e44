//! `GET /api/openapi.json`: an OpenAPI 3.1 document of every admin route. Each route the
//! admin router declares is in it, and each operation in it answers as it says: called with
//! the token and real ids, without the token, with ids that do not exist and with a bad value
//! for each query parameter, the status is one the document lists, under a listed content
//! type.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use serde_json::{Value, json};
use weir_tests::{FlowDir, Weir, get_with, post_json, post_with, repo_root, wait_for};

const TOKEN: &str = "openapi-token-0123456789";

fn authorized() -> Vec<(&'static str, &'static str)> {
    vec![("authorization", "Bearer openapi-token-0123456789")]
}

/// The paths the admin router serves under `/api` and `/metrics`, as templates with `{}` for
/// each parameter, read from its `warp::path!` declarations (the UI's files and the gateway's
/// hooks are not the API).
fn router_paths() -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let http = repo_root().join("engine/src/http");
    let admin = std::fs::read_dir(http.join("admin")).expect("the admin router's sources");
    let mut files: Vec<_> = admin.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.push(http.join("ui.rs"));
    for file in files {
        let source = std::fs::read_to_string(&file).expect("the admin router's source");
        for declared in source.split("warp::path!(").skip(1) {
            let inside = declared.split(')').next().unwrap_or_default();
            let segments: Vec<String> = inside
                .split('/')
                .map(str::trim)
                .map(|segment| match segment.strip_prefix('"') {
                    Some(literal) => literal.trim_end_matches('"').to_owned(),
                    None => "{}".to_owned(),
                })
                .collect();
            if matches!(segments[0].as_str(), "api" | "metrics") {
                paths.insert(format!("/{}", segments.join("/")));
            }
        }
    }
    paths
}

/// `/api/runs/{id}` → `/api/runs/{}`.
fn template(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The status line's code of a GET that may never end (server-sent events), without reading
/// its body.
fn status_only(admin: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    let address = admin.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the admin API");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("a status line");
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {line:?}"))
}

struct Call<'a> {
    operation: &'a Value,
    what: String,
}

impl Call<'_> {
    /// Checks that `status` and `content_type` are ones the operation lists.
    fn answered(&self, status: u16, content_type: Option<&str>) {
        let responses = &self.operation["responses"];
        let listed = &responses[status.to_string()];
        assert!(
            listed.is_object(),
            "{}: {status} is not among the listed answers {:?}",
            self.what,
            responses.as_object().map(|r| r.keys().collect::<Vec<_>>())
        );
        if let (Some(content), Some(given)) = (listed["content"].as_object(), content_type) {
            let given = given.split(';').next().unwrap_or_default().trim();
            assert!(
                content
                    .keys()
                    .any(|listed| listed.split(';').next().unwrap_or_default().trim() == given),
                "{}: {status} came as {given}, not one of {:?}",
                self.what,
                content.keys().collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn every_admin_route_is_documented_and_answers_as_the_document_says() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--admin-token", TOKEN],
    );
    let answer = get_with(&format!("{}/api/openapi.json", weir.admin), &authorized());
    assert_eq!(answer.status, 200);
    let doc = answer.json();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(|path| template(path))
        .collect();
    let served = router_paths();
    assert!(
        served.len() >= 9,
        "the router's paths were read: {served:?}"
    );
    let missing: Vec<_> = served.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");

    // A run to point the run routes at.
    let flow = get_with(
        &format!("{}/api/flows/github-issues", weir.admin),
        &authorized(),
    )
    .json();
    let hook = flow["webhook_url"].as_str().expect("a webhook URL");
    let body = json!({"action": "opened", "issue": {"number": 1, "title": "t", "html_url": "u", "user": {"login": "l"}}});
    let run_id = post_json(hook, &body).json()["run_id"]
        .as_str()
        .expect("a run id")
        .to_owned();
    wait_for(Duration::from_secs(60), "the run to end", || {
        let run = get_with(&format!("{}/api/runs/{run_id}", weir.admin), &authorized()).json();
        (run["run"]["status"] == "succeeded").then_some(())
    });

    let mut calls = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            assert!(
                method == "get" || method == "post",
                "{path}: only GET and POST routes so far; call {method} here"
            );
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let fill = |flow: &str, run: &str| {
                if path.starts_with("/api/flows/") {
                    path.replace("{id}", flow)
                } else {
                    path.replace("{id}", run)
                }
            };
            let streams = operation["responses"]["200"]["content"]
                .get("text/event-stream")
                .is_some();
            let mut call = |url_path: &str, headers: &[(&str, &str)], what: &str| {
                let call = Call {
                    operation,
                    what: format!("{} {url_path} ({what})", method.to_uppercase()),
                };
                calls += 1;
                if method == "post" {
                    let answer = post_with(
                        &format!("{}{url_path}", weir.admin),
                        "application/json",
                        b"",
                        headers,
                    );
                    call.answered(answer.status, answer.header("content-type"));
                    answer.status
                } else if streams {
                    let status = status_only(&weir.admin, url_path, headers);
                    call.answered(status, None);
                    status
                } else {
                    let answer = get_with(&format!("{}{url_path}", weir.admin), headers);
                    call.answered(answer.status, answer.header("content-type"));
                    answer.status
                }
            };
            let real = fill("github-issues", &run_id);
            let status = call(&real, &authorized(), "real ids");
            assert!((200..300).contains(&status), "{method} {real}: {status}");
            assert_eq!(call(&real, &[], "no token"), 401);
            if path.contains('{') {
                let absent = fill("no-such-flow", "00000000000000000000000000");
                assert_eq!(call(&absent, &authorized(), "ids that do not exist"), 404);
                let malformed = fill("no-such-flow", "not-a-run-id");
                call(&malformed, &authorized(), "a malformed id");
            }
            for parameter in parameters.iter().filter(|p| p["in"] == "query") {
                let name = parameter["name"].as_str().expect("a name");
                call(
                    &format!("{real}?{name}=not-a-valid-value"),
                    &authorized(),
                    "a bad query value",
                );
            }
        }
    }
    assert!(calls >= 9 * 2, "{calls} calls");
}
