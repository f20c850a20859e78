//! Encoders (Parquet, CSV, JSON lines), the object key layout and file rotation.
//!
//! [`FileWriter`] encodes a stream of record batches into one object and knows, as it goes, how
//! big the object is, so callers can roll over to a new file at a target size
//! ([`FileWriter::reached`]). [`prepare`] shapes a batch for a format first: every column as text
//! when the flow does not keep source types, nested columns as JSON text for CSV.

pub mod layout;

use crate::flow::{Compression, DestinationConfig, Format};
use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use std::io::Write;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("encode {format}: {source}")]
    Arrow {
        format: &'static str,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("encode parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn arrow_err(format: &'static str) -> impl Fn(arrow::error::ArrowError) -> OutputError {
    move |source| OutputError::Arrow { format, source }
}

/// One encoded object, ready to upload.
#[derive(Debug)]
pub struct Encoded {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub content_encoding: Option<&'static str>,
    pub rows: u64,
}

/// The file extension (with compression suffix for CSV and JSON lines).
pub fn extension(dest: &DestinationConfig) -> String {
    match (dest.format, dest.compression()) {
        (Format::Parquet, _) => "parquet".into(),
        (f, Compression::Gzip) => format!("{}.gz", f.extension()),
        (f, _) => f.extension().into(),
    }
}

/// The `Content-Type` of an object in this format.
pub fn content_type(format: Format) -> &'static str {
    match format {
        Format::Parquet => "application/vnd.apache.parquet",
        Format::Csv => "text/csv; charset=utf-8",
        Format::Jsonl => "application/x-ndjson",
    }
}

/// The schema objects are written with, given the batch schema: all `Utf8` when the flow does not
/// keep source types; nested columns (structs, lists, maps) as JSON text for CSV.
pub fn output_schema(schema: &Schema, dest: &DestinationConfig) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                if needs_text(f.data_type(), dest) {
                    Field::new(f.name(), DataType::Utf8, true)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect::<Vec<_>>(),
    ))
}

fn needs_text(t: &DataType, dest: &DestinationConfig) -> bool {
    if !dest.preserve_source_types {
        return t != &DataType::Utf8;
    }
    dest.format == Format::Csv && is_nested(t)
}

fn is_nested(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Struct(_)
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Map(..)
    )
}

/// Shape a batch for the destination (see [`output_schema`]).
pub fn prepare(batch: &RecordBatch, dest: &DestinationConfig) -> Result<RecordBatch, OutputError> {
    let schema = output_schema(&batch.schema(), dest);
    if schema.fields() == batch.schema().fields() {
        return Ok(batch.clone());
    }
    let cols = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                to_text(c)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, cols).map_err(arrow_err("text columns"))
}

/// A batch in `schema`: columns in its order, cast to its types (nested values to JSON text
/// where the target is text), missing columns null.
pub fn conform(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let cols = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            None => Ok(arrow::array::new_null_array(
                f.data_type(),
                batch.num_rows(),
            )),
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) if f.data_type() == &DataType::Utf8 => {
                to_text(c).map_err(|e| arrow::error::ArrowError::CastError(e.to_string()))
            }
            Some(c) => arrow::compute::cast(c, f.data_type()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        cols,
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}

/// A column as text: nested values as JSON, timestamps as RFC 3339, other scalars by arrow's
/// cast (decimals keep every digit of their scale).
pub fn to_text(col: &ArrayRef) -> Result<ArrayRef, OutputError> {
    if is_nested(col.data_type()) {
        return json_text(col);
    }
    arrow::compute::cast(col, &DataType::Utf8).map_err(arrow_err("text columns"))
}

/// Nested values as one JSON document per row (null stays null).
fn json_text(col: &ArrayRef) -> Result<ArrayRef, OutputError> {
    let field = Field::new("v", col.data_type().clone(), true);
    let one = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![col.clone()])
        .map_err(arrow_err("json text"))?;
    let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
    w.write(&one).map_err(arrow_err("json text"))?;
    w.finish().map_err(arrow_err("json text"))?;
    let text = w.into_inner();
    let mut out = Vec::with_capacity(col.len());
    for (i, line) in text.split(|b| *b == b'\n').take(col.len()).enumerate() {
        let line = std::str::from_utf8(line).map_err(|e| {
            OutputError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })?;
        out.push(if col.is_null(i) {
            None
        } else {
            // `{"v":<json>}`; a row the writer had nothing for is `{}`.
            line.strip_prefix("{\"v\":")
                .and_then(|s| s.strip_suffix('}'))
                .map(str::to_string)
        });
    }
    Ok(Arc::new(StringArray::from(out)))
}

/// Where encoded bytes go: plain or through gzip.
enum Sink {
    Plain(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(v) => v.write(buf),
            Sink::Gzip(g) => g.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn len(&self) -> usize {
        match self {
            Sink::Plain(v) => v.len(),
            Sink::Gzip(g) => g.get_ref().len(),
        }
    }
    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Sink::Plain(v) => Ok(v),
            Sink::Gzip(g) => g.finish(),
        }
    }
}

enum Kind {
    Parquet(Box<ParquetOut>),
    Text {
        format: Format,
        sink: Sink,
        header: bool,
    },
}

/// One output object being written: batches in, bytes out, with a running size.
pub struct FileWriter {
    kind: Kind,
    schema: SchemaRef,
    dest_format: Format,
    gzip: bool,
    rows: u64,
}

impl FileWriter {
    /// A writer for batches of `schema` (the *output* schema, see [`output_schema`]).
    pub fn new(schema: SchemaRef, dest: &DestinationConfig) -> Result<Self, OutputError> {
        Self::with_plain_columns(schema, dest, &[])
    }

    /// Parquet: `plain` columns (paths) are written without a dictionary, from the first row:
    /// columns whose dictionary outgrew its page in earlier row groups of the run, where
    /// building it again is wasted work ([`plain_columns`]).
    pub fn with_plain_columns(
        schema: SchemaRef,
        dest: &DestinationConfig,
        plain: &[Vec<String>],
    ) -> Result<Self, OutputError> {
        let gzip = dest.format != Format::Parquet && dest.compression() == Compression::Gzip;
        let kind = match dest.format {
            Format::Parquet => {
                Kind::Parquet(Box::new(ParquetOut::new(schema.clone(), dest, plain)?))
            }
            f => Kind::Text {
                format: f,
                sink: if gzip {
                    Sink::Gzip(flate2::write::GzEncoder::new(
                        Vec::new(),
                        flate2::Compression::default(),
                    ))
                } else {
                    Sink::Plain(Vec::new())
                },
                header: dest.csv.header,
            },
        };
        Ok(FileWriter {
            kind,
            schema,
            dest_format: dest.format,
            gzip,
            rows: 0,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Append a batch (already shaped by [`prepare`]).
    pub fn write(
        &mut self,
        batch: &RecordBatch,
        dest: &DestinationConfig,
    ) -> Result<(), OutputError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        match &mut self.kind {
            Kind::Parquet(w) => w.write(batch)?,
            Kind::Text {
                format,
                sink,
                header,
            } => match format {
                Format::Csv => {
                    let mut cw = arrow::csv::WriterBuilder::new()
                        .with_header(*header && self.rows == 0)
                        .with_delimiter(dest.csv.delimiter as u8)
                        .build(&mut *sink);
                    cw.write(batch).map_err(arrow_err("csv"))?;
                }
                _ => {
                    let mut jw = arrow::json::LineDelimitedWriter::new(&mut *sink);
                    jw.write(batch).map_err(arrow_err("jsonl"))?;
                    jw.finish().map_err(arrow_err("jsonl"))?;
                }
            },
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Append the row groups of `part`, a Parquet file encoded earlier with this object's
    /// schema (write-s3 encodes a run's pending rows as they arrive and splices them in when
    /// the file is written): its column chunks are copied byte for byte, page indexes and
    /// statistics kept. An error when this object is not Parquet or `part` has another schema.
    pub fn append_encoded(&mut self, part: &bytes::Bytes) -> Result<(), OutputError> {
        let Kind::Parquet(w) = &mut self.kind else {
            return Err(parquet::errors::ParquetError::General(
                "encoded rows can only be spliced into a Parquet object".into(),
            )
            .into());
        };
        self.rows += w.append(part)?;
        Ok(())
    }

    /// Parquet: rows per row group from now on (the destination's `row_group_size` otherwise).
    pub fn set_row_group_rows(&mut self, rows: usize) {
        if let Kind::Parquet(w) = &mut self.kind {
            w.row_group_rows = rows.max(1);
        }
    }

    /// The object's size so far (Parquet: written row groups plus an estimate of the open one).
    pub fn size(&self) -> u64 {
        match &self.kind {
            Kind::Parquet(w) => w.size(),
            Kind::Text { sink, .. } => sink.len() as u64,
        }
    }

    /// Whether the object has reached `target` bytes. For Parquet an estimate past the target
    /// closes the open row group first, so the answer rests on bytes actually encoded.
    pub fn reached(&mut self, target: u64) -> Result<bool, OutputError> {
        if self.size() < target {
            return Ok(false);
        }
        if let Kind::Parquet(w) = &mut self.kind {
            w.flush()?;
            // The footer adds a little; call it reached within 2%.
            return Ok(w.written() >= target - target / 50);
        }
        Ok(true)
    }

    /// Close the object.
    pub fn finish(self) -> Result<Encoded, OutputError> {
        let body = match self.kind {
            Kind::Parquet(w) => w.finish()?,
            Kind::Text { sink, .. } => sink.finish()?,
        };
        Ok(Encoded {
            body,
            content_type: content_type(self.dest_format),
            content_encoding: self.gzip.then_some("gzip"),
            rows: self.rows,
        })
    }
}

/// Parquet written one row group at a time, its columns encoded on every core: rows wait in
/// memory (slices of the caller's batches, not copies) until a row group is full, then each
/// column chunk is encoded by whichever thread is free (parquet's `ArrowColumnWriter` API) and
/// the chunks are appended in column order. The file (footer, embedded Arrow schema) is what
/// `ArrowWriter` writes.
struct ParquetOut {
    w: parquet::file::writer::SerializedFileWriter<Vec<u8>>,
    factory: parquet::arrow::arrow_writer::ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    /// In-memory bytes of the pending rows.
    pending_bytes: usize,
    row_group_rows: usize,
    groups: usize,
    /// Encoded bytes per in-memory byte, learned from flushed row groups.
    ratio: f64,
    /// Threads encoding a row group's column chunks.
    threads: usize,
}

/// In-memory bytes of a batch's rows (of a slice: only the slice's share of its buffers).
fn slice_bytes(b: &RecordBatch) -> usize {
    b.columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

impl ParquetOut {
    fn new(
        schema: SchemaRef,
        dest: &DestinationConfig,
        plain: &[Vec<String>],
    ) -> Result<Self, OutputError> {
        let (w, factory) = parquet::arrow::ArrowWriter::try_new(
            Vec::new(),
            schema.clone(),
            Some(parquet_properties(dest, plain)),
        )?
        .into_serialized_writer()?;
        Ok(ParquetOut {
            w,
            factory,
            schema,
            pending: vec![],
            pending_rows: 0,
            pending_bytes: 0,
            row_group_rows: dest.parquet.row_group_size.max(1),
            groups: 0,
            ratio: 1.0,
            threads: encode_threads(),
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), OutputError> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (self.row_group_rows - self.pending_rows).min(batch.num_rows() - offset);
            let part = batch.slice(offset, take);
            self.pending_bytes += slice_bytes(&part);
            self.pending_rows += take;
            self.pending.push(part);
            offset += take;
            if self.pending_rows >= self.row_group_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Splice in the row groups of an encoded Parquet file of the same schema; the rows
    /// appended.
    fn append(&mut self, part: &bytes::Bytes) -> Result<u64, OutputError> {
        use parquet::column::writer::ColumnCloseResult;
        let meta = read_footer(part, true)?;
        if meta.file_metadata().schema_descr().root_schema() != self.w.schema_descr().root_schema()
        {
            return Err(parquet::errors::ParquetError::General(
                "the encoded rows have another schema than the file".into(),
            )
            .into());
        }
        // Rows waiting for a row group go before the part's.
        self.flush()?;
        let mut rows = 0u64;
        for (i, group) in meta.row_groups().iter().enumerate() {
            let index = meta.page_index_for_row_group(i);
            let mut out = self.w.next_row_group()?;
            for (j, column) in group.columns().iter().enumerate() {
                out.append_column(
                    part,
                    ColumnCloseResult {
                        bytes_written: column.compressed_size() as u64,
                        rows_written: group.num_rows() as u64,
                        metadata: column.clone(),
                        bloom_filter: None,
                        column_index: index.column_index(j).cloned(),
                        offset_index: index.offset_index(j).cloned(),
                    },
                )?;
            }
            out.close()?;
            self.groups += 1;
            rows += group.num_rows() as u64;
        }
        Ok(rows)
    }

    /// Bytes of the row groups encoded so far.
    fn written(&self) -> u64 {
        self.w.bytes_written() as u64
    }

    fn size(&self) -> u64 {
        (self.w.bytes_written() as f64 + self.pending_bytes as f64 * self.ratio) as u64
    }

    /// Encode the pending rows as one row group.
    fn flush(&mut self) -> Result<(), OutputError> {
        use parquet::arrow::arrow_writer::{
            compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn,
        };
        if self.pending_rows == 0 {
            return Ok(());
        }
        let batches = std::mem::take(&mut self.pending);
        let in_memory = std::mem::take(&mut self.pending_bytes);
        self.pending_rows = 0;
        let writers = self.factory.create_column_writers(self.groups)?;
        // The leaves of every column (a struct or list column has several), in writer order.
        let mut leaves: Vec<Vec<ArrowLeafColumn>> = (0..writers.len()).map(|_| vec![]).collect();
        for b in &batches {
            let mut k = 0;
            for (array, field) in b.columns().iter().zip(self.schema.fields()) {
                for leaf in compute_leaves(field, array)? {
                    leaves
                        .get_mut(k)
                        .ok_or_else(|| {
                            parquet::errors::ParquetError::General(
                                "more leaf columns than column writers".into(),
                            )
                        })?
                        .push(leaf);
                    k += 1;
                }
            }
        }
        // Column chunks dealt round-robin to the threads; each returns its chunks with their
        // column numbers, and they are appended in column order (the file does not depend on
        // the number of threads).
        let threads = self.threads.min(writers.len()).max(1);
        let mut groups: Vec<Vec<_>> = (0..threads).map(|_| vec![]).collect();
        for (i, job) in writers.into_iter().zip(leaves).enumerate() {
            groups[i % threads].push((i, job));
        }
        let encode = |group: Vec<(usize, (ArrowColumnWriter, Vec<ArrowLeafColumn>))>| {
            group
                .into_iter()
                .map(|(i, (mut writer, cols))| {
                    let chunk = cols
                        .iter()
                        .try_for_each(|c| writer.write(c))
                        .and_then(|()| writer.close());
                    (i, chunk)
                })
                .collect::<Vec<_>>()
        };
        let mut chunks: Vec<(usize, parquet::errors::Result<ArrowColumnChunk>)> =
            std::thread::scope(|s| {
                let mut groups = groups.into_iter();
                let own = groups.next().unwrap_or_default();
                let others: Vec<_> = groups.map(|g| s.spawn(move || encode(g))).collect();
                let mut all = encode(own);
                for h in others {
                    match h.join() {
                        Ok(done) => all.extend(done),
                        Err(_) => all.push((
                            usize::MAX,
                            Err(parquet::errors::ParquetError::General(
                                "a thread encoding column chunks panicked".into(),
                            )),
                        )),
                    }
                }
                all
            });
        chunks.sort_by_key(|(i, _)| *i);
        let before = self.w.bytes_written();
        let mut rg = self.w.next_row_group()?;
        for (_, chunk) in chunks {
            chunk?.append_to_row_group(&mut rg)?;
        }
        rg.close()?;
        self.groups += 1;
        if in_memory > 0 {
            self.ratio =
                ((self.w.bytes_written() - before) as f64 / in_memory as f64).clamp(0.01, 2.0);
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<u8>, OutputError> {
        self.flush()?;
        Ok(self.w.into_inner()?)
    }
}

/// Threads that encode a row group's column chunks: the machine's cores (`FERRY_ENCODE_THREADS`
/// overrides; 1 encodes on the calling thread only).
fn encode_threads() -> usize {
    std::env::var("FERRY_ENCODE_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// The columns of an encoded Parquet file whose dictionary did not pay (their paths): it
/// outgrew its page limit and fell back to plain encoding, or it holds more than half of its
/// column chunk's values (nearly all distinct — ids, amounts, timestamps —: the dictionary only
/// adds indices, and building it is a hash table grown row group after row group).
pub fn plain_columns(file: &bytes::Bytes) -> Result<Vec<Vec<String>>, OutputError> {
    use parquet::basic::{Encoding, PageType};
    use parquet::column::page::{Page, PageReader};
    let meta = read_footer(file, false)?;
    let chunk = Arc::new(file.clone());
    let mut out: Vec<Vec<String>> = vec![];
    for g in meta.row_groups() {
        for c in g.columns() {
            let path = c.column_path().parts().to_vec();
            if c.dictionary_page_offset().is_none() || out.contains(&path) {
                continue;
            }
            let fell_back = c.page_encoding_stats().is_some_and(|stats| {
                stats.iter().any(|s| {
                    matches!(s.page_type, PageType::DATA_PAGE | PageType::DATA_PAGE_V2)
                        && s.encoding == Encoding::PLAIN
                })
            });
            let mostly_distinct = || -> Result<bool, OutputError> {
                // The dictionary page comes first: read only it, from the footer read above.
                let mut pages = parquet::file::serialized_reader::SerializedPageReader::new(
                    chunk.clone(),
                    c,
                    g.num_rows().max(0) as usize,
                    None,
                )?;
                Ok(match pages.get_next_page()? {
                    Some(Page::DictionaryPage { num_values, .. }) => {
                        u64::from(num_values) * 2 > c.num_values().max(0) as u64
                    }
                    _ => false,
                })
            };
            if fell_back || mostly_distinct()? {
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// A Parquet file's footer, page encoding statistics in full (by default they are read as a
/// bitmask only, and a file spliced from it would lose them), its page indexes with
/// `page_index`.
fn read_footer(
    file: &bytes::Bytes,
    page_index: bool,
) -> Result<parquet::file::metadata::ParquetMetaData, OutputError> {
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataOptions, ParquetMetaDataReader};
    Ok(ParquetMetaDataReader::new()
        .with_metadata_options(Some(
            ParquetMetaDataOptions::new().with_encoding_stats_as_mask(false),
        ))
        .with_page_index_policy(if page_index {
            PageIndexPolicy::Optional
        } else {
            PageIndexPolicy::Skip
        })
        .parse_and_finish(file)?)
}

fn parquet_properties(
    dest: &DestinationConfig,
    plain: &[Vec<String>],
) -> parquet::file::properties::WriterProperties {
    use parquet::basic::{Compression as PC, GzipLevel, ZstdLevel};
    let compression = match dest.compression() {
        Compression::None => PC::UNCOMPRESSED,
        Compression::Snappy => PC::SNAPPY,
        Compression::Gzip => PC::GZIP(GzipLevel::default()),
        Compression::Zstd => PC::ZSTD(ZstdLevel::default()),
    };
    let mut b = parquet::file::properties::WriterProperties::builder();
    for p in plain {
        b = b.set_column_dictionary_enabled(
            parquet::schema::types::ColumnPath::new(p.clone()),
            false,
        );
    }
    b.set_compression(compression)
        .set_max_row_group_row_count(Some(dest.parquet.row_group_size))
        .set_created_by(format!("ferry {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Encode batches (all with one schema) as one object in the destination's format.
pub fn encode(batches: &[RecordBatch], dest: &DestinationConfig) -> Result<Encoded, OutputError> {
    let schema = match batches.first() {
        Some(b) => output_schema(&b.schema(), dest),
        None => Arc::new(Schema::empty()),
    };
    let mut w = FileWriter::new(schema, dest)?;
    for b in batches {
        w.write(&prepare(b, dest)?, dest)?;
    }
    w.finish()
}

/// Rows in slices of at most `n`, so rotation can stop close to a target size.
pub fn slices(batch: &RecordBatch, n: usize) -> impl Iterator<Item = RecordBatch> + '_ {
    let n = n.max(1);
    (0..batch.num_rows())
        .step_by(n)
        .map(move |o| batch.slice(o, n.min(batch.num_rows() - o)))
}

#[cfg(test)]
mod tests;
