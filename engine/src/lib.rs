//! Weir: receive webhooks, keep them safely, run flows of WebAssembly steps on them.
//!
//! Rooms and doors: `http` talks to `catalog`, `store` and `run`; `run` talks to `plugin`,
//! `flow` and `store`; `metrics` is recorded into by `http` and `run`; `plugin` knows nothing of HTTP or storage; `flow` is pure.

pub mod catalog;
pub mod events;
pub mod flow;
pub mod http;
pub mod metrics;
pub mod plugin;
pub mod retention;
pub mod run;
pub mod scaffold;
pub mod server;
pub mod store;
pub mod verify;
