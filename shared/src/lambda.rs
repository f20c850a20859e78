//! The glue every Lambda function shares: JSON logs, the steps' dependencies from the
//! environment, and step errors as a Lambda [`Diagnostic`] whose `errorType` is the stable name
//! (`Throttled`, `Retryable`, `InvalidFlow`, `AuthFailed`, `SourceRejected`, `Fatal`) that the
//! state machine's Retry/Catch match.
//!
//! A function's `main` is one call to [`run`] with its step's typed handler:
//! `ferry::lambda::run(Step::FetchPage, |deps, input| async move { fetch_page::handle(&deps, input).await })`.
//! No embedded-engine code is involved: the Lambdas call the steps directly.

use crate::error::StepError;
use crate::steps::Deps;
pub use crate::steps::Step;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// JSON logs (CloudWatch), filtered by `RUST_LOG` (default `info`).
pub fn init() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_current_span(false)
        .without_time()
        .try_init();
}

impl From<StepError> for Diagnostic {
    fn from(e: StepError) -> Self {
        Diagnostic {
            error_type: e.kind.as_str().to_string(),
            error_message: e.message,
        }
    }
}

fn diagnostic(step: Step, e: StepError) -> Diagnostic {
    tracing::warn!(step = step.name(), error = %e.kind, message = %e.message, "step failed");
    Diagnostic::from(e)
}

/// Serve one step until the runtime stops: settings and clients from the environment once (cold
/// start), then each invocation's typed input to `handler`; a step error reaches Step Functions
/// with its stable name as `errorType`.
pub async fn run<I, O, F, Fut>(step: Step, handler: F) -> Result<(), lambda_runtime::Error>
where
    I: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    F: Fn(Deps, I) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<O, StepError>> + Send,
{
    init();
    let deps = crate::adapters::aws::deps_from_env().await?;
    let handler = &handler;
    let deps = &deps;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |ev: LambdaEvent<I>| async move {
            handler(deps.clone(), ev.payload)
                .await
                .map_err(|e| diagnostic(step, e))
        },
    ))
    .await
}

/// Run one step on a JSON payload, as its Lambda would (the dispatch the embedded engine uses
/// too): for tests and tools that hold a payload rather than a typed input.
pub async fn invoke(
    deps: &Deps,
    step: Step,
    payload: serde_json::Value,
) -> Result<serde_json::Value, Diagnostic> {
    crate::steps::dispatch(deps, step, payload)
        .await
        .map_err(|e| diagnostic(step, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, StepError};

    #[test]
    fn step_errors_keep_their_stable_name() {
        let d: Diagnostic = StepError::new(ErrorKind::Throttled, "slow down").into();
        assert_eq!(d.error_type, "Throttled");
        assert_eq!(d.error_message, "slow down");
    }
}
