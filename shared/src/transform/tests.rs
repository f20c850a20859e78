//! Table-driven tests: one table per task type, covering each operator with nulls, empty strings,
//! Unicode, overflow and division by zero.

use super::*;
use crate::flow::tasks::TaskSpec;
use arrow::array::{
    BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::Fields;

/// Five rows; row 2 is null everywhere.
fn batch() -> RecordBatch {
    let city: ArrayRef = Arc::new(StringArray::from(vec![
        Some("Paris"),
        Some("São Paulo"),
        None,
        Some(""),
        Some("Zürich"),
    ]));
    let addr = StructArray::new(
        Fields::from(vec![Field::new("city", DataType::Utf8, true)]),
        vec![city],
        Some(vec![true, true, false, true, true].into()),
    );
    let ts = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros()
    };
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "s",
            Arc::new(StringArray::from(vec![
                Some("abcdef"),
                Some(""),
                None,
                Some("héllo wörld 😀"),
                Some("Zed"),
            ])),
        ),
        (
            "i",
            Arc::new(Int64Array::from(vec![
                Some(1),
                Some(0),
                None,
                Some(i64::MAX),
                Some(-5),
            ])),
        ),
        (
            "f",
            Arc::new(Float64Array::from(vec![
                Some(1.5),
                Some(0.0),
                None,
                Some(-2.25),
                Some(1e308),
            ])),
        ),
        (
            "d",
            Arc::new(
                Decimal128Array::from(vec![
                    Some(1250),
                    Some(0),
                    None,
                    Some(-310),
                    Some(9_999_999_999),
                ])
                .with_precision_and_scale(18, 2)
                .unwrap(),
            ),
        ),
        (
            "b",
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
                Some(false),
            ])),
        ),
        (
            "t",
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    Some(ts("2024-01-01T00:00:00Z")),
                    Some(ts("2024-06-15T12:30:00Z")),
                    None,
                    Some(ts("2025-03-01T08:00:00Z")),
                    Some(ts("2023-12-31T23:59:59Z")),
                ])
                .with_timezone("UTC"),
            ),
        ),
        (
            "dt",
            Arc::new(Date32Array::from(vec![
                Some(19723),
                Some(0),
                None,
                Some(-1),
                Some(20000),
            ])),
        ),
        (
            "txt",
            Arc::new(StringArray::from(vec![
                Some("42"),
                Some("-1.5e3"),
                None,
                Some("4x"),
                Some("31/12/2024"),
            ])),
        ),
        ("address", Arc::new(addr)),
    ];
    let schema = Schema::new(
        cols.iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    RecordBatch::try_new(Arc::new(schema), cols.into_iter().map(|(_, a)| a).collect()).unwrap()
}

fn tasks(yaml: &str) -> Vec<TaskSpec> {
    let v: serde_json::Value = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    let ts: Vec<TaskSpec> = serde_json::from_value(v).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    for (i, t) in ts.iter().enumerate() {
        let mut errs = vec![];
        t.validate(&format!("tasks[{i}]"), &mut errs);
        assert!(errs.is_empty(), "{yaml}: {errs:?}");
    }
    ts
}

fn plan(yaml: &str) -> Plan {
    let b = batch();
    Plan::compile(&tasks(yaml), b.schema()).unwrap_or_else(|e| panic!("{yaml}: {e:?}"))
}

fn run(yaml: &str) -> Applied {
    plan(yaml).apply(&batch()).unwrap()
}

/// A column as text (null as None).
fn col(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let c = b
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", b.schema()));
    let t = compute::cast(c, &DataType::Utf8).unwrap();
    t.as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

fn ids(a: &Applied) -> Vec<Option<String>> {
    col(&a.batch, "i")
}

fn v(xs: &[Option<&str>]) -> Vec<Option<String>> {
    xs.iter().map(|x| x.map(str::to_string)).collect()
}

const MAX: &str = "9223372036854775807";

#[test]
fn filters_by_operator() {
    // (filter, ids of the rows kept (column i), filtered count)
    let cases: &[(&str, &[Option<&str>])] = &[
        ("{ field: s, op: equal, value: abcdef }", &[Some("1")]),
        ("{ field: s, op: equal, value: '' }", &[Some("0")]),
        // null passes not_equal
        (
            "{ field: s, op: not_equal, value: abcdef }",
            &[Some("0"), None, Some(MAX), Some("-5")],
        ),
        ("{ field: s, op: contains, value: 'wörld 😀' }", &[Some(MAX)]),
        ("{ field: s, op: contains, value: '' }", &[Some("1"), Some("0"), Some(MAX), Some("-5")]),
        // code-point order: 'Z' < 'a'
        ("{ field: s, op: less, value: a }", &[Some("0"), Some("-5")]),
        ("{ field: i, op: greater, value: 0 }", &[Some("1"), Some(MAX)]),
        ("{ field: i, op: greater_or_equal, value: 0 }", &[Some("1"), Some("0"), Some(MAX)]),
        ("{ field: i, op: less_or_equal, value: 0 }", &[Some("0"), Some("-5")]),
        ("{ field: i, op: between, min: -5, max: 1 }", &[Some("1"), Some("0"), Some("-5")]),
        ("{ field: i, op: in, values: [1, -5, 7] }", &[Some("1"), Some("-5")]),
        ("{ field: i, op: equal, value: '1' }", &[Some("1")]),
        ("{ field: f, op: less, value: 0 }", &[Some(MAX)]),
        ("{ field: d, op: greater_or_equal, value: 12.5 }", &[Some("1"), Some("-5")]),
        ("{ field: d, op: equal, value: '12.50' }", &[Some("1")]),
        ("{ field: b, op: equal, value: true }", &[Some("1"), Some(MAX)]),
        (
            "{ field: t, op: greater, value: '2024-01-01T00:00:00Z' }",
            &[Some("0"), Some(MAX)],
        ),
        (
            "{ field: t, op: between, min: '2023-12-31T23:59:59Z', max: '2024-01-01T00:00:00Z' }",
            &[Some("1"), Some("-5")],
        ),
        ("{ field: dt, op: less, value: '1970-01-01' }", &[Some(MAX)]),
        ("{ field: s, op: is_null }", &[None]),
        ("{ field: address, op: is_null }", &[None]),
        ("{ field: s, op: is_not_null }", &[Some("1"), Some("0"), Some(MAX), Some("-5")]),
        ("{ field: address.city, op: equal, value: 'São Paulo' }", &[Some("0")]),
        (
            "{ any: [ { field: i, op: equal, value: 1 }, { field: s, op: equal, value: Zed } ] }",
            &[Some("1"), Some("-5")],
        ),
        (
            "{ all: [ { field: i, op: greater, value: -10 }, { any: [ { field: b, op: equal, value: false }, { field: s, op: is_null } ] } ] }",
            &[Some("0"), Some("-5")],
        ),
    ];
    for (f, want) in cases {
        let a = run(&format!("[ {{ filter: {f} }} ]"));
        assert_eq!(ids(&a), v(want), "{f}");
        assert_eq!(a.filtered as usize, 5 - want.len(), "{f}");
        assert!(a.rejected.is_empty());
    }
}

#[test]
fn several_filters_count_each_dropped_row_once() {
    let a = run(
        "[ { filter: { field: i, op: greater, value: -10 } }, { filter: { field: i, op: less, value: 5 } } ]",
    );
    assert_eq!(ids(&a), v(&[Some("1"), Some("0"), Some("-5")]));
    assert_eq!(a.filtered, 2);
}

#[test]
fn filter_values_that_do_not_fit_the_field_are_refused_at_compile_time() {
    let b = batch();
    for (t, want) in [
        (
            "[ { filter: { field: i, op: equal, value: abc } } ]",
            "tasks[0].filter.value: 'abc' is not a Int64 value",
        ),
        (
            "[ { filter: { field: t, op: less, value: yesterday } } ]",
            "tasks[0].filter.value: 'yesterday' is not a Timestamp",
        ),
        (
            "[ { filter: { field: i, op: contains, value: '1' } } ]",
            "tasks[0].filter.field: 'i' is Int64; contains works on text",
        ),
        (
            "[ { filter: { field: nope, op: is_null } } ]",
            "tasks[0].filter.field: there is no field 'nope'",
        ),
        (
            "[ { filter: { field: address.zip, op: is_null } } ]",
            "tasks[0].filter.field: 'address' has no field 'zip'",
        ),
        (
            "[ { filter: { any: [ { field: i, op: in, values: [1, x] } ] } } ]",
            "tasks[0].filter.any[0].values[1]: 'x' is not",
        ),
        (
            "[ { filter: { field: address, op: equal, value: x } } ]",
            "tasks[0].filter.field: 'address' is Struct",
        ),
    ] {
        let errs = Plan::compile(&tasks(t), b.schema()).unwrap_err();
        assert!(
            errs.iter().any(|e| e.to_string().starts_with(want)),
            "{t}: {errs:?}"
        );
    }
}

#[test]
fn masks() {
    let cases: &[(&str, &[Option<&str>])] = &[
        (
            "{ field: s }",
            &[
                Some("******"),
                Some(""),
                None,
                Some("*************"),
                Some("***"),
            ],
        ),
        (
            "{ field: s, keep_last: 2 }",
            &[
                Some("****ef"),
                Some(""),
                None,
                Some("*********** 😀"),
                Some("*ed"),
            ],
        ),
        (
            "{ field: s, keep_first: 2, char: '#' }",
            &[
                Some("ab####"),
                Some(""),
                None,
                Some("hé###########"),
                Some("Ze#"),
            ],
        ),
        (
            "{ field: s, first: 2 }",
            &[
                Some("**cdef"),
                Some(""),
                None,
                Some("**llo wörld 😀"),
                Some("**d"),
            ],
        ),
        (
            "{ field: s, last: 3, char: '•' }",
            &[
                Some("abc•••"),
                Some(""),
                None,
                Some("héllo wörl•••"),
                Some("•••"),
            ],
        ),
        (
            "{ field: s, keep_last: 100 }",
            &[
                Some("abcdef"),
                Some(""),
                None,
                Some("héllo wörld 😀"),
                Some("Zed"),
            ],
        ),
    ];
    for (m, want) in cases {
        let a = run(&format!("[ {{ mask: {m} }} ]"));
        assert_eq!(col(&a.batch, "s"), v(want), "{m}");
    }
    // A number is masked as its text; the output column becomes text.
    let a = run("[ { mask: { field: i, keep_last: 1 } } ]");
    assert_eq!(
        a.batch.schema().field_with_name("i").unwrap().data_type(),
        &DataType::Utf8
    );
    assert_eq!(col(&a.batch, "i")[4], Some("*5".into()));
}

#[test]
fn truncates_by_character() {
    let a = run("[ { truncate: { field: s, length: 3 } }, { truncate: { field: address.city, length: 2 } }, { project: [s, address.city] } ]");
    assert_eq!(
        col(&a.batch, "s"),
        v(&[Some("abc"), Some(""), None, Some("hél"), Some("Zed")])
    );
    assert_eq!(
        col(&a.batch, "address.city"),
        v(&[Some("Pa"), Some("Sã"), None, Some(""), Some("Zü")])
    );
    let a = run("[ { truncate: { field: s, length: 0 } } ]");
    assert_eq!(
        col(&a.batch, "s"),
        v(&[Some(""), Some(""), None, Some(""), Some("")])
    );
}

#[test]
fn arithmetic_by_operator() {
    let cases: &[(&str, &str, &[Option<&str>])] = &[
        // integer + integer stays integer; overflow is null
        (
            "{ to: r, left: i, op: add, right: 1 }",
            "Int64",
            &[Some("2"), Some("1"), None, None, Some("-4")],
        ),
        (
            "{ to: r, left: i, op: subtract, right: i }",
            "Int64",
            &[Some("0"), Some("0"), None, Some("0"), Some("0")],
        ),
        (
            "{ to: r, left: i, op: multiply, right: 2 }",
            "Int64",
            &[Some("2"), Some("0"), None, None, Some("-10")],
        ),
        // divide is float; division by zero is null
        (
            "{ to: r, left: i, op: divide, right: i }",
            "Float64",
            &[Some("1.0"), None, None, Some("1.0"), Some("1.0")],
        ),
        (
            "{ to: r, left: f, op: divide, right: 0 }",
            "Float64",
            &[None, None, None, None, None],
        ),
        (
            "{ to: r, left: i, op: divide, right: 2 }",
            "Float64",
            &[
                Some("0.5"),
                Some("0.0"),
                None,
                Some("4.611686018427388e18"),
                Some("-2.5"),
            ],
        ),
        // float overflow (infinite) is null
        (
            "{ to: r, left: f, op: multiply, right: 10 }",
            "Float64",
            &[Some("15.0"), Some("0.0"), None, Some("-22.5"), None],
        ),
        (
            "{ to: r, left: f, op: add, right: i }",
            "Float64",
            &[
                Some("2.5"),
                Some("0.0"),
                None,
                Some("9.223372036854776e18"),
                Some("1e308"),
            ],
        ),
        (
            "{ to: r, left: d, op: multiply, right: 2 }",
            "Float64",
            &[
                Some("25.0"),
                Some("0.0"),
                None,
                Some("-6.2"),
                Some("199999999.98"),
            ],
        ),
        (
            "{ to: r, left: i, op: add, right: 0.5 }",
            "Float64",
            &[
                Some("1.5"),
                Some("0.5"),
                None,
                Some("9.223372036854776e18"),
                Some("-4.5"),
            ],
        ),
    ];
    for (t, ty, want) in cases {
        let a = run(&format!("[ {{ arithmetic: {t} }} ]"));
        let f = a.batch.schema().field_with_name("r").unwrap().clone();
        assert_eq!(f.data_type().to_string(), *ty, "{t}");
        assert_eq!(col(&a.batch, "r"), v(want), "{t}");
        // Created fields join the output after the source fields.
        assert_eq!(a.batch.schema().fields().last().unwrap().name(), "r");
    }
    let errs = Plan::compile(
        &tasks("[ { arithmetic: { to: r, left: s, op: add, right: 1 } } ]"),
        batch().schema(),
    )
    .unwrap_err();
    assert!(
        errs[0]
            .to_string()
            .starts_with("tasks[0].arithmetic.left: 's' is Utf8; arithmetic needs numbers"),
        "{errs:?}"
    );
}

#[test]
fn merge_formats_fields() {
    let a = run("[ { merge: { to: m, format: '{s}/{i} in {address.city} {{ok}}' } } ]");
    let row3 = format!("héllo wörld 😀/{MAX} in  {{ok}}");
    assert_eq!(
        col(&a.batch, "m"),
        v(&[
            Some("abcdef/1 in Paris {ok}"),
            Some("/0 in São Paulo {ok}"),
            // every field null -> null
            None,
            Some(row3.as_str()),
            Some("Zed/-5 in Zürich {ok}"),
        ])
    );
    let a = run("[ { merge: { to: m, format: '{b}|{dt}' } } ]");
    assert_eq!(col(&a.batch, "m")[0], Some("true|2024-01-01".into()));
}

#[test]
fn map_casts_and_renames() {
    // (map task, output column, values)
    let cases: &[(&str, &str, &[Option<&str>])] = &[
        (
            "{ from: txt, to: n, type: integer }",
            "n",
            &[Some("42"), None, None, None, None],
        ),
        (
            "{ from: txt, to: n, type: float }",
            "n",
            &[Some("42.0"), Some("-1500.0"), None, None, None],
        ),
        (
            "{ from: txt, to: n, type: decimal, precision: 10, scale: 1 }",
            "n",
            &[Some("42.0"), Some("-1500.0"), None, None, None],
        ),
        (
            "{ from: txt, to: n, type: date, format: '%d/%m/%Y' }",
            "n",
            &[None, None, None, None, Some("2024-12-31")],
        ),
        (
            "{ from: txt, to: n, type: timestamp, format: '%d/%m/%Y' }",
            "n",
            &[None, None, None, None, Some("2024-12-31T00:00:00Z")],
        ),
        (
            "{ from: f, to: n, type: integer }",
            "n",
            &[Some("1"), Some("0"), None, Some("-2"), None],
        ),
        (
            "{ from: i, to: n, type: boolean }",
            "n",
            &[
                Some("true"),
                Some("false"),
                None,
                Some("true"),
                Some("true"),
            ],
        ),
        (
            "{ from: t, to: n, type: string, format: '%Y/%m/%d %H:%M' }",
            "n",
            &[
                Some("2024/01/01 00:00"),
                Some("2024/06/15 12:30"),
                None,
                Some("2025/03/01 08:00"),
                Some("2023/12/31 23:59"),
            ],
        ),
        (
            "{ from: dt, to: n, type: string, format: '%d.%m.%Y' }",
            "n",
            &[
                Some("01.01.2024"),
                Some("01.01.1970"),
                None,
                Some("31.12.1969"),
                Some("04.10.2024"),
            ],
        ),
        (
            "{ from: t, to: n, type: date }",
            "n",
            &[
                Some("2024-01-01"),
                Some("2024-06-15"),
                None,
                Some("2025-03-01"),
                Some("2023-12-31"),
            ],
        ),
        (
            "{ from: address.city, to: city }",
            "city",
            &[
                Some("Paris"),
                Some("São Paulo"),
                None,
                Some(""),
                Some("Zürich"),
            ],
        ),
        (
            "{ from: i }",
            "i",
            &[Some("1"), Some("0"), None, Some(MAX), Some("-5")],
        ),
    ];
    for (m, out, want) in cases {
        let a = run(&format!("[ {{ map: {m} }} ]"));
        assert_eq!(
            a.batch.num_columns(),
            1,
            "{m}: only mapped fields are output"
        );
        assert_eq!(col(&a.batch, out), v(want), "{m}");
    }
}

#[test]
fn projection_map_all_and_output_order() {
    let a = run("[ { project: [s, address.city, i] } ]");
    let names: Vec<_> = a
        .batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["s", "address.city", "i"]);
    let a = run("[ { map_all: { exclude: [address, txt] } }, { map: { from: s, to: s2 } } ]");
    let names: Vec<_> = a
        .batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["s", "i", "f", "d", "b", "t", "dt", "s2"]);
    // No choosing task: every source field.
    assert_eq!(run("[]").batch.num_columns(), 9);
}

#[test]
fn tasks_see_what_earlier_tasks_left() {
    // The copy is taken before the mask, so it stays clear; the source field is masked.
    let a = run("[ { map_all: {} }, { map: { from: s, to: clear } }, { mask: { field: s } } ]");
    assert_eq!(col(&a.batch, "clear")[0], Some("abcdef".into()));
    assert_eq!(col(&a.batch, "s")[0], Some("******".into()));
    // Mask a mapped name: only that output is masked.
    let a = run(
        "[ { map: { from: s, to: secret } }, { map: { from: s } }, { mask: { field: secret } } ]",
    );
    assert_eq!(col(&a.batch, "secret")[0], Some("******".into()));
    assert_eq!(col(&a.batch, "s")[0], Some("abcdef".into()));
    // A filter after a cast tests the cast value.
    let a = run("[ { map: { from: txt, to: n, type: float } }, { filter: { field: n, op: less, value: 0 } } ]");
    assert_eq!(col(&a.batch, "n"), v(&[Some("-1500.0")]));
}

#[test]
fn two_tasks_cannot_write_the_same_destination() {
    let errs = Plan::compile(
        &tasks("[ { map: { from: s, to: x } }, { merge: { to: x, format: '{i}' } } ]"),
        batch().schema(),
    )
    .unwrap_err();
    assert!(
        errs[0]
            .to_string()
            .starts_with("tasks[1].merge.to: tasks[0] already writes the destination field 'x'"),
        "{errs:?}"
    );
}

#[test]
fn validate_drop_record_by_check() {
    // (validate, rows rejected)
    let cases: &[(&str, &[usize])] = &[
        ("{ field: s, check: non_null }", &[2]),
        ("{ field: i, check: non_zero }", &[1]),
        ("{ field: f, check: non_zero }", &[1]),
        ("{ field: d, check: non_negative }", &[3]),
        ("{ field: i, check: non_negative }", &[4]),
        // empty strings and junk are not numeric; nulls pass
        ("{ field: txt, check: numeric }", &[3, 4]),
        ("{ field: s, check: numeric }", &[0, 1, 3, 4]),
        ("{ field: i, check: numeric }", &[]),
        ("{ field: s, matches: '^[a-z]+$' }", &[1, 3, 4]),
        ("{ field: s, matches: 'ö' }", &[0, 1, 4]),
        ("{ field: i, matches: '^-' }", &[0, 1, 3]),
    ];
    for (t, want) in cases {
        let a = run(&format!("[ {{ validate: {t} }} ]"));
        let rows: Vec<usize> = a.rejected.iter().map(|r| r.row).collect();
        assert_eq!(rows, *want, "{t}");
        assert_eq!(a.batch.num_rows(), 5 - want.len(), "{t}");
        assert_eq!(a.filtered, 0);
        for r in &a.rejected {
            assert!(r.reason.starts_with("tasks[0].validate: '"), "{}", r.reason);
        }
    }
}

#[test]
fn validate_after_filter_only_sees_kept_rows_and_rows_keep_input_numbers() {
    let a = run(
        "[ { filter: { field: i, op: not_equal, value: 0 } }, { validate: { field: s, check: non_null } }, { validate: { field: i, check: non_negative } } ]",
    );
    assert_eq!(a.filtered, 1);
    let rows: Vec<_> = a
        .rejected
        .iter()
        .map(|r| (r.row, r.reason.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            (2, "tasks[1].validate: 's' is null"),
            (4, "tasks[2].validate: 'i' is negative")
        ]
    );
    assert_eq!(ids(&a), v(&[Some("1"), Some(MAX)]));
}

#[test]
fn validate_terminate_run_stops_with_the_first_failing_row() {
    let p = plan("[ { filter: { field: i, op: not_equal, value: 1 } }, { validate: { field: i, check: non_negative, action: terminate_run } } ]");
    match p.apply(&batch()) {
        Err(e @ TransformError::Terminated { .. }) => {
            assert_eq!(e.kind(), ErrorKind::SourceRejected);
            assert!(
                e.to_string().starts_with(
                    "tasks[1].validate: record 4 failed the check on 'i' (is negative)"
                ),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Filtered rows are not checked.
    let p = plan("[ { filter: { field: i, op: greater_or_equal, value: 0 } }, { validate: { field: i, check: non_negative, action: terminate_run } } ]");
    assert_eq!(p.apply(&batch()).unwrap().batch.num_rows(), 3);
}

#[test]
fn partition_task_points_to_the_layout() {
    let t: Vec<TaskSpec> =
        serde_json::from_value(serde_yaml::from_str("[ { partition: [country] } ]").unwrap())
            .unwrap();
    let mut errs = vec![];
    t[0].validate("tasks[0]", &mut errs);
    assert!(errs[0]
        .to_string()
        .contains("destination.layout.partition_by"));
}

#[test]
fn design_example_tasks_still_run() {
    let s = Arc::new(Schema::new(vec![
        Field::new("status", DataType::Utf8, true),
        Field::new("phone", DataType::Utf8, true),
        Field::new("internal_notes", DataType::Utf8, true),
    ]));
    let b = RecordBatch::try_new(
        s.clone(),
        vec![
            Arc::new(StringArray::from(vec![
                Some("active"),
                Some("deleted"),
                None,
            ])),
            Arc::new(StringArray::from(vec![
                Some("+1-555-123-4567"),
                Some("x"),
                Some("12"),
            ])),
            Arc::new(StringArray::from(vec![Some("n"), Some("n"), Some("n")])),
        ],
    )
    .unwrap();
    let p = Plan::compile(
        &tasks("[ { map_all: { exclude: [internal_notes] } }, { filter: { field: status, op: not_equal, value: deleted } }, { mask: { field: phone, keep_last: 4 } } ]"),
        s,
    )
    .unwrap();
    let a = p.apply(&b).unwrap();
    assert_eq!(a.filtered, 1);
    assert_eq!(
        col(&a.batch, "phone"),
        v(&[Some("***********4567"), Some("12")])
    );
    assert_eq!(a.batch.num_columns(), 2);
}

#[test]
fn pushdown_split_respects_order_and_capabilities() {
    use crate::flow::tasks::FilterOp::*;
    let caps = FilterPushdown {
        ops: vec![Equal, Greater, In],
        combinations: false,
    };
    let p = plan(
        "[ { filter: { field: i, op: greater, value: 0 } },
           { filter: { field: s, op: contains, value: a } },
           { filter: { any: [ { field: i, op: equal, value: 1 } ] } },
           { mask: { field: s } },
           { filter: { field: s, op: equal, value: '***' } },
           { filter: { field: address.city, op: equal, value: Paris } },
           { validate: { field: i, check: non_null } },
           { filter: { field: b, op: equal, value: true } } ]",
    );
    let (pushed, local) = p.split_pushdown(&caps);
    // Only the first: contains is not supported, any needs combinations, s is masked,
    // nested paths are not source fields, and nothing after a validate is pushed.
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].field.as_deref(), Some("i"));
    assert_eq!(local.steps(), p.steps() - 1);
    let (pushed, _) = p.split_pushdown(&FilterPushdown {
        combinations: true,
        ..caps
    });
    assert_eq!(pushed.len(), 2);
    assert!(p.split_pushdown(&FilterPushdown::none()).0.is_empty());
}
