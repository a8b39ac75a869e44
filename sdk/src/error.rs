use std::fmt;

/// A failure a step reports. The host records its kind and message with the step.
///
/// `?` turns any [`std::error::Error`] into [`StepError::Internal`] with the error's message
/// (its sources appended). To give another kind, map it: `.map_err(|e|
/// StepError::Upstream(e.to_string()))?`. Like `anyhow::Error`, `StepError` does not itself
/// implement `std::error::Error`, which is what makes that conversion possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepError {
    /// The mapped input does not fit what the step needs.
    InvalidInput(String),
    /// The step's static config is wrong.
    Config(String),
    /// A service the step talks to failed.
    Upstream(String),
    /// Anything else.
    Internal(String),
    /// Not a failure: the run stops here with status `filtered` (the reason is kept).
    Filtered(String),
}

impl StepError {
    /// The kind as Weir's API shows it: `invalid-input`, `config`, `upstream`, `internal`,
    /// `filtered`.
    pub fn kind(&self) -> &'static str {
        match self {
            StepError::InvalidInput(_) => "invalid-input",
            StepError::Config(_) => "config",
            StepError::Upstream(_) => "upstream",
            StepError::Internal(_) => "internal",
            StepError::Filtered(_) => "filtered",
        }
    }

    /// The message the step gave.
    pub fn message(&self) -> &str {
        match self {
            StepError::InvalidInput(m)
            | StepError::Config(m)
            | StepError::Upstream(m)
            | StepError::Internal(m)
            | StepError::Filtered(m) => m,
        }
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl<E: std::error::Error> From<E> for StepError {
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        StepError::Internal(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<u32, StepError> {
        Ok(text.parse::<u32>()?)
    }

    #[test]
    fn question_mark_turns_any_error_into_an_internal_step_error() {
        assert_eq!(parse("7"), Ok(7));
        assert_eq!(
            parse("x"),
            Err(StepError::Internal("invalid digit found in string".into()))
        );
    }
}
