use super::*;
use arrow::datatypes::TimeUnit;

fn flow(dest: &str) -> Flow {
    Flow::parse(
        &format!(
            "name: crm-accounts\nsource: {{ connector: sample, entity: accounts }}\ndestination:\n  s3: {{ bucket: lake, prefix: raw }}\n  catalog: {{ database: crm }}\n{dest}"
        ),
        "t.yaml",
    )
    .unwrap()
}

fn schema(fields: Vec<(&str, DataType)>) -> Schema {
    Schema::new(
        fields
            .into_iter()
            .map(|(n, t)| Field::new(n, t, true))
            .collect::<Vec<_>>(),
    )
}

fn accounts() -> Schema {
    schema(vec![
        ("id", DataType::Utf8),
        ("employees", DataType::Int64),
        ("revenue", DataType::Decimal128(18, 2)),
        ("score", DataType::Float64),
        ("active", DataType::Boolean),
        (
            "updated_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
        ("founded", DataType::Date32),
        (
            "address",
            DataType::Struct(Fields::from(vec![
                Field::new("City", DataType::Utf8, true),
                Field::new("zip", DataType::Int64, true),
            ])),
        ),
        (
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        ),
        ("country", DataType::Utf8),
    ])
}

const LOC: &str = "s3://lake/raw/crm-accounts/";

#[test]
fn glue_types_from_arrow() {
    let t = table_for(&flow(""), &cfg(&flow("")), &accounts(), 1, LOC, None);
    let got: Vec<(String, String)> = t
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.data_type.clone()))
        .collect();
    let want = [
        ("id", "string"),
        ("employees", "bigint"),
        ("revenue", "decimal(18,2)"),
        ("score", "double"),
        ("active", "boolean"),
        ("updated_at", "timestamp"),
        ("founded", "date"),
        ("address", "struct<city:string,zip:bigint>"),
        ("tags", "array<string>"),
        ("country", "string"),
    ];
    assert_eq!(
        got,
        want.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(glue_type(&DataType::Int32), "int");
    assert_eq!(glue_type(&DataType::Null), "string");
    assert!(t.partition_keys.is_empty());
    assert_eq!(t.name, "crm_accounts");
    assert_eq!(t.parameters["classification"], "parquet");
    assert_eq!(t.parameters["parquet.compression"], "ZSTD");
    assert_eq!(t.parameters[SCHEMA_VERSION], "1");
    assert_eq!(t.parameters[FLOW], "crm-accounts");
    assert_eq!(
        t.storage.serde_library,
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    );
    assert_eq!(t.storage.location, LOC);
    assert!(!projected(&t));
}

fn cfg(f: &Flow) -> CatalogConfig {
    f.destination.catalog.clone().unwrap()
}

#[test]
fn csv_and_json_storage_descriptors() {
    let f = flow("  format: csv\n  compression: gzip\n  csv: { delimiter: ';' }\n  layout: { partition_by: [country] }");
    let t = table_for(&f, &cfg(&f), &accounts(), 3, LOC, None);
    assert_eq!(
        t.storage.serde_library,
        "org.apache.hadoop.hive.serde2.OpenCSVSerde"
    );
    assert_eq!(t.storage.serde_parameters["separatorChar"], ";");
    assert_eq!(
        t.storage.input_format,
        "org.apache.hadoop.mapred.TextInputFormat"
    );
    assert!(t.storage.compressed);
    assert_eq!(t.parameters["skip.header.line.count"], "1");
    assert_eq!(t.parameters["compressionType"], "gzip");
    assert_eq!(t.parameters["classification"], "csv");
    // CSV keeps the partition column in the file (by position); the key is renamed.
    assert!(t.columns.iter().any(|c| c.name == "country"));
    assert_eq!(t.partition_keys[0].name, "country_partition");

    let f = flow("  format: jsonl\n  layout: { partition_by: [country, employees] }");
    let t = table_for(&f, &cfg(&f), &accounts(), 1, LOC, None);
    assert_eq!(
        t.storage.serde_library,
        "org.openx.data.jsonserde.JsonSerDe"
    );
    assert_eq!(t.parameters["classification"], "json");
    assert_eq!(t.parameters["compressionType"], "none");
    assert!(!t.parameters.contains_key("skip.header.line.count"));
    // By-name formats: the partition column is the key, not a data column.
    assert!(!t.columns.iter().any(|c| c.name == "country"));
    assert_eq!(
        t.partition_keys,
        vec![
            CatalogColumn {
                name: "country".into(),
                data_type: "string".into()
            },
            CatalogColumn {
                name: "employees".into(),
                data_type: "bigint".into()
            },
        ]
    );
    assert!(!projected(&t), "values of a field cannot be projected");
}

#[test]
fn projection_from_the_layout() {
    let f = flow("  layout: { date: day, hierarchy: [schema_version, execution_id] }");
    let t = table_for(&f, &cfg(&f), &accounts(), 2, LOC, Some("2026/01/01"));
    assert!(projected(&t));
    let keys: Vec<&str> = t.partition_keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(keys, ["schema_version", "dt"]);
    assert_eq!(t.parameters["projection.dt.format"], "yyyy/MM/dd");
    assert_eq!(t.parameters["projection.dt.range"], "2026/01/01,NOW");
    assert_eq!(t.parameters["projection.dt.interval.unit"], "DAYS");
    assert_eq!(t.parameters["projection.schema_version.range"], "1,2");
    assert_eq!(
        t.parameters["storage.location.template"],
        "s3://lake/raw/crm-accounts/schemaVersion_${schema_version}/${dt}/"
    );
    // Turned off: partitions are added instead.
    let f2 = Flow::parse(
        "name: x1\nsource: { connector: sample, entity: accounts }\ndestination:\n  local: out\n  layout: { date: hour }\n  catalog: { database: crm, partition_projection: false }",
        "t.yaml",
    )
    .unwrap();
    let t = table_for(&f2, &cfg(&f2), &accounts(), 1, LOC, None);
    assert!(!projected(&t));
    assert_eq!(t.partition_keys[0].name, "dt");
    // Dates in file names: no date partition, nothing to project.
    let f = flow("  layout: { date: day, prefix_type: filename }");
    let t = table_for(&f, &cfg(&f), &accounts(), 1, LOC, None);
    assert!(t.partition_keys.is_empty() && !projected(&t));
}

#[test]
fn partition_values_from_keys() {
    let f = flow("  layout: { date: day, hierarchy: [schema_version, execution_id], partition_by: [country, tier] }");
    let s = PartitionScheme::of(&f.destination);
    let (values, folder) = s
        .parse("schemaVersion_2/2026/03/04/country=US/tier=a%2Fb/run-1/part-00000-000.parquet")
        .unwrap();
    assert_eq!(values, ["2", "2026/03/04", "US", "a/b"]);
    assert_eq!(folder, "schemaVersion_2/2026/03/04/country=US/tier=a%2Fb/");
    let (values, _) = s
        .parse("schemaVersion_2/2026/03/04/country=null/tier=__empty__/run-1/p.parquet")
        .unwrap();
    assert_eq!(values, ["2", "2026/03/04", NULL_PARTITION, ""]);
    assert!(s.parse("_manifests/run-1.json").is_none());
    assert!(s
        .parse("schemaVersion_2/2026/03/x/country=US/tier=a/r/p")
        .is_none());
    assert_eq!(unescape("%25%3D%C3%A9x"), "%=éx");
    // Round trip with the layout's own escaping.
    for v in ["a/b", "..", "x=y%z", "ü", ""] {
        assert_eq!(unescape(&crate::output::layout::escape(v)), v);
    }
}

#[test]
fn evolution_appends_widens_and_refuses() {
    let f = flow("");
    let c = cfg(&f);
    let v1 = schema(vec![
        ("id", DataType::Utf8),
        ("n", DataType::Int32),
        ("x", DataType::Float32),
        (
            "s",
            DataType::Struct(Fields::from(vec![Field::new("a", DataType::Utf8, true)])),
        ),
        ("k", DataType::Int64),
    ]);
    let v2 = schema(vec![
        ("id", DataType::Utf8),
        ("n", DataType::Int64),
        ("x", DataType::Float64),
        (
            "s",
            DataType::Struct(Fields::from(vec![
                Field::new("a", DataType::Utf8, true),
                Field::new("b", DataType::Boolean, true),
            ])),
        ),
        ("k", DataType::Utf8),
        ("new_col", DataType::Boolean),
    ]);
    let old = table_for(&f, &c, &v1, 1, LOC, None);
    let new = table_for(&f, &c, &v2, 2, LOC, None);
    let (t, warnings) = evolve(&old, &new, Format::Parquet);
    let types: Vec<(&str, &str)> = t
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.data_type.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("id", "string"),
            ("n", "bigint"),
            ("x", "double"),
            ("s", "struct<a:string,b:boolean>"),
            ("k", "bigint"),
            ("new_col", "boolean"),
        ]
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("'k'") && warnings[0].contains("bigint to string"),
        "{warnings:?}"
    );
    assert_eq!(t.parameters[SCHEMA_VERSION], "2");
    // Text formats read anything as text.
    assert_eq!(
        widen(&DataType::Int64, &DataType::Utf8, Format::Jsonl),
        Some(DataType::Utf8)
    );
    assert_eq!(
        widen(&DataType::Int64, &DataType::Float64, Format::Parquet),
        None
    );
    // Idempotent: evolving to the same table changes nothing.
    let (again, w) = evolve(&t, &new, Format::Parquet);
    assert_eq!(again.columns, t.columns);
    assert_eq!(w.len(), 1);
}

#[test]
fn csv_columns_only_append_at_the_end() {
    let f = flow("  format: csv");
    let c = cfg(&f);
    let v1 = schema(vec![("id", DataType::Utf8), ("n", DataType::Int64)]);
    let appended = schema(vec![
        ("id", DataType::Utf8),
        ("n", DataType::Int64),
        ("z", DataType::Utf8),
    ]);
    let inserted = schema(vec![
        ("id", DataType::Utf8),
        ("z", DataType::Utf8),
        ("n", DataType::Int64),
    ]);
    let old = table_for(&f, &c, &v1, 1, LOC, None);
    let (t, w) = evolve(
        &old,
        &table_for(&f, &c, &appended, 2, LOC, None),
        Format::Csv,
    );
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(t.columns.len(), 3);
    let (t, w) = evolve(
        &old,
        &table_for(&f, &c, &inserted, 2, LOC, None),
        Format::Csv,
    );
    assert_eq!(t, old);
    assert!(w[0].contains("by position"), "{w:?}");
}

#[test]
fn a_layout_change_leaves_the_table() {
    let a = flow("");
    let b = flow("  layout: { date: day }");
    let old = table_for(&a, &cfg(&a), &accounts(), 1, LOC, None);
    let new = table_for(&b, &cfg(&b), &accounts(), 1, LOC, None);
    let (t, w) = evolve(&old, &new, Format::Parquet);
    assert_eq!(t, old);
    assert!(w[0].contains("layout or format changed"), "{w:?}");
}
