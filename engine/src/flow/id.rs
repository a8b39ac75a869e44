//! Identifiers of flows and steps.
//!
//! Both follow one rule, `[a-z0-9][a-z0-9_-]{0,63}`, so that an id can be used unchanged in a URL
//! (`/hooks/{flow_id}/...`), a file name (`flows/{flow_id}.toml`) and a JSONPath shorthand
//! (`$.steps.{step_id}.output`). An id is checked once, when it is made; a value of these types is
//! always valid.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The longest id accepted, in bytes (all accepted characters are ASCII).
const MAX_ID_LEN: usize = 64;

/// A malformed flow or step id.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "invalid {kind} id '{value}': use 1 to 64 characters from a-z, 0-9, '_' and '-', starting with a letter or digit"
)]
pub struct IdError {
    /// What the id names: `"flow"` or `"step"`.
    pub kind: &'static str,
    /// The rejected text.
    pub value: String,
}

fn check_id(kind: &'static str, value: &str) -> Result<(), IdError> {
    let bytes = value.as_bytes();
    let head_ok = bytes
        .first()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
    if head_ok && rest_ok && bytes.len() <= MAX_ID_LEN {
        Ok(())
    } else {
        Err(IdError {
            kind,
            value: value.to_owned(),
        })
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `value` against `[a-z0-9][a-z0-9_-]{0,63}`.
            pub fn new(value: &str) -> Result<Self, IdError> {
                check_id($kind, value)?;
                Ok(Self(value.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(value: &str) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;

            fn try_from(value: String) -> Result<Self, IdError> {
                check_id($kind, &value)?;
                Ok(Self(value))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// The id of a flow: the stem of its file name (`flows/github-issues.toml` is `github-issues`).
    FlowId,
    "flow"
);

id_type!(
    /// The id of a step, unique within its flow. `webhook` is a valid `StepId` (it names the
    /// webhook that starts every run) but a flow file cannot give that id to one of its steps.
    StepId,
    "step"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["a", "0", "github-issues", "a_b-c9", &"x".repeat(64)] {
            assert!(FlowId::new(ok).is_ok(), "{ok}");
            assert!(StepId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in ["", "-a", "_a", "A", "a b", "a.b", "é", &"x".repeat(65)] {
            assert!(FlowId::new(bad).is_err(), "{bad:?}");
        }
        let err = StepId::new("Bad").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid step id 'Bad': use 1 to 64 characters from a-z, 0-9, '_' and '-', starting with a letter or digit"
        );
    }

    #[test]
    fn serde_round_trip_checks_the_id() {
        let id: FlowId = serde_json::from_str("\"orders\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"orders\"");
        assert!(serde_json::from_str::<FlowId>("\"Orders\"").is_err());
    }
}
