//! write-s3: a staged Arrow batch -> Parquet/CSV/JSON lines objects under the flow's prefix.
//! Keys are fixed by (run, chunk, partition, part), so a retried write overwrites.

use super::*;
use crate::flow::Location;
use crate::model::{ChunkResult, ChunkStage, OutputObject};
use crate::output::layout::{object_key, KeyInput};
use crate::ports::PutOptions;
use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::record_batch::RecordBatch;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteInput {
    pub run: RunContext,
    pub chunk: u32,
    pub batch_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteOutput {
    pub files: u32,
    pub rows: u64,
    pub bytes: u64,
}

pub async fn handle(deps: &Deps, input: WriteInput) -> Result<WriteOutput, StepError> {
    let run = &input.run;
    let (flow, _) = load_flow(deps, &run.flow, Some(run.flow_version)).await?;
    let dest = &flow.destination;
    let location = dest.location();
    let store = deps.destinations.resolve(&location).await?;
    let prefix = match &location {
        Location::S3(s3) => s3.prefix.clone(),
        Location::Local { .. } => String::new(),
    };
    let batches = super::transform_batch::read_batch(deps.staging.get(&input.batch_key).await?)?;
    let ext = crate::output::extension(dest);
    let mut files = vec![];
    for (partition, batch) in partitions(&batches, &dest.layout.partition_by)? {
        if batch.num_rows() == 0 {
            continue;
        }
        let encoded =
            crate::output::encode(&[batch], dest).map_err(|e| internal("encode output", e))?;
        let key = object_key(
            &dest.layout,
            &KeyInput {
                prefix: &prefix,
                flow: &flow.name,
                execution_id: &run.run_id,
                schema_version: run.schema_version,
                run_time: run.started_at,
                partition: &partition,
                chunk: input.chunk,
                part: 0,
                extension: &ext,
            },
        );
        let bytes = encoded.body.len() as u64;
        let opts = PutOptions {
            content_type: Some(encoded.content_type.to_string()),
            content_encoding: encoded.content_encoding.map(str::to_string),
        };
        store.put(&key, encoded.body, &opts).await?;
        files.push(OutputObject {
            uri: store.uri(&key),
            key,
            format: dest.format.as_str().to_string(),
            rows: encoded.rows,
            bytes,
            schema_version: run.schema_version,
        });
    }
    let rows = files.iter().map(|f| f.rows).sum();
    let bytes = files.iter().map(|f| f.bytes).sum();
    deps.runs
        .put_chunk_result(&ChunkResult {
            run_id: run.run_id.clone(),
            chunk: input.chunk,
            stage: ChunkStage::Write,
            records: rows,
            bytes,
            filtered: 0,
            rejected: 0,
            max_cursor: None,
            files: files.clone(),
            warnings: vec![],
            schema: None,
        })
        .await?;
    Ok(WriteOutput {
        files: files.len() as u32,
        rows,
        bytes,
    })
}

type Partition = Vec<(String, Option<String>)>;

/// Split batches by the values of the partition fields (text form; nulls kept apart).
fn partitions(
    batches: &[RecordBatch],
    by: &[String],
) -> Result<Vec<(Partition, RecordBatch)>, StepError> {
    let mut out: BTreeMap<Partition, Vec<RecordBatch>> = BTreeMap::new();
    for b in batches {
        if by.is_empty() {
            out.entry(vec![]).or_default().push(b.clone());
            continue;
        }
        let cols: Vec<ArrayRef> = by
            .iter()
            .map(|f| {
                let c = b.column_by_name(f).ok_or_else(|| {
                    StepError::invalid_flow(format!(
                        "destination.layout.partition_by: '{f}' is not a destination field"
                    ))
                })?;
                arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8)
                    .map_err(|e| internal("partition value", e))
            })
            .collect::<Result<_, _>>()?;
        let mut groups: BTreeMap<Partition, Vec<u32>> = BTreeMap::new();
        for row in 0..b.num_rows() {
            let key: Partition = by
                .iter()
                .zip(&cols)
                .map(|(f, c)| {
                    let s = c
                        .as_any()
                        .downcast_ref::<arrow::array::StringArray>()
                        .unwrap();
                    (
                        f.clone(),
                        (!s.is_null(row)).then(|| s.value(row).to_string()),
                    )
                })
                .collect();
            groups.entry(key).or_default().push(row as u32);
        }
        for (k, rows) in groups {
            let idx = UInt32Array::from(rows);
            let cols = b
                .columns()
                .iter()
                .map(|c| arrow::compute::take(c, &idx, None))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| internal("partition", e))?;
            out.entry(k).or_default().push(
                RecordBatch::try_new(b.schema(), cols).map_err(|e| internal("partition", e))?,
            );
        }
    }
    out.into_iter()
        .map(|(k, bs)| {
            let schema = bs[0].schema();
            let b = arrow::compute::concat_batches(&schema, &bs)
                .map_err(|e| internal("partition", e))?;
            Ok((k, b))
        })
        .collect()
}
