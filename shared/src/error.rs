//! Stable error names shared by every step, matched by the state machine's Retry/Catch.
//!
//! Each boundary has its own thiserror enum (`SourceError`, `StoreError`, `OutputError`,
//! `FlowError`); a step maps them onto [`StepError`], whose [`ErrorKind`] is the stable
//! `Error` string that Step Functions (and the embedded engine) see.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The error names the state machine matches. Never rename one: deployed state machines and
/// users' EventBridge rules depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The source or a store asked us to slow down; retry later.
    Throttled,
    /// A transient failure (5xx, connection reset, timeout); retry.
    Retryable,
    /// The flow definition is wrong; the message names the field and the fix.
    InvalidFlow,
    /// Credentials were refused or are missing; the message names the profile.
    AuthFailed,
    /// The source refused the request or sent something we cannot read.
    SourceRejected,
    /// The source kept failing (5xx, timeouts, connection errors) through the connector's own
    /// retries (`http.max_retries`). Not retried by the state machine: the connector's retries
    /// are the run's whole budget for a failing source, so its time to fail is what
    /// `source.properties.http` says, not that multiplied by the state machine's retries.
    SourceUnavailable,
    /// Anything else; not retried.
    Fatal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Throttled => "Throttled",
            ErrorKind::Retryable => "Retryable",
            ErrorKind::InvalidFlow => "InvalidFlow",
            ErrorKind::AuthFailed => "AuthFailed",
            ErrorKind::SourceRejected => "SourceRejected",
            ErrorKind::SourceUnavailable => "SourceUnavailable",
            ErrorKind::Fatal => "Fatal",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Throttled" => ErrorKind::Throttled,
            "Retryable" => ErrorKind::Retryable,
            "InvalidFlow" => ErrorKind::InvalidFlow,
            "AuthFailed" => ErrorKind::AuthFailed,
            "SourceRejected" => ErrorKind::SourceRejected,
            "SourceUnavailable" => ErrorKind::SourceUnavailable,
            "Fatal" => ErrorKind::Fatal,
            _ => return None,
        })
    }

    /// Whether the state machine retries this kind.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Throttled | ErrorKind::Retryable)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a step returns on failure: a stable name and a message that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{kind}: {message}")]
pub struct StepError {
    pub kind: ErrorKind,
    pub message: String,
}

impl StepError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        StepError {
            kind,
            message: message.into(),
        }
    }
    pub fn fatal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Fatal, message)
    }
    pub fn invalid_flow(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidFlow, message)
    }
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Retryable, message)
    }
}

/// Errors of the stores (flow store, run store, blob store, secret store, event sink).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    /// A conditional write lost: the lease is held by another run, or state moved underneath us.
    #[error("{0}")]
    Conflict(String),
    #[error("{what}: {source}")]
    Backend {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}")]
    Invalid(String),
    /// The caller's permissions refused the call (IAM AccessDenied and its kin). Retrying cannot
    /// help; the message keeps AWS's, which names the principal, the action and the resource.
    #[error("{0}")]
    Denied(String),
}

impl StoreError {
    pub fn backend(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Backend {
            what: what.into(),
            source: Box::new(source),
        }
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        let kind = match &e {
            StoreError::Backend { .. } => ErrorKind::Retryable,
            StoreError::Invalid(_) => ErrorKind::InvalidFlow,
            StoreError::NotFound(_) | StoreError::Conflict(_) | StoreError::Denied(_) => {
                ErrorKind::Fatal
            }
        };
        StepError::new(kind, error_chain(&e))
    }
}

/// `e: cause: cause` — the whole chain on one line, for messages that must say everything.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        cur = c.source();
    }
    s
}
