//! The deployed shape, run as deployed: resources from template.yaml, the five real Lambda
//! binaries behind the Lambda Runtime API under their own roles (every AWS call decided by an
//! IAM policy simulator), and the real flow-run.asl.json on an independent interpreter
//! (tests/src/stack). Each scenario checks the run record, the objects read back by pyarrow,
//! the manifest, the watermark, the lease and staging cleanup.

use ferry::flow::Flow;
use ferry_tests::stack::{Execution, Stack};
use serde_json::{json, Value};

/// The README quickstart flow, writing to the stack's output bucket.
fn quickstart(stack: &Stack, name: &str) -> Flow {
    let text = std::fs::read_to_string(
        ferry_tests::stack::repo_root().join("examples/flows/sample-crm.yaml"),
    )
    .expect("quickstart flow");
    let b = &stack.output_bucket;
    let text = text
        .replace("name: sample-crm-accounts", &format!("name: {name}"))
        .replace(
            "local: ferry-out",
            &format!("s3: {{ bucket: {b}, prefix: raw }}"),
        )
        .replace(
            "error_location: ferry-out/_rejected",
            &format!("error_location: s3://{b}/raw/_rejected"),
        );
    Flow::parse(&text, "sample-crm.yaml").expect("quickstart flow parses")
}

async fn register(stack: &Stack, flow: &Flow) {
    stack
        .deps()
        .flows
        .put_flow(flow, chrono::Utc::now())
        .await
        .expect("register the flow");
}

fn on_demand(flow: &str) -> Value {
    json!({"flow": flow, "trigger": "on_demand"})
}

fn fail_report(stack: &Stack, e: &Execution) -> String {
    format!(
        "{} {:?}: {:?}\ndenials: {:#?}\n{}",
        e.status,
        e.error,
        e.cause,
        stack.denials(),
        stack.logs()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quickstart_first_and_incremental_run_on_the_deployed_stack() {
    let stack = Stack::deploy().await;
    let flow = quickstart(&stack, "crm");
    register(&stack, &flow).await;

    let first = stack.run(&on_demand("crm")).await;
    assert!(first.succeeded(), "{}", fail_report(&stack, &first));
    assert!(stack.denials().is_empty(), "{:#?}", stack.denials());
    let c = stack
        .assert_committed(&first, "raw/crm/", "parquet", Some("id"))
        .await;
    // 50,000 accounts, the deleted ones filtered at the source (pushdown) and again by the task.
    assert!(c.record.records_written > 40_000, "{:?}", c.record);
    assert_eq!(c.record.records_written, c.read["rows"].as_u64().unwrap());
    assert!(c.read["schema"]["phone"].is_string());
    assert!(
        c.read["schema"].get("internal_notes").is_none(),
        "map_all excluded it"
    );
    assert!(c.read["records"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["status"] != "deleted"));
    assert!(c.read["records"].as_array().unwrap().iter().all(|r| {
        r["phone"].as_str().is_none_or(|p| {
            p.chars()
                .rev()
                .skip(4)
                .all(|ch| ch == '*' || ch == '-' || ch == ' ')
        })
    }));

    // The second run reads only what changed since the watermark (minus the 10 minute lookback).
    let second = stack.run(&on_demand("crm")).await;
    let c2 = stack
        .assert_committed(&second, "raw/crm/", "parquet", Some("id"))
        .await;
    assert_eq!(
        c2.record.window.start,
        Some(c.record.window.end - chrono::Duration::minutes(10))
    );
    assert!(
        c2.record.records_processed < c.record.records_processed / 10,
        "{:?}",
        c2.record
    );
}

/// A `rest` flow against the mock API (offset paging, several chunks), and a Zendesk flow with
/// its profile in Secrets Manager, both through the deployed stack.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rest_and_zendesk_flows_on_the_deployed_stack() {
    use ferry_tests::saas::zendesk::{ZendeskMock, ZendeskMockConfig};
    use ferry_tests::{Mock, MockConfig};
    let stack = Stack::deploy().await;
    let b = &stack.output_bucket;

    let api = Mock::start(MockConfig {
        tickets: 230,
        ..Default::default()
    })
    .await;
    let rest = Flow::parse(
        &format!(
            r#"
name: tickets
source:
  connector: rest
  entity: tickets
  properties:
    base_url: {url}
    endpoints:
      tickets: {{ path: /offset/tickets, records: "$.data[*]", paginator: {{ type: offset, limit: 20, total_path: "$.total" }} }}
  chunk: {{ records: 100 }}
destination:
  s3: {{ bucket: {b}, prefix: api }}
  format: jsonl
  compression: gzip
tasks:
  - map_all: {{}}
trigger: {{ on_demand: {{}} }}
"#,
            url = api.url()
        ),
        "rest.yaml",
    )
    .unwrap();
    register(&stack, &rest).await;
    let e = stack.run(&on_demand("tickets")).await;
    let c = stack
        .assert_committed(&e, "api/tickets/", "jsonl", Some("id"))
        .await;
    assert_eq!(c.record.records_written, 230);
    assert!(c.record.chunks >= 2, "several chunks: {:?}", c.record);
    let ids: Vec<u64> = c.read["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    ferry_tests::assert_once(
        "rest on the stack",
        &ids,
        &(1..=230).collect::<std::collections::BTreeSet<u64>>(),
    );

    let zd = ZendeskMock::start(ZendeskMockConfig {
        tickets: 75,
        ..Default::default()
    })
    .await;
    let profile = format!("zendesk-{}", stack.name);
    stack
        .deps()
        .secrets
        .put_secret(
            &profile,
            &ferry::ports::Secret::new(json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "agent@acme.test/token", "password": "zd-token-1"})),
        )
        .await
        .unwrap();
    let text = std::fs::read_to_string(
        ferry_tests::stack::repo_root().join("examples/flows/zendesk-tickets.yaml"),
    )
    .unwrap();
    let text = text
        .replace("subdomain: acme", &format!("base_url: {}", zd.url()))
        .replace("profile: zendesk-acme", &format!("profile: {profile}"))
        .replace(
            "local: ferry-out",
            &format!("s3: {{ bucket: {b}, prefix: zd }}"),
        );
    let flow = Flow::parse(&text, "zendesk-tickets.yaml").unwrap();
    register(&stack, &flow).await;
    let e = stack.run(&on_demand("zendesk-tickets")).await;
    let c = stack
        .assert_committed(&e, "zd/zendesk-tickets/", "jsonl", Some("id"))
        .await;
    let got: Vec<u64> = c.read["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    ferry_tests::assert_once(
        "zendesk on the stack",
        &got,
        &zd.ticket_ids(None, None, false),
    );
    assert!(stack.denials().is_empty(), "{:#?}", stack.denials());
}

/// Rejected records go to `error_location` (written by write-s3: transform-batch writes only
/// to staging); files roll over at `file_size_mb` across chunks, under Hive partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejected_records_file_rotation_and_partitions_on_the_deployed_stack() {
    let stack = Stack::deploy().await;
    let b = &stack.output_bucket;
    let flow = Flow::parse(
        &format!(
            r#"
name: parts
source:
  connector: sample
  entity: accounts
  properties: {{ records: 60000, as_of: "2026-01-01T00:00:00Z" }}
  incremental: {{ field: updated_at, first_execution_from: "2025-01-01T00:00:00Z" }}
  chunk: {{ records: 15000 }}
destination:
  s3: {{ bucket: {b}, prefix: lake }}
  format: jsonl
  compression: none
  layout: {{ partition_by: [country] }}
  file_size_mb: 1
  error_location: s3://{b}/lake/_rejected
tasks:
  - map_all: {{ exclude: [internal_notes] }}
  - validate: {{ field: industry, check: non_null }}
trigger: {{ on_demand: {{}} }}
"#
        ),
        "parts.yaml",
    )
    .unwrap();
    register(&stack, &flow).await;
    let e = stack.run(&on_demand("parts")).await;
    assert!(e.succeeded(), "{}", fail_report(&stack, &e));
    let c = stack
        .assert_committed(&e, "lake/parts/", "jsonl", Some("id"))
        .await;
    let rec = &c.record;
    assert_eq!(rec.chunks, 4);
    assert!(rec.records_rejected > 1000, "{rec:?}");
    assert_eq!(rec.records_written + rec.records_rejected, 60000);
    // Rejected records, each with its reason, under the error location.
    let rejected_keys = stack.keys(b, "lake/_rejected/parts/").await;
    assert_eq!(rejected_keys.len(), 4, "{rejected_keys:?}");
    let mut n = 0;
    for k in &rejected_keys {
        for line in String::from_utf8(stack.get(b, k).await).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert!(v["reason"].as_str().unwrap().contains("industry"), "{v}");
            assert!(v["record"]["industry"].is_null());
            n += 1;
        }
    }
    assert_eq!(n, rec.records_rejected);
    // Hive partitions; each partition's rows (about 2.4 MB) roll over into more than one file.
    let mut per_part = std::collections::BTreeMap::<String, usize>::new();
    for k in &c.keys {
        let part = k
            .split('/')
            .find(|s| s.starts_with("country="))
            .expect("partition folder")
            .to_string();
        *per_part.entry(part).or_default() += 1;
    }
    assert!(per_part.len() >= 10, "{per_part:?}");
    assert!(
        per_part.values().filter(|n| **n >= 2).count() >= 8,
        "files rolled over: {per_part:?}"
    );
    for o in &c.manifest.objects {
        assert!(
            o.bytes <= 1_150_000,
            "{} is {} bytes, over file_size_mb",
            o.key,
            o.bytes
        );
    }
}

/// `ferry flows put --remote` creates the Scheduler schedule (its target, role and input); the
/// schedule fires as EventBridge Scheduler would (the role must trust scheduler.amazonaws.com
/// and may start only this state machine) and the run records trigger type Scheduled. An
/// event-triggered flow gets a rule whose target role trusts events.amazonaws.com.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scheduled_and_event_triggered_flows_start_through_their_roles() {
    let stack = Stack::deploy().await;
    let b = &stack.output_bucket;
    let file = |name: &str, trigger: &str| {
        let text = format!(
            "name: {name}\nsource:\n  connector: sample\n  entity: contacts\n  properties: {{ records: 500 }}\n  incremental: {{ field: updated_at, first_execution_from: \"2000-01-01T00:00:00Z\" }}\ndestination:\n  s3: {{ bucket: {b}, prefix: trig }}\n  format: parquet\ntrigger: {trigger}\n"
        );
        let p = stack.dir().join(format!("{name}.yaml"));
        std::fs::write(&p, text).unwrap();
        p
    };
    let hourly = file(
        "hourly",
        "{ scheduled: { expression: \"rate(1 hour)\", mode: incremental } }",
    );
    let (code, out, err) = stack.cli(&["flows", "put", hourly.to_str().unwrap(), "--remote"]);
    assert_eq!(code, 0, "{out}{err}");
    let sched = ferry::adapters::scheduler::trigger_name("hourly");
    let arn = stack
        .fire_schedule(&sched, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let e = stack.wait(&arn, std::time::Duration::from_secs(120)).await;
    let c = stack
        .assert_committed(&e, "trig/hourly/", "parquet", Some("id"))
        .await;
    assert_eq!(c.record.trigger, ferry::model::TriggerType::Scheduled);
    assert_eq!(c.record.records_written, 500);

    let on_event = file(
        "on-event",
        "{ event: { pattern: { source: [acme.crm], detail-type: [export-ready] } } }",
    );
    let (code, out, err) = stack.cli(&["flows", "put", on_event.to_str().unwrap(), "--remote"]);
    assert_eq!(code, 0, "{out}{err}");
    let rule = ferry::adapters::scheduler::trigger_name("on-event");
    let event = json!({"id": "1", "source": "acme.crm", "detail-type": "export-ready", "account": "123456789012",
                       "region": "us-east-1", "time": "2026-12-01T00:00:00Z", "resources": [], "detail": {}});
    let started = stack
        .fire_rule(&rule, "default", &event)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let e = stack
        .wait(&started[0], std::time::Duration::from_secs(120))
        .await;
    let c = stack
        .assert_committed(&e, "trig/on-event/", "parquet", Some("id"))
        .await;
    assert_eq!(c.record.trigger, ferry::model::TriggerType::Event);

    // The Scheduler role cannot stand in for the rule role: EventBridge could not assume it.
    let scheduler_role = stack.outputs["SchedulerRoleArn"].clone();
    let (code, out, err) = stack.cli_with(
        &["flows", "put", on_event.to_str().unwrap(), "--remote"],
        &[("FERRY_EVENT_RULE_ROLE_ARN", &scheduler_role)],
    );
    assert_eq!(code, 0, "{out}{err}");
    let refused = stack.fire_rule(&rule, "default", &event).await.unwrap_err();
    assert!(
        refused.contains("events.amazonaws.com cannot assume SchedulerRole"),
        "{refused}"
    );
    // Without the rule role, the CLI refuses the event flow, naming the option and the output.
    let (code, out, err) = stack.cli_with(
        &["flows", "put", on_event.to_str().unwrap(), "--remote"],
        &[("FERRY_EVENT_RULE_ROLE_ARN", "")],
    );
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("FERRY_EVENT_RULE_ROLE_ARN") && err.contains("EventRuleRoleArn"),
        "{err}"
    );
}

/// `ferry run NAME --remote` starts the deployed state machine; `ferry stop RUN_ID` stops a run
/// in flight: the execution is ABORTED, the run Canceled, the lease free, no manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_run_and_stop_from_the_cli() {
    let stack = Stack::deploy().await;
    let b = &stack.output_bucket;
    let path = stack.dir().join("slow.yaml");
    std::fs::write(
        &path,
        format!(
            "name: slow\nsource:\n  connector: sample\n  entity: accounts\n  properties: {{ records: 3000, page_size: 100, latency_ms: 200 }}\n  chunk: {{ records: 200 }}\ndestination:\n  s3: {{ bucket: {b}, prefix: slow }}\n  format: parquet\ntrigger: {{ on_demand: {{}} }}\n"
        ),
    )
    .unwrap();
    let (code, out, err) = stack.cli(&["flows", "put", path.to_str().unwrap(), "--remote"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = stack.cli(&["run", "slow", "--remote", "--complete"]);
    assert_eq!(code, 0, "{out}{err}");
    let run_id = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("run ")
                .and_then(|r| r.strip_suffix(" started"))
        })
        .unwrap_or_else(|| panic!("no run id in {out}"))
        .to_string();
    let deps = stack.deps();
    // Wait until the run is recorded and a chunk is in flight.
    for _ in 0..200 {
        if deps.runs.get_run(&run_id).await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (code, out, err) = stack.cli(&["stop", &run_id, "--remote"]);
    assert_eq!(code, 0, "{out}{err}");
    let arn = ferry_cli_execution_arn(&stack, &run_id);
    let e = stack.wait(&arn, std::time::Duration::from_secs(60)).await;
    assert_eq!(e.status, "ABORTED", "{e:?}");
    let rec = deps.runs.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(rec.status, ferry::model::RunStatus::Canceled);
    assert!(deps.runs.get_state("slow").await.unwrap().lease.is_none());
    assert!(stack.keys(b, "slow/slow/_manifests/").await.is_empty());
}

fn ferry_cli_execution_arn(stack: &Stack, run_id: &str) -> String {
    stack
        .state_machine_arn
        .replace(":stateMachine:", ":execution:")
        + ":"
        + run_id
}

/// An execution stopped from outside (the console, StopExecution) skips the state machine's
/// Catch: the reaper — template.yaml's rule on the execution's ABORTED status, targeting
/// finalize through its Lambda permission — ends the run: Canceled, its uncommitted output and
/// staging removed, the lease free, the watermark where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reaper_ends_a_run_whose_execution_was_aborted() {
    let stack = Stack::deploy().await;
    let b = &stack.output_bucket;
    let flow = Flow::parse(
        &format!(
            "name: aborted\nsource:\n  connector: sample\n  entity: accounts\n  properties: {{ records: 4000, page_size: 100, latency_ms: 100 }}\n  chunk: {{ records: 500 }}\ndestination:\n  s3: {{ bucket: {b}, prefix: ab }}\n  format: jsonl\n  aggregation: none\ntrigger: {{ on_demand: {{}} }}\n"
        ),
        "aborted.yaml",
    )
    .unwrap();
    register(&stack, &flow).await;
    let arn = stack
        .start(
            &json!({"flow": "aborted", "trigger": "on_demand", "mode": "complete"}),
            Some("abort-me"),
        )
        .await;
    let deps = stack.deps();
    // Let it write a chunk or two, then stop it from outside.
    for _ in 0..400 {
        if !stack.keys(b, "ab/aborted/").await.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        !stack.keys(b, "ab/aborted/").await.is_empty(),
        "a chunk was written before the stop"
    );
    stack
        .sfn()
        .stop_execution()
        .execution_arn(&arn)
        .send()
        .await
        .unwrap();
    let e = stack.wait(&arn, std::time::Duration::from_secs(60)).await;
    assert_eq!(e.status, "ABORTED");
    let d = stack
        .wait_deliveries(1, std::time::Duration::from_secs(60))
        .await;
    let reaped = d
        .iter()
        .find(|d| d.function == "FinalizeFunction" && d.event["detail"]["status"] == "ABORTED")
        .unwrap_or_else(|| panic!("the reaper was not invoked: {d:#?}"));
    assert!(reaped.outcome.is_ok(), "{reaped:?}");
    // The step the stop interrupted runs on (Lambda does not stop with the execution): its
    // fenced write fails or removes itself (steps::fenced_put). Wait for it, then nothing of the
    // run may be left.
    stack.wait_idle(std::time::Duration::from_secs(60)).await;
    let rec = deps.runs.get_run("abort-me").await.unwrap().unwrap();
    assert_eq!(rec.status, ferry::model::RunStatus::Canceled, "{rec:?}");
    let state = deps.runs.get_state("aborted").await.unwrap();
    assert!(state.lease.is_none());
    assert_eq!(state.watermark, None);
    assert_eq!(state.consecutive_failures, 0, "a stop is not a failure");
    assert!(
        stack.keys(b, "ab/aborted/").await.is_empty(),
        "uncommitted output removed"
    );
    assert!(
        stack
            .keys(&stack.staging_bucket, "staging/aborted/")
            .await
            .is_empty(),
        "staging removed"
    );
}

/// A sliced run on the deployed stack: the Distributed Map "Run Slices" with its ItemReader over
/// the staged slice list, read as the state machine's role through the IAM gate. The independent
/// interpreter runs Map states inline only (no child executions, no ItemReader of its own):
/// tests/harness/stack-server.mjs reads the items for it ("DEVIATION (Distributed Map
/// ItemReader)") and each slice runs the real processor states and functions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sliced_flow_on_the_deployed_stack() {
    let stack = Stack::deploy().await;
    let c = run_sliced_sample(&stack, "sliced", 3_000, "count: 2, records: 1000").await;
    let slices: std::collections::BTreeSet<u32> = stack
        .deps()
        .runs
        .chunk_results(&c.record.run_id)
        .await
        .expect("chunk results")
        .iter()
        .map(|r| r.chunk / ferry::steps::slices::STRIDE)
        .collect();
    assert!(slices.len() >= 3, "slices that read records: {slices:?}");
}

/// Slices that commit on their own (`source.slice.commit: slice`) on the deployed stack: the
/// "Commit Slice" state with the template's finalize role (its manifest, the flow's committed
/// slices and the watermark in the state item), then the run's one manifest naming theirs.
#[tokio::test]
async fn slices_committing_on_their_own_on_the_deployed_stack() {
    let stack = Stack::deploy().await;
    let b = &stack.output_bucket;
    run_sliced_sample(
        &stack,
        "perslice",
        2_000,
        "count: 2, records: 800, commit: slice",
    )
    .await;
    let manifests: Vec<String> = stack
        .keys(b, "raw/perslice/_manifests/")
        .await
        .into_iter()
        .filter(|k| k.contains("-slice-"))
        .collect();
    assert!(manifests.len() >= 3, "slice manifests: {manifests:?}");
    // The run's commit replaced the flow's committed slices: none left to read around.
    let ledger = stack
        .deps()
        .runs
        .slice_ledger("perslice")
        .await
        .expect("ledger");
    assert!(ledger.slices.is_empty(), "{ledger:?}");
}

/// Register and run a sliced `sample` flow of `records` records (`slice` is the `source.slice`
/// mapping's content) on the deployed stack: it succeeds with no denial, and exactly its records
/// are committed as Parquet under `raw/<name>/`.
async fn run_sliced_sample(
    stack: &Stack,
    name: &str,
    records: u64,
    slice: &str,
) -> ferry_tests::stack::check::Committed {
    let b = &stack.output_bucket;
    let flow = Flow::parse(
        &format!(
            "name: {name}
source:
  connector: sample
  entity: accounts
  properties: {{ records: {records}, page_size: 400 }}
  incremental: {{ field: updated_at, first_execution_from: 2000-01-01T00:00:00Z }}
  chunk: {{ records: 400 }}
  slice: {{ {slice} }}
  parallelism: 3
destination:
  s3: {{ bucket: {b}, prefix: raw }}
  format: parquet
trigger:
  on_demand: {{}}
"
        ),
        "sliced.yaml",
    )
    .expect("flow parses");
    register(stack, &flow).await;
    let run = stack.run(&on_demand(name)).await;
    assert!(run.succeeded(), "{}", fail_report(stack, &run));
    assert!(stack.denials().is_empty(), "{:#?}", stack.denials());
    let c = stack
        .assert_committed(&run, &format!("raw/{name}/"), "parquet", Some("id"))
        .await;
    assert_eq!(c.record.records_written, records, "{:?}", c.record);
    assert_eq!(c.read["rows"].as_u64(), Some(records));
    c
}
