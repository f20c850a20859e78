//! The deployed-stack harness: ferry's stack as `template.yaml` declares it, run on this machine.
//!
//! * Resources come from the template itself ([`template`]): the DynamoDB table with its key
//!   schema, GSIs and TTL, both buckets with their bucket policies, versioning and lifecycle, the
//!   run-report bus, and every role with its policies (SAM's function roles with the inline
//!   statements of `Policies` plus the managed policies SAM attaches), created in moto.
//! * Every function runs as its real binary behind the Lambda Runtime API ([`lambda`]), with the
//!   environment, memory and timeout the template gives it and credentials of its own role.
//! * Every AWS call a function makes passes the IAM gate ([`gate`]): decided by a published IAM
//!   policy simulator against the calling function's role, refused as AWS refuses.
//! * The real `statemachines/flow-run.asl.json`, with the template's `DefinitionSubstitutions`,
//!   runs on an independent ASL interpreter (`aws-local-stepfunctions`, in
//!   `tests/harness/stack-server.mjs`) behind a Step Functions API, which the ferry CLI and the
//!   triggers reach like the real service.
//! * Triggers: [`Stack::fire_schedule`] and [`Stack::fire_rule`] deliver what the EventBridge
//!   Scheduler schedule or the rule the CLI created would deliver — after checking, with the same
//!   simulator, that the target's role trusts the service and may start the state machine.

pub mod check;
pub mod gate;
pub mod lambda;
pub mod template;

use gate::{Decision, Evaluator, Gate, Principal};
use lambda::{FunctionSpec, InvocationStat, LambdaService};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use template::{merge_globals, Physical, Resolver, ACCOUNT, REGION};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Where the functions' binaries are: `$FERRY_HARNESS_BIN_DIR`, else the profile directory of
/// the running test binary (`target/debug`), where `cargo nextest run --workspace` built them.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FERRY_HARNESS_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// AWS managed policies SAM attaches to the roles it generates, as AWS publishes them.
fn managed_policy(name: &str) -> Value {
    match name {
        "AWSLambdaBasicExecutionRole" => json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*"
        }]}),
        "AWSXrayWriteOnlyAccess" => json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
                       "xray:GetSamplingTargets", "xray:GetSamplingStatisticSummaries"],
            "Resource": ["*"]
        }]}),
        other => panic!(
            "the harness does not know the managed policy {other}; add AWS's published document to tests/src/stack/mod.rs"
        ),
    }
}

/// A change to the template (JSON form) before it is deployed.
pub type TemplateEdit = Box<dyn FnOnce(&mut Value)>;

/// How to build a stack.
#[derive(Default)]
pub struct StackOptions {
    /// Template parameter values (defaults otherwise).
    pub parameters: BTreeMap<String, String>,
    /// Change the template (JSON form) before deploying: e.g. remove a grant to prove the
    /// harness catches it.
    pub mutate: Option<TemplateEdit>,
    /// Retry waits of the state machine, compressed to this many milliseconds (the number and
    /// order of retries are AWS's); `None` = the definition's own intervals.
    pub retry_interval_ms: Option<u64>,
}

/// An execution as DescribeExecution reports it.
#[derive(Debug, Clone)]
pub struct Execution {
    pub arn: String,
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

impl Execution {
    pub fn succeeded(&self) -> bool {
        self.status == "SUCCEEDED"
    }
}

/// A role of the stack as IAM sees it.
#[derive(Debug, Clone)]
pub struct Role {
    pub logical_id: String,
    pub arn: String,
    pub trust: Value,
    pub policies: Vec<(String, Value)>,
}

pub struct Stack {
    pub name: String,
    pub template: Value,
    pub outputs: BTreeMap<String, String>,
    pub moto: String,
    pub sfn_endpoint: String,
    pub state_machine_arn: String,
    pub roles: BTreeMap<String, Role>,
    pub functions: BTreeMap<String, FunctionSpec>,
    pub output_bucket: String,
    pub staging_bucket: String,
    pub table: String,
    pub conf: aws_config::SdkConfig,
    gate: Arc<Gate>,
    lambda: Arc<LambdaService>,
    evaluator: Evaluator,
    _node: tokio::process::Child,
    servers: Vec<tokio::task::JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for s in &self.servers {
            s.abort();
        }
    }
}

fn short_id() -> String {
    use rand::Rng;
    let mut r = rand::rng();
    (0..6)
        .map(|_| char::from(b'a' + r.random_range(0..26u8)))
        .collect()
}

/// Start `tests/harness/stack-server.mjs`; returns the child and its port.
async fn start_node(env: &[(&str, String)]) -> (tokio::process::Child, u16) {
    use tokio::io::AsyncBufReadExt;
    let dir = repo_root().join("tests/harness");
    assert!(
        dir.join("node_modules/aws-local-stepfunctions").is_dir(),
        "the harness's node tools are not installed: run scripts/setup-harness.sh (scripts/test.sh does)"
    );
    let mut cmd =
        tokio::process::Command::new(std::env::var("FERRY_NODE").unwrap_or_else(|_| "node".into()));
    cmd.arg(dir.join("stack-server.mjs"))
        .current_dir(&dir)
        .env("PORT", "0")
        .env("AWS_REGION", REGION)
        .env("ACCOUNT_ID", ACCOUNT)
        .env("NODE_NO_WARNINGS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .expect("node starts (Node.js 20+ on PATH, or FERRY_NODE)");
    let out = child.stdout.take().expect("stdout piped");
    let mut lines = tokio::io::BufReader::new(out).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("stack-server.mjs listens within 30 s")
        .expect("read stack-server output")
        .expect("stack-server.mjs printed its port");
    let port = line
        .strip_prefix("listening ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from stack-server.mjs: {line}"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, port)
}

/// SAM's `Policies` of a function or state machine: inline documents, managed policy names.
fn sam_policies(logical_id: &str, policies: &Value) -> Vec<(String, Value)> {
    let mut out = vec![];
    for (i, p) in policies.as_array().into_iter().flatten().enumerate() {
        match p {
            Value::String(name) => out.push((name.clone(), managed_policy(name))),
            Value::Object(m) if m.contains_key("Statement") => {
                let mut doc = p.clone();
                doc.as_object_mut()
                    .expect("object")
                    .entry("Version")
                    .or_insert(json!("2012-10-17"));
                out.push((format!("{logical_id}RolePolicy{i}"), doc));
            }
            other => panic!("{logical_id}: the harness does not expand the SAM policy {other}"),
        }
    }
    out
}

impl Stack {
    /// Build the stack from `template.yaml` with default parameters.
    pub async fn deploy() -> Stack {
        Self::deploy_with(StackOptions {
            retry_interval_ms: Some(20),
            ..Default::default()
        })
        .await
    }

    pub async fn deploy_with(opts: StackOptions) -> Stack {
        let moto = crate::aws::endpoint().to_string();
        let conf = crate::aws::sdk_config().await;
        let mut tpl = template::parse(
            &std::fs::read_to_string(repo_root().join("template.yaml")).expect("template.yaml"),
        );
        if let Some(m) = opts.mutate {
            m(&mut tpl);
        }
        let name = format!("fs{}", short_id());
        let mut r = Resolver::new(&tpl, &name, &opts.parameters);
        let resources: serde_json::Map<String, Value> = tpl["Resources"]
            .as_object()
            .expect("Resources")
            .iter()
            .filter(|(_, res)| res["Condition"].as_str().is_none_or(|c| r.condition(c)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut names: BTreeMap<String, Physical> = BTreeMap::new();
        for (id, res) in &resources {
            let ty = res["Type"].as_str().unwrap_or_default();
            let props = &res["Properties"];
            let p = match ty {
                "AWS::Serverless::Function" => {
                    let fname = format!("{name}-{id}");
                    let arn = format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fname}");
                    let role = format!("{name}-{id}Role");
                    names.insert(
                        format!("{id}Role"),
                        Physical {
                            reference: role.clone(),
                            attrs: [("Arn".into(), format!("arn:aws:iam::{ACCOUNT}:role/{role}"))]
                                .into(),
                        },
                    );
                    Physical {
                        reference: fname,
                        attrs: [("Arn".into(), arn)].into(),
                    }
                }
                "AWS::Serverless::StateMachine" => {
                    let smname = r
                        .resolve(&props["Name"])
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("{name}-{id}"));
                    let arn = format!("arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{smname}");
                    let role = format!("{name}-{id}Role");
                    names.insert(
                        format!("{id}Role"),
                        Physical {
                            reference: role.clone(),
                            attrs: [("Arn".into(), format!("arn:aws:iam::{ACCOUNT}:role/{role}"))]
                                .into(),
                        },
                    );
                    Physical {
                        reference: arn.clone(),
                        attrs: [("Arn".into(), arn), ("Name".into(), smname)].into(),
                    }
                }
                "AWS::DynamoDB::Table" => {
                    let t = format!("{name}-{id}");
                    Physical {
                        reference: t.clone(),
                        attrs: [(
                            "Arn".into(),
                            format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{t}"),
                        )]
                        .into(),
                    }
                }
                "AWS::S3::Bucket" => {
                    let b = format!("{name}-{}", id.to_lowercase());
                    Physical {
                        reference: b.clone(),
                        attrs: [("Arn".into(), format!("arn:aws:s3:::{b}"))].into(),
                    }
                }
                "AWS::Events::EventBus" => {
                    let n = r
                        .resolve(&props["Name"])
                        .as_str()
                        .expect("EventBus Name")
                        .to_string();
                    let arn = format!("arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{n}");
                    Physical {
                        reference: n.clone(),
                        attrs: [("Arn".into(), arn), ("Name".into(), n)].into(),
                    }
                }
                "AWS::IAM::Role" => {
                    let n = format!("{name}-{id}");
                    Physical {
                        reference: n.clone(),
                        attrs: [("Arn".into(), format!("arn:aws:iam::{ACCOUNT}:role/{n}"))].into(),
                    }
                }
                "AWS::Events::Rule" => {
                    let n = format!("{name}-{id}");
                    let arn = format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/{n}");
                    Physical {
                        reference: n,
                        attrs: [("Arn".into(), arn)].into(),
                    }
                }
                "AWS::Logs::LogGroup" => {
                    let n = r
                        .resolve(&props["LogGroupName"])
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("{name}-{id}"));
                    let arn = format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{n}:*");
                    Physical {
                        reference: n,
                        attrs: [("Arn".into(), arn)].into(),
                    }
                }
                _ => Physical {
                    reference: format!("{name}-{id}"),
                    attrs: BTreeMap::new(),
                },
            };
            names.insert(id.clone(), p);
        }
        r.physical = names;

        let dir = tempfile::tempdir().expect("temp dir");
        let s3 = ferry::adapters::aws::s3_client(&conf);
        let ddb = aws_sdk_dynamodb::Client::new(&conf);
        let events = aws_sdk_eventbridge::Client::new(&conf);
        let mut bucket_policies = HashMap::new();
        let mut table_hash_keys = HashMap::new();
        let mut roles: BTreeMap<String, Role> = BTreeMap::new();
        let mut fn_props: Vec<(String, Value)> = vec![];
        let mut rules: Vec<lambda::Rule> = vec![];
        let mut permissions: Vec<Value> = vec![];
        let mut sm_props: Option<(String, Value)> = None;
        let globals_fn = tpl["Globals"]["Function"].clone();
        for (id, res) in &resources {
            let ty = res["Type"].as_str().unwrap_or_default();
            match ty {
                "AWS::DynamoDB::Table" => {
                    let props = r.resolve(&res["Properties"]);
                    let t = r.physical[id].reference.clone();
                    create_table(&ddb, &t, &props).await;
                    if let Some(h) = props["KeySchema"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|k| k["KeyType"] == "HASH")
                    {
                        table_hash_keys
                            .insert(t, h["AttributeName"].as_str().unwrap_or("pk").to_string());
                    }
                }
                "AWS::S3::Bucket" => {
                    let props = r.resolve(&res["Properties"]);
                    create_bucket(&s3, &r.physical[id].reference, &props).await;
                }
                "AWS::S3::BucketPolicy" => {
                    let props = r.resolve(&res["Properties"]);
                    // Held by the gate, which evaluates it on every call with
                    // aws:SecureTransport true (on AWS the functions reach S3 over HTTPS). Not
                    // given to moto: moto enforces bucket policies against its plain-HTTP
                    // loopback endpoint, where the TLS-only statement would refuse every call.
                    let b = props["Bucket"]
                        .as_str()
                        .expect("BucketPolicy Bucket")
                        .to_string();
                    bucket_policies.insert(b, props["PolicyDocument"].clone());
                }
                "AWS::Events::EventBus" => {
                    events
                        .create_event_bus()
                        .name(&r.physical[id].reference)
                        .send()
                        .await
                        .expect("create event bus");
                }
                "AWS::Events::Rule" => {
                    let props = r.resolve(&res["Properties"]);
                    let bus = props["EventBusName"].as_str().unwrap_or("default");
                    assert_eq!(
                        bus, "default",
                        "{id}: the harness delivers events of the default bus only"
                    );
                    rules.push(lambda::Rule {
                        name: r.physical[id].reference.clone(),
                        arn: r.physical[id].attrs["Arn"].clone(),
                        pattern: props["EventPattern"].clone(),
                        targets: props["Targets"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|t| t["Arn"].as_str().map(str::to_string))
                            .collect(),
                    });
                }
                "AWS::Lambda::Permission" => permissions.push(r.resolve(&res["Properties"])),
                "AWS::IAM::Role" => {
                    let props = r.resolve(&res["Properties"]);
                    let mut policies: Vec<(String, Value)> = props["Policies"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| {
                            (
                                p["PolicyName"].as_str().unwrap_or("inline").to_string(),
                                p["PolicyDocument"].clone(),
                            )
                        })
                        .collect();
                    for m in props["ManagedPolicyArns"].as_array().into_iter().flatten() {
                        let n = m
                            .as_str()
                            .unwrap_or_default()
                            .rsplit('/')
                            .next()
                            .unwrap_or_default()
                            .to_string();
                        policies.push((n.clone(), managed_policy(&n)));
                    }
                    roles.insert(
                        id.clone(),
                        Role {
                            logical_id: id.clone(),
                            arn: r.physical[id].attrs["Arn"].clone(),
                            trust: props["AssumeRolePolicyDocument"].clone(),
                            policies,
                        },
                    );
                }
                "AWS::Serverless::Function" => {
                    let props = r.resolve(&merge_globals(&globals_fn, &res["Properties"]));
                    let mut policies = sam_policies(id, &props["Policies"]);
                    policies.push((
                        "AWSLambdaBasicExecutionRole".into(),
                        managed_policy("AWSLambdaBasicExecutionRole"),
                    ));
                    if props["Tracing"] == "Active" {
                        policies.push((
                            "AWSXrayWriteOnlyAccess".into(),
                            managed_policy("AWSXrayWriteOnlyAccess"),
                        ));
                    }
                    let role_id = format!("{id}Role");
                    roles.insert(
                        role_id.clone(),
                        Role {
                            logical_id: role_id.clone(),
                            arn: r.physical[&role_id].attrs["Arn"].clone(),
                            trust: json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                                "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
                            policies,
                        },
                    );
                    let binary = res["Metadata"]["BuildProperties"]["Binary"]
                        .as_str()
                        .expect("BuildProperties.Binary")
                        .to_string();
                    fn_props.push((id.clone(), json!({"props": props, "binary": binary})));
                }
                "AWS::Serverless::StateMachine" => {
                    let props = r.resolve(&res["Properties"]);
                    let mut policies = sam_policies(id, &props["Policies"]);
                    if props["Tracing"]["Enabled"] == true {
                        policies.push((
                            "AWSXrayWriteOnlyAccess".into(),
                            managed_policy("AWSXrayWriteOnlyAccess"),
                        ));
                    }
                    let role_id = format!("{id}Role");
                    roles.insert(
                        role_id.clone(),
                        Role {
                            logical_id: role_id.clone(),
                            arn: r.physical[&role_id].attrs["Arn"].clone(),
                            trust: json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                                "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
                            policies,
                        },
                    );
                    sm_props = Some((id.clone(), props));
                }
                _ => {}
            }
        }
        let (sm_id, sm) = sm_props.expect("the template has the flow-run state machine");

        // Lambda service and gate listeners first: the node process needs the Lambda endpoint.
        let lambda_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let lambda_port = lambda_listener.local_addr().expect("addr").port();
        let gate_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let gate_port = gate_listener.local_addr().expect("addr").port();
        let sfn_akid = "ASIAHARNESSSTATES".to_string();
        let mut node_env = vec![
            ("LAMBDA_ENDPOINT", format!("http://127.0.0.1:{lambda_port}")),
            (
                "EVENTS_URL",
                format!("http://127.0.0.1:{lambda_port}/harness/events"),
            ),
            ("SFN_ACCESS_KEY_ID", sfn_akid.clone()),
            ("SFN_SECRET_ACCESS_KEY", "harness".to_string()),
            // The Distributed Map's ItemReader reads S3 as the state machine's role, through
            // the IAM gate (stack-server.mjs, "ItemReader").
            ("S3_ENDPOINT", format!("http://127.0.0.1:{gate_port}")),
        ];
        if let Some(ms) = opts.retry_interval_ms {
            node_env.push(("RETRY_INTERVAL_MS", ms.to_string()));
        }
        let (node, node_port) = start_node(&node_env).await;
        let sfn_endpoint = format!("http://127.0.0.1:{node_port}");
        let evaluator = Evaluator {
            url: sfn_endpoint.clone(),
            http: reqwest::Client::new(),
        };

        // Functions: real binaries, their env, their role's credentials, the gate as endpoint.
        let mut functions = BTreeMap::new();
        let mut principals = HashMap::new();
        for (i, (id, f)) in fn_props.iter().enumerate() {
            let props = &f["props"];
            let fname = r.physical[id].reference.clone();
            let role = &roles[&format!("{id}Role")];
            let akid = format!("ASIAHARNESSFN{i:04}");
            let role_name = role.arn.rsplit('/').next().unwrap_or_default();
            principals.insert(
                akid.clone(),
                Principal {
                    arn: format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/{fname}"),
                    logical_id: id.clone(),
                    policies: role.policies.clone(),
                },
            );
            let memory_mb = props["MemorySize"].as_u64().unwrap_or(128);
            let timeout = props["Timeout"].as_u64().unwrap_or(3);
            let mut env: BTreeMap<String, String> = props["Environment"]["Variables"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect();
            for (k, v) in [
                ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{gate_port}")),
                ("AWS_ACCESS_KEY_ID", akid.clone()),
                ("AWS_SECRET_ACCESS_KEY", "harness-secret".to_string()),
                ("AWS_SESSION_TOKEN", "harness-session".to_string()),
                ("AWS_REGION", REGION.to_string()),
                ("AWS_DEFAULT_REGION", REGION.to_string()),
                ("AWS_LAMBDA_FUNCTION_NAME", fname.clone()),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
                ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{fname}")),
                ("AWS_LAMBDA_LOG_STREAM_NAME", "harness".to_string()),
                (
                    "AWS_EXECUTION_ENV",
                    "AWS_Lambda_provided.al2023".to_string(),
                ),
                (
                    "_HANDLER",
                    props["Handler"].as_str().unwrap_or("bootstrap").to_string(),
                ),
                ("TZ", ":UTC".to_string()),
                ("LANG", "en_US.UTF-8".to_string()),
                ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
            ] {
                env.insert(k.to_string(), v);
            }
            let spec = FunctionSpec {
                logical_id: id.clone(),
                name: fname.clone(),
                arn: r.physical[id].attrs["Arn"].clone(),
                binary: bin_dir().join(f["binary"].as_str().expect("binary")),
                env,
                memory_mb,
                timeout: Duration::from_secs(timeout),
                log_path: dir.path().join(format!("{id}.log")),
            };
            functions.insert(id.clone(), spec);
        }
        let sm_role = &roles[&format!("{sm_id}Role")];
        let sm_role_name = sm_role.arn.rsplit('/').next().unwrap_or_default();
        // The state machine's own AWS calls (the ItemReader's s3:GetObject) go through the gate.
        principals.insert(
            sfn_akid.clone(),
            Principal {
                arn: format!("arn:aws:sts::{ACCOUNT}:assumed-role/{sm_role_name}/states-harness"),
                logical_id: sm_id.clone(),
                policies: sm_role.policies.clone(),
            },
        );
        let callers: HashMap<String, Principal> = [(
            sfn_akid,
            Principal {
                arn: format!("arn:aws:sts::{ACCOUNT}:assumed-role/{sm_role_name}/states-harness"),
                logical_id: sm_id.clone(),
                policies: sm_role.policies.clone(),
            },
        )]
        .into();
        let mut by_name = HashMap::new();
        for spec in functions.values() {
            let f = Arc::new(lambda::Function::new(spec.clone()));
            by_name.insert(spec.name.clone(), f.clone());
            by_name.insert(spec.arn.clone(), f);
        }
        let lambda = Arc::new(LambdaService {
            functions: by_name,
            callers,
            evaluator: evaluator.clone(),
            stats: Mutex::new(vec![]),
            rules,
            permissions,
            deliveries: Mutex::new(vec![]),
            python: check::python(),
        });
        let lambda_app = axum::Router::new()
            .route(
                "/2015-03-31/functions/{name}/invocations",
                axum::routing::post(lambda::invoke),
            )
            .route("/harness/events", axum::routing::post(lambda::deliver))
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(lambda.clone());
        let gate = Arc::new(Gate {
            moto: moto.clone(),
            evaluator: evaluator.clone(),
            principals,
            bucket_policies,
            table_hash_keys,
            forward: reqwest::Client::builder()
                .no_gzip()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            admin_secrets: aws_sdk_secretsmanager::Client::new(&conf),
            secrets: Mutex::new(HashMap::new()),
            decisions: Mutex::new(vec![]),
            faults: Mutex::new(None),
            killer: std::sync::OnceLock::new(),
        });
        let killer_lambda = lambda.clone();
        let _ = gate.killer.set(Arc::new(move |logical_id: &str| {
            for f in killer_lambda.functions.values() {
                if f.spec.logical_id == logical_id {
                    f.kill_busy();
                }
            }
        }));
        // Uploads (multipart parts of 8 MiB and more) pass through whole.
        let gate_app = axum::Router::new()
            .fallback(gate::handle)
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(gate.clone());
        let servers = vec![
            tokio::spawn(async move {
                let _ = axum::serve(lambda_listener, lambda_app).await;
            }),
            tokio::spawn(async move {
                let _ = axum::serve(gate_listener, gate_app).await;
            }),
        ];

        // The state machine, as CloudFormation creates it from the SAM resource.
        let uri = sm["DefinitionUri"].as_str().expect("DefinitionUri");
        let mut definition =
            std::fs::read_to_string(repo_root().join(uri)).expect("state machine definition");
        for (k, v) in sm["DefinitionSubstitutions"]
            .as_object()
            .into_iter()
            .flatten()
        {
            definition = definition.replace(
                &format!("${{{k}}}"),
                v.as_str().expect("substitution is a string"),
            );
        }
        let sm_name = r.physical[&sm_id].attrs["Name"].clone();
        let sfn = sfn_client(&conf, &sfn_endpoint);
        let created = sfn
            .create_state_machine()
            .name(&sm_name)
            .definition(&definition)
            .role_arn(&sm_role.arn)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("the independent interpreter refused flow-run.asl.json: {e:?}")
            });
        let state_machine_arn = created.state_machine_arn().to_string();

        let outputs: BTreeMap<String, String> = tpl["Outputs"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, o)| {
                let v = r.resolve(&o["Value"]);
                (
                    k.clone(),
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect();
        let output_bucket = outputs
            .get("OutputBucket")
            .cloned()
            .expect("output OutputBucket");
        let staging_bucket = outputs
            .get("StagingBucket")
            .cloned()
            .expect("output StagingBucket");
        let table = outputs.get("TableName").cloned().expect("output TableName");
        Stack {
            name,
            template: tpl,
            outputs,
            moto,
            sfn_endpoint,
            state_machine_arn,
            roles,
            functions,
            output_bucket,
            staging_bucket,
            table,
            conf,
            gate,
            lambda,
            evaluator,
            _node: node,
            servers,
            dir,
        }
    }

    /// A Step Functions client for this stack (the test's or the user's own credentials).
    pub fn sfn(&self) -> aws_sdk_sfn::Client {
        sfn_client(&self.conf, &self.sfn_endpoint)
    }

    /// The ferry steps' dependencies with the test's own (unrestricted) credentials, to look at
    /// what the functions wrote.
    pub fn deps(&self) -> ferry::steps::Deps {
        let settings = ferry::adapters::aws::AwsSettings {
            table: self.table.clone(),
            staging_bucket: self.staging_bucket.clone(),
            event_bus: self
                .outputs
                .get("EventBusName")
                .cloned()
                .unwrap_or_default(),
            secret_prefix: self
                .outputs
                .get("SecretPrefix")
                .cloned()
                .unwrap_or_default(),
            kms_key_id: None,
            stack_name: Some(self.name.clone()),
        };
        ferry::adapters::aws::aws_deps(&ferry::adapters::aws::Clients::new(&self.conf), &settings)
    }

    /// The environment the ferry CLI needs to work against this stack (what a user exports
    /// from the stack outputs), reaching moto and this stack's Step Functions.
    pub fn cli_env(&self) -> Vec<(String, String)> {
        let o = |k: &str| self.outputs.get(k).cloned().unwrap_or_default();
        vec![
            ("FERRY_TABLE".into(), o("TableName")),
            ("FERRY_STAGING_BUCKET".into(), o("StagingBucket")),
            ("FERRY_STATE_MACHINE_ARN".into(), o("StateMachineArn")),
            ("FERRY_SCHEDULER_ROLE_ARN".into(), o("SchedulerRoleArn")),
            ("FERRY_EVENT_RULE_ROLE_ARN".into(), o("EventRuleRoleArn")),
            ("FERRY_EVENT_BUS".into(), o("EventBusName")),
            ("FERRY_SECRET_PREFIX".into(), o("SecretPrefix")),
            ("AWS_ENDPOINT_URL".into(), self.moto.clone()),
            ("AWS_ENDPOINT_URL_SFN".into(), self.sfn_endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    /// Run the `ferry` CLI (the binary the cli package's tests build) against this stack, with
    /// the environment a user exports from the stack outputs. Returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        self.cli_with(args, &[])
    }

    /// [`cli`](Self::cli) with extra (or overriding) environment variables.
    pub fn cli_with(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let exe = bin_dir().join("ferry");
        let out = std::process::Command::new(&exe)
            .args(args)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env("FERRY_HOME", self.dir().join("ferry-home"))
            .envs(self.cli_env())
            .envs(env.iter().copied())
            .current_dir(self.dir())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}); it is built by `cargo nextest run --workspace`",
                    exe.display()
                )
            });
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Start an execution of the flow-run state machine.
    pub async fn start(&self, input: &Value, name: Option<&str>) -> String {
        let mut req = self
            .sfn()
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .input(input.to_string());
        if let Some(n) = name {
            req = req.name(n);
        }
        req.send()
            .await
            .expect("start execution")
            .execution_arn()
            .to_string()
    }

    /// Wait for an execution to end (at most `timeout`).
    pub async fn wait(&self, arn: &str, timeout: Duration) -> Execution {
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let v: Value = http
                .post(&self.sfn_endpoint)
                .header("x-amz-target", "AWSStepFunctions.WaitExecution")
                .json(&json!({"executionArn": arn, "timeoutSeconds": 10}))
                .send()
                .await
                .expect("harness sfn")
                .json()
                .await
                .expect("json");
            let status = v["status"].as_str().unwrap_or_default().to_string();
            if status != "RUNNING" {
                return Execution {
                    arn: arn.to_string(),
                    status,
                    output: v["output"]
                        .as_str()
                        .and_then(|s| serde_json::from_str(s).ok()),
                    error: v["error"].as_str().map(str::to_string),
                    cause: v["cause"].as_str().map(str::to_string),
                };
            }
            assert!(
                std::time::Instant::now() < deadline,
                "execution {arn} still RUNNING after {timeout:?}; function logs:\n{}",
                self.logs()
            );
        }
    }

    /// Start a flow run as `ferry run NAME --remote` would, and wait for it.
    pub async fn run(&self, input: &Value) -> Execution {
        let arn = self.start(input, None).await;
        self.wait(&arn, Duration::from_secs(300)).await
    }

    /// Inject faults into the functions' AWS calls with probability `p` per call (seeded), or
    /// stop (`None`). Returns the faults injected since the last call, by kind.
    pub fn set_faults(
        &self,
        plan: Option<(u64, f64)>,
    ) -> std::collections::BTreeMap<&'static str, u64> {
        use rand::SeedableRng;
        let mut f = self.gate.faults.lock().unwrap();
        let counts = f.as_ref().map(|f| f.counts.clone()).unwrap_or_default();
        *f = plan.map(|(seed, p)| gate::GateFaults {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            p,
            counts: Default::default(),
        });
        counts
    }

    /// Every IAM decision the gate made, in order.
    pub fn decisions(&self) -> Vec<Decision> {
        self.gate.decisions.lock().unwrap().clone()
    }

    /// The refused calls.
    pub fn denials(&self) -> Vec<Decision> {
        self.decisions()
            .into_iter()
            .filter(|d| !d.allowed)
            .collect()
    }

    /// Events the template's rules delivered to their Lambda targets (the reaper), with outcomes.
    pub fn deliveries(&self) -> Vec<lambda::Delivery> {
        self.lambda.deliveries.lock().unwrap().clone()
    }

    /// Wait until `n` deliveries have completed (at most `timeout`).
    pub async fn wait_deliveries(&self, n: usize, timeout: Duration) -> Vec<lambda::Delivery> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let d = self.deliveries();
            if d.len() >= n || std::time::Instant::now() > deadline {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until no function is running an invocation (at most `timeout`): a Lambda invoked by
    /// an execution that has ended (stopped, failed) runs on to its end, as on AWS.
    pub async fn wait_idle(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.lambda.functions.values().any(|f| f.is_busy())
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Per-invocation costs (peak RSS, duration, error).
    pub fn invocations(&self) -> Vec<InvocationStat> {
        self.lambda.stats.lock().unwrap().clone()
    }

    /// Peak RSS (KiB) per function over every invocation so far.
    pub fn peak_rss_kb(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for s in self.invocations() {
            let e = out.entry(s.function).or_insert(0);
            *e = (*e).max(s.peak_rss_kb);
        }
        out
    }

    /// What the functions printed (their log streams), for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for spec in self.functions.values() {
            if let Ok(s) = std::fs::read_to_string(&spec.log_path) {
                let tail: Vec<&str> = s.lines().rev().take(40).collect();
                out.push_str(&format!(
                    "--- {} (last {} lines)\n",
                    spec.logical_id,
                    tail.len()
                ));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// The whole log of one function.
    pub fn log_of(&self, logical_id: &str) -> String {
        std::fs::read_to_string(&self.functions[logical_id].log_path).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn role_by_arn(&self, arn: &str) -> &Role {
        self.roles
            .values()
            .find(|r| r.arn == arn)
            .unwrap_or_else(|| {
                panic!(
                    "{arn} is not a role of this stack (roles: {:?})",
                    self.roles.keys().collect::<Vec<_>>()
                )
            })
    }

    /// What a service does before it uses a target's role: the role must trust the service, and
    /// the role must allow starting the target. Returns the refusal, if any.
    async fn check_target_role(
        &self,
        service: &str,
        role_arn: &str,
        target_arn: &str,
    ) -> Result<(), String> {
        let role = self.role_by_arn(role_arn);
        let mut ctx = serde_json::Map::new();
        ctx.insert("aws:SourceAccount".into(), json!(ACCOUNT));
        let assume = gate::Check {
            action: "sts:AssumeRole".into(),
            resource: role.arn.clone(),
            context: ctx,
            resource_policy: Some(role.trust.clone()),
        };
        let d = self.evaluator.decide(service, &[], &assume).await;
        if d != "Allowed" {
            return Err(format!(
                "{service} cannot assume {} ({}): its trust policy does not allow it ({d})",
                role.logical_id, role.arn
            ));
        }
        let start = gate::Check {
            action: "states:StartExecution".into(),
            resource: target_arn.to_string(),
            context: serde_json::Map::new(),
            resource_policy: None,
        };
        let session = format!(
            "arn:aws:sts::{ACCOUNT}:assumed-role/{}/{service}",
            role.arn.rsplit('/').next().unwrap_or_default()
        );
        let d = self
            .evaluator
            .decide(&session, &role.policies, &start)
            .await;
        if d != "Allowed" {
            return Err(gate::denial_message(
                &session,
                "states:StartExecution",
                target_arn,
                &d,
            ));
        }
        Ok(())
    }

    /// Fire an EventBridge Scheduler schedule once: what the Scheduler service does when the
    /// schedule is due. Returns the execution ARN, or why the service could not start it.
    pub async fn fire_schedule(&self, name: &str, group: Option<&str>) -> Result<String, String> {
        let sch = aws_sdk_scheduler::Client::new(&self.conf);
        let mut req = sch.get_schedule().name(name);
        if let Some(g) = group {
            req = req.group_name(g);
        }
        let s = req
            .send()
            .await
            .map_err(|e| format!("no schedule {name}: {e:?}"))?;
        let t = s.target().ok_or("schedule has no target")?;
        if t.arn() != self.state_machine_arn {
            return Err(format!(
                "schedule {name} targets {}, not this stack's state machine",
                t.arn()
            ));
        }
        self.check_target_role("scheduler.amazonaws.com", t.role_arn(), t.arn())
            .await?;
        let input: Value =
            serde_json::from_str(t.input().unwrap_or("{}")).map_err(|e| e.to_string())?;
        Ok(self.start(&input, None).await)
    }

    /// Deliver `event` (its `detail-type`, `source`, `detail`) to rule `rule` on `bus` as
    /// EventBridge would: the rule's pattern must match (moto's TestEventPattern), and each
    /// Step Functions target is started through its role. Returns the execution ARNs.
    pub async fn fire_rule(
        &self,
        rule: &str,
        bus: &str,
        event: &Value,
    ) -> Result<Vec<String>, String> {
        let ev = aws_sdk_eventbridge::Client::new(&self.conf);
        let r = ev
            .describe_rule()
            .name(rule)
            .event_bus_name(bus)
            .send()
            .await
            .map_err(|e| format!("no rule {rule} on {bus}: {e:?}"))?;
        let pattern = r.event_pattern().unwrap_or("{}");
        // moto's TestEventPattern answers nothing; its rule engine's matcher decides instead.
        let pattern_json: Value = serde_json::from_str(pattern).map_err(|e| e.to_string())?;
        if !lambda::pattern_matches(&check::python(), &pattern_json, event)? {
            return Err(format!(
                "event does not match rule {rule}'s pattern {pattern}"
            ));
        }
        let targets = ev
            .list_targets_by_rule()
            .rule(rule)
            .event_bus_name(bus)
            .send()
            .await
            .map_err(|e| format!("list targets: {e:?}"))?;
        let mut started = vec![];
        for t in targets.targets() {
            if t.arn() != self.state_machine_arn {
                continue;
            }
            let role = t
                .role_arn()
                .ok_or_else(|| format!("rule {rule}'s target has no role"))?;
            self.check_target_role("events.amazonaws.com", role, t.arn())
                .await?;
            let input: Value = match t.input() {
                Some(i) => serde_json::from_str(i).map_err(|e| e.to_string())?,
                None => event.clone(),
            };
            started.push(self.start(&input, None).await);
        }
        if started.is_empty() {
            return Err(format!(
                "rule {rule} has no target on this stack's state machine"
            ));
        }
        Ok(started)
    }
}

fn sfn_client(conf: &aws_config::SdkConfig, endpoint: &str) -> aws_sdk_sfn::Client {
    let c = aws_sdk_sfn::config::Builder::from(conf)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_sfn::Client::from_conf(c)
}

async fn create_table(ddb: &aws_sdk_dynamodb::Client, name: &str, p: &Value) {
    use aws_sdk_dynamodb::types::*;
    let mut req = ddb.create_table().table_name(name);
    for a in p["AttributeDefinitions"].as_array().into_iter().flatten() {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(a["AttributeName"].as_str().expect("name"))
                .attribute_type(ScalarAttributeType::from(
                    a["AttributeType"].as_str().expect("type"),
                ))
                .build()
                .expect("attribute"),
        );
    }
    let key = |k: &Value| {
        KeySchemaElement::builder()
            .attribute_name(k["AttributeName"].as_str().expect("name"))
            .key_type(KeyType::from(k["KeyType"].as_str().expect("type")))
            .build()
            .expect("key")
    };
    for k in p["KeySchema"].as_array().into_iter().flatten() {
        req = req.key_schema(key(k));
    }
    for g in p["GlobalSecondaryIndexes"].as_array().into_iter().flatten() {
        let mut b =
            GlobalSecondaryIndex::builder().index_name(g["IndexName"].as_str().expect("index"));
        for k in g["KeySchema"].as_array().into_iter().flatten() {
            b = b.key_schema(key(k));
        }
        b = b.projection(
            Projection::builder()
                .projection_type(ProjectionType::from(
                    g["Projection"]["ProjectionType"].as_str().unwrap_or("ALL"),
                ))
                .build(),
        );
        req = req.global_secondary_indexes(b.build().expect("gsi"));
    }
    req = req.billing_mode(BillingMode::from(
        p["BillingMode"].as_str().unwrap_or("PAY_PER_REQUEST"),
    ));
    req.send().await.expect("create table");
    if let Some(ttl) = p["TimeToLiveSpecification"].as_object() {
        ddb.update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(ttl["AttributeName"].as_str().expect("ttl attribute"))
                    .enabled(ttl["Enabled"].as_bool().unwrap_or(true))
                    .build()
                    .expect("ttl"),
            )
            .send()
            .await
            .expect("ttl");
    }
}

async fn create_bucket(s3: &aws_sdk_s3::Client, name: &str, p: &Value) {
    use aws_sdk_s3::types::*;
    s3.create_bucket()
        .bucket(name)
        .send()
        .await
        .expect("create bucket");
    if p["VersioningConfiguration"]["Status"] == "Enabled" {
        s3.put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("versioning");
    }
    let mut rules = vec![];
    for rule in p["LifecycleConfiguration"]["Rules"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let mut b = LifecycleRule::builder()
            .id(rule["Id"].as_str().unwrap_or("rule"))
            .status(ExpirationStatus::from(
                rule["Status"].as_str().unwrap_or("Enabled"),
            ))
            .filter(
                LifecycleRuleFilter::builder()
                    .prefix(rule["Prefix"].as_str().unwrap_or(""))
                    .build(),
            );
        if let Some(d) = rule["ExpirationInDays"].as_i64() {
            b = b.expiration(LifecycleExpiration::builder().days(d as i32).build());
        }
        if let Some(d) = rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"].as_i64() {
            b = b.abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(d as i32)
                    .build(),
            );
        }
        if let Some(d) = rule["NoncurrentVersionExpiration"]["NoncurrentDays"].as_i64() {
            b = b.noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(d as i32)
                    .build(),
            );
        }
        rules.push(b.build().expect("lifecycle rule"));
    }
    if !rules.is_empty() {
        s3.put_bucket_lifecycle_configuration()
            .bucket(name)
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .set_rules(Some(rules))
                    .build()
                    .expect("lifecycle"),
            )
            .send()
            .await
            .expect("lifecycle");
    }
}
