//! start-run: load the flow, take the run lease, compute the window, record the run.

use super::slices::{self, SliceItem, SlicePlan, SliceProgress};
use super::*;
use crate::connector::{ReadRequest, Slicing};
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
    /// The first round of slices (the state machine's "Run Slices" reads their list).
    pub slices: SlicePlan,
}

/// "Plan Next Round": after a round of slices, the slices that paused with more to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextRoundInput {
    pub run: RunContext,
    pub slices: SlicePlan,
}

/// What start-run's function is invoked with: a run to start, or a round of slices to follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StartRunEvent {
    Start(StartRunInput),
    NextRound(NextRoundInput),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StartRunResult {
    Started(Box<StartRunOutput>),
    Round(SlicePlan),
}

pub async fn handle_event(deps: &Deps, event: StartRunEvent) -> Result<StartRunResult, StepError> {
    match event {
        StartRunEvent::Start(input) => Ok(StartRunResult::Started(Box::new(
            handle(deps, input).await?,
        ))),
        StartRunEvent::NextRound(input) => {
            Ok(StartRunResult::Round(next_round(deps, input).await?))
        }
    }
}

/// The next round: every slice of this round that paused (its child reached
/// [`slices::CHUNKS_PER_CHILD`]) continues from its staged progress in a new child execution.
pub async fn next_round(deps: &Deps, input: NextRoundInput) -> Result<SlicePlan, StepError> {
    let run = &input.run;
    super::renew_lease(deps, run).await?;
    let body = deps.staging.get(&input.slices.key).await?;
    let items: Vec<SliceItem> =
        serde_json::from_slice(&body).map_err(|e| internal("read the staged slice list", e))?;
    let mut next = Vec::new();
    for item in items {
        let key = slices::progress_key(run, item.index);
        let progress = super::staging::get_optional(deps, &key)
            .await?
            .ok_or_else(|| {
                StepError::fatal(format!(
                    "slice {} of round {} left no progress in staging ({key}); the run cannot continue safely (rerun it)",
                    item.index, input.slices.round
                ))
            })?;
        let p: SliceProgress = serde_json::from_slice(&progress)
            .map_err(|e| internal("read a slice's progress", e))?;
        if p.done {
            continue;
        }
        slices::check_chunk(item.index, p.next_chunk)?;
        next.push(SliceItem {
            index: item.index,
            window: item.window,
            cursor: p.cursor,
            next_chunk: p.next_chunk,
            pause_at: p.next_chunk + slices::CHUNKS_PER_CHILD - 1,
            parallelism: item.parallelism,
            commit: item.commit,
        });
    }
    let round = input.slices.round + 1;
    let key = slices::round_key(run, round);
    let body = serde_json::to_vec(&next).map_err(|e| internal("encode the slice list", e))?;
    super::fenced_stage(deps, run, &key, body).await?;
    tracing::info!(flow = %run.flow, run_id = %run.run_id, round, slices = next.len(), "next round of slices");
    Ok(SlicePlan {
        key,
        count: next.len() as u32,
        round,
        parallelism: input.slices.parallelism,
        total: input.slices.total,
    })
}

/// Cut the run's window into slices (`source.slice`, where the source can read time slices and
/// the run has a window with a start), leave out what earlier runs' slices committed, stage
/// the first round's list and point at it.
async fn plan_slices(
    deps: &Deps,
    flow: &crate::flow::Flow,
    source: &dyn Source,
    run: &RunContext,
    infer: bool,
    warnings: &mut Vec<String>,
) -> Result<SlicePlan, StepError> {
    let slicing = source.slicing(&flow.source.entity);
    let mut windows: Vec<Option<Window>> = vec![None];
    let mut commit = false;
    if let Some(cfg) = &flow.source.slice {
        match (slicing, run.source_window(), infer) {
            _ if flow.destination.single_file => warnings.push(
                "source.slice: destination.single_file writes one object per partition, which needs the run read as one slice".into(),
            ),
            (_, _, true) => warnings.push(
                "source.slice: the entity declares no fields (its schema is inferred chunk after chunk), so the run is one slice".into(),
            ),
            (Slicing::None, _, _) => warnings.push(format!(
                "source.slice: the {} connector cannot read {} in slices, so the run is one slice",
                flow.source.connector, flow.source.entity
            )),
            (
                Slicing::Time { .. },
                Some(Window {
                    start: Some(start),
                    end,
                }),
                false,
            ) => {
                let base = ReadRequest {
                    entity: flow.source.entity.clone(),
                    window: None,
                    incremental_field: flow.source.incremental.as_ref().map(|i| i.field.clone()),
                    page_size: flow.source.chunk.page_size,
                    filters: vec![],
                };
                windows = cut(source, &base, start, end, cfg)
                    .await?
                    .into_iter()
                    .map(Some)
                    .collect();
                commit = cfg.commit == crate::flow::SliceCommit::Slice;
            }
            (Slicing::Time { .. }, _, false) => warnings.push(
                "source.slice: a complete run has no window to cut, so it is one slice".into(),
            ),
        }
    }
    let windows = around_committed(deps, flow, run, slicing, infer, windows, warnings).await?;
    let default_parallelism = match slicing {
        Slicing::Time { parallelism } => parallelism,
        Slicing::None => 1,
    };
    let parallelism = flow
        .source
        .parallelism
        .unwrap_or(default_parallelism)
        .clamp(1, windows.len().max(1) as u32);
    let items: Vec<SliceItem> = windows
        .into_iter()
        .enumerate()
        .map(|(i, w)| SliceItem {
            parallelism,
            commit: commit && w.is_some(),
            ..SliceItem::new(i as u32, w)
        })
        .collect();
    let key = slices::round_key(run, 0);
    let body = serde_json::to_vec(&items).map_err(|e| internal("encode the slice list", e))?;
    deps.staging.put(&key, body, &Default::default()).await?;
    Ok(SlicePlan {
        key,
        count: items.len() as u32,
        round: 0,
        parallelism,
        total: items.len() as u32,
    })
}

/// The slices to read, leaving out the windows that slices of earlier runs committed
/// (`source.slice.commit: slice`: a failed run's next run reads only what did not commit). An
/// incremental run reads around incremental runs' slices, a backfill around backfills'.
async fn around_committed(
    deps: &Deps,
    flow: &crate::flow::Flow,
    run: &RunContext,
    slicing: Slicing,
    infer: bool,
    windows: Vec<Option<Window>>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Option<Window>>, StepError> {
    let (Some(window), PullMode::Incremental | PullMode::Backfill) =
        (run.source_window(), run.mode)
    else {
        return Ok(windows);
    };
    let ledger = deps.runs.slice_ledger(&flow.name).await?;
    let start = window.start.unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let committed: Vec<&crate::model::CommittedSlice> = ledger
        .slices
        .iter()
        .filter(|c| c.mode == run.mode && c.end > start && c.start < window.end)
        .collect();
    if committed.is_empty() {
        return Ok(windows);
    }
    let runs: std::collections::BTreeSet<&str> =
        committed.iter().map(|c| c.run_id.as_str()).collect();
    let runs = runs.into_iter().collect::<Vec<_>>().join(", ");
    if infer || slicing == Slicing::None || window.start.is_none() {
        return Err(StepError::invalid_flow(format!(
            "{} slices committed by earlier runs of flow '{}' ({runs}) lie in this run's window, and this run cannot read around them ({}); restore the flow's earlier source (declared fields and a connector that reads time slices), so that no record is written twice",
            committed.len(),
            flow.name,
            if infer {
                "the entity declares no fields"
            } else if slicing == Slicing::None {
                "the source cannot read time slices"
            } else {
                "the run's window has no start"
            }
        )));
    }
    let taken: Vec<_> = committed.iter().map(|c| (c.start, c.end)).collect();
    let out: Vec<Option<Window>> = windows
        .into_iter()
        .flat_map(|w| slices::subtract(w.unwrap_or(window), &taken))
        .map(Some)
        .collect();
    let records: u64 = committed.iter().map(|c| c.records).sum();
    warnings.push(format!(
        "resuming: {} slices committed by earlier runs ({runs}; {records} records) are not read again; this run reads the {} other parts of its window",
        committed.len(),
        out.len()
    ));
    Ok(out)
}

/// `count` slices of equal length, then (with `records` and a source that counts) each slice
/// holding more than `records` records halved until it does not: narrower where dense.
async fn cut(
    source: &dyn Source,
    base: &ReadRequest,
    start: chrono::DateTime<Utc>,
    end: chrono::DateTime<Utc>,
    cfg: &crate::flow::SliceConfig,
) -> Result<Vec<Window>, StepError> {
    let mut todo = slices::split_even(start, end, cfg.count.unwrap_or(1));
    todo.reverse();
    let mut out = Vec::new();
    while let Some(w) = todo.pop() {
        if let (Some(max), Some(s)) = (cfg.records, w.start) {
            let room = (out.len() + todo.len() + 2) as u32 <= cfg.max_slices();
            let splittable = (w.end - s).num_microseconds().unwrap_or(i64::MAX) >= 2;
            if room && splittable {
                let req = ReadRequest {
                    window: Some(w),
                    ..base.clone()
                };
                if source.count(&req).await?.is_some_and(|n| n > max) {
                    let mut halves = slices::split_even(s, w.end, 2);
                    halves.reverse();
                    todo.extend(halves);
                    continue;
                }
            }
        }
        out.push(w);
    }
    Ok(out)
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
    let mut source = build_source(deps, flow).await?;
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
        // Read once here (describe has usually read it already), not on every chunk.
        staged.fetch_metadata = source.fetch_metadata(&flow.source.entity).await?;
        if flow.source.slice.is_some() {
            source.set_run_end(window.end);
        }
        let plan = plan_slices(
            deps,
            flow,
            source.as_ref(),
            &run,
            source_schema.fields().is_empty(),
            &mut staged.warnings,
        )
        .await?;
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
        tracing::info!(flow = %flow.name, run_id = %run_id, mode = ?mode, start = ?window.start, end = %window.end, slices = plan.count, "run started");
        Ok::<_, StepError>(StartRunOutput {
            run,
            page: PageState { cursor: serde_json::Value::Null, next_chunk: 0, has_more: true },
            slices: plan,
        })
    }
    .await;
    if result.is_err() {
        // Give the lease back; the run never really started.
        let _ = deps.runs.record_failure(&flow.name, &run_id).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `records` halves dense slices, but a run that commits per slice is never cut into more
    /// than `MAX_COMMITTED_SLICES` (each committed slice is kept in the flow's state item).
    #[tokio::test]
    async fn a_run_committing_per_slice_is_cut_into_at_most_its_limit() {
        let props = serde_json::json!({"records": 100_000, "as_of": "2026-06-01T00:00:00Z"});
        let mut source =
            crate::connector::sample::SampleSource::from_properties(props.as_object().unwrap())
                .unwrap();
        let end: chrono::DateTime<Utc> = "2026-06-01T00:00:00Z".parse().unwrap();
        source.set_run_end(end);
        let base = ReadRequest {
            entity: "accounts".into(),
            window: None,
            incremental_field: Some("updated_at".into()),
            page_size: None,
            filters: vec![],
        };
        let start = end - chrono::Duration::days(100);
        let cfg = |commit| crate::flow::SliceConfig {
            count: Some(1),
            records: Some(10),
            commit,
        };
        let per_slice = cut(
            &source,
            &base,
            start,
            end,
            &cfg(crate::flow::SliceCommit::Slice),
        )
        .await
        .unwrap();
        assert!(
            per_slice.len() as u32 <= crate::flow::SliceConfig::MAX_COMMITTED_SLICES
                && per_slice.len() > 500,
            "{} slices",
            per_slice.len()
        );
        // Committing once, the same settings cut finer.
        let per_run = cut(
            &source,
            &base,
            start,
            end,
            &cfg(crate::flow::SliceCommit::Run),
        )
        .await
        .unwrap();
        assert!(per_run.len() > per_slice.len(), "{} slices", per_run.len());
    }
}
