//! The built-in plugins, compiled from `plugins/` by `engine/build.rs` and embedded here.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
