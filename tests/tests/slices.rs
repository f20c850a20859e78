//! Slices end to end on the embedded engine (the real flow-run.asl.json, its Distributed Map
//! "Run Slices", the real steps): a sliced run writes exactly the records of the unsliced run,
//! for the sample and the `rest` connector; a run longer than one execution can hold continues
//! in rounds of bounded child executions; a failing slice fails the run with its own error and
//! leaves nothing behind, and the rerun commits every record once.

use chrono::Utc;
use ferry::flow::Flow;
use ferry::local::asl::NoopObserver;
use ferry::local::RunOutcome;
use ferry::model::{RunStatus, Window};
use ferry::steps::start_run::RunRequest;
use ferry_tests::harness::{rest_flow, Local};
use ferry_tests::{base_time, updated_at, Fault, Mock, MockConfig};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

async fn run_window(local: &Local, flow_yaml: &str, window: Option<Window>) -> RunOutcome {
    let flow = Flow::parse(flow_yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"));
    local
        .engine
        .deps
        .flows
        .put_flow(&flow, Utc::now())
        .await
        .unwrap();
    local
        .engine
        .run(
            RunRequest {
                flow: flow.name.clone(),
                trigger: None,
                mode: None,
                window,
            },
            &NoopObserver,
        )
        .await
}

/// Records by id, each at most once (a duplicate fails the test).
fn by_id(records: Vec<Value>, drop: &[&str]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for mut r in records {
        let id = r["id"].to_string();
        if let Some(o) = r.as_object_mut() {
            for f in drop {
                o.remove(*f);
            }
        }
        assert!(out.insert(id.clone(), r).is_none(), "record {id} twice");
    }
    out
}

fn sample_flow(name: &str, records: u64, chunk: u64, source_extra: &str) -> String {
    format!(
        "name: {name}
source:
  connector: sample
  entity: accounts
  properties: {{ records: {records}, page_size: {chunk} }}
  incremental: {{ field: updated_at, first_execution_from: 2000-01-01T00:00:00Z }}
  chunk: {{ records: {chunk} }}
{source_extra}destination:
  local: out
  format: jsonl
  compression: none
trigger:
  on_demand: {{}}
"
    )
}

#[tokio::test]
async fn a_sliced_sample_run_writes_exactly_the_records_of_the_unsliced_run() {
    let unsliced = Local::new();
    let out = unsliced.run(&sample_flow("crm", 6_000, 400, "")).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert_eq!(unsliced.slices_of(&out.run_id).await, BTreeSet::from([0]));
    // Timestamps follow the run's window end ("now"), which differs between the two runs.
    let drop = ["updated_at", "created_at", "last_activity_date"];
    let expected = by_id(unsliced.output("out/crm"), &drop);
    assert_eq!(expected.len(), 6_000);

    let sliced = Local::new();
    // 26 years cut in 4: the data (the last 90 days) falls in the last slice, which the
    // sample's exact counts halve until each part holds at most 1,000 records.
    let extra = "  slice: { count: 4, records: 1000 }\n  parallelism: 3\n";
    let out = sliced.run(&sample_flow("crm", 6_000, 400, extra)).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let rec = out.record.as_ref().unwrap();
    assert_eq!(rec.status, RunStatus::Successful);
    assert_eq!(rec.records_written, 6_000);
    let used = sliced.slices_of(&out.run_id).await;
    assert!(used.len() >= 6, "slices holding records: {used:?}");
    let got = by_id(sliced.output("out/crm"), &drop);
    assert_eq!(got, expected, "same rows, exactly once");
    // One commit: the watermark is the run's window end, the manifest one file.
    assert_eq!(sliced.watermark("crm").await, Some(rec.window.end));
    let manifests = std::fs::read_dir(sliced.base.path().join("out/crm/_manifests"))
        .unwrap()
        .count();
    assert_eq!(manifests, 1);
}

/// Counts the states entered (the transitions Step Functions bills), children's included.
#[derive(Default)]
struct Transitions(std::sync::Mutex<BTreeMap<String, u64>>);

impl ferry::local::asl::Observer for Transitions {
    fn state_entered(&self, name: &str, _input: &Value) {
        *self.0.lock().unwrap().entry(name.to_string()).or_default() += 1;
    }
}

#[tokio::test]
async fn a_run_too_long_for_one_execution_continues_in_new_child_executions() {
    // 1,600 chunks: 17 events each would put one execution at 27,200 events, past the
    // 25,000 the embedded engine enforces. The slice's children read 500 chunks each.
    let local = Local::new();
    let flow = Flow::parse(&sample_flow("long", 1_600, 1, ""), "t.yaml").unwrap();
    local
        .engine
        .deps
        .flows
        .put_flow(&flow, Utc::now())
        .await
        .unwrap();
    let seen = Transitions::default();
    let out = local
        .engine
        .run(
            RunRequest {
                flow: "long".into(),
                trigger: None,
                mode: None,
                window: None,
            },
            &seen,
        )
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let seen = seen.0.into_inner().unwrap();
    // Four rounds: three children paused after 500 chunks, the fourth read 100 and flushed.
    assert_eq!(seen["Run Slices"], 4, "{seen:?}");
    assert_eq!(seen["Slice Paused"], 3, "{seen:?}");
    assert_eq!(seen["Fetch Chunk"], 1_600);
    // The cost model of docs/deploy.md: 4c + 3k + p + 3r + 2.
    let total: u64 = seen.values().sum();
    assert_eq!(total, 4 * 1_600 + 3 + 3 + 3 * 4 + 2, "{seen:?}");
    let rec = out.record.unwrap();
    assert_eq!(rec.chunks, 1_600);
    assert_eq!(rec.records_written, 1_600);
    let got = by_id(local.output("out/long"), &[]);
    assert_eq!(got.len(), 1_600, "every record once");
}

fn rest_props(mock: &Mock) -> Value {
    json!({
        "base_url": mock.url(),
        "endpoints": {"tickets": {
            "path": "/cursor/tickets", "records": "$.data[*]", "params": {"limit": "7"},
            "paginator": {"type": "cursor", "token_path": "$.meta.next_cursor", "param": "cursor", "has_more_path": "$.meta.has_more"},
            "incremental": {"set": {"updated_since": "{start}", "updated_before": "{end}"}},
            "fields": [
                {"name": "id", "type": "integer"},
                {"name": "subject", "type": "string"},
                {"name": "status", "type": "string"},
                {"name": "priority", "type": "integer"},
                {"name": "updated_at", "type": "timestamp"},
                {"name": "tags", "type": "array", "items": "string"}
            ]}}
    })
}

const REST_INC: &str = "  incremental:\n    field: updated_at\n  chunk: { records: 20 }\n";

#[tokio::test]
async fn a_sliced_rest_run_writes_exactly_the_records_of_the_unsliced_run() {
    let mock = Mock::start(MockConfig {
        tickets: 300,
        ..Default::default()
    })
    .await;
    // A backfill over the tickets' times: ticket i at BASE + i minutes.
    let window = Window {
        start: Some(base_time()),
        end: updated_at(300),
    };
    let unsliced = Local::new();
    let flow = rest_flow("tix", "tickets", None, &rest_props(&mock), REST_INC);
    let out = run_window(&unsliced, &flow, Some(window)).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let expected = by_id(unsliced.output("out/tix"), &[]);
    assert_eq!(expected.len(), 300);

    let sliced = Local::new();
    let extra = format!("{REST_INC}  slice: {{ count: 7 }}\n  parallelism: 4\n");
    let flow = rest_flow("tix", "tickets", None, &rest_props(&mock), &extra);
    let out = run_window(&sliced, &flow, Some(window)).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert_eq!(
        sliced.slices_of(&out.run_id).await,
        (0..7).collect::<BTreeSet<u32>>()
    );
    // Each slice asked the API for its own window.
    let since: BTreeSet<String> = mock
        .requests()
        .iter()
        .filter_map(|r| {
            r.query
                .split('&')
                .find_map(|kv| kv.strip_prefix("updated_since=").map(str::to_string))
        })
        .collect();
    assert!(since.len() >= 7, "{since:?}");
    assert_eq!(by_id(sliced.output("out/tix"), &[]), expected);
}

#[tokio::test]
async fn a_failing_slice_fails_the_run_with_its_error_and_the_rerun_commits_every_record_once() {
    let (mock, window) = two_hundred_tickets().await;
    let local = Local::new();
    let extra = format!("{REST_INC}  slice: {{ count: 4 }}\n  parallelism: 2\n");
    let flow = rest_flow("fail", "tickets", None, &rest_props(&mock), &extra);
    // A request some way into the run is refused (400: not retried).
    mock.fault_every(9, vec![Fault::status(400)]);
    let out = run_window(&local, &flow, Some(window)).await;
    let failure = out.failure.expect("the run fails");
    let rec = out.record.unwrap();
    assert_eq!(rec.status, RunStatus::Error);
    let err = rec.error.unwrap();
    assert_eq!(
        err.error, "SourceRejected",
        "the slice's error, not the Map's: {failure:?}"
    );
    // Nothing of the failed run stays: no output, no manifest, no staging.
    assert!(local.output("out/fail").is_empty());
    assert!(
        !local.base.path().join("out/fail/_manifests").exists()
            || std::fs::read_dir(local.base.path().join("out/fail/_manifests"))
                .unwrap()
                .count()
                == 0
    );
    // A fetch-page running in another slice when this one failed either failed its fenced
    // write or removed what it staged (steps::fenced_put): staging is empty.
    let left = files_under(&local.home.path().join("staging/fail").join(&out.run_id));
    assert!(left.is_empty(), "staging of the failed run: {left:?}");

    mock.fault_every(0, vec![]);
    let out = run_window(&local, &flow, Some(window)).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let got = by_id(local.output("out/fail"), &[]);
    let ids: BTreeSet<u64> = got.values().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=200).collect::<BTreeSet<u64>>());
}

/// A mock API of 200 tickets, one a minute from `base_time()`, and the window that holds them.
async fn two_hundred_tickets() -> (Mock, Window) {
    let mock = Mock::start(MockConfig {
        tickets: 200,
        ..Default::default()
    })
    .await;
    let window = Window {
        start: Some(base_time()),
        end: updated_at(200),
    };
    (mock, window)
}

/// The slice manifests under a local destination, by run: `(run, slice)` of each.
fn slice_manifests(local: &Local, flow: &str) -> BTreeSet<(String, u32)> {
    let dir = local.base.path().join(format!("out/{flow}/_manifests"));
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let m: ferry::model::Manifest =
                serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            Some((m.run_id, m.slice?))
        })
        .collect()
}

/// Ids of the tickets in the output, each at most once.
fn ticket_ids(local: &Local, flow: &str) -> BTreeSet<u64> {
    by_id(local.output(&format!("out/{flow}")), &[])
        .values()
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

/// The `updated_since` of every data request the mock saw from `from` on.
fn windows_asked(mock: &Mock, from: usize) -> BTreeSet<String> {
    mock.requests()[from..]
        .iter()
        .filter_map(|r| {
            r.query.split('&').find_map(|kv| {
                kv.strip_prefix("updated_since=")
                    .map(|v| v.replace("%3A", ":"))
            })
        })
        .collect()
}

#[tokio::test]
async fn an_incremental_run_committing_per_slice_resumes_from_the_slices_that_did_not_commit() {
    let mock = Mock::start(MockConfig {
        tickets: 200,
        ..Default::default()
    })
    .await;
    let mut local = Local::new();
    let clock = ferry::ports::ManualClock::new(updated_at(200));
    local.engine.deps.clock = std::sync::Arc::new(clock.clone());
    let extra = format!(
        "  incremental:\n    field: updated_at\n    first_execution_from: {}\n  chunk: {{ records: 20 }}\n  slice: {{ count: 4, commit: slice }}\n  parallelism: 4\n",
        base_time().to_rfc3339()
    );
    let flow = rest_flow("inc", "tickets", None, &rest_props(&mock), &extra);
    // Four slices of 50 minutes: tickets 1-50, 51-100, 101-150, 151-200. Slice 2's requests
    // (its window starts 100 minutes in) fail once the others had time to commit.
    mock.fail_queries(Some((
        "updated_since=2026-01-01T01:40:00",
        std::time::Duration::from_secs(3),
        400,
    )));
    let out = run_window(&local, &flow, None).await;
    let rec = out.record.expect("a run record");
    assert_eq!(rec.status, RunStatus::Error, "{:?}", out.failure);
    assert_eq!(rec.error.as_ref().unwrap().error, "SourceRejected");
    // Slices 0, 1 and 3 committed on their own and stay; slice 2 left nothing.
    assert_eq!(
        slice_manifests(&local, "inc"),
        [0, 1, 3]
            .into_iter()
            .map(|i| (out.run_id.clone(), i))
            .collect()
    );
    let committed: BTreeSet<u64> = (1..=100).chain(151..=200).collect();
    assert_eq!(ticket_ids(&local, "inc"), committed);
    assert_eq!(rec.records_written, 150);
    assert!(
        rec.warnings
            .iter()
            .any(|w| w.contains("3 slices committed before the run failed")),
        "{:?}",
        rec.warnings
    );
    // The watermark passed the committed prefix (slices 0 and 1), not the gap.
    assert_eq!(
        local.watermark("inc").await,
        Some(base_time() + chrono::Duration::minutes(100))
    );

    // The next run reads only what did not commit: the gap and what is new since.
    mock.fail_queries(None);
    clock.set(updated_at(200) + chrono::Duration::minutes(30));
    let seen = mock.requests().len();
    let out = run_window(&local, &flow, None).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let rec = out.record.unwrap();
    assert_eq!(rec.records_written, 50, "slice 2's tickets only");
    assert!(
        rec.warnings
            .iter()
            .any(|w| w.contains("resuming: 1 slices")),
        "{:?}",
        rec.warnings
    );
    // It asks from the gap's start on, and for nothing that starts inside slice 3's
    // committed window (150-200 minutes in).
    let asked: Vec<chrono::DateTime<Utc>> = windows_asked(&mock, seen)
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
    let minute = |m| base_time() + chrono::Duration::minutes(m);
    assert_eq!(asked.iter().min(), Some(&minute(100)), "{asked:?}");
    assert!(
        asked.iter().all(|t| *t < minute(150) || *t >= minute(200)),
        "the resumed run read a committed slice again: {asked:?}"
    );
    assert_eq!(
        ticket_ids(&local, "inc"),
        (1..=200).collect(),
        "every record exactly once"
    );
    assert_eq!(local.watermark("inc").await, Some(rec.window.end));
    let ledger = local.engine.deps.runs.slice_ledger("inc").await.unwrap();
    assert!(ledger.slices.is_empty(), "{ledger:?}");
}

#[tokio::test]
async fn a_backfill_committing_per_slice_resumes_when_run_again() {
    let (mock, window) = two_hundred_tickets().await;
    let local = Local::new();
    let extra = format!("{REST_INC}  slice: {{ count: 4, commit: slice }}\n  parallelism: 4\n");
    let flow = rest_flow("bf", "tickets", None, &rest_props(&mock), &extra);
    // Slice 1 (tickets 51-100, from 50 minutes in) fails.
    mock.fail_queries(Some((
        "updated_since=2026-01-01T00:50:00",
        std::time::Duration::from_secs(3),
        400,
    )));
    let out = run_window(&local, &flow, Some(window)).await;
    let rec = out.record.expect("a run record");
    assert_eq!(rec.status, RunStatus::Error, "{:?}", out.failure);
    let committed: BTreeSet<u64> = (1..=50).chain(101..=200).collect();
    assert_eq!(ticket_ids(&local, "bf"), committed);
    // A backfill never moves the watermark.
    assert_eq!(local.watermark("bf").await, None);

    mock.fail_queries(None);
    let seen = mock.requests().len();
    let out = run_window(&local, &flow, Some(window)).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert_eq!(out.record.unwrap().records_written, 50);
    assert_eq!(
        windows_asked(&mock, seen),
        BTreeSet::from(["2026-01-01T00:50:00Z".to_string()])
    );
    assert_eq!(ticket_ids(&local, "bf"), (1..=200).collect());
    // The run's manifest lists its slice's manifest, not its objects twice.
    let runs: BTreeSet<String> = slice_manifests(&local, "bf")
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(runs.len(), 2);
    // A successful backfill forgets the slices it covered: the same backfill again reads all.
    assert!(local
        .engine
        .deps
        .runs
        .slice_ledger("bf")
        .await
        .unwrap()
        .slices
        .is_empty());
}

#[test]
fn slice_settings_are_checked() {
    let err = |extra: &str| {
        Flow::parse(
            &format!(
                "name: f\nsource:\n  connector: sample\n  entity: accounts\n{extra}destination:\n  local: out\n"
            ),
            "f.yaml",
        )
        .unwrap_err()
        .to_string()
    };
    let e = err("  slice: { count: 4 }\n");
    assert!(
        e.contains("source.slice") && e.contains("incremental"),
        "{e}"
    );
    let inc = "  incremental: { field: updated_at }\n";
    let e = err(&format!("{inc}  slice: {{ count: 0 }}\n"));
    assert!(e.contains("source.slice.count"), "{e}");
    let e = err(&format!("{inc}  slice: {{}}\n"));
    assert!(e.contains("source.slice") && e.contains("count"), "{e}");
    let e = err(&format!("{inc}  parallelism: 0\n"));
    assert!(e.contains("source.parallelism"), "{e}");
    let e = err(&format!("{inc}  slice: {{ count: 2, size: 3 }}\n"));
    assert!(e.contains("size"), "{e}");
}

/// Every file under `dir` (none when it does not exist).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}
