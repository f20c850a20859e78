//! Stuck local runs end: `ferry stop RUN_ID` stops a run of the embedded engine running in
//! another `ferry run` process, and a run whose process was killed is ended by the next run
//! instead of locking the flow until its lease expires.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SLOW: &str = r#"
name: slow
source:
  connector: sample
  entity: accounts
  properties: { records: 5000, page_size: 50, latency_ms: 100, as_of: "2026-01-01T00:00:00Z" }
  incremental: { field: updated_at, first_execution_from: "2025-01-01T00:00:00Z" }
  chunk: { records: 200 }
destination:
  local: out
  format: jsonl
  aggregation: none
"#;

fn ferry(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.current_dir(dir)
        .env("FERRY_HOME", dir.join(".ferry"))
        .env_remove("FERRY_LOG")
        .env_remove("FERRY_REMOTE");
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Start `ferry run slow.yaml --json` and wait until its run is recorded; returns the process
/// and the run id (from `ferry runs list`).
fn start_slow(dir: &Path) -> (Child, String) {
    std::fs::write(dir.join("slow.yaml"), SLOW).unwrap();
    #[allow(clippy::zombie_processes)] // the caller waits on it (or kills and waits)
    let mut child = ferry(dir)
        .args(["run", "slow.yaml", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = ferry(dir).args(["runs", "list", "slow"]).output().unwrap();
        let t = text(&o);
        if let Some(id) = t
            .lines()
            .find(|l| l.contains("InProgress"))
            .and_then(|l| l.split_whitespace().next())
        {
            // Let it write a chunk or two.
            std::thread::sleep(Duration::from_millis(1500));
            return (child, id.to_string());
        }
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!("`ferry run` ended before its run showed up: {}", text(&out));
        }
        assert!(Instant::now() < deadline, "the run never showed up: {t}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn data_files(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.join("out")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn ferry_stop_stops_a_local_run_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let (child, run_id) = start_slow(dir.path());
    let o = ferry(dir.path()).args(["stop", &run_id]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Canceled"), "{}", text(&o));
    let run = child.wait_with_output().unwrap();
    assert!(
        !run.status.success(),
        "the stopped run's process reports the stop: {}",
        text(&run)
    );
    let o = ferry(dir.path())
        .args(["runs", "get", &run_id])
        .output()
        .unwrap();
    assert!(text(&o).contains("Canceled"), "{}", text(&o));
    assert!(
        data_files(dir.path()).is_empty(),
        "nothing uncommitted left: {:?}",
        data_files(dir.path())
    );
    // The flow is free at once.
    let o = ferry(dir.path())
        .args(["run", "slow", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_killed_local_run_is_ended_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, run_id) = start_slow(dir.path());
    child.kill().unwrap(); // SIGKILL: no cleanup of its own
    child.wait().unwrap();
    let o = ferry(dir.path())
        .args(["run", "slow", "--json"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the next run is not locked out for the lease's 31 minutes: {}",
        text(&o)
    );
    let o = ferry(dir.path())
        .args(["runs", "get", &run_id])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(
        t.contains("Error") && t.contains("ended before the run did"),
        "{t}"
    );
    // Only the new run's committed output is there.
    assert!(
        data_files(dir.path()).iter().all(|f| !f.contains(&run_id)),
        "{:?}",
        data_files(dir.path())
    );
}
