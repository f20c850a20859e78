//! The glue every Lambda function shares: JSON logs, the steps' dependencies from the
//! environment, and step errors as a Lambda [`Diagnostic`] whose `errorType` is the stable name
//! (`Throttled`, `Retryable`, `InvalidFlow`, `AuthFailed`, `SourceRejected`, `Fatal`) that the
//! state machine's Retry/Catch match.
//!
//! A function's `main` is: [`init`], [`crate::adapters::aws::deps_from_env`], then
//! `lambda_runtime::run(service_fn(|ev| ferry::lambda::handle(&deps, STEP, ev)))`.

use crate::local::asl::TaskInvoker;
use crate::local::StepInvoker;
use crate::steps::Deps;
use lambda_runtime::{Diagnostic, LambdaEvent};

/// The five steps, by their Lambda package name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    StartRun,
    FetchPage,
    TransformBatch,
    WriteS3,
    Finalize,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::StartRun => "start-run",
            Step::FetchPage => "fetch-page",
            Step::TransformBatch => "transform-batch",
            Step::WriteS3 => "write-s3",
            Step::Finalize => "finalize",
        }
    }
}

/// JSON logs (CloudWatch), filtered by `RUST_LOG` (default `info`), and EMF metrics on stdout.
pub fn init() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_current_span(false)
        .without_time()
        .try_init();
    crate::adapters::metrics::emit_to_stdout();
}

/// Run one step on a Step Functions payload: the same dispatch the embedded engine uses, so
/// both engines deserialize, call and fail identically.
pub async fn invoke(
    deps: &Deps,
    step: Step,
    payload: serde_json::Value,
) -> Result<serde_json::Value, Diagnostic> {
    if step == Step::Finalize && payload["detail-type"] == STATUS_CHANGE {
        return reap_execution(deps, &payload).await;
    }
    let invoker = StepInvoker { deps: deps.clone() };
    match invoker.invoke(step.name(), payload).await {
        Ok(out) => {
            if step == Step::StartRun {
                if let Some(flow) = out.pointer("/run/flow").and_then(|f| f.as_str()) {
                    crate::adapters::metrics::run_started(flow, deps.clock.now());
                }
            }
            Ok(out)
        }
        Err(f) => {
            tracing::warn!(step = step.name(), error = %f.error, message = %f.cause, "step failed");
            Err(Diagnostic {
                error_type: f.error,
                error_message: f.cause,
            })
        }
    }
}

/// The EventBridge event Step Functions sends when an execution changes status.
pub const STATUS_CHANGE: &str = "Step Functions Execution Status Change";

/// The reaper (template.yaml's `ExecutionEndedRule` targets finalize): an execution of the
/// flow-run state machine that ended FAILED, TIMED_OUT or ABORTED. If it ended without its
/// failure path (a runtime error, a payload or history limit, a timeout, an abort), the run is
/// still InProgress: finalize's failure path ends it now. Otherwise nothing happens.
async fn reap_execution(
    deps: &Deps,
    event: &serde_json::Value,
) -> Result<serde_json::Value, Diagnostic> {
    let detail = &event["detail"];
    let Some(run_id) = detail["name"].as_str() else {
        return Err(Diagnostic {
            error_type: "Fatal".into(),
            error_message: "execution status change without detail.name".into(),
        });
    };
    let status = detail["status"].as_str().unwrap_or_default();
    let (error, cause) = match status {
        "ABORTED" => (
            crate::steps::finalize::CANCELED.to_string(),
            "the execution was stopped (StopExecution or the console)".to_string(),
        ),
        "TIMED_OUT" => (
            "States.Timeout".to_string(),
            "the execution timed out".to_string(),
        ),
        _ => (
            detail["error"]
                .as_str()
                .unwrap_or("States.Runtime")
                .to_string(),
            detail["cause"]
                .as_str()
                .unwrap_or("the execution failed")
                .to_string(),
        ),
    };
    let rec = crate::steps::finalize::reap(deps, run_id, &error, &cause).await?;
    if rec.is_none() {
        // It failed before recording itself (start-run): it may still hold its flow's lease.
        let input: serde_json::Value = detail["input"]
            .as_str()
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or_default();
        if let Some(flow) = input["flow"].as_str() {
            deps.runs
                .release_lease(flow, run_id)
                .await
                .map_err(crate::error::StepError::from)?;
        }
    }
    Ok(serde_json::json!({"run_id": run_id, "status": rec.map(|r| r.status.as_str().to_string())}))
}

/// The handler a function passes to `service_fn`.
pub async fn handle(
    deps: &Deps,
    step: Step,
    event: LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, Diagnostic> {
    invoke(deps, step, event.payload).await
}

/// Build the deps from the environment and serve `step` until the runtime stops.
pub async fn serve(step: Step) -> Result<(), lambda_runtime::Error> {
    init();
    let deps = crate::adapters::aws::deps_from_env().await?;
    lambda_runtime::run(lambda_runtime::service_fn(|ev| handle(&deps, step, ev))).await
}

impl From<crate::error::StepError> for Diagnostic {
    fn from(e: crate::error::StepError) -> Self {
        Diagnostic {
            error_type: e.kind.as_str().to_string(),
            error_message: e.message,
        }
    }
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
