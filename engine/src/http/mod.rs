//! HTTP: the webhook gateway and the admin API, each on its own listener (warp routes served
//! by [`listener`], which bounds connections and closes them at shutdown).

mod admin;
pub mod client;
mod error;
mod gateway;
mod listener;
mod openapi;
mod refusals;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::Instant;
use warp::Filter;

pub use admin::Admin;
pub use error::ApiError;
pub use gateway::Gateway;
pub use listener::{EdgeLimits, MIN_MAX_HEAD};
pub use refusals::Recorder;

/// Serves `gateway` on `listener` until `shutdown` resolves with the instant by which open
/// connections are closed.
pub async fn serve_gateway(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    limits: EdgeLimits,
    shutdown: impl Future<Output = Instant>,
) {
    // No request tracing here: the path carries the flow's secret token.
    let routes = gateway::routes(gateway).recover(error::recover).unify();
    listener::serve(
        "webhooks",
        listener,
        warp::service(routes),
        limits,
        shutdown,
    )
    .await;
}

/// Serves the admin API on `listener` until `shutdown` resolves with the instant by which
/// open connections are closed.
pub async fn serve_admin(
    admin: Arc<Admin>,
    listener: tokio::net::TcpListener,
    limits: EdgeLimits,
    shutdown: impl Future<Output = Instant>,
) {
    let routes = admin::routes(admin)
        .recover(error::recover)
        .unify()
        .map(admin::harden);
    listener::serve("admin", listener, warp::service(routes), limits, shutdown).await;
}

/// True for addresses only this machine can reach.
pub fn is_local(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}
