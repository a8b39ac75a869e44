//! `weir serve`: the store, the plugin host, the catalog with hot reload, the executor, the
//! gateway and the admin API, started in that order and stopped together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::catalog::Catalog;
use crate::http::{self, Admin, Gateway};
use crate::plugin::{HostConfig, PluginHost};
use crate::run::Executor;
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
    /// Required on the admin API when set (at least [`MIN_ADMIN_TOKEN`] bytes); needed to
    /// listen on a non-loopback address.
    pub admin_token: Option<String>,
    /// Without a token, `Host` names the admin API answers besides loopback ones.
    pub admin_hosts: Vec<String>,
    /// Connections the webhook listener keeps open at once (lowered to fit the open-files
    /// limit).
    pub max_connections: usize,
    /// Connections the admin listener keeps open at once, a budget of its own.
    pub admin_max_connections: usize,
    /// From a request head's first byte until it is complete.
    pub header_timeout: Duration,
    /// How long a connection stays open with no request in progress and nothing received.
    pub idle_timeout: Duration,
    /// The longest a webhook's body may take to arrive.
    pub body_timeout: Duration,
    /// Peers whose forwarding headers name a webhook's sender.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The largest request head on either listener, in bytes; flows may ask less.
    pub max_head: usize,
    /// Runs executing at once.
    pub concurrency: usize,
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
    /// A PEM file of CA certificates steps' HTTPS calls trust besides the webpki roots.
    pub extra_ca: Option<PathBuf>,
    /// The store-wide retention limits (flows add their own `retain`).
    pub retain: crate::retention::Limits,
}

/// The shortest admin token `serve` accepts: a token is the admin API's only lock once it
/// listens beyond loopback.
pub const MIN_ADMIN_TOKEN: usize = 16;

/// Open files kept for everything but connections: the store and its journal, the flows
/// folder's watch, plugin artefacts, logs.
const RESERVED_FILES: u64 = 128;

/// A setting `serve` refuses to start with (the binary exits with 2, as for a usage error).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "the admin token is empty, which would leave the admin API without a lock: set --admin-token (or WEIR_ADMIN_TOKEN) to at least {MIN_ADMIN_TOKEN} bytes (for example `openssl rand -hex 32`), or leave it unset to keep the API on loopback"
    )]
    EmptyAdminToken,
    #[error(
        "the admin token is {0} bytes long: use at least {MIN_ADMIN_TOKEN} (for example `openssl rand -hex 32`)"
    )]
    ShortAdminToken(usize),
    #[error(
        "the admin API would listen on {0} without a token: set --admin-token (or WEIR_ADMIN_TOKEN), or listen on 127.0.0.1"
    )]
    PublicAdminWithoutToken(SocketAddr),
    #[error(
        "the open-files limit ({0}) leaves no room for connections: raise it (ulimit -n) to at least {min}",
        min = RESERVED_FILES + 64
    )]
    TooFewFiles(u64),
}

/// Raises the soft limit of open files to the hard limit (every connection is a file) and
/// returns the soft limit in force.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::debug!(
                from = limit.rlim_cur,
                to = limit.rlim_max,
                "raised the open-files limit"
            );
            return limit.rlim_max;
        }
        tracing::warn!(
            soft = limit.rlim_cur,
            hard = limit.rlim_max,
            "cannot raise the open-files limit"
        );
    }
    limit.rlim_cur
}

/// The connection caps of the two listeners within `files` open files: the admin budget as
/// asked (up to a quarter of what there is), the webhook listener what is left up to its
/// own cap. Each listener may hold one accepted socket beyond its cap.
fn connection_budgets(config: &ServeConfig, files: u64) -> Result<(usize, usize), ConfigError> {
    let room = files.saturating_sub(RESERVED_FILES + 2);
    if room < 64 {
        return Err(ConfigError::TooFewFiles(files));
    }
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    let admin = config.admin_max_connections.clamp(1, room / 4);
    let webhooks = config.max_connections.clamp(1, room - admin);
    if webhooks < config.max_connections || admin < config.admin_max_connections {
        tracing::warn!(
            open_files = files,
            webhooks,
            admin,
            "connection caps lowered to fit the open-files limit"
        );
    }
    Ok((webhooks, admin))
}

/// Refuses an admin token that would not lock anything.
fn check_admin_token(config: &ServeConfig) -> Result<(), ConfigError> {
    match config.admin_token.as_deref() {
        Some("") => Err(ConfigError::EmptyAdminToken),
        Some(token) if token.len() < MIN_ADMIN_TOKEN => {
            Err(ConfigError::ShortAdminToken(token.len()))
        }
        None if !http::is_local(&config.admin_listen) => {
            Err(ConfigError::PublicAdminWithoutToken(config.admin_listen))
        }
        _ => Ok(()),
    }
}

/// A started server.
pub struct Running {
    pub webhook_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub catalog: Catalog,
    pub store: Store,
    /// `Some(deadline)` once stopping: listeners close what is still open by then.
    stop: watch::Sender<Option<Instant>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    executor: Executor,
    shutdown_grace: Duration,
    _watcher: crate::catalog::Watcher,
}

impl Running {
    /// Stops accepting and lets open connections finish their requests while runs go on
    /// executing (a `respond = "result"` sender still gets its result), then lets executing
    /// runs finish, all within one grace period: connections still open at its end are
    /// closed, and runs still executing are cut off. Runs still queued stay in the store for
    /// the next start.
    pub async fn shutdown(self) {
        let deadline = Instant::now() + self.shutdown_grace;
        let _ = self.stop.send(Some(deadline));
        // Open event streams end now, so they never hold up the graceful stop.
        self.catalog.events().close();
        for task in self.tasks {
            let _ = task.await;
        }
        let cut = self
            .executor
            .drain(deadline.saturating_duration_since(Instant::now()))
            .await;
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
    check_admin_token(&config)?;
    let (max_webhook_connections, max_admin_connections) =
        connection_budgets(&config, raise_open_files_limit())?;
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
    let mut host = PluginHost::new(HostConfig {
        cache_dir: config.cache_dir.clone(),
        no_pooling: false,
    })
    .context("starting the plugin host")?;
    if let Some(pem) = &config.extra_ca {
        host.set_outbound(
            crate::plugin::outbound::OutboundConfig::new(Some(pem))
                .context("setting up outbound HTTPS")?,
        );
    }
    let host = Arc::new(host);
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
    let metrics = Arc::new(crate::metrics::Metrics::new());
    store.observe_latency(metrics.store_latency());
    let watcher = catalog.watch().context("watching the flows folder")?;
    let executor = Executor::start(
        catalog.clone(),
        store.clone(),
        config.concurrency,
        config.payload_budget,
        metrics.clone(),
    )
    .context("starting the run executor")?;
    executor.recover(&store).await.context("resuming runs")?;

    let (stop, stopped) = watch::channel(None::<Instant>);
    // Resolves with the instant by which connections are closed.
    let deadline = move || {
        let mut stopped = stopped.clone();
        async move {
            match stopped.wait_for(Option::is_some).await {
                Ok(deadline) => deadline.unwrap_or_else(Instant::now),
                Err(_) => Instant::now(),
            }
        }
    };
    let limits = |max_connections| http::EdgeLimits {
        max_connections,
        header_timeout: config.header_timeout,
        idle_timeout: config.idle_timeout,
        max_head: config.max_head.max(http::MIN_MAX_HEAD),
    };
    let gateway = Arc::new(Gateway {
        catalog: catalog.clone(),
        store: store.clone(),
        executor: executor.clone(),
        body_timeout: config.body_timeout,
        trusted_proxies: config.trusted_proxies.clone(),
        metrics: metrics.clone(),
        refusals: crate::http::Recorder::start(store.clone(), catalog.events().clone()),
    });
    let admin = Arc::new(Admin {
        catalog: catalog.clone(),
        store: store.clone(),
        executor: executor.clone(),
        token: config.admin_token.clone(),
        hosts: config
            .admin_hosts
            .iter()
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .collect(),
        metrics: metrics.clone(),
        store_file: config.data.clone(),
    });
    let pruner =
        crate::retention::Pruner::new(store.clone(), catalog.clone(), metrics, config.retain);
    let tasks = vec![
        tokio::spawn(http::serve_gateway(
            gateway,
            webhook_listener,
            limits(max_webhook_connections),
            deadline(),
        )),
        tokio::spawn(http::serve_admin(
            admin,
            admin_listener,
            limits(max_admin_connections),
            deadline(),
        )),
        tokio::spawn(sweep_dedupe(catalog.clone(), store.clone(), {
            let stopping = deadline();
            async move {
                stopping.await;
            }
        })),
        tokio::spawn(pruner.run({
            let stopping = deadline();
            async move {
                stopping.await;
            }
        })),
    ];
    for entry in catalog.snapshot().flows.values() {
        match catalog.webhook_url(entry) {
            // The URL's token lets anyone send to the flow: the log shows only its start.
            Some(url) if entry.errors.is_empty() => {
                tracing::info!(flow = %entry.id, url = %mask_url(&url), "flow ready")
            }
            _ => tracing::warn!(flow = %entry.id, errors = entry.errors.len(), "flow has errors"),
        }
    }
    tracing::info!(
        webhooks = %webhook_addr,
        admin = %admin_addr,
        max_webhook_connections,
        max_admin_connections,
        "weir is serving"
    );
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

/// A webhook URL with all but the first four characters of its token hidden, for logs.
fn mask_url(url: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, token)) => {
            let shown: String = token.chars().take(4).collect();
            format!("{base}/{shown}…")
        }
        None => "…".to_owned(),
    }
}
