//! `destination.catalog` against moto's Glue API: finalize registers the database, the table and
//! its partitions after the commit, evolves the table when a run's schema changes, registers
//! nothing for a failed run, survives retries, and repairs a catalog that missed a run. The
//! reader (tests/scripts/catalog_read.py, DuckDB) takes location, format, SerDe settings,
//! columns, partition keys and partitions (or the projection template) *from Glue* and must
//! read exactly the committed rows, with the catalog's types.

use chrono::{DateTime, Duration, Utc};
use ferry::flow::Flow;
use ferry::local::asl::Observer;
use ferry::local::Engine;
use ferry::model::{Manifest, RunRecord, RunStatus, TriggerType};
use ferry::ports::{CatalogTable, Clock, ManualClock};
use ferry::steps::start_run::RunRequest;
use ferry_tests::aws::{unique, AwsEnv};
use ferry_tests::faults::FailingDestination;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

struct Quiet;
impl Observer for Quiet {}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

const T0: &str = "2026-01-01T00:00:00Z";

/// A sample-accounts flow into `bucket` with `dest` (YAML lines under `destination:`), leaving
/// out `exclude` fields.
fn flow(name: &str, bucket: &str, dest: &str, exclude: &[&str]) -> Flow {
    let yaml = format!(
        r#"
name: {name}
source:
  connector: sample
  entity: accounts
  properties: {{ records: 300 }}
  incremental:
    field: updated_at
    lookback: 10m
    first_execution_from: 2025-01-01T00:00:00Z
  chunk: {{ records: 200, page_size: 100 }}
destination:
  s3: {{ bucket: {bucket}, prefix: raw/crm }}
{dest}
tasks:
  - map_all: {{ exclude: [{}] }}
"#,
        exclude.join(", ")
    );
    Flow::parse(&yaml, "test.yaml").unwrap()
}

fn request(name: &str) -> RunRequest {
    RunRequest {
        flow: name.into(),
        trigger: Some(TriggerType::OnDemand),
        mode: None,
        window: None,
    }
}

struct Setup {
    env: AwsEnv,
    deps: ferry::steps::Deps,
    clock: ManualClock,
    engine: Engine,
    name: String,
    db: String,
}

async fn setup(dest: &str, exclude: &[&str]) -> Setup {
    let env = AwsEnv::new().await;
    let clock = ManualClock::new(t(T0));
    let mut deps = env.deps();
    deps.clock = Arc::new(clock.clone());
    let name = unique("crm");
    let db = unique("lake").replace('-', "_");
    let dest = dest.replace("$DB", &db);
    deps.flows
        .put_flow(
            &flow(&name, &env.output_bucket, &dest, exclude),
            clock.now(),
        )
        .await
        .unwrap();
    let engine = Engine::new(deps.clone()).unwrap();
    Setup {
        env,
        deps,
        clock,
        engine,
        name,
        db,
    }
}

impl Setup {
    async fn run(&self) -> RunRecord {
        let out = self.engine.run(request(&self.name), &Quiet).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        out.record.unwrap()
    }

    fn table_name(&self) -> String {
        ferry::flow::catalog::default_table(&self.name)
    }

    async fn table(&self) -> CatalogTable {
        self.deps
            .catalog
            .get_table(&self.db, &self.table_name())
            .await
            .unwrap()
            .expect("the table exists")
    }

    async fn partitions(&self) -> Vec<ferry::ports::CatalogPartition> {
        self.deps
            .catalog
            .list_partitions(&self.db, &self.table_name())
            .await
            .unwrap()
    }

    async fn put_flow(&self, dest: &str, exclude: &[&str]) {
        let dest = dest.replace("$DB", &self.db);
        self.deps
            .flows
            .put_flow(
                &flow(&self.name, &self.env.output_bucket, &dest, exclude),
                self.clock.now(),
            )
            .await
            .unwrap();
    }

    /// Every object of the output bucket, mirrored under `dir` by key.
    async fn mirror(&self, dir: &Path) {
        let s3 = &self.env.clients.s3;
        let mut token = None;
        loop {
            let page = s3
                .list_objects_v2()
                .bucket(&self.env.output_bucket)
                .set_continuation_token(token)
                .send()
                .await
                .unwrap();
            for o in page.contents() {
                let key = o.key().unwrap();
                let body = s3
                    .get_object()
                    .bucket(&self.env.output_bucket)
                    .key(key)
                    .send()
                    .await
                    .unwrap()
                    .body
                    .collect()
                    .await
                    .unwrap()
                    .into_bytes();
                let p = dir.join(key);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, body).unwrap();
            }
            match page.next_continuation_token() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
    }

    /// Read the table the way a generic reader does: everything from Glue.
    async fn read_through_catalog(&self) -> Value {
        let dir = tempfile::tempdir().unwrap();
        self.mirror(dir.path()).await;
        let spec = json!({
            "root": dir.path(),
            "table": self.table().await,
            "partitions": self.partitions().await,
        });
        let spec_path = dir.path().join("_spec.json");
        std::fs::write(&spec_path, spec.to_string()).unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/catalog_read.py");
        let out = std::process::Command::new(ferry_tests::stack::check::python())
            .arg(script)
            .arg(&spec_path)
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "the catalog reader failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The committed runs' manifests.
    async fn manifests(&self) -> Vec<Manifest> {
        let store = self
            .deps
            .destinations
            .resolve(&ferry::flow::Location::S3(ferry::flow::S3Location {
                bucket: self.env.output_bucket.clone(),
                prefix: "raw/crm".into(),
                kms_key_id: None,
                bucket_owner_full_control: false,
            }))
            .await
            .unwrap();
        let f = self
            .deps
            .flows
            .get_flow(&self.name, None)
            .await
            .unwrap()
            .unwrap()
            .flow;
        ferry::catalog::manifests(store.as_ref(), &f).await.unwrap()
    }
}

/// `id`s of the rows read, sorted (a record updated again is in two runs: a multiset).
fn ids(read: &Value) -> Vec<String> {
    let mut v: Vec<String> = read["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn types(read: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(read["types"].clone()).unwrap()
}

const PARTITIONED: &str = "  format: parquet
  layout: { prefix_type: path, date: day, hierarchy: [execution_id], partition_by: [country] }
  catalog: { database: $DB, create_database: true }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_add_a_partition_and_a_column_and_glue_reads_exactly_the_committed_rows() {
    let s = setup(PARTITIONED, &["internal_notes"]).await;

    // Run 1: database, table and one partition per (day, country).
    let r1 = s.run().await;
    assert_eq!(r1.status, RunStatus::Successful);
    assert_eq!(r1.records_written, 300);
    assert!(r1.warnings.is_empty(), "{:?}", r1.warnings);
    let t1 = s.table().await;
    assert_eq!(t1.parameters["classification"], "parquet");
    assert_eq!(t1.parameters["ferry.schema_version"], "1");
    assert_eq!(t1.parameters["ferry.flow"], s.name);
    assert_eq!(
        t1.storage.location,
        format!("s3://{}/raw/crm/{}/", s.env.output_bucket, s.name)
    );
    let keys: Vec<(&str, &str)> = t1
        .partition_keys
        .iter()
        .map(|k| (k.name.as_str(), k.data_type.as_str()))
        .collect();
    assert_eq!(keys, [("dt", "string"), ("country", "string")]);
    assert!(!t1
        .columns
        .iter()
        .any(|c| c.name == "internal_notes" || c.name == "country"));
    let col = |t: &CatalogTable, n: &str| {
        t.columns
            .iter()
            .find(|c| c.name == n)
            .map(|c| c.data_type.clone())
    };
    assert_eq!(col(&t1, "annual_revenue").as_deref(), Some("decimal(18,2)"));
    assert_eq!(col(&t1, "updated_at").as_deref(), Some("timestamp"));
    assert_eq!(
        col(&t1, "address").as_deref(),
        Some("struct<street:string,city:string,postal_code:string>")
    );
    let p1 = s.partitions().await;
    // 10 countries and null, on 2026/01/01.
    assert_eq!(p1.len(), 11, "{p1:?}");
    assert!(p1.iter().all(|p| p.values[0] == "2026/01/01"));
    assert!(p1
        .iter()
        .any(|p| p.values[1] == ferry::catalog::NULL_PARTITION
            && p.location.ends_with("/2026/01/01/country=null/")));
    // The raw Glue view agrees (TableType, SerDe).
    let raw = s
        .env
        .clients
        .glue
        .get_table()
        .database_name(&s.db)
        .name(s.table_name())
        .send()
        .await
        .unwrap();
    let raw = raw.table().unwrap();
    assert_eq!(raw.table_type(), Some("EXTERNAL_TABLE"));
    assert_eq!(
        raw.storage_descriptor()
            .and_then(|d| d.serde_info())
            .and_then(|i| i.serialization_library()),
        Some("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe")
    );

    // A failed run (its writes fail) registers nothing.
    s.clock.advance(Duration::days(1));
    let mut failing = s.deps.clone();
    let (dest, fail) = FailingDestination::wrap(failing.destinations.clone(), true, |k| {
        k.ends_with(".parquet")
    });
    failing.destinations = dest;
    let out = Engine::new(failing)
        .unwrap()
        .run(request(&s.name), &Quiet)
        .await;
    assert!(!out.succeeded());
    assert_eq!(out.record.unwrap().status, RunStatus::Error);
    fail.store(false, Ordering::SeqCst);
    assert_eq!(s.table().await, t1);
    assert_eq!(s.partitions().await, p1);

    // Run 2, a day later, with a new column: a new day partition, the column appended.
    s.put_flow(PARTITIONED, &[]).await;
    let r2 = s.run().await;
    assert!(r2.records_written > 0);
    assert!(r2.warnings.is_empty(), "{:?}", r2.warnings);
    assert_eq!(r2.schema_version, 2);
    let t2 = s.table().await;
    assert_eq!(t2.parameters["ferry.schema_version"], "2");
    assert_eq!(t2.columns.last().unwrap().name, "internal_notes");
    assert_eq!(t2.columns[..t1.columns.len()], t1.columns[..]);
    let p2 = s.partitions().await;
    assert!(p2.len() > p1.len());
    assert!(p2.iter().any(|p| p.values[0] == "2026/01/02"));
    for p in &p1 {
        assert!(p2.contains(p), "run 2 kept {p:?}");
    }

    // Retried registration (a retried finalize, a resync): nothing changes, nothing fails.
    let f = s
        .deps
        .flows
        .get_flow(&s.name, None)
        .await
        .unwrap()
        .unwrap()
        .flow;
    let store = s
        .deps
        .destinations
        .resolve(&f.destination.location())
        .await
        .unwrap();
    let w = ferry::catalog::sync(s.deps.catalog.as_ref(), store.as_ref(), &f)
        .await
        .unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(s.table().await, t2);
    assert_eq!(s.partitions().await, p2);

    // The generic reader, from the catalog alone: exactly the committed rows, typed.
    let read = s.read_through_catalog().await;
    let rows = read["rows"].as_array().unwrap();
    assert_eq!(rows.len() as u64, r1.records_written + r2.records_written);
    let manifests = s.manifests().await;
    assert_eq!(manifests.len(), 2);
    let committed: u64 = manifests.iter().map(|m| m.records_written).sum();
    assert_eq!(rows.len() as u64, committed);
    let ty = types(&read);
    for (c, want) in [
        ("id", "VARCHAR"),
        ("employees", "BIGINT"),
        ("annual_revenue", "DECIMAL(18,2)"),
        ("rating", "DOUBLE"),
        ("is_active", "BOOLEAN"),
        ("updated_at", "TIMESTAMP"),
        ("internal_notes", "VARCHAR"),
        ("dt", "VARCHAR"),
        ("country", "VARCHAR"),
    ] {
        assert_eq!(ty.get(c).map(String::as_str), Some(want), "{c}: {ty:?}");
    }
    assert!(ty["address"].starts_with("STRUCT("), "{ty:?}");
    // Old files have no internal_notes: null; the new run's rows carry the source's values.
    let old: Vec<&Value> = rows.iter().filter(|r| r["dt"] == "2026/01/01").collect();
    let new: Vec<&Value> = rows.iter().filter(|r| r["dt"] == "2026/01/02").collect();
    assert_eq!(old.len() as u64, r1.records_written);
    assert_eq!(new.len() as u64, r2.records_written);
    assert!(old.iter().all(|r| r["internal_notes"].is_null()));
    // Partition values come back as the rows' own (null country included).
    assert!(rows.iter().any(|r| r["country"].is_null()));
    assert!(rows.iter().any(|r| r["country"] == "US"));
    // Every id the sample source has, read once from run 1 (and again if run 2 re-read it).
    let got = ids(&read);
    let mut want: Vec<String> = (1..=300).map(|i| format!("ACC-{i:08}")).collect();
    want.extend(new.iter().map(|r| r["id"].as_str().unwrap().to_string()));
    want.sort();
    assert_eq!(got, want);
}

const PROJECTED: &str = "  format: parquet
  layout: { prefix_type: path, date: day, hierarchy: [schema_version, execution_id] }
  catalog: { database: $DB, create_database: true }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projected_partitions_are_read_through_the_template() {
    let s = setup(PROJECTED, &["internal_notes"]).await;
    let r1 = s.run().await;
    let t1 = s.table().await;
    assert_eq!(t1.parameters["projection.enabled"], "true");
    assert_eq!(t1.parameters["projection.dt.range"], "2026/01/01,NOW");
    assert_eq!(t1.parameters["projection.schema_version.range"], "1,1");
    assert_eq!(
        t1.parameters["storage.location.template"],
        format!(
            "s3://{}/raw/crm/{}/schemaVersion_${{schema_version}}/${{dt}}/",
            s.env.output_bucket, s.name
        )
    );
    // Projection: no partition calls at all.
    assert!(s.partitions().await.is_empty());

    s.clock.advance(Duration::days(1));
    s.put_flow(PROJECTED, &[]).await;
    let r2 = s.run().await;
    let t2 = s.table().await;
    assert_eq!(t2.parameters["projection.schema_version.range"], "1,2");
    assert_eq!(t2.parameters["projection.dt.range"], "2026/01/01,NOW");
    assert!(s.partitions().await.is_empty());

    let read = s.read_through_catalog().await;
    let rows = read["rows"].as_array().unwrap();
    assert_eq!(rows.len() as u64, r1.records_written + r2.records_written);
    assert_eq!(read["partitions_read"], 2, "{read}");
    let ty = types(&read);
    assert_eq!(ty["schema_version"], "INTEGER");
    assert_eq!(ty["dt"], "VARCHAR");
    assert_eq!(ty["annual_revenue"], "DECIMAL(18,2)");
    for r in rows {
        match r["schema_version"].as_i64() {
            Some(1) => {
                assert_eq!(r["dt"], "2026/01/01");
                assert!(r["internal_notes"].is_null());
            }
            Some(2) => assert_eq!(r["dt"], "2026/01/02"),
            other => panic!("schema_version {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_with_and_without_partition_by_reads_back_from_the_catalog() {
    for (format, extra, compression) in [
        ("parquet", "", "zstd"),
        ("csv", "", "none"),
        ("jsonl", "", "none"),
        ("parquet", ", partition_by: [country]", "snappy"),
        ("csv", ", partition_by: [country]", "gzip"),
        ("jsonl", ", partition_by: [country]", "gzip"),
    ] {
        let dest = format!(
            "  format: {format}
  compression: {compression}
  layout: {{ prefix_type: path, date: none, hierarchy: [execution_id]{extra} }}
  catalog: {{ database: $DB, create_database: true }}"
        );
        let s = setup(&dest, &[]).await;
        let r = s.run().await;
        assert!(r.warnings.is_empty(), "{format}: {:?}", r.warnings);
        let t = s.table().await;
        let read = s.read_through_catalog().await;
        let rows = read["rows"].as_array().unwrap();
        assert_eq!(rows.len() as u64, r.records_written, "{format} {extra}");
        let want: Vec<String> = (1..=300).map(|i| format!("ACC-{i:08}")).collect();
        assert_eq!(ids(&read), want, "{format} {extra}");
        let ty = types(&read);
        assert_eq!(ty["employees"], "BIGINT", "{format}: {ty:?}");
        assert_eq!(ty["annual_revenue"], "DECIMAL(18,2)", "{format}: {ty:?}");
        assert_eq!(ty["is_active"], "BOOLEAN", "{format}: {ty:?}");
        assert_eq!(ty["updated_at"], "TIMESTAMP", "{format}: {ty:?}");
        // CSV cannot nest: the address is JSON text there.
        if format == "csv" {
            assert_eq!(ty["address"], "VARCHAR");
            assert_eq!(t.parameters["skip.header.line.count"], "1");
        } else {
            assert!(ty["address"].starts_with("STRUCT("), "{ty:?}");
        }
        if extra.is_empty() {
            assert!(t.partition_keys.is_empty());
        } else {
            let key = if format == "csv" {
                "country_partition"
            } else {
                "country"
            };
            assert_eq!(t.partition_keys[0].name, key);
            // The partition value is the row's own.
            for row in rows {
                if format == "csv" {
                    assert_eq!(row["country"], row["country_partition"], "{row}");
                }
            }
            assert!(s.partitions().await.len() >= 10);
        }
        // Same values as the source: spot-check one record against the sample connector.
        let acc1 = rows.iter().find(|r| r["id"] == "ACC-00000001").unwrap();
        assert!(acc1["employees"].is_i64(), "{acc1}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_failure_keeps_the_run_and_the_next_run_repairs_the_table() {
    // The database does not exist and ferry may not create it: the catalog update fails.
    let dest = "  format: parquet
  layout: { prefix_type: path, date: day, hierarchy: [execution_id] }
  catalog: { database: $DB, partition_projection: false }";
    let s = setup(dest, &[]).await;
    let r1 = s.run().await;
    assert_eq!(r1.status, RunStatus::Successful);
    assert_eq!(r1.records_written, 300);
    assert!(
        r1.warnings.iter().any(|w| w.contains("was not updated")
            && w.contains("does not exist")
            && w.contains("create_database")),
        "{:?}",
        r1.warnings
    );
    // The stored run record says so too, and the data is committed.
    let stored = s.deps.runs.get_run(&r1.run_id).await.unwrap().unwrap();
    assert_eq!(stored.warnings, r1.warnings);
    assert_eq!(s.manifests().await.len(), 1);

    // The database appears; the next run (a day later) repairs: both days' partitions.
    s.env
        .clients
        .glue
        .create_database()
        .database_input(
            aws_sdk_glue::types::DatabaseInput::builder()
                .name(&s.db)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    s.clock.advance(Duration::days(1));
    let r2 = s.run().await;
    assert!(r2.warnings.is_empty(), "{:?}", r2.warnings);
    let days: Vec<String> = s
        .partitions()
        .await
        .into_iter()
        .map(|p| p.values[0].clone())
        .collect();
    assert_eq!(days, ["2026/01/01", "2026/01/02"]);
    let read = s.read_through_catalog().await;
    assert_eq!(
        read["rows"].as_array().unwrap().len() as u64,
        r1.records_written + r2.records_written
    );

    // A retried finalize of a committed run (a crash between the commit and the catalog
    // update) registers the run again: the table comes back.
    s.env
        .clients
        .glue
        .delete_table()
        .database_name(&s.db)
        .name(s.table_name())
        .send()
        .await
        .unwrap();
    let again = ferry::steps::finalize::handle(
        &s.deps,
        ferry::steps::finalize::FinalizeInput {
            run: ferry::steps::RunContext::from_record(&r2),
            error: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(again.status, RunStatus::Successful);
    assert_eq!(s.table().await.parameters["ferry.flow"], s.name);
    assert!(s
        .partitions()
        .await
        .iter()
        .any(|p| p.values[0] == "2026/01/02"));
}
