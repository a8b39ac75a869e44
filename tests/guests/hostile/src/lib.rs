//! A plugin that does, on request, everything a plugin must not be able to get away with.
//! `config.mode` picks the misdeed; the tests check that the host contains each one.

use serde::Deserialize;
use serde_json::{Value, json};
use std::hint::black_box;
use weir_sdk::{Context, StepError};

#[derive(Deserialize)]
struct Config {
    mode: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    ms: u64,
}

#[weir_sdk::step]
fn run(_ctx: &Context, input: Value, config: Config) -> Result<Value, StepError> {
    match config.mode.as_str() {
        "echo" => Ok(input),
        "spin" => {
            // Busy for `ms` milliseconds (the monotonic clock is the one thing WASI grants).
            let start = std::time::Instant::now();
            while start.elapsed().as_millis() < u128::from(config.ms) {
                black_box(0);
            }
            Ok(input)
        }
        "sleep" => {
            // Waits in a host call (WASI's monotonic-clock poll), computing nothing.
            weir_sdk::info!("going to sleep for {} ms", config.ms);
            std::thread::sleep(std::time::Duration::from_millis(config.ms));
            Ok(input)
        }
        "loop" => {
            let mut n = 0u64;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        "grow" => {
            // Up to 1 GiB, a MiB at a time, all of it kept and touched.
            let mut chunks = Vec::new();
            for i in 0..1024 {
                chunks.push(vec![i as u8; 1 << 20]);
            }
            Ok(json!({ "chunks": black_box(chunks).len() }))
        }
        "recurse" => Ok(json!(recurse(black_box(1)))),
        "panic" => panic!("the hostile plugin panics on purpose"),
        "read_file" => Ok(json!({
            "read": std::fs::read_to_string(&config.target).map_err(|e| e.to_string()),
            "list_root": std::fs::read_dir("/").map(|d| d.count()).map_err(|e| e.to_string()),
            "write": std::fs::write("/tmp/weir-hostile-was-here", "x").map_err(|e| e.to_string()),
        })),
        "env" => Ok(json!({
            "vars": std::env::vars().collect::<Vec<_>>(),
            "args": std::env::args().collect::<Vec<_>>(),
            "target": std::env::var(&config.target).map_err(|e| e.to_string()),
        })),
        "socket" => Ok(json!({
            "tcp": std::net::TcpStream::connect(config.target.as_str()).map(|_| "connected").map_err(|e| e.to_string()),
            "udp": std::net::UdpSocket::bind("0.0.0.0:0").map(|_| "bound").map_err(|e| e.to_string()),
            "dns": std::net::ToSocketAddrs::to_socket_addrs("localhost:80").map(|a| a.count()).map_err(|e| e.to_string()),
        })),
        "big_output" => Ok(Value::String("a".repeat(100 << 20))),
        "print" => {
            println!("to stdout");
            eprintln!("to stderr");
            weir_sdk::info!("through the log import");
            Ok(json!(null))
        }
        "log_flood" => {
            for i in 0..100_000 {
                weir_sdk::info!("flood line {i} {}", "x".repeat(100));
                println!("printed line {i}");
            }
            Ok(json!("survived"))
        }
        "error" => Err(StepError::Upstream("the upstream said no".into())),
        other => Err(StepError::Config(format!("unknown mode {other}"))),
    }
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    // No locals whose address is taken, so every frame lives on the wasm stack.
    if black_box(n) == 0 {
        0
    } else {
        recurse(black_box(n + 1)).wrapping_add(1)
    }
}
