//! Lambda failures as the deployed state machine sees them: a function past its Timeout
//! (`Sandbox.Timedout`) is retried twice, then caught into the failure path; one past its
//! MemorySize (`Runtime.OutOfMemory`) is not retried (the same input needs the same memory) and
//! is caught at once. Either way the run ends Error with the cause, the lease free.

use ferry::flow::Flow;
use ferry_tests::stack::{Stack, StackOptions};
use serde_json::{json, Value};

fn set(function: &'static str, key: &'static str, value: u64) -> StackOptions {
    StackOptions {
        retry_interval_ms: Some(20),
        mutate: Some(Box::new(move |tpl: &mut Value| {
            tpl["Resources"][function]["Properties"][key] = json!(value);
        })),
        ..Default::default()
    }
}

async fn run(
    stack: &Stack,
    records: u64,
    latency_ms: u64,
    tasks: &str,
) -> (ferry_tests::stack::Execution, ferry::model::RunRecord) {
    let b = &stack.output_bucket;
    let flow = Flow::parse(
        &format!(
            r#"
name: fails
source:
  connector: sample
  entity: accounts
  properties: {{ records: {records}, page_size: 1000, latency_ms: {latency_ms} }}
destination:
  s3: {{ bucket: {b}, prefix: raw }}
  format: parquet
tasks: {tasks}
trigger: {{ on_demand: {{}} }}
"#
        ),
        "fails.yaml",
    )
    .unwrap();
    let deps = stack.deps();
    deps.flows
        .put_flow(&flow, chrono::Utc::now())
        .await
        .unwrap();
    let e = stack
        .run(&json!({"flow": "fails", "trigger": "on_demand", "mode": "complete"}))
        .await;
    let run_id = e.arn.rsplit(':').next().unwrap().to_string();
    let rec = deps
        .runs
        .get_run(&run_id)
        .await
        .unwrap()
        .expect("run record");
    assert!(
        deps.runs.get_state("fails").await.unwrap().lease.is_none(),
        "lease released"
    );
    (e, rec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_function_past_its_timeout_is_retried_twice_then_caught() {
    let stack = Stack::deploy_with(set("FetchPageFunction", "Timeout", 1)).await;
    // Five pages of 300 ms: about 1.5 s of fetching against a 1 s timeout.
    let (e, rec) = run(&stack, 5000, 300, "[]").await;
    assert_eq!(e.status, "FAILED");
    assert_eq!(e.error.as_deref(), Some("Sandbox.Timedout"), "{e:?}");
    let timeouts: Vec<_> = stack
        .invocations()
        .into_iter()
        .filter(|i| i.function == "FetchPageFunction")
        .collect();
    assert_eq!(
        timeouts.len(),
        3,
        "tried once and retried twice: {timeouts:?}"
    );
    assert!(timeouts
        .iter()
        .all(|i| i.error.as_deref() == Some("Sandbox.Timedout")));
    assert_eq!(rec.status, ferry::model::RunStatus::Error);
    let err = rec.error.unwrap();
    assert_eq!(err.error, "Sandbox.Timedout");
    assert!(
        err.message.contains("timed out after 1.00 seconds"),
        "{}",
        err.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_function_out_of_memory_is_caught_without_retrying() {
    let stack = Stack::deploy_with(set("TransformBatchFunction", "MemorySize", 128)).await;
    // One chunk of 200,000 records through a task (so transform-batch decodes them, rather
    // than passing the staged chunk through): its transform needs far more than 128 MB.
    let (e, rec) = run(
        &stack,
        200_000,
        0,
        "[{ mask: { field: phone, keep_last: 4 } }]",
    )
    .await;
    assert_eq!(e.status, "FAILED");
    assert_eq!(e.error.as_deref(), Some("Runtime.OutOfMemory"), "{e:?}");
    let transforms: Vec<_> = stack
        .invocations()
        .into_iter()
        .filter(|i| i.function == "TransformBatchFunction")
        .collect();
    assert_eq!(transforms.len(), 1, "not retried: {transforms:?}");
    assert_eq!(rec.status, ferry::model::RunStatus::Error);
    assert_eq!(rec.error.unwrap().error, "Runtime.OutOfMemory");
}
