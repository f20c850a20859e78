//! Encoder round trips: ferry writes Parquet / CSV / JSON lines (every compression), an
//! independent reader (pyarrow, from the project venv) reads them back; same rows, same types.
//!
//! Needs the venv: `scripts/setup-venv.sh` (or `FERRY_TEST_PYTHON=/path/to/python`).

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array, ListBuilder,
    StringArray, StringBuilder, StructArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field};
use arrow::record_batch::RecordBatch;
use ferry::flow::DestinationConfig;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_TEST_PYTHON") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        p.exists(),
        "no Python with pyarrow at {}: run scripts/setup-venv.sh or set FERRY_TEST_PYTHON",
        p.display()
    );
    p
}

const READER: &str = r#"
import sys, json, datetime, decimal
import pyarrow as pa, pyarrow.parquet as pq, pyarrow.csv as pc, pyarrow.json as pj
fmt, path = sys.argv[1], sys.argv[2]
def norm(v):
    if isinstance(v, (datetime.datetime, datetime.date, decimal.Decimal)):
        return str(v)
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    if isinstance(v, list):
        return [norm(x) for x in v]
    return v
if fmt == "parquet":
    t = pq.read_table(path)
elif fmt == "csv":
    head = pc.read_csv(pa.input_stream(path, compression="detect"))
    t = pc.read_csv(pa.input_stream(path, compression="detect"),
        convert_options=pc.ConvertOptions(column_types={n: pa.string() for n in head.column_names}, strings_can_be_null=True))
else:
    schema = pa.schema([
        ("id", pa.int64()), ("name", pa.string()), ("rating", pa.float64()),
        ("amount", pa.decimal128(18, 2)), ("active", pa.bool_()),
        ("at", pa.timestamp("us", tz="UTC")), ("day", pa.string()),
        ("address", pa.struct([("city", pa.string())])), ("tags", pa.list_(pa.string())),
    ])
    t = pj.read_json(pa.input_stream(path, compression="detect"),
        parse_options=pj.ParseOptions(explicit_schema=schema))
    # pyarrow's JSON reader has no string -> date32 conversion; ISO dates are cast afterwards.
    t = t.set_column(t.schema.get_field_index("day"), "day", t.column("day").cast(pa.date32()))
print(json.dumps({"types": {f.name: str(f.type) for f in t.schema}, "rows": norm(t.to_pylist())}))
"#;

pub fn read_back(format: &str, path: &std::path::Path) -> Value {
    let out = std::process::Command::new(python())
        .args(["-c", READER, format, path.to_str().unwrap()])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "pyarrow could not read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Three rows covering every type ferry writes, nulls, quotes, separators, line breaks, Unicode.
fn batch() -> RecordBatch {
    let mut tags = ListBuilder::new(StringBuilder::new());
    tags.append_value([Some("vip"), Some("a,b")]);
    tags.append_null();
    tags.append_value(Vec::<Option<&str>>::new());
    let city = StringArray::from(vec![Some("Zürich"), None, Some("São \"Paulo\"")]);
    let address = StructArray::try_new(
        vec![Field::new("city", DataType::Utf8, true)].into(),
        vec![Arc::new(city) as ArrayRef],
        Some(vec![true, false, true].into()),
    )
    .unwrap();
    RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from(vec![Some(1), None, Some(-3)])) as ArrayRef,
        ),
        (
            "name",
            Arc::new(StringArray::from(vec![
                Some("Acme, \"Inc\""),
                Some("line\nbreak"),
                None,
            ])) as ArrayRef,
        ),
        (
            "rating",
            Arc::new(Float64Array::from(vec![Some(4.25), Some(0.1), None])) as ArrayRef,
        ),
        (
            "amount",
            Arc::new(
                Decimal128Array::from(vec![Some(1234567890123456_i128), Some(50), None])
                    .with_precision_and_scale(18, 2)
                    .unwrap(),
            ) as ArrayRef,
        ),
        (
            "active",
            Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])) as ArrayRef,
        ),
        (
            "at",
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(1_772_600_767_123_456), Some(0), None])
                    .with_timezone("UTC"),
            ) as ArrayRef,
        ),
        (
            "day",
            Arc::new(Date32Array::from(vec![Some(20_516), Some(0), None])) as ArrayRef,
        ),
        ("address", Arc::new(address) as ArrayRef),
        ("tags", Arc::new(tags.finish()) as ArrayRef),
    ])
    .unwrap()
}

fn dest(v: Value) -> DestinationConfig {
    serde_json::from_value(v).unwrap()
}

fn write(d: &DestinationConfig, dir: &std::path::Path) -> PathBuf {
    let e = ferry::output::encode(&[batch()], d).unwrap();
    assert_eq!(e.rows, 3);
    let path = dir.join(format!("out.{}", ferry::output::extension(d)));
    std::fs::write(&path, &e.body).unwrap();
    path
}

/// The typed values as pyarrow shows them.
fn typed_rows() -> Value {
    json!([
        {"id": 1, "name": "Acme, \"Inc\"", "rating": 4.25, "amount": "12345678901234.56", "active": true,
         "at": "2026-03-04 05:06:07.123456+00:00", "day": "2026-03-04",
         "address": {"city": "Zürich"}, "tags": ["vip", "a,b"]},
        {"id": null, "name": "line\nbreak", "rating": 0.1, "amount": "0.50", "active": false,
         "at": "1970-01-01 00:00:00+00:00", "day": "1970-01-01", "address": null, "tags": null},
        {"id": -3, "name": null, "rating": null, "amount": null, "active": null,
         "at": null, "day": null, "address": {"city": "São \"Paulo\""}, "tags": []},
    ])
}

fn typed_types() -> Value {
    json!({"id": "int64", "name": "string", "rating": "double", "amount": "decimal128(18, 2)",
           "active": "bool", "at": "timestamp[us, tz=UTC]", "day": "date32[day]",
           "address": "struct<city: string>", "tags": "list<item: string>"})
}

#[test]
fn parquet_every_compression() {
    for c in ["zstd", "snappy", "gzip", "none"] {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dest(json!({"local": "o", "format": "parquet", "compression": c})),
            dir.path(),
        );
        let got = read_back("parquet", &p);
        assert_eq!(got["types"], typed_types(), "{c}");
        assert_eq!(got["rows"], typed_rows(), "{c}");
        // The codec asked for is the codec used.
        let meta =
            parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&p).unwrap())
                .unwrap();
        let codec = parquet::file::reader::FileReader::metadata(&meta)
            .row_group(0)
            .column(0)
            .compression();
        let want = match c {
            "none" => "UNCOMPRESSED".to_string(),
            other => other.to_uppercase(),
        };
        assert!(format!("{codec:?}").starts_with(&want), "{c}: {codec:?}");
    }
}

#[test]
fn jsonl_plain_and_gzip() {
    for c in ["none", "gzip"] {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dest(json!({"local": "o", "format": "jsonl", "compression": c})),
            dir.path(),
        );
        let got = read_back("jsonl", &p);
        assert_eq!(got["rows"], typed_rows(), "{c}");
    }
}

#[test]
fn csv_plain_and_gzip() {
    for c in ["none", "gzip"] {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dest(json!({"local": "o", "format": "csv", "compression": c})),
            dir.path(),
        );
        let got = read_back("csv", &p);
        // CSV has no types: every value is text, nested values are JSON, decimals keep their
        // scale, timestamps are RFC 3339 UTC.
        assert_eq!(
            got["rows"],
            json!([
                {"id": "1", "name": "Acme, \"Inc\"", "rating": "4.25", "amount": "12345678901234.56", "active": "true",
                 "at": "2026-03-04T05:06:07.123456Z", "day": "2026-03-04",
                 "address": "{\"city\":\"Zürich\"}", "tags": "[\"vip\",\"a,b\"]"},
                {"id": null, "name": "line\nbreak", "rating": "0.1", "amount": "0.50", "active": "false",
                 "at": "1970-01-01T00:00:00Z", "day": "1970-01-01", "address": null, "tags": null},
                {"id": "-3", "name": null, "rating": null, "amount": null, "active": null,
                 "at": null, "day": null, "address": "{\"city\":\"São \\\"Paulo\\\"\"}", "tags": "[]"},
            ]),
            "{c}"
        );
    }
}

#[test]
fn strings_only_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dest(json!({"local": "o", "format": "parquet", "preserve_source_types": false})),
        dir.path(),
    );
    let got = read_back("parquet", &p);
    for (name, t) in got["types"].as_object().unwrap() {
        assert_eq!(t, "string", "{name}");
    }
    assert_eq!(got["rows"][0]["amount"], "12345678901234.56");
    assert_eq!(got["rows"][1]["amount"], "0.50");
    assert_eq!(got["rows"][0]["address"], "{\"city\":\"Zürich\"}");
    assert_eq!(got["rows"][0]["at"], "2026-03-04T05:06:07.123456Z");
}
