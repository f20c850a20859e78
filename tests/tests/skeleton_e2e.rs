//! The walking skeleton, end to end: the embedded engine runs statemachines/flow-run.asl.json
//! over the embedded adapters (SQLite, local directories), as `ferry run` does.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ferry::flow::Flow;
use ferry::local::{asl::NoopObserver, embedded_deps, Engine, RunOutcome};
use ferry::model::{Manifest, PullMode, RunStatus};
use ferry::ports::{Clock, ManualClock};
use ferry::steps::start_run::RunRequest;
use ferry::steps::Deps;
use ferry_tests::faults::FailingDestination;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const QUICKSTART: &str = include_str!("../../examples/flows/sample-crm.yaml");

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    deps: Deps,
    clock: ManualClock,
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut deps = embedded_deps(&root.join(".ferry"), &root, None).unwrap();
    let clock = ManualClock::new(t0());
    deps.clock = Arc::new(clock.clone());
    Env {
        _dir: dir,
        root,
        deps,
        clock,
    }
}

fn flow(text: &str) -> Flow {
    Flow::parse(text, "test.yaml").unwrap()
}

/// The quickstart flow with a smaller data set and chunks, so several chunks run.
fn small_quickstart() -> Flow {
    flow(
        &QUICKSTART
            .replace("records: 50000", "records: 5000")
            .replace("chunk: { records: 20000 }", "chunk: { records: 1500 }"),
    )
}

async fn run(env: &Env, f: &Flow, mode: Option<PullMode>) -> RunOutcome {
    env.deps.flows.put_flow(f, env.clock.now()).await.unwrap();
    let engine = Engine::new(env.deps.clone()).unwrap();
    engine
        .run(
            RunRequest {
                flow: f.name.clone(),
                trigger: None,
                mode,
                window: None,
            },
            &NoopObserver,
        )
        .await
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_TEST_PYTHON") {
        return p.into();
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(p.exists(), "no Python with pyarrow: run scripts/setup-venv.sh (or scripts/test.sh), or set FERRY_TEST_PYTHON");
    p
}

/// Read every Parquet file under `dir` with pyarrow: (rows, {column: type}).
fn pyarrow_read(files: &[PathBuf]) -> serde_json::Value {
    let script = r#"
import json, sys, pyarrow.parquet as pq, pyarrow as pa
tables = [pq.read_table(f) for f in sys.argv[1:]]
t = pa.concat_tables(tables)
print(json.dumps({"rows": t.num_rows, "types": {f.name: str(f.type) for f in t.schema},
                  "ids": sorted(t.column("id").to_pylist())}))
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn manifests(root: &Path, flow: &str) -> Vec<Manifest> {
    let dir = root.join("ferry-out").join(flow).join("_manifests");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return vec![];
    };
    let mut v: Vec<Manifest> = rd
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    v.sort_by_key(|m| m.committed_at);
    v
}

fn parquet_files(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![root.join("ferry-out")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn quickstart_writes_typed_parquet_that_pyarrow_reads() {
    let env = env();
    let f = small_quickstart();
    let out = run(&env, &f, None).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let rec = out.record.unwrap();
    assert_eq!(rec.status, RunStatus::Successful);
    // The `status != deleted` filter is pushed down to the sample source: deleted accounts are
    // never read, so what is processed is what is written.
    assert!(
        rec.records_processed > 4000 && rec.records_processed < 5000,
        "{}",
        rec.records_processed
    );
    assert!(
        rec.chunks >= 3,
        "pages of 1000 in chunks of at least 1500: {}",
        rec.chunks
    );
    assert_eq!(
        rec.records_written + rec.records_filtered,
        rec.records_processed
    );

    let m = manifests(&env.root, &f.name);
    assert_eq!(m.len(), 1);
    let files: Vec<PathBuf> = m[0].objects.iter().map(|o| PathBuf::from(&o.uri)).collect();
    assert_eq!(files.len() as u64, rec.files_written);
    assert_eq!(
        parquet_files(&env.root),
        {
            let mut f = files.clone();
            f.sort();
            f
        },
        "no unlisted files"
    );

    let read = pyarrow_read(&files);
    assert_eq!(read["rows"].as_u64().unwrap(), rec.records_written);
    let types = &read["types"];
    assert_eq!(types["employees"], "int64");
    assert_eq!(types["annual_revenue"], "decimal128(18, 2)");
    assert_eq!(types["is_active"], "bool");
    assert_eq!(types["rating"], "double");
    assert_eq!(types["updated_at"], "timestamp[us, tz=UTC]");
    assert!(
        types["address"]
            .as_str()
            .unwrap()
            .starts_with("struct<street: string"),
        "{}",
        types["address"]
    );
    assert!(
        types.get("internal_notes").is_none(),
        "map_all excludes internal_notes"
    );
    // Records are unique.
    let ids = read["ids"].as_array().unwrap();
    let mut dedup = ids.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), ids.len());
    // Layout: <flow>/YYYY/MM/DD/<run_id>/part-...
    assert!(
        m[0].objects[0]
            .key
            .starts_with(&format!("{}/2026/06/01/{}/part-", f.name, rec.run_id)),
        "{}",
        m[0].objects[0].key
    );
    // Masked phones keep only the last 4 characters.
    let state = env.deps.runs.get_state(&f.name).await.unwrap();
    assert_eq!(state.watermark, Some(t0()));
    assert!(state.lease.is_none());
}

#[tokio::test]
async fn incremental_second_run_reads_only_the_new_window_and_complete_rereads_all() {
    let env = env();
    let f = small_quickstart();
    let first = run(&env, &f, None).await.record.unwrap();
    assert_eq!(first.status, RunStatus::Successful);

    // An hour later: window (t0 - 10m lookback, t0 + 1h]. Sample records are spaced 90d/5000
    // (~26 min) apart ending at the window end, so exactly those in the window come back.
    env.clock.advance(Duration::hours(1));
    let second = run(&env, &f, None).await.record.unwrap();
    assert_eq!(second.status, RunStatus::Successful);
    assert_eq!(second.window.start, Some(t0() - Duration::minutes(10)));
    assert_eq!(second.window.end, t0() + Duration::hours(1));
    let step = Duration::seconds(90 * 86_400) / 5000;
    let expected = (70 * 60) / step.num_seconds() as u64; // records in a 70-minute window
    assert!(
        second.records_processed <= expected + 1
            && second.records_processed < first.records_processed,
        "70 minutes of records (less deleted ones, filtered at the source): at most {}, got {}",
        expected + 1,
        second.records_processed
    );
    let m = manifests(&env.root, &f.name);
    assert_eq!(m.len(), 2);
    let files: Vec<PathBuf> = m[1].objects.iter().map(|o| PathBuf::from(&o.uri)).collect();
    if !files.is_empty() {
        assert_eq!(
            pyarrow_read(&files)["rows"].as_u64().unwrap(),
            second.records_written
        );
    }
    assert_eq!(second.watermark_after, Some(t0() + Duration::hours(1)));

    // Complete mode rereads everything and leaves the watermark alone.
    env.clock.advance(Duration::hours(1));
    let third = run(&env, &f, Some(PullMode::Complete))
        .await
        .record
        .unwrap();
    // Everything but the deleted accounts the pushed-down filter keeps at the source.
    assert!(
        third.records_processed > 4000,
        "complete rereads everything: {}",
        third.records_processed
    );
    assert_eq!(
        third.records_processed,
        third.records_written + third.records_filtered
    );
    assert_eq!(third.window.start, None);
    assert_eq!(
        env.deps.runs.get_state(&f.name).await.unwrap().watermark,
        Some(t0() + Duration::hours(1))
    );
}

#[tokio::test]
async fn failed_write_leaves_watermark_and_manifests_and_the_next_run_rereads_the_window() {
    let mut env = env();
    let f = flow(
        &QUICKSTART
            .replace("records: 50000", "records: 5000")
            .replace(
                "chunk: { records: 20000 }",
                "chunk: { records: 500, page_size: 250 }",
            )
            // Every chunk writes its own files (no rows carried to finalize), so the failure
            // below hits after earlier chunks' objects were written.
            .replace(
                "  compression: zstd\n",
                "  compression: zstd\n  aggregation: none\n",
            ),
    );
    assert!(f.destination.aggregation.is_some());
    let first = run(&env, &f, None).await.record.unwrap();
    assert_eq!(first.status, RunStatus::Successful);
    // The second chunk's data file fails, after the first chunk's was written.
    let (destinations, failing) =
        FailingDestination::wrap(env.deps.destinations.clone(), true, |k| {
            k.contains("part-00001")
        });
    env.deps.destinations = destinations;
    let files_before = parquet_files(&env.root);

    // 30 days of updates: ~1700 records, several chunks; the second chunk's write fails.
    env.clock.advance(Duration::days(30));
    let failed = run(&env, &f, None).await;
    assert!(!failed.succeeded());
    let rec = failed.record.unwrap();
    assert_eq!(rec.status, RunStatus::Error);
    let err = rec.error.unwrap();
    assert!(err.message.contains("injected write failure"), "{err:?}");
    let state = env.deps.runs.get_state(&f.name).await.unwrap();
    assert_eq!(state.watermark, Some(t0()), "the watermark did not move");
    assert!(state.lease.is_none(), "the lease was released");
    assert_eq!(state.consecutive_failures, 1);
    assert_eq!(
        manifests(&env.root, &f.name).len(),
        1,
        "no manifest for the failed run"
    );
    assert_eq!(
        parquet_files(&env.root),
        files_before,
        "the failed run's partial output was removed"
    );
    assert!(
        env.deps.staging.list("staging/").await.unwrap().is_empty(),
        "staging cleaned"
    );

    failing.store(false, Ordering::SeqCst);
    let retry = run(&env, &f, None).await.record.unwrap();
    assert_eq!(retry.status, RunStatus::Successful);
    assert_eq!(
        retry.window,
        rec.window.clone_with_end(retry.window.end),
        "the same window start is reread"
    );
    assert_eq!(
        env.deps
            .runs
            .get_state(&f.name)
            .await
            .unwrap()
            .consecutive_failures,
        0
    );
    assert_eq!(manifests(&env.root, &f.name).len(), 2);
}

trait WindowExt {
    fn clone_with_end(&self, end: DateTime<Utc>) -> Self;
}
impl WindowExt for ferry::model::Window {
    fn clone_with_end(&self, end: DateTime<Utc>) -> Self {
        ferry::model::Window {
            start: self.start,
            end,
        }
    }
}

#[tokio::test]
async fn a_second_run_is_refused_while_the_lease_is_held_and_a_stale_lease_expires() {
    let env = env();
    let f = small_quickstart();
    env.deps.flows.put_flow(&f, env.clock.now()).await.unwrap();
    // Another run holds the lease for 15 minutes.
    let now = env.clock.now();
    env.deps
        .runs
        .acquire_lease(
            &f.name,
            &ferry::ports::LeaseClaim::new("other-run", now + Duration::minutes(15)),
            now,
        )
        .await
        .unwrap();
    let refused = run(&env, &f, None).await;
    let failure = refused.failure.expect("refused");
    assert!(
        refused.record.is_none(),
        "a refused run writes no run record"
    );
    assert!(
        failure.cause.contains("already running") && failure.cause.contains("other-run"),
        "{failure:?}"
    );
    assert!(parquet_files(&env.root).is_empty());
    let state = env.deps.runs.get_state(&f.name).await.unwrap();
    assert_eq!(
        state.lease.unwrap().run_id,
        "other-run",
        "the holder keeps its lease"
    );

    // The holder crashed; once its lease expires a new run goes ahead.
    env.clock.advance(Duration::minutes(16));
    let ok = run(&env, &f, None).await;
    assert!(ok.succeeded(), "{:?}", ok.failure);
}

#[tokio::test]
async fn missing_profile_and_bad_properties_fail_before_anything_is_written() {
    let env = env();
    let f = flow(&QUICKSTART.replace(
        "  entity: accounts",
        "  profile: crm-prod\n  entity: accounts",
    ));
    let out = run(&env, &f, None).await;
    let failure = out.failure.expect("fails");
    assert_eq!(failure.error, "AuthFailed");
    assert!(
        failure.cause.contains("crm-prod") && failure.cause.contains("ferry profiles put"),
        "{failure:?}"
    );
    assert!(out.record.is_none());
    assert!(!env.root.join("ferry-out").exists(), "nothing written");
    let state = env.deps.runs.get_state(&f.name).await.unwrap();
    assert!(state.lease.is_none() && state.watermark.is_none());
}

#[tokio::test]
async fn a_task_naming_a_missing_field_is_refused_at_start() {
    let env = env();
    let f = flow(&QUICKSTART.replace("field: phone", "field: fax"));
    let out = run(&env, &f, None).await;
    let failure = out.failure.expect("fails");
    assert_eq!(failure.error, "InvalidFlow");
    assert!(
        failure.cause.contains("tasks[2]") && failure.cause.contains("fax"),
        "{failure:?}"
    );
    assert!(!env.root.join("ferry-out").exists());
}

/// An engine that cannot write where the flow's output goes refuses the run before it takes the
/// lease and before it asks the source anything.
#[tokio::test]
async fn an_unreachable_destination_is_refused_before_the_lease_and_the_source() {
    let env = env();
    let api = ferry_tests::Mock::start(ferry_tests::MockConfig::default()).await;
    let f = flow(&format!(
        r#"
name: to-s3
source:
  connector: rest
  entity: tickets
  properties:
    base_url: {}
    endpoints:
      tickets: {{ path: /offset/tickets, records: "$.data[*]", paginator: {{ type: offset, limit: 20 }} }}
destination:
  s3: {{ bucket: lake, prefix: raw }}
  format: jsonl
"#,
        api.url()
    ));
    let out = run(&env, &f, None).await;
    let failure = out.failure.expect("fails");
    assert_eq!(failure.error, "InvalidFlow", "{failure:?}");
    assert!(
        failure.cause.contains("s3://lake/raw") && failure.cause.contains("no S3 access"),
        "{failure:?}"
    );
    assert!(out.record.is_none(), "no run record");
    assert!(env
        .deps
        .runs
        .get_state("to-s3")
        .await
        .unwrap()
        .lease
        .is_none());
    assert!(
        api.requests().is_empty(),
        "the source was asked: {:?}",
        api.requests()
    );
}
