//! The field vocabulary connectors declare ([`FieldType`], [`FieldInfo`]) and its Arrow side:
//! schemas, decoding, fingerprints.

mod scan;

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
        .with_decoder_factory(Arc::new(TextColumns))
        .build(std::io::Cursor::new(body))?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    arrow::compute::concat_batches(&schema, &batches)
}

/// Text columns take any JSON value: strings as they are, everything else (objects, arrays,
/// numbers, booleans) as its compact JSON text. A `json` field, or a field whose shape changed
/// between records and was widened to text, therefore never rejects a record.
#[derive(Debug)]
pub struct TextColumns;

impl arrow::json::reader::DecoderFactory for TextColumns {
    fn make_default_decoder(
        &self,
        _ctx: &arrow::json::reader::DecoderContext,
        field: &arrow::datatypes::FieldRef,
        _is_nullable: bool,
    ) -> Result<Option<Box<dyn arrow::json::reader::ArrayDecoder>>, arrow::error::ArrowError> {
        Ok(match field.data_type() {
            DataType::Utf8 => Some(Box::new(JsonTextDecoder {
                quote_strings: field.metadata().contains_key(JSON_VALUE),
            })),
            _ => None,
        })
    }
}

/// Field metadata: a text column holding each value as JSON (strings quoted), for paging
/// fields read back as JSON values.
const JSON_VALUE: &str = "ferry.json_value";

struct JsonTextDecoder {
    quote_strings: bool,
}

impl arrow::json::reader::ArrayDecoder for JsonTextDecoder {
    fn decode(
        &mut self,
        tape: &arrow::json::reader::Tape<'_>,
        pos: &[u32],
    ) -> Result<arrow::array::ArrayRef, arrow::error::ArrowError> {
        use arrow::json::reader::TapeElement as T;
        let mut b = arrow::array::StringBuilder::with_capacity(pos.len(), pos.len() * 16);
        let mut text = String::new();
        for &p in pos {
            match tape.get(p) {
                T::Null => b.append_null(),
                T::String(i) if !self.quote_strings => b.append_value(tape.get_string(i)),
                _ => {
                    text.clear();
                    write_json(tape, p, &mut text)?;
                    b.append_value(&text);
                }
            }
        }
        Ok(Arc::new(b.finish()))
    }
}

/// The compact JSON text of the tape value at `idx`; returns the index after it.
fn write_json(
    tape: &arrow::json::reader::Tape<'_>,
    idx: u32,
    out: &mut String,
) -> Result<u32, arrow::error::ArrowError> {
    use arrow::json::reader::TapeElement as T;
    use std::fmt::Write;
    let quote = |s: &str, out: &mut String| {
        // serde_json escapes exactly as JSON requires.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    };
    Ok(match tape.get(idx) {
        T::StartObject(end) => {
            out.push('{');
            let mut i = idx + 1;
            let mut first = true;
            while i < end {
                if !first {
                    out.push(',');
                }
                first = false;
                match tape.get(i) {
                    T::String(k) => quote(tape.get_string(k), out),
                    _ => return Err(tape.error(i, "an object key")),
                }
                out.push(':');
                i = write_json(tape, i + 1, out)?;
            }
            out.push('}');
            end + 1
        }
        T::StartList(end) => {
            out.push('[');
            let mut i = idx + 1;
            let mut first = true;
            while i < end {
                if !first {
                    out.push(',');
                }
                first = false;
                i = write_json(tape, i, out)?;
            }
            out.push(']');
            end + 1
        }
        T::String(s) => {
            quote(tape.get_string(s), out);
            idx + 1
        }
        T::Number(s) => {
            out.push_str(tape.get_string(s));
            idx + 1
        }
        T::True => {
            out.push_str("true");
            idx + 1
        }
        T::False => {
            out.push_str("false");
            idx + 1
        }
        T::Null => {
            out.push_str("null");
            idx + 1
        }
        T::I32(v) => {
            let _ = write!(out, "{v}");
            idx + 1
        }
        T::I64(high) => match tape.get(idx + 1) {
            T::I32(low) => {
                let _ = write!(out, "{}", ((high as i64) << 32) | (low as u32) as i64);
                idx + 2
            }
            _ => return Err(tape.error(idx, "a 64-bit integer")),
        },
        T::F64(high) => match tape.get(idx + 1) {
            T::F32(low) => {
                let _ = write!(
                    out,
                    "{}",
                    f64::from_bits(((high as u64) << 32) | low as u64)
                );
                idx + 2
            }
            _ => return Err(tape.error(idx, "a 64-bit float")),
        },
        T::F32(v) => {
            let _ = write!(out, "{}", f32::from_bits(v));
            idx + 1
        }
        T::EndObject(_) | T::EndList(_) => return Err(tape.error(idx, "a value")),
        _ => return Err(tape.error(idx, "a JSON value")),
    })
}

/// How to decode an API's response page straight to Arrow, in one pass over its bytes: the
/// records (a JSONPath of the form `$[*]` or `$.a.b[*]`) as rows of the run's schema, and the
/// paging fields (`$.meta.next`, `$.total`, ...) as JSON values — no `serde_json::Value` per
/// record, nothing parsed twice.
#[derive(Debug, Clone)]
pub struct PageShape {
    records: Vec<String>,
    meta: Vec<Vec<String>>,
    page_schema: SchemaRef,
    record_schema: SchemaRef,
    /// The decoder of the previous page, reused: its tape keeps the room it grew to, so a page
    /// does not allocate and grow it again (only one page object is decoded at a time).
    decoder: Arc<std::sync::Mutex<Option<arrow::json::reader::Decoder>>>,
    /// The one-pass scanner, when every column is of a type it decodes; a page it gives back
    /// goes to arrow-json.
    scanner: Option<Arc<scan::Scanner>>,
}

/// One page decoded by a [`PageShape`].
#[derive(Debug)]
pub struct DecodedPage {
    pub batch: RecordBatch,
    /// The page's paging fields at their paths (the records' path holds `[]`).
    pub meta: serde_json::Value,
    /// The record keys the schema does not have, when the page was read by the scanner (which
    /// sees every key); `None` when arrow-json decoded it (its decoder drops them unseen).
    pub unknown: Option<Vec<String>>,
}

/// Where a page's records and paging fields are: the tree of the page's members that lead to
/// them (the rest of a page is not read into anything).
#[derive(Debug, Clone)]
enum Node {
    /// An object: the members that lead somewhere, by key.
    Struct(Vec<(String, Node)>),
    /// The records array.
    Records,
    /// A paging field: its index in the shape's paging fields.
    Meta(usize),
}

impl Node {
    /// Insert `leaf` at `path`; false when it collides with what is there.
    fn insert(&mut self, path: &[String], leaf: Node) -> bool {
        self.insert_node(path, &mut Some(leaf))
    }

    fn insert_node(&mut self, path: &[String], leaf: &mut Option<Node>) -> bool {
        let Node::Struct(children) = self else {
            return false;
        };
        let Some((head, rest)) = path.split_first() else {
            return false;
        };
        match children.iter_mut().find(|(k, _)| k == head) {
            Some((_, child)) => !rest.is_empty() && child.insert_node(rest, leaf),
            None if rest.is_empty() => match leaf.take() {
                Some(l) => {
                    children.push((head.clone(), l));
                    true
                }
                None => false,
            },
            None => {
                let mut n = Node::Struct(vec![]);
                let ok = n.insert_node(rest, leaf);
                children.push((head.clone(), n));
                ok
            }
        }
    }

    fn data_type(&self, record: &SchemaRef) -> DataType {
        match self {
            Node::Struct(c) => DataType::Struct(Fields::from(
                c.iter()
                    .map(|(k, n)| n.field(k, record))
                    .collect::<Vec<_>>(),
            )),
            Node::Records => DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(record.fields().clone()),
                true,
            ))),
            Node::Meta(_) => DataType::Utf8,
        }
    }

    fn field(&self, name: &str, record: &SchemaRef) -> Field {
        let f = Field::new(name, self.data_type(record), true);
        match self {
            Node::Meta(_) => f.with_metadata([(JSON_VALUE, "1")]),
            _ => f,
        }
    }
}

/// The field names of a simple JSONPath: `$.a.b` -> `[a, b]`, `$['a'].b` too; `None` for
/// anything else (filters, wildcards in the middle, recursive descent, indexes).
pub fn simple_path(path: &str, ends_in_all: bool) -> Option<Vec<String>> {
    let mut rest = path.trim().strip_prefix('$')?;
    if ends_in_all {
        rest = rest.strip_suffix("[*]")?;
    }
    let mut out = vec![];
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            out.push(r[..end].to_string());
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']")?;
            let name = &r[..end];
            if name.contains(['\\', '\'']) {
                return None;
            }
            out.push(name.to_string());
            rest = &r[end + 2..];
        } else {
            return None;
        }
    }
    Some(out)
}

impl PageShape {
    /// `records`: the path to the records array (empty: the body is the array); `meta`: the
    /// paging fields' paths. `None` when they cannot be decoded together (a paging field inside
    /// the records, a body that is an array but paging fields are wanted).
    pub fn new(
        records: Vec<String>,
        meta: Vec<Vec<String>>,
        record_schema: SchemaRef,
    ) -> Option<Self> {
        if record_schema.fields().is_empty() {
            return None;
        }
        let (root, page_schema) = if records.is_empty() {
            if !meta.is_empty() {
                return None;
            }
            (Node::Records, record_schema.clone())
        } else {
            let mut root = Node::Struct(vec![]);
            if !root.insert(&records, Node::Records) {
                return None;
            }
            for (i, m) in meta.iter().enumerate() {
                if !root.insert(m, Node::Meta(i)) {
                    return None;
                }
            }
            let Node::Struct(children) = &root else {
                unreachable!()
            };
            let page_schema = Arc::new(Schema::new(
                children
                    .iter()
                    .map(|(k, n)| n.field(k, &record_schema))
                    .collect::<Vec<_>>(),
            ));
            (root, page_schema)
        };
        let scanner = (std::env::var_os("FERRY_JSON_SCAN").as_deref() != Some("0".as_ref()))
            .then(|| scan::Scanner::new(root, meta.len(), record_schema.clone()))
            .flatten()
            .map(Arc::new);
        Some(PageShape {
            records,
            meta,
            page_schema,
            record_schema,
            decoder: Default::default(),
            scanner,
        })
    }

    /// The same shape decoding with arrow-json alone (what the scanner is checked against).
    #[cfg(test)]
    fn without_scanner(mut self) -> Self {
        self.scanner = None;
        self
    }

    /// Whether pages of this shape go to the scanner first.
    #[cfg(test)]
    pub(crate) fn scans(&self) -> bool {
        self.scanner.is_some()
    }

    /// The records' schema (the run's source schema).
    pub fn record_schema(&self) -> &SchemaRef {
        &self.record_schema
    }

    /// Decode one response body. An error means the page does not fit the shape (a record of
    /// another type, truncated JSON, records that are not objects): decode it record by record
    /// instead, to reject only the records at fault.
    pub fn decode(&self, body: &str) -> Result<DecodedPage, arrow::error::ArrowError> {
        use arrow::array::{Array, AsArray};
        use arrow::error::ArrowError;
        let top_array = self.records.is_empty();
        if let Some(scanned) = self.scanner.as_ref().and_then(|s| s.scan(body)) {
            // A paging field serde_json cannot read as written (a raw control character in a
            // string, which arrow-json lets through) goes the arrow-json way, re-encoded.
            let meta = match top_array {
                true => Ok(serde_json::Value::Null),
                false => self.meta_value(|i| match scanned.meta[i] {
                    None => Ok(serde_json::Value::Null),
                    Some(raw) => serde_json::from_slice(raw)
                        .map_err(|e| ArrowError::JsonError(e.to_string())),
                }),
            };
            if let Ok(meta) = meta {
                return Ok(DecodedPage {
                    batch: scanned.batch,
                    meta,
                    unknown: Some(scanned.unknown),
                });
            }
        }
        // The tape decoder reserves room for `batch_size` rows of every (nested) field up
        // front, and a page object is one row: the size is a capacity hint, about one row
        // per 256 bytes of body (what a page of records needs, grown a few times at most);
        // records at the top are read 1,024 at a time. (A batch size of 2^20 reserved
        // hundreds of MB per page, freed by `munmap` with TLB shootdowns on every core: 8 % of
        // a run's CPU; a size of 1 grew the tape by doubling, copying it each time.)
        let reused = (!top_array)
            .then(|| self.decoder.lock().ok().and_then(|mut d| d.take()))
            .flatten();
        let mut d = match reused {
            Some(d) => d,
            None => arrow::json::ReaderBuilder::new(self.page_schema.clone())
                .with_batch_size(if top_array {
                    1024
                } else {
                    (body.len() / 256).clamp(1, 1 << 16)
                })
                .with_flatten(top_array)
                .with_decoder_factory(Arc::new(TextColumns))
                .build_decoder()?,
        };
        let mut buf = body.as_bytes();
        let mut batches = vec![];
        while !buf.is_empty() {
            let n = d.decode(buf)?;
            if n == 0 {
                if let Some(b) = d.flush()? {
                    batches.push(b);
                }
                continue;
            }
            buf = &buf[n..];
        }
        if d.has_partial_record() {
            return Err(ArrowError::JsonError("truncated JSON body".into()));
        }
        if let Some(b) = d.flush()? {
            batches.push(b);
        }
        if top_array {
            let batch = arrow::compute::concat_batches(&self.record_schema, &batches)?;
            return Ok(DecodedPage {
                batch,
                meta: serde_json::Value::Null,
                unknown: None,
            });
        }
        // Flushed and whole: the next page may use this decoder (an error above drops it).
        if let Ok(mut slot) = self.decoder.lock() {
            *slot = Some(d);
        }
        let page = match batches.as_slice() {
            [one] if one.num_rows() == 1 => one,
            _ => {
                return Err(ArrowError::JsonError(
                    "the body is not one JSON object".into(),
                ))
            }
        };
        // Walk down to a column at `path`; None when a level is null.
        let column = |path: &[String]| -> Option<arrow::array::ArrayRef> {
            let mut col: arrow::array::ArrayRef = page.column_by_name(&path[0])?.clone();
            for seg in &path[1..] {
                if col.is_null(0) {
                    return None;
                }
                col = col.as_struct().column_by_name(seg)?.clone();
            }
            (!col.is_null(0)).then_some(col)
        };
        let batch = match column(&self.records) {
            None => RecordBatch::new_empty(self.record_schema.clone()),
            Some(list) => {
                let list = list.as_list::<i32>().value(0);
                let rows = list.as_struct();
                if rows.null_count() > 0 {
                    return Err(ArrowError::JsonError("a record is null".into()));
                }
                RecordBatch::try_new_with_options(
                    self.record_schema.clone(),
                    rows.columns().to_vec(),
                    &arrow::record_batch::RecordBatchOptions::new()
                        .with_row_count(Some(rows.len())),
                )?
            }
        };
        let meta = self.meta_value(|i| match column(&self.meta[i]) {
            None => Ok(serde_json::Value::Null),
            Some(c) => serde_json::from_str(c.as_string::<i32>().value(0))
                .map_err(|e| ArrowError::JsonError(e.to_string())),
        })?;
        Ok(DecodedPage {
            batch,
            meta,
            unknown: None,
        })
    }

    /// The page's paging fields at their paths, the records' path holding `[]`; `value(i)` is
    /// the `i`th paging field's value.
    fn meta_value(
        &self,
        value: impl Fn(usize) -> Result<serde_json::Value, arrow::error::ArrowError>,
    ) -> Result<serde_json::Value, arrow::error::ArrowError> {
        let mut meta = serde_json::Value::Object(Default::default());
        let mut set = |path: &[String], v: serde_json::Value| {
            let mut at = &mut meta;
            for seg in &path[..path.len() - 1] {
                let Some(o) = at.as_object_mut() else {
                    return;
                };
                at = o
                    .entry(seg.clone())
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
            }
            if let Some(o) = at.as_object_mut() {
                o.insert(path[path.len() - 1].clone(), v);
            }
        };
        set(&self.records, serde_json::Value::Array(vec![]));
        for (i, m) in self.meta.iter().enumerate() {
            set(m, value(i)?);
        }
        Ok(meta)
    }
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
/// floats, booleans, strings, lists and nested objects as structs). Records whose shapes
/// conflict (an object here, a string there) do not fail the inference: the field widens to
/// JSON text, with a warning naming it.
pub fn infer_json_lines(body: &[u8]) -> Result<(Schema, Vec<String>), arrow::error::ArrowError> {
    let values = || {
        body.split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            // Lines that are not JSON objects are rejected at decode time, not here.
            .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
            .filter(|v| v.is_object())
    };
    let nullable = |s: &Schema| {
        Schema::new(
            s.fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        )
    };
    if let Ok(s) = arrow::json::reader::infer_json_schema_from_iterator(values().map(Ok)) {
        return Ok((nullable(&s), vec![]));
    }
    // Shapes conflict: infer record by record and widen where they disagree.
    let mut schema = Schema::empty();
    let mut warnings = vec![];
    for v in values() {
        let one = arrow::json::reader::infer_json_schema_from_iterator(std::iter::once(Ok(v)))?;
        let (m, w) = merge(&schema, &nullable(&one));
        schema = m.as_ref().clone();
        // One warning per field: a field once widened stays text.
        for w in w {
            let field = w.split('\'').nth(1).unwrap_or_default().to_string();
            if !warnings
                .iter()
                .any(|x: &String| x.split('\'').nth(1) == Some(field.as_str()))
            {
                warnings.push(w);
            }
        }
    }
    Ok((schema, warnings))
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
                "field '{name}' arrived as {a} and as {b}; it is written as (JSON) text"
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
        let s = Arc::new(infer_json_lines(body).unwrap().0);
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
    #[test]
    fn text_columns_take_any_json_value() {
        let s = Arc::new(schema(vec![("j", DataType::Utf8), ("n", DataType::Int64)]));
        let body = br#"{"j":{"a":[1,2.5,"x\"y",null,true],"b":{}},"n":1}
{"j":"plain","n":2}
{"j":[{"k":-3}],"n":3}
{"j":12345678901,"n":4}
{"n":5}
"#;
        let d = decode_tolerant(body, s, false).unwrap();
        assert!(d.bad.is_empty(), "{:?}", d.bad);
        let j = d
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        assert_eq!(j.value(0), r#"{"a":[1,2.5,"x\"y",null,true],"b":{}}"#);
        // The text is JSON that reads back as the same value.
        let back: serde_json::Value = serde_json::from_str(j.value(0)).unwrap();
        assert_eq!(back["a"][2], "x\"y");
        assert_eq!(j.value(1), "plain");
        assert_eq!(j.value(2), r#"[{"k":-3}]"#);
        assert_eq!(j.value(3), "12345678901");
        assert!(j.is_null(4));
    }

    #[test]
    fn conflicting_shapes_widen_to_text_and_every_record_decodes() {
        let body = br#"{"id":1,"meta":{"a":1},"tags":["x"]}
{"id":2,"meta":"none","tags":["y","z"]}
{"id":3,"meta":{"a":2,"b":[1]},"tags":[]}
"#;
        let (s, warnings) = infer_json_lines(body).unwrap();
        assert_eq!(
            s.field_with_name("meta").unwrap().data_type(),
            &DataType::Utf8
        );
        assert!(matches!(
            s.field_with_name("tags").unwrap().data_type(),
            DataType::List(_)
        ));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("'meta'"), "{warnings:?}");
        let d = decode_tolerant(body, Arc::new(s), true).unwrap();
        assert!(d.bad.is_empty(), "{:?}", d.bad);
        assert_eq!(d.batch.num_rows(), 3);
        let meta = d
            .batch
            .column_by_name("meta")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        assert_eq!(meta.value(0), r#"{"a":1}"#);
        assert_eq!(meta.value(1), "none");
    }
    #[test]
    fn pages_decode_straight_to_arrow_with_their_paging_fields() {
        let rec = Arc::new(schema(vec![
            ("id", DataType::Int64),
            ("name", DataType::Utf8),
        ]));
        let shape = PageShape::new(
            simple_path("$.data.items[*]", true).unwrap(),
            vec![
                simple_path("$.meta.next", false).unwrap(),
                simple_path("$.total", false).unwrap(),
                simple_path("$['has-more']", false).unwrap(),
            ],
            rec.clone(),
        )
        .unwrap();
        let body = r#"{"data":{"items":[{"id":1,"name":"a","x":{"y":1}},{"id":2,"name":null}],"other":5},"meta":{"next":"c2"},"total":7,"has-more":true}"#;
        let p = shape.decode(body).unwrap();
        assert_eq!(p.batch.num_rows(), 2);
        assert_eq!(p.batch.schema(), rec);
        assert_eq!(
            p.meta,
            serde_json::json!({"data": {"items": []}, "meta": {"next": "c2"}, "total": 7, "has-more": true})
        );
        // No records, a null next: an empty batch and null paging fields.
        let p = shape
            .decode(r#"{"data":{"items":[]},"meta":{"next":null}}"#)
            .unwrap();
        assert_eq!(p.batch.num_rows(), 0);
        assert_eq!(p.meta["meta"]["next"], serde_json::Value::Null);
        assert_eq!(p.meta["total"], serde_json::Value::Null);
        // A record of another type, truncated JSON, a null record: the page does not fit.
        assert!(shape.decode(r#"{"data":{"items":[{"id":"x"}]}}"#).is_err());
        assert!(shape.decode(r#"{"data":{"items":[{"id":1}"#).is_err());
        assert!(shape.decode(r#"{"data":{"items":[null]}}"#).is_err());
        // A body that is the array of records.
        let top = PageShape::new(vec![], vec![], rec.clone()).unwrap();
        let p = top.decode(r#"[{"id":1},{"id":2},{"id":3}]"#).unwrap();
        assert_eq!(p.batch.num_rows(), 3);
        // Paths that are not plain field names, or that collide, have no shape.
        assert_eq!(simple_path("$.data[?(@.a)]", true), None);
        assert_eq!(simple_path("$..items[*]", true), None);
        assert!(PageShape::new(
            vec!["data".into()],
            vec![vec!["data".into(), "n".into()]],
            rec.clone()
        )
        .is_none());
        assert!(PageShape::new(vec![], vec![vec!["n".into()]], rec).is_none());
    }
}
