//! finalize: commit a run exactly once, or end it leaving nothing behind.
//!
//! Success: sweep the run's uncommitted leftovers, write the manifest, then commit — the
//! watermark, the lease release and the final run record in one conditional, idempotent write
//! (a retried finalize of a committed run is a success that changes nothing). The manifest is
//! the commit point readers trust: if the commit is refused, the manifest goes first.
//!
//! Failure (the Catch path, and the reapers for runs whose execution ended without it): a run
//! that committed is never touched — nothing is deleted after a commit. Otherwise the manifest
//! goes first, then every object under the run's own keys (found by listing, so files no chunk
//! result recorded go too), its rejected records and its staging folder; the run is marked
//! failed (or canceled), the lease released without touching the watermark, and a scheduled
//! flow past its failure threshold is suspended.

use super::*;
use crate::error::StoreError;
use crate::flow::{Flow, Location, Trigger};
use crate::model::{ChunkStage, Manifest, RunError, RunRecord, RunStatus};
use crate::output::layout::{key_of_run, manifest_key, run_scan_prefix};
use crate::ports::{Event, FlowStatus, PutOptions, StateCommit};
use serde_json::json;

/// At most this many warnings are kept in a run record (and its report); the rest are counted.
pub const MAX_WARNINGS: usize = 20;

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

/// What finalize is invoked with: the state machine's payload, or (the reaper) the EventBridge
/// event Step Functions sends when an execution ends FAILED, TIMED_OUT or ABORTED
/// (template.yaml's `ExecutionEndedRule`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FinalizeEvent {
    /// First (as `SliceFailed`): a [`FinalizeInput`] would also read it.
    CommitSlice(SliceCommitInput),
    /// First: a [`FinalizeInput`] would also read it (without its `slice`).
    SliceFailed(SliceFailure),
    Run(FinalizeInput),
    ExecutionEnded(ExecutionStatusChange),
}

/// A slice's child execution caught an error ("Record Slice Failure"): kept in staging so the
/// run's failure path names the slice's error rather than the Map's
/// `States.ExceedToleratedFailureThreshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceFailure {
    pub run: RunContext,
    pub slice: super::slices::SliceItem,
    pub error: CaughtError,
}

/// "Commit Slice": a slice of a run that commits per slice (`source.slice.commit: slice`) ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceCommitInput {
    pub run: RunContext,
    pub commit_slice: super::slices::SliceItem,
}

/// The parts of a "Step Functions Execution Status Change" event the reaper reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecutionStatusChange {
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub detail: StatusChangeDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusChangeDetail {
    /// The execution name: the run id.
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub input: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
}

/// What finalize answers: the run record, or what the reaper did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FinalizeOutput {
    /// The failure path's answer: the error the execution ends with ("Run Failed" reads it) —
    /// a failed slice's own error rather than the Map's `States.ExceedToleratedFailureThreshold`.
    Failed(CaughtError),
    Run(Box<RunRecord>),
    Reaped {
        run_id: String,
        status: Option<String>,
    },
}

pub async fn handle_event(deps: &Deps, event: FinalizeEvent) -> Result<FinalizeOutput, StepError> {
    match event {
        FinalizeEvent::Run(input) => match &input.error {
            None => Ok(FinalizeOutput::Run(Box::new(handle(deps, input).await?))),
            Some(err) => {
                // Read before the failure path removes the run's staging.
                let reported = slice_error(deps, &input.run, err)
                    .await
                    .unwrap_or_else(|| err.clone());
                handle(deps, input).await?;
                Ok(FinalizeOutput::Failed(reported))
            }
        },
        FinalizeEvent::SliceFailed(f) => {
            let body = serde_json::to_vec(&f.error)
                .map_err(|e| internal("encode the slice's error", e))?;
            super::fenced_stage(
                deps,
                &f.run,
                &super::slices::failure_key(&f.run, f.slice.index),
                body,
            )
            .await?;
            tracing::warn!(run_id = %f.run.run_id, slice = f.slice.index, error = %f.error.error, "slice failed");
            Ok(FinalizeOutput::Reaped {
                run_id: f.run.run_id,
                status: None,
            })
        }
        FinalizeEvent::CommitSlice(c) => {
            commit_slice(deps, &c.run, &c.commit_slice).await?;
            Ok(FinalizeOutput::Reaped {
                run_id: c.run.run_id,
                status: None,
            })
        }
        FinalizeEvent::ExecutionEnded(change) => reap_execution(deps, &change).await,
    }
}

/// The key of slice `index`'s own manifest: `<prefix>/<flow>/_manifests/<run>-slice-NNNNNN.json`.
fn slice_manifest_key(flow: &Flow, run: &RunContext, index: u32) -> String {
    manifest_key(
        &dest_prefix(flow),
        &flow.name,
        &format!("{}-slice-{index:06}", run.run_id),
    )
}

/// The slice an object of the run was written by (from the chunk number in its name).
fn slice_of_key(key: &str) -> Option<u32> {
    crate::output::layout::chunk_of_key(key).map(super::slices::slice_of_chunk)
}

/// Whether an object belongs to one of `committed`'s slices.
fn in_committed(key: &str, committed: &[crate::model::CommittedSlice]) -> bool {
    slice_of_key(key).is_some_and(|s| committed.iter().any(|x| x.index == s))
}

/// A run's own committed slices, as the flow's ledger holds them.
async fn committed_slices_of(
    deps: &Deps,
    run: &RunContext,
) -> Result<Vec<crate::model::CommittedSlice>, StepError> {
    Ok(deps
        .runs
        .slice_ledger(&run.flow)
        .await?
        .slices
        .into_iter()
        .filter(|c| c.run_id == run.run_id)
        .collect())
}

/// "Commit Slice": commit one slice of a run on its own. Its leftovers go, its manifest is
/// written, then the flow's ledger records the slice and — an incremental run — moves the
/// watermark to the end of the committed prefix of the run's window, in one conditional write
/// that holds only while the run holds the lease. Refused: the manifest goes again. A retry of
/// a committed slice changes nothing.
async fn commit_slice(
    deps: &Deps,
    run: &RunContext,
    item: &super::slices::SliceItem,
) -> Result<(), StepError> {
    super::renew_lease(deps, run).await?;
    let ledger = deps.runs.slice_ledger(&run.flow).await?;
    if ledger
        .slices
        .iter()
        .any(|c| c.run_id == run.run_id && c.index == item.index)
    {
        return Ok(());
    }
    let window = item.window.filter(|w| w.start.is_some()).ok_or_else(|| {
        StepError::fatal(format!(
            "slice {} of run {} has no window of its own, so it cannot commit on its own",
            item.index, run.run_id
        ))
    })?;
    let (flow, _) = load_flow(deps, &run.flow, Some(run.flow_version)).await?;
    let mut results = deps.runs.chunk_results(&run.run_id).await?;
    results.retain(|r| super::slices::slice_of_chunk(r.chunk) == item.index);
    let mut rec = base_record(deps, run).await?;
    let files = totals_of(results, &mut rec);
    check_rejected(&flow, &rec, &format!("slice {}", item.index))?;
    let store = deps
        .destinations
        .resolve(&flow.destination.location())
        .await?;
    // Leftovers of this slice's crashed attempts go before its manifest vouches for it.
    let listed: std::collections::BTreeSet<&str> = files.iter().map(|f| f.key.as_str()).collect();
    for k in run_objects(store.as_ref(), &flow, run).await? {
        if slice_of_key(&k) == Some(item.index) && !listed.contains(k.as_str()) {
            tracing::info!(run_id = %run.run_id, key = %k, "removing an object no chunk result recorded");
            store.delete(&k).await?;
        }
    }
    let staged = super::staging::StagedSchema::get(deps, run).await?;
    let key = slice_manifest_key(&flow, run, item.index);
    let manifest = Manifest {
        flow: flow.name.clone(),
        flow_version: run.flow_version,
        run_id: run.run_id.clone(),
        execution_id: run.execution_id.clone(),
        window,
        mode: run.mode,
        schema_version: run.schema_version,
        records_written: rec.records_written,
        bytes_written: rec.bytes_written,
        committed_at: deps.clock.now(),
        objects: files,
        schema: written_schema(deps, run, &flow, &staged, rec.chunks).await,
        slice: Some(item.index),
        slices: vec![],
    };
    put_manifest(store.as_ref(), &key, &manifest).await?;
    let this = crate::model::CommittedSlice {
        run_id: run.run_id.clone(),
        index: item.index,
        mode: run.mode,
        start: window.start.unwrap_or(window.end),
        end: window.end,
        manifest: key.clone(),
        records: rec.records_written,
    };
    for _ in 0..100 {
        let ledger = deps.runs.slice_ledger(&run.flow).await?;
        if ledger.slices.contains(&this) {
            // A retry recorded it meanwhile.
            return Ok(());
        }
        let mut slices = ledger.slices;
        slices.push(this.clone());
        let watermark = match (run.mode, run.window.start) {
            (PullMode::Incremental, Some(from)) => {
                let parts: Vec<_> = slices
                    .iter()
                    .filter(|c| c.mode == PullMode::Incremental)
                    .map(|c| (c.start, c.end))
                    .collect();
                let low = super::slices::low_watermark(from, &parts).min(run.window.end);
                (low > from).then_some(low)
            }
            _ => None,
        };
        match deps
            .runs
            .put_slice_ledger(&run.flow, &run.run_id, ledger.rev, &slices, watermark)
            .await
        {
            Ok(true) => {
                tracing::info!(flow = %run.flow, run_id = %run.run_id, slice = item.index, records = this.records, watermark = ?watermark, "slice committed");
                let w = crate::catalog::after_commit(
                    deps.catalog.as_ref(),
                    store.as_ref(),
                    &flow,
                    &manifest,
                )
                .await;
                if !w.is_empty() {
                    tracing::warn!(run_id = %run.run_id, warnings = ?w, "catalog update after a slice's commit");
                }
                return Ok(());
            }
            Ok(false) => continue,
            Err(StoreError::Conflict(m)) => {
                // Refused: the manifest must not vouch for objects the failure path removes.
                store.delete(&key).await?;
                return Err(StepError::fatal(m));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(StepError::retryable(format!(
        "slice {} of run {}: the flow's committed slices kept changing while it committed; retrying",
        item.index, run.run_id
    )))
}

async fn put_manifest(store: &dyn BlobStore, key: &str, m: &Manifest) -> Result<(), StepError> {
    let body = serde_json::to_vec_pretty(m).map_err(|e| internal("encode manifest", e))?;
    store
        .put(
            key,
            body,
            &PutOptions {
                content_type: Some("application/json".into()),
                content_encoding: None,
            },
        )
        .await?;
    Ok(())
}

/// The flow's `destination.max_rejected` policy, and a run (or slice) whose every record was
/// rejected: nothing of it may commit.
fn check_rejected(flow: &Flow, rec: &RunRecord, what: &str) -> Result<(), StepError> {
    if let Some(limit) = &flow.destination.max_rejected {
        if limit.exceeded(rec.records_rejected, rec.records_processed) {
            return Err(StepError::new(
                crate::error::ErrorKind::SourceRejected,
                format!(
                    "{} of {} records of the {what} were rejected, more than destination.max_rejected ({limit}); nothing of it was committed and the watermark did not move past it (see the rejected records at destination.error_location, fix the source or the tasks, or raise the limit)",
                    rec.records_rejected, rec.records_processed
                ),
            ));
        }
    }
    if let Some(msg) = all_rejected(rec, flow.destination.max_rejected.is_some()) {
        return Err(StepError::new(crate::error::ErrorKind::SourceRejected, msg));
    }
    Ok(())
}

/// The reaper: an execution of the flow-run state machine that ended FAILED, TIMED_OUT or
/// ABORTED. If it ended without its failure path (a runtime error, a payload or history limit,
/// a timeout, an abort), the run is still InProgress: the failure path ends it now (ABORTED as
/// Canceled). A run that never recorded itself may still hold its flow's lease: released.
async fn reap_execution(
    deps: &Deps,
    change: &ExecutionStatusChange,
) -> Result<FinalizeOutput, StepError> {
    let d = &change.detail;
    let (error, cause) = match d.status.as_str() {
        "ABORTED" => (
            CANCELED.to_string(),
            "the execution was stopped (StopExecution or the console)".to_string(),
        ),
        "TIMED_OUT" => (
            "States.Timeout".to_string(),
            "the execution timed out".to_string(),
        ),
        _ => (
            d.error.clone().unwrap_or_else(|| "States.Runtime".into()),
            d.cause
                .clone()
                .unwrap_or_else(|| "the execution failed".into()),
        ),
    };
    let rec = reap(deps, &d.name, &error, &cause).await?;
    if rec.is_none() {
        let input: serde_json::Value = d
            .input
            .as_deref()
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or_default();
        if let Some(flow) = input["flow"].as_str() {
            deps.runs.release_lease(flow, &d.name).await?;
        }
    }
    Ok(FinalizeOutput::Reaped {
        run_id: d.name.clone(),
        status: rec.map(|r| r.status.as_str().to_string()),
    })
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

/// Cap a warning list at [`MAX_WARNINGS`], saying how many were left out.
pub fn cap_warnings(mut warnings: Vec<String>) -> Vec<String> {
    warnings.sort();
    warnings.dedup();
    if warnings.len() > MAX_WARNINGS {
        let more = warnings.len() - (MAX_WARNINGS - 1);
        warnings.truncate(MAX_WARNINGS - 1);
        warnings.push(format!("... and {more} more warnings"));
    }
    warnings
}

/// Totals from the per-chunk results (never summed in the state machine).
async fn totals(
    deps: &Deps,
    run: &RunContext,
    rec: &mut RunRecord,
) -> Result<Vec<crate::model::OutputObject>, StepError> {
    let results = deps.runs.chunk_results(&run.run_id).await?;
    Ok(totals_of(results, rec))
}

/// [`totals`] over the given chunk results (a run's, or one slice's).
fn totals_of(
    results: Vec<crate::model::ChunkResult>,
    rec: &mut RunRecord,
) -> Vec<crate::model::OutputObject> {
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
                // Slices number their chunks apart (steps::slices): count them.
                chunks += 1;
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
    rec.warnings = cap_warnings(warnings);
    files
}

fn dest_prefix(flow: &Flow) -> String {
    match flow.destination.location() {
        Location::S3(s3) => s3.prefix,
        Location::Local { .. } => String::new(),
    }
}

/// Every object of the run under the flow's output, found by listing (recorded or not).
async fn run_objects(
    store: &dyn BlobStore,
    flow: &Flow,
    run: &RunContext,
) -> Result<Vec<String>, StepError> {
    let scan = run_scan_prefix(
        &flow.destination.layout,
        &dest_prefix(flow),
        &flow.name,
        run.schema_version,
        run.started_at,
    );
    let manifests = manifest_key(&dest_prefix(flow), &flow.name, "")
        .trim_end_matches(".json")
        .to_string();
    Ok(store
        .list(&scan)
        .await?
        .into_iter()
        .filter(|k| !k.starts_with(&manifests) && key_of_run(k, &run.run_id))
        .collect())
}

async fn succeed(deps: &Deps, run: &RunContext) -> Result<RunRecord, StepError> {
    let rec = base_record(deps, run).await?;
    if rec.status == RunStatus::Successful || deps.runs.is_committed(&run.run_id).await? {
        // A retried finalize of a run that committed: the commit stands, nothing changes —
        // but the catalog update after it may not have happened (idempotent: done again).
        catalog_again(deps, run).await;
        return deps.runs.get_run(&run.run_id).await?.ok_or_else(|| {
            StepError::fatal(format!(
                "run {} committed but its record is gone",
                run.run_id
            ))
        });
    }
    let mut rec = rec;
    super::renew_lease(deps, run).await?;
    let (flow, _) = load_flow(deps, &run.flow, Some(run.flow_version)).await?;
    let results = deps.runs.chunk_results(&run.run_id).await?;
    let ledger = deps.runs.slice_ledger(&run.flow).await?;
    let mine: Vec<_> = ledger
        .slices
        .iter()
        .filter(|c| c.run_id == run.run_id)
        .cloned()
        .collect();
    // Committed slices were checked as they committed; the rest is checked here.
    let rest: Vec<_> = results
        .iter()
        .filter(|r| {
            !mine
                .iter()
                .any(|c| c.index == super::slices::slice_of_chunk(r.chunk))
        })
        .cloned()
        .collect();
    let files = totals_of(results, &mut rec);
    if mine.is_empty() {
        check_rejected(&flow, &rec, "run")?;
    } else if !rest.is_empty() {
        let mut others = rec.clone();
        totals_of(rest, &mut others);
        check_rejected(&flow, &others, "run's other slices")?;
    }
    let now = deps.clock.now();
    let store = deps
        .destinations
        .resolve(&flow.destination.location())
        .await?;

    // 1. Leftovers of crashed attempts (uploaded, never recorded) go before the commit, so
    //    once committed exactly the manifest's objects carry this run's id.
    let listed: std::collections::BTreeSet<&str> = files.iter().map(|f| f.key.as_str()).collect();
    for k in run_objects(store.as_ref(), &flow, run).await? {
        if !listed.contains(k.as_str()) {
            tracing::info!(run_id = %run.run_id, key = %k, "removing an object no chunk result recorded");
            store.delete(&k).await?;
        }
    }

    // 2. The manifest: the commit marker listing every object (and their schema, so the
    //    catalog can be rebuilt from manifests alone).
    let staged = super::staging::StagedSchema::get(deps, run).await?;
    let written = written_schema(deps, run, &flow, &staged, rec.chunks).await;
    let key = manifest_key(&dest_prefix(&flow), &flow.name, &run.run_id);
    // Objects of slices that committed on their own are listed by their slices' manifests.
    let (by_slices, own): (Vec<_>, Vec<_>) =
        files.into_iter().partition(|f| in_committed(&f.key, &mine));
    let mut manifest = Manifest {
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
        objects: own,
        schema: written,
        slice: None,
        slices: mine.iter().map(|c| c.manifest.clone()).collect(),
    };
    put_manifest(store.as_ref(), &key, &manifest).await?;
    // The flow's committed slices this commit makes obsolete: an incremental run's window
    // covers every incremental slice up to its end; a backfill the backfills' slices inside
    // its window.
    let keep: Vec<_> = ledger
        .slices
        .iter()
        .filter(|c| {
            c.run_id != run.run_id
                && match (run.mode, c.mode) {
                    (PullMode::Incremental, PullMode::Incremental) => c.end > run.window.end,
                    (PullMode::Backfill, PullMode::Backfill) => {
                        !(run.window.start.is_none_or(|s| c.start >= s) && c.end <= run.window.end)
                    }
                    _ => true,
                }
        })
        .cloned()
        .collect();
    let slices = (keep.len() != ledger.slices.len()).then_some(keep);

    // 3. The commit: watermark, lease, final record — one conditional write.
    rec.status = RunStatus::Successful;
    rec.manifest_key = Some(store.uri(&key));
    rec.watermark_after = super::window::next_watermark(run.mode, &run.window);
    rec.last_updated_at = now;
    let commit = StateCommit {
        watermark: rec.watermark_after,
        schema_version: run.schema_version,
        schema: Some(staged.output_fingerprint),
        record: Some(rec.clone()),
        slices,
    };
    if let Err(e) = deps
        .runs
        .commit_success(&flow.name, &run.run_id, &commit)
        .await
    {
        if let StoreError::Conflict(m) = &e {
            // Refused: the manifest must not stay to vouch for objects the failure path removes.
            store.delete(&key).await?;
            return Err(StepError::fatal(m.clone()));
        }
        // Unknown outcome (a timeout, a throttle): the retry finds the commit, or makes it.
        return Err(e.into());
    }

    // 4. After the commit: catalog, report, metrics, staging. Best effort: the run is
    //    committed; a catalog failure is a warning, repaired by the next run.
    manifest.objects.extend(by_slices);
    let catalog_warnings =
        crate::catalog::after_commit(deps.catalog.as_ref(), store.as_ref(), &flow, &manifest).await;
    if !catalog_warnings.is_empty() {
        rec.warnings.extend(catalog_warnings);
        rec.warnings = cap_warnings(std::mem::take(&mut rec.warnings));
        if let Err(e) = deps.runs.put_run(&rec).await {
            tracing::warn!(run_id = %run.run_id, error = %e, "could not add the catalog warnings to the run record");
        }
    }
    report(deps, &flow, &rec).await;
    if let Err(e) = super::staging::delete_run(deps, run).await {
        tracing::warn!(run_id = %run.run_id, error = %e, "staging cleanup failed; the lifecycle rule will expire it");
    }
    tracing::info!(flow = %flow.name, run_id = %run.run_id, records = rec.records_written, files = rec.files_written, "run succeeded");
    Ok(rec)
}

/// The schema the run's objects were written with: the flow's tasks over the declared source
/// schema, or over the schema inferred from the data (the last chunk's, the widest; a source
/// without declared fields is never sliced, so its chunks are numbered 0..chunks).
async fn written_schema(
    deps: &Deps,
    run: &RunContext,
    flow: &Flow,
    staged: &super::staging::StagedSchema,
    chunks: u32,
) -> Option<serde_json::Value> {
    let mut source = staged.source_schema().ok()?;
    if source.fields().is_empty() {
        let last = chunks.checked_sub(1)?;
        let body = super::staging::get_optional(deps, &super::staging::inferred_key(run, last))
            .await
            .ok()??;
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        source = crate::schema::schema_from_json(&v).ok()?;
    }
    let plan = crate::transform::Plan::compile(&flow.tasks, source).ok()?;
    let out = crate::output::output_schema(&plan.output_schema(), &flow.destination);
    Some(crate::schema::schema_to_json(&out))
}

/// A retried finalize of a committed run: register its manifest in the catalog again (a
/// crash may have come between the commit and the catalog update). Best effort.
async fn catalog_again(deps: &Deps, run: &RunContext) {
    let Ok((flow, _)) = load_flow(deps, &run.flow, Some(run.flow_version)).await else {
        return;
    };
    if flow.destination.catalog.is_none() {
        return;
    }
    let Ok(store) = deps
        .destinations
        .resolve(&flow.destination.location())
        .await
    else {
        return;
    };
    let key = manifest_key(&dest_prefix(&flow), &flow.name, &run.run_id);
    let Ok(body) = store.get(&key).await else {
        return;
    };
    if let Ok(m) = serde_json::from_slice::<Manifest>(&body) {
        let w =
            crate::catalog::after_commit(deps.catalog.as_ref(), store.as_ref(), &flow, &m).await;
        if !w.is_empty() {
            tracing::warn!(run_id = %run.run_id, warnings = ?w, "catalog update on a retried finalize");
        }
    }
}

/// A run whose every record was rejected wrote nothing the user asked for: it fails rather
/// than ending Successful with 0 rows, unless the flow set `destination.max_rejected` (its
/// policy then decides).
fn all_rejected(rec: &RunRecord, policy_set: bool) -> Option<String> {
    let kept = rec.records_processed.saturating_sub(rec.records_filtered);
    (!policy_set && rec.records_rejected > 0 && rec.records_rejected >= kept).then(|| {
        format!(
            "all {} records were rejected (none matched the source's schema or passed the flow's validate tasks), so nothing was committed and the watermark did not move; see the run's warnings and the rejected records at destination.error_location, then fix the declared fields or the tasks (or set destination.max_rejected to accept such runs)",
            rec.records_rejected
        )
    })
}

/// The error a failed slice recorded, when the Map reports only that its children failed.
async fn slice_error(deps: &Deps, run: &RunContext, err: &CaughtError) -> Option<CaughtError> {
    if err.error != "States.ExceedToleratedFailureThreshold" {
        return None;
    }
    let mut keys = deps
        .staging
        .list(&super::slices::failures_prefix(run))
        .await
        .ok()?;
    keys.sort();
    let body = super::staging::get_optional(deps, keys.first()?)
        .await
        .ok()??;
    serde_json::from_slice(&body).ok()
}

async fn fail(deps: &Deps, run: &RunContext, err: &CaughtError) -> Result<RunRecord, StepError> {
    let slice_err = slice_error(deps, run, err).await;
    let err = slice_err.as_ref().unwrap_or(err);
    let now = deps.clock.now();
    let mut rec = base_record(deps, run).await?;
    if rec.status == RunStatus::Successful || deps.runs.is_committed(&run.run_id).await? {
        // Committed before whatever failed after it: nothing is ever deleted after a commit.
        let mut rec = deps.runs.get_run(&run.run_id).await?.unwrap_or(rec);
        rec.warnings.push(format!(
            "the run committed, then its execution failed ({}: {}); its output stands",
            err.error,
            err.message()
        ));
        rec.warnings = cap_warnings(std::mem::take(&mut rec.warnings));
        deps.runs.put_run(&rec).await?;
        tracing::warn!(run_id = %run.run_id, error = %err.error, "the execution failed after the run committed; nothing removed");
        return Ok(rec);
    }
    if matches!(rec.status, RunStatus::Error | RunStatus::Canceled) && rec.error.is_some() {
        // Already ended by an earlier failure path (a reaper after the Catch): cleanup again,
        // idempotently, and keep the first error.
        let kept = committed_slices_of(deps, run).await?;
        cleanup(deps, run, &kept).await?;
        return Ok(rec);
    }
    let files = totals(deps, run, &mut rec).await.unwrap_or_default();
    // The lease goes first: it fences the run's writers (super::fenced_put), so a step still
    // running (an aborted execution's Lambda goes on) either fails before it writes or removes
    // what it wrote; what landed before this point the cleanup below sees. Idempotent: a retry
    // of this path holds no lease any more and counts nothing twice.
    let failures = if err.error == CANCELED {
        deps.runs.release_lease(&run.flow, &run.run_id).await?;
        0
    } else {
        deps.runs.record_failure(&run.flow, &run.run_id).await?
    };
    // Nothing this run wrote is presented as output — except what its slices committed on
    // their own (read after the lease went: no slice commits after that): manifest first,
    // then its objects.
    let kept = committed_slices_of(deps, run).await?;
    cleanup(deps, run, &kept).await?;
    let stays: Vec<_> = files
        .iter()
        .filter(|f| in_committed(&f.key, &kept))
        .collect();
    rec.records_written = kept.iter().map(|c| c.records).sum();
    rec.bytes_written = stays.iter().map(|f| f.bytes).sum();
    rec.files_written = stays.len() as u64;
    if !kept.is_empty() {
        let mut idx: Vec<u32> = kept.iter().map(|c| c.index).collect();
        idx.sort_unstable();
        rec.warnings.push(format!(
            "{} slices committed before the run failed (slices {}; {} records): their output stays, listed by their own manifests, and the flow's next run reads only the rest of the window",
            kept.len(),
            idx.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
            rec.records_written
        ));
        rec.warnings = cap_warnings(std::mem::take(&mut rec.warnings));
    }
    rec.status = if err.error == CANCELED {
        RunStatus::Canceled
    } else {
        RunStatus::Error
    };
    rec.error = Some(RunError {
        error: err.error.clone(),
        message: err.message(),
    });
    rec.last_updated_at = now;
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
                        "deactivation-reason": format!("{failures} consecutive failed runs (threshold {threshold}); last error: {}", err.error),
                        "deactivation-time": now.to_rfc3339(),
                    }),
                    time: now,
                };
                let _ = deps.events.publish(&ev).await;
            }
        }
    }
    tracing::warn!(flow = %run.flow, run_id = %run.run_id, error = %err.error, "run failed");
    Ok(rec)
}

/// The error name of a run stopped on purpose (`ferry stop`, an aborted execution).
pub const CANCELED: &str = "Canceled";

/// Remove everything an uncommitted run left: its manifest (first: readers trust it), every
/// object under its own keys, its rejected records, its staging folder — all but what the
/// slices in `kept` committed on their own. Idempotent.
async fn cleanup(
    deps: &Deps,
    run: &RunContext,
    kept: &[crate::model::CommittedSlice],
) -> Result<(), StepError> {
    if deps.runs.is_committed(&run.run_id).await? {
        return Err(StepError::fatal(format!(
            "run {} committed: refusing to remove its output",
            run.run_id
        )));
    }
    // A failure to read the flow is an error (retried), never a reason to skip the output: only
    // a flow version that is gone (the flow deleted meanwhile) leaves nothing to locate it by.
    let stored = deps
        .flows
        .get_flow(&run.flow, Some(run.flow_version))
        .await?;
    if stored.is_none() {
        tracing::warn!(run_id = %run.run_id, flow = %run.flow, version = run.flow_version, "the run's flow version is gone: its output cannot be located to remove it");
    }
    if let Some(flow) = stored.map(|s| s.flow) {
        let store = deps
            .destinations
            .resolve(&flow.destination.location())
            .await?;
        store
            .delete(&manifest_key(&dest_prefix(&flow), &flow.name, &run.run_id))
            .await?;
        // Manifests of slices that did not commit (written, then refused or cut short).
        let slice_manifests = slice_manifest_key(&flow, run, 0);
        if let Some((dir, _)) = slice_manifests.rsplit_once('/') {
            let mine = format!("{dir}/{}-slice-", run.run_id);
            for k in store.list(&format!("{dir}/")).await? {
                if k.starts_with(&mine) && !kept.iter().any(|c| c.manifest == k) {
                    store.delete(&k).await?;
                }
            }
        }
        for k in run_objects(store.as_ref(), &flow, run).await? {
            if !in_committed(&k, kept) {
                store.delete(&k).await?;
            }
        }
        if let Some(location) = flow.destination.error_location() {
            let prefix = match &location {
                Location::S3(s3) => s3.prefix.clone(),
                Location::Local { .. } => String::new(),
            };
            let errors = deps.destinations.resolve(&location).await?;
            let folder = crate::output::layout::rejected_key(&prefix, &flow.name, &run.run_id, 0);
            if let Some((dir, _)) = folder.rsplit_once('/') {
                if kept.is_empty() {
                    errors.delete_prefix(&format!("{dir}/")).await?;
                } else {
                    for k in errors.list(&format!("{dir}/")).await? {
                        if !in_committed(&k, kept) {
                            errors.delete(&k).await?;
                        }
                    }
                }
            }
        }
    }
    super::staging::delete_run(deps, run).await?;
    Ok(())
}

/// End a run whose execution is gone without its failure path (a runtime error, a payload or
/// history limit, a timeout, an abort, a dead local process): what the reapers call. A run
/// that is not in progress (committed, already failed, never started) is left as it is.
pub async fn reap(
    deps: &Deps,
    run_id: &str,
    error: &str,
    cause: &str,
) -> Result<Option<RunRecord>, StepError> {
    let Some(rec) = deps.runs.get_run(run_id).await? else {
        return Ok(None);
    };
    if rec.status != RunStatus::InProgress && rec.status != RunStatus::CancelStarted {
        return Ok(Some(rec));
    }
    let run = RunContext::from_record(&rec);
    let err = CaughtError {
        error: error.to_string(),
        cause: cause.to_string(),
    };
    tracing::warn!(
        run_id,
        error,
        "reaping a run whose execution ended without finalize"
    );
    fail(deps, &run, &err).await.map(Some)
}

async fn report(deps: &Deps, flow: &Flow, rec: &RunRecord) {
    deps.metrics.run_finished(rec);
    let ev = Event {
        detail_type: "ferry End Flow Run Report".into(),
        detail: crate::model::report_detail(&flow.reported(), rec, Some(rec.last_updated_at)),
        time: rec.last_updated_at,
    };
    if let Err(e) = deps.events.publish(&ev).await {
        tracing::warn!(run_id = %rec.run_id, error = %e, "could not publish the run report");
    }
}
