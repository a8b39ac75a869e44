//! HTTP: the webhook gateway and the admin API, each on its own listener (warp).

mod admin;
mod error;
mod gateway;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;

use warp::Filter;

pub use admin::Admin;
pub use error::ApiError;
pub use gateway::Gateway;

/// Serves `gateway` on `listener` until `shutdown` resolves.
pub async fn serve_gateway(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // No request tracing here: the path carries the flow's secret token.
    let routes = gateway::routes(gateway).recover(error::recover).unify();
    warp::serve(routes)
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve_admin(
    admin: Arc<Admin>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let routes = admin::routes(admin).recover(error::recover).unify();
    warp::serve(routes)
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

/// True for addresses only this machine can reach.
pub fn is_local(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}
