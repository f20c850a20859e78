//! transform-batch: staged raw records -> Arrow (with the run's schema) -> tasks -> staged batch.

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
    let schema_doc: serde_json::Value =
        serde_json::from_slice(&deps.staging.get(&run.schema_key()).await?)
            .map_err(|e| internal("read the run's staged schema", e))?;
    let declared = crate::schema::schema_from_json(&schema_doc["source"])
        .map_err(|e| internal("staged schema", e))?;
    let raw = deps.staging.get(&input.raw_key).await?;
    let mut warnings = vec![];
    // A source that declares no fields gets its schema from the data, merged across chunks.
    let infer = declared.fields().is_empty();
    let source_schema = if infer {
        let seen = crate::schema::infer_json_lines(&raw)
            .map_err(|e| internal("infer the schema of the records", e))?;
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
        deps.staging
            .put(
                &inferred_key(run, input.chunk),
                serde_json::to_vec(&crate::schema::schema_to_json(&merged))
                    .map_err(|e| internal("stage inferred schema", e))?,
                &Default::default(),
            )
            .await?;
        merged
    } else {
        declared
    };
    let plan =
        crate::transform::Plan::compile(&flow.tasks, source_schema.clone()).map_err(|errs| {
            StepError::invalid_flow(
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
    let decoded = crate::schema::decode_tolerant(&raw, source_schema, infer).map_err(|e| {
        StepError::new(
            crate::error::ErrorKind::SourceRejected,
            format!(
                "chunk {}: records do not match the source's declared types: {e}",
                input.chunk
            ),
        )
    })?;
    // terminate_run surfaces as its own error kind (SourceRejected), task bugs as InvalidFlow.
    let applied = plan.apply(&decoded.batch).map_err(StepError::from)?;
    let mut rejected: Vec<(usize, String)> = decoded.bad;
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
            &flow,
            input.chunk,
            &raw,
            &rejected,
            &mut warnings,
        )
        .await?;
    }
    let mut buf = Vec::new();
    {
        let mut w = arrow::ipc::writer::FileWriter::try_new(&mut buf, &applied.batch.schema())
            .map_err(|e| internal("stage batch", e))?;
        w.write(&applied.batch)
            .map_err(|e| internal("stage batch", e))?;
        w.finish().map_err(|e| internal("stage batch", e))?;
    }
    let batch_key = run.batch_key(input.chunk);
    deps.staging
        .put(&batch_key, buf, &Default::default())
        .await?;
    let rows = applied.batch.num_rows() as u64;
    deps.runs
        .put_chunk_result(&ChunkResult {
            run_id: run.run_id.clone(),
            chunk: input.chunk,
            stage: ChunkStage::Transform,
            records: rows,
            bytes: 0,
            filtered: applied.filtered,
            rejected: rejected.len() as u64,
            max_cursor: None,
            files: vec![],
            warnings,
            schema: Some(crate::schema::schema_to_json(&applied.batch.schema())),
        })
        .await?;
    Ok(TransformOutput {
        batch_key,
        rows,
        filtered: applied.filtered,
        rejected: rejected.len() as u64,
    })
}

fn inferred_key(run: &RunContext, chunk: u32) -> String {
    format!("{}/inferred/chunk-{chunk:06}.json", run.staging_prefix)
}

async fn read_inferred(
    deps: &Deps,
    run: &RunContext,
    chunk: u32,
) -> Result<Option<arrow::datatypes::SchemaRef>, StepError> {
    match deps.staging.get(&inferred_key(run, chunk)).await {
        Ok(b) => {
            let v: serde_json::Value =
                serde_json::from_slice(&b).map_err(|e| internal("read inferred schema", e))?;
            Ok(Some(
                crate::schema::schema_from_json(&v).map_err(|e| internal("inferred schema", e))?,
            ))
        }
        Err(crate::error::StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The key of a chunk's rejected records under the error location:
/// `[<prefix>/]<flow>/<run_id>/rejected-<chunk>.jsonl` (fixed by (run, chunk): retries overwrite).
pub fn rejected_key(prefix: &str, flow: &str, run_id: &str, chunk: u32) -> String {
    let prefix = prefix.trim_matches('/');
    let key = format!("{flow}/{run_id}/rejected-{chunk:06}.jsonl");
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}/{key}")
    }
}

/// Where a chunk's rejected records wait in staging for write-s3 to publish them.
pub fn staged_rejected_key(run: &RunContext, chunk: u32) -> String {
    format!("{}/rejected/chunk-{chunk:06}.jsonl", run.staging_prefix)
}

/// Rejected records, with the reason, as JSON lines staged for the flow's `error_location`.
/// transform-batch writes only to staging; write-s3, which writes the output, publishes them.
async fn stage_rejected(
    deps: &Deps,
    run: &RunContext,
    flow: &crate::flow::Flow,
    chunk: u32,
    raw: &[u8],
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
    let lines: Vec<&[u8]> = raw
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    let mut body = Vec::new();
    for (line, reason) in rejected {
        let text = lines.get(*line).copied().unwrap_or_default();
        let record = serde_json::from_slice::<serde_json::Value>(text)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(text).into()));
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
    deps.staging
        .put(
            &staged_rejected_key(run, chunk),
            body,
            &crate::ports::PutOptions {
                content_type: Some("application/x-ndjson".into()),
                content_encoding: None,
            },
        )
        .await?;
    Ok(())
}

/// Read a staged Arrow batch.
pub(crate) fn read_batch(
    bytes: Vec<u8>,
) -> Result<Vec<arrow::record_batch::RecordBatch>, StepError> {
    let r = arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| internal("read staged batch", e))?;
    r.collect::<Result<Vec<_>, _>>()
        .map_err(|e| internal("read staged batch", e))
}
