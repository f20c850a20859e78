//! The `ferry` command as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

fn ferry(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .current_dir(dir)
        .env("FERRY_HOME", dir.join(".ferry"))
        .env_remove("FERRY_LOG")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const FLOW: &str = r#"
name: cli-test
source:
  connector: sample
  entity: contacts
  properties: { records: 300 }
  incremental: { field: updated_at, first_execution_from: 2000-01-01T00:00:00Z }
destination:
  local: out
  format: jsonl
"#;

#[test]
fn validate_names_the_field_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        FLOW.replace("format: jsonl", "format: xlsx")
            .replace("entity: contacts", "entity: contacts\n  colour: blue"),
    )
    .unwrap();
    let o = ferry(dir.path(), &["validate", "bad.yaml"]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("source.colour") && t.contains("unknown field"),
        "{t}"
    );

    std::fs::write(
        dir.path().join("bad2.yaml"),
        FLOW.replace("connector: sample", "connector: oracle"),
    )
    .unwrap();
    let o = ferry(dir.path(), &["validate", "bad2.yaml"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("source.connector: unknown connector 'oracle'"),
        "{}",
        text(&o)
    );

    std::fs::write(dir.path().join("good.yaml"), FLOW).unwrap();
    let o = ferry(dir.path(), &["validate", "good.yaml"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !dir.path().join(".ferry").exists(),
        "validate writes nothing"
    );
}

#[test]
fn malformed_flow_file_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        "name: x\nsource: [unclosed\n",
    )
    .unwrap();
    let o = ferry(dir.path(), &["run", "broken.yaml"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not valid YAML"), "{}", text(&o));
    assert!(!dir.path().join("out").exists());
    let o = ferry(dir.path(), &["flows", "list"]);
    assert!(text(&o).contains("no flows"), "{}", text(&o));
}

#[test]
fn run_json_then_flows_and_runs_commands() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.yaml"), FLOW).unwrap();
    let o = ferry(dir.path(), &["run", "f.yaml", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let rec: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rec["status"], "Successful");
    assert_eq!(rec["records_processed"], 300);
    assert_eq!(rec["records_written"], 300);
    let run_id = rec["run_id"].as_str().unwrap().to_string();
    let manifest = rec["manifest_key"].as_str().unwrap();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    let lines: usize = m["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            std::fs::read_to_string(o["uri"].as_str().unwrap())
                .unwrap()
                .lines()
                .count()
        })
        .sum();
    assert_eq!(lines, 300);

    let o = ferry(dir.path(), &["flows", "list"]);
    assert!(
        text(&o).contains("cli-test") && text(&o).contains("v1"),
        "{}",
        text(&o)
    );
    let o = ferry(dir.path(), &["runs", "list", "cli-test"]);
    assert!(
        text(&o).contains(&run_id) && text(&o).contains("Successful"),
        "{}",
        text(&o)
    );
    let o = ferry(dir.path(), &["runs", "get", &run_id]);
    assert!(o.status.success());
    let o = ferry(dir.path(), &["flows", "get", "cli-test"]);
    assert!(text(&o).contains("connector: sample"), "{}", text(&o));

    // A changed definition is a new version.
    std::fs::write(
        dir.path().join("f.yaml"),
        FLOW.replace("records: 300", "records: 400"),
    )
    .unwrap();
    let o = ferry(dir.path(), &["flows", "put", "f.yaml"]);
    assert!(text(&o).contains("version 2"), "{}", text(&o));

    let o = ferry(dir.path(), &["flows", "delete", "cli-test"]);
    assert!(o.status.success());
    let o = ferry(dir.path(), &["run", "cli-test"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not registered"), "{}", text(&o));
}

#[test]
fn a_failed_run_exits_non_zero_with_the_error() {
    let dir = tempfile::tempdir().unwrap();
    // A missing profile is caught before anything is registered or run.
    std::fs::write(
        dir.path().join("f.yaml"),
        FLOW.replace("entity: contacts", "profile: missing\n  entity: contacts"),
    )
    .unwrap();
    let o = ferry(dir.path(), &["run", "f.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(t.contains("source.profile") && t.contains("missing"), "{t}");
    assert!(!dir.path().join("out").exists() && !dir.path().join(".ferry").exists());

    // A run that fails while running: the record, then the error, exit code 1.
    std::fs::write(
        dir.path().join("f.yaml"),
        format!("{FLOW}tasks:\n  - validate: {{ field: phone, check: non_null, action: terminate_run }}\n"),
    )
    .unwrap();
    let o = ferry(dir.path(), &["run", "f.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("status     Error") && t.contains("SourceRejected"),
        "{t}"
    );
    assert!(t.contains("failed the check on 'phone'"), "{t}");
}
