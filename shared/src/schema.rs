//! The field vocabulary connectors declare ([`FieldType`], [`FieldInfo`]) and its Arrow side:
//! schemas, decoding, fingerprints.

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The type a connector declares for a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum FieldType {
    String,
    Integer,
    Float,
    Decimal {
        precision: u8,
        scale: i8,
    },
    Boolean,
    /// UTC instant.
    Timestamp,
    Date,
    Object {
        fields: Vec<FieldInfo>,
    },
    Array {
        item: Box<FieldType>,
    },
    /// Unknown or free-form JSON: kept as JSON text.
    Json,
}

/// What a connector says about one field (AppFlow's DescribeConnectorEntity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldInfo {
    pub name: String,
    #[serde(flatten)]
    pub data_type: FieldType,
    #[serde(default)]
    pub nullable: bool,
    #[serde(default)]
    pub primary_key: bool,
    /// Can drive incremental pulls (a datetime the source filters on).
    #[serde(default)]
    pub incremental: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl FieldInfo {
    pub fn new(name: &str, data_type: FieldType) -> Self {
        FieldInfo {
            name: name.into(),
            data_type,
            nullable: true,
            primary_key: false,
            incremental: false,
            label: None,
        }
    }
    pub fn required(mut self) -> Self {
        self.nullable = false;
        self
    }
    pub fn key(mut self) -> Self {
        self.primary_key = true;
        self.nullable = false;
        self
    }
    pub fn incremental(mut self) -> Self {
        self.incremental = true;
        self
    }
}

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
/// `coerce`: numbers and booleans are accepted (as text) in string columns.
pub fn decode_json_lines(
    body: &[u8],
    schema: SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    decode_json_lines_with(body, schema, false)
}

pub fn decode_json_lines_with(
    body: &[u8],
    schema: SchemaRef,
    coerce: bool,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let reader = arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(64 * 1024)
        .with_coerce_primitive(coerce)
        .build(std::io::Cursor::new(body))?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    arrow::compute::concat_batches(&schema, &batches)
}

/// The records a chunk could not decode, and the batch of those it could.
pub struct Decoded {
    pub batch: RecordBatch,
    /// For each row of `batch`, its line number in the chunk (0-based).
    pub lines: Vec<usize>,
    /// `(line number, reason)` of every line that did not decode.
    pub bad: Vec<(usize, String)>,
}

/// Decode JSON lines; when the whole chunk fails, decode it line by line so one bad record
/// does not hold back the good ones.
pub fn decode_tolerant(
    body: &[u8],
    schema: SchemaRef,
    coerce: bool,
) -> Result<Decoded, arrow::error::ArrowError> {
    let lines: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    if let Ok(batch) = decode_json_lines_with(body, schema.clone(), coerce) {
        if batch.num_rows() == lines.len() {
            return Ok(Decoded {
                batch,
                lines: (0..lines.len()).collect(),
                bad: vec![],
            });
        }
    }
    let mut good = Vec::with_capacity(body.len());
    let (mut ok, mut bad) = (vec![], vec![]);
    for (i, line) in lines.iter().enumerate() {
        let verdict = match serde_json::from_slice::<serde_json::Value>(line) {
            Err(e) => Err(format!("not valid JSON: {e}")),
            Ok(v) if !v.is_object() => Err("not a JSON object".to_string()),
            Ok(_) => decode_json_lines_with(line, schema.clone(), coerce)
                .map(|_| ())
                .map_err(|e| format!("does not match the schema: {e}")),
        };
        match verdict {
            Ok(()) => {
                good.extend_from_slice(line);
                good.push(b'\n');
                ok.push(i);
            }
            Err(reason) => bad.push((i, reason)),
        }
    }
    Ok(Decoded {
        batch: decode_json_lines_with(&good, schema, coerce)?,
        lines: ok,
        bad,
    })
}

/// The schema of JSON lines, inferred from every record (arrow-json's inference: integers,
/// floats, booleans, strings, lists and nested objects as structs).
pub fn infer_json_lines(body: &[u8]) -> Result<Schema, arrow::error::ArrowError> {
    let values = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        // Lines that are not JSON objects are rejected at decode time, not here.
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .filter(|v| v.is_object())
        .map(Ok::<_, arrow::error::ArrowError>);
    let s = arrow::json::reader::infer_json_schema_from_iterator(values)?;
    Ok(Schema::new(
        s.fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}

/// Two schemas as one: fields of `a` in order, then new fields of `b`. Types widen: null + x ->
/// x, integer + float -> float, structs merge field by field, lists merge their items; any
/// other conflict becomes text, with a warning naming the field.
pub fn merge(a: &Schema, b: &Schema) -> (SchemaRef, Vec<String>) {
    let mut warnings = vec![];
    let fields = merge_fields(a.fields(), b.fields(), "", &mut warnings);
    (Arc::new(Schema::new(fields)), warnings)
}

fn merge_fields(a: &Fields, b: &Fields, path: &str, warnings: &mut Vec<String>) -> Vec<Field> {
    let mut out: Vec<Field> = a.iter().map(|f| f.as_ref().clone()).collect();
    for fb in b.iter() {
        match out.iter_mut().find(|f| f.name() == fb.name()) {
            Some(fa) => {
                let name = format!("{path}{}", fa.name());
                let t = merge_type(&name, fa.data_type(), fb.data_type(), warnings);
                *fa = Field::new(fa.name(), t, true);
            }
            None => out.push(fb.as_ref().clone().with_nullable(true)),
        }
    }
    out
}

fn merge_type(name: &str, a: &DataType, b: &DataType, warnings: &mut Vec<String>) -> DataType {
    use DataType::*;
    let int = |t: &DataType| t.is_integer();
    match (a, b) {
        _ if a == b => a.clone(),
        (Null, t) | (t, Null) => t.clone(),
        (x, y) if int(x) && int(y) => Int64,
        (x, y) if (int(x) || x.is_floating()) && (int(y) || y.is_floating()) => Float64,
        (Struct(fa), Struct(fb)) => Struct(Fields::from(merge_fields(
            fa,
            fb,
            &format!("{name}."),
            warnings,
        ))),
        (List(ia), List(ib)) => List(Arc::new(Field::new(
            "item",
            merge_type(
                &format!("{name}[]"),
                ia.data_type(),
                ib.data_type(),
                warnings,
            ),
            true,
        ))),
        _ => {
            warnings.push(format!(
                "field '{name}' arrived as {a} in one chunk and {b} in another; it is written as text"
            ));
            Utf8
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    fn schema(fields: Vec<(&str, DataType)>) -> Schema {
        Schema::new(
            fields
                .into_iter()
                .map(|(n, t)| Field::new(n, t, true))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn merge_widens_and_warns() {
        let a = schema(vec![
            ("i", DataType::Int64),
            ("x", DataType::Int64),
            ("n", DataType::Null),
            ("c", DataType::Boolean),
            (
                "s",
                DataType::Struct(Fields::from(vec![Field::new("a", DataType::Int64, true)])),
            ),
        ]);
        let b = schema(vec![
            ("x", DataType::Float64),
            ("n", DataType::Utf8),
            ("c", DataType::Int64),
            (
                "s",
                DataType::Struct(Fields::from(vec![Field::new("b", DataType::Utf8, true)])),
            ),
            ("new", DataType::Boolean),
        ]);
        let (m, warnings) = merge(&a, &b);
        let t = |n: &str| m.field_with_name(n).unwrap().data_type().clone();
        assert_eq!(t("i"), DataType::Int64);
        assert_eq!(t("x"), DataType::Float64);
        assert_eq!(t("n"), DataType::Utf8);
        assert_eq!(t("c"), DataType::Utf8);
        assert_eq!(t("new"), DataType::Boolean);
        match t("s") {
            DataType::Struct(f) => assert_eq!(f.len(), 2),
            other => panic!("{other}"),
        }
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("'c'"), "{warnings:?}");
        assert!(m.fields().iter().all(|f| f.is_nullable()));
    }

    #[test]
    fn tolerant_decode_keeps_the_good_records() {
        let s = Arc::new(schema(vec![
            ("id", DataType::Int64),
            ("name", DataType::Utf8),
        ]));
        let body = b"{\"id\":1,\"name\":\"a\"}\n{\"id\":\"x\"}\nnot json\n{\"id\":3}\n[1]\n";
        let d = decode_tolerant(body, s, false).unwrap();
        assert_eq!(d.batch.num_rows(), 2);
        assert_eq!(d.lines, vec![0, 3]);
        assert_eq!(
            d.bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1, 2, 4]
        );
        assert!(d.bad[1].1.contains("not valid JSON"));
    }

    #[test]
    fn inference_and_conform() {
        let body = b"{\"a\":1,\"b\":{\"c\":true}}\n{\"a\":2.5,\"d\":\"x\"}\n";
        let s = Arc::new(infer_json_lines(body).unwrap());
        assert_eq!(
            s.field_with_name("a").unwrap().data_type(),
            &DataType::Float64
        );
        assert!(matches!(
            s.field_with_name("b").unwrap().data_type(),
            DataType::Struct(_)
        ));
        let batch = decode_json_lines_with(body, s.clone(), true).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let wider = Arc::new(schema(vec![
            ("d", DataType::Utf8),
            ("b", DataType::Utf8),
            ("z", DataType::Int64),
        ]));
        let c = crate::output::conform(&batch, &wider).unwrap();
        let b = c
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        assert_eq!(b.value(0), "{\"c\":true}");
        assert_eq!(c.column(2).null_count(), 2);
    }
}
