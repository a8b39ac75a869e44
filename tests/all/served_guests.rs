//! Plugins as `weir serve` runs them, on the executor's tokio runtime: a guest that prints,
//! panics, sleeps past its deadline, grows its memory without end or loops forever fails its
//! step with its true error kind and its logs in the run API, and the server goes on; a big
//! plugin compiles beside the runtime that answers webhooks.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir_tests::{FlowDir, HOSTILE_WASM, Weir, post_json, wait_for};

/// A flow of one hostile step. `limits` are extra step lines (`timeout = ...`).
fn hostile_flow(config: &str, limits: &str) -> String {
    format!(
        "name = \"hostile\"\n\n[[steps]]\nid = \"guest\"\nplugin = \"{HOSTILE_WASM}\"\n\
         config = {config}\n{limits}\n"
    )
}

/// Sends a webhook to `flow` and returns its finished run.
fn run(weir: &Weir, flow: &str) -> Value {
    let accepted = post_json(&weir.webhook_url(flow), &json!({"ping": 1}));
    assert_eq!(
        accepted.status,
        202,
        "{flow}: {}",
        String::from_utf8_lossy(&accepted.body)
    );
    weir.wait_run(accepted.json()["run_id"].as_str().expect("a run id"))
}

/// The step's error kind and message.
fn error(run: &Value) -> (String, String) {
    let error = &run["steps"][0]["error"];
    (
        error["kind"].as_str().unwrap_or_default().to_owned(),
        error["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The step's log lines as `level: message`.
fn logs(run: &Value) -> Vec<String> {
    run["steps"][0]["logs"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .map(|l| format!("{}: {}", l["level"].as_str().unwrap_or("?"), l["message"]))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn each_hostile_guest_under_serve_fails_with_its_own_kind_and_keeps_its_logs() {
    let flows = FlowDir::empty();
    flows.write("print.toml", &hostile_flow(r#"{ mode = "print" }"#, ""));
    flows.write("panic.toml", &hostile_flow(r#"{ mode = "panic" }"#, ""));
    flows.write(
        "sleep.toml",
        &hostile_flow(r#"{ mode = "sleep", ms = 60000 }"#, r#"timeout = "1s""#),
    );
    flows.write(
        "grow.toml",
        &hostile_flow(r#"{ mode = "grow" }"#, r#"memory = "32 MiB""#),
    );
    flows.write(
        "loop.toml",
        &hostile_flow(r#"{ mode = "loop" }"#, r#"timeout = "500ms""#),
    );
    flows.write("echo.toml", &hostile_flow(r#"{ mode = "echo" }"#, ""));
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));

    let print = run(&weir, "print");
    assert_eq!(print["run"]["status"], "succeeded", "{print}");
    assert_eq!(
        logs(&print),
        [
            r#"stdout: "to stdout""#,
            r#"stderr: "to stderr""#,
            r#"info: "through the log import""#
        ]
    );

    let panic = run(&weir, "panic");
    assert_eq!(panic["run"]["status"], "failed");
    let (kind, message) = error(&panic);
    assert_eq!(kind, "panic", "{panic}");
    assert!(
        message.contains("the hostile plugin panics on purpose"),
        "{message}"
    );
    // Reported by the SDK's panic hook through the host, with where it happened; not printed.
    assert!(message.contains("src/lib.rs:"), "{message}");
    assert!(logs(&panic).is_empty(), "{panic}");

    // Waiting in a host call, the guest reaches no epoch check: the deadline still holds.
    let sleep = run(&weir, "sleep");
    let (kind, message) = error(&sleep);
    assert_eq!(kind, "timeout", "{sleep}");
    assert!(message.contains("1s"), "{message}");
    let took = Duration::from_micros(sleep["steps"][0]["duration_us"].as_u64().unwrap());
    assert!(took >= Duration::from_secs(1), "stopped early: {took:?}");
    assert!(
        took < Duration::from_secs(4),
        "a 1 s deadline stopped the sleeping guest after {took:?}"
    );
    assert!(
        logs(&sleep).contains(&r#"info: "going to sleep for 60000 ms""#.to_owned()),
        "{sleep}"
    );

    let grow = run(&weir, "grow");
    let (kind, message) = error(&grow);
    assert_eq!(kind, "memory-limit", "{grow}");
    assert!(message.contains(&(32u64 << 20).to_string()), "{message}");

    let spin = run(&weir, "loop");
    let (kind, _) = error(&spin);
    assert_eq!(kind, "timeout", "{spin}");

    // None of it took the server down or left it stuck.
    let echo = run(&weir, "echo");
    assert_eq!(echo["run"]["status"], "succeeded", "{echo}");
    assert_eq!(echo["steps"][0]["output"], echo["steps"][0]["input"]);
    assert!(
        !weir.logs().contains("Cannot start a runtime"),
        "{}",
        weir.logs()
    );
}

/// A component holding one core module of about `size` bytes of code: many functions of
/// arithmetic, which Cranelift compiles for seconds. It exports nothing, so it is not a step:
/// the flow naming it fails to load, once it has compiled.
fn big_component(size: usize) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, Component, Function, FunctionSection, Module, ModuleSection, TypeSection,
        ValType,
    };
    const REPEATS: i32 = 400;
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    let mut functions = FunctionSection::new();
    let mut code = CodeSection::new();
    let mut index = 0;
    while code.byte_len() < size {
        functions.function(0);
        let mut body = Function::new([]);
        let mut sink = body.instructions();
        for k in 0..REPEATS {
            sink.local_get(0)
                .i32_const(index * REPEATS + k)
                .i32_mul()
                .i32_const(k.wrapping_mul(7919))
                .i32_xor()
                .local_set(0);
        }
        sink.local_get(0).end();
        code.function(&body);
        index += 1;
    }
    let mut module = Module::new();
    module.section(&types).section(&functions).section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}

#[test]
fn a_webhook_is_answered_while_a_five_megabyte_plugin_compiles() {
    let flows = FlowDir::empty();
    flows.write(
        "quick.toml",
        "name = \"quick\"\n\n[[steps]]\nid = \"copy\"\nplugin = \"transform\"\n",
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let quick = weir.webhook_url("quick");
    assert_eq!(post_json(&quick, &json!({})).status, 202);

    let big = big_component(5 << 20);
    assert!(big.len() >= 5 << 20);
    std::fs::write(flows.path().join("big.wasm"), &big).unwrap();
    flows.write(
        "big.toml",
        "name = \"big\"\n\n[[steps]]\nid = \"big\"\nplugin = \"big.wasm\"\n",
    );
    wait_for(Duration::from_secs(30), "the big plugin to compile", || {
        weir.logs()
            .lines()
            .any(|l| l.contains("compiling plugin") && l.contains("big.wasm"))
            .then_some(())
    });
    let compiling = Instant::now();
    // While it compiles, webhooks get their 202 and the flow it belongs to is not loaded yet:
    // the reload that swaps it in ends only after the compile.
    let mut answered = 0;
    while weir.api("/api/flows/big").status == 404 {
        let sent = Instant::now();
        let answer = post_json(&quick, &json!({"n": answered}));
        assert_eq!(answer.status, 202);
        if weir.api("/api/flows/big").status == 404 {
            answered += 1;
            eprintln!("202 after {:?} while the plugin compiles", sent.elapsed());
        }
        assert!(
            compiling.elapsed() < Duration::from_secs(300),
            "the big plugin never finished compiling"
        );
    }
    let compiled = compiling.elapsed();
    assert!(
        answered > 0,
        "no webhook was answered during the {compiled:?} compile"
    );
    let big = weir.flow("big");
    assert_eq!(big["status"], "error", "{big}");
    assert!(
        big["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not a valid Weir step component"),
        "{big}"
    );
    eprintln!("{answered} webhooks answered during a compile of {compiled:?}");
}
