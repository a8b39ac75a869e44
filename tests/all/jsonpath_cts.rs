//! The JSONPath Compliance Test Suite (RFC 9535) run through `weir::flow::Query`, the query layer
//! that flow mappings use.
//!
//! Every case must pass except those in [`KNOWN_FAILURES`], each with the reason. The test also
//! fails when a listed case passes, so the list shrinks when the library improves and cannot
//! grow unnoticed. The suite is kept in the repository, `tests/data/jsonpath-cts.json` (the
//! jsonpath-standard/jsonpath-compliance-test-suite at commit 7be7c1f, 703 cases, BSD-2 licence
//! in `tests/data/jsonpath-cts.LICENSE`), so that a clone anywhere runs it; `WEIR_CTS_PATH`
//! points the test at another copy (a newer suite, say).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use serde_json::Value;
use weir::flow::Query;

/// Cases that jsonpath-rust 1.0.12 gets wrong, with the reason. Keep it honest: the test fails
/// when one of these starts to pass.
const KNOWN_FAILURES: &[(&str, &str)] = &[
    (
        "basic, descendant segment, multiple selectors",
        "jsonpath-rust applies each selector of `..[a,b]` to all descendants in turn (b,c,e,f) \
         instead of all selectors to each descendant in document order (b,e,c,f), RFC 9535 §2.5.2.2",
    ),
    (
        "basic, descendant segment, object traversal, multiple selectors",
        "same ordering bug as above: `$..['a','d']` groups results by selector, not by node",
    ),
    (
        "filter, nested",
        "jsonpath-rust evaluates a filter inside a filter's relative query (`$[?@[?@>1]]`) against \
         the wrong current node and selects nothing; `count(@[?...])` is wrong the same way",
    ),
];

/// Where the suite lives: `$WEIR_CTS_PATH`, or `tests/data/` in the repository.
fn suite_path() -> PathBuf {
    std::env::var_os("WEIR_CTS_PATH").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/data/jsonpath-cts.json"
            ))
        },
        PathBuf::from,
    )
}

/// What went wrong with one case, or `None` when it passed.
fn run_case(case: &Value) -> Option<String> {
    let selector = case["selector"].as_str()?;
    let parsed = Query::parse(selector);
    if case["invalid_selector"] == Value::Bool(true) {
        return parsed
            .is_ok()
            .then(|| "accepted an invalid selector".to_owned());
    }
    let query = match parsed {
        Ok(query) => query,
        Err(err) => return Some(format!("rejected a valid selector: {err}")),
    };
    let document = &case["document"];
    let actual: Vec<Value> = query.select(document).into_iter().cloned().collect();
    let allowed: Vec<&Value> = match (&case["result"], &case["results"]) {
        (Value::Array(_), _) => vec![&case["result"]],
        (_, Value::Array(results)) => results.iter().collect(),
        _ => return Some("case has neither result nor results".to_owned()),
    };
    let actual = Value::Array(actual);
    if allowed.iter().any(|expected| **expected == actual) {
        None
    } else {
        Some(format!(
            "selected {actual}, expected {}",
            allowed
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        ))
    }
}

#[test]
fn jsonpath_compliance_test_suite() {
    let path = suite_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let suite: Value = serde_json::from_str(&text).expect("the suite is JSON");
    let cases = suite["tests"]
        .as_array()
        .expect("the suite has a `tests` array");

    let mut passed = 0;
    let mut known = 0;
    let mut unexpected = Vec::new();
    let mut fixed = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("<unnamed>");
        let outcome = catch_unwind(AssertUnwindSafe(|| run_case(case)))
            .unwrap_or_else(|_| Some("panicked".to_owned()));
        let listed = KNOWN_FAILURES.iter().any(|(known, _)| *known == name);
        match (outcome, listed) {
            (None, false) => passed += 1,
            (None, true) => fixed.push(name.to_owned()),
            (Some(_), true) => known += 1,
            (Some(problem), false) => {
                unexpected.push(format!("{name}: {problem} (selector {})", case["selector"]))
            }
        }
    }
    let missing: Vec<&str> = KNOWN_FAILURES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !cases.iter().any(|case| case["name"] == *name))
        .collect();

    println!(
        "JSONPath CTS: {} cases, {passed} passed, {known} known failures, {} unexpected failures, {} listed but passing",
        cases.len(),
        unexpected.len(),
        fixed.len()
    );
    assert!(
        unexpected.is_empty(),
        "{} cases failed that are not in KNOWN_FAILURES:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        fixed.is_empty(),
        "these cases pass now; remove them from KNOWN_FAILURES:\n{}",
        fixed.join("\n")
    );
    assert!(
        missing.is_empty(),
        "KNOWN_FAILURES names cases the suite does not have:\n{}",
        missing.join("\n")
    );
}
