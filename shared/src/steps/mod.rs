//! The five steps of a run, as plain async functions over the ports: testable without Lambda,
//! called by the Lambda binaries and by the embedded engine alike. Their inputs and outputs are
//! the state machine's payloads: pointers and small numbers, never records.

pub mod fetch_page;
pub mod finalize;
pub mod hand_off;
pub mod lease;
pub mod progress;
pub mod slices;
pub mod staging;
pub mod start_run;
pub mod transform_batch;
pub mod window;
pub mod write_s3;

use crate::connector::{ConnectorContext, Source};
use crate::error::{ErrorKind, StepError};
use crate::flow::Flow;
use crate::model::{PullMode, TriggerType, Window};
use crate::ports::{
    BlobStore, Clock, DestinationResolver, EventSink, FlowStore, RunStore, SecretStore,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Everything a step needs, built once per process.
#[derive(Clone)]
pub struct Deps {
    pub flows: Arc<dyn FlowStore>,
    pub runs: Arc<dyn RunStore>,
    /// Staging area: raw chunks and Arrow batches between steps.
    pub staging: Arc<dyn BlobStore>,
    pub destinations: Arc<dyn DestinationResolver>,
    pub secrets: Arc<dyn SecretStore>,
    pub events: Arc<dyn EventSink>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn crate::ports::Metrics>,
    /// Where `destination.catalog` tables go (Glue on AWS, a file per table locally).
    pub catalog: Arc<dyn crate::ports::Catalog>,
    pub settings: Settings,
}

/// Engine-wide knobs (not per flow).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a run lease lasts without renewal; every step renews it ([`lease`]).
    pub lease_ttl: Duration,
    /// EventBridge `source` of run reports.
    pub event_source: String,
    /// Who holds the leases this engine takes: `local:<host>:<pid>` for the embedded engine (a
    /// run whose process died is found by it), `None` on AWS.
    pub lease_holder: Option<String>,
    /// Whether a run's slices run in this one process (the embedded engine: they share its
    /// request-budget limiters) rather than each in a process of its own (Lambda: each takes
    /// its share of the budget).
    pub one_process: bool,
    /// The embedded engine's in-process hand-off of staged Arrow chunks ([`hand_off`]);
    /// `None` on AWS, where every step is a process of its own.
    pub hand_off: Option<Arc<hand_off::HandOff>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            // Longer than any gap between two renewals the state machine can make.
            lease_ttl: lease::default_ttl(),
            event_source: "ferry".into(),
            lease_holder: None,
            one_process: false,
            hand_off: None,
        }
    }
}

/// The run, as every step after start-run sees it (the `run` object of the state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunContext {
    pub run_id: String,
    pub flow: String,
    pub flow_version: u32,
    pub execution_id: String,
    pub trigger: TriggerType,
    pub mode: PullMode,
    pub window: Window,
    pub started_at: DateTime<Utc>,
    pub schema_version: u32,
    /// `staging/<flow>/<run_id>`.
    pub staging_prefix: String,
}

impl RunContext {
    /// The run context a stored run record describes (for ending a run whose execution is
    /// gone: the reapers).
    pub fn from_record(r: &crate::model::RunRecord) -> RunContext {
        RunContext {
            run_id: r.run_id.clone(),
            flow: r.flow.clone(),
            flow_version: r.flow_version,
            execution_id: r.execution_id.clone(),
            trigger: r.trigger,
            mode: r.mode,
            window: r.window,
            started_at: r.started_at,
            schema_version: r.schema_version,
            staging_prefix: format!("staging/{}/{}", r.flow, r.run_id),
        }
    }

    /// The window the source is asked for: none in complete mode.
    pub fn source_window(&self) -> Option<Window> {
        match self.mode {
            PullMode::Complete => None,
            PullMode::Incremental | PullMode::Backfill => Some(self.window),
        }
    }
}

/// The flow version this run was started with.
pub(crate) async fn load_flow(
    deps: &Deps,
    name: &str,
    version: Option<u32>,
) -> Result<(Flow, u32), StepError> {
    match deps.flows.get_flow(name, version).await? {
        Some(s) => Ok((s.flow, s.version)),
        None => Err(StepError::invalid_flow(match version {
            None => format!("flow '{name}' is not registered; register it with `ferry flows put FILE` (or `ferry run FILE`)"),
            Some(v) => format!("flow '{name}' has no version {v}; it was deleted or replaced while the run was going"),
        })),
    }
}

pub(crate) async fn build_source(deps: &Deps, flow: &Flow) -> Result<Box<dyn Source>, StepError> {
    let ctx = ConnectorContext {
        secrets: deps.secrets.clone(),
    };
    Ok(crate::connector::build(&flow.source, &ctx).await?)
}

/// Renew the run's lease at the start of a step ([`lease`]): a run that lost it stops.
pub(crate) async fn renew_lease(deps: &Deps, run: &RunContext) -> Result<(), StepError> {
    let expires =
        deps.clock.now() + chrono::Duration::from_std(deps.settings.lease_ttl).unwrap_or_default();
    deps.runs
        .renew_lease(&run.flow, &run.run_id, expires)
        .await
        .map_err(|e| match e {
            crate::error::StoreError::Conflict(m) => StepError::fatal(m),
            other => other.into(),
        })
}

/// Write one object of a run, fenced by the run's lease (the run's outputs and staging alike).
///
/// A run can be ended from outside while a step is still running: stopped, reaped after a
/// runtime error, timed out. The end releases the lease first and removes what the run wrote
/// after (finalize's failure path). So: the renewal before the write fails a step whose run has
/// already ended; the renewal after it tells whether the end came while the write was in flight.
/// If the lease still holds, the write landed before the end's removal began and that removal
/// sees it; if not, the removal may have listed before the write landed, so the step removes
/// what it wrote itself and fails. Either way nothing the run wrote survives its end.
pub(crate) async fn fenced_put(
    deps: &Deps,
    run: &RunContext,
    store: &dyn BlobStore,
    key: &str,
    body: Vec<u8>,
    opts: &crate::ports::PutOptions,
) -> Result<(), StepError> {
    renew_lease(deps, run).await?;
    store.put(key, body, opts).await?;
    if let Err(e) = renew_lease(deps, run).await {
        if let Err(d) = store.delete(key).await {
            tracing::warn!(run_id = %run.run_id, key, error = %d, "could not remove a write that landed after its run ended; the run's cleanup or the lifecycle rule will");
        }
        return Err(e);
    }
    Ok(())
}

/// [`fenced_put`] into staging.
pub(crate) async fn fenced_stage(
    deps: &Deps,
    run: &RunContext,
    key: &str,
    body: Vec<u8>,
) -> Result<(), StepError> {
    fenced_put(
        deps,
        run,
        deps.staging.as_ref(),
        key,
        body,
        &Default::default(),
    )
    .await
}

pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> StepError {
    StepError::new(ErrorKind::Fatal, format!("{what}: {e}"))
}

/// The five steps, by their Lambda package name (also the suffix of the embedded engine's Task
/// resources, `ferry:local:<step>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    StartRun,
    FetchPage,
    TransformBatch,
    WriteS3,
    Finalize,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::StartRun,
        Step::FetchPage,
        Step::TransformBatch,
        Step::WriteS3,
        Step::Finalize,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::StartRun => "start-run",
            Step::FetchPage => "fetch-page",
            Step::TransformBatch => "transform-batch",
            Step::WriteS3 => "write-s3",
            Step::Finalize => "finalize",
        }
    }

    /// The step a Task resource names (`...:fetch-page`).
    pub fn from_resource(resource: &str) -> Option<Step> {
        let last = resource.rsplit(':').next().unwrap_or_default();
        Step::ALL.into_iter().find(|s| s.name() == last)
    }
}

/// Run one step on a state machine payload: the dispatch the Lambda functions and the embedded
/// engine share, so both deserialize, call and fail identically. A payload of the wrong shape
/// is `Fatal` (the state machine and the step disagree: a bug, not a retry).
pub async fn dispatch(
    deps: &Deps,
    step: Step,
    payload: serde_json::Value,
) -> Result<serde_json::Value, StepError> {
    async fn call<I, O, Fut>(
        payload: serde_json::Value,
        f: impl FnOnce(I) -> Fut,
    ) -> Result<serde_json::Value, StepError>
    where
        I: serde::de::DeserializeOwned,
        O: Serialize,
        Fut: std::future::Future<Output = Result<O, StepError>>,
    {
        let input: I = serde_json::from_value(payload).map_err(|e| {
            StepError::fatal(format!(
                "the step's input does not have the expected shape: {e}"
            ))
        })?;
        let out = f(input).await?;
        serde_json::to_value(out).map_err(|e| internal("encode the step's output", e))
    }
    match step {
        Step::StartRun => call(payload, |i| start_run::handle_event(deps, i)).await,
        Step::FetchPage => call(payload, |i| fetch_page::handle(deps, i)).await,
        Step::TransformBatch => call(payload, |i| transform_batch::handle(deps, i)).await,
        Step::WriteS3 => call(payload, |i| write_s3::handle(deps, i)).await,
        Step::Finalize => call(payload, |i| finalize::handle_event(deps, i)).await,
    }
}
