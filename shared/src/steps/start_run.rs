//! start-run: load the flow, take the run lease, compute the window, record the run.

use super::*;
use crate::error::StoreError;
use crate::model::{RunRecord, RunStatus};
use crate::ports::{Event, FlowStatus};

/// What starts a run (the execution's input).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub flow: String,
    #[serde(default)]
    pub trigger: Option<TriggerType>,
    /// Override the flow's mode: `complete` rereads everything.
    #[serde(default)]
    pub mode: Option<PullMode>,
    /// A backfill: read exactly this window; the watermark does not move.
    #[serde(default)]
    pub window: Option<Window>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartRunInput {
    pub request: RunRequest,
    pub execution_id: String,
    /// Unique per execution; becomes the run id.
    pub execution_name: String,
}

/// Where the fetch loop starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageState {
    pub cursor: serde_json::Value,
    pub next_chunk: u32,
    pub has_more: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartRunOutput {
    pub run: RunContext,
    pub page: PageState,
}

pub async fn handle(deps: &Deps, input: StartRunInput) -> Result<StartRunOutput, StepError> {
    let req = &input.request;
    // Microseconds: what every store keeps, so a watermark reads back equal to the window end.
    let now = chrono::SubsecRound::trunc_subsecs(deps.clock.now(), 6);
    let stored = deps.flows.get_flow(&req.flow, None).await?.ok_or_else(|| {
        StepError::invalid_flow(format!(
            "flow '{}' is not registered; register it with `ferry flows put FILE` (or `ferry run FILE`)",
            req.flow
        ))
    })?;
    let flow = &stored.flow;
    let trigger = req.trigger.unwrap_or_default();
    if stored.status == FlowStatus::Suspended && trigger == TriggerType::Scheduled {
        return Err(StepError::invalid_flow(format!(
            "flow '{}' is suspended after repeated failures; fix the cause and re-activate it with `ferry flows put`",
            flow.name
        )));
    }
    let mode = super::window::mode(flow, req.mode, req.window.as_ref())?;

    // Everything that can fail because of the flow or its credentials fails before the lease:
    // where the output and rejected records go (an engine that cannot write there refuses now,
    // not after reading the source), the source and its description, the tasks.
    deps.destinations
        .resolve(&flow.destination.location())
        .await?;
    if let Some(errors) = flow.destination.error_location() {
        deps.destinations.resolve(&errors).await?;
    }
    let source = build_source(deps, flow).await?;
    let description = source.describe(&flow.source.entity).await?;
    let source_schema = crate::schema::arrow_schema(&description.fields);
    let plan =
        crate::transform::Plan::compile(&flow.tasks, source_schema.clone()).map_err(|errs| {
            StepError::invalid_flow(
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
    if let Some(inc) = &flow.source.incremental {
        if !description.fields.iter().any(|f| f.name == inc.field) {
            return Err(StepError::invalid_flow(format!(
                "source.incremental.field: '{}' is not a field of {}; datetime fields: {}",
                inc.field,
                flow.source.entity,
                description
                    .fields
                    .iter()
                    .filter(|f| f.incremental)
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }

    let run_id = input.execution_name.clone();
    let expires = now
        + chrono::Duration::from_std(deps.settings.lease_ttl)
            .unwrap_or(chrono::Duration::minutes(15));
    let claim = crate::ports::LeaseClaim {
        run_id: run_id.clone(),
        expires_at: expires,
        holder: deps.settings.lease_holder.clone(),
    };
    let state = deps
        .runs
        .acquire_lease(&flow.name, &claim, now)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => StepError::fatal(m),
            other => other.into(),
        })?;

    let result = async {
        let window = super::window::window(mode, &state, flow, now, req.window.as_ref());
        // The schema this run writes; a different one than last committed bumps the version.
        let fp = crate::schema::fingerprint(&plan.output_schema());
        let schema_version = match &state.schema {
            Some(prev) if *prev == fp => state.schema_version,
            _ => state.schema_version + 1,
        };
        let run = RunContext {
            run_id: run_id.clone(),
            flow: flow.name.clone(),
            flow_version: stored.version,
            execution_id: input.execution_id.clone(),
            trigger,
            mode,
            window,
            started_at: now,
            schema_version,
            staging_prefix: format!("staging/{}/{}", flow.name, run_id),
        };
        let mut staged = super::staging::StagedSchema::new(&source_schema, fp);
        staged.warnings = source.take_warnings();
        staged.put(deps, &run).await?;
        let record = RunRecord {
            run_id: run_id.clone(),
            flow: flow.name.clone(),
            flow_version: stored.version,
            execution_id: input.execution_id.clone(),
            status: RunStatus::InProgress,
            trigger,
            mode,
            started_at: now,
            last_updated_at: now,
            window,
            records_processed: 0,
            records_filtered: 0,
            records_rejected: 0,
            records_written: 0,
            bytes_processed: 0,
            bytes_written: 0,
            files_written: 0,
            chunks: 0,
            schema_version,
            manifest_key: None,
            max_cursor: None,
            watermark_after: None,
            warnings: vec![],
            error: None,
        };
        deps.runs.put_run(&record).await?;
        let event = Event {
            detail_type: "ferry Start Flow Run Report".into(),
            detail: crate::model::report_detail(&flow.reported(), &record, None),
            time: now,
        };
        if let Err(e) = deps.events.publish(&event).await {
            tracing::warn!(flow = %flow.name, run_id = %run_id, error = %e, "could not publish the start report");
        }
        deps.metrics.run_started(&flow.name, now);
        tracing::info!(flow = %flow.name, run_id = %run_id, mode = ?mode, start = ?window.start, end = %window.end, "run started");
        Ok::<_, StepError>(StartRunOutput {
            run,
            page: PageState { cursor: serde_json::Value::Null, next_chunk: 0, has_more: true },
        })
    }
    .await;
    if result.is_err() {
        // Give the lease back; the run never really started.
        let _ = deps.runs.record_failure(&flow.name, &run_id).await;
    }
    result
}
