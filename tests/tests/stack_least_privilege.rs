//! Least privilege, proven on the deployed shape: every grant of every function role is used by
//! the code on some path — a successful run with rejected records, a run that fails (the
//! failure path), a run stopped from outside (the reaper), a profile's OAuth token refreshed
//! and written back — or is listed below with the reason it cannot be exercised here. And no
//! call the code makes is refused (the IAM gate would have failed the runs).

use ferry::flow::Flow;
use ferry_tests::stack::{template, Stack};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Granted actions no scenario here can exercise, and why they stay.
const NOT_EXERCISED: &[(&str, &str, &str)] = &[
    (
        "*",
        "logs:CreateLogGroup",
        "Lambda's own log delivery (AWSLambdaBasicExecutionRole), not ferry's code",
    ),
    (
        "*",
        "logs:CreateLogStream",
        "Lambda's own log delivery (AWSLambdaBasicExecutionRole)",
    ),
    (
        "*",
        "logs:PutLogEvents",
        "Lambda's own log delivery (AWSLambdaBasicExecutionRole)",
    ),
    (
        "*",
        "xray:PutTraceSegments",
        "Lambda's active tracing (AWSXrayWriteOnlyAccess)",
    ),
    (
        "*",
        "xray:PutTelemetryRecords",
        "Lambda's active tracing (AWSXrayWriteOnlyAccess)",
    ),
    (
        "*",
        "xray:GetSamplingRules",
        "Lambda's active tracing (AWSXrayWriteOnlyAccess)",
    ),
    (
        "*",
        "xray:GetSamplingTargets",
        "Lambda's active tracing (AWSXrayWriteOnlyAccess)",
    ),
    (
        "*",
        "xray:GetSamplingStatisticSummaries",
        "Lambda's active tracing (AWSXrayWriteOnlyAccess)",
    ),
    (
        "*",
        "s3:AbortMultipartUpload",
        "aborting a multipart upload that failed midway (adapters/s3.rs); a fault path",
    ),
];

/// Actions each function's role grants (resolved template; the KMS statement only exists with
/// a key).
fn granted(stack: &Stack) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, role) in &stack.roles {
        let function = id.trim_end_matches("Role").to_string();
        if !stack.functions.contains_key(&function) {
            continue;
        }
        for (_, doc) in &role.policies {
            for st in doc["Statement"].as_array().into_iter().flatten() {
                if st["Effect"] != "Allow" {
                    continue;
                }
                let actions: Vec<String> = match &st["Action"] {
                    Value::String(a) => vec![a.clone()],
                    Value::Array(a) => a
                        .iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect(),
                    _ => vec![],
                };
                out.entry(function.clone()).or_default().extend(actions);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_grant_is_used_and_no_call_is_refused() {
    let stack = Stack::deploy().await;
    let deps = stack.deps();
    let b = stack.output_bucket.clone();
    let _ = template::ACCOUNT;

    // 1. Success with rejected records, incrementally twice (pushdown reads the staged schema).
    let ok = Flow::parse(
        &format!(
            "name: ok\nsource:\n  connector: sample\n  entity: accounts\n  properties: {{ records: 3000 }}\n  incremental: {{ field: updated_at, first_execution_from: \"2000-01-01T00:00:00Z\" }}\n  chunk: {{ records: 1000 }}\ndestination:\n  s3: {{ bucket: {b}, prefix: lp }}\n  format: parquet\n  error_location: s3://{b}/lp/_rejected\ntasks:\n  - filter: {{ field: status, op: not_equal, value: deleted }}\n  - validate: {{ field: industry, check: non_null }}\ntrigger: {{ on_demand: {{}} }}\n"
        ),
        "ok.yaml",
    )
    .unwrap();
    deps.flows.put_flow(&ok, chrono::Utc::now()).await.unwrap();
    for _ in 0..2 {
        let e = stack
            .run(&json!({"flow": "ok", "trigger": "on_demand"}))
            .await;
        assert!(e.succeeded(), "{e:?}\n{}", stack.logs());
    }
    // 2. A run that fails after writing (terminate_run): the failure path cleans up.
    let bad = Flow::parse(
        &format!(
            "name: bad\nsource:\n  connector: sample\n  entity: accounts\n  properties: {{ records: 3000 }}\n  chunk: {{ records: 1000 }}\ndestination:\n  s3: {{ bucket: {b}, prefix: lp }}\n  format: jsonl\n  aggregation: none\n  max_rejected: 10\ntasks:\n  - validate: {{ field: industry, check: non_null }}\ntrigger: {{ on_demand: {{}} }}\n"
        ),
        "bad.yaml",
    )
    .unwrap();
    deps.flows.put_flow(&bad, chrono::Utc::now()).await.unwrap();
    let e = stack
        .run(&json!({"flow": "bad", "trigger": "on_demand", "mode": "complete"}))
        .await;
    assert_eq!(e.status, "FAILED");
    // 3. A run stopped from outside: the reaper.
    let slow = Flow::parse(
        &format!(
            "name: slow\nsource:\n  connector: sample\n  entity: accounts\n  properties: {{ records: 3000, page_size: 100, latency_ms: 100 }}\n  chunk: {{ records: 300 }}\ndestination:\n  s3: {{ bucket: {b}, prefix: lp }}\n  format: jsonl\n  aggregation: none\ntrigger: {{ on_demand: {{}} }}\n"
        ),
        "slow.yaml",
    )
    .unwrap();
    deps.flows
        .put_flow(&slow, chrono::Utc::now())
        .await
        .unwrap();
    let arn = stack
        .start(
            &json!({"flow": "slow", "trigger": "on_demand", "mode": "complete"}),
            Some("stop-me"),
        )
        .await;
    for _ in 0..400 {
        if !stack.keys(&b, "lp/slow/").await.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stack
        .sfn()
        .stop_execution()
        .execution_arn(&arn)
        .send()
        .await
        .unwrap();
    stack.wait(&arn, std::time::Duration::from_secs(60)).await;
    let d = stack
        .wait_deliveries(2, std::time::Duration::from_secs(60))
        .await;
    assert!(
        d.iter()
            .any(|d| d.event["detail"]["name"] == "stop-me" && d.outcome.is_ok()),
        "{d:#?}"
    );
    // 4. A profile whose OAuth tokens live one second: every step that calls the API refreshes
    //    the token and writes the rotated refresh token back (start-run's describe, fetch-page).
    let api = ferry_tests::Mock::start(ferry_tests::MockConfig {
        tickets: 60,
        auth: ferry_tests::MockAuth::OAuth {
            client_id: "cid".into(),
            client_secret: "csecret".into(),
            refresh_token: "rt-0".into(),
            token_ttl: std::time::Duration::from_secs(1),
        },
        ..Default::default()
    })
    .await;
    let profile = format!("api-{}", stack.name);
    let secret = json!({"type": "oauth2_refresh_token", "hosts": ["127.0.0.1"], "token_url": format!("{}/oauth/token", api.url()),
        "client_id": "cid", "client_secret": "csecret", "refresh_token": "rt-0"});
    deps.secrets
        .put_secret(&profile, &ferry::ports::Secret::new(secret))
        .await
        .unwrap();
    let oflow = Flow::parse(
        &format!(
            "name: oauth\nsource:\n  connector: rest\n  profile: {profile}\n  entity: tickets\n  properties:\n    base_url: {}\n    endpoints:\n      tickets: {{ path: /offset/tickets, records: \"$.data[*]\", paginator: {{ type: offset, limit: 20 }} }}\ndestination:\n  s3: {{ bucket: {b}, prefix: lp }}\n  format: jsonl\ntrigger: {{ on_demand: {{}} }}\n",
            api.url()
        ),
        "oauth.yaml",
    )
    .unwrap();
    deps.flows
        .put_flow(&oflow, chrono::Utc::now())
        .await
        .unwrap();
    let e = stack
        .run(&json!({"flow": "oauth", "trigger": "on_demand", "mode": "complete"}))
        .await;
    assert!(e.succeeded(), "{e:?}\n{}", stack.logs());

    // No call was refused, and every grant was used (or is listed with its reason).
    assert!(stack.denials().is_empty(), "{:#?}", stack.denials());
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for d in stack.decisions() {
        used.entry(d.function).or_default().insert(d.action);
    }
    let mut report = String::new();
    let mut unused = vec![];
    for (function, actions) in granted(&stack) {
        for a in &actions {
            let exercised = used.get(&function).is_some_and(|u| u.contains(a));
            let excused = NOT_EXERCISED
                .iter()
                .find(|(f, x, _)| (*f == "*" || *f == function) && x == a);
            report.push_str(&format!(
                "{function:<24} {a:<34} {}\n",
                if exercised {
                    "used".to_string()
                } else if let Some((_, _, why)) = excused {
                    format!("not exercised: {why}")
                } else {
                    "UNUSED".to_string()
                }
            ));
            if !exercised && excused.is_none() {
                unused.push(format!("{function}: {a}"));
            }
        }
    }
    println!("{report}");
    assert!(unused.is_empty(), "granted but never used by the code (remove the grant, or list it in NOT_EXERCISED with the reason):\n{unused:#?}\n{report}");
}
