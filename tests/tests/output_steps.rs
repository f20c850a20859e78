//! The output steps one by one: rejected records, retried writes, the manifest.

use ferry::flow::Flow;
use ferry::local::embedded_deps;
use ferry::model::{Manifest, PullMode};
use ferry::steps::{fetch_page, finalize, start_run, transform_batch, write_s3};

#[tokio::test(flavor = "multi_thread")]
async fn bad_records_go_to_the_error_location_and_retried_writes_do_not_duplicate() {
    let home = tempfile::tempdir().unwrap();
    let base = tempfile::tempdir().unwrap();
    let deps = embedded_deps(home.path(), base.path(), None).unwrap();
    let f = Flow::parse(
        r#"
name: rejects
source:
  connector: sample
  entity: accounts
  properties: { records: 500 }
destination:
  local: out
  format: jsonl
  error_location: errors/here
  aggregation: none
"#,
        "test",
    )
    .unwrap();
    deps.flows.put_flow(&f, chrono::Utc::now()).await.unwrap();
    let started = start_run::handle(
        &deps,
        start_run::StartRunInput {
            request: start_run::RunRequest {
                flow: "rejects".into(),
                mode: Some(PullMode::Complete),
                ..Default::default()
            },
            execution_id: "exec-1".into(),
            execution_name: "run-1".into(),
        },
    )
    .await
    .unwrap();
    let run = started.run;
    let fetched = fetch_page::handle(
        &deps,
        fetch_page::FetchInput {
            run: run.clone(),
            cursor: serde_json::Value::Null,
            chunk: 0,
            slice: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(fetched.records, 500);
    assert!(!fetched.has_more);
    // fetch-page staged the records decoded (Arrow). Stage them again as JSON lines (what a
    // source without declared fields stages), spoiling three: not JSON, a wrong type, not an
    // object; transform-batch decodes record by record and rejects only those.
    let (batch, rejects) = ferry::steps::staging::get_raw_chunk(&deps, &fetched.raw_key)
        .await
        .unwrap();
    assert!(rejects.is_empty());
    let mut raw = Vec::new();
    {
        let mut w = arrow::json::LineDelimitedWriter::new(&mut raw);
        w.write(&batch).unwrap();
        w.finish().unwrap();
    }
    let raw_key = ferry::steps::staging::raw_key(&run, 0);
    let mut lines: Vec<String> = String::from_utf8(raw)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines[10] = "{not json".into();
    lines[20] = lines[20].replace("\"employees\":", "\"employees\":\"many\",\"x\":");
    lines[30] = "[1,2,3]".into();
    deps.staging
        .put(
            &raw_key,
            (lines.join("\n") + "\n").into_bytes(),
            &Default::default(),
        )
        .await
        .unwrap();
    let t = transform_batch::handle(
        &deps,
        transform_batch::TransformInput {
            run: run.clone(),
            chunk: 0,
            raw_key: raw_key.clone(),
        },
    )
    .await
    .unwrap();
    assert_eq!(t.rows, 497);
    assert_eq!(t.rejected, 3);
    // The write, retried: same objects, same keys, one chunk result.
    let input = write_s3::WriteInput {
        run: run.clone(),
        chunk: 0,
        batch_key: Some(t.batch_key.clone()),
        rejected: t.rejected,
        flush: false,
    };
    let a = write_s3::handle(&deps, input.clone()).await.unwrap();
    let b = write_s3::handle(&deps, input).await.unwrap();
    assert_eq!(a, b);
    // write-s3 published the rejected records transform-batch staged.
    let rejected_path = base
        .path()
        .join("errors/here")
        .join(ferry::output::layout::rejected_key(
            "", "rejects", "run-1", 0,
        ));
    let rejected: Vec<serde_json::Value> = std::fs::read_to_string(&rejected_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rejected
            .iter()
            .map(|r| r["line"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![10, 20, 30]
    );
    assert_eq!(rejected[0]["record"], "{not json");
    assert!(
        rejected[1]["reason"].as_str().unwrap().contains("schema"),
        "{}",
        rejected[1]
    );
    assert_eq!(rejected[1]["record"]["employees"], "many");
    assert_eq!(rejected[2]["reason"], "not a JSON object");

    // The final flush ("Flush Output"), retried: the same last files.
    let flush = write_s3::WriteInput {
        run: run.clone(),
        chunk: 0,
        batch_key: None,
        rejected: 0,
        flush: true,
    };
    let a = write_s3::handle(&deps, flush.clone()).await.unwrap();
    let b = write_s3::handle(&deps, flush).await.unwrap();
    assert_eq!(a, b);
    let rec = finalize::handle(
        &deps,
        finalize::FinalizeInput {
            run: run.clone(),
            error: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(rec.records_rejected, 3);
    assert_eq!(rec.records_written, 497);
    let m: Manifest =
        serde_json::from_slice(&std::fs::read(rec.manifest_key.as_ref().unwrap()).unwrap())
            .unwrap();
    let mut keys: Vec<&str> = m.objects.iter().map(|o| o.key.as_str()).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "duplicate objects in the manifest");
    assert_eq!(m.objects.iter().map(|o| o.rows).sum::<u64>(), 497);
    for o in &m.objects {
        let body = std::fs::read_to_string(&o.uri).unwrap();
        assert_eq!(body.lines().count() as u64, o.rows);
        assert_eq!(body.len() as u64, o.bytes);
    }
}

/// `ferry run`'s progress line moves with every page fetch-page reads, not once per chunk: a
/// 500-record chunk of 100-record pages reports five pages of 100.
#[tokio::test(flavor = "multi_thread")]
async fn fetch_page_reports_every_page_as_it_reads_it() {
    let home = tempfile::tempdir().unwrap();
    let base = tempfile::tempdir().unwrap();
    let deps = embedded_deps(home.path(), base.path(), None).unwrap();
    let f = Flow::parse(
        r#"
name: pages
source:
  connector: sample
  entity: accounts
  properties: { records: 500 }
  chunk: { page_size: 100 }
destination:
  local: out
  format: jsonl
"#,
        "test",
    )
    .unwrap();
    deps.flows.put_flow(&f, chrono::Utc::now()).await.unwrap();
    let started = start_run::handle(
        &deps,
        start_run::StartRunInput {
            request: start_run::RunRequest {
                flow: "pages".into(),
                mode: Some(PullMode::Complete),
                ..Default::default()
            },
            execution_id: "exec-1".into(),
            execution_name: "run-1".into(),
        },
    )
    .await
    .unwrap();
    let pages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = pages.clone();
    ferry::steps::progress::listen(move |n| seen.lock().unwrap().push(n));
    let fetched = fetch_page::handle(
        &deps,
        fetch_page::FetchInput {
            run: started.run,
            cursor: serde_json::Value::Null,
            chunk: 0,
            slice: None,
        },
    )
    .await
    .unwrap();
    ferry::steps::progress::stop_listening();
    assert_eq!(fetched.records, 500);
    assert_eq!(*pages.lock().unwrap(), vec![100; 5]);
}
