//! Each Lambda handler, given the input the state machine sends, runs its step against moto;
//! and the lambda_runtime wiring, fed through a stand-in of the Lambda Runtime API.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use chrono::{Duration, Utc};
use ferry::flow::Flow;
use ferry::lambda::{self, Step};
use ferry::model::RunStatus;
use ferry_tests::aws::{unique, AwsEnv};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

fn flow(name: &str, bucket: &str) -> Flow {
    Flow::parse(
        &format!(
            r#"
name: {name}
source:
  connector: sample
  entity: accounts
  properties: {{ records: 300, as_of: "2026-01-01T00:00:00Z" }}
  incremental: {{ field: updated_at, first_execution_from: "2025-01-01T00:00:00Z" }}
destination:
  s3: {{ bucket: {bucket}, prefix: raw }}
  format: jsonl
"#
        ),
        "t.yaml",
    )
    .unwrap()
}

fn execution_arn(run: &str) -> String {
    format!("arn:aws:states:us-east-1:123456789012:execution:ferry-flow-run:{run}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_handler_runs_its_step_on_a_state_machine_payload() {
    let env = AwsEnv::new().await;
    let deps = env.deps();
    let name = unique("crm");
    deps.flows
        .put_flow(&flow(&name, &env.output_bucket), Utc::now())
        .await
        .unwrap();
    let run_id = unique("run");

    // Start Run: Parameters {request.$: $, execution_id.$: $$.Execution.Id, execution_name.$: $$.Execution.Name}
    let started = lambda::invoke(
        &deps,
        Step::StartRun,
        json!({
            "request": {"flow": name, "trigger": "on_demand"},
            "execution_id": execution_arn(&run_id),
            "execution_name": run_id,
        }),
    )
    .await
    .unwrap();
    assert_eq!(started["run"]["run_id"], json!(run_id));
    assert_eq!(
        started["run"]["staging_prefix"],
        json!(format!("staging/{name}/{run_id}"))
    );
    assert_eq!(started["page"]["next_chunk"], json!(0));
    let rec = deps.runs.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(rec.status, RunStatus::InProgress);
    assert_eq!(
        deps.runs
            .get_state(&name)
            .await
            .unwrap()
            .lease
            .unwrap()
            .run_id,
        run_id
    );
    let run = started["run"].clone();

    // Fetch Chunk: {run.$: $.run, cursor.$: $.page.cursor, chunk.$: $.page.next_chunk}
    let page = lambda::invoke(
        &deps,
        Step::FetchPage,
        json!({"run": run, "cursor": null, "chunk": 0}),
    )
    .await
    .unwrap();
    assert_eq!(page["records"], json!(300));
    let raw_key = page["raw_key"].as_str().unwrap().to_string();
    assert!(
        !deps.staging.get(&raw_key).await.unwrap().is_empty(),
        "raw chunk staged in S3"
    );

    // Transform Batch: {run.$, chunk.$: $.page.chunk, raw_key.$: $.page.raw_key}
    let batch = lambda::invoke(
        &deps,
        Step::TransformBatch,
        json!({"run": run, "chunk": 0, "raw_key": raw_key}),
    )
    .await
    .unwrap();
    assert_eq!(batch["rows"], json!(300));

    // Write Output: {run.$, chunk.$, batch_key.$: $.batch.batch_key}
    let written = lambda::invoke(
        &deps,
        Step::WriteS3,
        json!({"run": run, "chunk": 0, "batch_key": batch["batch_key"]}),
    )
    .await
    .unwrap();
    // 300 rows are far below the target file size: write-s3 carries them (by pointer) to the
    // next chunk, and its final flush writes them as the run's last file.
    assert_eq!(written["rows"], json!(0), "{written}");

    // Flush Output: {run.$, chunk.$: $.page.chunk, flush: true}
    let flushed = lambda::invoke(
        &deps,
        Step::WriteS3,
        json!({"run": run, "chunk": 0, "flush": true}),
    )
    .await
    .unwrap();
    assert_eq!(flushed["rows"], json!(300), "{flushed}");

    // Finalize Run: {run.$: $.run}
    let done = lambda::invoke(&deps, Step::Finalize, json!({"run": run}))
        .await
        .unwrap();
    assert_eq!(done["status"], json!("Successful"));
    assert_eq!(done["records_written"], json!(300));
    let manifest = done["manifest_key"].as_str().unwrap();
    assert!(
        manifest.starts_with(&format!(
            "s3://{}/raw/{name}/_manifests/",
            env.output_bucket
        )),
        "{manifest}"
    );
    let state = deps.runs.get_state(&name).await.unwrap();
    assert!(state.lease.is_none());
    assert_eq!(
        state.watermark.map(|w| w.to_rfc3339()),
        Some(rec.window.end.to_rfc3339())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_carry_the_stable_name_and_a_lost_lease_keeps_the_watermark() {
    let env = AwsEnv::new().await;
    let deps = env.deps();
    // Unregistered flow: InvalidFlow, with the fix in the message.
    let err = lambda::invoke(
        &deps,
        Step::StartRun,
        json!({"request": {"flow": "nope"}, "execution_id": execution_arn("x"), "execution_name": "x"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_type, "InvalidFlow");
    assert!(
        err.error_message.contains("ferry flows put"),
        "{}",
        err.error_message
    );
    // A malformed payload: Fatal, naming the shape problem.
    let err = lambda::invoke(&deps, Step::FetchPage, json!({"chunk": "zero"}))
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "Fatal");

    // A run whose lease was taken over cannot commit: Fatal, watermark unmoved.
    let name = unique("crm");
    deps.flows
        .put_flow(&flow(&name, &env.output_bucket), Utc::now())
        .await
        .unwrap();
    let run_id = unique("run");
    let started = lambda::invoke(
        &deps,
        Step::StartRun,
        json!({"request": {"flow": name}, "execution_id": execution_arn(&run_id), "execution_name": run_id}),
    )
    .await
    .unwrap();
    let run = started["run"].clone();
    let page = lambda::invoke(
        &deps,
        Step::FetchPage,
        json!({"run": run, "cursor": null, "chunk": 0}),
    )
    .await
    .unwrap();
    let batch = lambda::invoke(
        &deps,
        Step::TransformBatch,
        json!({"run": run, "chunk": 0, "raw_key": page["raw_key"]}),
    )
    .await
    .unwrap();
    lambda::invoke(
        &deps,
        Step::WriteS3,
        json!({"run": run, "chunk": 0, "batch_key": batch["batch_key"]}),
    )
    .await
    .unwrap();
    let far = Utc::now() + Duration::days(1);
    deps.runs
        .acquire_lease(
            &name,
            &ferry::ports::LeaseClaim::new("thief", far + Duration::minutes(15)),
            far,
        )
        .await
        .unwrap();
    let err = lambda::invoke(&deps, Step::Finalize, json!({"run": run}))
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "Fatal");
    assert!(
        err.error_message.contains("no longer holds the lease"),
        "{}",
        err.error_message
    );
    // The Catch hands the error to the failure path: the run ends Error, nothing committed.
    let failed = lambda::invoke(
        &deps,
        Step::Finalize,
        json!({"run": run, "error": {"Error": err.error_type, "Cause": err.error_message}}),
    )
    .await
    .unwrap();
    // It answers the error the execution ends with ("Run Failed" reads it).
    assert_eq!(failed["Error"], json!("Fatal"));
    let rec = deps.runs.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(rec.status, ferry::model::RunStatus::Error);
    let state = deps.runs.get_state(&name).await.unwrap();
    assert_eq!(state.watermark, None);
    assert_eq!(
        state.lease.unwrap().run_id,
        "thief",
        "the failure path leaves the thief's lease"
    );
    assert_eq!(
        deps.runs.get_run(&run_id).await.unwrap().unwrap().status,
        RunStatus::Error
    );
    assert!(!deps.runs.is_committed(&run_id).await.unwrap());
}

/// A stand-in for the Lambda Runtime API: hands out queued events, records the answers.
#[derive(Clone, Default)]
struct RuntimeApi {
    events: Arc<Mutex<VecDeque<(String, Value)>>>,
    answers: Arc<Mutex<Vec<(String, String, Value)>>>,
    done: Arc<tokio::sync::Notify>,
}

async fn next(State(api): State<RuntimeApi>) -> (HeaderMap, String) {
    loop {
        let ev = api.events.lock().unwrap().pop_front();
        if let Some((id, payload)) = ev {
            let mut h = HeaderMap::new();
            h.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
            let deadline = (Utc::now() + Duration::minutes(5)).timestamp_millis();
            h.insert(
                "lambda-runtime-deadline-ms",
                deadline.to_string().parse().unwrap(),
            );
            h.insert(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:start-run"
                    .parse()
                    .unwrap(),
            );
            h.insert(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000".parse().unwrap(),
            );
            return (h, payload.to_string());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn respond(
    State(api): State<RuntimeApi>,
    Path((id, kind)): Path<(String, String)>,
    body: String,
) -> &'static str {
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    api.answers.lock().unwrap().push((id, kind, v));
    api.done.notify_one();
    "{}"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_runtime_wiring_returns_results_and_stable_error_types() {
    let env = AwsEnv::new().await;
    let deps = env.deps();
    let name = unique("crm");
    deps.flows
        .put_flow(&flow(&name, &env.output_bucket), Utc::now())
        .await
        .unwrap();

    let api = RuntimeApi::default();
    api.events.lock().unwrap().extend([
        (
            "req-1".to_string(),
            json!({"request": {"flow": name}, "execution_id": execution_arn("w1"), "execution_name": "w1"}),
        ),
        // The same flow again while w1 holds the lease.
        (
            "req-2".to_string(),
            json!({"request": {"flow": name}, "execution_id": execution_arn("w2"), "execution_name": "w2"}),
        ),
        ("req-3".to_string(), json!({"request": {"flow": "missing"}, "execution_id": "x", "execution_name": "x"})),
    ]);
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(respond))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    std::env::set_var("AWS_LAMBDA_RUNTIME_API", addr.to_string());
    std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", "start-run");
    std::env::set_var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512");
    std::env::set_var("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
    // What `ferry::lambda::run` serves for functions/start-run (with the deps built here
    // instead of from the environment): the typed input, the step, errors as Diagnostics.
    let runtime = lambda_runtime::run(lambda_runtime::service_fn(
        |ev: lambda_runtime::LambdaEvent<ferry::steps::start_run::StartRunInput>| {
            let deps = deps.clone();
            async move {
                ferry::steps::start_run::handle(&deps, ev.payload)
                    .await
                    .map_err(lambda_runtime::Diagnostic::from)
            }
        },
    ));
    let wait = async {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while api.answers.lock().unwrap().len() < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "runtime answered {:?}",
                api.answers.lock().unwrap()
            );
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(1), api.done.notified()).await;
        }
    };
    tokio::select! {
        r = runtime => panic!("the runtime stopped: {r:?}"),
        _ = wait => {}
    }
    let answers = api.answers.lock().unwrap().clone();
    assert_eq!(answers[0].0, "req-1");
    assert_eq!(answers[0].1, "response");
    assert_eq!(answers[0].2["run"]["run_id"], json!("w1"));
    assert_eq!(
        (answers[1].0.as_str(), answers[1].1.as_str()),
        ("req-2", "error")
    );
    assert_eq!(answers[1].2["errorType"], json!("Fatal"));
    assert!(
        answers[1].2["errorMessage"]
            .as_str()
            .unwrap()
            .contains("already running"),
        "{:?}",
        answers[1].2
    );
    assert_eq!(
        (answers[2].0.as_str(), answers[2].1.as_str()),
        ("req-3", "error")
    );
    assert_eq!(answers[2].2["errorType"], json!("InvalidFlow"));
}
