//! One state machine, two engines: the same flows on the embedded engine and on the deployed
//! stack (real binaries, IAM-enforced roles, the independent ASL interpreter) give the same
//! object keys (modulo prefix and run id), the same rows and schema, and the same run record
//! counts.

use ferry::flow::Flow;
use ferry::local::asl::NoopObserver;
use ferry::local::{embedded_deps, Engine};
use ferry::model::RunRecord;
use ferry::steps::start_run::RunRequest;
use ferry_tests::stack::check::pyarrow_read;
use ferry_tests::stack::Stack;
use serde_json::{json, Value};
use std::sync::Arc;

struct Case {
    name: &'static str,
    yaml: String,
    format: &'static str,
    sort: &'static str,
}

/// `prefix` is where the engine writes; the rest of the flow is identical.
fn cases(bucket: &str, prefix: &str, api: &str, zendesk: &str, profile: &str) -> Vec<Case> {
    let root = ferry_tests::stack::repo_root();
    let quickstart = std::fs::read_to_string(root.join("examples/flows/sample-crm.yaml"))
        .unwrap()
        .replace("name: sample-crm-accounts", "name: crm")
        // Fixed data: the sample's timestamps otherwise follow each run's window end.
        .replace(
            "properties: { records: 50000 }",
            "properties: { records: 50000, as_of: \"2026-11-01T00:00:00Z\" }",
        )
        .replace(
            "local: ferry-out",
            &format!("s3: {{ bucket: {bucket}, prefix: {prefix} }}"),
        )
        .replace(
            "error_location: ferry-out/_rejected",
            &format!("error_location: s3://{bucket}/{prefix}/_rejected"),
        );
    let zd = std::fs::read_to_string(root.join("examples/flows/zendesk-tickets.yaml"))
        .unwrap()
        .replace("subdomain: acme", &format!("base_url: {zendesk}"))
        .replace("profile: zendesk-acme", &format!("profile: {profile}"))
        .replace(
            "local: ferry-out",
            &format!("s3: {{ bucket: {bucket}, prefix: {prefix} }}"),
        );
    vec![
        Case {
            name: "crm",
            yaml: quickstart,
            format: "parquet",
            sort: "id",
        },
        Case {
            name: "tickets",
            yaml: format!(
                r#"
name: tickets
source:
  connector: rest
  entity: tickets
  properties:
    base_url: {api}
    endpoints:
      tickets: {{ path: /cursor/tickets, records: "$.data[*]", params: {{ limit: "30" }},
                 paginator: {{ type: cursor, token_path: "$.meta.next_cursor", param: cursor, has_more_path: "$.meta.has_more" }} }}
  chunk: {{ records: 90 }}
destination:
  s3: {{ bucket: {bucket}, prefix: {prefix} }}
  format: csv
  compression: gzip
tasks:
  - map_all: {{}}
trigger: {{ on_demand: {{}} }}
"#
            ),
            format: "csv",
            sort: "id",
        },
        Case {
            name: "parts",
            yaml: format!(
                r#"
name: parts
source:
  connector: sample
  entity: accounts
  properties: {{ records: 30000, as_of: "2026-01-01T00:00:00Z" }}
  incremental: {{ field: updated_at, first_execution_from: "2025-01-01T00:00:00Z" }}
  chunk: {{ records: 7000 }}
destination:
  s3: {{ bucket: {bucket}, prefix: {prefix} }}
  format: jsonl
  compression: none
  layout: {{ partition_by: [country], date: none }}
  file_size_mb: 1
  error_location: s3://{bucket}/{prefix}/_rejected
tasks:
  - map_all: {{ exclude: [internal_notes] }}
  - validate: {{ field: industry, check: non_null }}
trigger: {{ on_demand: {{}} }}
"#
            ),
            format: "jsonl",
            sort: "id",
        },
        Case {
            name: "zendesk-tickets",
            yaml: zd,
            format: "jsonl",
            sort: "id",
        },
    ]
}

/// Keys of a run, with the engine's prefix and the run id taken out.
fn normalized(keys: &[String], prefix: &str, run_id: &str) -> Vec<String> {
    let mut out: Vec<String> = keys
        .iter()
        .map(|k| k.strip_prefix(prefix).unwrap_or(k).replace(run_id, "<run>"))
        .collect();
    out.sort();
    out
}

fn counts(r: &RunRecord) -> Value {
    json!({
        "status": r.status.as_str(),
        "mode": format!("{:?}", r.mode),
        "processed": r.records_processed,
        "filtered": r.records_filtered,
        "rejected": r.records_rejected,
        "written": r.records_written,
        "files": r.files_written,
        "chunks": r.chunks,
        "bytes_written": r.bytes_written,
        "schema_version": r.schema_version,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_embedded_engine_and_the_deployed_stack_write_the_same_output() {
    use ferry_tests::saas::zendesk::{ZendeskMock, ZendeskMockConfig};
    use ferry_tests::{Mock, MockConfig};
    let stack = Stack::deploy().await;
    let bucket = stack.output_bucket.clone();
    let api = Mock::start(MockConfig {
        tickets: 200,
        ..Default::default()
    })
    .await;
    let zd = ZendeskMock::start(ZendeskMockConfig {
        tickets: 64,
        ..Default::default()
    })
    .await;
    let profile = format!("zendesk-{}", stack.name);
    let secret = ferry::ports::Secret::new(
        json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "agent@acme.test/token", "password": "zd-token-1"}),
    );

    // The embedded engine, writing to the same bucket (through moto) under another prefix.
    let home = tempfile::tempdir().unwrap();
    let base = tempfile::tempdir().unwrap();
    let s3 = Arc::new(ferry::adapters::s3::S3Resolver::new(
        ferry::adapters::aws::s3_client(&stack.conf),
        None,
    ));
    let local = embedded_deps(home.path(), base.path(), Some(s3)).unwrap();
    local.secrets.put_secret(&profile, &secret).await.unwrap();
    stack
        .deps()
        .secrets
        .put_secret(&profile, &secret)
        .await
        .unwrap();
    let engine = Engine::new(local.clone()).unwrap();

    let deployed = cases(&bucket, "deployed", &api.url(), &zd.url(), &profile);
    let embedded = cases(&bucket, "embedded", &api.url(), &zd.url(), &profile);
    for (d, e) in deployed.iter().zip(&embedded) {
        // Deployed.
        let flow = Flow::parse(&d.yaml, "d.yaml").unwrap();
        stack
            .deps()
            .flows
            .put_flow(&flow, chrono::Utc::now())
            .await
            .unwrap();
        let exec = stack
            .run(&json!({"flow": d.name, "trigger": "on_demand"}))
            .await;
        let got = stack
            .assert_committed(
                &exec,
                &format!("deployed/{}/", d.name),
                d.format,
                Some(d.sort),
            )
            .await;
        // Embedded.
        let flow = Flow::parse(&e.yaml, "e.yaml").unwrap();
        local
            .flows
            .put_flow(&flow, chrono::Utc::now())
            .await
            .unwrap();
        let out = engine
            .run(
                RunRequest {
                    flow: e.name.into(),
                    trigger: None,
                    mode: None,
                    window: None,
                },
                &NoopObserver,
            )
            .await;
        assert!(
            out.succeeded(),
            "{}: embedded run failed: {:?}",
            e.name,
            out.failure
        );
        let rec = out.record.expect("embedded run record");
        let (_, manifest_key) =
            ferry_tests::stack::check::split_uri(rec.manifest_key.as_deref().unwrap());
        let manifest: ferry::model::Manifest =
            serde_json::from_slice(&stack.get(&bucket, &manifest_key).await).unwrap();
        let keys: Vec<String> = manifest.objects.iter().map(|o| o.key.clone()).collect();
        let dir = stack.dir().join(format!("embedded-{}", e.name));
        std::fs::create_dir_all(&dir).unwrap();
        let files = stack.download(&bucket, &keys, &dir).await;
        let read = pyarrow_read(&files, e.format, Some(e.sort));

        assert_eq!(
            normalized(&got.keys, "deployed/", &got.record.run_id),
            normalized(&keys, "embedded/", &rec.run_id),
            "{}: object keys",
            d.name
        );
        assert_eq!(
            got.manifest_key
                .replace("deployed/", "")
                .replace(&got.record.run_id, "<run>"),
            manifest_key
                .replace("embedded/", "")
                .replace(&rec.run_id, "<run>"),
            "{}: manifest key",
            d.name
        );
        assert_eq!(got.read["schema"], read["schema"], "{}: schema", d.name);
        assert_eq!(got.read["rows"], read["rows"], "{}: rows", d.name);
        assert!(
            got.read["records"] == read["records"],
            "{}: the rows differ",
            d.name
        );
        assert_eq!(
            counts(&got.record),
            counts(&rec),
            "{}: run record counts",
            d.name
        );
        // The rejected records match too (the parts flow).
        let rej_d = stack
            .keys(&bucket, &format!("deployed/_rejected/{}/", d.name))
            .await;
        let rej_e = stack
            .keys(&bucket, &format!("embedded/_rejected/{}/", e.name))
            .await;
        assert_eq!(
            normalized(&rej_d, "deployed/", &got.record.run_id),
            normalized(&rej_e, "embedded/", &rec.run_id),
            "{}: rejected record files",
            d.name
        );
    }
    assert!(stack.denials().is_empty(), "{:#?}", stack.denials());
}
