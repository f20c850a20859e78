//! The fault campaign: ferry's exactly-once promise, attacked at every side effect.
//!
//! A seeded schedule runs a flow several times on the embedded engine (the real
//! flow-run.asl.json, its Retry/Catch, the real steps) over ports that fail on purpose. Inside
//! every step invocation, each call to a port (staging and destination objects, the run store,
//! the event sink) may be hit by:
//! - a **crash before** it (the call never happens) or **after** it (it happened): the
//!   invocation dies there — nothing after it happens — and the state machine sees
//!   `Runtime.ExitError`, as from a Lambda whose process died;
//! - a **lost response**: the write happened, the caller sees a timeout (a retryable error);
//! - a **transient failure** of a read (5xx);
//!
//! and, per invocation, a **duplicate delivery** (the step runs twice). The source is throttled
//! and fails with 5xx (the mock servers' faults), and a **second trigger** races the first run.
//! Between runs the clock moves on; after the faulty runs a last run without faults settles.
//!
//! Then the campaign checks: every source record of every committed window appears in
//! committed output exactly once, and the watermark never passed a record that is not there;
//! no committed object was ever deleted; no object exists outside a committed manifest, and no
//! manifest of an uncommitted run; no run is left InProgress; the lease is free.

use crate::saas::salesforce::{SalesforceMock, SfConfig, SfFault};
use crate::saas::zendesk::{ZendeskMock, ZendeskMockConfig};
use crate::{base_time, Fault, Mock, MockConfig};
use async_trait::async_trait;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use ferry::adapters::memory::MemorySecrets;
use ferry::error::StoreError;
use ferry::flow::{Flow, Location};
use ferry::local::asl::{NoopObserver, TaskFailure, TaskInvoker};
use ferry::local::{embedded_deps, Engine, StepInvoker};
use ferry::model::{
    ChunkResult, CommittedSlice, FlowState, Manifest, RunRecord, RunStatus, SliceLedger,
};
use ferry::ports::{
    BlobStore, DestinationResolver, Event, EventSink, FlowStatus, FlowStore, LeaseClaim,
    ManualClock, PutOptions, RunStore, Secret, SecretStore, StateCommit, StoredFlow,
};
use ferry::steps::start_run::RunRequest;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    CrashBefore,
    CrashAfter,
    LostResponse,
    TransientRead,
    DuplicateDelivery,
    SourceThrottle,
    SourceError,
    RacingTrigger,
    /// One slice's reads fail for a whole run (a 400, not retried) while the others commit on
    /// their own: the run fails with a gap in its committed slices, and the next run resumes.
    SliceFails,
}

/// Where a crash happened (for reports).
#[derive(Debug, Clone)]
struct Crash {
    op: String,
}

/// One step invocation (a Lambda invocation, deployed): dies at its first crash.
#[derive(Default)]
pub struct Invocation {
    crashed: Mutex<Option<Crash>>,
}

tokio::task_local! {
    static INVOCATION: Arc<Invocation>;
}

/// Side effects in the order they happened.
#[derive(Debug, Clone)]
enum Effect {
    Deleted {
        seq: u64,
        key: String,
    },
    Committed {
        seq: u64,
        run_id: String,
    },
    /// A slice committed on its own (`source.slice.commit: slice`).
    SliceCommitted {
        seq: u64,
        run_id: String,
        index: u32,
    },
}

/// The seeded fault scheduler shared by the faulty ports.
pub struct Plan {
    rng: Mutex<StdRng>,
    /// Probability of a fault at one port call.
    p: f64,
    enabled: AtomicBool,
    counts: Mutex<BTreeMap<FaultKind, u64>>,
    effects: Mutex<Vec<Effect>>,
    seq: AtomicU64,
}

impl Plan {
    pub fn new(seed: u64, p: f64) -> Arc<Plan> {
        Arc::new(Plan {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            p,
            enabled: AtomicBool::new(true),
            counts: Mutex::new(BTreeMap::new()),
            effects: Mutex::new(vec![]),
            seq: AtomicU64::new(0),
        })
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }

    fn count(&self, k: FaultKind) {
        *self.counts.lock().unwrap().entry(k).or_default() += 1;
    }

    fn roll(&self, p: f64) -> bool {
        self.enabled.load(Ordering::SeqCst) && self.rng.lock().unwrap().random_bool(p)
    }

    fn pick<T: Copy>(&self, options: &[T]) -> T {
        let i = self.rng.lock().unwrap().random_range(0..options.len());
        options[i]
    }

    fn effect(&self, e: impl FnOnce(u64) -> Effect) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        self.effects.lock().unwrap().push(e(seq));
    }

    pub fn counts(&self) -> BTreeMap<FaultKind, u64> {
        self.counts.lock().unwrap().clone()
    }
}

fn crashed_error(op: &str) -> StoreError {
    StoreError::Invalid(format!("the process crashed ({op})"))
}

/// Run one port call under the plan: crashes, lost responses and transient failures, only
/// inside a step invocation.
async fn guarded<T, F>(plan: &Plan, op: &str, write: bool, f: F) -> Result<T, StoreError>
where
    F: std::future::Future<Output = Result<T, StoreError>>,
{
    let Ok(inv) = INVOCATION.try_with(|i| i.clone()) else {
        return f.await;
    };
    if inv.crashed.lock().unwrap().is_some() {
        return Err(crashed_error(op));
    }
    if plan.roll(plan.p) {
        let kind = if write {
            plan.pick(&[
                FaultKind::CrashBefore,
                FaultKind::CrashAfter,
                FaultKind::LostResponse,
            ])
        } else {
            plan.pick(&[FaultKind::CrashBefore, FaultKind::TransientRead])
        };
        plan.count(kind);
        if tracing_faults() {
            eprintln!("fault: {kind:?} at {op}");
        }
        match kind {
            FaultKind::CrashBefore => {
                *inv.crashed.lock().unwrap() = Some(Crash {
                    op: format!("before {op}"),
                });
                return Err(crashed_error(op));
            }
            FaultKind::TransientRead => {
                return Err(StoreError::backend(
                    op.to_string(),
                    std::io::Error::other("503 Service Unavailable (injected)"),
                ));
            }
            FaultKind::CrashAfter => {
                let r = f.await;
                *inv.crashed.lock().unwrap() = Some(Crash {
                    op: format!("after {op}"),
                });
                return r.and(Err(crashed_error(op)));
            }
            FaultKind::LostResponse => {
                let r = f.await;
                return r.and(Err(StoreError::backend(
                    op.to_string(),
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "response lost (injected): the call may have happened",
                    ),
                )));
            }
            _ => {}
        }
    }
    f.await
}

/// `FERRY_FAULT_TRACE=1`: print every fault as it is injected and, for a schedule that broke
/// an invariant, its runs (for reproducing one seed: `FERRY_FAULT_SEED=N FERRY_FAULT_SCHEDULES=1`).
fn tracing_faults() -> bool {
    std::env::var("FERRY_FAULT_TRACE").is_ok_and(|v| v == "1")
}

/// Objects (staging, destinations) that fail on plan.
pub struct FaultyBlobs {
    pub inner: Arc<dyn BlobStore>,
    pub plan: Arc<Plan>,
    pub label: &'static str,
}

#[async_trait]
impl BlobStore for FaultyBlobs {
    async fn put(&self, key: &str, body: Vec<u8>, opts: &PutOptions) -> Result<(), StoreError> {
        guarded(
            &self.plan,
            &format!("{} put {key}", self.label),
            true,
            self.inner.put(key, body, opts),
        )
        .await
    }
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        guarded(
            &self.plan,
            &format!("{} get {key}", self.label),
            false,
            self.inner.get(key),
        )
        .await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        guarded(
            &self.plan,
            &format!("{} list {prefix}", self.label),
            false,
            self.inner.list(prefix),
        )
        .await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let plan = self.plan.clone();
        let (inner, k) = (self.inner.clone(), key.to_string());
        guarded(
            &self.plan,
            &format!("{} delete {key}", self.label),
            true,
            async move {
                let r = inner.delete(&k).await;
                if r.is_ok() {
                    plan.effect(|seq| Effect::Deleted {
                        seq,
                        key: k.clone(),
                    });
                }
                r
            },
        )
        .await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        ferry::ports::require_folder(prefix)?;
        for k in self.list(prefix).await? {
            self.delete(&k).await?;
        }
        Ok(())
    }
    fn uri(&self, key: &str) -> String {
        self.inner.uri(key)
    }
}

struct FaultyResolver {
    inner: Arc<dyn DestinationResolver>,
    plan: Arc<Plan>,
}

#[async_trait]
impl DestinationResolver for FaultyResolver {
    async fn resolve(&self, location: &Location) -> Result<Arc<dyn BlobStore>, StoreError> {
        let inner = self.inner.resolve(location).await?;
        Ok(Arc::new(FaultyBlobs {
            inner,
            plan: self.plan.clone(),
            label: "dest",
        }))
    }
}

/// The run store and flow store, failing on plan; commits are recorded as effects.
struct FaultyRuns {
    runs: Arc<dyn RunStore>,
    flows: Arc<dyn FlowStore>,
    plan: Arc<Plan>,
}

#[async_trait]
impl RunStore for FaultyRuns {
    async fn get_state(&self, flow: &str) -> Result<FlowState, StoreError> {
        guarded(&self.plan, "get_state", false, self.runs.get_state(flow)).await
    }
    async fn acquire_lease(
        &self,
        flow: &str,
        claim: &LeaseClaim,
        now: DateTime<Utc>,
    ) -> Result<FlowState, StoreError> {
        guarded(
            &self.plan,
            "acquire_lease",
            true,
            self.runs.acquire_lease(flow, claim, now),
        )
        .await
    }
    async fn renew_lease(
        &self,
        flow: &str,
        run_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        guarded(
            &self.plan,
            "renew_lease",
            true,
            self.runs.renew_lease(flow, run_id, expires_at),
        )
        .await
    }
    async fn commit_success(
        &self,
        flow: &str,
        run_id: &str,
        commit: &StateCommit,
    ) -> Result<FlowState, StoreError> {
        let plan = self.plan.clone();
        let runs = self.runs.clone();
        let (f, r) = (flow.to_string(), run_id.to_string());
        guarded(&self.plan, "commit_success", true, async move {
            let already = runs.is_committed(&r).await?;
            let out = runs.commit_success(&f, &r, commit).await;
            if out.is_ok() && !already {
                plan.effect(|seq| Effect::Committed {
                    seq,
                    run_id: r.clone(),
                });
            }
            out
        })
        .await
    }
    async fn is_committed(&self, run_id: &str) -> Result<bool, StoreError> {
        guarded(
            &self.plan,
            "is_committed",
            false,
            self.runs.is_committed(run_id),
        )
        .await
    }
    async fn release_lease(&self, flow: &str, run_id: &str) -> Result<bool, StoreError> {
        guarded(
            &self.plan,
            "release_lease",
            true,
            self.runs.release_lease(flow, run_id),
        )
        .await
    }
    async fn record_failure(&self, flow: &str, run_id: &str) -> Result<u32, StoreError> {
        guarded(
            &self.plan,
            "record_failure",
            true,
            self.runs.record_failure(flow, run_id),
        )
        .await
    }
    async fn delete_state(&self, flow: &str) -> Result<(), StoreError> {
        self.runs.delete_state(flow).await
    }
    async fn slice_ledger(&self, flow: &str) -> Result<SliceLedger, StoreError> {
        guarded(
            &self.plan,
            "slice_ledger",
            false,
            self.runs.slice_ledger(flow),
        )
        .await
    }
    async fn put_slice_ledger(
        &self,
        flow: &str,
        run_id: &str,
        rev: u64,
        slices: &[CommittedSlice],
        watermark: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let plan = self.plan.clone();
        let runs = self.runs.clone();
        let (f, r) = (flow.to_string(), run_id.to_string());
        guarded(&self.plan, "put_slice_ledger", true, async move {
            let before = runs.slice_ledger(&f).await?;
            let out = runs.put_slice_ledger(&f, &r, rev, slices, watermark).await;
            if matches!(out, Ok(true)) {
                for c in slices.iter().filter(|c| !before.slices.contains(c)) {
                    plan.effect(|seq| Effect::SliceCommitted {
                        seq,
                        run_id: c.run_id.clone(),
                        index: c.index,
                    });
                }
            }
            out
        })
        .await
    }
    async fn put_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        guarded(&self.plan, "put_run", true, self.runs.put_run(run)).await
    }
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        guarded(&self.plan, "get_run", false, self.runs.get_run(run_id)).await
    }
    async fn list_runs(&self, flow: &str, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        self.runs.list_runs(flow, limit).await
    }
    async fn put_chunk_result(&self, result: &ChunkResult) -> Result<(), StoreError> {
        guarded(
            &self.plan,
            "put_chunk_result",
            true,
            self.runs.put_chunk_result(result),
        )
        .await
    }
    async fn chunk_results(&self, run_id: &str) -> Result<Vec<ChunkResult>, StoreError> {
        guarded(
            &self.plan,
            "chunk_results",
            false,
            self.runs.chunk_results(run_id),
        )
        .await
    }
}

#[async_trait]
impl FlowStore for FaultyRuns {
    async fn put_flow(&self, flow: &Flow, now: DateTime<Utc>) -> Result<StoredFlow, StoreError> {
        self.flows.put_flow(flow, now).await
    }
    async fn get_flow(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredFlow>, StoreError> {
        guarded(
            &self.plan,
            "get_flow",
            false,
            self.flows.get_flow(name, version),
        )
        .await
    }
    async fn list_flows(&self) -> Result<Vec<StoredFlow>, StoreError> {
        self.flows.list_flows().await
    }
    async fn delete_flow(&self, name: &str) -> Result<bool, StoreError> {
        self.flows.delete_flow(name).await
    }
    async fn set_status(&self, name: &str, status: FlowStatus) -> Result<(), StoreError> {
        guarded(
            &self.plan,
            "set_status",
            true,
            self.flows.set_status(name, status),
        )
        .await
    }
}

struct FaultyEvents {
    inner: Arc<dyn EventSink>,
    plan: Arc<Plan>,
}

#[async_trait]
impl EventSink for FaultyEvents {
    async fn publish(&self, event: &Event) -> Result<(), StoreError> {
        guarded(&self.plan, "publish", true, self.inner.publish(event)).await
    }
}

/// Calls the steps inside an [`Invocation`]; a crash anywhere in it is the process dying
/// (`Runtime.ExitError`); sometimes a step is delivered twice.
struct FaultyInvoker {
    inner: StepInvoker,
    plan: Arc<Plan>,
}

#[async_trait]
impl TaskInvoker for FaultyInvoker {
    async fn invoke(&self, resource: &str, input: Value) -> Result<Value, TaskFailure> {
        let once = || async {
            let inv = Arc::new(Invocation::default());
            let r = INVOCATION
                .scope(inv.clone(), self.inner.invoke(resource, input.clone()))
                .await;
            let crashed = inv.crashed.lock().unwrap().take();
            match crashed {
                Some(c) => Err(TaskFailure::new(
                    "Runtime.ExitError",
                    format!("{{\"errorType\":\"Runtime.ExitError\",\"errorMessage\":\"the process crashed {}\"}}", c.op),
                )),
                None => r,
            }
        };
        if self.plan.roll(self.plan.p * 4.0) {
            self.plan.count(FaultKind::DuplicateDelivery);
            let _ = once().await;
        }
        once().await
    }

    /// The Map's ItemReader is Step Functions' own read, not a step: no faults.
    async fn read_items(
        &self,
        resource: &str,
        parameters: Value,
        config: &Value,
    ) -> Result<Value, TaskFailure> {
        self.inner.read_items(resource, parameters, config).await
    }
}

/// The sources the campaign runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SourceKind {
    Sample,
    Rest,
    Zendesk,
    Salesforce,
}

pub const SOURCES: [SourceKind; 4] = [
    SourceKind::Sample,
    SourceKind::Rest,
    SourceKind::Zendesk,
    SourceKind::Salesforce,
];

enum Server {
    None,
    Rest(Mock),
    Zendesk(ZendeskMock),
    Salesforce(SalesforceMock),
}

const SAMPLE_RECORDS: u64 = 600;
const MOCK_RECORDS: u64 = 240;
const FAST_HTTP: &str =
    r#"{"timeout_ms": 3000, "max_retries": 4, "backoff_initial_ms": 2, "backoff_max_ms": 10}"#;

struct Source {
    kind: SourceKind,
    server: Server,
}

impl Source {
    async fn start(kind: SourceKind) -> Source {
        let server = match kind {
            SourceKind::Sample => Server::None,
            SourceKind::Rest => Server::Rest(
                Mock::start(MockConfig {
                    tickets: MOCK_RECORDS,
                    ..Default::default()
                })
                .await,
            ),
            SourceKind::Zendesk => Server::Zendesk(
                ZendeskMock::start(ZendeskMockConfig {
                    tickets: MOCK_RECORDS,
                    ..Default::default()
                })
                .await,
            ),
            SourceKind::Salesforce => Server::Salesforce(
                SalesforceMock::start(SfConfig {
                    accounts: MOCK_RECORDS,
                    ..Default::default()
                })
                .await,
            ),
        };
        Source { kind, server }
    }

    /// The sample's data set is fixed in time (`as_of`); the mocks' records are updated at
    /// `base_time() + id minutes`.
    fn sample_as_of() -> DateTime<Utc> {
        base_time() + ChronoDuration::days(1)
    }

    /// (first_execution_from, clock at the first run, clock step between runs).
    fn timeline(&self) -> (DateTime<Utc>, DateTime<Utc>, ChronoDuration) {
        match self.kind {
            SourceKind::Sample => {
                let a = Self::sample_as_of();
                (
                    a - ChronoDuration::days(100),
                    a - ChronoDuration::days(40),
                    ChronoDuration::days(12),
                )
            }
            _ => (
                base_time(),
                base_time() + ChronoDuration::minutes(90),
                ChronoDuration::minutes(45),
            ),
        }
    }

    async fn secrets(&self, store: &MemorySecrets) {
        match &self.server {
            Server::Zendesk(_) => store
                .put_secret("zd", &Secret::new(json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "agent@acme.test/token", "password": "zd-token-1"})))
                .await
                .unwrap(),
            Server::Salesforce(m) => store.put_secret("sfdc", &Secret::new(m.secret())).await.unwrap(),
            _ => {}
        }
    }

    /// The flow's `source` section; `sliced`: three slices, two at once, each committing on
    /// its own (`source.slice.commit: slice`), for the sources that read time slices.
    fn source_yaml(&self, chunk: u64, sliced: bool) -> String {
        let (from, _, _) = self.timeline();
        let slices = if sliced {
            "  slice: { count: 3, commit: slice }\n  parallelism: 2\n"
        } else {
            ""
        };
        let inc = |field: &str| {
            format!(
                "  incremental: {{ field: {field}, first_execution_from: \"{}\" }}\n",
                from.to_rfc3339()
            )
        };
        match &self.server {
            Server::None => format!(
                "  connector: sample\n  entity: accounts\n  properties: {{ records: {SAMPLE_RECORDS}, page_size: 25, as_of: \"{}\" }}\n{}  chunk: {{ records: {chunk} }}\n{slices}",
                Self::sample_as_of().to_rfc3339(),
                inc("updated_at")
            ),
            Server::Rest(m) => {
                // A sliced run sends both ends of each slice's window.
                let set = if sliced {
                    json!({"updated_since": "{start}", "updated_before": "{end}"})
                } else {
                    json!({"q": "updated_at>={start}"})
                };
                let props = json!({
                    "base_url": m.url(),
                    "http": serde_json::from_str::<Value>(FAST_HTTP).unwrap(),
                    "endpoints": {"tickets": {"path": "/cursor/tickets", "records": "$.data[*]", "params": {"limit": "20"},
                        "incremental": {"set": set},
                        "paginator": {"type": "cursor", "token_path": "$.meta.next_cursor", "param": "cursor", "has_more_path": "$.meta.has_more"}}}
                });
                format!("  connector: rest\n  entity: tickets\n  properties: {props}\n{}  chunk: {{ records: {chunk} }}\n{slices}", inc("updated_at"))
            }
            Server::Zendesk(m) => {
                let props = json!({"base_url": m.url(), "exclude_deleted": true, "http": serde_json::from_str::<Value>(FAST_HTTP).unwrap()});
                format!("  connector: zendesk\n  profile: zd\n  entity: tickets\n  properties: {props}\n{}  chunk: {{ records: {chunk} }}\n", inc("updated_at"))
            }
            Server::Salesforce(_) => {
                let props = json!({"api": "rest", "bulk_poll_ms": 10, "http": serde_json::from_str::<Value>(FAST_HTTP).unwrap()});
                format!(
                    "  connector: salesforce\n  profile: sfdc\n  entity: Account\n  properties: {props}\n{}  chunk: {{ records: {chunk}, page_size: 200 }}\n",
                    inc("SystemModstamp")
                )
            }
        }
    }

    /// The id of an output record.
    fn id_of(&self, r: &Value) -> String {
        match self.kind {
            SourceKind::Salesforce => r["Id"].as_str().unwrap_or_default().to_string(),
            _ => match &r["id"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        }
    }

    /// Ids of the records updated in `(from, until]`.
    fn expected(&self, until: DateTime<Utc>) -> BTreeSet<String> {
        let (from, _, _) = self.timeline();
        match &self.server {
            Server::None => {
                // docs/architecture.md: record j of N is updated at as_of - 90 days + (j+1) × 90 days / N.
                let span = 90 * 86_400 * 1_000_000i64;
                let step = span / SAMPLE_RECORDS as i64;
                let base = Self::sample_as_of() - ChronoDuration::days(90);
                (0..SAMPLE_RECORDS)
                    .filter(|j| {
                        let t = base + ChronoDuration::microseconds(step * (*j as i64 + 1));
                        t > from && t <= until
                    })
                    .map(|j| format!("ACC-{:08}", j + 1))
                    .collect()
            }
            Server::Rest(m) => m
                .ids_in(Some(from), Some(until))
                .into_iter()
                .map(|i| i.to_string())
                .collect(),
            Server::Zendesk(m) => m
                .ticket_ids(Some(from), Some(until), false)
                .into_iter()
                .map(|i| i.to_string())
                .collect(),
            Server::Salesforce(m) => m.ids_in(Some(from), Some(until), false),
        }
    }

    /// Throttle the source or make it fail for a while (its own retries and the state
    /// machine's deal with it).
    fn fault(&self, plan: &Plan) {
        let throttle = plan.pick(&[true, false]);
        plan.count(if throttle {
            FaultKind::SourceThrottle
        } else {
            FaultKind::SourceError
        });
        match &self.server {
            Server::None => {}
            Server::Rest(m) => m.push_faults(if throttle {
                vec![Fault::throttle("0"), Fault::throttle("0")]
            } else {
                vec![Fault::status(503), Fault::status(500)]
            }),
            Server::Zendesk(m) => m.push_faults(if throttle {
                vec![Fault::throttle("0"), Fault::throttle("0")]
            } else {
                vec![Fault::status(503), Fault::status(500)]
            }),
            Server::Salesforce(m) => m.push_faults(if throttle {
                vec![SfFault::RequestLimit]
            } else {
                vec![
                    SfFault::Status {
                        status: 503,
                        retry_after: None,
                    },
                    SfFault::Status {
                        status: 500,
                        retry_after: None,
                    },
                ]
            }),
        }
    }
}

/// What one schedule did and found.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub faults: BTreeMap<FaultKind, u64>,
    pub runs_committed: u64,
    pub runs_failed_cleanly: u64,
    pub records_lost: u64,
    pub records_duplicated: u64,
    pub violations: Vec<String>,
    /// The flow ran sliced, each slice committing on its own.
    pub sliced: bool,
    /// Slices that committed on their own.
    pub slices_committed: u64,
}

/// Every file under `dir`, relative, with `/` separators.
fn files_under(root: &std::path::Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

/// Run one seeded schedule: `runs` runs with faults, then one without, then the checks.
pub async fn schedule(seed: u64, kind: SourceKind, runs: usize, p: f64) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED);
    let source = Source::start(kind).await;
    let home = tempfile::tempdir().expect("home");
    let base = tempfile::tempdir().expect("base");
    let plan = Plan::new(seed, p);
    let mut deps = embedded_deps(home.path(), base.path(), None).expect("embedded deps");
    let clean = deps.clone();
    let (_, first_clock, step) = source.timeline();
    let clock = ManualClock::new(first_clock);
    deps.clock = Arc::new(clock.clone());
    let secrets = Arc::new(MemorySecrets::default());
    source.secrets(&secrets).await;
    deps.secrets = secrets.clone();
    let runs_store = Arc::new(FaultyRuns {
        runs: clean.runs.clone(),
        flows: clean.flows.clone(),
        plan: plan.clone(),
    });
    deps.runs = runs_store.clone();
    deps.flows = runs_store;
    deps.staging = Arc::new(FaultyBlobs {
        inner: clean.staging.clone(),
        plan: plan.clone(),
        label: "staging",
    });
    deps.destinations = Arc::new(FaultyResolver {
        inner: clean.destinations.clone(),
        plan: plan.clone(),
    });
    deps.events = Arc::new(FaultyEvents {
        inner: clean.events.clone(),
        plan: plan.clone(),
    });
    // Retry waits compressed 10,000 times: the number and order of retries are AWS's.
    let wrap_plan = plan.clone();
    let engine = Engine::new(deps.clone())
        .expect("engine")
        .with_time_scale(0.0001)
        .with_invoker(Arc::new(move |inner| {
            Box::new(FaultyInvoker {
                inner,
                plan: wrap_plan.clone(),
            })
        }));
    let engine = Arc::new(engine);

    // The flow: chunk sizes and output layouts vary with the seed.
    let chunk = rng.random_range(25..=90u64);
    let layout = match rng.random_range(0..4) {
        0 => "  layout: { hierarchy: [execution_id] }\n".to_string(),
        1 => "  layout: { hierarchy: [], date: none }\n  aggregation: none\n".to_string(),
        2 => "  layout: { prefix_type: filename, hierarchy: [schema_version] }\n".to_string(),
        _ => "  layout: { hierarchy: [], date: hour }\n  file_size_mb: 1\n".to_string(),
    };
    // Sources that read time slices run sliced, committing per slice, in a share of schedules.
    let sliced = matches!(kind, SourceKind::Sample | SourceKind::Rest) && rng.random_bool(0.4);
    let name = "campaign";
    let yaml = format!(
        "name: {name}\nsource:\n{}destination:\n  local: out\n  format: jsonl\n  compression: none\n{layout}tasks:\n  - map_all: {{}}\ntrigger: {{ on_demand: {{}} }}\n",
        source.source_yaml(chunk, sliced)
    );
    let flow = Flow::parse(&yaml, "campaign.yaml")
        .unwrap_or_else(|e| panic!("campaign flow: {e}\n{yaml}"));
    clean
        .flows
        .put_flow(&flow, first_clock)
        .await
        .expect("register");
    let request = || RunRequest {
        flow: name.into(),
        trigger: None,
        mode: None,
        window: None,
    };

    let mut all_runs: Vec<String> = vec![];
    for i in 0..=runs {
        let faulty = i < runs;
        plan.set_enabled(faulty);
        if faulty && rng.random_bool(0.35) {
            source.fault(&plan);
        }
        if let (true, Server::Rest(m)) = (sliced, &source.server) {
            // The first run's first slice (its window starts at first_execution_from) fails
            // after the other slices had time to commit.
            let failing = faulty && i == 0 && rng.random_bool(0.6);
            if failing {
                plan.count(FaultKind::SliceFails);
            }
            let from = source.timeline().0.format("%Y-%m-%dT%H:%M:%S").to_string();
            let text = format!("updated_since={from}");
            m.fail_queries(failing.then_some((
                text.as_str(),
                std::time::Duration::from_millis(1500),
                400,
            )));
        }
        if faulty && i == 0 && rng.random_bool(0.3) {
            // A second trigger races the first.
            plan.count(FaultKind::RacingTrigger);
            let (a, b) = (engine.clone(), engine.clone());
            let (ra, rb) = tokio::join!(
                async move { a.run(request(), &NoopObserver).await },
                async move { b.run(request(), &NoopObserver).await }
            );
            all_runs.push(ra.run_id);
            all_runs.push(rb.run_id);
        } else {
            let out = engine.run(request(), &NoopObserver).await;
            all_runs.push(out.run_id);
        }
        clock.advance(step);
    }
    plan.set_enabled(false);

    // The checks, over the real (unfaulted) stores and files.
    let mut o = Outcome {
        faults: plan.counts(),
        sliced,
        ..Default::default()
    };
    let state = clean.runs.get_state(name).await.expect("state");
    if let Some(l) = &state.lease {
        o.violations
            .push(format!("the lease is still held by {}", l.run_id));
    }
    let mut committed_runs = BTreeSet::new();
    for r in clean.runs.list_runs(name, 1000).await.expect("runs") {
        if tracing_faults() {
            eprintln!(
                "run {} {:?} error {:?} written {} warnings {:?}",
                r.run_id, r.status, r.error, r.records_written, r.warnings
            );
        }
        match r.status {
            RunStatus::Successful => {
                committed_runs.insert(r.run_id.clone());
                o.runs_committed += 1;
            }
            RunStatus::InProgress | RunStatus::CancelStarted => o
                .violations
                .push(format!("run {} is still {:?}", r.run_id, r.status)),
            _ => o.runs_failed_cleanly += 1,
        }
        if r.status != RunStatus::Successful
            && clean.runs.is_committed(&r.run_id).await.unwrap_or(false)
        {
            o.violations.push(format!(
                "run {} committed but its record says {:?}",
                r.run_id, r.status
            ));
        }
    }
    let effects = plan.effects.lock().unwrap().clone();
    // When each run, and each slice that committed on its own, committed.
    let commit_seq: BTreeMap<(String, Option<u32>), u64> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Committed { seq, run_id } => Some(((run_id.clone(), None), *seq)),
            Effect::SliceCommitted { seq, run_id, index } => {
                Some(((run_id.clone(), Some(*index)), *seq))
            }
            _ => None,
        })
        .collect();
    o.slices_committed = commit_seq.keys().filter(|(_, s)| s.is_some()).count() as u64;
    let out_dir = base.path().join("out");
    let files = files_under(&out_dir);
    // key -> (run, the slice whose own manifest lists it)
    let mut manifested: BTreeMap<String, (String, Option<u32>)> = BTreeMap::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for f in files.iter().filter(|f| f.contains("/_manifests/")) {
        let m: Manifest = match std::fs::read(out_dir.join(f))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(m) => m,
            None => {
                o.violations.push(format!("manifest {f} is unreadable"));
                continue;
            }
        };
        let committed = match m.slice {
            None => committed_runs.contains(&m.run_id),
            Some(i) => commit_seq.contains_key(&(m.run_id.clone(), Some(i))),
        };
        if !committed {
            o.violations.push(format!(
                "manifest {f} of run {} (slice {:?}) which did not commit",
                m.run_id, m.slice
            ));
            continue;
        }
        for obj in &m.objects {
            manifested.insert(obj.key.clone(), (m.run_id.clone(), m.slice));
            let path = out_dir.join(&obj.key);
            let Ok(text) = std::fs::read_to_string(&path) else {
                o.violations.push(format!(
                    "object {} of committed run {} is gone",
                    obj.key, m.run_id
                ));
                continue;
            };
            let mut n = 0;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                n += 1;
                match serde_json::from_str::<Value>(line) {
                    Ok(v) => *counts.entry(source.id_of(&v)).or_default() += 1,
                    Err(_) => o
                        .violations
                        .push(format!("object {} has a line that is not JSON", obj.key)),
                }
            }
            if n != obj.rows {
                o.violations.push(format!(
                    "object {} has {n} rows, its manifest says {}",
                    obj.key, obj.rows
                ));
            }
        }
    }
    for f in &files {
        if f.contains("/_manifests/") || f.contains("/_rejected/") {
            continue;
        }
        if !manifested.contains_key(f) {
            o.violations
                .push(format!("object {f} is in no committed manifest"));
        }
    }
    // No committed object deleted after its commit.
    for e in &effects {
        if let Effect::Deleted { seq, key } = e {
            if let Some(owner) = manifested.get(key) {
                if commit_seq.get(owner).is_some_and(|c| seq > c) {
                    o.violations.push(format!(
                        "committed object {key} of run {} (slice {:?}) was deleted after the commit",
                        owner.0, owner.1
                    ));
                }
            }
        }
    }
    // Exactly once, and nothing the watermark passed is missing.
    let expected = match state.watermark {
        Some(w) => source.expected(w),
        None => BTreeSet::new(),
    };
    for (id, n) in &counts {
        if *n > 1 {
            o.records_duplicated += n - 1;
            o.violations
                .push(format!("record {id} is in committed output {n} times"));
        }
        if !expected.contains(id) {
            o.violations.push(format!(
                "record {id} is committed but outside the committed windows (watermark {:?})",
                state.watermark
            ));
        }
    }
    for id in &expected {
        if !counts.contains_key(id) {
            o.records_lost += 1;
        }
    }
    if o.records_lost > 0 {
        o.violations.push(format!(
            "{} records the watermark passed are not in committed output",
            o.records_lost
        ));
    }
    if state.watermark.is_none() || o.runs_committed == 0 {
        o.violations.push(format!(
            "nothing committed, even by the run without faults (runs: {all_runs:?})"
        ));
    }
    o
}

/// Figures over many schedules.
#[derive(Debug, Default)]
pub struct Figures {
    pub schedules: u64,
    pub by_source: BTreeMap<String, u64>,
    pub faults: BTreeMap<FaultKind, u64>,
    pub runs_committed: u64,
    pub runs_failed_cleanly: u64,
    pub records_lost: u64,
    pub records_duplicated: u64,
    pub violations: Vec<(u64, String)>,
    /// Schedules whose flow committed per slice, and the slices that committed on their own.
    pub sliced: u64,
    pub slices_committed: u64,
}

impl Figures {
    pub fn add(&mut self, seed: u64, kind: SourceKind, o: Outcome) {
        self.schedules += 1;
        *self
            .by_source
            .entry(format!("{kind:?}").to_lowercase())
            .or_default() += 1;
        for (k, n) in o.faults {
            *self.faults.entry(k).or_default() += n;
        }
        self.runs_committed += o.runs_committed;
        self.runs_failed_cleanly += o.runs_failed_cleanly;
        self.sliced += u64::from(o.sliced);
        self.slices_committed += o.slices_committed;
        self.records_lost += o.records_lost;
        self.records_duplicated += o.records_duplicated;
        self.violations.extend(
            o.violations
                .into_iter()
                .map(|v| (seed, format!("{kind:?}: {v}"))),
        );
    }

    pub fn report(&self) -> String {
        let mut s = format!("schedules run: {}", self.schedules);
        s.push_str(&format!(
            " ({})\n",
            self.by_source
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let total: u64 = self.faults.values().sum();
        s.push_str(&format!("faults injected: {total}\n"));
        for (k, n) in &self.faults {
            s.push_str(&format!("  {k:?}: {n}\n"));
        }
        s.push_str(&format!(
            "schedules committing per slice: {} ({} slices committed on their own)\n",
            self.sliced, self.slices_committed
        ));
        s.push_str(&format!("runs committed: {}\n", self.runs_committed));
        s.push_str(&format!(
            "runs failed cleanly: {}\n",
            self.runs_failed_cleanly
        ));
        s.push_str(&format!("records lost: {}\n", self.records_lost));
        s.push_str(&format!(
            "records duplicated in committed output: {}\n",
            self.records_duplicated
        ));
        s.push_str(&format!(
            "invariant violations: {}\n",
            self.violations.len()
        ));
        for (seed, v) in self.violations.iter().take(30) {
            s.push_str(&format!("  seed {seed}: {v}\n"));
        }
        s
    }
}

/// Run `seeds` schedules, cycling through the sources.
pub async fn run(seeds: std::ops::Range<u64>, runs: usize, p: f64) -> Figures {
    run_seeds(seeds, runs, p).await
}

/// Run the given seeds' schedules, cycling through the sources by seed.
pub async fn run_seeds(seeds: impl IntoIterator<Item = u64>, runs: usize, p: f64) -> Figures {
    let mut f = Figures::default();
    for seed in seeds {
        let kind = SOURCES[(seed % SOURCES.len() as u64) as usize];
        let o = schedule(seed, kind, runs, p).await;
        f.add(seed, kind, o);
    }
    f
}

/// The same attack on the deployed shape (tests/src/stack): the real Lambda binaries, under
/// their roles, run by the independent ASL interpreter. The IAM gate injects the faults into the
/// functions' AWS calls — a crash of the calling function before or after a call (its process is
/// killed: `Runtime.ExitError`), a lost response (the call happened, the function sees a 500
/// and its SDK retries), a transient 503 — and the stack's reaper ends what the Catch could
/// not. The source is the sample connector (a fixed data set: every record is due once).
pub async fn deployed_schedule(
    stack: &crate::stack::Stack,
    seed: u64,
    runs: usize,
    p: f64,
) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xDE9);
    let b = &stack.output_bucket;
    let name = format!("dc{seed}");
    let records = 300u64;
    let as_of = base_time();
    let chunk = rng.random_range(40..=120u64);
    let layout = match rng.random_range(0..3) {
        0 => "  layout: { hierarchy: [execution_id] }\n",
        1 => "  layout: { hierarchy: [], date: none }\n  aggregation: none\n",
        _ => "  layout: { prefix_type: filename, hierarchy: [] }\n",
    };
    let yaml = format!(
        "name: {name}\nsource:\n  connector: sample\n  entity: accounts\n  properties: {{ records: {records}, page_size: 20, as_of: \"{}\" }}\n  incremental: {{ field: updated_at, first_execution_from: \"{}\" }}\n  chunk: {{ records: {chunk} }}\ndestination:\n  s3: {{ bucket: {b}, prefix: dc }}\n  format: jsonl\n  compression: none\n{layout}tasks:\n  - map_all: {{}}\ntrigger: {{ on_demand: {{}} }}\n",
        as_of.to_rfc3339(),
        (as_of - ChronoDuration::days(100)).to_rfc3339(),
    );
    let flow = Flow::parse(&yaml, "deployed.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let deps = stack.deps();
    deps.flows
        .put_flow(&flow, Utc::now())
        .await
        .expect("register");
    let mut o = Outcome::default();
    for i in 0..=runs {
        let faulty = i < runs;
        stack.set_faults(faulty.then_some((seed * 31 + i as u64, p)));
        let e = stack
            .run(&json!({"flow": name, "trigger": "on_demand"}))
            .await;
        // A run the Catch could not end is ended by the reaper (asynchronously): wait for it.
        let run_id = e.arn.rsplit(':').next().unwrap_or_default().to_string();
        for _ in 0..600 {
            match deps.runs.get_run(&run_id).await {
                Ok(Some(r))
                    if matches!(r.status, RunStatus::InProgress | RunStatus::CancelStarted) => {}
                _ => break,
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        for (k, n) in stack.set_faults(None) {
            let kind = match k {
                "crash before" => FaultKind::CrashBefore,
                "crash after" => FaultKind::CrashAfter,
                "lost response" => FaultKind::LostResponse,
                _ => FaultKind::TransientRead,
            };
            *o.faults.entry(kind).or_default() += n;
        }
    }
    // Checks.
    let state = deps.runs.get_state(&name).await.expect("state");
    if let Some(l) = &state.lease {
        o.violations
            .push(format!("the lease is still held by {}", l.run_id));
    }
    let mut committed = BTreeSet::new();
    for r in deps.runs.list_runs(&name, 100).await.expect("runs") {
        match r.status {
            RunStatus::Successful => {
                committed.insert(r.run_id.clone());
                o.runs_committed += 1;
            }
            RunStatus::InProgress | RunStatus::CancelStarted => o
                .violations
                .push(format!("run {} is still {:?}", r.run_id, r.status)),
            _ => o.runs_failed_cleanly += 1,
        }
    }
    let keys = stack.keys(b, &format!("dc/{name}/")).await;
    let mut manifested = BTreeSet::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for k in keys.iter().filter(|k| k.contains("/_manifests/")) {
        let m: Manifest = match serde_json::from_slice(&stack.get(b, k).await) {
            Ok(m) => m,
            Err(e) => {
                o.violations.push(format!("manifest {k}: {e}"));
                continue;
            }
        };
        if !committed.contains(&m.run_id) {
            o.violations.push(format!(
                "manifest {k} of run {} which did not commit",
                m.run_id
            ));
            continue;
        }
        for obj in &m.objects {
            manifested.insert(obj.key.clone());
            if !keys.contains(&obj.key) {
                o.violations.push(format!(
                    "object {} of committed run {} is gone",
                    obj.key, m.run_id
                ));
                continue;
            }
            let text = String::from_utf8(stack.get(b, &obj.key).await).unwrap_or_default();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    *counts
                        .entry(v["id"].as_str().unwrap_or_default().to_string())
                        .or_default() += 1;
                }
            }
        }
    }
    for k in keys.iter().filter(|k| !k.contains("/_manifests/")) {
        if !manifested.contains(k) {
            o.violations
                .push(format!("object {k} is in no committed manifest"));
        }
    }
    let expected: BTreeSet<String> = if state.watermark.is_some() {
        (1..=records).map(|j| format!("ACC-{j:08}")).collect()
    } else {
        BTreeSet::new()
    };
    for (id, n) in &counts {
        if *n > 1 {
            o.records_duplicated += n - 1;
            o.violations
                .push(format!("record {id} is in committed output {n} times"));
        }
    }
    o.records_lost = expected
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .count() as u64;
    if o.records_lost > 0 {
        o.violations.push(format!(
            "{} records the watermark passed are not in committed output",
            o.records_lost
        ));
    }
    if o.runs_committed == 0 {
        o.violations
            .push("nothing committed, even by the run without faults".into());
    }
    o
}
