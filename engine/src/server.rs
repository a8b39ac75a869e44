//! `weir serve`: the store, the plugin host, the catalog with hot reload, the executor, the
//! gateway and the admin API, started in that order and stopped together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::http::{self, Admin, Gateway};
use crate::plugin::{HostConfig, PluginHost};
use crate::run::{Burst, Executor};
use crate::store::{Options as StoreOptions, Store};

/// How often the dedupe values that outlived their flow's `dedupe_window` are forgotten.
const DEDUPE_SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Forgets, now and every [`DEDUPE_SWEEP_EVERY`] until `stopped`, the dedupe values of each
/// flow with a `dedupe_window` that are older than it (see `Store::prune_dedupe`). Values of
/// flows without a window hold for good, so they stay.
async fn sweep_dedupe(
    catalog: Catalog,
    store: Store,
    stopped: impl std::future::Future<Output = ()>,
) {
    let mut stopped = std::pin::pin!(stopped);
    loop {
        let windows: Vec<(String, Duration)> = catalog
            .snapshot()
            .flows
            .values()
            .filter_map(|entry| {
                let webhook = &entry.live.as_ref()?.flow.webhook;
                webhook.dedupe.as_ref()?;
                Some((entry.id.clone(), webhook.dedupe_window?))
            })
            .collect();
        for (flow, window) in windows {
            match store.prune_dedupe(&flow, window).await {
                Ok(0) => {}
                Ok(forgotten) => {
                    tracing::info!(%flow, forgotten, "forgot dedupe values older than the window")
                }
                Err(e) => tracing::warn!(%flow, error = %e, "sweeping dedupe values failed"),
            }
        }
        tokio::select! {
            () = &mut stopped => return,
            () = tokio::time::sleep(DEDUPE_SWEEP_EVERY) => {}
        }
    }
}

/// How to serve. Not `Debug`: it holds the admin token.
#[derive(Clone)]
pub struct ServeConfig {
    pub flows: PathBuf,
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// The base of webhook URLs; default `http://<listen address>`.
    pub public_url: Option<String>,
    /// Required on the admin API when set; needed to listen on a non-loopback address.
    pub admin_token: Option<String>,
    /// Runs executing at once.
    pub concurrency: usize,
    /// The niceness of the threads that execute runs (0–19); see `Executor::start`.
    pub run_nice: i32,
    /// When runs wait for a burst of webhooks to pass; see `Executor::start`.
    pub burst: Burst,
    /// How long a stop waits for executing runs to finish; see `Executor::drain`.
    pub shutdown_grace: Duration,
    /// Webhooks that may wait to be written before the gateway answers 503.
    pub accept_queue: usize,
    /// Bytes of request body executing runs may hold at once (0: no limit); see
    /// `Executor::start`.
    pub payload_budget: u64,
    /// Where flows may load `.wasm` plugins from.
    pub plugin_places: crate::flow::PluginPlaces,
    pub cache_dir: Option<PathBuf>,
}

/// A started server.
pub struct Running {
    pub webhook_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub catalog: Catalog,
    pub store: Store,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    executor: Executor,
    shutdown_grace: Duration,
    _watcher: crate::catalog::Watcher,
}

impl Running {
    /// Stops the listeners and waits for them, then lets executing runs finish (up to the
    /// grace period). Runs still queued stay in the store for the next start.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let cut = self.executor.drain(self.shutdown_grace).await;
        if cut > 0 {
            tracing::warn!(
                runs = cut,
                grace = %humantime::format_duration(self.shutdown_grace),
                "runs still executing at the end of the grace period; they run again at the next start"
            );
        }
        // The runs that finished are on disk before the process exits, whoever still holds a
        // store handle.
        if let Err(e) = self.store.sync().await {
            tracing::error!(error = %e, "syncing the store at shutdown");
        }
    }
}

/// Starts everything; returns once both listeners accept connections.
pub async fn start(config: ServeConfig) -> anyhow::Result<Running> {
    if !http::is_local(&config.admin_listen) && config.admin_token.is_none() {
        bail!(
            "the admin API would listen on {} without a token: set --admin-token (or WEIR_ADMIN_TOKEN), or listen on 127.0.0.1",
            config.admin_listen
        );
    }
    if !config.flows.is_dir() {
        bail!(
            "the flows folder {} does not exist; create it or pass --flows DIR",
            config.flows.display()
        );
    }
    let store = Store::open_with(
        &config.data,
        StoreOptions {
            queue_capacity: config.accept_queue.max(1),
            ..StoreOptions::default()
        },
    )
    .with_context(|| format!("opening the store {}", config.data.display()))?;
    let host = Arc::new(
        PluginHost::new(HostConfig {
            cache_dir: config.cache_dir.clone(),
            no_pooling: false,
        })
        .context("starting the plugin host")?,
    );
    let webhook_listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening for webhooks on {}", config.listen))?;
    let admin_listener = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("listening for the admin API on {}", config.admin_listen))?;
    let webhook_addr = webhook_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{webhook_addr}"));

    let catalog = Catalog::open(
        &config.flows,
        host,
        store.clone(),
        &public_url,
        config.plugin_places.clone(),
    )
    .await
    .context("loading flows")?;
    let watcher = catalog.watch().context("watching the flows folder")?;
    let executor = Executor::start(
        catalog.clone(),
        store.clone(),
        config.concurrency,
        config.run_nice,
        config.burst,
        config.payload_budget,
    )
    .context("starting the run executor")?;
    executor.recover(&store).await.context("resuming runs")?;

    let (stop, stopped) = watch::channel(false);
    let signal = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let gateway = Arc::new(Gateway {
        catalog: catalog.clone(),
        store: store.clone(),
        executor: executor.clone(),
    });
    let admin = Arc::new(Admin {
        catalog: catalog.clone(),
        store: store.clone(),
        executor: executor.clone(),
        token: config.admin_token.clone(),
    });
    let tasks = vec![
        tokio::spawn(http::serve_gateway(gateway, webhook_listener, signal())),
        tokio::spawn(http::serve_admin(admin, admin_listener, signal())),
        tokio::spawn(sweep_dedupe(catalog.clone(), store.clone(), signal())),
    ];
    for entry in catalog.snapshot().flows.values() {
        match catalog.webhook_url(entry) {
            Some(url) if entry.errors.is_empty() => {
                tracing::info!(flow = %entry.id, %url, "flow ready")
            }
            _ => tracing::warn!(flow = %entry.id, errors = entry.errors.len(), "flow has errors"),
        }
    }
    tracing::info!(webhooks = %webhook_addr, admin = %admin_addr, "weir is serving");
    Ok(Running {
        webhook_addr,
        admin_addr,
        catalog,
        store,
        stop,
        tasks,
        executor,
        shutdown_grace: config.shutdown_grace,
        _watcher: watcher,
    })
}
