//! Adapters behind the ports: embedded ones (SQLite, local directory, secrets file, event log)
//! for laptops and tests, in-memory ones for unit tests, AWS ones for production.

pub mod catalog_file;
pub mod event_log;
pub mod localfs;
pub mod memory;
pub mod secrets_file;
#[cfg(feature = "local")]
pub mod sqlite;

// AWS (production).
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(feature = "aws")]
pub mod eventbridge;
#[cfg(feature = "aws")]
pub mod glue;
pub mod metrics;
#[cfg(feature = "aws")]
pub mod s3;
#[cfg(feature = "aws")]
pub mod scheduler;
#[cfg(feature = "aws")]
pub mod secretsmanager;

#[cfg(feature = "aws")]
use crate::error::StoreError;
#[cfg(feature = "aws")]
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// Error codes AWS APIs use when the caller's permissions refuse a call.
#[cfg(feature = "aws")]
const DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
    "AuthorizationErrorException",
    "KMSAccessDeniedException",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
];

/// An AWS SDK error as a store error: a refused permission becomes [`StoreError::Denied`] (not
/// retried: a retry meets the same policy), with AWS's message (which names the principal, the
/// action and the resource) and the fix; everything else is [`StoreError::Backend`].
#[cfg(feature = "aws")]
pub(crate) fn sdk_error<E, R>(what: impl Into<String>, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let what = what.into();
    if let Some(code) = e.code().filter(|c| DENIED_CODES.contains(c)) {
        let msg = e.message().unwrap_or("no message").to_string();
        return StoreError::Denied(format!(
            "{what}: {code}: {msg}. The caller's IAM role does not allow this call: grant the action on \
             that resource to the function's role in template.yaml (or to your own credentials)"
        ));
    }
    StoreError::backend(what, e)
}
