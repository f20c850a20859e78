//! Encoders (Parquet, CSV, JSON lines) and the object key layout.

pub mod layout;

use crate::flow::{Compression, DestinationConfig, Format};
use arrow::record_batch::RecordBatch;
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

/// One encoded object, ready to upload.
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

/// Encode batches (all with one schema) as one object in the destination's format.
pub fn encode(batches: &[RecordBatch], dest: &DestinationConfig) -> Result<Encoded, OutputError> {
    let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
    let (body, content_type) = match dest.format {
        Format::Parquet => (
            encode_parquet(batches, dest)?,
            "application/vnd.apache.parquet",
        ),
        Format::Jsonl => {
            let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
            for b in batches {
                w.write(b).map_err(|source| OutputError::Arrow {
                    format: "jsonl",
                    source,
                })?;
            }
            w.finish().map_err(|source| OutputError::Arrow {
                format: "jsonl",
                source,
            })?;
            (w.into_inner(), "application/x-ndjson")
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(dest.csv.header)
                .with_delimiter(dest.csv.delimiter as u8)
                .build(Vec::new());
            for b in batches {
                w.write(b).map_err(|source| OutputError::Arrow {
                    format: "csv",
                    source,
                })?;
            }
            (w.into_inner(), "text/csv")
        }
    };
    if dest.format != Format::Parquet && dest.compression() == Compression::Gzip {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&body)?;
        return Ok(Encoded {
            body: gz.finish()?,
            content_type,
            content_encoding: Some("gzip"),
            rows,
        });
    }
    Ok(Encoded {
        body,
        content_type,
        content_encoding: None,
        rows,
    })
}

fn encode_parquet(
    batches: &[RecordBatch],
    dest: &DestinationConfig,
) -> Result<Vec<u8>, OutputError> {
    use parquet::basic::{Compression as PC, GzipLevel, ZstdLevel};
    let compression = match dest.compression() {
        Compression::None => PC::UNCOMPRESSED,
        Compression::Snappy => PC::SNAPPY,
        Compression::Gzip => PC::GZIP(GzipLevel::default()),
        Compression::Zstd => PC::ZSTD(ZstdLevel::default()),
    };
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(dest.parquet.row_group_size))
        .set_created_by("ferry".into())
        .build();
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => Arc::new(arrow::datatypes::Schema::empty()),
    };
    let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), schema, Some(props))?;
    for b in batches {
        w.write(b)?;
    }
    Ok(w.into_inner()?)
}
