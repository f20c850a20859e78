#![cfg(feature = "remote")]
//! Remote mode as a user runs it: the `ferry` binary against a moto server (DynamoDB, Step
//! Functions, EventBridge Scheduler) through the SDK's own `AWS_ENDPOINT_URL`.

use ferry::lambda::{self, Step};
use ferry::model::RunStatus;
use ferry_tests::aws::{unique, AwsEnv};
use serde_json::json;
use std::path::Path;
use std::process::{Command, Output};

struct Stack {
    env: AwsEnv,
    sfn: aws_sdk_sfn::Client,
    state_machine_arn: String,
    dir: tempfile::TempDir,
}

impl Stack {
    async fn new() -> Stack {
        let env = AwsEnv::new().await;
        let sfn = aws_sdk_sfn::Client::new(&env.conf);
        let sm = sfn
            .create_state_machine()
            .name(unique("ferry-flow-run"))
            .role_arn("arn:aws:iam::123456789012:role/ferry-state-machine")
            .definition(
                r#"{"StartAt":"Wait","States":{"Wait":{"Type":"Wait","Seconds":3600,"End":true}}}"#,
            )
            .send()
            .await
            .expect("create state machine");
        Stack {
            env,
            sfn,
            state_machine_arn: sm.state_machine_arn,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `ferry ARGS` in remote mode, configured the documented way: environment variables.
    fn ferry(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .current_dir(self.dir.path())
            .env("FERRY_HOME", self.dir.path().join(".ferry"))
            .env("FERRY_REMOTE", "true")
            .env("FERRY_TABLE", &self.env.settings.table)
            .env("FERRY_STAGING_BUCKET", &self.env.settings.staging_bucket)
            .env("FERRY_STATE_MACHINE_ARN", &self.state_machine_arn)
            .env(
                "FERRY_SCHEDULER_ROLE_ARN",
                "arn:aws:iam::123456789012:role/ferry-scheduler",
            )
            .env_remove("FERRY_LOG")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.ferry(args);
        let t = text(&o);
        assert!(o.status.success(), "ferry {args:?} failed:\n{t}");
        t
    }

    fn write(&self, file: &str, body: &str) -> String {
        std::fs::write(self.dir.path().join(file), body).unwrap();
        Path::new(file).display().to_string()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn flow(name: &str, bucket: &str, records: u32) -> String {
    format!(
        r#"
name: {name}
source:
  connector: sample
  entity: accounts
  properties: {{ records: {records}, as_of: "2026-01-01T00:00:00Z" }}
  incremental: {{ field: updated_at, first_execution_from: "2025-01-01T00:00:00Z" }}
destination:
  s3: {{ bucket: {bucket}, prefix: raw }}
  format: jsonl
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_runs_run_and_stop_against_the_deployed_stack() {
    let s = Stack::new().await;
    let name = unique("crm");
    let file = s.write("crm.yaml", &flow(&name, &s.env.output_bucket, 300));

    // flows put | list | get: versioned definitions in DynamoDB.
    assert!(s.ok(&["flows", "put", &file]).contains("is at version 1"));
    s.write("crm.yaml", &flow(&name, &s.env.output_bucket, 400));
    assert!(s.ok(&["flows", "put", &file]).contains("is at version 2"));

    // Backfill windows are checked before anything starts, against the registered flow.
    let o = s.ferry(&["run", &name, "--from", "2099-01-01"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("--from 2099-01-01T00:00:00+00:00 is in the future"),
        "{}",
        text(&o)
    );
    let o = s.ferry(&["run", &name, "--to", "2025-01-01"]);
    assert!(
        !o.status.success() && text(&o).contains("--from"),
        "{}",
        text(&o)
    );
    let started = s
        .sfn
        .list_executions()
        .state_machine_arn(&s.state_machine_arn)
        .send()
        .await
        .unwrap();
    assert!(
        started.executions().is_empty(),
        "a refused backfill starts nothing"
    );
    let list = s.ok(&["flows", "list"]);
    assert!(list.contains(&name) && list.contains("v2"), "{list}");
    let got = s.ok(&["flows", "get", &name]);
    assert!(
        got.contains("# version 2") && got.contains("records: 400"),
        "{got}"
    );
    let v1 = s.ok(&["flows", "get", &name, "--version", "1"]);
    assert!(v1.contains("records: 300"), "{v1}");

    // run --remote: StartExecution with the documented input; the execution name is the run id.
    let out = s.ok(&["run", &name]);
    let run_id = out
        .lines()
        .find_map(|l| l.strip_prefix("run ")?.strip_suffix(" started"))
        .unwrap_or_else(|| panic!("no run id in:\n{out}"))
        .to_string();
    let execution_arn = out
        .lines()
        .find_map(|l| l.strip_prefix("execution "))
        .unwrap()
        .to_string();
    let ex = s
        .sfn
        .describe_execution()
        .execution_arn(&execution_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(ex.name.as_deref(), Some(run_id.as_str()));
    let input: serde_json::Value = serde_json::from_str(ex.input.as_deref().unwrap()).unwrap();
    assert_eq!(input["flow"], json!(name));
    assert_eq!(input["trigger"], json!("on_demand"));

    // The deployed start-run Lambda records the run and takes the lease (moto does not run
    // Lambdas, so the handler is called here with the payload the state machine passes).
    let deps = s.env.deps();
    lambda::invoke(
        &deps,
        Step::StartRun,
        json!({"request": input, "execution_id": execution_arn, "execution_name": run_id}),
    )
    .await
    .unwrap();
    let runs = s.ok(&["runs", "list", &name]);
    assert!(
        runs.contains(&run_id) && runs.contains("InProgress"),
        "{runs}"
    );
    let one = s.ok(&["runs", "get", &run_id]);
    assert!(one.contains(&run_id), "{one}");

    // stop: StopExecution, the run marked Canceled, the lease released.
    let stopped = s.ok(&["stop", &run_id]);
    assert!(
        stopped.contains("Canceled") && stopped.contains("lease is released"),
        "{stopped}"
    );
    let ex = s
        .sfn
        .describe_execution()
        .execution_arn(&execution_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(ex.status, aws_sdk_sfn::types::ExecutionStatus::Aborted);
    let rec = deps.runs.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(rec.status, RunStatus::Canceled);
    assert!(deps.runs.get_state(&name).await.unwrap().lease.is_none());

    // A flow that is not registered cannot be run remotely; delete removes the definition.
    let o = s.ferry(&["run", "nope"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not registered") && text(&o).contains(&s.env.settings.table));
    assert!(s.ok(&["flows", "delete", &name]).contains("deleted flow"));
    let o = s.ferry(&["flows", "get", &name]);
    assert!(
        !o.status.success() && text(&o).contains("no flow"),
        "{}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_mode_names_the_missing_setting() {
    let s = Stack::new().await;
    let o = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["flows", "list", "--remote"])
        .current_dir(s.dir.path())
        .env_remove("FERRY_TABLE")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--table") && text(&o).contains("FERRY_TABLE"),
        "{}",
        text(&o)
    );
}

/// The embedded engine (no --remote) writes a flow's `s3:` destination with the user's own
/// credentials (the SDK's default chain; here moto through AWS_ENDPOINT_URL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_writes_to_an_s3_destination() {
    let s = Stack::new().await;
    let name = unique("local-to-s3");
    let file = s.write("local.yaml", &flow(&name, &s.env.output_bucket, 120));
    let o = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", &file, "--json"])
        .current_dir(s.dir.path())
        .env("FERRY_HOME", s.dir.path().join(".ferry"))
        .env_remove("FERRY_REMOTE")
        .env_remove("FERRY_LOG")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let listed = s
        .env
        .clients
        .s3
        .list_objects_v2()
        .bucket(&s.env.output_bucket)
        .prefix(format!("raw/{name}/"))
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(keys.iter().any(|k| k.contains("/_manifests/")), "{keys:?}");
    assert!(keys.iter().any(|k| k.ends_with(".jsonl")), "{keys:?}");
}
