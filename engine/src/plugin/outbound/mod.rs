//! Outbound HTTP as a granted capability: a step reaches only the hosts its flow grants it
//! (`allow_hosts`), through the standard `wasi:http/outgoing-handler`, and the host checks
//! every request after resolving its name, then connects to a checked address.
//!
//! - [`policy`]: the pure decision, from grants, URL and resolved addresses to allow or deny.

pub mod policy;

pub use policy::{Denial, Grant, GrantError, Grants};
