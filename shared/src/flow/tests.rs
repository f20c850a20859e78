use super::*;

const EXAMPLE: &str = r#"
name: sample-crm-accounts
description: Synthetic CRM accounts into Parquet, incrementally
source:
  connector: sample
  profile: null
  entity: accounts
  properties: { records: 50000 }
  incremental:
    field: updated_at
    lookback: 10m
    first_execution_from: 2000-01-01T00:00:00Z
destination:
  local: ferry-out
  format: parquet
  compression: zstd
  layout:
    prefix_type: path
    date: day
    hierarchy: [execution_id]
    partition_by: [country]
  file_size_mb: 128
  error_location: ferry-out/_rejected
tasks:
  - map_all: { exclude: [internal_notes] }
  - filter: { field: status, op: not_equal, value: deleted }
  - mask: { field: phone, keep_last: 4 }
trigger:
  on_demand: {}
tags: { owner: data-eng }
"#;

fn errors_of(text: &str) -> Vec<FieldError> {
    match Flow::parse(text, "flow.yaml") {
        Ok(_) => vec![],
        Err(e) => e.errors(),
    }
}

#[test]
fn design_example_is_valid() {
    let flow = Flow::parse(EXAMPLE, "flow.yaml").unwrap();
    assert_eq!(flow.name, "sample-crm-accounts");
    assert_eq!(
        flow.source.incremental.as_ref().unwrap().lookback,
        Some(Duration::from_secs(600))
    );
    assert_eq!(flow.tasks.len(), 3);
    assert_eq!(flow.destination.layout.partition_by, vec!["country"]);
    assert_eq!(flow.default_mode(), PullMode::Incremental);
    // Round trip through YAML and JSON gives the same flow.
    let again = Flow::parse(&flow.to_yaml(), "again.yaml").unwrap();
    assert_eq!(again, flow);
    let json = serde_json::to_string(&flow).unwrap();
    assert_eq!(Flow::parse(&json, "again.json").unwrap(), flow);
}

#[test]
fn unknown_field_names_its_path() {
    let text = EXAMPLE.replace("    lookback: 10m", "    lookback: 10m\n    lookbak: 5m");
    let errs = errors_of(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].path, "source.incremental.lookbak");
    assert!(errs[0].message.contains("lookbak"), "{}", errs[0].message);
}

#[test]
fn bad_duration_names_field_and_fix() {
    let errs = errors_of(&EXAMPLE.replace("lookback: 10m", "lookback: ten minutes"));
    assert_eq!(errs[0].path, "source.incremental.lookback");
    assert!(errs[0].message.contains("10m"), "{}", errs[0].message);
}

#[test]
fn unknown_connector_lists_known_ones() {
    let errs = errors_of(&EXAMPLE.replace("connector: sample", "connector: oracle"));
    assert_eq!(errs[0].path, "source.connector");
    assert!(errs[0].message.contains("salesforce"));
}

#[test]
fn profile_required_for_saas_connectors() {
    let text = EXAMPLE
        .replace("connector: sample", "connector: zendesk")
        .replace("properties: { records: 50000 }", "");
    let errs = errors_of(&text);
    assert!(errs.iter().any(|e| e.path == "source.profile"), "{errs:?}");
}

#[test]
fn unknown_task_kind_is_refused_with_its_index() {
    let text = EXAMPLE.replace(
        "  - mask: { field: phone, keep_last: 4 }",
        "  - explode: { field: phone }",
    );
    let errs = errors_of(&text);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].path.starts_with("tasks[2]"), "{errs:?}");
}

#[test]
fn destination_needs_exactly_one_location() {
    let errs = errors_of(&EXAMPLE.replace(
        "  local: ferry-out\n",
        "  local: ferry-out\n  s3: { bucket: my-lake }\n",
    ));
    assert!(
        errs.iter()
            .any(|e| e.path == "destination" && e.message.contains("exactly one")),
        "{errs:?}"
    );
    let errs = errors_of(&EXAMPLE.replace("  local: ferry-out\n", "  s3: { bucket: My_Lake }\n"));
    assert!(
        errs.iter().any(|e| e.path == "destination.s3.bucket"),
        "{errs:?}"
    );
}

#[test]
fn schedule_is_checked() {
    let text = EXAMPLE.replace(
        "  on_demand: {}",
        "  scheduled: { expression: \"rate(1 hours)\" }",
    );
    let errs = errors_of(&text);
    assert_eq!(errs[0].path, "trigger.scheduled.expression", "{errs:?}");
    let text = EXAMPLE.replace(
        "  on_demand: {}",
        "  scheduled: { expression: \"rate(1 hour)\", mode: complete }",
    );
    let flow = Flow::parse(&text, "f.yaml").unwrap();
    assert_eq!(flow.default_mode(), PullMode::Complete);
}

#[test]
fn incremental_schedule_needs_incremental_source() {
    let mut v: serde_json::Value = serde_yaml::from_str(EXAMPLE).unwrap();
    v["source"].as_object_mut().unwrap().remove("incremental");
    v["trigger"] = serde_json::json!({"scheduled": {"expression": "rate(1 hour)"}});
    let errs = Flow::from_value(v, "f").unwrap_err().errors();
    assert_eq!(errs[0].path, "trigger.scheduled.mode");
}

#[test]
fn syntax_error_says_format() {
    let err = Flow::parse("name: [unclosed", "f.yaml").unwrap_err();
    assert!(err.to_string().contains("not valid YAML"), "{err}");
}

#[test]
fn compression_must_fit_format() {
    let text = EXAMPLE.replace("format: parquet", "format: csv");
    let errs = errors_of(&text);
    assert!(
        errs.iter().any(|e| e.path == "destination.compression"),
        "{errs:?}"
    );
}

#[test]
fn every_problem_in_one_pass() {
    let text = EXAMPLE
        .replace("name: sample-crm-accounts", "name: x")
        .replace("lookback: 10m", "lookback: ten")
        .replace("format: parquet", "format: xlsx")
        .replace("file_size_mb: 128", "file_size_mb: big")
        .replace("op: not_equal", "op: nope")
        .replace("keep_last: 4", "keep_last: four")
        .replace(
            "tags: { owner: data-eng }",
            "tags: { owner: data-eng }\ncolour: blue",
        );
    let errs = errors_of(&text);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    for p in [
        "name",
        "source.incremental.lookback",
        "destination.format",
        "destination.file_size_mb",
        "tasks[1].filter.op",
        "tasks[2].mask.keep_last",
        "colour",
    ] {
        assert!(paths.contains(&p), "{p} missing: {errs:?}");
    }
    assert_eq!(errs.len(), 7, "{errs:?}");
}

#[test]
fn type_errors_name_the_form_and_an_example() {
    let errs = errors_of(&EXAMPLE.replace("file_size_mb: 128", "file_size_mb: big"));
    assert_eq!(errs[0].path, "destination.file_size_mb");
    assert_eq!(
        errs[0].message,
        "expected a whole number (0 or more), found the text 'big'; write e.g. `file_size_mb: 128`"
    );
    let errs = errors_of(&EXAMPLE.replace("format: parquet", "format: parket"));
    assert!(
        errs[0].message.contains("did you mean `parquet`?"),
        "{errs:?}"
    );
    let errs =
        errors_of(&EXAMPLE.replace("    lookback: 10m", "    lookback: 10m\n    lookbak: 5m"));
    assert!(
        errs[0].message.contains("did you mean `lookback`?"),
        "{errs:?}"
    );
}

#[test]
fn time_forms_and_time_zones() {
    let flow = Flow::parse(
        &EXAMPLE.replace("2000-01-01T00:00:00Z", "2000-01-01"),
        "f.yaml",
    )
    .unwrap();
    assert_eq!(
        flow.source
            .incremental
            .unwrap()
            .first_execution_from
            .unwrap()
            .to_rfc3339(),
        "2000-01-01T00:00:00+00:00"
    );
    let errs = errors_of(&EXAMPLE.replace("2000-01-01T00:00:00Z", "yesterday"));
    assert_eq!(errs[0].path, "source.incremental.first_execution_from");
    assert!(errs[0].message.contains("2026-11-01"), "{errs:?}");
    for (tz, ok) in [("CET", true), ("GMT", true), ("Foo/Bar", false)] {
        let text = EXAMPLE.replace(
            "  on_demand: {}",
            &format!("  scheduled: {{ expression: \"rate(1 hour)\", timezone: {tz} }}"),
        );
        assert_eq!(errors_of(&text).is_empty(), ok, "{tz}");
        if ok {
            assert_eq!(Flow::parse(&text, "f").unwrap().time_zone().name(), tz);
        }
    }
}

#[test]
fn local_directories_stay_under_the_working_directory() {
    for (local, ok) in [
        ("ferry-out", true),
        ("a/../b", true),
        ("./out", true),
        ("../out", false),
        ("a/../../out", false),
        ("/srv/out", false),
    ] {
        let errs = errors_of(&EXAMPLE.replace("local: ferry-out", &format!("local: {local}")));
        assert_eq!(
            errs.iter().all(|e| e.path != "destination.local"),
            ok,
            "{local}: {errs:?}"
        );
    }
    let text = EXAMPLE.replace("local: ferry-out", "local: ../out\n  allow_outside: true");
    assert!(errors_of(&text).is_empty());
    let errs = errors_of(&EXAMPLE.replace(
        "error_location: ferry-out/_rejected",
        "error_location: ../rejected",
    ));
    assert_eq!(errs[0].path, "destination.error_location", "{errs:?}");
}

#[test]
fn profile_names_are_checked() {
    let text = EXAMPLE.replace("profile: null", "profile: a/../x");
    let errs = errors_of(&text);
    assert!(
        errs.iter()
            .any(|e| e.path == "source.profile" && e.message.contains("no `/`")),
        "{errs:?}"
    );
}
