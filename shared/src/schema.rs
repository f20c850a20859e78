//! From connector metadata and JSON records to Arrow: schemas, decoding, fingerprints.

use crate::connector::{FieldInfo, FieldType};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use std::sync::Arc;

/// The Arrow type of a declared field type. Timestamps are UTC microseconds; decimals keep their
/// precision and scale; objects are structs; free-form JSON is text.
pub fn arrow_type(t: &FieldType) -> DataType {
    match t {
        FieldType::String | FieldType::Json => DataType::Utf8,
        FieldType::Integer => DataType::Int64,
        FieldType::Float => DataType::Float64,
        FieldType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
        FieldType::Boolean => DataType::Boolean,
        FieldType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        FieldType::Date => DataType::Date32,
        FieldType::Object { fields } => DataType::Struct(Fields::from(
            fields.iter().map(arrow_field).collect::<Vec<_>>(),
        )),
        FieldType::Array { item } => {
            DataType::List(Arc::new(Field::new("item", arrow_type(item), true)))
        }
    }
}

pub fn arrow_field(f: &FieldInfo) -> Field {
    // Sources break their own promises; every column is nullable so one null never fails a run.
    Field::new(&f.name, arrow_type(&f.data_type), true)
}

pub fn arrow_schema(fields: &[FieldInfo]) -> SchemaRef {
    Arc::new(Schema::new(
        fields.iter().map(arrow_field).collect::<Vec<_>>(),
    ))
}

/// Decode JSON lines into one batch with `schema`. Fields the schema lacks are ignored.
pub fn decode_json_lines(
    body: &[u8],
    schema: SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let reader = arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(64 * 1024)
        .build(std::io::Cursor::new(body))?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    arrow::compute::concat_batches(&schema, &batches)
}

/// A stable description of a schema: field names and types, as JSON.
pub fn fingerprint(schema: &Schema) -> serde_json::Value {
    serde_json::Value::Array(
        schema
            .fields()
            .iter()
            .map(|f| serde_json::json!({ "name": f.name(), "type": f.data_type().to_string() }))
            .collect(),
    )
}

/// Serialize a schema for the staging area.
pub fn schema_to_json(schema: &Schema) -> serde_json::Value {
    serde_json::to_value(schema).unwrap_or(serde_json::Value::Null)
}

pub fn schema_from_json(v: &serde_json::Value) -> Result<SchemaRef, serde_json::Error> {
    Ok(Arc::new(serde_json::from_value::<Schema>(v.clone())?))
}
