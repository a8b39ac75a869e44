//! Logs from a step. Inside the component they go to the host, which keeps them with the
//! step's record; in a native test they are captured for `weir_sdk::testing`.

use std::fmt;

/// How much a log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        })
    }
}

/// Sends one log line to the host. The macros (`info!` and friends) call this.
pub fn emit(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::__private::bindings::weir::plugin::log::{Level as Wit, log};
        let level = match level {
            Level::Trace => Wit::Trace,
            Level::Debug => Wit::Debug,
            Level::Info => Wit::Info,
            Level::Warn => Wit::Warn,
            Level::Error => Wit::Error,
        };
        log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::capture(level, message);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log {
    ($level:expr, $($arg:tt)+) => {
        $crate::log($level, &::std::format!($($arg)+))
    };
}

/// Logs at trace level, with `format!` arguments.
#[macro_export]
macro_rules! trace { ($($arg:tt)+) => { $crate::__log!($crate::Level::Trace, $($arg)+) }; }
/// Logs at debug level, with `format!` arguments.
#[macro_export]
macro_rules! debug { ($($arg:tt)+) => { $crate::__log!($crate::Level::Debug, $($arg)+) }; }
/// Logs at info level, with `format!` arguments.
#[macro_export]
macro_rules! info { ($($arg:tt)+) => { $crate::__log!($crate::Level::Info, $($arg)+) }; }
/// Logs at warn level, with `format!` arguments.
#[macro_export]
macro_rules! warn { ($($arg:tt)+) => { $crate::__log!($crate::Level::Warn, $($arg)+) }; }
/// Logs at error level, with `format!` arguments.
#[macro_export]
macro_rules! error { ($($arg:tt)+) => { $crate::__log!($crate::Level::Error, $($arg)+) }; }
