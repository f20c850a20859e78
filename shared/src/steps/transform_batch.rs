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
    let applied = plan
        .apply(&batch)
        .map_err(|e| StepError::invalid_flow(e.to_string()))?;
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
            rejected: 0,
            max_cursor: None,
            files: vec![],
            warnings: vec![],
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
