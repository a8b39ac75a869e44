//! `respond = "result"`: the sender waits for its run. A flow of two `transform` steps that
//! answers with the run's result, against the same flow answering `202` at once, at
//! concurrency 64, each in its own `weir serve`, one phase after the other in every round so
//! that a noisy machine falls on both. A `202` phase also drains its runs before the next
//! phase starts, so that the result phase never competes with a backlog.

use anyhow::Context as _;

use crate::webhook::{Load, WeirProcess, get_json, load, median, start_weir_with, wait_drained};

const CONCURRENCY: usize = 64;

fn flow(respond: &str) -> String {
    format!(
        "name = \"bench\"\n[webhook]\nrespond = \"{respond}\"\n\
         [[steps]]\nid = \"pick\"\nplugin = \"transform\"\n\
         input = {{ number = \"$.webhook.body.issue.number\", title = \"$.webhook.body.issue.title\" }}\n\
         [[steps]]\nid = \"reply\"\nplugin = \"transform\"\n\
         input = {{ text = \"$.steps.pick.output.title\", issue = \"$.steps.pick.output.number\" }}\n"
    )
}

async fn hook_path(weir: &WeirProcess) -> anyhow::Result<String> {
    let flows = get_json(weir.admin, "/api/flows").await?;
    let url = flows["flows"][0]["webhook_url"]
        .as_str()
        .context("the bench flow's URL")?;
    url.split_once("/hooks/")
        .map(|(_, rest)| format!("/hooks/{rest}"))
        .context("webhook path")
}

/// `weir-bench respond [--rounds N]`.
pub fn bench(rounds: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let accepted = start_weir_with(&flow("accepted"))?;
        let result = start_weir_with(&flow("result"))?;
        let (accepted_path, result_path) = (hook_path(&accepted).await?, hook_path(&result).await?);
        println!(
            "respond benchmark: two `transform` steps, concurrency {CONCURRENCY}, {} s per phase, \
             {rounds} round(s)",
            crate::webhook::PHASE.as_secs()
        );
        let mut measured: Vec<(Load, Load)> = Vec::new();
        for round in 1..=rounds {
            println!("-- round {round} of {rounds}");
            wait_drained(&accepted).await?;
            let quick = load(accepted.webhook, &accepted_path, CONCURRENCY).await?;
            wait_drained(&accepted).await?;
            let waited = load(result.webhook, &result_path, CONCURRENCY).await?;
            println!(
                "{:<28} {:>10} {:>9} {:>9} {:>8} {:>8}",
                "", "req/s", "p50 ms", "p99 ms", "non-2xx", "202"
            );
            for (name, l) in [
                ("respond = accepted (202)", &quick),
                ("respond = result", &waited),
            ] {
                println!(
                    "{name:<28} {:>10.0} {:>9.2} {:>9.2} {:>8} {:>8}",
                    l.rps(),
                    l.percentile_ms(0.5),
                    l.percentile_ms(0.99),
                    l.refused,
                    l.accepted
                );
            }
            measured.push((quick, waited));
        }
        let range = |of: &dyn Fn(&(Load, Load)) -> f64, digits: usize| {
            let (mid, lo, hi) = median(measured.iter().map(of));
            format!("{mid:.digits$} ({lo:.digits$}–{hi:.digits$})")
        };
        println!("== median of {rounds} round(s) (lowest–highest), concurrency {CONCURRENCY}");
        println!("| | req/s | p50 ms | p99 ms |");
        println!("|---|---|---|---|");
        println!(
            "| respond = accepted | {} | {} | {} |",
            range(&|(q, _)| q.rps(), 0),
            range(&|(q, _)| q.percentile_ms(0.5), 2),
            range(&|(q, _)| q.percentile_ms(0.99), 2)
        );
        println!(
            "| respond = result | {} | {} | {} |",
            range(&|(_, w)| w.rps(), 0),
            range(&|(_, w)| w.percentile_ms(0.5), 2),
            range(&|(_, w)| w.percentile_ms(0.99), 2)
        );
        println!("target: respond = result >= 10k req/s and p99 <= 10 ms");
        anyhow::Ok(())
    })
}
