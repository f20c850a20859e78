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
    Parquet {
        w: Box<parquet::arrow::ArrowWriter<Vec<u8>>>,
        /// Encoded bytes per estimated in-progress byte, learned from flushed row groups.
        ratio: f64,
    },
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
        let gzip = dest.format != Format::Parquet && dest.compression() == Compression::Gzip;
        let kind = match dest.format {
            Format::Parquet => Kind::Parquet {
                w: Box::new(parquet::arrow::ArrowWriter::try_new(
                    Vec::new(),
                    schema.clone(),
                    Some(parquet_properties(dest)),
                )?),
                ratio: 1.0,
            },
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
            Kind::Parquet { w, ratio } => {
                let (groups, written, pending) = (
                    w.flushed_row_groups().len(),
                    w.bytes_written(),
                    w.in_progress_size(),
                );
                w.write(batch)?;
                if w.flushed_row_groups().len() > groups && pending > 0 {
                    // A row group filled up and went out: learn how much it shrank.
                    *ratio =
                        ((w.bytes_written() - written) as f64 / pending as f64).clamp(0.01, 2.0);
                }
            }
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

    /// The object's size so far (Parquet: written row groups plus an estimate of the open one).
    pub fn size(&self) -> u64 {
        match &self.kind {
            Kind::Parquet { w, ratio } => {
                (w.bytes_written() as f64 + w.in_progress_size() as f64 * ratio) as u64
            }
            Kind::Text { sink, .. } => sink.len() as u64,
        }
    }

    /// Whether the object has reached `target` bytes. For Parquet an estimate past the target
    /// closes the open row group first, so the answer rests on bytes actually encoded.
    pub fn reached(&mut self, target: u64) -> Result<bool, OutputError> {
        if self.size() < target {
            return Ok(false);
        }
        if let Kind::Parquet { w, ratio } = &mut self.kind {
            let (written, pending) = (w.bytes_written(), w.in_progress_size());
            w.flush()?;
            if pending > 0 {
                *ratio = ((w.bytes_written() - written) as f64 / pending as f64).clamp(0.01, 2.0);
            }
            // The footer adds a little; call it reached within 2%.
            return Ok(w.bytes_written() as u64 >= target - target / 50);
        }
        Ok(true)
    }

    /// Close the object.
    pub fn finish(self) -> Result<Encoded, OutputError> {
        let body = match self.kind {
            Kind::Parquet { w, .. } => (*w).into_inner()?,
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

fn parquet_properties(dest: &DestinationConfig) -> parquet::file::properties::WriterProperties {
    use parquet::basic::{Compression as PC, GzipLevel, ZstdLevel};
    let compression = match dest.compression() {
        Compression::None => PC::UNCOMPRESSED,
        Compression::Snappy => PC::SNAPPY,
        Compression::Gzip => PC::GZIP(GzipLevel::default()),
        Compression::Zstd => PC::ZSTD(ZstdLevel::default()),
    };
    parquet::file::properties::WriterProperties::builder()
        .set_compression(compression)
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
