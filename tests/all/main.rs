//! Weir's integration and end-to-end tests: one binary (it links once), a module per area.

mod builtins;
mod hostile;
mod sdk_scaffold;
