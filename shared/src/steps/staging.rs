//! The staging area between the steps: every key a run stages under
//! `staging/<flow>/<run_id>/`, the staged schema document and the Arrow file format of staged
//! batches. The steps share these through this module and never reach into each other.
//!
//! | key | written by | read by |
//! |---|---|---|
//! | `schema.json` | start-run | fetch-page (pushdown), transform-batch, finalize |
//! | `raw/chunk-NNNNNN.arrow` | fetch-page: the chunk's records as Arrow IPC (LZ4 buffers, one batch per page, the record and reject counts in the footer), in the source schema | transform-batch |
//! | `raw/chunk-NNNNNN.rejected.jsonl` | fetch-page: records that did not decode (line, reason, raw text) | transform-batch |
//! | `raw/chunk-NNNNNN.jsonl` | fetch-page, for a source that declares no fields (JSON lines; the schema is inferred) | transform-batch |
//! | `inferred/chunk-NNNNNN.json` | transform-batch (schemas inferred from data) | transform-batch |
//! | `batch/chunk-NNNNNN.arrow` | transform-batch; not staged when no task changes the records and none was rejected: the raw chunk is the batch then ([`get_batch`]) | write-s3 |
//! | `rejected/chunk-NNNNNN.jsonl` | transform-batch | write-s3 (publishes them) |
//! | `parts/chunk-NNNNNN-NNNN.parquet` | write-s3: pending rows encoded ahead (Parquet row groups) | write-s3 (the file that takes them) |
//! | `carry/chunk-NNNNNN.json` | write-s3 | write-s3 (next chunk, final flush) |
//!
//! On the embedded engine the `.arrow` chunks are handed to the next step in memory instead
//! (held under the same keys by [`super::hand_off`], written only past its budget); every
//! reader goes through [`get_arrow`] / [`get_batch`], which look there first.

pub use super::hand_off::Held;
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

/// The staged records of a source that declares no fields: JSON lines, inferred later.
pub fn raw_key(run: &RunContext, chunk: u32) -> String {
    format!("{}/raw/chunk-{chunk:06}.jsonl", run.staging_prefix)
}

/// The staged records of a chunk, decoded once by fetch-page: Arrow IPC.
pub fn raw_arrow_key(run: &RunContext, chunk: u32) -> String {
    format!("{}/raw/chunk-{chunk:06}.arrow", run.staging_prefix)
}

/// The records of a chunk fetch-page could not decode, staged beside its Arrow file.
pub fn raw_rejected_key(raw_arrow_key: &str) -> String {
    format!(
        "{}.rejected.jsonl",
        raw_arrow_key
            .strip_suffix(".arrow")
            .unwrap_or(raw_arrow_key)
    )
}

/// Whether a staged raw chunk is Arrow (else JSON lines).
pub fn is_arrow(raw_key: &str) -> bool {
    raw_key.ends_with(".arrow")
}

/// IPC footer metadata: how many records of the chunk did not decode (staged beside it).
const REJECTED_META: &str = "ferry.rejected";
/// The staged chunk's record count, in its IPC footer (read without decoding a batch).
const ROWS_META: &str = "ferry.rows";

/// A record fetch-page could not decode: its line in the chunk (0-based, counting every
/// record in the window), why, and its text as the source sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawReject {
    pub line: usize,
    pub reason: String,
    pub raw: String,
}

/// Stage a chunk's decoded records (encoded by `writer` as they arrived, or held by it for the
/// in-process hand-off) and the records that did not decode beside it (only when there are
/// some).
pub async fn put_raw_chunk(
    deps: &Deps,
    run: &RunContext,
    key: &str,
    chunk: u32,
    writer: RawChunkWriter,
    rejected: &[RawReject],
) -> Result<(), StepError> {
    let staged = writer.finish(rejected.len())?;
    if !rejected.is_empty() {
        let mut body = Vec::new();
        for r in rejected {
            serde_json::to_writer(&mut body, r).map_err(|e| internal("stage rejected", e))?;
            body.push(b'\n');
        }
        super::fenced_stage(deps, run, &raw_rejected_key(key), body).await?;
    }
    match staged {
        Finished::Bytes(buf) => super::fenced_stage(deps, run, key, buf).await,
        Finished::Held(held) => hold(deps, run, key, chunk, held).await,
    }
}

/// Hand a staged chunk to the next step in memory (the embedded engine,
/// [`super::hand_off`]), fenced by the run's lease like a staged write: a step of a run that
/// ended keeps nothing. Chunks past the hand-off's budget are written to staging.
async fn hold(
    deps: &Deps,
    run: &RunContext,
    key: &str,
    chunk: u32,
    held: Held,
) -> Result<(), StepError> {
    let Some(h) = &deps.settings.hand_off else {
        return super::fenced_stage(deps, run, key, encode_held(&held)?).await;
    };
    super::renew_lease(deps, run).await?;
    let spill = h.put(key, &folder(run), chunk, held);
    let done = async {
        for (k, held) in spill {
            deps.staging
                .put(&k, encode_held(&held)?, &Default::default())
                .await?;
            h.forget(&k);
        }
        super::renew_lease(deps, run).await
    }
    .await;
    if done.is_err() {
        h.forget(key);
    }
    done
}

/// A held chunk as its staged Arrow IPC file.
fn encode_held(held: &Held) -> Result<Vec<u8>, StepError> {
    let mut w = ipc_writer(&held.schema)?;
    for b in &held.batches {
        w.write(b).map_err(|e| internal("stage chunk", e))?;
    }
    ipc_finish(w, held.rows() as usize, held.rejected as usize)
}

/// A staged batch transform-batch produced: held in memory when the hand-off may take it
/// (`hold`: its schema cannot change during the run), else staged as an Arrow IPC file.
pub async fn put_batch(
    deps: &Deps,
    run: &RunContext,
    chunk: u32,
    batch: RecordBatch,
    hold_it: bool,
) -> Result<(), StepError> {
    let key = batch_key(run, chunk);
    if hold_it && deps.settings.hand_off.is_some() {
        let held = Held {
            schema: batch.schema(),
            batches: vec![batch],
            rejected: 0,
        };
        return hold(deps, run, &key, chunk, held).await;
    }
    super::fenced_stage(deps, run, &key, encode_batch(&batch)?).await
}

/// A write is done with the staged chunks of its slice before `keep_from`: the hand-off lets
/// them go (files stay until the run's cleanup).
pub fn release_written(deps: &Deps, run: &RunContext, chunk: u32, keep_from: u32) {
    if let Some(h) = &deps.settings.hand_off {
        let slice = chunk / super::slices::STRIDE;
        h.release(&folder(run), |c| {
            c / super::slices::STRIDE == slice && c < keep_from
        });
    }
}

/// Remove the run's staging: its folder, and what the hand-off holds of it.
pub async fn delete_run(deps: &Deps, run: &RunContext) -> Result<(), StoreError> {
    if let Some(h) = &deps.settings.hand_off {
        h.release(&folder(run), |_| true);
    }
    deps.staging.delete_prefix(&folder(run)).await
}

type IpcWriter = arrow::ipc::writer::FileWriter<Vec<u8>>;

/// An IPC file writer for a staged chunk: LZ4-compressed buffers.
fn ipc_writer(schema: &SchemaRef) -> Result<IpcWriter, StepError> {
    let opts = arrow::ipc::writer::IpcWriteOptions::default()
        .try_with_compression(Some(arrow::ipc::CompressionType::LZ4_FRAME))
        .map_err(|e| internal("stage chunk", e))?;
    IpcWriter::try_new_with_options(Vec::new(), schema, opts)
        .map_err(|e| internal("stage chunk", e))
}

/// A staged chunk's bytes, its record count and `rejected` records noted in its footer.
fn ipc_finish(mut w: IpcWriter, rows: usize, rejected: usize) -> Result<Vec<u8>, StepError> {
    w.write_metadata(REJECTED_META, rejected.to_string());
    w.write_metadata(ROWS_META, rows.to_string());
    w.finish().map_err(|e| internal("stage chunk", e))?;
    w.into_inner().map_err(|e| internal("stage chunk", e))
}

/// A chunk's records as staged Arrow IPC, encoded while its pages arrive: buffers
/// LZ4-compressed, one IPC batch per source page (never concatenated), appended by a thread
/// of its own so that fetch-page's request loop only reads and decodes pages, and each page's
/// batch is freed once encoded. The footer carries the record count and the number of
/// records that did not decode. With the embedded engine's hand-off, the pages are held as
/// they are instead ([`RawChunkWriter::holding`]).
///
/// Staging compresses, on S3 and on the embedded engine's disk alike: measured on the
/// embedded engine, writing and reading three times the bytes through the page cache cost
/// more CPU than LZ4 both ways (docs/performance.md).
pub struct RawChunkWriter {
    pages: Option<std::sync::mpsc::SyncSender<RecordBatch>>,
    encoder: Option<std::thread::JoinHandle<Result<IpcWriter, arrow::error::ArrowError>>>,
    /// The pages, when handed off in memory rather than encoded.
    held: Option<Held>,
    rows: usize,
}

/// A finished chunk: its IPC bytes, or its pages for the hand-off.
pub enum Finished {
    Bytes(Vec<u8>),
    Held(Held),
}

impl RawChunkWriter {
    pub fn new(schema: &SchemaRef) -> Result<Self, StepError> {
        let mut w = ipc_writer(schema)?;
        // A few pages may wait while one is encoded; the request loop waits beyond that.
        let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(4);
        let encoder = std::thread::Builder::new()
            .name("stage-chunk".into())
            .spawn(move || {
                for b in rx {
                    w.write(&b)?;
                }
                Ok(w)
            })
            .map_err(|e| internal("start the chunk's encoder", e))?;
        Ok(RawChunkWriter {
            pages: Some(tx),
            encoder: Some(encoder),
            held: None,
            rows: 0,
        })
    }

    /// A writer that keeps the pages for the in-process hand-off (nothing encoded).
    pub fn holding(schema: &SchemaRef) -> Self {
        RawChunkWriter {
            pages: None,
            encoder: None,
            held: Some(Held {
                schema: schema.clone(),
                batches: vec![],
                rejected: 0,
            }),
            rows: 0,
        }
    }

    /// The writer `deps`' engine wants: holding with a hand-off, else encoding.
    pub fn for_engine(deps: &Deps, schema: &SchemaRef) -> Result<Self, StepError> {
        match deps.settings.hand_off {
            Some(_) => Ok(RawChunkWriter::holding(schema)),
            None => RawChunkWriter::new(schema),
        }
    }

    /// Append one page's records.
    pub fn push(&mut self, batch: RecordBatch) -> Result<(), StepError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows();
        if let Some(h) = &mut self.held {
            h.batches.push(batch);
            return Ok(());
        }
        let sent = self.pages.as_ref().map(|tx| tx.send(batch));
        if matches!(sent, Some(Ok(()))) {
            return Ok(());
        }
        // The encoder stopped: its error says why.
        self.pages = None;
        match self.encoder.take().map(std::thread::JoinHandle::join) {
            Some(Ok(Err(e))) => Err(internal("stage chunk", e)),
            _ => Err(internal("stage chunk", "the chunk's encoder stopped")),
        }
    }

    /// The staged chunk (bytes, or its pages held), `rejected` records (staged beside it)
    /// noted in its footer.
    pub fn finish(mut self, rejected: usize) -> Result<Finished, StepError> {
        if let Some(mut h) = self.held.take() {
            h.rejected = rejected as u64;
            return Ok(Finished::Held(h));
        }
        self.pages = None;
        let w = match self.encoder.take().map(std::thread::JoinHandle::join) {
            Some(Ok(Ok(w))) => w,
            Some(Ok(Err(e))) => return Err(internal("stage chunk", e)),
            _ => return Err(internal("stage chunk", "the chunk's encoder stopped")),
        };
        ipc_finish(w, self.rows, rejected).map(Finished::Bytes)
    }
}

impl Drop for RawChunkWriter {
    fn drop(&mut self) {
        // A chunk abandoned half-way (an error, a cancelled step) stops its encoder.
        self.pages = None;
        if let Some(h) = self.encoder.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
fn encode_raw_chunk(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    rejected: usize,
) -> Result<Vec<u8>, StepError> {
    let mut w = RawChunkWriter::new(schema)?;
    for b in batches {
        w.push(b.clone())?;
    }
    match w.finish(rejected)? {
        Finished::Bytes(b) => Ok(b),
        Finished::Held(_) => unreachable!("an encoding writer"),
    }
}

/// What a staged chunk's IPC footer says, without decoding a batch: its schema, its record
/// count and how many records did not decode. `None` for a chunk staged without the count.
pub fn raw_chunk_summary(bytes: &[u8]) -> Result<Option<(SchemaRef, u64, u64)>, StepError> {
    let f = IpcFile::footer(bytes)?;
    let num = |k: &str| f.metadata.get(k).and_then(|v| v.parse::<u64>().ok());
    Ok(num(ROWS_META).map(|rows| (f.schema, rows, num(REJECTED_META).unwrap_or(0))))
}

/// A staged Arrow IPC file, read in place: its batches are slices of the bytes read from
/// staging (no copy; LZ4-compressed buffers are decompressed), where `FileReader` copies every
/// message out of its reader first.
struct IpcFile {
    schema: SchemaRef,
    metadata: std::collections::HashMap<String, String>,
    blocks: Vec<arrow::ipc::Block>,
    dictionaries: Vec<arrow::ipc::Block>,
    version: arrow::ipc::MetadataVersion,
}

impl IpcFile {
    fn footer(bytes: &[u8]) -> Result<IpcFile, StepError> {
        let bad = |e: &dyn std::fmt::Display| internal("read staged batch", e);
        let n = bytes.len();
        if n < 10 || &bytes[n - 6..] != b"ARROW1" {
            return Err(bad(&"not an Arrow IPC file"));
        }
        let len = arrow::ipc::reader::read_footer_length(
            bytes[n - 10..].try_into().map_err(|_| bad(&"short file"))?,
        )
        .map_err(|e| bad(&e))?;
        let start = (n - 10)
            .checked_sub(len)
            .ok_or_else(|| bad(&"footer longer than the file"))?;
        let footer = arrow::ipc::root_as_footer(&bytes[start..n - 10]).map_err(|e| bad(&e))?;
        let schema = footer
            .schema()
            .ok_or_else(|| bad(&"no schema in the footer"))?;
        let metadata = footer
            .custom_metadata()
            .map(|kv| {
                kv.iter()
                    .filter_map(|kv| Some((kv.key()?.to_string(), kv.value()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(IpcFile {
            schema: std::sync::Arc::new(
                arrow::ipc::convert::try_fb_to_schema(schema).map_err(|e| bad(&e))?,
            ),
            metadata,
            blocks: footer
                .recordBatches()
                .map(|b| b.iter().copied().collect())
                .unwrap_or_default(),
            dictionaries: footer
                .dictionaries()
                .map(|b| b.iter().copied().collect())
                .unwrap_or_default(),
            version: footer.version(),
        })
    }

    /// Every batch of the file in `bytes`, with its footer.
    fn read(bytes: Vec<u8>) -> Result<(IpcFile, Vec<RecordBatch>), StepError> {
        let bad = |e: arrow::error::ArrowError| internal("read staged batch", e);
        let f = IpcFile::footer(&bytes)?;
        let buf = arrow::buffer::Buffer::from_vec(bytes);
        let block = |b: &arrow::ipc::Block| {
            buf.slice_with_length(
                b.offset() as usize,
                b.metaDataLength() as usize + b.bodyLength() as usize,
            )
        };
        let mut d = arrow::ipc::reader::FileDecoder::new(f.schema.clone(), f.version);
        for b in &f.dictionaries {
            d.read_dictionary(b, &block(b)).map_err(bad)?;
        }
        // The batches decompress on every core: contiguous runs of blocks, kept in order.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(f.blocks.len())
            .max(1);
        let per = f.blocks.len().div_ceil(threads).max(1);
        let decode = |blocks: &[arrow::ipc::Block]| {
            blocks
                .iter()
                .filter_map(|b| d.read_record_batch(b, &block(b)).transpose())
                .collect::<Result<Vec<_>, _>>()
        };
        let runs: Vec<Result<Vec<RecordBatch>, arrow::error::ArrowError>> =
            std::thread::scope(|s| {
                let mut runs = f.blocks.chunks(per);
                let own = runs.next().unwrap_or_default();
                let others: Vec<_> = runs.map(|r| s.spawn(move || decode(r))).collect();
                let mut all = vec![decode(own)];
                for h in others {
                    all.push(h.join().unwrap_or_else(|_| {
                        Err(arrow::error::ArrowError::IpcError(
                            "a thread decoding staged batches panicked".into(),
                        ))
                    }));
                }
                all
            });
        let mut batches = Vec::with_capacity(f.blocks.len());
        for r in runs {
            batches.extend(r.map_err(bad)?);
        }
        Ok((f, batches))
    }
}

/// A staged Arrow chunk or batch as the next step gets it: held in memory by the hand-off, or
/// the bytes of its IPC file.
pub enum StagedArrow {
    Held(Held),
    File(Vec<u8>),
}

impl StagedArrow {
    /// Its schema, record count and the records that did not decode, without decoding a batch.
    /// `None` for a file staged without the count.
    pub fn summary(&self) -> Result<Option<(SchemaRef, u64, u64)>, StepError> {
        match self {
            StagedArrow::Held(h) => Ok(Some((h.schema.clone(), h.rows(), h.rejected))),
            StagedArrow::File(bytes) => raw_chunk_summary(bytes),
        }
    }

    pub fn schema(&self) -> Result<SchemaRef, StepError> {
        match self {
            StagedArrow::Held(h) => Ok(h.schema.clone()),
            StagedArrow::File(bytes) => Ok(IpcFile::footer(bytes)?.schema),
        }
    }

    /// Its batches (a file's decoded in place) and the number of records that did not decode.
    fn read(self) -> Result<(SchemaRef, Vec<RecordBatch>, usize), StepError> {
        match self {
            StagedArrow::Held(h) => Ok((h.schema, h.batches, h.rejected as usize)),
            StagedArrow::File(bytes) => {
                let (f, batches) = IpcFile::read(bytes)?;
                let rejected = f
                    .metadata
                    .get(REJECTED_META)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                Ok((f.schema, batches, rejected))
            }
        }
    }

    pub fn batches(self) -> Result<Vec<RecordBatch>, StepError> {
        Ok(self.read()?.1)
    }
}

/// A staged Arrow chunk or batch: from the hand-off, else from staging.
pub async fn get_arrow(deps: &Deps, key: &str) -> Result<StagedArrow, StepError> {
    get_arrow_optional(deps, key)
        .await?
        .ok_or_else(|| StoreError::NotFound(key.to_string()).into())
}

async fn get_arrow_optional(deps: &Deps, key: &str) -> Result<Option<StagedArrow>, StepError> {
    if let Some(held) = deps.settings.hand_off.as_ref().and_then(|h| h.get(key)) {
        return Ok(Some(StagedArrow::Held(held)));
    }
    Ok(get_optional(deps, key).await?.map(StagedArrow::File))
}

/// A staged chunk read back: its records as one batch and the records that did not decode.
pub async fn get_raw_chunk(
    deps: &Deps,
    key: &str,
) -> Result<(RecordBatch, Vec<RawReject>), StepError> {
    decode_raw_chunk(deps, key, get_arrow(deps, key).await?).await
}

/// [`get_raw_chunk`] of a chunk already read.
pub async fn decode_raw_chunk(
    deps: &Deps,
    key: &str,
    staged: StagedArrow,
) -> Result<(RecordBatch, Vec<RawReject>), StepError> {
    let (schema, batches, n_rejected) = staged.read()?;
    let batch = arrow::compute::concat_batches(&schema, &batches)
        .map_err(|e| internal("read staged chunk", e))?;
    let rejected = if n_rejected == 0 {
        vec![]
    } else {
        let body = deps.staging.get(&raw_rejected_key(key)).await?;
        body.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).map_err(|e| internal("read staged rejected", e)))
            .collect::<Result<Vec<RawReject>, _>>()?
    };
    Ok((batch, rejected))
}

pub fn inferred_key(run: &RunContext, chunk: u32) -> String {
    format!("{}/inferred/chunk-{chunk:06}.json", run.staging_prefix)
}

pub fn batch_key(run: &RunContext, chunk: u32) -> String {
    format!("{}/batch/chunk-{chunk:06}.arrow", run.staging_prefix)
}

/// A chunk's staged batch: `batch/chunk-N.arrow`, or the staged chunk itself when
/// transform-batch passed it through unchanged (it stages no copy); held or in staging.
pub async fn get_batch(
    deps: &Deps,
    run: &RunContext,
    chunk: u32,
) -> Result<StagedArrow, StepError> {
    match get_arrow_optional(deps, &batch_key(run, chunk)).await? {
        Some(b) => Ok(b),
        None => get_arrow(deps, &raw_arrow_key(run, chunk)).await,
    }
}

pub fn rejected_key(run: &RunContext, chunk: u32) -> String {
    format!("{}/rejected/chunk-{chunk:06}.jsonl", run.staging_prefix)
}

/// Pending rows a chunk's write encoded ahead (Parquet row groups), spliced into the file
/// that takes them.
pub fn part_key(run: &RunContext, chunk: u32, n: u32) -> String {
    format!(
        "{}/parts/chunk-{chunk:06}-{n:04}.parquet",
        run.staging_prefix
    )
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
    /// What describing the source found worth saying (fields widened to JSON text by
    /// inference); transform-batch reports them with the run's first chunk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What the source reads about the entity once per run (`Source::fetch_metadata`: a
    /// ServiceNow table's dictionary, HubSpot's property list); every fetch-page hands it back
    /// instead of reading it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_metadata: Option<serde_json::Value>,
}

impl StagedSchema {
    pub fn new(source: &SchemaRef, output_fingerprint: serde_json::Value) -> Self {
        StagedSchema {
            source: crate::schema::schema_to_json(source),
            output_fingerprint,
            warnings: vec![],
            fetch_metadata: None,
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
            part_key(&r, 3, 1),
            carry_key(&r, 3),
        ] {
            assert!(k.starts_with(&folder), "{k}");
        }
        assert_eq!(batch_key(&r, 12), "staging/f/r1/batch/chunk-000012.arrow");
    }

    /// A staged chunk says its record count and rejects in its footer, and reads as a staged
    /// batch (transform-batch's pass-through hands it to write-s3 unchanged).
    #[test]
    fn a_staged_chunk_summarises_itself_and_reads_as_a_batch() {
        let page = |from: i64| {
            let col: ArrayRef = Arc::new(Int64Array::from_iter_values(from..from + 3));
            RecordBatch::try_from_iter([("n", col)]).unwrap()
        };
        let pages = vec![page(0), page(3), page(6)];
        let schema = pages[0].schema();
        let bytes = encode_raw_chunk(&schema, &pages, 2).unwrap();
        assert_eq!(
            raw_chunk_summary(&bytes).unwrap(),
            Some((schema.clone(), 9, 2))
        );
        let staged = StagedArrow::File(bytes);
        assert_eq!(staged.schema().unwrap(), schema);
        // Read in place (LZ4 buffers decompressed): the pages as staged.
        assert_eq!(staged.batches().unwrap(), pages);
        // A chunk staged before the count was written is read the long way.
        assert_eq!(
            raw_chunk_summary(&encode_batch(&page(0)).unwrap()).unwrap(),
            None
        );
    }

    #[test]
    fn batches_round_trip() {
        let col: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        let b = RecordBatch::try_from_iter([("n", col)]).unwrap();
        let bytes = encode_batch(&b).unwrap();
        let staged = StagedArrow::File(bytes);
        assert_eq!(staged.schema().unwrap(), b.schema());
        assert_eq!(staged.batches().unwrap(), vec![b]);
    }
}
