//! The embedded engine: runs `statemachines/flow-run.asl.json` — the same file AWS Step Functions
//! runs — with an in-process interpreter ([`asl`]) whose Task states call the steps directly,
//! over embedded adapters (SQLite, local directories, a secrets file, an event log).

pub mod asl;

use crate::adapters::{
    event_log::EventLog,
    localfs::{LocalDir, LocalResolver},
    secrets_file::SecretsFile,
    sqlite::SqliteStore,
};
use crate::error::StepError;
use crate::model::RunRecord;
use crate::ports::{DestinationResolver, SystemClock};
use crate::steps::{self, start_run::RunRequest, Deps, Settings};
use asl::{ExecutionContext, ExecutionFailure, Observer, StateMachine, TaskFailure, TaskInvoker};
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The production state machine, compiled in.
pub use crate::steps::lease::FLOW_RUN_ASL;

/// Task resources of the embedded engine, one per step; template.yaml substitutes Lambda ARNs
/// for the same placeholders.
pub const RESOURCES: [(&str, &str); 5] = [
    ("StartRunFunctionArn", "ferry:local:start-run"),
    ("FetchPageFunctionArn", "ferry:local:fetch-page"),
    ("TransformBatchFunctionArn", "ferry:local:transform-batch"),
    ("WriteS3FunctionArn", "ferry:local:write-s3"),
    ("FinalizeFunctionArn", "ferry:local:finalize"),
];

/// The staging bucket the "Run Slices" ItemReader names; the embedded engine reads the key
/// from its own staging store, whatever the bucket.
pub const LOCAL_STAGING_BUCKET: &str = "ferry-local-staging";

/// The resource of the Map's ItemReader (Step Functions' S3 GetObject integration).
pub const S3_GET_OBJECT: &str = "arn:aws:states:::s3:getObject";

pub fn local_substitutions() -> HashMap<String, String> {
    RESOURCES
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([(
            "StagingBucketName".to_string(),
            LOCAL_STAGING_BUCKET.to_string(),
        )])
        .collect()
}

/// Calls the step a Task's resource names, in process (the same dispatch the Lambdas use).
pub struct StepInvoker {
    pub deps: Deps,
    /// Fetch the next chunk while the current one is transformed and written (see
    /// [`StepInvoker::prefetching`]).
    prefetch: Option<PrefetchSlot>,
    /// Run each step on a tokio task of its own (see [`StepInvoker::parallel`]).
    tasks: Option<PrefetchSlot>,
}

/// What an engine's invoker has running besides the state machine: the prefetches (one per
/// slice) and, when steps run on tasks of their own, those tasks. The engine holds it too, to
/// stop everything before it ends a run.
pub type PrefetchSlot = Arc<InFlight>;

#[derive(Default)]
pub struct InFlight {
    /// Running prefetches, by slice index (`None`: a step input without a slice).
    prefetch: std::sync::Mutex<HashMap<Option<u64>, Prefetch>>,
    /// Steps running on tasks of their own.
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl InFlight {
    fn take_prefetch(&self, slice: Option<u64>) -> Option<Prefetch> {
        self.prefetch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&slice)
    }

    fn take_all_prefetches(&self) -> Vec<Prefetch> {
        self.prefetch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, p)| p)
            .collect()
    }
}

/// Stop every prefetch and step task in `slot`, and wait until they have stopped.
pub async fn stop_prefetch(slot: &PrefetchSlot) {
    for p in slot.take_all_prefetches() {
        p.task.abort();
        let _ = p.task.await;
    }
    let tasks: Vec<_> = std::mem::take(&mut *slot.tasks.lock().unwrap_or_else(|e| e.into_inner()));
    for t in &tasks {
        t.abort();
    }
    for t in &tasks {
        while !t.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}

/// A fetch-page started ahead of the state machine: the input it will be asked with, and the
/// running step.
pub struct Prefetch {
    input: serde_json::Value,
    task: tokio::task::JoinHandle<Result<serde_json::Value, StepError>>,
}

/// Aborts its task when dropped (the state machine stopped waiting for it).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The slice a step input belongs to.
fn slice_of(input: &serde_json::Value) -> Option<u64> {
    input.get("slice")?.get("index")?.as_u64()
}

impl StepInvoker {
    pub fn new(deps: Deps) -> Self {
        StepInvoker {
            deps,
            prefetch: None,
            tasks: None,
        }
    }

    /// The same invoker, overlapping chunks: when fetch-page answers that there is more, the
    /// next fetch-page (with the input the state machine will send it: the same run and slice,
    /// the returned cursor, the next chunk) starts at once, in the background, while this
    /// chunk's transform-batch and write-s3 run. The state machine's own Fetch Chunk then takes
    /// that result — or, if it asks anything else, the prefetch is stopped and the step runs as
    /// asked. Results are committed in order and the state machine's semantics are unchanged:
    /// every step a chunk writes is keyed by (run, chunk), and a failure's cleanup runs only
    /// after the prefetch has stopped. Each slice has its own prefetch; a slice that pauses
    /// (its child ends, the slice goes on in the next round) starts none.
    pub fn prefetching(mut self, slot: PrefetchSlot) -> Self {
        self.prefetch = Some(slot);
        self
    }

    /// The same invoker, running every step on a tokio task of its own, so the slices a Map
    /// runs at once use every core (the interpreter itself runs them concurrently on one task).
    /// The tasks are tracked in `slot` and stopped with [`stop_prefetch`].
    pub fn parallel(mut self, slot: PrefetchSlot) -> Self {
        self.tasks = Some(slot);
        self
    }

    async fn run_step(
        &self,
        step: steps::Step,
        input: serde_json::Value,
    ) -> Result<serde_json::Value, StepError> {
        let Some(slot) = &self.tasks else {
            return steps::dispatch(&self.deps, step, input).await;
        };
        let deps = self.deps.clone();
        let task = tokio::spawn(async move { steps::dispatch(&deps, step, input).await });
        {
            let mut tasks = slot.tasks.lock().unwrap_or_else(|e| e.into_inner());
            tasks.retain(|t| !t.is_finished());
            tasks.push(task.abort_handle());
        }
        let mut guard = AbortOnDrop(task);
        match (&mut guard.0).await {
            Ok(r) => r,
            Err(e) => Err(StepError::fatal(format!(
                "the {} step stopped before it answered: {e}",
                step.name()
            ))),
        }
    }
}

impl Drop for StepInvoker {
    fn drop(&mut self) {
        if let Some(m) = &self.prefetch {
            for p in m.take_all_prefetches() {
                p.task.abort();
            }
        }
    }
}

#[async_trait]
impl TaskInvoker for StepInvoker {
    async fn invoke(
        &self,
        resource: &str,
        input: serde_json::Value,
    ) -> Result<serde_json::Value, TaskFailure> {
        let Some(step) = steps::Step::from_resource(resource) else {
            return Err(TaskFailure::new(
                "States.TaskFailed",
                format!("the embedded engine has no step for resource '{resource}'"),
            ));
        };
        let fail = |e: StepError| TaskFailure::new(e.kind.as_str(), e.message);
        let Some(slot) = &self.prefetch else {
            return self.run_step(step, input).await.map_err(fail);
        };
        let mut ahead = None;
        let stale = match step {
            steps::Step::FetchPage => match slot.take_prefetch(slice_of(&input)) {
                Some(p) if p.input == input => {
                    ahead = Some(p.task);
                    vec![]
                }
                Some(p) => vec![p],
                None => vec![],
            },
            steps::Step::StartRun | steps::Step::Finalize => slot.take_all_prefetches(),
            steps::Step::TransformBatch | steps::Step::WriteS3 => vec![],
        };
        for p in stale {
            p.task.abort();
            let _ = p.task.await;
        }
        let out = match ahead {
            Some(task) => match task.await {
                Ok(r) => r,
                // The prefetch panicked or was cancelled: run the step as asked.
                Err(_) => self.run_step(step, input.clone()).await,
            },
            None => self.run_step(step, input.clone()).await,
        };
        if step == steps::Step::FetchPage {
            if let Ok(o) = &out {
                let more = o.get("has_more") == Some(&serde_json::Value::Bool(true));
                let pause = o.get("pause") == Some(&serde_json::Value::Bool(true));
                if more && !pause {
                    let mut next = input.clone();
                    if let Some(obj) = next.as_object_mut() {
                        obj.insert(
                            "cursor".into(),
                            o.get("cursor").cloned().unwrap_or_default(),
                        );
                        obj.insert(
                            "chunk".into(),
                            o.get("next_chunk").cloned().unwrap_or_default(),
                        );
                    }
                    let deps = self.deps.clone();
                    let payload = next.clone();
                    let task = tokio::spawn(async move {
                        steps::dispatch(&deps, steps::Step::FetchPage, payload).await
                    });
                    let key = slice_of(&next);
                    slot.prefetch
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key, Prefetch { input: next, task });
                }
            }
        }
        out.map_err(fail)
    }

    /// The "Run Slices" ItemReader: the staged slice list, from this engine's staging store
    /// (on AWS, Step Functions reads the same key from the staging bucket).
    async fn read_items(
        &self,
        resource: &str,
        parameters: serde_json::Value,
        config: &serde_json::Value,
    ) -> Result<serde_json::Value, TaskFailure> {
        read_staged_items(&self.deps, resource, parameters, config).await
    }
}

/// Reads a Map's items the way Step Functions' ItemReader does with `s3:getObject` and
/// `ReaderConfig.InputType: JSON` — a JSON array in one object — from the staging store.
pub async fn read_staged_items(
    deps: &Deps,
    resource: &str,
    parameters: serde_json::Value,
    config: &serde_json::Value,
) -> Result<serde_json::Value, TaskFailure> {
    let failed = |m: String| TaskFailure::new(asl::error_names::ITEM_READER_FAILED, m);
    if resource != S3_GET_OBJECT {
        return Err(failed(format!(
            "the embedded engine reads Map items only with {S3_GET_OBJECT}, not '{resource}'"
        )));
    }
    if config.get("InputType").and_then(|t| t.as_str()) != Some("JSON") {
        return Err(failed(
            "the embedded engine's ItemReader reads ReaderConfig.InputType JSON only".into(),
        ));
    }
    let key = parameters
        .get("Key")
        .and_then(|k| k.as_str())
        .ok_or_else(|| failed("the ItemReader's Parameters have no Key".into()))?;
    let body = deps
        .staging
        .get(key)
        .await
        .map_err(|e| failed(format!("could not read the items at '{key}': {e}")))?;
    let items: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| failed(format!("the items at '{key}' are not JSON: {e}")))?;
    if !items.is_array() {
        return Err(failed(format!("the items at '{key}' are not a JSON array")));
    }
    Ok(items)
}

/// The result of one run on the embedded engine.
#[derive(Debug)]
pub struct RunOutcome {
    pub run_id: String,
    /// The run record (absent when the run never started, e.g. refused by the lease).
    pub record: Option<RunRecord>,
    /// Why the execution failed, if it did.
    pub failure: Option<ExecutionFailure>,
}

impl RunOutcome {
    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
    }
}

/// The embedded engine: the flow-run state machine bound to in-process steps.
pub struct Engine {
    pub deps: Deps,
    machine: StateMachine,
    /// Wraps the in-process step invoker (fault campaigns); `None` calls the steps directly.
    wrap: Option<InvokerWrap>,
}

/// Builds the Task invoker an execution uses from the plain step invoker.
pub type InvokerWrap = Arc<dyn Fn(StepInvoker) -> Box<dyn TaskInvoker> + Send + Sync>;

impl Engine {
    pub fn new(deps: Deps) -> Result<Self, asl::AslError> {
        Self::with_definition(deps, FLOW_RUN_ASL)
    }

    /// The same engine with retry waits lasting `scale` of the definition's (tests, fault
    /// campaigns).
    pub fn with_time_scale(mut self, scale: f64) -> Self {
        self.machine = self.machine.with_time_scale(scale);
        self
    }

    /// Tasks call the steps through `wrap(StepInvoker)` (a fault-injecting invoker, say).
    pub fn with_invoker(mut self, wrap: InvokerWrap) -> Self {
        self.wrap = Some(wrap);
        self
    }

    pub fn with_definition(deps: Deps, definition: &str) -> Result<Self, asl::AslError> {
        Ok(Engine {
            deps,
            machine: StateMachine::parse(definition, &local_substitutions())?,
            wrap: None,
        })
    }

    /// Run a registered flow to the end.
    pub async fn run(&self, request: RunRequest, observer: &dyn Observer) -> RunOutcome {
        self.run_until(request, observer, std::future::pending())
            .await
    }

    /// Run a registered flow to the end, or until `cancel` completes (Ctrl-C, SIGTERM from
    /// `ferry stop`): then the run stops where it is and ends through the failure path as
    /// Canceled — its uncommitted output removed, the lease released, the watermark kept.
    pub async fn run_until(
        &self,
        request: RunRequest,
        observer: &dyn Observer,
        cancel: impl std::future::Future<Output = ()>,
    ) -> RunOutcome {
        let run_id = format!(
            "{}-{}",
            self.deps.clock.now().format("%Y%m%dT%H%M%SZ"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        // A run of this flow whose process died holds the lease: end it first.
        if let Err(e) = self.reap_dead_holder(&request.flow).await {
            tracing::warn!(flow = %request.flow, error = %e, "could not end a dead run of the flow");
        }
        let ctx = ExecutionContext {
            execution_id: format!("local:{}:{run_id}", request.flow),
            execution_name: run_id.clone(),
            state_machine_id: "ferry:local:flow-run".into(),
            start_time: self.deps.clock.now(),
        };
        #[allow(
            clippy::expect_used,
            reason = "a RunRequest is strings, numbers and times: serde_json cannot refuse it"
        )]
        let input = serde_json::to_value(&request).expect("a run request serializes");
        let plain = StepInvoker::new(self.deps.clone());
        let slot = PrefetchSlot::default();
        let invoker: Box<dyn TaskInvoker> = match &self.wrap {
            // Fault campaigns count and break each invocation: steps run only when asked.
            Some(w) => w(plain),
            // `FERRY_PREFETCH=0` runs the chunks one after another (the bench's comparison).
            None if std::env::var_os("FERRY_PREFETCH").is_some_and(|v| v == "0") => {
                Box::new(plain.parallel(slot.clone()))
            }
            None => Box::new(plain.prefetching(slot.clone()).parallel(slot.clone())),
        };
        let mut execution = Box::pin(self.machine.execute(input, ctx, invoker.as_ref(), observer));
        let result = tokio::select! {
            r = &mut execution => r,
            _ = cancel => {
                // The run stops where it is: nothing of the execution runs any more.
                drop(execution);
                stop_prefetch(&slot).await;
                let cause = "stopped (Ctrl-C or `ferry stop`) before it finished";
                let _ = steps::finalize::reap(&self.deps, &run_id, steps::finalize::CANCELED, cause).await;
                Err(ExecutionFailure {
                    error: steps::finalize::CANCELED.into(),
                    cause: cause.into(),
                    state: None,
                })
            }
        };
        stop_prefetch(&slot).await;
        if let Err(f) = &result {
            // As the stack's reaper does on a FAILED execution: a run the failure path could
            // not end (it failed too) is ended now; an ended run is left as it is.
            if let Err(e) = steps::finalize::reap(&self.deps, &run_id, &f.error, &f.cause).await {
                tracing::warn!(run_id = %run_id, error = %e, "could not end the failed run; its lease expires");
            }
            // A run that failed before it recorded itself may still hold the lease.
            let _ = self.deps.runs.release_lease(&request.flow, &run_id).await;
        }
        let record = self.deps.runs.get_run(&run_id).await.ok().flatten();
        RunOutcome {
            run_id,
            record,
            failure: result.err(),
        }
    }
}

impl Engine {
    /// If the flow's lease is held by a local process on this host that no longer exists (a
    /// killed `ferry run`), end that run through the failure path. Returns its run id.
    pub async fn reap_dead_holder(&self, flow: &str) -> Result<Option<String>, StepError> {
        let state = self.deps.runs.get_state(flow).await?;
        let Some(lease) = state.lease else {
            return Ok(None);
        };
        let Some(pid) = lease.holder.as_deref().and_then(dead_local_holder) else {
            return Ok(None);
        };
        let cause = format!(
            "the process running it (pid {pid} on this host) ended before the run did (killed or crashed)"
        );
        steps::finalize::reap(&self.deps, &lease.run_id, "Fatal", &cause).await?;
        // A run that never recorded itself still holds the lease: let it go.
        self.deps.runs.release_lease(flow, &lease.run_id).await?;
        Ok(Some(lease.run_id))
    }
}

/// This host's name.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The lease holder this process writes: `local:<host>:<pid>`.
pub fn local_holder() -> String {
    format!("local:{}:{}", host_name(), std::process::id())
}

/// Whether a process is alive (signal 0: checks without sending anything).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The pid of a `local:<host>:<pid>` holder on this host whose process is gone.
pub fn dead_local_holder(holder: &str) -> Option<u32> {
    let rest = holder.strip_prefix("local:")?;
    let (host, pid) = rest.rsplit_once(':')?;
    let pid: u32 = pid.parse().ok()?;
    (host == host_name() && !process_alive(pid)).then_some(pid)
}

/// The pid of a `local:<host>:<pid>` holder on this host whose process is alive.
pub fn live_local_holder(holder: &str) -> Option<u32> {
    let rest = holder.strip_prefix("local:")?;
    let (host, pid) = rest.rsplit_once(':')?;
    let pid: u32 = pid.parse().ok()?;
    (host == host_name() && process_alive(pid)).then_some(pid)
}

/// Where the embedded engine keeps its state: `$FERRY_HOME`, default `.ferry/`.
pub fn ferry_home() -> PathBuf {
    std::env::var_os("FERRY_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".ferry"))
}

/// Deps for the embedded engine: SQLite, staging under `home`, local destinations relative to
/// `base` (the current directory), secrets file, event log. `s3` resolves `s3:` destinations.
pub fn embedded_deps(
    home: &Path,
    base: &Path,
    s3: Option<Arc<dyn DestinationResolver>>,
) -> Result<Deps, crate::error::StoreError> {
    let store = Arc::new(SqliteStore::open(&home.join("ferry.db"))?);
    Ok(Deps {
        flows: store.clone(),
        runs: store,
        staging: Arc::new(LocalDir::new(home.to_path_buf())),
        destinations: Arc::new(LocalResolver {
            base: base.to_path_buf(),
            s3,
        }),
        secrets: Arc::new(SecretsFile::new(home.join("secrets.json"))),
        events: Arc::new(EventLog::new(home.join("events.jsonl"))),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(crate::ports::NoMetrics),
        catalog: Arc::new(crate::adapters::catalog_file::CatalogFile::new(
            home.join("catalog"),
        )),
        settings: Settings {
            lease_holder: Some(local_holder()),
            one_process: true,
            hand_off: crate::steps::hand_off::HandOff::from_env()
                .map_err(crate::error::StoreError::Invalid)?,
            ..Settings::default()
        },
    })
}
