//! fetch-page: pull one chunk (many source pages, up to the flow's budget) into staging.

use super::*;
use crate::connector::{ArrowPage, PageRecords, ReadRequest};
use crate::model::{ChunkResult, ChunkStage};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchInput {
    pub run: RunContext,
    /// Where the previous chunk stopped; `null` for the first.
    #[serde(default)]
    pub cursor: serde_json::Value,
    pub chunk: u32,
    /// The slice this chunk belongs to (a child of "Run Slices"); absent: the run's window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<super::slices::SliceItem>,
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
    /// The slice has more, but its child execution has fetched its share of chunks: it ends
    /// here and the slice continues in the next round (its progress is staged).
    #[serde(default)]
    pub pause: bool,
}

/// How long a page may still take past the chunk's seconds budget before the chunk ends: the
/// budget itself, up to a minute (a 720 s budget then ends by 780 s, inside fetch-page's 840 s).
/// The incremental column, already cast to microsecond timestamps.
fn micros(
    a: &arrow::array::ArrayRef,
) -> Result<&arrow::array::TimestampMicrosecondArray, StepError> {
    a.as_any()
        .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
        .ok_or_else(|| internal("read the incremental field", "not a microsecond timestamp"))
}

fn page_grace(budget_seconds: u64) -> std::time::Duration {
    std::time::Duration::from_secs(budget_seconds.clamp(1, 60))
}

pub async fn handle(deps: &Deps, input: FetchInput) -> Result<FetchOutput, StepError> {
    let run = &input.run;
    let started = std::time::Instant::now();
    super::renew_lease(deps, run).await?;
    let (flow, _) = load_flow(deps, &run.flow, Some(run.flow_version)).await?;
    // Slices reading at once in processes of their own split the flow's request budget.
    crate::connector::http::set_budget_share(match &input.slice {
        Some(s) if !deps.settings.one_process => s.parallelism,
        _ => 1,
    });
    let mut source = build_source(deps, &flow).await?;
    // A slice reads its own part of the window, of the run's data set.
    let slice_window = input.slice.as_ref().and_then(|s| s.window);
    if let Some(slice) = &input.slice {
        super::slices::check_chunk(slice.index, input.chunk)?;
        if slice_window.is_some() {
            source.set_run_end(run.window.end);
        }
    }
    let budget = &flow.source.chunk;
    let staged = super::staging::StagedSchema::get(deps, run).await?;
    if let Some(m) = &staged.fetch_metadata {
        source.use_fetch_metadata(&flow.source.entity, m)?;
    }
    let schema = staged.source_schema()?;
    // Filters the source can apply itself; transform-batch re-applies them (idempotent).
    let caps = source.pushdown();
    let filters = if caps.ops.is_empty() || flow.tasks.is_empty() {
        vec![]
    } else {
        crate::transform::Plan::compile(&flow.tasks, schema.clone())
            .map(|p| p.split_pushdown(&caps).0)
            .unwrap_or_default()
    };
    let req = ReadRequest {
        entity: flow.source.entity.clone(),
        window: slice_window.or(run.source_window()),
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
    // Records go from the source's bytes to Arrow here, once, in the run's source schema; a
    // source that declares no fields stages JSON lines for transform-batch to infer from.
    let mut chunk = Chunk::new(deps, schema, inc_field, req.window)?;
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut has_more = true;
    // `FERRY_ARROW_PAGES=0` reads values instead (the bench's comparison, docs/performance.md).
    let mut arrow_pages =
        !chunk.infers() && std::env::var_os("FERRY_ARROW_PAGES").is_none_or(|v| v != "0");
    let budget_time = std::time::Duration::from_secs(budget.seconds);
    loop {
        // How many more records the chunk takes (its byte budget counted in records at the
        // chunk's bytes per record so far): a source reading ahead asks for nothing past them.
        let by_bytes = (budget.megabytes * 1024 * 1024)
            .saturating_sub(bytes)
            .checked_div(bytes.checked_div(records).unwrap_or(0))
            .unwrap_or(u64::MAX);
        source.records_wanted(budget.records.saturating_sub(records).min(by_bytes));
        // The seconds budget holds inside a page too: a page still arriving when the chunk's
        // time is up ends the chunk before it (the next chunk asks for it again), so a slow
        // source cannot push fetch-page past its Lambda timeout.
        let left = budget_time.saturating_sub(started.elapsed());
        let read = async {
            if arrow_pages {
                if let Some(p) = source
                    .read_page_arrow(&req, cursor.as_ref(), &chunk.schema)
                    .await?
                {
                    return Ok((p, true));
                }
            }
            source.read_page(&req, cursor.as_ref()).await.map(|p| {
                let page = ArrowPage {
                    parts: vec![PageRecords::Values(p.records)],
                    next: p.next,
                    bytes: p.bytes,
                };
                (page, false)
            })
        };
        let page: ArrowPage = match tokio::time::timeout(left + page_grace(budget.seconds), read).await {
            Ok(Ok((page, arrow))) => {
                // A source that reads values (not Arrow) is not asked for Arrow again.
                arrow_pages = arrow;
                page
            }
            Ok(Err(e)) => return Err(StepError::from(e)),
            Err(_) if chunk.lines > 0 || chunk.dropped > 0 => break,
            Err(_) => {
                return Err(StepError::retryable(format!(
                    "chunk {}: the source sent no complete page within the chunk's time budget ({}s, source.chunk.seconds); it is slow or stuck",
                    input.chunk, budget.seconds
                )))
            }
        };
        bytes += page.bytes;
        let before = chunk.lines + chunk.dropped as usize;
        for part in page.parts {
            chunk.add(part)?;
        }
        records = chunk.lines as u64;
        super::progress::page_read((chunk.lines + chunk.dropped as usize - before) as u64);
        cursor = page.next;
        if cursor.is_none() {
            has_more = false;
            break;
        }
        if records >= budget.records
            || bytes.max(chunk.json.len() as u64) >= budget.megabytes * 1024 * 1024
            || started.elapsed().as_secs() >= budget.seconds
        {
            break;
        }
    }
    // Staged by fenced writes (super::fenced_put): a run ended from outside while the pages
    // arrived leaves nothing behind.
    let (raw_key, dropped, max_cursor) = chunk.stage(deps, run, input.chunk).await?;
    let mut warnings = source.take_warnings();
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
    let cursor = cursor.unwrap_or(serde_json::Value::Null);
    let pause = has_more
        && input
            .slice
            .as_ref()
            .is_some_and(|s| input.chunk >= s.pause_at);
    if let Some(slice) = &input.slice {
        if pause || !has_more {
            // Where the slice goes on in the next round (or that it is done): read by start-run's
            // "Plan Next Round" once every child of the round has ended.
            let progress = super::slices::SliceProgress {
                index: slice.index,
                cursor: cursor.clone(),
                next_chunk: input.chunk + 1,
                done: !has_more,
            };
            let body = serde_json::to_vec(&progress)
                .map_err(|e| internal("encode the slice's progress", e))?;
            super::fenced_stage(
                deps,
                run,
                &super::slices::progress_key(run, slice.index),
                body,
            )
            .await?;
        }
    }
    tracing::info!(flow = %run.flow, run_id = %run.run_id, chunk = input.chunk, records, bytes, has_more, pause, "chunk fetched");
    Ok(FetchOutput {
        chunk: input.chunk,
        next_chunk: input.chunk + 1,
        cursor,
        has_more,
        raw_key,
        records,
        bytes,
        pause,
    })
}

/// A chunk being read: its records as Arrow batches (one per response), the records that did
/// not decode (with their line and text), the window filter and the cursor maximum.
struct Chunk<'a> {
    schema: SchemaRef,
    inc_field: Option<&'a str>,
    window: Option<crate::model::Window>,
    /// The chunk's records, encoded for staging as they arrive (absent when inferring).
    staged: Option<super::staging::RawChunkWriter>,
    rejected: Vec<super::staging::RawReject>,
    json: Vec<u8>,
    /// Records in the window so far (the next record's line number).
    lines: usize,
    dropped: u64,
    max_cursor: Option<DateTime<Utc>>,
}

impl<'a> Chunk<'a> {
    fn new(
        deps: &Deps,
        schema: SchemaRef,
        inc_field: Option<&'a str>,
        window: Option<crate::model::Window>,
    ) -> Result<Self, StepError> {
        Ok(Chunk {
            staged: if schema.fields().is_empty() {
                None
            } else {
                Some(super::staging::RawChunkWriter::for_engine(deps, &schema)?)
            },
            schema,
            inc_field,
            window,
            rejected: vec![],
            json: vec![],
            lines: 0,
            dropped: 0,
            max_cursor: None,
        })
    }

    /// The source declares no fields: records are kept as JSON lines (`json`), the schema is
    /// inferred later.
    fn infers(&self) -> bool {
        self.staged.is_none()
    }

    fn push(&mut self, batch: RecordBatch) -> Result<(), StepError> {
        match &mut self.staged {
            Some(w) => w.push(batch),
            None => Err(internal(
                "stage chunk",
                "records decoded for a chunk that infers its schema",
            )),
        }
    }

    fn add(&mut self, part: PageRecords) -> Result<(), StepError> {
        match part {
            PageRecords::Arrow(b) => self.add_batch(b),
            PageRecords::Values(v) => self.add_values(v),
        }
    }

    /// Records decoded straight to Arrow: the window and the cursor maximum on the column.
    fn add_batch(&mut self, batch: RecordBatch) -> Result<(), StepError> {
        let times = match self.inc_field.and_then(|f| batch.column_by_name(f)) {
            Some(c) => Some(
                arrow::compute::cast(
                    c,
                    &arrow::datatypes::DataType::Timestamp(
                        arrow::datatypes::TimeUnit::Microsecond,
                        None,
                    ),
                )
                .map_err(|e| internal("read the incremental field", e))?,
            ),
            None => None,
        };
        let Some(times) = times else {
            self.lines += batch.num_rows();
            return self.push(batch);
        };
        let times = micros(&times)?;
        let in_window = |t: i64| {
            self.window
                .is_none_or(|w| DateTime::from_timestamp_micros(t).is_none_or(|t| w.contains(t)))
        };
        let keep: arrow::array::BooleanArray = times
            .iter()
            .map(|t| Some(t.is_none_or(in_window)))
            .collect();
        let kept = keep.true_count();
        self.dropped += (batch.num_rows() - kept) as u64;
        let batch = if kept == batch.num_rows() {
            batch
        } else {
            arrow::compute::filter_record_batch(&batch, &keep)
                .map_err(|e| internal("apply the window", e))?
        };
        let times = if kept == times.len() {
            times.clone()
        } else {
            micros(
                &arrow::compute::filter(times, &keep)
                    .map_err(|e| internal("apply the window", e))?,
            )?
            .clone()
        };
        if let Some(m) = arrow::compute::max(&times) {
            self.max_cursor = self.max_cursor.max(DateTime::from_timestamp_micros(m));
        }
        self.lines += batch.num_rows();
        self.push(batch)
    }

    /// Records as JSON values (sources that read values, pages that did not fit the schema):
    /// the window on each record, then decoded record by record where a page fails, so only
    /// the records at fault are rejected (their line and text kept).
    fn add_values(&mut self, records: Vec<serde_json::Value>) -> Result<(), StepError> {
        let mut body = Vec::new();
        let mut n = 0usize;
        for r in &records {
            let ts = self
                .inc_field
                .and_then(|f| r.get(f))
                .and_then(crate::model::parse_time);
            if let (Some(w), Some(t)) = (self.window, ts) {
                // Sources that ignore the window filter still get the right records.
                if !w.contains(t) {
                    self.dropped += 1;
                    continue;
                }
            }
            if let Some(t) = ts {
                self.max_cursor = self.max_cursor.max(Some(t));
            }
            serde_json::to_writer(&mut body, r).map_err(|e| internal("encode record", e))?;
            body.push(b'\n');
            n += 1;
        }
        if self.infers() {
            self.json.extend_from_slice(&body);
            self.lines += n;
            return Ok(());
        }
        let d = crate::schema::decode_tolerant(&body, self.schema.clone(), false)
            .map_err(|e| internal("decode records", e))?;
        if !d.bad.is_empty() {
            let lines: Vec<&[u8]> = body
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            for (i, reason) in d.bad {
                self.rejected.push(super::staging::RawReject {
                    line: self.lines + i,
                    reason,
                    raw: String::from_utf8_lossy(lines.get(i).copied().unwrap_or_default())
                        .into_owned(),
                });
            }
        }
        self.lines += n;
        self.push(d.batch)
    }

    /// Stage the chunk; returns its key, the records dropped outside the window and the
    /// cursor maximum.
    async fn stage(
        self,
        deps: &Deps,
        run: &RunContext,
        chunk: u32,
    ) -> Result<(String, u64, Option<DateTime<Utc>>), StepError> {
        let key = if self.infers() {
            let key = super::staging::raw_key(run, chunk);
            super::fenced_stage(deps, run, &key, self.json).await?;
            key
        } else {
            let key = super::staging::raw_arrow_key(run, chunk);
            let writer = self
                .staged
                .ok_or_else(|| internal("stage chunk", "no records were encoded"))?;
            super::staging::put_raw_chunk(deps, run, &key, chunk, writer, &self.rejected).await?;
            key
        };
        Ok((key, self.dropped, self.max_cursor))
    }
}
