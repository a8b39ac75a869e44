//! The plugin benchmark: what one step costs Weir apart from its own work, as the built-in
//! `transform` plugin called on a 1 KiB JSON object, a fresh instance per call as in a run.
//! The on-demand allocator is the baseline the pooling allocator (Weir's default) must beat.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use weir::plugin::{CallContext, HostConfig, Limits, Plugin, PluginHost};

/// A JSON object of about 1 KiB.
fn input_1k() -> String {
    let mut fields = serde_json::Map::new();
    for i in 0..32 {
        fields.insert(
            format!("field_{i:02}"),
            serde_json::json!(format!("value number {i:04}")),
        );
    }
    fields.insert(
        "nested".into(),
        serde_json::json!({"list": [1, 2, 3, 4, 5], "flag": true}),
    );
    serde_json::Value::Object(fields).to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// `n` calls, each timed; fails on the first call that does not succeed.
fn call_loop(plugin: &Plugin, input: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
    let ctx = CallContext::default();
    let limits = Limits::default();
    let mut times = Vec::with_capacity(n);
    // One runtime per calling thread, as each of the executor's workers awaits its calls.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("starting a runtime")?;
    for _ in 0..n {
        let start = Instant::now();
        let call = runtime.block_on(plugin.call(&ctx, input, "{}", &limits));
        times.push(start.elapsed());
        if let Err(e) = call.result {
            anyhow::bail!("transform failed: {e:?}");
        }
    }
    Ok(times)
}

/// Calls a second from `threads` threads making `per_thread` calls each.
fn throughput(
    plugin: &Plugin,
    input: &str,
    threads: usize,
    per_thread: usize,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| call_loop(plugin, input, per_thread)))
            .collect();
        for handle in handles {
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("a caller thread panicked"))??;
        }
        anyhow::Ok(())
    })?;
    Ok((threads * per_thread) as f64 / start.elapsed().as_secs_f64())
}

/// `weir-bench plugin`.
pub fn bench() -> anyhow::Result<()> {
    let input = input_1k();
    println!(
        "plugin benchmark: built-in `transform`, fresh instance per call, {} B JSON input",
        input.len()
    );
    for pooling in [true, false] {
        let host = PluginHost::new(HostConfig {
            no_pooling: !pooling,
            ..HostConfig::default()
        })
        .context("starting the plugin host")?;
        let plugin = host.load_builtin("transform")?;
        call_loop(&plugin, &input, 2_000)?; // warm-up
        let mut times = call_loop(&plugin, &input, 20_000)?;
        times.sort();
        let label = if host.pooling() {
            "pooling allocator"
        } else {
            "on-demand allocator"
        };
        println!("  {label}:");
        println!(
            "    instantiate + call: median {:.1} µs, p99 {:.1} µs",
            percentile(&times, 0.5).as_secs_f64() * 1e6,
            percentile(&times, 0.99).as_secs_f64() * 1e6
        );
        for threads in [1, 2] {
            println!(
                "    {threads} thread(s): {:>8.0} calls/s",
                throughput(&plugin, &input, threads, 20_000)?
            );
        }
        if !pooling {
            println!("  (on-demand is the baseline: the pooling allocator should beat it)");
        }
    }
    println!("targets: median <= 50 µs, >= 15,000 calls/s");
    Ok(())
}
