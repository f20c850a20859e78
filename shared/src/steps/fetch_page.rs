//! fetch-page: pull one chunk (many source pages, up to the flow's budget) into staging.

use super::*;
use crate::connector::ReadRequest;
use crate::model::{ChunkResult, ChunkStage};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchInput {
    pub run: RunContext,
    /// Where the previous chunk stopped; `null` for the first.
    #[serde(default)]
    pub cursor: serde_json::Value,
    pub chunk: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchOutput {
    pub chunk: u32,
    pub next_chunk: u32,
    pub cursor: serde_json::Value,
    pub has_more: bool,
    pub raw_key: String,
    pub records: u64,
    pub bytes: u64,
}

/// How long a page may still take past the chunk's seconds budget before the chunk ends: the
/// budget itself, up to a minute (a 720 s budget then ends by 780 s, inside fetch-page's 840 s).
fn page_grace(budget_seconds: u64) -> std::time::Duration {
    std::time::Duration::from_secs(budget_seconds.clamp(1, 60))
}

pub async fn handle(deps: &Deps, input: FetchInput) -> Result<FetchOutput, StepError> {
    let run = &input.run;
    let started = std::time::Instant::now();
    super::renew_lease(deps, run).await?;
    let (flow, _) = load_flow(deps, &run.flow, Some(run.flow_version)).await?;
    let source = build_source(deps, &flow).await?;
    let budget = &flow.source.chunk;
    // Filters the source can apply itself; transform-batch re-applies them (idempotent).
    let caps = source.pushdown();
    let filters = if caps.ops.is_empty() || flow.tasks.is_empty() {
        vec![]
    } else {
        let schema = super::staging::StagedSchema::get(deps, run)
            .await?
            .source_schema()?;
        crate::transform::Plan::compile(&flow.tasks, schema)
            .map(|p| p.split_pushdown(&caps).0)
            .unwrap_or_default()
    };
    let req = ReadRequest {
        entity: flow.source.entity.clone(),
        window: run.source_window(),
        incremental_field: match run.mode {
            crate::model::PullMode::Complete => None,
            _ => flow.source.incremental.as_ref().map(|i| i.field.clone()),
        },
        page_size: budget.page_size,
        filters,
    };
    let inc_field = flow.source.incremental.as_ref().map(|i| i.field.as_str());

    let mut cursor = if input.cursor.is_null() {
        None
    } else {
        Some(input.cursor.clone())
    };
    let mut body: Vec<u8> = Vec::new();
    let (mut records, mut bytes, mut dropped) = (0u64, 0u64, 0u64);
    let mut max_cursor = None;
    let mut has_more = true;
    let budget_time = std::time::Duration::from_secs(budget.seconds);
    loop {
        // The seconds budget holds inside a page too: a page still arriving when the chunk's
        // time is up ends the chunk before it (the next chunk asks for it again), so a slow
        // source cannot push fetch-page past its Lambda timeout.
        let left = budget_time.saturating_sub(started.elapsed());
        let page = match tokio::time::timeout(left + page_grace(budget.seconds), source.read_page(&req, cursor.as_ref())).await {
            Ok(page) => page?,
            Err(_) if records > 0 || dropped > 0 => break,
            Err(_) => {
                return Err(StepError::retryable(format!(
                    "chunk {}: the source sent no complete page within the chunk's time budget ({}s, source.chunk.seconds); it is slow or stuck",
                    input.chunk, budget.seconds
                )))
            }
        };
        bytes += page.bytes;
        for r in &page.records {
            let ts = inc_field
                .and_then(|f| r.get(f))
                .and_then(crate::model::parse_time);
            if let (Some(w), Some(t)) = (req.window, ts) {
                // Sources that ignore the window filter still get the right records.
                if !w.contains(t) {
                    dropped += 1;
                    continue;
                }
            }
            if let Some(t) = ts {
                max_cursor = max_cursor.max(Some(t));
            }
            serde_json::to_writer(&mut body, r).map_err(|e| internal("encode record", e))?;
            body.push(b'\n');
            records += 1;
        }
        cursor = page.next;
        if cursor.is_none() {
            has_more = false;
            break;
        }
        if records >= budget.records
            || body.len() as u64 >= budget.megabytes * 1024 * 1024
            || started.elapsed().as_secs() >= budget.seconds
        {
            break;
        }
    }
    let raw_key = super::staging::raw_key(run, input.chunk);
    deps.staging
        .put(&raw_key, body, &Default::default())
        .await?;
    let mut warnings = vec![];
    if dropped > 0 {
        warnings.push(format!("{dropped} records outside the window were dropped (the source ignored the window filter)"));
    }
    deps.runs
        .put_chunk_result(&ChunkResult {
            run_id: run.run_id.clone(),
            chunk: input.chunk,
            stage: ChunkStage::Fetch,
            records,
            bytes,
            filtered: 0,
            rejected: 0,
            max_cursor,
            files: vec![],
            warnings,
            schema: None,
        })
        .await?;
    tracing::info!(flow = %run.flow, run_id = %run.run_id, chunk = input.chunk, records, bytes, has_more, "chunk fetched");
    Ok(FetchOutput {
        chunk: input.chunk,
        next_chunk: input.chunk + 1,
        cursor: cursor.unwrap_or(serde_json::Value::Null),
        has_more,
        raw_key,
        records,
        bytes,
    })
}
