//! Outbound HTTP as a granted capability: a step reaches only the hosts its flow grants it
//! (`allow_hosts`), through the standard `wasi:http/outgoing-handler`, and the host checks
//! every request after resolving its name, then connects to a checked address.
//!
//! - [`policy`]: the pure decision, from grants, URL and resolved addresses to allow or deny.
//! - [`StepHttp`]: the checked sender, the `WasiHttpHooks` of one step call.

pub mod policy;
mod sender;

pub use policy::{Denial, Grant, GrantError, Grants};
pub use sender::{CallLog, CallRecord, OutboundConfig, OutboundError, StepHttp, redacted_url};

/// The largest response body a call may bring when the step does not say: 10 MiB.
pub const DEFAULT_MAX_RESPONSE: u64 = 10 << 20;
/// The largest `max_response` a step may ask for: 256 MiB (the body streams into the guest,
/// whose memory is bounded anyway).
pub const MAX_MAX_RESPONSE: u64 = 256 << 20;
/// The largest request body a call may send when the step does not say: 10 MiB.
pub const DEFAULT_MAX_REQUEST: u64 = 10 << 20;
/// The largest `max_request` a step may ask for: 256 MiB.
pub const MAX_MAX_REQUEST: u64 = 256 << 20;

/// What a step may do over HTTP: its grants and the caps of each call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub grants: Grants,
    /// Response body bytes a call may receive; past it the body is cut with a `too large` error.
    pub max_response: u64,
    /// Request body bytes a call may send.
    pub max_request: u64,
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound {
            grants: Grants::default(),
            max_response: DEFAULT_MAX_RESPONSE,
            max_request: DEFAULT_MAX_REQUEST,
        }
    }
}

#[cfg(test)]
mod tests;
