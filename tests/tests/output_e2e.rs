//! Output through the whole run on the embedded engine: file sizing across chunks, single-file
//! runs, schema versions between runs, rejected records, retried writes, the manifest.

use ferry::flow::Flow;
use ferry::local::{asl::NoopObserver, embedded_deps, Engine};
use ferry::model::{Manifest, PullMode, RunRecord};
use ferry::steps::start_run::RunRequest;
use ferry::steps::Deps;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

struct Env {
    _home: tempfile::TempDir,
    base: tempfile::TempDir,
    deps: Deps,
}

fn env() -> Env {
    let home = tempfile::tempdir().unwrap();
    let base = tempfile::tempdir().unwrap();
    let deps = embedded_deps(home.path(), base.path(), None).unwrap();
    Env {
        _home: home,
        base,
        deps,
    }
}

fn flow(yaml: &str) -> Flow {
    Flow::parse(yaml, "test").unwrap_or_else(|e| panic!("{e}"))
}

async fn run(env: &Env, f: &Flow) -> (RunRecord, Manifest) {
    run_observed(env, f, &NoopObserver).await
}

async fn run_observed(
    env: &Env,
    f: &Flow,
    observer: &dyn ferry::local::asl::Observer,
) -> (RunRecord, Manifest) {
    env.deps
        .flows
        .put_flow(f, chrono::Utc::now())
        .await
        .unwrap();
    let engine = Engine::new(env.deps.clone()).unwrap();
    let out = engine
        .run(
            RunRequest {
                flow: f.name.clone(),
                mode: Some(PullMode::Complete),
                ..Default::default()
            },
            observer,
        )
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let rec = out.record.unwrap();
    let manifest = read_manifest(&rec);
    (rec, manifest)
}

fn read_manifest(rec: &RunRecord) -> Manifest {
    let path = rec.manifest_key.as_ref().expect("a manifest");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every file under `dir` (relative paths), with its size.
fn files(dir: &Path) -> BTreeMap<String, u64> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, u64>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_string_lossy().into(),
                    std::fs::metadata(&p).unwrap().len(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

fn out_dir(env: &Env) -> PathBuf {
    env.base.path().join("out")
}

/// Files of ±20% of the target, except the last, and nothing the manifest does not list.
fn check_sizing(env: &Env, m: &Manifest, target: u64, records: u64) {
    assert_eq!(m.objects.iter().map(|o| o.rows).sum::<u64>(), records);
    assert_eq!(m.records_written, records);
    let on_disk = files(&out_dir(env));
    let listed: Vec<&String> = m.objects.iter().map(|o| &o.key).collect();
    for k in on_disk.keys().filter(|k| !k.contains("_manifests")) {
        assert!(
            listed.contains(&k),
            "{k} is on disk but not in the manifest"
        );
    }
    let mut objs = m.objects.clone();
    objs.sort_by(|a, b| a.key.cmp(&b.key));
    assert!(objs.len() >= 3, "{} files", objs.len());
    let last = objs.pop().unwrap();
    for o in &objs {
        let dev = (o.bytes as f64 - target as f64).abs() / target as f64;
        assert!(
            dev <= 0.2,
            "{} is {} bytes, target {target}",
            o.key,
            o.bytes
        );
        assert_eq!(on_disk[&o.key], o.bytes);
    }
    assert!(last.bytes <= target + target / 5, "{}", last.bytes);
}

const SIZED: &str = r#"
name: sized
source:
  connector: sample
  entity: accounts
  properties: { records: RECORDS }
  chunk: { records: CHUNK, page_size: 1000 }
destination:
  local: out
  format: FORMAT
  file_size_mb: MB
  layout: { prefix_type: path, hierarchy: [execution_id] }
"#;

fn sized(records: u64, chunk: u64, format: &str, mb: u64) -> Flow {
    flow(
        &SIZED
            .replace("RECORDS", &records.to_string())
            .replace("CHUNK", &chunk.to_string())
            .replace("FORMAT", format)
            .replace("MB", &mb.to_string()),
    )
}

/// Many chunks, a handful of files near the target size (rows carried across chunks).
#[tokio::test(flavor = "multi_thread")]
async fn files_roll_over_at_the_target_size_across_chunks() {
    let env = env();
    let (rec, m) = run(&env, &sized(60_000, 4_000, "jsonl", 4)).await;
    assert!(rec.chunks >= 10, "{} chunks", rec.chunks);
    check_sizing(&env, &m, 4 << 20, 60_000);
    assert!(
        (m.objects.len() as u32) < rec.chunks,
        "{} files for {} chunks",
        m.objects.len(),
        rec.chunks
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn parquet_files_roll_over_at_the_target_size() {
    let env = env();
    let (_, m) = run(&env, &sized(120_000, 10_000, "parquet", 1)).await;
    check_sizing(&env, &m, 1 << 20, 120_000);
}

/// Rows encoded ahead (small row groups, so every chunk encodes some) still make files of the
/// target size, every row once.
#[tokio::test(flavor = "multi_thread")]
async fn parquet_files_spliced_from_parts_roll_over_at_the_target_size() {
    let env = env();
    let mut f = sized(120_000, 10_000, "parquet", 1);
    f.destination.parquet.row_group_size = 4_000;
    let seen = PartsSeen {
        staging: env._home.path().join("staging"),
        most: Default::default(),
    };
    let (_, m) = run_observed(&env, &f, &seen).await;
    assert!(seen.most.into_inner() > 0, "no rows were encoded ahead");
    check_sizing(&env, &m, 1 << 20, 120_000);
    let mut ids = std::collections::BTreeSet::new();
    for o in &m.objects {
        let body = bytes::Bytes::from(std::fs::read(&o.uri).unwrap());
        for b in
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(body, 8192).unwrap()
        {
            let b = b.unwrap();
            let col = arrow::compute::cast(
                b.column_by_name("id").unwrap(),
                &arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            let col = col
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            for v in col.iter().flatten() {
                assert!(ids.insert(v.to_string()), "{v} written twice");
            }
        }
    }
    assert_eq!(ids.len(), 120_000);
}

/// The acceptance figure: 1,000,000 records, 64 MB files. Heavy; run by
/// `scripts/bench.sh sizing` (release build) or `cargo test --release -- --ignored`.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn one_million_records_in_64_mb_files() {
    let env = env();
    let t = std::time::Instant::now();
    let (rec, m) = run(&env, &sized(1_000_000, 100_000, "jsonl", 64)).await;
    check_sizing(&env, &m, 64 << 20, 1_000_000);
    println!(
        "1M records, {} chunks -> {} files: {:?} in {:.1}s",
        rec.chunks,
        m.objects.len(),
        m.objects.iter().map(|o| o.bytes).collect::<Vec<_>>(),
        t.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn single_file_writes_one_object_per_partition() {
    let env = env();
    let f = flow(
        r#"
name: single
source:
  connector: sample
  entity: accounts
  properties: { records: 20000 }
  chunk: { records: 3000, page_size: 1000 }
destination:
  local: out
  format: csv
  single_file: true
  layout: { partition_by: [country] }
"#,
    );
    let (rec, m) = run(&env, &f).await;
    assert!(rec.chunks > 1);
    let mut per_partition: BTreeMap<String, usize> = BTreeMap::new();
    for o in &m.objects {
        let part = o
            .key
            .split('/')
            .find(|s| s.starts_with("country="))
            .unwrap();
        *per_partition.entry(part.to_string()).or_default() += 1;
    }
    // Ten countries plus the records without one.
    assert_eq!(per_partition.len(), 11, "{per_partition:?}");
    assert!(per_partition.contains_key("country=null"));
    assert!(per_partition.values().all(|n| *n == 1), "{per_partition:?}");
    assert_eq!(m.records_written, 20_000);
    // Each CSV has one header and its rows.
    let total: usize = m
        .objects
        .iter()
        .map(|o| std::fs::read_to_string(&o.uri).unwrap().lines().count() - 1)
        .sum();
    assert_eq!(total, 20_000);
}

/// `aggregation: none`: every chunk writes its own files.
#[tokio::test(flavor = "multi_thread")]
async fn aggregation_none_writes_per_chunk() {
    let env = env();
    let mut f = sized(10_000, 2_500, "parquet", 128);
    f.destination.aggregation = Some(ferry::flow::Aggregation::None);
    let (rec, m) = run(&env, &f).await;
    // Chunks of 3 pages of 1,000 (the budget is checked after each page): 3000, 3000, 3000, 1000.
    assert_eq!(rec.chunks, 4);
    assert_eq!(m.objects.len(), 4);
    let mut rows: Vec<u64> = m.objects.iter().map(|o| o.rows).collect();
    rows.sort();
    assert_eq!(rows, vec![1000, 3000, 3000, 3000]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_field_bumps_the_schema_version() {
    let env = env();
    let v1 = r#"
name: drift
source:
  connector: sample
  entity: accounts
  properties: { records: 3000 }
destination:
  local: out
  format: parquet
  layout: { hierarchy: [schema_version, execution_id] }
tasks:
  - map_all: { exclude: [internal_notes] }
"#;
    let (r1, m1) = run(&env, &flow(v1)).await;
    assert_eq!(r1.schema_version, 1);
    assert!(m1
        .objects
        .iter()
        .all(|o| o.key.starts_with("drift/schemaVersion_1/")));
    let before = files(&out_dir(&env));
    // Same schema: same version.
    let (r1b, _) = run(&env, &flow(v1)).await;
    assert_eq!(r1b.schema_version, 1);
    // Run 2 adds `internal_notes`.
    let v2 = v1.replace(
        "  - map_all: { exclude: [internal_notes] }\n",
        "  - map_all: {}\n",
    );
    let (r2, m2) = run(&env, &flow(&v2)).await;
    assert_eq!(r2.schema_version, 2);
    assert_eq!(m2.schema_version, 2);
    assert!(m2
        .objects
        .iter()
        .all(|o| o.key.starts_with("drift/schemaVersion_2/") && o.schema_version == 2));
    let state = env.deps.runs.get_state("drift").await.unwrap();
    assert_eq!(state.schema_version, 2);
    // Run 1's files are untouched.
    let after = files(&out_dir(&env));
    for (k, size) in &before {
        assert_eq!(after.get(k), Some(size), "{k} changed");
    }
    // The new field is in run 2's Parquet, not in run 1's.
    let cols = |key: &str| {
        let f = std::fs::File::open(out_dir(&env).join(key)).unwrap();
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
        r.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect::<Vec<_>>()
    };
    assert!(!cols(&m1.objects[0].key).contains(&"internal_notes".to_string()));
    assert!(cols(&m2.objects[0].key).contains(&"internal_notes".to_string()));
}

/// Counts the Parquet parts staged by write-s3 ("encoded ahead") each time a write ends.
struct PartsSeen {
    staging: PathBuf,
    most: std::sync::atomic::AtomicUsize,
}

impl ferry::local::asl::Observer for PartsSeen {
    fn state_exited(&self, name: &str, _output: &serde_json::Value) {
        if name == "Write Output" {
            let n = files(&self.staging)
                .keys()
                .filter(|k| k.contains("/parts/") && k.ends_with(".parquet"))
                .count();
            self.most.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Pending rows are encoded as the chunks arrive (staged as parts) and spliced into the file
/// when it is written: each partition's file holds the same rows, in the same order, as the
/// file encoded in one go at the end (`FERRY_ENCODE_AHEAD=0`), with page indexes, and its row
/// groups are between half and all of `row_group_size` rows (but the last). (nextest runs each
/// test in a process of its own, so the variable is this test's.)
#[tokio::test(flavor = "multi_thread")]
async fn rows_encoded_ahead_make_the_same_parquet_data() {
    let f = flow(
        r#"
name: ahead
source:
  connector: sample
  entity: accounts
  properties: { records: 20000 }
  chunk: { records: 3000, page_size: 1000 }
destination:
  local: out
  format: parquet
  single_file: true
  parquet: { row_group_size: 500 }
  layout: { partition_by: [country] }
"#,
    );
    let mut written = vec![];
    for ahead in [true, false] {
        std::env::set_var("FERRY_ENCODE_AHEAD", if ahead { "1" } else { "0" });
        let env = env();
        let seen = PartsSeen {
            staging: env._home.path().join("staging"),
            most: Default::default(),
        };
        let (_, m) = run_observed(&env, &f, &seen).await;
        assert_eq!(m.records_written, 20_000);
        let parts = seen.most.into_inner();
        if ahead {
            assert!(parts > 0, "no rows were encoded ahead");
        } else {
            assert_eq!(parts, 0);
        }
        // Each partition's file by its partition folder.
        let by_partition: BTreeMap<String, Vec<u8>> = m
            .objects
            .iter()
            .map(|o| {
                let part = o
                    .key
                    .split('/')
                    .find(|s| s.starts_with("country="))
                    .unwrap();
                (part.to_string(), std::fs::read(&o.uri).unwrap())
            })
            .collect();
        assert_eq!(by_partition.len(), 11);
        written.push(by_partition);
    }
    std::env::remove_var("FERRY_ENCODE_AHEAD");
    let (ahead, at_once) = (&written[0], &written[1]);
    let read = |body: &Vec<u8>| {
        let body = bytes::Bytes::from(body.clone());
        let meta = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&body)
            .unwrap();
        let batches: Vec<arrow::record_batch::RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(body, 1 << 20)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let rows = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        (meta, rows)
    };
    for (partition, body) in ahead {
        let (spliced, rows) = read(body);
        let (once, once_rows) = read(&at_once[partition]);
        assert_eq!(rows, once_rows, "{partition}: the rows differ");
        let groups = |m: &parquet::file::metadata::ParquetMetaData| -> Vec<i64> {
            m.row_groups().iter().map(|g| g.num_rows()).collect()
        };
        let (last, full) = groups(&once)
            .split_last()
            .map(|(l, f)| (*l, f.to_vec()))
            .unwrap();
        assert!(
            full.iter().all(|n| *n == 500) && last <= 500,
            "{partition}: {:?}",
            groups(&once)
        );
        let (last, rest) = groups(&spliced)
            .split_last()
            .map(|(l, f)| (*l, f.to_vec()))
            .unwrap();
        assert!(
            rest.iter().all(|n| (250..=500).contains(n)) && last > 0 && last <= 500,
            "{partition}: {:?}",
            groups(&spliced)
        );
        // Statistics and page indexes came along with the column chunks.
        for g in spliced.row_groups() {
            for c in g.columns() {
                let col = c.column_path().string();
                assert!(c.statistics().is_some(), "{partition} {col}: no statistics");
                assert!(
                    c.column_index_offset().is_some(),
                    "{partition} {col}: no column index"
                );
                assert!(
                    c.offset_index_offset().is_some(),
                    "{partition} {col}: no offset index"
                );
            }
        }
    }
}

/// What the embedded engine's hand-off holds, and which staged chunks reached the disk, each
/// time a write ends.
struct HandOffSeen {
    staging: PathBuf,
    hand_off: Option<std::sync::Arc<ferry::steps::hand_off::HandOff>>,
    most_held: std::sync::atomic::AtomicUsize,
    chunk_files: std::sync::atomic::AtomicUsize,
}

impl ferry::local::asl::Observer for HandOffSeen {
    fn state_exited(&self, name: &str, _output: &serde_json::Value) {
        if name == "Write Output" {
            if let Some(h) = &self.hand_off {
                let held = h.keys().len();
                self.most_held
                    .fetch_max(held, std::sync::atomic::Ordering::Relaxed);
            }
            let n = files(&self.staging)
                .keys()
                .filter(|k| k.contains("/raw/") && k.ends_with(".arrow"))
                .count();
            self.chunk_files
                .fetch_max(n, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// On the embedded engine a staged chunk goes to the next step in memory: no chunk file is
/// written, the hand-off lets each chunk go once the writes are done with it (it never holds
/// the run), and past its budget it writes chunks to staging as before. All three ways write the
/// same rows, in the same files.
#[tokio::test(flavor = "multi_thread")]
async fn staged_chunks_are_handed_over_in_memory_and_spilled_past_the_budget() {
    use ferry::steps::hand_off::HandOff;
    let f = flow(
        r#"
name: handoff
source:
  connector: sample
  entity: accounts
  properties: { records: 24000 }
  chunk: { records: 2000, page_size: 500 }
destination:
  local: out
  format: parquet
  single_file: true
  parquet: { row_group_size: 1000 }
"#,
    );
    let mut written = vec![];
    for budget in [Some(256 << 20), Some(1), None] {
        let mut env = env();
        env.deps.settings.hand_off = budget.map(|b| std::sync::Arc::new(HandOff::new(b)));
        let seen = HandOffSeen {
            staging: env._home.path().join("staging"),
            hand_off: env.deps.settings.hand_off.clone(),
            most_held: Default::default(),
            chunk_files: Default::default(),
        };
        let (rec, m) = run_observed(&env, &f, &seen).await;
        assert_eq!(m.records_written, 24_000);
        assert!(rec.chunks >= 12, "{} chunks", rec.chunks);
        let (held, chunk_files) = (seen.most_held.into_inner(), seen.chunk_files.into_inner());
        match budget {
            Some(b) if b > 1 => {
                assert_eq!(chunk_files, 0, "chunks were written to staging");
                assert!(held >= 1, "nothing was handed over");
                // The chunk being written and the one fetched ahead (each chunk fills a row
                // group, so nothing older is pending), not the whole run.
                assert!(held <= 3, "{held} chunks held at once");
            }
            Some(_) => {
                assert!(chunk_files > 0, "nothing was spilled");
                assert_eq!(held, 0, "a chunk past the budget stayed in memory");
            }
            None => assert!(chunk_files > 0),
        }
        // The run's cleanup leaves nothing held.
        if let Some(h) = &env.deps.settings.hand_off {
            assert!(h.keys().is_empty(), "left held: {:?}", h.keys());
            assert_eq!(h.bytes(), 0);
        }
        assert_eq!(m.objects.len(), 1);
        let body = bytes::Bytes::from(std::fs::read(&m.objects[0].uri).unwrap());
        let rows = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(body, 1 << 20)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        written.push(rows);
    }
    assert_eq!(written[0], written[1], "spilled chunks wrote other rows");
    assert_eq!(
        written[0], written[2],
        "handed-over chunks wrote other rows"
    );
}
