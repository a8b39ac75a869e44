//! Weir's integration and end-to-end tests: one binary (it links once), a module per area.

mod api;
mod builtins;
mod cli;
mod damage;
mod edge;
mod events;
mod gateway;
mod hardening;
mod history;
mod hostile;
mod jsonpath_cts;
mod metrics;
mod openapi;
mod outbound;
mod outbound_examples;
mod receive;
mod rejections;
mod reload;
mod restart;
mod retention;
mod retries;
mod scheduling;
mod sdk_scaffold;
mod served_guests;
mod ui;
mod validate_config;
