//! Exactly once under crashes: each defect the fault campaign was built to find, as its own
//! test on the embedded engine's steps (the same steps the Lambdas run).

use chrono::{Duration, TimeZone, Utc};
use ferry::flow::Flow;
use ferry::local::asl::NoopObserver;
use ferry::local::{embedded_deps, Engine};
use ferry::model::{Manifest, PullMode, RunStatus};
use ferry::ports::{Clock, LeaseClaim, ManualClock, PutOptions};
use ferry::steps::finalize::{self, CaughtError, FinalizeInput};
use ferry::steps::start_run::{RunRequest, StartRunInput};
use ferry::steps::{fetch_page, start_run, transform_batch, write_s3, Deps, RunContext};
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    deps: Deps,
    clock: ManualClock,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut deps = embedded_deps(&root.join(".ferry"), &root, None).unwrap();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap());
    deps.clock = Arc::new(clock.clone());
    Env {
        _dir: dir,
        root,
        deps,
        clock,
    }
}

fn flow(extra_destination: &str) -> Flow {
    Flow::parse(
        &format!(
            r#"
name: once
source:
  connector: sample
  entity: accounts
  properties: {{ records: 900, as_of: "2026-05-01T00:00:00Z" }}
  incremental: {{ field: updated_at, first_execution_from: "2026-01-01T00:00:00Z" }}
  chunk: {{ records: 300 }}
destination:
  local: out
  format: jsonl
  compression: none
{extra_destination}
"#
        ),
        "once.yaml",
    )
    .unwrap()
}

/// Files under `dir` (relative paths).
fn files(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// start, then every chunk's fetch, transform and write, then the flush — not finalize.
async fn run_to_finalize(e: &Env, f: &Flow, run_id: &str) -> RunContext {
    e.deps.flows.put_flow(f, e.clock.now()).await.unwrap();
    let started = start_run::handle(
        &e.deps,
        StartRunInput {
            request: RunRequest {
                flow: f.name.clone(),
                ..Default::default()
            },
            execution_id: format!("local:{run_id}"),
            execution_name: run_id.into(),
        },
    )
    .await
    .unwrap();
    let run = started.run;
    let (mut cursor, mut chunk) = (serde_json::Value::Null, 0);
    loop {
        let page = fetch_page::handle(
            &e.deps,
            fetch_page::FetchInput {
                run: run.clone(),
                cursor,
                chunk,
                slice: None,
            },
        )
        .await
        .unwrap();
        let t = transform_batch::handle(
            &e.deps,
            transform_batch::TransformInput {
                run: run.clone(),
                chunk,
                raw_key: page.raw_key.clone(),
            },
        )
        .await
        .unwrap();
        write_s3::handle(
            &e.deps,
            write_s3::WriteInput {
                run: run.clone(),
                chunk,
                batch_key: Some(t.batch_key),
                rejected: t.rejected,
                flush: false,
            },
        )
        .await
        .unwrap();
        if !page.has_more {
            write_s3::handle(
                &e.deps,
                write_s3::WriteInput {
                    run: run.clone(),
                    chunk,
                    batch_key: None,
                    rejected: 0,
                    flush: true,
                },
            )
            .await
            .unwrap();
            return run;
        }
        cursor = page.cursor;
        chunk = page.next_chunk;
    }
}

fn caught(error: &str) -> Option<CaughtError> {
    Some(CaughtError {
        error: error.into(),
        cause: "{\"errorType\":\"x\",\"errorMessage\":\"after the commit\"}".into(),
    })
}

/// Defect: a retried finalize met a Conflict after `commit_success` had released the lease, the
/// Catch ran the failure path, and `fail()` deleted a committed run's objects.
#[tokio::test]
async fn a_retried_finalize_and_a_late_failure_path_never_delete_a_committed_run() {
    let e = env();
    let f = flow("");
    let run = run_to_finalize(&e, &f, "r-commit").await;
    let first = finalize::handle(
        &e.deps,
        FinalizeInput {
            run: run.clone(),
            error: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(first.status, RunStatus::Successful);
    let committed = files(&e.root.join("out"));
    assert!(
        committed.iter().any(|k| k.contains("_manifests")),
        "{committed:?}"
    );
    // The answer was lost; Step Functions retries the Task.
    let again = finalize::handle(
        &e.deps,
        FinalizeInput {
            run: run.clone(),
            error: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(again.status, RunStatus::Successful);
    assert_eq!(again.records_written, first.records_written);
    // Everything after the commit failed anyway and the Catch ran the failure path.
    let late = finalize::handle(
        &e.deps,
        FinalizeInput {
            run: run.clone(),
            error: caught("Lambda.Unknown"),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        late.status,
        RunStatus::Successful,
        "a committed run stays Successful"
    );
    assert!(
        late.warnings
            .iter()
            .any(|w| w.contains("committed, then its execution failed")),
        "{late:?}"
    );
    assert_eq!(
        files(&e.root.join("out")),
        committed,
        "nothing deleted after the commit"
    );
    let state = e.deps.runs.get_state("once").await.unwrap();
    assert_eq!(state.watermark, Some(run.window.end));
    assert_eq!(state.consecutive_failures, 0);
}

/// Defect: the manifest was written before a commit that was then refused, and stayed,
/// vouching for objects the failure path removed.
#[tokio::test]
async fn a_refused_commit_leaves_no_manifest() {
    let e = env();
    let f = flow("");
    let run = run_to_finalize(&e, &f, "r-stale").await;
    // The lease expired and another run took it.
    e.clock.advance(Duration::hours(2));
    let now = e.clock.now();
    e.deps
        .runs
        .acquire_lease(
            "once",
            &LeaseClaim::new("thief", now + Duration::hours(1)),
            now,
        )
        .await
        .unwrap();
    let err = finalize::handle(
        &e.deps,
        FinalizeInput {
            run: run.clone(),
            error: None,
        },
    )
    .await
    .unwrap_err();
    assert!(err.message.contains("no longer holds the lease"), "{err}");
    let left = finalize::handle(
        &e.deps,
        FinalizeInput {
            run: run.clone(),
            error: caught("Fatal"),
        },
    )
    .await
    .unwrap();
    assert_eq!(left.status, RunStatus::Error);
    let out = files(&e.root.join("out"));
    assert!(
        out.is_empty(),
        "a run that never committed leaves nothing, manifest first: {out:?}"
    );
    assert_eq!(
        e.deps
            .runs
            .get_state("once")
            .await
            .unwrap()
            .lease
            .unwrap()
            .run_id,
        "thief"
    );
}

/// Defect: a write-s3 killed between an upload and its chunk result left an orphan file that
/// no cleanup knew of.
#[tokio::test]
async fn an_upload_no_chunk_result_recorded_is_removed_on_success_and_on_failure() {
    for (run_id, succeed) in [("r-orphan-ok", true), ("r-orphan-ko", false)] {
        let e = env();
        let f = flow("  aggregation: none");
        let run = run_to_finalize(&e, &f, run_id).await;
        // What a crashed attempt uploaded and never recorded: a key of this run.
        let out = e.root.join("out");
        let recorded = files(&out);
        let dir = recorded[0].rsplit_once('/').unwrap().0;
        let orphan_dir = out.join(dir);
        // The run's id is its folder, or starts the file name.
        let keyed = if dir.rsplit('/').next() == Some(run_id) {
            orphan_dir.join("part-00099-000.jsonl")
        } else {
            orphan_dir.join(format!("{run_id}-part-00099-000.jsonl"))
        };
        let store = e
            .deps
            .destinations
            .resolve(&f.destination.location())
            .await
            .unwrap();
        let key = keyed.strip_prefix(&out).unwrap().display().to_string();
        store
            .put(
                &key,
                b"{\"id\":\"ghost\"}\n".to_vec(),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        assert!(keyed.exists());
        let rec = finalize::handle(
            &e.deps,
            FinalizeInput {
                run: run.clone(),
                error: if succeed { None } else { caught("Fatal") },
            },
        )
        .await
        .unwrap();
        assert!(!keyed.exists(), "{run_id}: the orphan {key} is gone");
        if succeed {
            let m: Manifest =
                serde_json::from_slice(&std::fs::read(rec.manifest_key.as_ref().unwrap()).unwrap())
                    .unwrap();
            let mut listed: Vec<String> = m.objects.iter().map(|o| o.key.clone()).collect();
            listed.sort();
            let mut present: Vec<String> = files(&out)
                .into_iter()
                .filter(|k| !k.contains("_manifests"))
                .collect();
            present.sort();
            assert_eq!(present, listed, "exactly the manifest's objects");
        } else {
            assert!(files(&out).is_empty(), "{:?}", files(&out));
        }
    }
}

/// Defect: without `execution_id` in the hierarchy two runs wrote the same keys, and a failed
/// run's cleanup deleted a previous run's objects.
#[tokio::test]
async fn runs_without_an_execution_id_folder_never_share_keys() {
    let e = env();
    let f = flow("  layout: { hierarchy: [], date: none }\n  aggregation: none");
    let run = run_to_finalize(&e, &f, "r-first").await;
    finalize::handle(&e.deps, FinalizeInput { run, error: None })
        .await
        .unwrap();
    let first = files(&e.root.join("out"));
    assert!(
        first
            .iter()
            .filter(|k| !k.contains("_manifests"))
            .all(|k| k.contains("r-first")),
        "{first:?}"
    );
    // A complete rerun that fails after writing everything.
    e.clock.advance(Duration::minutes(5));
    e.deps.flows.put_flow(&f, e.clock.now()).await.unwrap();
    let started = start_run::handle(
        &e.deps,
        StartRunInput {
            request: RunRequest {
                flow: "once".into(),
                mode: Some(PullMode::Complete),
                ..Default::default()
            },
            execution_id: "local:r-second".into(),
            execution_name: "r-second".into(),
        },
    )
    .await
    .unwrap();
    let page = fetch_page::handle(
        &e.deps,
        fetch_page::FetchInput {
            run: started.run.clone(),
            cursor: serde_json::Value::Null,
            chunk: 0,
            slice: None,
        },
    )
    .await
    .unwrap();
    let t = transform_batch::handle(
        &e.deps,
        transform_batch::TransformInput {
            run: started.run.clone(),
            chunk: 0,
            raw_key: page.raw_key,
        },
    )
    .await
    .unwrap();
    write_s3::handle(
        &e.deps,
        write_s3::WriteInput {
            run: started.run.clone(),
            chunk: 0,
            batch_key: Some(t.batch_key),
            rejected: 0,
            flush: false,
        },
    )
    .await
    .unwrap();
    let during = files(&e.root.join("out"));
    assert!(
        during.len() > first.len(),
        "the second run wrote files of its own"
    );
    finalize::handle(
        &e.deps,
        FinalizeInput {
            run: started.run,
            error: caught("Fatal"),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        files(&e.root.join("out")),
        first,
        "the first run's objects are untouched"
    );
}

/// Every step renews the lease, for as long as the longest retry gap the state machine makes.
#[tokio::test]
async fn every_step_renews_the_lease() {
    let e = env();
    let f = flow("");
    e.deps.flows.put_flow(&f, e.clock.now()).await.unwrap();
    let ttl = Duration::from_std(e.deps.settings.lease_ttl).unwrap();
    assert!(ttl >= Duration::minutes(31), "{ttl:?}");
    let started = start_run::handle(
        &e.deps,
        StartRunInput {
            request: RunRequest {
                flow: "once".into(),
                ..Default::default()
            },
            execution_id: "local:r-lease".into(),
            execution_name: "r-lease".into(),
        },
    )
    .await
    .unwrap();
    let run = started.run;
    async fn expires(e: &Env) -> chrono::DateTime<Utc> {
        e.deps
            .runs
            .get_state("once")
            .await
            .unwrap()
            .lease
            .unwrap()
            .expires_at
    }
    let check = |_: &Env, what: &str, at: chrono::DateTime<Utc>, got: chrono::DateTime<Utc>| {
        assert_eq!(got, at + ttl, "{what} renews the lease");
    };
    e.clock.advance(Duration::minutes(20));
    let page = fetch_page::handle(
        &e.deps,
        fetch_page::FetchInput {
            run: run.clone(),
            cursor: serde_json::Value::Null,
            chunk: 0,
            slice: None,
        },
    )
    .await
    .unwrap();
    check(&e, "fetch-page", e.clock.now(), expires(&e).await);
    e.clock.advance(Duration::minutes(20));
    let t = transform_batch::handle(
        &e.deps,
        transform_batch::TransformInput {
            run: run.clone(),
            chunk: 0,
            raw_key: page.raw_key,
        },
    )
    .await
    .unwrap();
    check(&e, "transform-batch", e.clock.now(), expires(&e).await);
    e.clock.advance(Duration::minutes(20));
    write_s3::handle(
        &e.deps,
        write_s3::WriteInput {
            run: run.clone(),
            chunk: 0,
            batch_key: Some(t.batch_key),
            rejected: 0,
            flush: false,
        },
    )
    .await
    .unwrap();
    check(&e, "write-s3", e.clock.now(), expires(&e).await);
}

/// Defect: rejected records without an error location vanished and the run moved the
/// watermark, with no threshold. Now: `on_rejected: fail` and `max_rejected` stop the run
/// before anything is committed; without either, they are counted and reported.
#[tokio::test]
async fn rejected_records_obey_the_flows_policy() {
    let tasks = "tasks:\n  - validate: { field: industry, check: non_null }\n";
    for (policy, ok) in [
        ("", true),
        ("  max_rejected: 1000\n", true),
        ("  max_rejected: 10\n", false),
        ("  max_rejected: \"50%\"\n", true),
        ("  max_rejected: \"1%\"\n", false),
        ("  on_rejected: fail\n", false),
    ] {
        let e = env();
        let f = Flow::parse(
            &format!(
                "name: rej\nsource:\n  connector: sample\n  entity: accounts\n  properties: {{ records: 900, as_of: \"2026-05-01T00:00:00Z\" }}\n  incremental: {{ field: updated_at, first_execution_from: \"2026-01-01T00:00:00Z\" }}\ndestination:\n  local: out\n  format: jsonl\n{policy}{tasks}"
            ),
            "rej.yaml",
        )
        .unwrap_or_else(|err| panic!("{policy}: {err}"));
        e.deps.flows.put_flow(&f, e.clock.now()).await.unwrap();
        let engine = Engine::new(e.deps.clone()).unwrap().with_time_scale(0.001);
        let out = engine
            .run(
                RunRequest {
                    flow: "rej".into(),
                    ..Default::default()
                },
                &NoopObserver,
            )
            .await;
        let rec = out.record.unwrap();
        assert!(rec.records_rejected > 0 || !ok, "{policy}: {rec:?}");
        let state = e.deps.runs.get_state("rej").await.unwrap();
        if ok {
            assert_eq!(
                rec.status,
                RunStatus::Successful,
                "{policy}: {:?}",
                out.failure
            );
            assert!(
                rec.warnings.iter().any(|w| w.contains("rejected")),
                "{policy}: counted and reported: {rec:?}"
            );
            assert!(state.watermark.is_some());
        } else {
            assert_eq!(rec.status, RunStatus::Error, "{policy}");
            let err = rec.error.unwrap();
            assert_eq!(err.error, "SourceRejected", "{policy}");
            assert!(
                err.message.contains("on_rejected") || err.message.contains("max_rejected"),
                "{policy}: {}",
                err.message
            );
            assert_eq!(
                state.watermark, None,
                "{policy}: the watermark did not move"
            );
            assert!(
                files(&e.root.join("out")).is_empty(),
                "{policy}: nothing committed"
            );
        }
    }
}

/// Chunks are bounded: budgets above what one fetch-page invocation can hold or finish are
/// refused at validation, naming the field.
#[test]
fn chunk_budgets_are_bounded_above() {
    for (field, value) in [
        ("records", "2000001"),
        ("megabytes", "193"),
        ("seconds", "721"),
    ] {
        let err = Flow::parse(
            &format!("name: big\nsource:\n  connector: sample\n  entity: accounts\n  chunk: {{ {field}: {value} }}\ndestination:\n  local: out\n"),
            "big.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!("source.chunk.{field}")) && err.contains("limit"),
            "{err}"
        );
    }
}

/// Warnings are bounded: a run record (and the execution output) never grows with the chunks.
#[test]
fn warnings_are_capped_with_a_count() {
    let many: Vec<String> = (0..500).map(|i| format!("warning {i:03}")).collect();
    let capped = finalize::cap_warnings(many);
    assert_eq!(capped.len(), finalize::MAX_WARNINGS);
    assert_eq!(capped.last().unwrap(), "... and 481 more warnings");
}
