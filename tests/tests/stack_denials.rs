//! The deployed-stack harness holds every function to its own role: take away one grant the
//! code needs and the run fails at once (no retries: a refused permission is not transient)
//! with a message naming the function, the action and the resource — in the execution's
//! cause and in the run record.

use ferry::flow::Flow;
use ferry_tests::stack::{Stack, StackOptions};
use serde_json::{json, Value};

/// Remove `action` from the statement `sid` of `function`'s SAM policies.
fn without(function: &'static str, sid: &'static str, action: &'static str) -> StackOptions {
    StackOptions {
        retry_interval_ms: Some(20),
        mutate: Some(Box::new(move |tpl: &mut Value| {
            let policies = tpl["Resources"][function]["Properties"]["Policies"]
                .as_array_mut()
                .expect("Policies");
            let mut found = false;
            for p in policies.iter_mut() {
                let Some(statements) = p.get_mut("Statement").and_then(Value::as_array_mut) else {
                    continue;
                };
                for st in statements.iter_mut() {
                    if st["Sid"] == sid {
                        let actions = st["Action"].as_array_mut().expect("Action list");
                        let before = actions.len();
                        actions.retain(|a| a != action);
                        found = actions.len() < before;
                    }
                }
                // A statement with no action left is not valid IAM: drop it.
                statements.retain(|st| st["Action"].as_array().is_none_or(|a| !a.is_empty()));
            }
            assert!(found, "{function} has no statement {sid} granting {action}");
        })),
        ..Default::default()
    }
}

fn flow(stack: &Stack) -> Flow {
    let b = &stack.output_bucket;
    Flow::parse(
        &format!(
            r#"
name: grants
source:
  connector: sample
  entity: accounts
  properties: {{ records: 3000, as_of: "2026-01-01T00:00:00Z" }}
  incremental: {{ field: updated_at, first_execution_from: "2025-01-01T00:00:00Z" }}
  chunk: {{ records: 1000 }}
destination:
  s3: {{ bucket: {b}, prefix: raw }}
  format: parquet
  error_location: s3://{b}/raw/_rejected
tasks:
  - filter: {{ field: status, op: not_equal, value: deleted }}
  - validate: {{ field: industry, check: non_null }}
trigger: {{ on_demand: {{}} }}
"#
        ),
        "grants.yaml",
    )
    .unwrap()
}

/// Run the flow on a stack without the grant; assert the refusal is reported as it should be.
async fn refused(opts: StackOptions, function: &str, action: &str, resource_part: &str) {
    let stack = Stack::deploy_with(opts).await;
    let deps = stack.deps();
    deps.flows
        .put_flow(&flow(&stack), chrono::Utc::now())
        .await
        .unwrap();
    let e = stack
        .run(&json!({"flow": "grants", "trigger": "on_demand"}))
        .await;
    assert_eq!(e.status, "FAILED", "{e:?}");
    let denials = stack.denials();
    assert!(
        denials.iter().any(|d| d.function == function
            && d.action == action
            && d.resource.contains(resource_part)),
        "expected {function} to be refused {action} on *{resource_part}*: {denials:#?}"
    );
    assert_eq!(
        e.error.as_deref(),
        Some("Fatal"),
        "a refused permission is not retried: {e:?}"
    );
    let cause = e.cause.clone().unwrap_or_default();
    for needle in [function, action, resource_part, "AccessDenied"] {
        assert!(cause.contains(needle), "the cause names {needle}: {cause}");
    }
    // Refused once, not retried.
    let failed: Vec<_> = stack
        .invocations()
        .into_iter()
        .filter(|i| i.function == function && i.error.is_some())
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "{function} retried a refused call: {failed:?}"
    );
    // The failure path recorded it for `ferry runs get`.
    let run_id = e.arn.rsplit(':').next().unwrap();
    let rec = deps.runs.get_run(run_id).await.unwrap().unwrap();
    assert_eq!(rec.status, ferry::model::RunStatus::Error);
    let msg = rec.error.unwrap().message;
    assert!(msg.contains(action) && msg.contains(resource_part), "{msg}");
    assert!(deps.runs.get_state("grants").await.unwrap().lease.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_s3_needs_to_stage_its_carry() {
    refused(
        without("WriteS3Function", "StageCarry", "s3:PutObject"),
        "WriteS3Function",
        "s3:PutObject",
        "/carry/chunk-000000.json",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fetch_page_needs_to_read_the_staged_schema() {
    refused(
        without("FetchPageFunction", "ReadRunSchema", "s3:GetObject"),
        "FetchPageFunction",
        "s3:GetObject",
        "/schema.json",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_s3_needs_to_write_output_and_rejected_records() {
    refused(
        without("WriteS3Function", "WriteOutput", "s3:PutObject"),
        "WriteS3Function",
        "s3:PutObject",
        "/raw/_rejected/grants/",
    )
    .await;
}

/// With `OutputPrefix`, the functions may write output only under it: a flow writing elsewhere
/// in the bucket is refused (naming the key), one under it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn output_writes_are_confined_to_the_output_prefix() {
    let stack = Stack::deploy_with(StackOptions {
        retry_interval_ms: Some(20),
        parameters: [("OutputPrefix".to_string(), "lake/".to_string())].into(),
        ..Default::default()
    })
    .await;
    let deps = stack.deps();
    let b = &stack.output_bucket;
    for (name, prefix, ok) in [("outside", "raw", false), ("inside", "lake/crm", true)] {
        let f = Flow::parse(
            &format!(
                "name: {name}\nsource:\n  connector: sample\n  entity: contacts\n  properties: {{ records: 200 }}\ndestination:\n  s3: {{ bucket: {b}, prefix: {prefix} }}\n  format: jsonl\ntrigger: {{ on_demand: {{}} }}\n"
            ),
            "p.yaml",
        )
        .unwrap();
        deps.flows.put_flow(&f, chrono::Utc::now()).await.unwrap();
        let e = stack
            .run(&json!({"flow": name, "trigger": "on_demand", "mode": "complete"}))
            .await;
        if ok {
            assert!(e.succeeded(), "{e:?}\n{:#?}", stack.denials());
        } else {
            assert_eq!(e.status, "FAILED");
            let cause = e.cause.unwrap_or_default();
            assert!(
                cause.contains("s3:PutObject") && cause.contains(&format!("{b}/raw/{name}/")),
                "{cause}"
            );
        }
    }
}

/// A profile's secret is readable only when it carries this stack's tag (`ferry:stack`):
/// a secret under the same prefix that was not given to the stack (untagged, or tagged for
/// another stack) is refused to the functions, and the run fails naming the profile. The same
/// flow with a tagged secret (what `SecretsManagerStore` creates for the stack) reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn functions_read_only_the_secrets_tagged_for_their_stack() {
    let stack = Stack::deploy_with(StackOptions {
        retry_interval_ms: Some(20),
        ..Default::default()
    })
    .await;
    let deps = stack.deps();
    let prefix = stack.outputs["SecretPrefix"].clone();
    let admin = aws_sdk_secretsmanager::Client::new(&stack.conf);
    let secret =
        json!({"type": "api_key", "hosts": ["127.0.0.1"], "header": "x-api-key", "key": "k-123"})
            .to_string();
    // Untagged, and tagged for another stack: both under this stack's prefix.
    admin
        .create_secret()
        .name(format!("{prefix}untagged"))
        .secret_string(&secret)
        .send()
        .await
        .unwrap();
    admin
        .create_secret()
        .name(format!("{prefix}other"))
        .secret_string(&secret)
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("ferry:stack")
                .value("another-stack")
                .build(),
        )
        .send()
        .await
        .unwrap();
    // Tagged for this stack by ferry's own store.
    deps.secrets
        .put_secret(
            "mine",
            &ferry::ports::Secret::new(serde_json::from_str(&secret).unwrap()),
        )
        .await
        .unwrap();
    let b = &stack.output_bucket;
    for (profile, readable) in [("untagged", false), ("other", false), ("mine", true)] {
        let f = Flow::parse(
            &format!(
                r#"
name: prof-{profile}
source:
  connector: sample
  profile: {profile}
  entity: accounts
  properties: {{ records: 10, as_of: "2026-01-01T00:00:00Z" }}
destination:
  s3: {{ bucket: {b}, prefix: p-{profile} }}
  format: jsonl
trigger: {{ on_demand: {{}} }}
"#
            ),
            "p.yaml",
        )
        .unwrap();
        deps.flows.put_flow(&f, chrono::Utc::now()).await.unwrap();
        let e = stack
            .run(&json!({"flow": format!("prof-{profile}"), "trigger": "on_demand"}))
            .await;
        let refused: Vec<_> = stack
            .denials()
            .into_iter()
            .filter(|d| {
                d.action == "secretsmanager:GetSecretValue"
                    && d.resource.contains(&format!("{prefix}{profile}"))
            })
            .collect();
        if readable {
            assert_eq!(e.status, "SUCCEEDED", "{profile}: {e:?}");
            assert!(refused.is_empty(), "{profile}: {refused:?}");
        } else {
            assert_eq!(e.status, "FAILED", "{profile}: {e:?}");
            assert!(!refused.is_empty(), "{profile}: no refusal recorded");
            let cause = e.cause.clone().unwrap_or_default();
            assert!(
                cause.contains(profile) && cause.contains("AccessDenied"),
                "{profile}: the cause names the profile and the refusal: {cause}"
            );
        }
    }
}
