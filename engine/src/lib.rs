//! Weir: receive webhooks, keep them safely, run flows of WebAssembly steps on them.

pub mod plugin;
pub mod scaffold;
