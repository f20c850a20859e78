//! write-s3: staged Arrow batches -> Parquet/CSV/JSON lines objects under the flow's prefix.
//!
//! File sizing. A Lambda cannot keep a file open between chunks, so rows that do not fill a file
//! yet are *carried*: not copied, but pointed at. After chunk N, `carry/chunk-N.json` in staging
//! says, per partition, from which staged chunk batch (and which row of that partition in it)
//! the unwritten rows start, plus the run's measured encoded bytes per row. Chunk N+1's write
//! reads that pointer; when the pending rows of a partition are estimated to fill a file, it
//! streams them from the staged batches into files that roll over at the target size and leaves
//! the tail (less than one file) pending. finalize flushes what is still pending ([`flush_run`]).
//!
//! Idempotency: what chunk N writes depends only on `carry/chunk-(N-1)`, the staged batches and
//! the flow, so a retried write produces the same objects under the same keys, fixed by
//! (run, chunk, part), and the same `carry/chunk-N`; its chunk result overwrites its own.

use super::staging;
use super::*;
use crate::flow::{DestinationConfig, Location, Sizing};
use crate::model::{ChunkResult, ChunkStage, OutputObject};
use crate::output::layout::{object_key, KeyInput};
use crate::output::FileWriter;
use crate::ports::PutOptions;
use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteInput {
    pub run: RunContext,
    pub chunk: u32,
    /// The chunk's staged batch; absent on the final flush.
    #[serde(default)]
    pub batch_key: Option<String>,
    /// Records transform-batch rejected in this chunk (staged with their reason); published to
    /// the flow's `error_location` here, where the output is written.
    #[serde(default)]
    pub rejected: u64,
    /// The final flush after the last chunk ("Flush Output"): write every row still carried as
    /// the last file of its partition.
    #[serde(default)]
    pub flush: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteOutput {
    pub files: u32,
    pub rows: u64,
    pub bytes: u64,
}

/// Partition values (text form; `None` is a null), in `partition_by` order.
pub type Partition = Vec<(String, Option<String>)>;

/// Rows written to a file between size checks: about 1% of the target, so files stop close to it.
fn slice_rows(target: Option<u64>, bytes_per_row: Option<f64>) -> usize {
    match (target, bytes_per_row) {
        (Some(t), Some(b)) if b > 0.0 => ((t as f64 * 0.01 / b) as usize).clamp(16, 8192),
        _ => 1024,
    }
}
/// Staged batches kept in memory while one write reads them for several partitions.
const CACHE_BYTES: usize = 512 * 1024 * 1024;

/// Rows of one partition not written yet: every row of the partition from row `skip` of staged
/// chunk `from_chunk` up to the chunk that wrote this carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub partition: Partition,
    pub from_chunk: u32,
    pub skip: u64,
    pub rows: u64,
    /// The first of these rows already encoded, as they arrived (Parquet): row groups staged
    /// as parts, in order, which the file splices in byte for byte when it is written (so the
    /// run's last chunk does not encode every pending row at once). The rows after them start
    /// at `raw_from` (chunk, row of the partition in it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<EncodedPart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_from: Option<(u32, u64)>,
    /// The output schema the parts were encoded with (a digest): a run whose inferred schema
    /// widened since encodes those rows again instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts_schema: Option<String>,
    /// Columns whose dictionary outgrew its page in the parts so far: the next parts write
    /// them plain from the first row instead of building a dictionary to throw away (unique
    /// ids, timestamps, free text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plain_columns: Vec<Vec<String>>,
}

/// Pending rows encoded ahead: a staged Parquet file ([`Out::encode_ahead`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodedPart {
    pub key: String,
    pub rows: u64,
    pub bytes: u64,
}

impl Pending {
    fn new(partition: Partition, from_chunk: u32, skip: u64, rows: u64) -> Self {
        Pending {
            partition,
            from_chunk,
            skip,
            rows,
            parts: vec![],
            raw_from: None,
            parts_schema: None,
            plain_columns: vec![],
        }
    }

    /// Where the rows not encoded yet start.
    fn raw_start(&self) -> (u32, u64) {
        self.raw_from.unwrap_or((self.from_chunk, self.skip))
    }

    fn encoded_rows(&self) -> u64 {
        self.parts.iter().map(|p| p.rows).sum()
    }
}

/// A digest of an output schema (which parts were encoded with).
fn schema_digest(schema: &arrow::datatypes::Schema) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(
        crate::schema::schema_to_json(schema).to_string().as_bytes(),
    ))
}

/// Whether this destination's pending rows are encoded as they arrive: Parquet files that
/// collect rows over several chunks. `FERRY_ENCODE_AHEAD=0` turns it off (the bench's
/// comparison, docs/performance.md).
fn encodes_ahead(dest: &DestinationConfig) -> bool {
    dest.format == crate::flow::Format::Parquet
        && !matches!(dest.sizing(), Sizing::PerChunk(_))
        && std::env::var_os("FERRY_ENCODE_AHEAD").is_none_or(|v| v != "0")
}

/// What a chunk's write leaves for the next one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Carry {
    pub pending: Vec<Pending>,
    /// Encoded bytes per row measured so far in this run.
    #[serde(default)]
    pub bytes_per_row: Option<f64>,
}

pub async fn handle(deps: &Deps, input: WriteInput) -> Result<WriteOutput, StepError> {
    let run = &input.run;
    super::renew_lease(deps, run).await?;
    if input.flush {
        return flush_run(deps, run, input.chunk).await;
    }
    let batch_key = input.batch_key.clone().ok_or_else(|| {
        StepError::fatal(format!(
            "chunk {}: write-s3 needs batch_key (the staged batch) unless it is the final flush",
            input.chunk
        ))
    })?;
    let (flow, _) = load_flow(deps, &run.flow, Some(run.flow_version)).await?;
    if input.rejected > 0 {
        publish_rejected(deps, run, &flow, input.chunk).await?;
    }
    let mut out = Out::new(deps, run, &flow).await?;
    // The staged batch's pages as they are: never concatenated (a copy of every record).
    let current = non_empty(staging::get_arrow(deps, &batch_key).await?.batches()?);
    let by = &flow.destination.layout.partition_by;
    let parts = partitions(&current, by)?;
    let schema = current.first().map(|b| b.schema());
    // The first chunk of a slice (chunk 0 of an unsliced run) starts with nothing carried.
    let prev = if super::slices::is_first_chunk(input.chunk) {
        Carry::default()
    } else {
        read_carry(deps, run, input.chunk - 1).await?.ok_or_else(|| {
            StepError::fatal(format!(
                "chunk {}: the carry of chunk {} is missing from staging; the run cannot continue safely (rerun it)",
                input.chunk,
                input.chunk - 1
            ))
        })?
    };
    let mut carry = Carry {
        pending: vec![],
        bytes_per_row: prev.bytes_per_row,
    };
    // The staged chunks this write reads again if it is retried, and the next one reads:
    // the carried rows' and this chunk's (the hand-off lets the older ones go).
    let mut keep_from = prev
        .pending
        .iter()
        .map(|p| p.raw_start().0)
        .fold(input.chunk, u32::min);
    // Every partition with rows: carried ones first (in order), then new ones.
    let mut work: BTreeMap<Partition, Pending> = prev
        .pending
        .into_iter()
        .map(|p| (p.partition.clone(), p))
        .collect();
    for (k, b) in &parts {
        let e = work
            .entry(k.clone())
            .or_insert_with(|| Pending::new(k.clone(), input.chunk, 0, 0));
        e.rows += rows_len(b) as u64;
    }
    let sizing = flow.destination.sizing();
    if carry.bytes_per_row.is_none() && matches!(sizing, Sizing::Target(_)) {
        carry.bytes_per_row = estimate_bytes_per_row(&current, &flow.destination)?;
    }
    out.bytes_per_row = carry.bytes_per_row;
    let mut part = 0u32;
    let mut ahead = 0u32;
    let mut measured = (0u64, 0u64);
    let encode_ahead = encodes_ahead(&flow.destination);
    for (k, p) in work {
        let (target, due, last) = match sizing {
            Sizing::PerChunk(t) => (Some(t), true, true),
            Sizing::SingleFile => (None, false, false),
            Sizing::Target(t) => {
                let est = p.rows as f64 * carry.bytes_per_row.unwrap_or(f64::MAX);
                (Some(t), est >= t as f64, false)
            }
        };
        // What stays pending: all of it when no file is due, else what the files left.
        let (left, schema) = if !due {
            (Some(p), schema.clone())
        } else {
            let schema = match &schema {
                Some(s) => s.clone(),
                None => staged_schema(deps, run, input.chunk).await?,
            };
            let r = out
                .stream(
                    &p,
                    input.chunk,
                    parts.get(&k),
                    &schema,
                    target,
                    last,
                    input.chunk,
                    &mut part,
                )
                .await?;
            measured.0 += r.measured.0;
            measured.1 += r.measured.1;
            (r.left, Some(schema))
        };
        let Some(mut left) = left else { continue };
        if let (true, Some(schema)) = (encode_ahead, &schema) {
            let m = out
                .encode_ahead(&mut left, input.chunk, parts.get(&k), schema, &mut ahead)
                .await?;
            measured.0 += m.0;
            measured.1 += m.1;
        }
        keep_from = keep_from.min(left.raw_start().0);
        carry.pending.push(left);
    }
    if measured.1 > 0 {
        carry.bytes_per_row = Some(measured.0 as f64 / measured.1 as f64);
    }
    super::fenced_stage(
        deps,
        run,
        &staging::carry_key(run, input.chunk),
        serde_json::to_vec(&carry).map_err(|e| internal("encode carry", e))?,
    )
    .await?;
    let written = out.commit(input.chunk).await?;
    staging::release_written(deps, run, input.chunk, keep_from);
    Ok(written)
}

/// Copy a chunk's staged rejected records to the flow's `error_location`
/// (`[<prefix>/]<flow>/<run_id>/rejected-<chunk>.jsonl`: fixed by (run, chunk), retries overwrite).
async fn publish_rejected(
    deps: &Deps,
    run: &RunContext,
    flow: &crate::flow::Flow,
    chunk: u32,
) -> Result<(), StepError> {
    let Some(location) = flow.destination.error_location() else {
        return Ok(());
    };
    let Some(body) = staging::get_optional(deps, &staging::rejected_key(run, chunk)).await? else {
        return Ok(());
    };
    let prefix = match &location {
        Location::S3(s3) => s3.prefix.clone(),
        Location::Local { .. } => String::new(),
    };
    let store = deps.destinations.resolve(&location).await?;
    super::fenced_put(
        deps,
        run,
        store.as_ref(),
        &crate::output::layout::rejected_key(&prefix, &flow.name, &run.run_id, chunk),
        body,
        &PutOptions {
            content_type: Some("application/x-ndjson".into()),
            content_encoding: None,
        },
    )
    .await?;
    Ok(())
}

/// The final flush ("Flush Output", after the last chunk): write every row still pending (the
/// last file of each partition; the only file of each partition with `single_file`).
/// Idempotent like a chunk write: keys use chunk number `last_chunk + 1`.
pub async fn flush_run(
    deps: &Deps,
    run: &RunContext,
    last_chunk: u32,
) -> Result<WriteOutput, StepError> {
    let Some(carry) = read_carry(deps, run, last_chunk).await? else {
        return Ok(WriteOutput {
            files: 0,
            rows: 0,
            bytes: 0,
        });
    };
    let (flow, _) = load_flow(deps, &run.flow, Some(run.flow_version)).await?;
    let mut out = Out::new(deps, run, &flow).await?;
    let target = match flow.destination.sizing() {
        Sizing::SingleFile => None,
        Sizing::PerChunk(t) | Sizing::Target(t) => Some(t),
    };
    let flush_chunk = last_chunk + 1;
    out.bytes_per_row = carry.bytes_per_row;
    let mut part = 0;
    if !carry.pending.is_empty() {
        let schema = staged_schema(deps, run, last_chunk).await?;
        for p in &carry.pending {
            out.stream(
                p,
                last_chunk,
                None,
                &schema,
                target,
                true,
                flush_chunk,
                &mut part,
            )
            .await?;
        }
    }
    let written = out.commit(flush_chunk).await?;
    staging::release_written(deps, run, last_chunk, u32::MAX);
    Ok(written)
}

async fn read_carry(deps: &Deps, run: &RunContext, chunk: u32) -> Result<Option<Carry>, StepError> {
    match staging::get_optional(deps, &staging::carry_key(run, chunk)).await? {
        Some(b) => Ok(Some(
            serde_json::from_slice(&b).map_err(|e| internal("read carry", e))?,
        )),
        None => Ok(None),
    }
}

/// The schema of a staged chunk batch (the widest of the run so far for inferred schemas).
async fn staged_schema(deps: &Deps, run: &RunContext, chunk: u32) -> Result<SchemaRef, StepError> {
    staging::get_batch(deps, run, chunk).await?.schema()
}

/// Encoded bytes per row of a sample of the rows.
fn estimate_bytes_per_row(rows: &Rows, dest: &DestinationConfig) -> Result<Option<f64>, StepError> {
    let n = rows_len(rows).min(20_000);
    if n == 0 {
        return Ok(None);
    }
    let e = crate::output::encode(&rows_slice(rows, 0, n), dest)
        .map_err(|e| internal("encode output", e))?;
    Ok(Some(e.body.len() as f64 / n as f64))
}

struct StreamResult {
    left: Option<Pending>,
    /// (bytes, rows) of what was encoded, for the bytes-per-row estimate.
    measured: (u64, u64),
}

/// One step's writes to the destination.
struct Out<'a> {
    deps: &'a Deps,
    run: &'a RunContext,
    flow: &'a crate::flow::Flow,
    store: Arc<dyn BlobStore>,
    prefix: String,
    ext: String,
    files: Vec<OutputObject>,
    cache: HashMap<u32, BTreeMap<Partition, Rows>>,
    cached_bytes: usize,
    /// The run's encoded bytes per row, when known (sets the size-check granularity).
    bytes_per_row: Option<f64>,
}

impl<'a> Out<'a> {
    async fn new(
        deps: &'a Deps,
        run: &'a RunContext,
        flow: &'a crate::flow::Flow,
    ) -> Result<Out<'a>, StepError> {
        let location = flow.destination.location();
        let store = deps.destinations.resolve(&location).await?;
        let prefix = match &location {
            Location::S3(s3) => s3.prefix.clone(),
            Location::Local { .. } => String::new(),
        };
        Ok(Out {
            deps,
            run,
            flow,
            store,
            prefix,
            ext: crate::output::extension(&flow.destination),
            files: vec![],
            cache: HashMap::new(),
            cached_bytes: 0,
            bytes_per_row: None,
        })
    }

    /// The rows of `partition` in staged chunk `chunk`.
    async fn chunk_rows(
        &mut self,
        chunk: u32,
        partition: &Partition,
    ) -> Result<Option<Rows>, StepError> {
        if let Some(m) = self.cache.get(&chunk) {
            return Ok(m.get(partition).cloned());
        }
        let rows = non_empty(
            staging::get_batch(self.deps, self.run, chunk)
                .await?
                .batches()?,
        );
        let parts = partitions(&rows, &self.flow.destination.layout.partition_by)?;
        let found = parts.get(partition).cloned();
        let size: usize = parts
            .values()
            .flatten()
            .map(RecordBatch::get_array_memory_size)
            .sum();
        // Only another partition of this chunk reads it again: a chunk of one partition is
        // not kept (a run without `partition_by` would otherwise hold every pending row).
        if parts.len() > 1 && self.cached_bytes + size <= CACHE_BYTES {
            self.cached_bytes += size;
            self.cache.insert(chunk, parts);
        }
        Ok(found)
    }

    /// The partition's rows of staged chunk `c` not written yet, pending rows starting at
    /// `start` (chunk, row); `upto`'s rows may be given as `current`. With the row they start
    /// at; `None` when the chunk has none left.
    async fn rows_from(
        &mut self,
        c: u32,
        start: (u32, u64),
        upto: u32,
        current: Option<&Rows>,
        partition: &Partition,
    ) -> Result<Option<(Rows, usize)>, StepError> {
        let rows = match (c == upto, current) {
            (true, Some(b)) => Some(b.clone()),
            _ => self.chunk_rows(c, partition).await?,
        };
        let Some(rows) = rows else { return Ok(None) };
        let first = if c == start.0 { start.1 as usize } else { 0 };
        let total = rows_len(&rows);
        if first >= total {
            return Ok(None);
        }
        Ok(Some((rows_slice(&rows, first, total - first), first)))
    }

    /// Write the pending rows of one partition, from `p.from_chunk` up to `upto` (whose rows
    /// may be given as `current`), into files of `target` bytes. With `last`, the tail becomes
    /// a file too; without, it is left pending.
    #[allow(clippy::too_many_arguments)]
    async fn stream(
        &mut self,
        p: &Pending,
        upto: u32,
        current: Option<&Rows>,
        schema: &SchemaRef,
        target: Option<u64>,
        last: bool,
        key_chunk: u32,
        part: &mut u32,
    ) -> Result<StreamResult, StepError> {
        let flow: &'a crate::flow::Flow = self.flow;
        let dest = &flow.destination;
        let out_schema = crate::output::output_schema(schema, dest);
        let mut writer: Option<(FileWriter, u32, u64)> = None;
        let mut measured = (0u64, 0u64);
        // Rows encoded ahead go in first, spliced byte for byte, when they were encoded with
        // this schema (an inferred schema may have widened since: then they are encoded
        // again from the staged batches, like every other row).
        let (mut from, mut from_skip) = (p.from_chunk, p.skip);
        if !p.parts.is_empty() && p.parts_schema.as_deref() == Some(&schema_digest(&out_schema)) {
            let mut w = FileWriter::new(out_schema.clone(), dest)
                .map_err(|e| internal("encode output", e))?;
            for part in &p.parts {
                let body = bytes::Bytes::from(self.deps.staging.get(&part.key).await?);
                w.append_encoded(&body)
                    .map_err(|e| internal(&format!("splice {}", part.key), e))?;
            }
            writer = Some((w, p.from_chunk, p.skip));
            (from, from_skip) = p.raw_start();
        }
        for c in from..=upto {
            let Some((rows, start)) = self
                .rows_from(c, (from, from_skip), upto, current, &p.partition)
                .await?
            else {
                continue;
            };
            let mut offset = start as u64;
            let per_slice = slice_rows(target, self.bytes_per_row);
            for s in rows
                .iter()
                .flat_map(|b| crate::output::slices(b, per_slice))
            {
                let n = s.num_rows() as u64;
                let s = shape(&s, schema, dest)?;
                let (w, _, _) = match &mut writer {
                    Some(open) => open,
                    None => writer.insert((
                        FileWriter::new(out_schema.clone(), dest)
                            .map_err(|e| internal("encode output", e))?,
                        c,
                        offset,
                    )),
                };
                w.write(&s, dest)
                    .map_err(|e| internal("encode output", e))?;
                offset += n;
                let full = match target {
                    Some(t) => w.reached(t).map_err(|e| internal("encode output", e))?,
                    None => false,
                };
                if full {
                    if let Some((w, _, _)) = writer.take() {
                        let (bytes, rows) = self.upload(w, &p.partition, key_chunk, part).await?;
                        measured.0 += bytes;
                        measured.1 += rows;
                    }
                }
            }
        }
        let mut left = None;
        if let Some((w, c, skip)) = writer {
            if last {
                let (bytes, rows) = self.upload(w, &p.partition, key_chunk, part).await?;
                measured.0 += bytes;
                measured.1 += rows;
            } else {
                let rows = w.rows();
                let e = w.finish().map_err(|e| internal("encode output", e))?;
                measured.0 += e.body.len() as u64;
                measured.1 += rows;
                left = Some(Pending::new(p.partition.clone(), c, skip, rows));
            }
        }
        Ok(StreamResult { left, measured })
    }

    /// Encode `p`'s rows not encoded yet (up to staged chunk `upto`, whose rows may be given
    /// as `current`) once there are a row group's worth, and stage them as a part; returns the
    /// (bytes, rows) encoded. They are cut into row groups of equal size, at most
    /// `row_group_size` rows and at least half (every row group but a file's last): a chunk's
    /// rows are encoded while it is in memory, never read again to fill the next row group.
    async fn encode_ahead(
        &mut self,
        p: &mut Pending,
        upto: u32,
        current: Option<&Rows>,
        schema: &SchemaRef,
        n_part: &mut u32,
    ) -> Result<(u64, u64), StepError> {
        let flow: &'a crate::flow::Flow = self.flow;
        let dest = &flow.destination;
        let out_schema = crate::output::output_schema(schema, dest);
        let digest = schema_digest(&out_schema);
        if p.parts_schema.as_ref().is_some_and(|d| *d != digest) {
            // The inferred schema widened: what was encoded is encoded again, with it.
            p.parts.clear();
            p.raw_from = None;
            p.plain_columns.clear();
        }
        let group = dest.parquet.row_group_size.max(1) as u64;
        let n = p.rows - p.encoded_rows();
        if n < group {
            return Ok((0, 0));
        }
        let (from, skip) = p.raw_start();
        let mut w = FileWriter::with_plain_columns(out_schema, dest, &p.plain_columns)
            .map_err(|e| internal("encode output", e))?;
        w.set_row_group_rows(n.div_ceil(n.div_ceil(group)) as usize);
        let mut need = n;
        let mut end = (from, skip);
        for c in from..=upto {
            if need == 0 {
                break;
            }
            let Some((rows, start)) = self
                .rows_from(c, (from, skip), upto, current, &p.partition)
                .await?
            else {
                continue;
            };
            let left = rows_len(&rows);
            let take = left.min(need as usize);
            for piece in rows_slice(&rows, 0, take) {
                w.write(&shape(&piece, schema, dest)?, dest)
                    .map_err(|e| internal("encode output", e))?;
            }
            need -= take as u64;
            end = if take == left {
                (c + 1, 0)
            } else {
                (c, (start + take) as u64)
            };
        }
        if need > 0 {
            return Err(internal(
                "encode pending rows",
                format!(
                    "{need} of the partition's pending rows are missing from the staged batches; the run cannot continue safely (rerun it)"
                ),
            ));
        }
        let body = w.finish().map_err(|e| internal("encode output", e))?.body;
        let body = bytes::Bytes::from(body);
        for c in crate::output::plain_columns(&body).map_err(|e| internal("encode output", e))? {
            if !p.plain_columns.contains(&c) {
                p.plain_columns.push(c);
            }
        }
        let body = Vec::<u8>::from(body);
        let key = staging::part_key(self.run, upto, *n_part);
        *n_part += 1;
        let bytes = body.len() as u64;
        super::fenced_stage(self.deps, self.run, &key, body).await?;
        p.parts.push(EncodedPart {
            key,
            rows: n,
            bytes,
        });
        p.raw_from = Some(end);
        p.parts_schema = Some(digest);
        Ok((bytes, n))
    }

    async fn upload(
        &mut self,
        w: FileWriter,
        partition: &Partition,
        chunk: u32,
        part: &mut u32,
    ) -> Result<(u64, u64), StepError> {
        let encoded = w.finish().map_err(|e| internal("encode output", e))?;
        let key = object_key(
            &self.flow.destination.layout,
            &KeyInput {
                prefix: &self.prefix,
                flow: &self.flow.name,
                execution_id: &self.run.run_id,
                schema_version: self.run.schema_version,
                run_time: self.run.started_at,
                partition,
                chunk,
                part: *part,
                extension: &self.ext,
            },
        );
        *part += 1;
        let bytes = encoded.body.len() as u64;
        let opts = PutOptions {
            content_type: Some(encoded.content_type.to_string()),
            content_encoding: encoded.content_encoding.map(str::to_string),
        };
        // Fenced: a run ended from outside (stopped, reaped) while this step encoded leaves no
        // orphan behind (super::fenced_put).
        super::fenced_put(
            self.deps,
            self.run,
            self.store.as_ref(),
            &key,
            encoded.body,
            &opts,
        )
        .await?;
        self.files.push(OutputObject {
            uri: self.store.uri(&key),
            key,
            format: self.flow.destination.format.as_str().to_string(),
            rows: encoded.rows,
            bytes,
            schema_version: self.run.schema_version,
        });
        Ok((bytes, encoded.rows))
    }

    /// Record what this chunk (or the final flush) wrote.
    async fn commit(self, chunk: u32) -> Result<WriteOutput, StepError> {
        let rows = self.files.iter().map(|f| f.rows).sum();
        let bytes = self.files.iter().map(|f| f.bytes).sum();
        let n = self.files.len() as u32;
        let deps = self.deps;
        deps.runs
            .put_chunk_result(&ChunkResult {
                run_id: self.run.run_id.clone(),
                chunk,
                stage: ChunkStage::Write,
                records: rows,
                bytes,
                filtered: 0,
                rejected: 0,
                max_cursor: None,
                files: self.files,
                warnings: vec![],
                schema: None,
            })
            .await?;
        Ok(WriteOutput {
            files: n,
            rows,
            bytes,
        })
    }
}

/// Rows of a staged batch as the destination takes them: in the run's (widest) schema, then
/// shaped for the format.
fn shape(
    rows: &RecordBatch,
    schema: &SchemaRef,
    dest: &DestinationConfig,
) -> Result<RecordBatch, StepError> {
    crate::output::conform(rows, schema)
        .and_then(|s| {
            crate::output::prepare(&s, dest)
                .map_err(|e| arrow::error::ArrowError::CastError(e.to_string()))
        })
        .map_err(|e| internal("shape rows for output", e))
}

/// A staged batch's rows: its pages, in order, none empty (never concatenated into one
/// batch, which would copy every record).
type Rows = Vec<RecordBatch>;

fn non_empty(mut batches: Vec<RecordBatch>) -> Rows {
    batches.retain(|b| b.num_rows() > 0);
    batches
}

fn rows_len(rows: &[RecordBatch]) -> usize {
    rows.iter().map(RecordBatch::num_rows).sum()
}

/// `len` rows from row `start`, as slices of the pages (no copy).
fn rows_slice(rows: &[RecordBatch], start: usize, len: usize) -> Rows {
    let mut out = vec![];
    let (mut skip, mut left) = (start, len);
    for b in rows {
        if left == 0 {
            break;
        }
        if skip >= b.num_rows() {
            skip -= b.num_rows();
            continue;
        }
        let take = (b.num_rows() - skip).min(left);
        out.push(b.slice(skip, take));
        left -= take;
        skip = 0;
    }
    out
}

/// Rows by the values of the partition fields, in row order within each partition (which the
/// carry's row offsets rely on); one partition, the rows themselves, without `partition_by`.
fn partitions(rows: &Rows, by: &[String]) -> Result<BTreeMap<Partition, Rows>, StepError> {
    let mut out: BTreeMap<Partition, Rows> = BTreeMap::new();
    if by.is_empty() {
        if !rows.is_empty() {
            out.insert(vec![], rows.clone());
        }
        return Ok(out);
    }
    for b in rows {
        for (k, part) in partition_batch(b, by)? {
            out.entry(k).or_default().push(part);
        }
    }
    Ok(out)
}

/// Split a batch by the values of the partition fields (text form; nulls kept apart). Row
/// order inside a partition is kept, which the carry's row offsets rely on.
fn partition_batch(
    b: &RecordBatch,
    by: &[String],
) -> Result<Vec<(Partition, RecordBatch)>, StepError> {
    let cols: Vec<arrow::array::StringArray> = by
        .iter()
        .map(|f| {
            let c = b.column_by_name(f).ok_or_else(|| {
                StepError::invalid_flow(format!(
                    "destination.layout.partition_by: '{f}' is not a destination field"
                ))
            })?;
            let t = crate::output::to_text(c).map_err(|e| internal("partition value", e))?;
            t.as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .cloned()
                .ok_or_else(|| internal("partition value", "not text"))
        })
        .collect::<Result<_, StepError>>()?;
    let mut groups: BTreeMap<Partition, Vec<u32>> = BTreeMap::new();
    for row in 0..b.num_rows() {
        let key: Partition = by
            .iter()
            .zip(&cols)
            .map(|(f, s)| {
                (
                    f.clone(),
                    (!s.is_null(row)).then(|| s.value(row).to_string()),
                )
            })
            .collect();
        groups.entry(key).or_default().push(row as u32);
    }
    groups
        .into_iter()
        .map(|(k, rows)| {
            let idx = UInt32Array::from(rows);
            let cols = b
                .columns()
                .iter()
                .map(|c| arrow::compute::take(c, &idx, None))
                .collect::<Result<Vec<ArrayRef>, _>>()
                .map_err(|e| internal("partition", e))?;
            Ok((
                k,
                RecordBatch::try_new(b.schema(), cols).map_err(|e| internal("partition", e))?,
            ))
        })
        .collect()
}
