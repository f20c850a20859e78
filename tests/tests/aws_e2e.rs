//! The walking skeleton's end-to-end scenarios, with the embedded interpreter driving the steps
//! over the AWS adapters (DynamoDB, S3, Secrets Manager, EventBridge) against moto.

use chrono::{DateTime, Duration, Utc};
use ferry::flow::Flow;
use ferry::local::asl::Observer;
use ferry::local::Engine;
use ferry::model::{PullMode, RunStatus, TriggerType};
use ferry::ports::ManualClock;
use ferry::steps::start_run::RunRequest;
use ferry_tests::aws::AwsEnv;
use ferry_tests::faults::FailingDestination;
use std::sync::atomic::Ordering;
use std::sync::Arc;

struct Quiet;
impl Observer for Quiet {}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

const T0: &str = "2026-01-01T00:00:00Z";

fn flow(name: &str, bucket: &str) -> Flow {
    let yaml = format!(
        r#"
name: {name}
source:
  connector: sample
  entity: accounts
  properties: {{ records: 1000, as_of: "{T0}" }}
  incremental:
    field: updated_at
    lookback: 10m
    first_execution_from: 2025-01-01T00:00:00Z
  chunk: {{ records: 400, page_size: 200 }}
destination:
  s3: {{ bucket: {bucket}, prefix: raw/crm }}
  format: parquet
  layout: {{ prefix_type: path, date: none, hierarchy: [execution_id] }}
tasks:
  - map_all: {{ exclude: [internal_notes] }}
trigger:
  on_demand: {{}}
"#
    );
    Flow::parse(&yaml, "test.yaml").unwrap()
}

fn request(name: &str) -> RunRequest {
    RunRequest {
        flow: name.into(),
        trigger: Some(TriggerType::OnDemand),
        mode: None,
        window: None,
    }
}

async fn objects(env: &AwsEnv, prefix: &str) -> Vec<String> {
    let out = env
        .clients
        .s3
        .list_objects_v2()
        .bucket(&env.output_bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    let mut keys: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_incremental_failed_and_recovered_runs_over_aws_adapters() {
    let env = AwsEnv::new().await;
    let clock = ManualClock::new(t(T0));
    let mut deps = env.deps();
    deps.clock = Arc::new(clock.clone());
    let (destinations, fail) = FailingDestination::wrap(deps.destinations.clone(), false, |k| {
        k.ends_with(".parquet")
    });
    deps.destinations = destinations;
    let name = ferry_tests::aws::unique("crm");
    deps.flows
        .put_flow(&flow(&name, &env.output_bucket), clock.now_utc())
        .await
        .unwrap();
    let engine = Engine::new(deps.clone()).unwrap();

    // 1. First run: everything since first_execution_from, in three chunks.
    let first = engine.run(request(&name), &Quiet).await;
    assert!(first.succeeded(), "{:?}", first.failure);
    let rec = first.record.unwrap();
    assert_eq!(rec.status, RunStatus::Successful);
    assert_eq!(rec.records_processed, 1000);
    assert_eq!(rec.records_written, 1000);
    assert_eq!(rec.chunks, 3);
    assert_eq!(rec.window.start, Some(t("2025-01-01T00:00:00Z")));
    assert_eq!(rec.watermark_after, Some(t(T0)));
    let manifest = rec.manifest_key.clone().unwrap();
    assert!(
        manifest.starts_with(&format!(
            "s3://{}/raw/crm/{name}/_manifests/",
            env.output_bucket
        )),
        "{manifest}"
    );
    let state = deps.runs.get_state(&name).await.unwrap();
    assert_eq!(state.watermark, Some(t(T0)));
    assert!(state.lease.is_none());
    let data_files: Vec<String> = objects(&env, &format!("raw/crm/{name}/"))
        .await
        .into_iter()
        .filter(|k| k.ends_with(".parquet"))
        .collect();
    assert_eq!(data_files.len() as u64, rec.files_written);
    // The run record is in DynamoDB, staging in S3 is cleaned.
    assert_eq!(deps.runs.get_run(&rec.run_id).await.unwrap().unwrap(), rec);
    assert!(deps
        .staging
        .list(&format!("staging/{name}/"))
        .await
        .unwrap()
        .is_empty());

    let manifests_before = objects(&env, &format!("raw/crm/{name}/_manifests/")).await;
    assert_eq!(manifests_before.len(), 1);
    let files_before = objects(&env, &format!("raw/crm/{name}/")).await;

    // 2. An incremental run whose write fails: failed, watermark and manifests unchanged, and
    //    nothing it wrote is left behind.
    clock.advance(Duration::hours(1));
    fail.store(true, Ordering::SeqCst);
    let failed = engine.run(request(&name), &Quiet).await;
    assert!(!failed.succeeded());
    let frec = failed.record.unwrap();
    assert_eq!(frec.status, RunStatus::Error);
    assert_eq!(frec.error.as_ref().unwrap().error, "InvalidFlow");
    assert!(
        frec.error
            .as_ref()
            .unwrap()
            .message
            .contains("injected write failure"),
        "{:?}",
        frec.error
    );
    let after = deps.runs.get_state(&name).await.unwrap();
    assert_eq!(after.watermark, Some(t(T0)));
    assert_eq!(after.consecutive_failures, 1);
    assert!(after.lease.is_none(), "the failed run released its lease");
    assert_eq!(
        objects(&env, &format!("raw/crm/{name}/_manifests/")).await,
        manifests_before
    );
    assert_eq!(
        objects(&env, &format!("raw/crm/{name}/")).await,
        files_before
    );

    // 3. The next run succeeds, incrementally: only (watermark - lookback, now].
    fail.store(false, Ordering::SeqCst);
    let next = engine.run(request(&name), &Quiet).await;
    assert!(next.succeeded(), "{:?}", next.failure);
    let nrec = next.record.unwrap();
    assert_eq!(nrec.mode, PullMode::Incremental);
    assert_eq!(nrec.window.start, Some(t(T0) - Duration::minutes(10)));
    assert_eq!(nrec.window.end, t(T0) + Duration::hours(1));
    // Record 999 is the only one updated in the last 10 minutes of the data set.
    assert_eq!(nrec.records_processed, 1);
    assert_eq!(nrec.records_written, 1);
    let state = deps.runs.get_state(&name).await.unwrap();
    assert_eq!(state.watermark, Some(t(T0) + Duration::hours(1)));
    assert_eq!(state.consecutive_failures, 0);
    assert_eq!(
        objects(&env, &format!("raw/crm/{name}/_manifests/"))
            .await
            .len(),
        2
    );

    // Runs, newest first, from the GSI.
    let runs = deps.runs.list_runs(&name, 10).await.unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
    // The failed and the recovered run started at the same (test clock) instant: their order
    // between themselves is a tie; both come before the first run.
    assert_eq!(ids.len(), 3);
    let mut newest = ids[..2].to_vec();
    newest.sort();
    let mut want = vec![nrec.run_id.as_str(), frec.run_id.as_str()];
    want.sort();
    assert_eq!(newest, want);
    assert_eq!(ids[2], rec.run_id.as_str());
    assert_eq!(deps.runs.list_runs(&name, 2).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_is_refused_while_the_lease_is_held() {
    let env = AwsEnv::new().await;
    let deps = env.deps();
    let name = ferry_tests::aws::unique("crm");
    deps.flows
        .put_flow(&flow(&name, &env.output_bucket), Utc::now())
        .await
        .unwrap();
    let now = Utc::now();
    deps.runs
        .acquire_lease(
            &name,
            &ferry::ports::LeaseClaim::new("someone-else", now + Duration::minutes(15)),
            now,
        )
        .await
        .unwrap();
    let engine = Engine::new(deps.clone()).unwrap();
    let out = engine.run(request(&name), &Quiet).await;
    let failure = out.failure.expect("refused");
    assert!(
        failure.cause.contains("already running") && failure.cause.contains("someone-else"),
        "{failure:?}"
    );
    let state = deps.runs.get_state(&name).await.unwrap();
    assert_eq!(state.lease.unwrap().run_id, "someone-else");
    assert!(state.watermark.is_none());
}

trait NowUtc {
    fn now_utc(&self) -> DateTime<Utc>;
}
impl NowUtc for ManualClock {
    fn now_utc(&self) -> DateTime<Utc> {
        ferry::ports::Clock::now(self)
    }
}
