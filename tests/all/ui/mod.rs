//! The web UI in real headless Chromium, as an admin uses it, a module per page: the Flows page
//! and a flow's page (`flows`), the Webhooks page with a payload and a run (`webhooks`), the
//! payload dialog (`payload`), the sign-in form (`signin`), the details of flow and run pages
//! (`details`), and the API data the pages read (`page_data`). Every browser test also checks
//! that no request goes to any other origin, and saves full-page screenshots (light and dark)
//! under `<target>/ui-screenshots/<test>/`. The event stream is checked over plain HTTP in
//! `events.rs`.

use std::time::Duration;

mod details;
mod flows;
mod page_data;
mod payload;
mod signin;
mod webhooks;

const WAIT: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}
