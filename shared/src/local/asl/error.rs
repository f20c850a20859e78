//! Error types: definition errors ([`AslError`]), task errors ([`TaskFailure`]),
//! execution failures ([`ExecutionFailure`]) and the internal [`StateError`].

use std::fmt;

/// Error names produced by the interpreter itself (AWS "States.*" names).
pub mod names {
    /// Wildcard that matches any error except `States.Runtime`.
    pub const ALL: &str = "States.ALL";
    /// Wildcard that matches any error except `States.Timeout` (and `States.Runtime`).
    pub const TASK_FAILED: &str = "States.TaskFailed";
    /// A Task ran longer than `TimeoutSeconds`, or the execution longer than the machine's `TimeoutSeconds`.
    pub const TIMEOUT: &str = "States.Timeout";
    /// Data processing failed (a path matched nothing, an intrinsic failed, ...). Never retried, never caught.
    pub const RUNTIME: &str = "States.Runtime";
    /// A Choice state matched no rule and has no `Default`.
    pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
    /// `ResultPath` could not be applied to the state's raw input (e.g. the input is not an object).
    pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
    /// A state's input or output, or a task's result, is larger than 256 KiB. Terminal: never
    /// retried, and `States.ALL` does not catch it (as in AWS).
    pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
    /// A Distributed Map's child executions failed more than its tolerated failure threshold.
    pub const EXCEED_TOLERATED_FAILURE_THRESHOLD: &str = "States.ExceedToleratedFailureThreshold";
    /// A Map state's ItemReader could not read its items.
    pub const ITEM_READER_FAILED: &str = "States.ItemReaderFailed";
}

/// Where a definition error was found: the state machine top level or a named state.
fn at(state: &Option<String>) -> String {
    match state {
        Some(name) => format!("state '{name}'"),
        None => "state machine".to_string(),
    }
}

/// A state machine definition that cannot be loaded. Every variant names the state
/// (`None` = the top level of the definition) and the field (a dotted path such as
/// `Retry[0].IntervalSeconds` or `Parameters.run.$`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AslError {
    /// The definition is not valid JSON, or not a JSON object.
    #[error("state machine definition is not valid JSON: {message}")]
    InvalidJson { message: String },
    /// A required field is absent.
    #[error("{}: missing required field '{field}'", at(.state))]
    MissingField {
        state: Option<String>,
        field: String,
    },
    /// A field is present but its value is not acceptable.
    #[error("{}: field '{field}': {message}", at(.state))]
    InvalidField {
        state: Option<String>,
        field: String,
        message: String,
    },
    /// A field that the state type does not have.
    #[error("{}: unknown field '{field}' for a {state_type} state (allowed: {allowed})", at(.state))]
    UnknownField {
        state: Option<String>,
        field: String,
        state_type: String,
        allowed: String,
    },
    /// A valid ASL construct that this interpreter does not implement.
    #[error("{}: field '{field}': {message}", at(.state))]
    Unsupported {
        state: Option<String>,
        field: String,
        message: String,
    },
    /// A `${Name}` placeholder that has no entry in the substitutions map.
    #[error("{}: field '{field}': placeholder '${{{name}}}' has no substitution", at(.state))]
    UnsubstitutedPlaceholder {
        state: Option<String>,
        field: String,
        name: String,
    },
    /// `StartAt`, `Next`, `Default` or a catcher's `Next` names a state that does not exist.
    #[error("{}: field '{field}' refers to state '{target}', which does not exist", at(.state))]
    MissingTarget {
        state: Option<String>,
        field: String,
        target: String,
    },
}

impl AslError {
    /// The state the error is about (`None` for the top level).
    pub fn state(&self) -> Option<&str> {
        match self {
            AslError::InvalidJson { .. } => None,
            AslError::MissingField { state, .. }
            | AslError::InvalidField { state, .. }
            | AslError::UnknownField { state, .. }
            | AslError::Unsupported { state, .. }
            | AslError::UnsubstitutedPlaceholder { state, .. }
            | AslError::MissingTarget { state, .. } => state.as_deref(),
        }
    }

    /// The field the error is about (`""` for [`AslError::InvalidJson`]).
    pub fn field(&self) -> &str {
        match self {
            AslError::InvalidJson { .. } => "",
            AslError::MissingField { field, .. }
            | AslError::InvalidField { field, .. }
            | AslError::UnknownField { field, .. }
            | AslError::Unsupported { field, .. }
            | AslError::UnsubstitutedPlaceholder { field, .. }
            | AslError::MissingTarget { field, .. } => field,
        }
    }
}

/// A problem with one field, found by a sub-parser that does not know the state name.
/// `field` is relative to the sub-parser's input; the caller prefixes it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FieldError {
    pub field: String,
    pub message: String,
    pub unsupported: bool,
}

impl FieldError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
            unsupported: false,
        }
    }

    pub fn unsupported(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
            unsupported: true,
        }
    }

    /// Prefixes the field with `prefix` (`prefix.field`, or `prefix[..]` for index fields).
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = join_field(prefix, &self.field);
        self
    }

    /// Attaches the state name, producing the public error.
    pub fn at_state(self, state: Option<&str>) -> AslError {
        let state = state.map(str::to_string);
        if self.unsupported {
            AslError::Unsupported {
                state,
                field: self.field,
                message: self.message,
            }
        } else {
            AslError::InvalidField {
                state,
                field: self.field,
                message: self.message,
            }
        }
    }
}

/// Joins two field path fragments: `a` + `b` -> `a.b`, `a` + `[0].b` -> `a[0].b`.
pub(super) fn join_field(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else if field.is_empty() {
        prefix.to_string()
    } else if field.starts_with('[') {
        format!("{prefix}{field}")
    } else {
        format!("{prefix}.{field}")
    }
}

/// The error a Task's resource reports. `error` is a stable error name (e.g. `Throttled`,
/// `Retryable`, `States.Timeout`) matched by `ErrorEquals`; `cause` is human-readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub error: String,
    pub cause: String,
}

impl TaskFailure {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        TaskFailure {
            error: error.into(),
            cause: cause.into(),
        }
    }
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error, self.cause)
    }
}

impl std::error::Error for TaskFailure {}

/// Why an execution failed: the error name and cause (as AWS reports them in
/// `DescribeExecution`), and the state where the failure happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionFailure {
    pub error: String,
    pub cause: String,
    pub state: Option<String>,
}

impl fmt::Display for ExecutionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error, self.cause)
    }
}

impl std::error::Error for ExecutionFailure {}

/// An error raised while running one state (before retry/catch handling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StateError {
    pub error: String,
    pub cause: String,
}

impl StateError {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        StateError {
            error: error.into(),
            cause: cause.into(),
        }
    }

    /// A `States.Runtime` error: a data-processing failure that is never retried nor caught.
    pub fn runtime(cause: impl Into<String>) -> Self {
        StateError::new(names::RUNTIME, cause)
    }

    /// Errors that fail the execution at once: `States.Runtime` and `States.DataLimitExceeded`
    /// are never retried, and `States.ALL` does not catch them.
    pub fn is_runtime(&self) -> bool {
        self.error == names::RUNTIME || self.error == names::DATA_LIMIT_EXCEEDED
    }

    pub fn into_failure(self, state: &str) -> ExecutionFailure {
        ExecutionFailure {
            error: self.error,
            cause: self.cause,
            state: Some(state.to_string()),
        }
    }
}

impl From<TaskFailure> for StateError {
    fn from(f: TaskFailure) -> Self {
        StateError::new(f.error, f.cause)
    }
}
