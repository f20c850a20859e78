//! Lambda, as the state machine and the functions see it: the Lambda Invoke API
//! (`POST /2015-03-31/functions/{name}/invocations`, the call Step Functions makes with its role)
//! in front of each function's real binary, which runs behind the Lambda Runtime API
//! (`/2018-06-01/runtime/invocation/next`, `/response`, `/error`, `/runtime/init/error`)
//! with the environment, memory and timeout the template gives it.
//!
//! As on Lambda: an instance serves one invocation at a time and is reused while it lives; a
//! busy function gets another instance (up to a cap); an invocation that outlives the function's
//! `Timeout` kills the instance and fails with `Sandbox.Timedout`; one that grows past
//! `MemorySize` (resident set, sampled) is killed with `Runtime.OutOfMemory`; a process that
//! exits mid-invocation fails it with `Runtime.ExitError`. Each invocation's peak resident memory
//! is recorded (VmHWM, reset per invocation), which is how docs/deploy.md sizes the functions.

use super::gate::{denial_message, Check, Evaluator, Principal};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// One function of the template, ready to run.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// Logical id in the template (`FetchPageFunction`).
    pub logical_id: String,
    /// Physical name.
    pub name: String,
    pub arn: String,
    /// The function's binary (the crate `sam build` builds, built for this host).
    pub binary: PathBuf,
    pub env: BTreeMap<String, String>,
    pub memory_mb: u64,
    pub timeout: Duration,
    /// stdout and stderr of every instance (the function's CloudWatch log stream).
    pub log_path: PathBuf,
}

/// What one invocation cost.
#[derive(Debug, Clone)]
pub struct InvocationStat {
    pub function: String,
    pub peak_rss_kb: u64,
    pub millis: u64,
    /// The error type, when it failed.
    pub error: Option<String>,
}

enum Outcome {
    Ok(Bytes),
    Err(Value),
}

struct Invocation {
    id: String,
    payload: Bytes,
    deadline_ms: u64,
}

struct RuntimeState {
    arn: String,
    next: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: Mutex<Option<Value>>,
}

struct Instance {
    child: tokio::process::Child,
    pid: u32,
    tx: mpsc::Sender<Invocation>,
    state: Arc<RuntimeState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.server.abort();
        let _ = self.child.start_kill();
    }
}

async fn next(State(s): State<Arc<RuntimeState>>) -> Response {
    let inv = s.next.lock().await.recv().await;
    match inv {
        Some(inv) => (
            StatusCode::OK,
            [
                ("lambda-runtime-aws-request-id", inv.id.clone()),
                ("lambda-runtime-deadline-ms", inv.deadline_ms.to_string()),
                ("lambda-runtime-invoked-function-arn", s.arn.clone()),
                (
                    "lambda-runtime-trace-id",
                    format!("Root=1-00000000-{};Sampled=0", inv.id),
                ),
                ("content-type", "application/json".to_string()),
            ],
            inv.payload,
        )
            .into_response(),
        None => StatusCode::GONE.into_response(),
    }
}

async fn response(
    State(s): State<Arc<RuntimeState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    if let Some(tx) = s.pending.lock().unwrap().remove(&id) {
        let _ = tx.send(Outcome::Ok(body));
    }
    StatusCode::ACCEPTED
}

async fn error(
    State(s): State<Arc<RuntimeState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut v: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| json!({"errorMessage": String::from_utf8_lossy(&body)}));
    if v.get("errorType").is_none() {
        let t = headers
            .get("lambda-runtime-function-error-type")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("Runtime.Unknown");
        v["errorType"] = json!(t);
    }
    if let Some(tx) = s.pending.lock().unwrap().remove(&id) {
        let _ = tx.send(Outcome::Err(v));
    }
    StatusCode::ACCEPTED
}

async fn init_error(State(s): State<Arc<RuntimeState>>, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| json!({"errorMessage": String::from_utf8_lossy(&body)}));
    *s.init_error.lock().unwrap() = Some(v);
    StatusCode::ACCEPTED
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

/// A function: its spec and its instances.
pub struct Function {
    pub spec: FunctionSpec,
    idle: Mutex<Vec<Instance>>,
    slots: Semaphore,
    seq: AtomicU64,
    /// Pids of the instances serving an invocation now.
    busy: Mutex<std::collections::HashSet<u32>>,
}

/// Instances a function may run at once (Lambda scales a function out per concurrent invoke).
const MAX_INSTANCES: usize = 4;

impl Function {
    pub fn new(spec: FunctionSpec) -> Function {
        Function {
            spec,
            idle: Mutex::new(vec![]),
            slots: Semaphore::new(MAX_INSTANCES),
            seq: AtomicU64::new(0),
            busy: Mutex::new(Default::default()),
        }
    }

    /// Kill the instances serving an invocation now (a crash: their invocations end with
    /// `Runtime.ExitError`).
    /// Is an invocation running?
    pub fn is_busy(&self) -> bool {
        !self.busy.lock().unwrap().is_empty()
    }

    pub fn kill_busy(&self) {
        for pid in self.busy.lock().unwrap().iter() {
            if let Ok(pid) = i32::try_from(*pid) {
                // SAFETY: SIGKILL to a child process this harness started.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }

    async fn spawn(&self) -> std::io::Result<Instance> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (tx, rx) = mpsc::channel(1);
        let state = Arc::new(RuntimeState {
            arn: self.spec.arn.clone(),
            next: tokio::sync::Mutex::new(rx),
            pending: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log_path)?;
        let mut cmd = tokio::process::Command::new(&self.spec.binary);
        cmd.env_clear()
            .envs(&self.spec.env)
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot start {} ({e}); the harness runs the functions' binaries built by `cargo nextest run --workspace` (or set FERRY_HARNESS_BIN_DIR)",
                    self.spec.binary.display()
                ),
            )
        })?;
        let pid = child.id().unwrap_or_default();
        Ok(Instance {
            child,
            pid,
            tx,
            state,
            server,
        })
    }

    /// Invoke once, as Lambda would.
    async fn invoke(
        &self,
        payload: Bytes,
        stats: &Mutex<Vec<InvocationStat>>,
    ) -> Result<Bytes, Value> {
        let _permit = self.slots.acquire().await.expect("semaphore open");
        let existing = self.idle.lock().unwrap().pop();
        let mut inst = match existing {
            Some(i) => i,
            None => self.spawn().await.map_err(|e| json!({"errorType": "Runtime.InvalidEntrypoint", "errorMessage": e.to_string()}))?,
        };
        let id = format!(
            "{:08x}-{:04x}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        );
        let started = Instant::now();
        let deadline_ms = (std::time::SystemTime::now() + self.spec.timeout)
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as u64;
        // Peak RSS of this invocation: reset the high-water mark first.
        let _ = std::fs::write(format!("/proc/{}/clear_refs", inst.pid), "5");
        let (otx, orx) = oneshot::channel();
        inst.state.pending.lock().unwrap().insert(id.clone(), otx);
        self.busy.lock().unwrap().insert(inst.pid);
        let _ = inst
            .tx
            .send(Invocation {
                id: id.clone(),
                payload,
                deadline_ms,
            })
            .await;
        let limit_kb = self.spec.memory_mb * 1024;
        let pid = inst.pid;
        let memory_watch = async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if proc_status_kb(pid, "VmRSS:").is_some_and(|kb| kb > limit_kb) {
                    return;
                }
            }
        };
        let secs = self.spec.timeout.as_secs_f64();
        let (result, alive) = tokio::select! {
            r = orx => match r {
                Ok(Outcome::Ok(b)) => (Ok(b), true),
                Ok(Outcome::Err(v)) => (Err(v), true),
                Err(_) => (Err(json!({"errorType": "Runtime.Unknown", "errorMessage": "the runtime dropped the invocation"})), false),
            },
            status = inst.child.wait() => {
                let init = inst.state.init_error.lock().unwrap().take();
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                (Err(init.unwrap_or_else(|| json!({
                    "errorType": "Runtime.ExitError",
                    "errorMessage": format!("RequestId: {id} Error: Runtime exited with error: {status}"),
                }))), false)
            }
            _ = tokio::time::sleep(self.spec.timeout) => {
                (Err(json!({
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": format!("RequestId: {id} Error: Task timed out after {secs:.2} seconds"),
                })), false)
            }
            _ = memory_watch => {
                (Err(json!({
                    "errorType": "Runtime.OutOfMemory",
                    "errorMessage": format!("RequestId: {id} Error: Runtime exited with error: signal: killed (memory size {} MB exceeded)", self.spec.memory_mb),
                })), false)
            }
        };
        self.busy.lock().unwrap().remove(&inst.pid);
        let peak = proc_status_kb(inst.pid, "VmHWM:").unwrap_or(0);
        stats.lock().unwrap().push(InvocationStat {
            function: self.spec.logical_id.clone(),
            peak_rss_kb: peak,
            millis: started.elapsed().as_millis() as u64,
            error: result
                .as_ref()
                .err()
                .and_then(|v| v["errorType"].as_str().map(str::to_string)),
        });
        if alive {
            self.idle.lock().unwrap().push(inst);
        }
        result
    }
}

/// The Lambda service: functions by name and ARN, and who may invoke them.
pub struct LambdaService {
    pub functions: HashMap<String, Arc<Function>>,
    /// Callers held to their role (the state machine's), by access key id.
    pub callers: HashMap<String, Principal>,
    pub evaluator: Evaluator,
    pub stats: Mutex<Vec<InvocationStat>>,
    /// The template's EventBridge rules on the default bus (where Step Functions reports
    /// execution status changes).
    pub rules: Vec<Rule>,
    /// The template's `AWS::Lambda::Permission` resources (resource policies of functions).
    pub permissions: Vec<Value>,
    /// Every event delivered to a rule's Lambda target, with the outcome.
    pub deliveries: Mutex<Vec<Delivery>>,
    pub python: std::path::PathBuf,
}

/// An EventBridge rule of the template.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub arn: String,
    pub pattern: Value,
    /// Target ARNs.
    pub targets: Vec<String>,
}

/// One event a rule delivered to a function.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub rule: String,
    pub function: String,
    pub event: Value,
    /// The function's answer, or why it was not invoked / failed.
    pub outcome: Result<Value, String>,
}

/// Whether an event matches an EventBridge pattern, decided by moto's rule engine (the matcher
/// moto routes PutEvents with) in the project venv's Python.
pub fn pattern_matches(
    python: &std::path::Path,
    pattern: &Value,
    event: &Value,
) -> Result<bool, String> {
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import json, sys\nfrom moto.events.models import EventPattern\nprint(EventPattern.load(sys.argv[1]).matches_event(json.loads(sys.argv[2])))",
            &pattern.to_string(),
            &event.to_string(),
        ])
        .output()
        .map_err(|e| format!("python: {e}"))?;
    match String::from_utf8_lossy(&out.stdout).trim() {
        "True" => Ok(true),
        "False" => Ok(false),
        other => Err(format!(
            "pattern matcher: {other} {}",
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// EventBridge on the default bus, for the events Step Functions sends (POSTed here by the
/// harness's Step Functions stand-in): each matching rule's Lambda targets are invoked
/// asynchronously, as EventBridge does — if the function's resource policy (an
/// `AWS::Lambda::Permission`) lets `events.amazonaws.com` invoke it for that rule.
pub async fn deliver(
    State(svc): State<Arc<LambdaService>>,
    axum::Json(event): axum::Json<Value>,
) -> StatusCode {
    for rule in &svc.rules {
        match pattern_matches(&svc.python, &rule.pattern, &event) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                svc.deliveries.lock().unwrap().push(Delivery {
                    rule: rule.name.clone(),
                    function: String::new(),
                    event: event.clone(),
                    outcome: Err(e),
                });
                continue;
            }
        }
        for target in &rule.targets {
            let key = target
                .rsplit("function:")
                .next()
                .unwrap_or(target)
                .to_string();
            let Some(f) = svc
                .functions
                .get(&key)
                .or_else(|| svc.functions.get(target))
                .cloned()
            else {
                continue;
            };
            let allowed = svc.permissions.iter().any(|p| {
                p["Action"] == "lambda:InvokeFunction"
                    && p["Principal"] == "events.amazonaws.com"
                    && (p["FunctionName"] == f.spec.name.as_str()
                        || p["FunctionName"] == f.spec.arn.as_str())
                    && p["SourceArn"] == rule.arn.as_str()
            });
            if !allowed {
                svc.deliveries.lock().unwrap().push(Delivery {
                    rule: rule.name.clone(),
                    function: f.spec.logical_id.clone(),
                    event: event.clone(),
                    outcome: Err(format!(
                        "events.amazonaws.com may not invoke {} for rule {}: no AWS::Lambda::Permission grants it",
                        f.spec.name, rule.arn
                    )),
                });
                continue;
            }
            let svc2 = svc.clone();
            let (rule_name, ev) = (rule.name.clone(), event.clone());
            tokio::spawn(async move {
                let payload = Bytes::from(ev.to_string());
                let outcome = match f.invoke(payload, &svc2.stats).await {
                    Ok(b) => serde_json::from_slice(&b).map_err(|e| e.to_string()),
                    Err(v) => Err(v.to_string()),
                };
                svc2.deliveries.lock().unwrap().push(Delivery {
                    rule: rule_name,
                    function: f.spec.logical_id.clone(),
                    event: ev,
                    outcome,
                });
            });
        }
    }
    StatusCode::OK
}

fn lambda_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [
            ("x-amzn-errortype", kind.to_string()),
            ("content-type", "application/json".to_string()),
        ],
        json!({"Type": "User", "message": message}).to_string(),
    )
        .into_response()
}

pub async fn invoke(
    State(svc): State<Arc<LambdaService>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = name.rsplit("function:").next().unwrap_or(&name).to_string();
    let Some(f) = svc
        .functions
        .get(&key)
        .or_else(|| svc.functions.get(&name))
        .cloned()
    else {
        return lambda_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {name}"),
        );
    };
    let akid = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').next())
        .unwrap_or_default()
        .to_string();
    if let Some(p) = svc.callers.get(&akid) {
        let mut context = Map::new();
        context.insert("aws:SecureTransport".into(), json!("true"));
        let check = Check {
            action: "lambda:InvokeFunction".into(),
            resource: f.spec.arn.clone(),
            context,
            resource_policy: None,
        };
        let d = svc.evaluator.decide(&p.arn, &p.policies, &check).await;
        if d != "Allowed" {
            let msg = denial_message(&p.arn, &check.action, &check.resource, &d);
            return lambda_error(StatusCode::FORBIDDEN, "AccessDeniedException", &msg);
        }
    }
    match f.invoke(body, &svc.stats).await {
        Ok(out) => (StatusCode::OK, [("x-amz-executed-version", "$LATEST")], out).into_response(),
        Err(e) => (
            StatusCode::OK,
            [
                ("x-amz-executed-version", "$LATEST"),
                ("x-amz-function-error", "Unhandled"),
                ("content-type", "application/json"),
            ],
            e.to_string(),
        )
            .into_response(),
    }
}
