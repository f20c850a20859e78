//! finalize: on success write the manifest (the commit marker), move the watermark with a
//! conditional write naming the lease, complete the run record, report, clean staging. On the
//! failure path: mark the run failed with its error, leave the watermark, release the lease,
//! remove what the run wrote, and deactivate a scheduled flow past its failure threshold.

use super::*;
use crate::error::StoreError;
use crate::flow::{Flow, Location, Trigger};
use crate::model::{ChunkStage, Manifest, PullMode, RunError, RunRecord, RunStatus};
use crate::output::layout::manifest_key;
use crate::ports::{Event, FlowStatus, PutOptions, StateCommit};
use serde_json::json;

/// The error a Catch hands over (`{"Error": ..., "Cause": ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaughtError {
    #[serde(rename = "Error")]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

impl CaughtError {
    /// The message: Lambda wraps it as `{"errorMessage": ..., "errorType": ...}`.
    pub fn message(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.cause)
            .ok()
            .and_then(|v| {
                v.get("errorMessage")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| self.cause.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalizeInput {
    pub run: RunContext,
    #[serde(default)]
    pub error: Option<CaughtError>,
}

pub async fn handle(deps: &Deps, input: FinalizeInput) -> Result<RunRecord, StepError> {
    match &input.error {
        None => succeed(deps, &input.run).await,
        Some(err) => fail(deps, &input.run, err).await,
    }
}

async fn base_record(deps: &Deps, run: &RunContext) -> Result<RunRecord, StepError> {
    deps.runs.get_run(&run.run_id).await?.ok_or_else(|| {
        StepError::fatal(format!(
            "run {} has no run record; was it started by start-run?",
            run.run_id
        ))
    })
}

/// Totals from the per-chunk results (never summed in the state machine).
async fn totals(
    deps: &Deps,
    run: &RunContext,
    rec: &mut RunRecord,
) -> Result<Vec<crate::model::OutputObject>, StepError> {
    let results = deps.runs.chunk_results(&run.run_id).await?;
    let mut files = vec![];
    let (mut processed, mut bytes_in, mut filtered, mut rejected, mut written, mut bytes_out) =
        (0, 0, 0, 0, 0, 0);
    let mut chunks = 0;
    let mut max_cursor = None;
    let mut warnings = vec![];
    for r in results {
        match r.stage {
            ChunkStage::Fetch => {
                processed += r.records;
                bytes_in += r.bytes;
                max_cursor = max_cursor.max(r.max_cursor);
                chunks = chunks.max(r.chunk + 1);
            }
            ChunkStage::Transform => {
                filtered += r.filtered;
                rejected += r.rejected;
            }
            ChunkStage::Write => {
                written += r.records;
                bytes_out += r.bytes;
                files.extend(r.files);
            }
        }
        warnings.extend(r.warnings);
    }
    rec.records_processed = processed;
    rec.bytes_processed = bytes_in;
    rec.records_filtered = filtered;
    rec.records_rejected = rejected;
    rec.records_written = written;
    rec.bytes_written = bytes_out;
    rec.files_written = files.len() as u64;
    rec.chunks = chunks;
    rec.max_cursor = max_cursor;
    warnings.sort();
    warnings.dedup();
    rec.warnings = warnings;
    Ok(files)
}

fn dest_prefix(flow: &Flow) -> String {
    match flow.destination.location() {
        Location::S3(s3) => s3.prefix,
        Location::Local { .. } => String::new(),
    }
}

async fn succeed(deps: &Deps, run: &RunContext) -> Result<RunRecord, StepError> {
    let (flow, _) = load_flow(deps, &run.flow, Some(run.flow_version)).await?;
    let mut rec = base_record(deps, run).await?;
    // Every object was written by write-s3, the last files by its final flush ("Flush Output").
    let files = totals(deps, run, &mut rec).await?;
    let now = deps.clock.now();

    // 1. The manifest: the commit marker listing every object.
    let store = deps
        .destinations
        .resolve(&flow.destination.location())
        .await?;
    let key = manifest_key(&dest_prefix(&flow), &flow.name, &run.run_id);
    let manifest = Manifest {
        flow: flow.name.clone(),
        flow_version: run.flow_version,
        run_id: run.run_id.clone(),
        execution_id: run.execution_id.clone(),
        window: run.window,
        mode: run.mode,
        schema_version: run.schema_version,
        records_written: rec.records_written,
        bytes_written: rec.bytes_written,
        committed_at: now,
        objects: files,
    };
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| internal("encode manifest", e))?;
    store
        .put(
            &key,
            body,
            &PutOptions {
                content_type: Some("application/json".into()),
                content_encoding: None,
            },
        )
        .await?;

    // 2. The watermark, only if this run still holds the lease.
    let schema_doc: serde_json::Value =
        serde_json::from_slice(&deps.staging.get(&run.schema_key()).await?)
            .map_err(|e| internal("read the run's staged schema", e))?;
    let commit = StateCommit {
        watermark: (run.mode == PullMode::Incremental).then_some(run.window.end),
        schema_version: run.schema_version,
        schema: Some(schema_doc["output_fingerprint"].clone()),
    };
    if let Err(e) = deps
        .runs
        .commit_success(&flow.name, &run.run_id, &commit)
        .await
    {
        let msg = match &e {
            StoreError::Conflict(m) => m.clone(),
            other => other.to_string(),
        };
        rec.status = RunStatus::Error;
        rec.error = Some(RunError {
            error: "Fatal".into(),
            message: msg.clone(),
        });
        rec.last_updated_at = now;
        deps.runs.put_run(&rec).await?;
        return Err(match e {
            StoreError::Conflict(_) => StepError::fatal(msg),
            other => other.into(),
        });
    }

    // 3. The run record, the report, the metrics, the cleanup.
    rec.status = RunStatus::Successful;
    rec.manifest_key = Some(store.uri(&key));
    rec.watermark_after = commit.watermark;
    rec.last_updated_at = now;
    deps.runs.put_run(&rec).await?;
    report(deps, &flow, &rec).await;
    if let Err(e) = deps.staging.delete_prefix(&run.staging_prefix).await {
        tracing::warn!(run_id = %run.run_id, error = %e, "staging cleanup failed; the lifecycle rule will expire it");
    }
    tracing::info!(flow = %flow.name, run_id = %run.run_id, records = rec.records_written, files = rec.files_written, "run succeeded");
    Ok(rec)
}

async fn fail(deps: &Deps, run: &RunContext, err: &CaughtError) -> Result<RunRecord, StepError> {
    let now = deps.clock.now();
    let mut rec = base_record(deps, run).await?;
    let files = totals(deps, run, &mut rec).await.unwrap_or_default();
    // Nothing this run wrote is presented as output: no manifest, and its objects go.
    if let Ok((flow, _)) = load_flow(deps, &run.flow, Some(run.flow_version)).await {
        if let Ok(store) = deps
            .destinations
            .resolve(&flow.destination.location())
            .await
        {
            for f in &files {
                if let Err(e) = store.delete(&f.key).await {
                    tracing::warn!(run_id = %run.run_id, key = %f.key, error = %e, "could not remove a failed run's object");
                }
            }
        }
    }
    rec.records_written = 0;
    rec.bytes_written = 0;
    rec.files_written = 0;
    rec.status = RunStatus::Error;
    rec.error = Some(RunError {
        error: err.error.clone(),
        message: err.message(),
    });
    rec.last_updated_at = now;
    let failures = deps.runs.record_failure(&run.flow, &run.run_id).await?;
    deps.runs.put_run(&rec).await?;
    if let Ok((flow, _)) = load_flow(deps, &run.flow, Some(run.flow_version)).await {
        report(deps, &flow, &rec).await;
        if let Trigger::Scheduled(s) = &flow.trigger {
            let threshold = s.deactivate_after_failures.unwrap_or(3);
            if run.trigger == crate::model::TriggerType::Scheduled && failures >= threshold {
                deps.flows
                    .set_status(&flow.name, FlowStatus::Suspended)
                    .await?;
                let ev = Event {
                    detail_type: "ferry Scheduled Flow Deactivated".into(),
                    detail: json!({
                        "flow-name": flow.name,
                        "deactivation-reason": format!("{failures} consecutive failed runs (threshold {threshold}); last error: {}", err.message()),
                        "deactivation-time": now.to_rfc3339(),
                    }),
                    time: now,
                };
                let _ = deps.events.publish(&ev).await;
            }
        }
    }
    let _ = deps.staging.delete_prefix(&run.staging_prefix).await;
    tracing::warn!(flow = %run.flow, run_id = %run.run_id, error = %err.error, "run failed");
    Ok(rec)
}

async fn report(deps: &Deps, flow: &Flow, rec: &RunRecord) {
    crate::adapters::metrics::run_finished(rec);
    let ev = Event {
        detail_type: "ferry End Flow Run Report".into(),
        detail: report_detail(flow, rec, Some(rec.last_updated_at)),
        time: rec.last_updated_at,
    };
    if let Err(e) = deps.events.publish(&ev).await {
        tracing::warn!(run_id = %rec.run_id, error = %e, "could not publish the run report");
    }
}

/// AppFlow's run report detail fields, under ferry's names for ferry's things.
pub fn report_detail(
    flow: &Flow,
    rec: &RunRecord,
    end: Option<chrono::DateTime<chrono::Utc>>,
) -> serde_json::Value {
    let status = match (&rec.status, &rec.error) {
        (RunStatus::Successful, _) => "Execution Successful".to_string(),
        (RunStatus::InProgress, _) => "InProgress".to_string(),
        (_, Some(e)) => format!("{}: {}", e.error, e.message),
        (s, None) => s.as_str().to_string(),
    };
    json!({
        "flow-name": flow.name,
        "flow-version": rec.flow_version,
        "execution-id": rec.execution_id,
        "run-id": rec.run_id,
        "source": flow.source.connector,
        "source-object": flow.source.entity,
        "destination": flow.destination.location().to_string(),
        "trigger-type": rec.trigger.appflow_name(),
        "start-time": rec.started_at.to_rfc3339(),
        "end-time": end.map(|t| t.to_rfc3339()),
        "incremental-transfer-time-range": {
            "start": rec.window.start.map(|t| t.to_rfc3339()),
            "end": rec.window.end.to_rfc3339(),
        },
        "num-of-records-processed": rec.records_processed,
        "num-of-records-filtered": rec.records_filtered,
        "num-of-record-failures": rec.records_rejected,
        "num-of-records-written": rec.records_written,
        "data-processed": rec.bytes_processed,
        "data-written": rec.bytes_written,
        "status": status,
        "error": rec.error.as_ref().map(|e| json!({"name": e.error, "message": e.message})),
    })
}
