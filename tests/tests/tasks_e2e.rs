//! Tasks end to end on the embedded engine: a `validate` with `terminate_run` fails the run,
//! writes nothing and leaves the watermark; filter pushdown gives the same output as none.

use ferry::flow::Flow;
use ferry::local::{asl::NoopObserver, embedded_deps, Engine};
use ferry::model::{PullMode, RunStatus, TriggerType};
use ferry::steps::start_run::RunRequest;
use std::path::Path;

fn flow(tasks: &str, out: &str) -> Flow {
    let yaml = format!(
        r#"
name: tasks-e2e
source:
  connector: sample
  entity: accounts
  properties: {{ records: 3000, as_of: "2026-01-01T00:00:00Z" }}
  incremental:
    field: updated_at
    first_execution_from: 2025-01-01T00:00:00Z
destination:
  local: {out}
  format: jsonl
tasks: {tasks}
"#
    );
    Flow::parse(&yaml, "tasks-e2e.yaml").unwrap()
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if p.extension().is_some_and(|x| x == "jsonl") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn lines(dir: &Path) -> Vec<serde_json::Value> {
    let mut v: Vec<serde_json::Value> = files(dir)
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    v.sort_by_key(|r| r["id"].as_str().unwrap_or_default().to_string());
    v
}

fn request(mode: Option<PullMode>) -> RunRequest {
    RunRequest {
        flow: "tasks-e2e".into(),
        trigger: Some(TriggerType::OnDemand),
        mode,
        window: None,
    }
}

#[tokio::test]
async fn validate_terminate_run_fails_the_run_writes_nothing_and_keeps_the_watermark() {
    let home = tempfile::tempdir().unwrap();
    let base = tempfile::tempdir().unwrap();
    let deps = embedded_deps(home.path(), base.path(), None).unwrap();
    let engine = Engine::new(deps.clone()).unwrap();
    let out = base.path().join("out");

    // A first, clean run sets the watermark.
    let ok = flow("[ { map_all: {} } ]", "out");
    deps.flows.put_flow(&ok, deps.clock.now()).await.unwrap();
    let first = engine.run(request(None), &NoopObserver).await;
    assert!(first.succeeded(), "{:?}", first.failure);
    let watermark = deps.runs.get_state("tasks-e2e").await.unwrap().watermark;
    assert!(watermark.is_some());
    let before = files(&out);
    assert!(!before.is_empty());

    // Some accounts have no industry: the run must stop.
    let strict = flow(
        "[ { map_all: {} }, { validate: { field: industry, check: non_null, action: terminate_run } } ]",
        "out",
    );
    deps.flows
        .put_flow(&strict, deps.clock.now())
        .await
        .unwrap();
    let second = engine
        .run(request(Some(PullMode::Complete)), &NoopObserver)
        .await;
    assert!(!second.succeeded());
    let rec = second.record.expect("the run started");
    assert_eq!(rec.status, RunStatus::Error);
    let err = rec.error.expect("an error is recorded");
    assert!(
        err.message.contains("terminate_run") && err.message.contains("industry"),
        "{err:?}"
    );
    assert_eq!(rec.records_written, 0);
    assert_eq!(
        files(&out),
        before,
        "no object was written by the failed run"
    );
    assert_eq!(
        deps.runs.get_state("tasks-e2e").await.unwrap().watermark,
        watermark
    );
}

#[tokio::test]
async fn pushdown_and_local_filters_give_the_same_output() {
    // The same filters, once pushable to the sample source (first) and once kept local (after a
    // validate that passes every record, nothing above it can be pushed).
    let filters = "{ filter: { field: status, op: not_equal, value: deleted } }, \
                   { filter: { field: employees, op: between, min: 100, max: 60000 } }, \
                   { filter: { any: [ { field: country, op: in, values: [US, DE] }, { field: country, op: is_null } ] } }, \
                   { filter: { field: name, op: contains, value: Corp } }";
    let pushed = format!("[ {filters}, {{ mask: {{ field: phone, keep_last: 4 }} }} ]");
    let local = format!(
        "[ {{ validate: {{ field: id, check: non_null }} }}, {filters}, {{ mask: {{ field: phone, keep_last: 4 }} }} ]"
    );
    let mut outputs = vec![];
    let mut processed = vec![];
    for (tasks, dir) in [(&pushed, "pushed"), (&local, "local")] {
        let home = tempfile::tempdir().unwrap();
        let base = tempfile::tempdir().unwrap();
        let deps = embedded_deps(home.path(), base.path(), None).unwrap();
        let engine = Engine::new(deps.clone()).unwrap();
        deps.flows
            .put_flow(&flow(tasks, dir), deps.clock.now())
            .await
            .unwrap();
        let run = engine
            .run(request(Some(PullMode::Complete)), &NoopObserver)
            .await;
        assert!(run.succeeded(), "{:?}", run.failure);
        processed.push(run.record.unwrap().records_processed);
        outputs.push(lines(&base.path().join(dir)));
    }
    assert!(!outputs[0].is_empty());
    assert_eq!(outputs[0], outputs[1]);
    for r in &outputs[0] {
        assert_ne!(r["status"], "deleted");
        assert!(r["name"].as_str().unwrap().contains("Corp"));
    }
    // With pushdown the source sent fewer records.
    assert!(processed[0] < processed[1], "{processed:?}");
}
