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
}

pub async fn handle(deps: &Deps, input: TransformInput) -> Result<TransformOutput, StepError> {
    let run = &input.run;
    let (flow, _) = load_flow(deps, &run.flow, Some(run.flow_version)).await?;
    let schema_doc: serde_json::Value =
        serde_json::from_slice(&deps.staging.get(&run.schema_key()).await?)
            .map_err(|e| internal("read the run's staged schema", e))?;
    let source_schema = crate::schema::schema_from_json(&schema_doc["source"])
        .map_err(|e| internal("staged schema", e))?;
    let plan =
        crate::transform::Plan::compile(&flow.tasks, source_schema.clone()).map_err(|errs| {
            StepError::invalid_flow(
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
    let raw = deps.staging.get(&input.raw_key).await?;
    let batch = crate::schema::decode_json_lines(&raw, source_schema).map_err(|e| {
        StepError::new(
            crate::error::ErrorKind::SourceRejected,
            format!(
                "chunk {}: records do not match the source's declared types: {e}",
                input.chunk
            ),
        )
    })?;
    // terminate_run surfaces as its own error kind (SourceRejected), task bugs as InvalidFlow.
    let applied = plan.apply(&batch).map_err(StepError::from)?;
    let mut warnings = vec![];
    if !applied.rejected.is_empty() {
        warnings
            .extend(write_rejected(deps, &flow, run, input.chunk, &raw, &applied.rejected).await?);
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
            rejected: applied.rejected.len() as u64,
            max_cursor: None,
            files: vec![],
            warnings,
            schema: None,
        })
        .await?;
    Ok(TransformOutput {
        batch_key,
        rows,
        filtered: applied.filtered,
    })
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

/// Records refused by `validate` tasks go, with the reason, as JSON lines to the flow's
/// `error_location` (`<flow>/<run_id>/rejected-<chunk>.jsonl`); without one they are only counted,
/// and a warning says how to keep them.
async fn write_rejected(
    deps: &Deps,
    flow: &crate::flow::Flow,
    run: &RunContext,
    chunk: u32,
    raw: &[u8],
    rejected: &[crate::transform::Rejection],
) -> Result<Vec<String>, StepError> {
    let Some(location) = flow.destination.error_location() else {
        return Ok(vec![format!(
            "{} records were rejected by validation and not kept; set destination.error_location to keep them",
            rejected.len()
        )]);
    };
    let lines: Vec<&[u8]> = raw
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut body = Vec::new();
    for r in rejected {
        let record: serde_json::Value = lines
            .get(r.row)
            .and_then(|l| serde_json::from_slice(l).ok())
            .unwrap_or(serde_json::Value::Null);
        let line = serde_json::json!({ "run_id": run.run_id, "chunk": chunk, "reason": r.reason, "record": record });
        serde_json::to_writer(&mut body, &line)
            .map_err(|e| internal("encode rejected record", e))?;
        body.push(b'\n');
    }
    let prefix = match &location {
        crate::flow::Location::S3(s3) if !s3.prefix.is_empty() => format!("{}/", s3.prefix),
        _ => String::new(),
    };
    let store = deps.destinations.resolve(&location).await?;
    let key = format!(
        "{prefix}{}/{}/rejected-{chunk:06}.jsonl",
        flow.name, run.run_id
    );
    let opts = crate::ports::PutOptions {
        content_type: Some("application/x-ndjson".into()),
        content_encoding: None,
    };
    store.put(&key, body, &opts).await?;
    Ok(vec![])
}
