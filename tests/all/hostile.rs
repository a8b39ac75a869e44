//! Plugins that misbehave on purpose (tests/guests/hostile): each misdeed ends as the failure
//! it is, within its limit, and the host goes on serving the next call.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir::plugin::{CallContext, Limits, Plugin, StepCall, StepFailure};
use weir_tests::{HOSTILE_WASM, block_on, host, resident_memory};

mod world;

/// Tests that move hundreds of MiB through this process take turns, so the one that measures
/// the process's memory sees only its own.
static MEMORY_HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn hostile() -> Plugin {
    host()
        .load_file(std::path::Path::new(HOSTILE_WASM))
        .expect("the hostile guest loads")
}

fn call(mode: &str, target: &str, limits: Limits) -> StepCall {
    let config = json!({ "mode": mode, "target": target }).to_string();
    block_on(hostile().call(&CallContext::default(), r#"{"ping":1}"#, &config, &limits))
}

fn output(call: StepCall) -> Value {
    match call.result {
        Ok(v) => v,
        Err(e) => panic!("expected output, got {e}; logs: {:?}", call.logs),
    }
}

fn assert_next_call_works() {
    let echo = call("echo", "", Limits::default());
    assert_eq!(output(echo), json!({"ping": 1}));
}

#[test]
fn an_infinite_loop_times_out_within_a_second_of_its_deadline() {
    let limits = Limits {
        timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let started = Instant::now();
    let result = call("loop", "", limits).result;
    let elapsed = started.elapsed();
    assert_eq!(
        result,
        Err(StepFailure::Timeout {
            after: Duration::from_millis(500)
        })
    );
    assert!(
        elapsed >= Duration::from_millis(500),
        "stopped early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1500),
        "stopped late: {elapsed:?}"
    );
    assert_next_call_works();
}

#[test]
fn growing_memory_to_a_gibibyte_hits_the_memory_limit_and_memory_stays_bounded() {
    let _turn = MEMORY_HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let before = resident_memory();
    for _ in 0..3 {
        let result = call("grow", "", Limits::default()).result;
        match result {
            Err(StepFailure::MemoryLimit { limit, requested }) => {
                assert_eq!(limit, 64 << 20);
                assert!(requested > limit, "requested {requested}");
            }
            other => panic!("expected the memory limit, got {other:?}"),
        }
    }
    let grown = resident_memory().saturating_sub(before);
    assert!(
        grown < 256 << 20,
        "the process grew by {} MiB over three 1 GiB attempts",
        grown >> 20
    );
    assert_next_call_works();
}

#[test]
fn unbounded_recursion_is_a_stack_overflow() {
    assert_eq!(
        call("recurse", "", Limits::default()).result,
        Err(StepFailure::StackOverflow)
    );
    assert_next_call_works();
}

#[test]
fn a_panic_is_a_trap_with_its_message() {
    match call("panic", "", Limits::default()).result {
        Err(StepFailure::Panic { message }) => {
            assert!(
                message.contains("the hostile plugin panics on purpose"),
                "{message}"
            );
            assert!(message.contains("src/lib.rs"), "{message}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_next_call_works();
}

#[test]
fn a_step_error_keeps_its_kind_and_message() {
    let failure = call("error", "", Limits::default()).result.unwrap_err();
    assert_eq!(failure.kind(), "upstream");
    assert_eq!(failure.to_string(), "upstream: the upstream said no");
}

#[test]
fn files_are_out_of_reach() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "top secret").unwrap();
    let out = output(call(
        "read_file",
        &secret.path().display().to_string(),
        Limits::default(),
    ));
    assert!(out["read"]["Err"].is_string(), "{out}");
    assert!(out["list_root"]["Err"].is_string(), "{out}");
    assert!(out["write"]["Err"].is_string(), "{out}");
    assert!(!out.to_string().contains("top secret"));
    assert!(!std::path::Path::new("/tmp/weir-hostile-was-here").exists());
}

#[test]
fn the_environment_and_arguments_are_empty() {
    // The host is a `weir plugin run` process holding the variable: setting it in this
    // multi-threaded test process would be undefined behaviour.
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        json!({ "mode": "env", "target": "WEIR_TEST_SECRET_TOKEN" }).to_string(),
    )
    .unwrap();
    let run = weir_tests::weir_command()
        .args(["plugin", "run", HOSTILE_WASM, "--input", "-", "--config"])
        .arg(config.path())
        .env("WEIR_TEST_SECRET_TOKEN", "s3cr3t")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = run.stdin.as_ref().unwrap();
        stdin.write_all(br#"{"ping":1}"#).unwrap();
    }
    let mut run = run;
    drop(run.stdin.take());
    let finished = run.wait_with_output().unwrap();
    assert!(
        finished.status.success(),
        "{}",
        String::from_utf8_lossy(&finished.stderr)
    );
    let out: Value = serde_json::from_slice(&finished.stdout).unwrap();
    assert_eq!(out["vars"], json!([]), "{out}");
    assert_eq!(out["args"], json!([]), "{out}");
    assert!(out["target"]["Err"].is_string(), "{out}");
    assert!(!out.to_string().contains("s3cr3t"));
}

#[test]
fn sockets_cannot_be_opened() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let out = output(call("socket", &addr, Limits::default()));
    assert!(out["tcp"]["Err"].is_string(), "{out}");
    assert!(out["udp"]["Err"].is_string(), "{out}");
    assert!(out["dns"]["Err"].is_string(), "{out}");
    assert!(
        listener.accept().is_err(),
        "the guest reached the test's listener"
    );
}

#[test]
fn a_hundred_mebibyte_output_is_refused_by_the_cap() {
    let _turn = MEMORY_HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let limits = Limits {
        memory: 512 << 20,
        ..Limits::default()
    };
    match call("big_output", "", limits).result {
        Err(StepFailure::OutputTooLarge { size, cap }) => {
            assert!(size >= 100 << 20, "{size}");
            assert_eq!(cap, Limits::default().max_output);
        }
        other => panic!("expected the output cap, got {other:?}"),
    }
    assert_next_call_works();
}

#[test]
fn stdout_stderr_and_log_lines_are_captured_in_order() {
    let call = call("print", "", Limits::default());
    assert!(call.result.is_ok());
    let lines: Vec<(String, String)> = call
        .logs
        .iter()
        .map(|l| {
            (
                serde_json::to_value(l.level)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned(),
                l.message.clone(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            ("stdout".into(), "to stdout".into()),
            ("stderr".into(), "to stderr".into()),
            ("info".into(), "through the log import".into()),
        ]
    );
}

#[test]
fn a_log_flood_is_capped_and_counted() {
    // 200,000 host calls take seconds of CPU; on a machine busy with the rest of the suite
    // the default 10 s deadline is not what this test is about.
    let limits = Limits {
        timeout: Duration::from_secs(120),
        ..Limits::default()
    };
    let call = call("log_flood", "", limits);
    assert_eq!(call.result, Ok(json!("survived")));
    let kept: usize = call.logs.iter().map(|l| l.message.len()).sum();
    assert!(kept <= limits.max_logs + 200, "kept {kept} bytes of logs");
    let last = call.logs.last().unwrap();
    assert!(last.message.contains("log bytes dropped"), "{last:?}");
}

#[test]
fn a_file_that_is_not_a_component_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.wasm");
    std::fs::write(&path, b"\0asm not really").unwrap();
    let err = host().load_file(&path).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("not a valid Weir step component"), "{err}");
}

#[test]
fn a_compiled_plugin_is_cached_on_disk_so_a_restart_does_not_compile_again() {
    use weir::plugin::{HostConfig, PluginHost};
    let cache = tempfile::tempdir().unwrap();
    let config = HostConfig {
        cache_dir: Some(cache.path().to_owned()),
        no_pooling: false,
    };
    let first = PluginHost::new(config.clone()).unwrap();
    assert!(!first.load_builtin("transform").unwrap().from_cache());
    let files: Vec<_> = std::fs::read_dir(cache.path()).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "one artifact, named by content hash");
    drop(first);

    // A new host (as after a restart) loads the artifact instead of compiling.
    let second = PluginHost::new(config).unwrap();
    let plugin = second.load_builtin("transform").unwrap();
    assert!(plugin.from_cache());
    let call = block_on(plugin.call(&CallContext::default(), "[1]", "{}", &Limits::default()));
    assert_eq!(call.result, Ok(json!([1])));

    // A damaged artifact is not trusted: the plugin compiles again.
    std::fs::write(files[0].path(), b"garbage").unwrap();
    let third = PluginHost::new(HostConfig {
        cache_dir: Some(cache.path().to_owned()),
        no_pooling: false,
    })
    .unwrap();
    assert!(!third.load_builtin("transform").unwrap().from_cache());
}

#[test]
fn output_that_is_not_json_is_refused() {
    let raw = host()
        .load_file(std::path::Path::new(weir_tests::RAW_WASM))
        .expect("the raw guest loads");
    let call = |input: &str| {
        block_on(raw.call(&CallContext::default(), input, "{}", &Limits::default())).result
    };
    assert!(matches!(
        call(r#""this is not json""#),
        Err(StepFailure::OutputNotJson { .. })
    ));
    assert_eq!(call(r#""[1, 2]""#), Ok(json!([1, 2])));
}
