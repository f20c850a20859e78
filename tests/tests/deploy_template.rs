//! template.yaml agrees with the code it deploys: the state machine's placeholders, the functions'
//! binaries, timeouts against the Task states, the environment the functions read, the outputs
//! the CLI reads. (cfn-lint, `sam validate --lint` and the ASL validator run in
//! scripts/check-deploy.sh; these tests need no tools beyond cargo.)

use crate::deploy_support;

use deploy_support::*;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

const ASL: &str = "statemachines/flow-run.asl.json";
const STEPS: [&str; 5] = [
    "start-run",
    "fetch-page",
    "transform-batch",
    "write-s3",
    "finalize",
];

fn substitutions(tpl: &Value) -> Map<String, Value> {
    let (_, sm) = flow_run_state_machine(tpl);
    sm["Properties"]["DefinitionSubstitutions"]
        .as_object()
        .expect("the state machine has DefinitionSubstitutions")
        .clone()
}

#[test]
fn every_asl_placeholder_is_substituted_and_every_substitution_used() {
    let tpl = template();
    let asl = read(ASL);
    let problems = check_substitutions(&asl, &substitutions(&tpl));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // And the check is not vacuous: the definition does use placeholders.
    // Five functions and the staging bucket ("Run Slices" reads its slice list there).
    assert_eq!(
        asl_placeholders(&asl).len(),
        6,
        "{:?}",
        asl_placeholders(&asl)
    );
}

#[test]
fn a_misspelled_placeholder_is_caught() {
    let tpl = template();
    let subs = substitutions(&tpl);
    let asl = read(ASL);
    assert!(asl.contains("${FetchPageFunctionArn}"));

    // Misspelled in the definition: one unknown placeholder, one unused substitution.
    let broken = asl.replace("${FetchPageFunctionArn}", "${FetchPagesFunctionArn}");
    let problems = check_substitutions(&broken, &subs);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].contains("${FetchPagesFunctionArn}")
            && problems[0].contains("no DefinitionSubstitutions")
    );
    assert!(problems[1].contains("FetchPageFunctionArn") && problems[1].contains("not used"));

    // Misspelled in the template.
    let mut broken_subs = subs.clone();
    let v = broken_subs.remove("WriteS3FunctionArn").expect("present");
    broken_subs.insert("WriteS3FunctonArn".into(), v);
    let problems = check_substitutions(&asl, &broken_subs);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems.iter().any(|p| p.contains("${WriteS3FunctionArn}")));
    assert!(problems.iter().any(|p| p.contains("WriteS3FunctonArn")));

    // A substitution nobody uses.
    let mut extra = subs;
    extra.insert("UnusedArn".into(), json!("arn:aws:lambda:x"));
    assert_eq!(check_substitutions(&asl, &extra).len(), 1);
}

/// (package, binary target names) of every workspace member, from `cargo metadata`.
fn workspace_binaries() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata is JSON");
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| members.contains(p["id"].as_str().unwrap_or_default()))
        .map(|p| {
            let bins = p["targets"]
                .as_array()
                .expect("targets")
                .iter()
                .filter(|t| {
                    t["kind"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| *k == "bin"))
                })
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect();
            (p["name"].as_str().expect("name").to_string(), bins)
        })
        .collect()
}

/// Logical id -> BuildProperties.Binary of every function.
fn function_binaries(tpl: &Value) -> BTreeMap<String, String> {
    resources_of(tpl, "AWS::Serverless::Function")
        .into_iter()
        .map(|(id, f)| {
            assert_eq!(
                f["Metadata"]["BuildMethod"], "rust-cargolambda",
                "{id}: Metadata.BuildMethod must be rust-cargolambda"
            );
            let bin = f["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap_or_else(|| panic!("{id}: Metadata.BuildProperties.Binary is missing"));
            (id.to_string(), bin.to_string())
        })
        .collect()
}

#[test]
fn every_function_binary_is_a_workspace_package_binary() {
    let tpl = template();
    let ws = workspace_binaries();
    let fns = function_binaries(&tpl);
    for (id, bin) in &fns {
        let pkg = ws.get(bin).unwrap_or_else(|| {
            panic!(
                "{id}: Binary {bin:?} is not a workspace package (members: {:?})",
                ws.keys()
            )
        });
        assert!(
            pkg.contains(bin),
            "{id}: package {bin} has no binary target named {bin} (has {pkg:?}); `cargo lambda build --bin {bin}` would fail"
        );
    }
    let built: BTreeSet<&str> = fns.values().map(String::as_str).collect();
    assert_eq!(
        built,
        BTreeSet::from(STEPS),
        "one function per step, no more"
    );
}

#[test]
fn functions_are_arm64_al2023_bootstrap() {
    let tpl = template();
    let g = &tpl["Globals"]["Function"];
    for (id, f) in resources_of(&tpl, "AWS::Serverless::Function") {
        let p = &f["Properties"];
        let get = |k: &str| if p.get(k).is_some() { &p[k] } else { &g[k] };
        assert_eq!(*get("Runtime"), "provided.al2023", "{id}");
        assert_eq!(get("Architectures"), &json!(["arm64"]), "{id}");
        assert_eq!(*get("Handler"), "bootstrap", "{id}");
        assert_eq!(*get("Tracing"), "Active", "{id}");
        let bin = f["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(
            get("CodeUri"),
            &json!(format!("functions/{bin}")),
            "{id}: CodeUri must be the package directory of its Binary (the workspace's default \
             member is the CLI, so `cargo lambda build --bin {bin}` from the root finds no such binary)"
        );
        assert!(
            repo_root()
                .join(format!("functions/{bin}/Cargo.toml"))
                .is_file(),
            "{id}: functions/{bin}/Cargo.toml"
        );
        assert!(
            p["MemorySize"].as_u64().is_some(),
            "{id}: size memory per step"
        );
        assert!(
            p["Timeout"].as_u64().is_some(),
            "{id}: size the timeout per step"
        );
    }
}

/// Logical id of the function a substitution points at (`!GetAtt Fn.Arn`).
fn substituted_function(v: &Value) -> String {
    let ga = v["Fn::GetAtt"]
        .as_array()
        .expect("substitution is !GetAtt X.Arn");
    assert_eq!(ga[1], "Arn");
    ga[0].as_str().expect("logical id").to_string()
}

#[test]
fn each_function_times_out_before_the_task_state_that_calls_it() {
    let tpl = template();
    let subs = substitutions(&tpl);
    let asl: Value = serde_json::from_str(&read(ASL)).expect("ASL is JSON");
    let mut checked = 0;
    // The parent's Task states and those of the "Run Slices" Map's processor.
    let mut all = vec![];
    for (name, state) in asl["States"].as_object().expect("States") {
        all.push((name, state));
        for (n, st) in state["ItemProcessor"]["States"]
            .as_object()
            .into_iter()
            .flatten()
        {
            all.push((n, st));
        }
    }
    for (name, state) in all {
        if state["Type"] != "Task" {
            continue;
        }
        let res = state["Resource"].as_str().expect("Task Resource");
        let key = res.trim_start_matches("${").trim_end_matches('}');
        let function = substituted_function(&subs[key]);
        let timeout = tpl["Resources"][&function]["Properties"]["Timeout"]
            .as_u64()
            .unwrap_or_else(|| panic!("{function}: Timeout"));
        let state_timeout = state["TimeoutSeconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("state {name}: TimeoutSeconds"));
        assert!(
            timeout < state_timeout,
            "{function} Timeout {timeout}s must be below state {name:?} TimeoutSeconds {state_timeout}s, \
             so a slow step fails as a Lambda error with its cause, not a bare States.Timeout"
        );
        checked += 1;
    }
    assert_eq!(checked, 10, "the ten Task states of flow-run");
}

#[test]
fn state_machine_logs_traces_and_invokes_only_its_functions() {
    let tpl = template();
    let (id, sm) = flow_run_state_machine(&tpl);
    let p = &sm["Properties"];
    assert_eq!(p["Tracing"]["Enabled"], true, "{id}: X-Ray tracing");
    assert_eq!(p["Logging"]["Level"], "ALL", "{id}: logging");
    let dest = &p["Logging"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"];
    let lg = dest["Fn::GetAtt"][0]
        .as_str()
        .expect("log group of this stack");
    assert_eq!(tpl["Resources"][lg]["Type"], "AWS::Logs::LogGroup");

    let invoked: BTreeSet<String> = statements(&tpl)
        .into_iter()
        .filter(|s| s.resource == id)
        .filter(|s| {
            list(&s.body["Action"])
                .iter()
                .any(|a| a.as_str().is_some_and(|a| a.starts_with("lambda:")))
        })
        .flat_map(|s| {
            list(&s.body["Resource"])
                .into_iter()
                .map(substituted_function)
                .collect::<Vec<_>>()
        })
        .collect();
    let substituted: BTreeSet<String> = substitutions(&tpl)
        .iter()
        .filter(|(k, _)| k.ends_with("FunctionArn"))
        .map(|(_, v)| substituted_function(v))
        .collect();
    // The one other substitution: the staging bucket the Map's ItemReader reads.
    assert_eq!(
        substitutions(&tpl)["StagingBucketName"],
        json!({"Ref": "StagingBucket"})
    );
    assert_eq!(
        invoked, substituted,
        "the role invokes exactly the substituted functions"
    );
    assert_eq!(invoked.len(), 5);
}

#[test]
fn functions_get_the_environment_they_read() {
    let tpl = template();
    let vars = tpl["Globals"]["Function"]["Environment"]["Variables"]
        .as_object()
        .expect("Globals.Function.Environment.Variables");
    let expect = [
        ("FERRY_TABLE", json!({"Ref": "Table"})),
        ("FERRY_STAGING_BUCKET", json!({"Ref": "StagingBucket"})),
        ("FERRY_EVENT_BUS", json!({"Ref": "EventBus"})),
        ("FERRY_SECRET_PREFIX", json!({"Ref": "SecretPrefix"})),
        ("FERRY_KMS_KEY_ID", json!({"Ref": "KmsKeyArn"})),
        ("FERRY_STACK_NAME", json!({"Ref": "AWS::StackName"})),
        ("RUST_LOG", json!({"Ref": "LogLevel"})),
    ];
    for (k, v) in &expect {
        assert_eq!(vars.get(*k), Some(v), "{k}");
    }
    assert_eq!(
        vars.len(),
        expect.len(),
        "document any new variable in template.yaml's header"
    );
    assert_eq!(
        tpl["Parameters"]["SecretPrefix"]["Default"],
        "ferry/profiles/"
    );
}

#[test]
fn table_matches_the_store_layout() {
    let tpl = template();
    let t = &tpl["Resources"]["Table"];
    assert_eq!(t["Type"], "AWS::DynamoDB::Table");
    let p = &t["Properties"];
    assert_eq!(p["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    assert_eq!(
        p["TimeToLiveSpecification"],
        json!({"AttributeName": "expires_at", "Enabled": true})
    );
    assert_eq!(p["SSESpecification"]["SSEEnabled"], true);
    assert_eq!(
        p["KeySchema"],
        json!([{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    );
    let gsi = &p["GlobalSecondaryIndexes"][0];
    assert_eq!(gsi["IndexName"], "gsi1");
    assert_eq!(
        gsi["KeySchema"],
        json!([{"AttributeName": "gsi1pk", "KeyType": "HASH"}, {"AttributeName": "gsi1sk", "KeyType": "RANGE"}])
    );
    assert_eq!(
        t["DeletionPolicy"], "Retain",
        "the table holds flows and watermarks"
    );
}

#[test]
fn staging_bucket_is_private_encrypted_tls_only_and_expires_staging() {
    let tpl = template();
    for bucket in ["StagingBucket", "OutputBucket"] {
        let p = &tpl["Resources"][bucket]["Properties"];
        let pab = &p["PublicAccessBlockConfiguration"];
        for k in [
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        ] {
            assert_eq!(pab[k], true, "{bucket}: {k}");
        }
        assert!(
            p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
                ["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
                .is_object(),
            "{bucket}: SSE-KMS with the key parameter, else SSE-S3"
        );
        let rules = p["LifecycleConfiguration"]["Rules"]
            .as_array()
            .expect("lifecycle rules");
        assert!(
            rules
                .iter()
                .any(|r| r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"].is_u64()),
            "{bucket}: abort incomplete multipart uploads"
        );
        // TLS only: a Deny on aws:SecureTransport=false covering the bucket and its objects.
        let tls = statements(&tpl).into_iter().any(|s| {
            s.body["Effect"] == "Deny"
                && s.body["Condition"]["Bool"]["aws:SecureTransport"] == "false"
                && list(&s.body["Resource"]).len() == 2
                && serde_json::to_string(&s.body["Resource"])
                    .unwrap()
                    .contains(bucket)
        });
        assert!(tls, "{bucket}: TLS-only bucket policy");
    }
    let rules = &tpl["Resources"]["StagingBucket"]["Properties"]["LifecycleConfiguration"]["Rules"];
    assert!(
        rules
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["Prefix"] == "staging/"
                && r["Status"] == "Enabled"
                && r["ExpirationInDays"] == json!({"Ref": "StagingExpirationDays"})),
        "staging/ expires"
    );
}

#[test]
fn outputs_the_cli_reads() {
    let tpl = template();
    let outputs = tpl["Outputs"].as_object().expect("Outputs");
    for k in [
        "StateMachineArn",
        "TableName",
        "StagingBucket",
        "OutputBucket",
        "EventBusName",
        "SchedulerRoleArn",
        "EventRuleRoleArn",
    ] {
        assert!(outputs.contains_key(k), "output {k} is missing");
    }
    assert_eq!(
        outputs["StateMachineArn"]["Value"],
        json!({"Ref": "FlowRunStateMachine"})
    );
    assert_eq!(
        outputs["SchedulerRoleArn"]["Value"],
        json!({"Fn::GetAtt": ["SchedulerRole", "Arn"]})
    );
}

#[test]
fn alarms_cover_failed_runs_and_failed_executions() {
    let tpl = template();
    let alarms = resources_of(&tpl, "AWS::CloudWatch::Alarm");
    let sfn = alarms
        .iter()
        .find(|(_, a)| a["Properties"]["MetricName"] == "ExecutionsFailed")
        .expect("an ExecutionsFailed alarm");
    assert_eq!(sfn.1["Properties"]["Namespace"], "AWS/States");
    assert_eq!(
        sfn.1["Properties"]["Dimensions"][0]["Value"],
        json!({"Ref": "FlowRunStateMachine"})
    );
    let runs = alarms
        .iter()
        .find(|(_, a)| {
            serde_json::to_string(&a["Properties"]["Metrics"])
                .unwrap()
                .contains("RunsFailed")
        })
        .expect("a RunsFailed alarm");
    let expr = runs.1["Properties"]["Metrics"][0]["Expression"]
        .as_str()
        .unwrap();
    assert!(expr.contains("SCHEMA(ferry, FlowName)"), "{expr}");
    for (id, a) in &alarms {
        assert_eq!(
            a["Properties"]["AlarmActions"]["Fn::If"][0], "HasAlarmTopic",
            "{id}: notifies the optional SNS topic"
        );
    }
}
