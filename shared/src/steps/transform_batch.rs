//! transform-batch: staged raw records -> Arrow (with the run's schema) -> tasks -> staged batch.

use super::staging;
use super::*;
use crate::model::{ChunkResult, ChunkStage};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformInput {
    pub run: RunContext,
    pub chunk: u32,
    pub raw_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformOutput {
    pub batch_key: String,
    pub rows: u64,
    pub filtered: u64,
    /// Records rejected (decode or `validate` tasks); staged with their reason when the flow
    /// keeps them, for write-s3 to publish.
    #[serde(default)]
    pub rejected: u64,
}

pub async fn handle(deps: &Deps, input: TransformInput) -> Result<TransformOutput, StepError> {
    let run = &input.run;
    super::renew_lease(deps, run).await?;
    let (flow, _) = load_flow(deps, &run.flow, Some(run.flow_version)).await?;
    let staged = staging::StagedSchema::get(deps, run).await?;
    let declared = staged.source_schema()?;
    // What describing the source warned about is reported once, with the first chunk.
    let mut warnings = if input.chunk == 0 {
        staged.warnings
    } else {
        vec![]
    };
    // fetch-page decoded the records once, to Arrow: read them, never parse them again.
    if staging::is_arrow(&input.raw_key) {
        let staged = staging::get_arrow(deps, &input.raw_key).await?;
        // No task changes the records and none failed to decode: the staged chunk is the
        // staged batch (what write-s3 reads), with no decode, copy or re-encode of every
        // record, and not staged a second time.
        if let Some((schema, rows, 0)) = staged.summary()? {
            let plan = compile_plan(&flow, schema.clone())?;
            if plan.steps() == 0 && plan.output_schema() == schema {
                let out = TransformOutput {
                    batch_key: input.raw_key.clone(),
                    rows,
                    filtered: 0,
                    rejected: 0,
                };
                return record(deps, &input, out, None, &schema, warnings).await;
            }
        }
        let (batch, rejects) = staging::decode_raw_chunk(deps, &input.raw_key, staged).await?;
        let bad: std::collections::BTreeSet<usize> = rejects.iter().map(|r| r.line).collect();
        let decoded = crate::schema::Decoded {
            lines: (0..batch.num_rows() + rejects.len())
                .filter(|l| !bad.contains(l))
                .collect(),
            bad: rejects.iter().map(|r| (r.line, r.reason.clone())).collect(),
            batch,
        };
        let raw: std::collections::BTreeMap<usize, String> =
            rejects.into_iter().map(|r| (r.line, r.raw)).collect();
        let source_schema = decoded.batch.schema();
        let record_of = |line: usize| match raw.get(&line) {
            Some(text) => serde_json::from_str(text)
                .unwrap_or_else(|_| serde_json::Value::String(text.clone())),
            None => decoded
                .lines
                .binary_search(&line)
                .ok()
                .and_then(|row| row_json(&decoded.batch, row))
                .unwrap_or(serde_json::Value::Null),
        };
        return finish(
            deps,
            &input,
            &flow,
            source_schema,
            &decoded,
            &record_of,
            warnings,
        )
        .await;
    }
    let raw = deps.staging.get(&input.raw_key).await?;
    // A source that declares no fields gets its schema from the data, merged across chunks.
    let infer = declared.fields().is_empty();
    let source_schema = if infer {
        let (seen, w) = crate::schema::infer_json_lines(&raw)
            .map_err(|e| internal("infer the schema of the records", e))?;
        warnings.extend(w);
        let prev = match input.chunk {
            0 => None,
            n => read_inferred(deps, run, n - 1).await?,
        };
        let merged = match prev {
            None => Arc::new(seen),
            Some(prev) => {
                let (m, w) = crate::schema::merge(&prev, &seen);
                warnings.extend(w);
                m
            }
        };
        super::fenced_stage(
            deps,
            run,
            &staging::inferred_key(run, input.chunk),
            serde_json::to_vec(&crate::schema::schema_to_json(&merged))
                .map_err(|e| internal("stage inferred schema", e))?,
        )
        .await?;
        merged
    } else {
        declared
    };
    let decoded =
        crate::schema::decode_tolerant(&raw, source_schema.clone(), infer).map_err(|e| {
            StepError::new(
                crate::error::ErrorKind::SourceRejected,
                format!(
                    "chunk {}: records do not match the source's declared types: {e}",
                    input.chunk
                ),
            )
        })?;
    let lines: Vec<&[u8]> = raw
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    let record_of = |line: usize| {
        let text = lines.get(line).copied().unwrap_or_default();
        serde_json::from_slice::<serde_json::Value>(text)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(text).into()))
    };
    finish(
        deps,
        &input,
        &flow,
        source_schema,
        &decoded,
        &record_of,
        warnings,
    )
    .await
}

/// The flow's tasks compiled against the chunk's schema; a task that does not fit is the
/// flow's error.
fn compile_plan(
    flow: &crate::flow::Flow,
    schema: arrow::datatypes::SchemaRef,
) -> Result<crate::transform::Plan, StepError> {
    crate::transform::Plan::compile(&flow.tasks, schema).map_err(|errs| {
        StepError::invalid_flow(
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

/// One row of a batch as a JSON object (a rejected record's text, for records fetch-page
/// decoded).
fn row_json(batch: &arrow::record_batch::RecordBatch, row: usize) -> Option<serde_json::Value> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
        w.write(&batch.slice(row, 1)).ok()?;
        w.finish().ok()?;
    }
    serde_json::from_slice(&buf).ok()
}

/// The tasks on the decoded records, the rejected records staged, the batch staged.
async fn finish(
    deps: &Deps,
    input: &TransformInput,
    flow: &crate::flow::Flow,
    source_schema: arrow::datatypes::SchemaRef,
    decoded: &crate::schema::Decoded,
    record_of: &(dyn Fn(usize) -> serde_json::Value + Sync),
    mut warnings: Vec<String>,
) -> Result<TransformOutput, StepError> {
    let run = &input.run;
    let plan = compile_plan(flow, source_schema.clone())?;
    // terminate_run surfaces as its own error kind (SourceRejected), task bugs as InvalidFlow.
    let applied = plan.apply(&decoded.batch).map_err(StepError::from)?;
    let mut rejected: Vec<(usize, String)> = decoded.bad.clone();
    rejected.extend(
        applied
            .rejected
            .iter()
            .map(|r| (decoded.lines[r.row], r.reason.clone())),
    );
    rejected.sort();
    if !rejected.is_empty() && flow.destination.on_rejected == crate::flow::OnRejected::Fail {
        let (line, reason) = &rejected[0];
        return Err(StepError::new(
            crate::error::ErrorKind::SourceRejected,
            format!(
                "chunk {}: {} records rejected (the first, record {} of the chunk: {reason}); destination.on_rejected is `fail`, so the run stops and nothing is committed (set it to `continue` to keep going, with the rejected records at destination.error_location)",
                input.chunk,
                rejected.len(),
                line + 1
            ),
        ));
    }
    if !rejected.is_empty() {
        stage_rejected(
            deps,
            run,
            flow,
            input.chunk,
            record_of,
            &rejected,
            &mut warnings,
        )
        .await?;
    }
    let out = TransformOutput {
        batch_key: staging::batch_key(run, input.chunk),
        rows: applied.batch.num_rows() as u64,
        filtered: applied.filtered,
        rejected: rejected.len() as u64,
    };
    let schema = applied.batch.schema();
    record(deps, input, out, Some(applied.batch), &schema, warnings).await
}

/// Stage the chunk's batch and record what the transform did.
async fn record(
    deps: &Deps,
    input: &TransformInput,
    out: TransformOutput,
    staged: Option<arrow::record_batch::RecordBatch>,
    schema: &arrow::datatypes::SchemaRef,
    warnings: Vec<String>,
) -> Result<TransformOutput, StepError> {
    let run = &input.run;
    if let Some(batch) = staged {
        // Records decoded by fetch-page have the run's one schema: the hand-off may keep
        // them. Inferred ones may widen from chunk to chunk, which a write re-reads from
        // staging (write_s3's parts of another schema).
        let hold = staging::is_arrow(&input.raw_key);
        staging::put_batch(deps, run, input.chunk, batch, hold).await?;
    }
    deps.runs
        .put_chunk_result(&ChunkResult {
            run_id: run.run_id.clone(),
            chunk: input.chunk,
            stage: ChunkStage::Transform,
            records: out.rows,
            bytes: 0,
            filtered: out.filtered,
            rejected: out.rejected,
            max_cursor: None,
            files: vec![],
            warnings,
            schema: Some(crate::schema::schema_to_json(schema)),
        })
        .await?;
    Ok(out)
}

async fn read_inferred(
    deps: &Deps,
    run: &RunContext,
    chunk: u32,
) -> Result<Option<arrow::datatypes::SchemaRef>, StepError> {
    match staging::get_optional(deps, &staging::inferred_key(run, chunk)).await? {
        Some(b) => {
            let v: serde_json::Value =
                serde_json::from_slice(&b).map_err(|e| internal("read inferred schema", e))?;
            Ok(Some(
                crate::schema::schema_from_json(&v).map_err(|e| internal("inferred schema", e))?,
            ))
        }
        None => Ok(None),
    }
}

/// Rejected records, with the reason, as JSON lines staged for the flow's `error_location`.
/// transform-batch writes only to staging; write-s3, which writes the output, publishes them.
async fn stage_rejected(
    deps: &Deps,
    run: &RunContext,
    flow: &crate::flow::Flow,
    chunk: u32,
    record_of: &(dyn Fn(usize) -> serde_json::Value + Sync),
    rejected: &[(usize, String)],
    warnings: &mut Vec<String>,
) -> Result<(), StepError> {
    if flow.destination.error_location().is_none() {
        warnings.push(format!(
            "{} records were rejected and not kept; set destination.error_location to keep them with the reason",
            rejected.len()
        ));
        return Ok(());
    }
    let mut body = Vec::new();
    for (line, reason) in rejected {
        let record = record_of(*line);
        serde_json::to_writer(
            &mut body,
            &serde_json::json!({
                "flow": flow.name,
                "run_id": run.run_id,
                "chunk": chunk,
                "line": line,
                "reason": reason,
                "record": record,
            }),
        )
        .map_err(|e| internal("encode rejected record", e))?;
        body.push(b'\n');
    }
    super::fenced_put(
        deps,
        run,
        deps.staging.as_ref(),
        &staging::rejected_key(run, chunk),
        body,
        &crate::ports::PutOptions {
            content_type: Some("application/x-ndjson".into()),
            content_encoding: None,
        },
    )
    .await?;
    Ok(())
}
