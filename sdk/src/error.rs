use std::fmt;

/// A failure a step reports. The host records its kind and message with the step.
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

impl std::error::Error for StepError {}
