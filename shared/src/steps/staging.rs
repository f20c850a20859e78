//! The staging area between the steps: every key a run stages under
//! `staging/<flow>/<run_id>/`, the staged schema document and the Arrow file format of staged
//! batches. The steps share these through this module and never reach into each other.
//!
//! | key | written by | read by |
//! |---|---|---|
//! | `schema.json` | start-run | fetch-page (pushdown), transform-batch, finalize |
//! | `raw/chunk-NNNNNN.jsonl` | fetch-page | transform-batch |
//! | `inferred/chunk-NNNNNN.json` | transform-batch (schemas inferred from data) | transform-batch |
//! | `batch/chunk-NNNNNN.arrow` | transform-batch | write-s3 |
//! | `rejected/chunk-NNNNNN.jsonl` | transform-batch | write-s3 (publishes them) |
//! | `carry/chunk-NNNNNN.json` | write-s3 | write-s3 (next chunk, final flush) |

use super::{internal, Deps, RunContext};
use crate::error::{StepError, StoreError};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

/// The run's staging folder, with its trailing `/` (what cleanup deletes).
pub fn folder(run: &RunContext) -> String {
    format!("{}/", run.staging_prefix.trim_end_matches('/'))
}

pub fn schema_key(run: &RunContext) -> String {
    format!("{}/schema.json", run.staging_prefix)
}

pub fn raw_key(run: &RunContext, chunk: u32) -> String {
    format!("{}/raw/chunk-{chunk:06}.jsonl", run.staging_prefix)
}

pub fn inferred_key(run: &RunContext, chunk: u32) -> String {
    format!("{}/inferred/chunk-{chunk:06}.json", run.staging_prefix)
}

pub fn batch_key(run: &RunContext, chunk: u32) -> String {
    format!("{}/batch/chunk-{chunk:06}.arrow", run.staging_prefix)
}

pub fn rejected_key(run: &RunContext, chunk: u32) -> String {
    format!("{}/rejected/chunk-{chunk:06}.jsonl", run.staging_prefix)
}

pub fn carry_key(run: &RunContext, chunk: u32) -> String {
    format!("{}/carry/chunk-{chunk:06}.json", run.staging_prefix)
}

/// The run's schemas, staged by start-run: the source's (as described) and the fingerprint of
/// the output schema the run writes (what the schema version is decided on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagedSchema {
    /// `schema::schema_to_json` of the source schema.
    pub source: serde_json::Value,
    pub output_fingerprint: serde_json::Value,
}

impl StagedSchema {
    pub fn new(source: &SchemaRef, output_fingerprint: serde_json::Value) -> Self {
        StagedSchema {
            source: crate::schema::schema_to_json(source),
            output_fingerprint,
        }
    }

    pub async fn put(&self, deps: &Deps, run: &RunContext) -> Result<(), StepError> {
        let body = serde_json::to_vec(self).map_err(|e| internal("encode the staged schema", e))?;
        deps.staging
            .put(&schema_key(run), body, &Default::default())
            .await?;
        Ok(())
    }

    pub async fn get(deps: &Deps, run: &RunContext) -> Result<Self, StepError> {
        let bytes = deps.staging.get(&schema_key(run)).await?;
        serde_json::from_slice(&bytes).map_err(|e| internal("read the run's staged schema", e))
    }

    /// The source schema as Arrow.
    pub fn source_schema(&self) -> Result<SchemaRef, StepError> {
        crate::schema::schema_from_json(&self.source).map_err(|e| internal("staged schema", e))
    }
}

/// A staged batch: one Arrow IPC file.
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>, StepError> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::ipc::writer::FileWriter::try_new(&mut buf, &batch.schema())
            .map_err(|e| internal("stage batch", e))?;
        w.write(batch).map_err(|e| internal("stage batch", e))?;
        w.finish().map_err(|e| internal("stage batch", e))?;
    }
    Ok(buf)
}

/// Read a staged batch back.
pub fn decode_batches(bytes: Vec<u8>) -> Result<Vec<RecordBatch>, StepError> {
    let r = arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| internal("read staged batch", e))?;
    r.collect::<Result<Vec<_>, _>>()
        .map_err(|e| internal("read staged batch", e))
}

/// The schema of a staged batch, without its rows.
pub fn batch_schema(bytes: Vec<u8>) -> Result<SchemaRef, StepError> {
    let r = arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| internal("read staged batch", e))?;
    Ok(r.schema())
}

/// A staged object that may not exist yet (the first chunk's predecessor, a partition with no
/// rejected records).
pub async fn get_optional(deps: &Deps, key: &str) -> Result<Option<Vec<u8>>, StepError> {
    match deps.staging.get(key).await {
        Ok(b) => Ok(Some(b)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array};
    use std::sync::Arc;

    fn run() -> RunContext {
        RunContext {
            run_id: "r1".into(),
            flow: "f".into(),
            flow_version: 1,
            execution_id: "e".into(),
            trigger: Default::default(),
            mode: crate::model::PullMode::Complete,
            window: crate::model::Window {
                start: None,
                end: chrono::Utc::now(),
            },
            started_at: chrono::Utc::now(),
            schema_version: 1,
            staging_prefix: "staging/f/r1".into(),
        }
    }

    #[test]
    fn every_key_is_inside_the_runs_folder() {
        let r = run();
        let folder = folder(&r);
        assert_eq!(folder, "staging/f/r1/");
        for k in [
            schema_key(&r),
            raw_key(&r, 3),
            inferred_key(&r, 3),
            batch_key(&r, 3),
            rejected_key(&r, 3),
            carry_key(&r, 3),
        ] {
            assert!(k.starts_with(&folder), "{k}");
        }
        assert_eq!(batch_key(&r, 12), "staging/f/r1/batch/chunk-000012.arrow");
    }

    #[test]
    fn batches_round_trip() {
        let col: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        let b = RecordBatch::try_from_iter([("n", col)]).unwrap();
        let bytes = encode_batch(&b).unwrap();
        assert_eq!(batch_schema(bytes.clone()).unwrap(), b.schema());
        assert_eq!(decode_batches(bytes).unwrap(), vec![b]);
    }
}
