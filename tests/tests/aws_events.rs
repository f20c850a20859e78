//! Run reports and the flow-deactivated event, read back from EventBridge: a rule on ferry's bus
//! sends every `ferry` event to an SQS queue (both on moto), as a user's alerting would.

use chrono::{DateTime, Utc};
use ferry::flow::Flow;
use ferry::local::asl::NoopObserver;
use ferry::local::Engine;
use ferry::model::{PullMode, TriggerType};
use ferry::ports::{FlowStatus, ManualClock};
use ferry::steps::start_run::RunRequest;
use ferry_tests::aws::{unique, AwsEnv};
use ferry_tests::faults::FailingDestination;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn flow(name: &str, bucket: &str) -> Flow {
    Flow::parse(
        &format!(
            r#"
name: {name}
source:
  connector: sample
  entity: accounts
  properties: {{ records: 200, as_of: "2026-01-01T00:00:00Z" }}
  incremental: {{ field: updated_at, first_execution_from: "2025-01-01T00:00:00Z" }}
destination:
  s3: {{ bucket: {bucket}, prefix: raw }}
  format: jsonl
trigger:
  scheduled: {{ expression: "rate(1 hour)", deactivate_after_failures: 2 }}
"#
        ),
        "t.yaml",
    )
    .unwrap()
}

/// Receive until `n` events arrived (or 20 s passed), in arrival order.
async fn receive(sqs: &aws_sdk_sqs::Client, url: &str, n: usize) -> Vec<Value> {
    let mut got = vec![];
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < n && Instant::now() < deadline {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
            got.push(serde_json::from_str(m.body.as_deref().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    got
}

fn of_type<'a>(events: &'a [Value], detail_type: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["detail-type"] == json!(detail_type))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_and_deactivation_reach_the_bus() {
    let env = AwsEnv::new().await;
    let sqs = aws_sdk_sqs::Client::new(&env.conf);
    let queue = ferry_tests::aws::subscribe_events(&env.conf, &env.settings.event_bus).await;
    let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let clock = ManualClock::new(t0);
    let mut deps = env.deps();
    deps.clock = Arc::new(clock.clone());
    let (destinations, fail) =
        FailingDestination::wrap(deps.destinations.clone(), false, |k| k.ends_with(".jsonl"));
    deps.destinations = destinations;
    let name = unique("crm");
    deps.flows
        .put_flow(&flow(&name, &env.output_bucket), t0)
        .await
        .unwrap();
    let engine = Engine::new(deps.clone()).unwrap();
    let scheduled = RunRequest {
        flow: name.clone(),
        trigger: Some(TriggerType::Scheduled),
        mode: None,
        window: None,
    };

    // 1. A successful scheduled run: a start and an end report with AppFlow's detail fields.
    let ok = engine.run(scheduled.clone(), &NoopObserver).await;
    assert!(ok.succeeded(), "{:?}", ok.failure);
    let rec = ok.record.unwrap();
    let events = receive(&sqs, &queue, 2).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    for e in &events {
        assert_eq!(e["source"], json!("ferry"));
        assert_eq!(e["detail"]["flow-name"], json!(name));
        assert_eq!(e["detail"]["run-id"], json!(rec.run_id));
    }
    let start = of_type(&events, "ferry Start Flow Run Report");
    assert_eq!(start.len(), 1, "{events:#?}");
    let end = of_type(&events, "ferry End Flow Run Report");
    assert_eq!(end.len(), 1, "{events:#?}");
    let d = &end[0]["detail"];
    assert_eq!(d["status"], json!("Execution Successful"));
    assert_eq!(d["trigger-type"], json!("Scheduled"), "{d}");
    assert_eq!(d["num-of-records-processed"], json!(rec.records_processed));
    assert_eq!(d["num-of-records-written"], json!(rec.records_written));
    assert_eq!(d["data-written"], json!(rec.bytes_written));
    assert_eq!(d["execution-id"], json!(rec.execution_id));
    assert_eq!(
        d["incremental-transfer-time-range"]["end"],
        json!(rec.window.end.to_rfc3339())
    );

    // 2. Two failed scheduled runs: the second reaches the threshold, the flow is suspended and
    //    a deactivation event names the reason.
    //    (Complete pulls, so each run has records to write.)
    fail.store(true, Ordering::SeqCst);
    let complete = RunRequest {
        mode: Some(PullMode::Complete),
        ..scheduled.clone()
    };
    for _ in 0..2 {
        clock.advance(chrono::Duration::hours(1));
        let failed = engine.run(complete.clone(), &NoopObserver).await;
        assert!(!failed.succeeded());
    }
    let events = receive(&sqs, &queue, 5).await;
    let ends = of_type(&events, "ferry End Flow Run Report");
    assert_eq!(ends.len(), 2, "{events:#?}");
    for e in &ends {
        let s = e["detail"]["status"].as_str().unwrap();
        assert!(s.contains("injected write failure"), "{s}");
        assert_eq!(e["detail"]["num-of-records-written"], json!(0));
        assert!(e["detail"]["error"]["name"].is_string());
    }
    let off = of_type(&events, "ferry Scheduled Flow Deactivated");
    assert_eq!(off.len(), 1, "{events:#?}");
    assert_eq!(off[0]["detail"]["flow-name"], json!(name));
    let reason = off[0]["detail"]["deactivation-reason"].as_str().unwrap();
    assert!(reason.contains("2 consecutive failed runs"), "{reason}");
    assert_eq!(
        deps.flows
            .get_flow(&name, None)
            .await
            .unwrap()
            .unwrap()
            .status,
        FlowStatus::Suspended
    );
}
