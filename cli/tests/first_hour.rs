//! A user's first hour with `ferry` (issue 18): validation that finds everything at once, safe
//! backfills, a confined local destination, JSON with every key, `runs list`, closed pipes,
//! help text, colour, profiles. Each case checks the exit code, the message, and that nothing
//! was written where nothing should be.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn ferry(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .current_dir(dir)
        .env("FERRY_HOME", dir.join(".ferry"))
        .env_remove("FERRY_LOG")
        .env_remove("FERRY_REMOTE")
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

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

const FLOW: &str = r#"name: cli-test
source:
  connector: sample
  entity: accounts
  properties: { records: 300, as_of: "2026-01-01T00:00:00Z" }
  incremental: { field: updated_at, first_execution_from: 2000-01-01T00:00:00Z }
destination:
  local: out
  format: jsonl
"#;

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::write(dir.join(name), body).unwrap();
}

#[test]
fn twelve_mistakes_twelve_messages_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/twelve-mistakes.yaml");
    std::fs::copy(&fixture, d.join("bad.yaml")).unwrap();
    let o = ferry(d, &["validate", "bad.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    let items: Vec<&str> = t.lines().filter(|l| l.starts_with("  - line ")).collect();
    assert_eq!(items.len(), 12, "{t}");
    for want in [
        "line 2: name: 'bad flow!' is not a valid flow name",
        "source.incremental.lookback: 'ten minutes' is not a duration",
        "source.incremental.first_execution_from: 'yesterday' is not a time; write RFC 3339",
        "source.chunk.records: expected a whole number (0 or more), found the text 'big'; write e.g. `records: 250000`",
        "source.chunk.page_sise: unknown field `page_sise`; did you mean `page_size`?",
        "destination.local: '../../escape-out' climbs out of the working directory",
        "destination.format: 'xlsx' is not a value here; use one of parquet, csv, jsonl",
        "destination.layout.date: 'weekly' is not a value here",
        "tasks[1].filter.op: 'not_eq' is not a value here; did you mean `not_equal`?",
        "tasks[2].mask.keep_last: expected a whole number (0 or more), found the text 'four'",
        "trigger.scheduled.expression: rate(1 hours): write `rate(1 hour)`",
        "trigger.scheduled.timezone: 'Foo/Bar' is not an IANA time zone name",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
    // --json: the same twelve, each with its line; nothing was created.
    let o = ferry(d, &["validate", "bad.yaml", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), 12);
    assert!(v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["line"].is_u64()));
    assert_eq!(v["error"]["name"], "InvalidFlow");
    assert!(!d.join(".ferry").exists() && !d.join("../../escape-out").exists());
}

#[test]
fn syntax_errors_have_positions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "broken.yaml", "name: x\nsource: [unclosed\n");
    let o = ferry(d, &["validate", "broken.yaml", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert!(v["problems"][0]["line"].is_u64(), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid YAML"),
        "{v}"
    );
}

#[test]
fn time_zones_and_time_forms() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (tz, ok) in [
        ("CET", true),
        ("GMT", true),
        ("Europe/Paris", true),
        ("Foo/Bar", false),
    ] {
        write(
            d,
            "f.yaml",
            &format!(
                "{FLOW}trigger:\n  scheduled: {{ expression: \"rate(1 hour)\", timezone: {tz} }}\n"
            ),
        );
        let o = ferry(d, &["validate", "f.yaml", "--offline"]);
        assert_eq!(o.status.success(), ok, "{tz}: {}", text(&o));
        if !ok {
            assert!(
                text(&o).contains("'Foo/Bar' is not an IANA time zone name"),
                "{}",
                text(&o)
            );
        }
    }
    write(
        d,
        "f.yaml",
        &FLOW.replace("2000-01-01T00:00:00Z", "2000-01-01"),
    );
    assert!(ferry(d, &["validate", "f.yaml", "--offline"])
        .status
        .success());
    assert!(!d.join(".ferry").exists());
}

#[test]
fn validate_checks_the_source_unless_offline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "f.yaml",
        &format!(
            "{}tasks:\n  - filter: {{ field: employees, op: greater, value: lots }}\n  - filter: {{ field: colour, op: equal, value: red }}\n",
            FLOW.replace("field: updated_at", "field: name")
        ),
    );
    let o = ferry(d, &["validate", "f.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("source.incremental.field: 'name' is a string field, not a datetime"),
        "{t}"
    );
    assert!(
        t.contains("tasks[0].filter.value") && t.contains("lots"),
        "{t}"
    );
    assert!(
        t.contains("tasks[1].filter.field") && t.contains("colour"),
        "{t}"
    );
    let o = ferry(d, &["validate", "f.yaml", "--offline"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("not checked against the source"));

    // A profile that does not exist.
    write(
        d,
        "z.yaml",
        "name: zd\nsource:\n  connector: zendesk\n  profile: nope\n  entity: tickets\n  properties: { subdomain: acme }\ndestination:\n  local: out\n",
    );
    let o = ferry(d, &["validate", "z.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("source.profile") && text(&o).contains("no such profile"),
        "{}",
        text(&o)
    );
    assert!(!d.join(".ferry").exists() && !d.join("out").exists());
}

#[test]
fn run_validates_fully_before_registering() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "f.yaml",
        &format!("{FLOW}tasks:\n  - filter: {{ field: employees, op: greater, value: lots }}\n"),
    );
    let o = ferry(d, &["run", "f.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("tasks[0].filter.value") && t.contains("nothing was registered"),
        "{t}"
    );
    assert!(!t.contains("registered flow"), "{t}");
    assert!(!d.join(".ferry").exists() && !d.join("out").exists());
    // --json: an error object.
    let o = ferry(d, &["run", "f.yaml", "--json"]);
    let v = json(&o);
    assert_eq!(v["error"]["name"], "InvalidFlow");
    assert_eq!(v["error"]["problems"][0]["path"], "tasks[0].filter.value");
}

#[test]
fn backfills_cannot_hurt() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "f.yaml", FLOW);
    let o = ferry(d, &["run", "f.yaml", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let first = json(&o);
    let watermark = first["watermark_after"].clone();
    assert!(watermark.is_string());

    // --to alone would be an incremental run: refused, naming the flags.
    let o = ferry(d, &["run", "cli-test", "--to", "2025-06-01"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--from"), "{}", text(&o));
    for (args, want) in [
        (
            vec!["--from", "2099-01-01"],
            "--from 2099-01-01T00:00:00+00:00 is in the future",
        ),
        (
            vec!["--from", "2025-01-01", "--to", "2099-01-01"],
            "--to 2099-01-01T00:00:00+00:00 is in the future",
        ),
        (
            vec!["--from", "2025-06-02", "--to", "2025-06-01"],
            "is not before --to",
        ),
        (
            vec!["--from", "yesterday"],
            "--from: 'yesterday' is not a time",
        ),
    ] {
        let mut a = vec!["run", "cli-test"];
        a.extend(args);
        let o = ferry(d, &a);
        assert_eq!(o.status.code(), Some(1), "{a:?}");
        assert!(text(&o).contains(want), "{a:?}: {}", text(&o));
    }
    let runs = json(&ferry(d, &["runs", "list", "cli-test", "--json"]));
    assert_eq!(
        runs.as_array().unwrap().len(),
        1,
        "refused backfills start nothing"
    );

    // A date and a local time; the watermark does not move.
    let o = ferry(
        d,
        &[
            "run",
            "cli-test",
            "--from",
            "2025-06-01",
            "--to",
            "2025-09-01T10:00",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let b = json(&o);
    assert_eq!(b["mode"], "backfill");
    assert_eq!(b["window"]["start"], "2025-06-01T00:00:00Z");
    assert_eq!(b["window"]["end"], "2025-09-01T10:00:00Z");
    let o = ferry(d, &["run", "cli-test", "--from", "2025-06-01"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("watermark  unchanged"), "{}", text(&o));
    let flows = json(&ferry(d, &["flows", "list", "--json"]));
    assert_eq!(flows[0]["watermark"], watermark);
}

#[test]
fn local_destination_is_confined() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    write(
        &work,
        "f.yaml",
        &FLOW.replace("local: out", "local: ../escape-out"),
    );
    let o = ferry(&work, &["run", "f.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("destination.local: '../escape-out' climbs out of the working directory"),
        "{}",
        text(&o)
    );
    assert!(!dir.path().join("escape-out").exists() && !work.join(".ferry").exists());
    write(
        &work,
        "f.yaml",
        &FLOW.replace("local: out", "local: /tmp/ferry-abs"),
    );
    let o = ferry(&work, &["validate", "f.yaml", "--offline"]);
    assert!(text(&o).contains("is an absolute path"), "{}", text(&o));
    write(
        &work,
        "f.yaml",
        &FLOW.replace("local: out", "local: ../escape-out\n  allow_outside: true"),
    );
    let o = ferry(&work, &["validate", "f.yaml", "--offline"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn json_listings_runs_list_pushdown_and_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The quickstart's filter is pushed down to the sample source: the summary says so.
    write(
        d,
        "f.yaml",
        &format!("{FLOW}tasks:\n  - filter: {{ field: status, op: not_equal, value: deleted }}\n"),
    );
    let o = ferry(d, &["run", "f.yaml"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("pushdown   filter `status not_equal deleted` applied by the source"),
        "{t}"
    );
    let o = ferry(d, &["run", "cli-test", "--complete", "--json"]);
    let rec = json(&o);
    for k in [
        "run_id",
        "status",
        "mode",
        "window",
        "records_processed",
        "bytes_written",
        "manifest_key",
        "max_cursor",
        "watermark_after",
        "warnings",
        "error",
        "duration_seconds",
    ] {
        assert!(rec.get(k).is_some(), "{k} missing: {rec}");
    }
    assert!(rec["error"].is_null() && rec["warnings"].is_array());

    // runs list: newest first, mode, duration, human sizes.
    let o = ferry(d, &["runs", "list", "cli-test"]);
    assert!(o.status.success());
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<&str> = t.lines().collect();
    assert!(
        lines[0].contains("MODE") && lines[0].contains("DURATION"),
        "{t}"
    );
    assert!(
        lines[1].contains("complete") && lines[2].contains("incremental"),
        "{t}"
    );
    assert!(lines[1].contains(" KiB") || lines[1].contains(" B"), "{t}");
    let runs = json(&ferry(d, &["runs", "list", "cli-test", "--json"]));
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert!(runs[0]["duration_seconds"].is_number());
    assert!(runs[0]["started_at"].as_str() >= runs[1]["started_at"].as_str());

    // An unknown flow is an error, in text and JSON.
    let o = ferry(d, &["runs", "list", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no flow 'nope'"), "{}", text(&o));
    let o = ferry(d, &["runs", "list", "nope", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["error"]["name"], "NotFound");

    let flows = json(&ferry(d, &["flows", "list", "--json"]));
    for k in [
        "name",
        "version",
        "status",
        "connector",
        "entity",
        "trigger",
        "mode",
        "watermark",
        "last_run_id",
        "updated_at",
    ] {
        assert!(flows[0].get(k).is_some(), "{k} missing: {flows}");
    }
    // A usage error with --json is a JSON error too.
    let o = ferry(d, &["runs", "list", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(json(&o)["error"]["name"], "InvalidArgument");
    let profiles = json(&ferry(d, &["profiles", "list", "--json"]));
    assert_eq!(profiles, serde_json::json!([]));

    // A closed pipe ends the command quietly (it used to panic with exit 101).
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; '{}' runs list cli-test | true; echo \"status=${{PIPESTATUS[0]}}\"",
            env!("CARGO_BIN_EXE_ferry")
        ))
        .current_dir(d)
        .env("FERRY_HOME", d.join(".ferry"))
        .output()
        .unwrap();
    let t = text(&o);
    assert!(t.contains("status=0") && !t.contains("panicked"), "{t}");
}

#[test]
fn help_text_and_colour() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let long = text(&ferry(d, &["run", "--help"]));
    assert!(
        long.contains("Remote mode") && long.contains("--table"),
        "{long}"
    );
    let short = text(&ferry(d, &["run", "-h"]));
    assert!(
        short.contains("--remote") && !short.contains("--table"),
        "{short}"
    );
    for cmd in ["validate", "profiles", "entities"] {
        let t = text(&ferry(d, &[cmd, "--help"]));
        assert!(
            !t.contains("--table") && !t.contains("--state-machine-arn"),
            "{cmd}: {t}"
        );
    }
    // Logs on stderr have no colour codes when stderr is not a terminal.
    write(d, "f.yaml", FLOW);
    let o = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "f.yaml"])
        .current_dir(d)
        .env("FERRY_HOME", d.join(".ferry"))
        .env("FERRY_LOG", "info")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("INFO"), "{err}");
    assert!(!err.contains('\x1b'), "colour codes in: {err:?}");
}

#[test]
fn profiles_put_list_delete() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secrets = d.join(".ferry/secrets.json");
    for (name, body, extra, want) in [
        ("zd", "[1, 2]", vec![], "must be a JSON object"),
        ("zd", r#"{"type": "bogus"}"#, vec![], "bogus"),
        (
            "zd",
            r#"{"type": "basic", "username": "u", "password": "t0ps3cret"}"#,
            vec!["--connector", "zendesk"],
            "pass --host (e.g. --host acme.zendesk.com)",
        ),
        (
            "a/../x",
            r#"{"type": "bearer", "hosts": ["127.0.0.1"], "token": "t0ps3cret"}"#,
            vec![],
            "'a/../x' is not a profile name",
        ),
        (
            "sl",
            r#"{"type": "basic", "hosts": ["127.0.0.1"], "username": "u", "password": "t0ps3cret"}"#,
            vec!["--connector", "slack"],
            "not a credential the slack connector takes",
        ),
        (
            "zd",
            r#"{"type": "basic", "hosts": ["127.0.0.1"], "username": "u", "pasword": "t0ps3cret"}"#,
            vec!["--connector", "zendesk"],
            "pasword",
        ),
    ] {
        write(d, "creds.json", body);
        let mut args = vec!["profiles", "put", name, "--file", "creds.json"];
        args.extend(extra);
        let o = ferry(d, &args);
        assert_eq!(o.status.code(), Some(1), "{body}");
        assert!(text(&o).contains(want), "{body}: {}", text(&o));
        assert!(!text(&o).contains("t0ps3cret"));
        assert!(!secrets.exists(), "{body}: nothing stored");
    }
    write(
        d,
        "creds.json",
        r#"{"type": "basic", "hosts": ["127.0.0.1"], "username": "agent@acme.test/token", "password": "t0ps3cret"}"#,
    );
    let o = ferry(
        d,
        &[
            "profiles",
            "put",
            "zd",
            "--file",
            "creds.json",
            "--connector",
            "zendesk",
            "--property",
            "subdomain=acme",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = ferry(d, &["profiles", "list"]);
    let t = text(&o);
    assert!(
        t.contains("zd") && t.contains("zendesk") && t.contains("basic"),
        "{t}"
    );
    assert!(!t.contains("t0ps3cret") && !t.contains("agent@acme"), "{t}");
    let v = json(&ferry(d, &["profiles", "list", "--json"]));
    assert_eq!(
        v,
        serde_json::json!([{ "name": "zd", "connector": "zendesk", "auth_type": "basic", "hosts": ["127.0.0.1"] }])
    );
    assert!(ferry(d, &["profiles", "delete", "zd"]).status.success());
    let o = ferry(d, &["profiles", "delete", "zd"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no profile 'zd'"));
    assert!(!std::fs::read_to_string(&secrets)
        .unwrap()
        .contains("t0ps3cret"));
}
