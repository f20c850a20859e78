//! The DynamoDB flow store and run store against moto: versioning, conditional writes, paging.

use chrono::{DateTime, Duration, Utc};
use ferry::adapters::dynamodb::{create_table, DynamoStore};
use ferry::error::StoreError;
use ferry::flow::Flow;
use ferry::model::{ChunkResult, ChunkStage, PullMode, RunRecord, RunStatus, TriggerType, Window};
use ferry::ports::{FlowStatus, FlowStore, RunStore};
use ferry_tests::aws::{sdk_config, unique};
use std::sync::Arc;

async fn store() -> DynamoStore {
    let conf = sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&conf);
    let table = unique("ferry");
    create_table(&client, &table).await.unwrap();
    DynamoStore::new(client, table)
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn flow(name: &str, records: u32) -> Flow {
    Flow::parse(
        &format!(
            "name: {name}\nsource: {{ connector: sample, entity: accounts, properties: {{ records: {records} }} }}\ndestination: {{ s3: {{ bucket: out-bucket, prefix: p }}, format: jsonl }}\n"
        ),
        "t.yaml",
    )
    .unwrap()
}

fn run(flow: &str, id: &str, started: DateTime<Utc>) -> RunRecord {
    RunRecord {
        run_id: id.into(),
        flow: flow.into(),
        flow_version: 1,
        execution_id: format!("arn:aws:states:us-east-1:123456789012:execution:m:{id}"),
        status: RunStatus::InProgress,
        trigger: TriggerType::OnDemand,
        mode: PullMode::Incremental,
        started_at: started,
        last_updated_at: started,
        window: Window {
            start: None,
            end: started,
        },
        records_processed: 0,
        records_filtered: 0,
        records_rejected: 0,
        records_written: 0,
        bytes_processed: 0,
        bytes_written: 0,
        files_written: 0,
        chunks: 0,
        schema_version: 0,
        manifest_key: None,
        max_cursor: None,
        watermark_after: None,
        warnings: vec![],
        error: None,
    }
}

#[tokio::test]
async fn flow_definitions_are_versioned() {
    let s = store().await;
    let t0 = t("2026-01-01T00:00:00Z");
    let v1 = s.put_flow(&flow("crm", 10), t0).await.unwrap();
    assert_eq!(v1.version, 1);
    // Identical: same version, unchanged timestamps.
    let again = s
        .put_flow(&flow("crm", 10), t0 + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(again, v1);
    let v2 = s
        .put_flow(&flow("crm", 20), t0 + Duration::hours(2))
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.created_at, t0);
    assert_eq!(v2.updated_at, t0 + Duration::hours(2));
    assert_eq!(
        s.get_flow("crm", None).await.unwrap().unwrap().flow,
        flow("crm", 20)
    );
    assert_eq!(
        s.get_flow("crm", Some(1)).await.unwrap().unwrap().flow,
        flow("crm", 10)
    );
    assert_eq!(
        s.get_flow("crm", Some(1)).await.unwrap().unwrap().version,
        1
    );
    assert!(s.get_flow("crm", Some(3)).await.unwrap().is_none());
    assert!(s.get_flow("nope", None).await.unwrap().is_none());

    s.set_status("crm", FlowStatus::Suspended).await.unwrap();
    assert_eq!(
        s.get_flow("crm", None).await.unwrap().unwrap().status,
        FlowStatus::Suspended
    );
    // A new version keeps the status.
    assert_eq!(
        s.put_flow(&flow("crm", 30), t0).await.unwrap().status,
        FlowStatus::Suspended
    );
    assert!(matches!(
        s.set_status("nope", FlowStatus::Active).await,
        Err(StoreError::NotFound(_))
    ));

    assert!(s.delete_flow("crm").await.unwrap());
    assert!(s.get_flow("crm", None).await.unwrap().is_none());
    assert!(s.get_flow("crm", Some(1)).await.unwrap().is_none());
    assert!(!s.delete_flow("crm").await.unwrap());
}

/// Four puts race; each loser retries on the transaction's condition and takes the next version.
/// moto can roll back a winner when a concurrent transaction fails (see `.config/nextest.toml`),
/// so nextest reruns this race up to three times.
#[tokio::test]
async fn concurrent_puts_make_distinct_versions() {
    let s = Arc::new(store().await);
    let t0 = Utc::now();
    s.put_flow(&flow("race", 1), t0).await.unwrap();
    let mut handles = vec![];
    for i in 0..4 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            s.put_flow(&flow("race", 100 + i), t0).await
        }));
    }
    let mut versions = vec![];
    for h in handles {
        versions.push(h.await.unwrap().unwrap().version);
    }
    versions.sort();
    assert_eq!(versions, [2, 3, 4, 5]);
}

#[tokio::test]
async fn flows_list_pages_through_every_flow() {
    let s = store().await;
    // Definitions of ~3 KB each: a listing of 150 flows crosses DynamoDB's 1 MB page... in AWS;
    // moto pages by size too. Either way the listing must be complete and sorted.
    let mut names: Vec<String> = (0..150).map(|i| format!("flow-{i:03}")).collect();
    for n in &names {
        s.put_flow(&flow(n, 5), Utc::now()).await.unwrap();
    }
    names.sort();
    let listed: Vec<String> = s
        .list_flows()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.flow.name)
        .collect();
    assert_eq!(listed, names);
}

#[tokio::test]
/// Two starts for one lease: exactly one wins, decided by DynamoDB's condition expression.
/// moto's server does not serialize concurrent writes to one item (its backend has no per-item
/// lock), so the two starts are issued back to back rather than in parallel; the condition the
/// server evaluates is the same one that arbitrates a real race on DynamoDB.
async fn two_starts_for_one_lease_exactly_one_wins() {
    let s = Arc::new(store().await);
    for round in 0..10 {
        let flow = format!("race-{round}");
        let now = Utc::now();
        let a = {
            let s = s.clone();
            let f = flow.clone();
            tokio::spawn(async move {
                s.acquire_lease(
                    &f,
                    &ferry::ports::LeaseClaim::new("run-a", now + Duration::minutes(15)),
                    now,
                )
                .await
            })
        };
        let a = a.await.unwrap();
        let b = {
            let s = s.clone();
            let f = flow.clone();
            tokio::spawn(async move {
                s.acquire_lease(
                    &f,
                    &ferry::ports::LeaseClaim::new("run-b", now + Duration::minutes(15)),
                    now,
                )
                .await
            })
        };
        let b = b.await.unwrap();
        let winners: Vec<&str> = [("run-a", &a), ("run-b", &b)]
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {a:?} {b:?}");
        let loser = if a.is_ok() { b } else { a };
        match loser {
            Err(StoreError::Conflict(m)) => assert!(
                m.contains("already running") && m.contains(winners[0]),
                "{m}"
            ),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(
            s.get_state(&flow).await.unwrap().lease.unwrap().run_id,
            winners[0]
        );
    }
}

/// The run-store contract (tests/src/store_contract.rs), the same suite the SQLite store runs.
#[tokio::test]
async fn dynamodb_keeps_the_run_store_contract() {
    let s = store().await;
    let table = s.table().to_string();
    let conf = sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&conf);
    ferry_tests::store_contract::run_all(&s, move |flow: String, watermark: String| {
        let client = client.clone();
        let table = table.clone();
        Box::pin(async move {
            // Someone writes the watermark behind the lease's back (another tool, a manual fix).
            client
                .update_item()
                .table_name(table)
                .key(
                    "pk",
                    aws_sdk_dynamodb::types::AttributeValue::S(format!("FLOW#{flow}")),
                )
                .key(
                    "sk",
                    aws_sdk_dynamodb::types::AttributeValue::S("STATE".into()),
                )
                .update_expression("SET watermark = :w")
                .expression_attribute_values(
                    ":w",
                    aws_sdk_dynamodb::types::AttributeValue::S(watermark),
                )
                .send()
                .await
                .unwrap();
        })
    })
    .await;
}

#[tokio::test]
async fn runs_list_newest_first_across_pages() {
    let s = store().await;
    let t0 = t("2026-01-01T00:00:00Z");
    for i in 0..30 {
        s.put_run(&run(
            "crm",
            &format!("run-{i:02}"),
            t0 + Duration::minutes(i),
        ))
        .await
        .unwrap();
    }
    s.put_run(&run("other", "x", t0 + Duration::hours(9)))
        .await
        .unwrap();
    let all = s.list_runs("crm", 100).await.unwrap();
    assert_eq!(all.len(), 30);
    assert_eq!(all[0].run_id, "run-29");
    assert_eq!(all[29].run_id, "run-00");
    let five: Vec<String> = s
        .list_runs("crm", 5)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(five, ["run-29", "run-28", "run-27", "run-26", "run-25"]);
    // Updating a run keeps one record.
    let mut r = run("crm", "run-29", t0 + Duration::minutes(29));
    r.status = RunStatus::Successful;
    r.records_written = 7;
    s.put_run(&r).await.unwrap();
    assert_eq!(s.get_run("run-29").await.unwrap().unwrap(), r);
    assert_eq!(s.list_runs("crm", 100).await.unwrap().len(), 30);
    assert!(s.get_run("nope").await.unwrap().is_none());
}

#[tokio::test]
async fn chunk_results_are_idempotent_and_ordered() {
    let s = store().await;
    let result = |chunk, stage, records| ChunkResult {
        run_id: "r1".into(),
        chunk,
        stage,
        records,
        bytes: 0,
        filtered: 0,
        rejected: 0,
        max_cursor: None,
        files: vec![],
        warnings: vec![],
        schema: None,
    };
    s.put_chunk_result(&result(1, ChunkStage::Write, 5))
        .await
        .unwrap();
    s.put_chunk_result(&result(0, ChunkStage::Fetch, 10))
        .await
        .unwrap();
    s.put_chunk_result(&result(0, ChunkStage::Transform, 9))
        .await
        .unwrap();
    s.put_chunk_result(&result(10, ChunkStage::Fetch, 1))
        .await
        .unwrap();
    // A retried step overwrites its own result.
    s.put_chunk_result(&result(0, ChunkStage::Fetch, 11))
        .await
        .unwrap();
    let got: Vec<(u32, ChunkStage, u64)> = s
        .chunk_results("r1")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.chunk, r.stage, r.records))
        .collect();
    assert_eq!(
        got,
        [
            (0, ChunkStage::Fetch, 11),
            (0, ChunkStage::Transform, 9),
            (1, ChunkStage::Write, 5),
            (10, ChunkStage::Fetch, 1)
        ]
    );
    assert!(s.chunk_results("r2").await.unwrap().is_empty());
}
