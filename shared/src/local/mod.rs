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
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The production state machine, compiled in.
pub const FLOW_RUN_ASL: &str = include_str!("../../../statemachines/flow-run.asl.json");

/// Task resources of the embedded engine, one per step; template.yaml substitutes Lambda ARNs
/// for the same placeholders.
pub const RESOURCES: [(&str, &str); 5] = [
    ("StartRunFunctionArn", "ferry:local:start-run"),
    ("FetchPageFunctionArn", "ferry:local:fetch-page"),
    ("TransformBatchFunctionArn", "ferry:local:transform-batch"),
    ("WriteS3FunctionArn", "ferry:local:write-s3"),
    ("FinalizeFunctionArn", "ferry:local:finalize"),
];

pub fn local_substitutions() -> HashMap<String, String> {
    RESOURCES
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Calls the step a Task's resource names, in process.
pub struct StepInvoker {
    pub deps: Deps,
}

async fn call<I, O, F, Fut>(
    deps: &Deps,
    input: serde_json::Value,
    f: F,
) -> Result<serde_json::Value, TaskFailure>
where
    I: DeserializeOwned,
    O: Serialize,
    F: FnOnce(Deps, I) -> Fut,
    Fut: std::future::Future<Output = Result<O, StepError>>,
{
    let input: I = serde_json::from_value(input).map_err(|e| {
        TaskFailure::new(
            "Fatal",
            format!("the step's input does not have the expected shape: {e}"),
        )
    })?;
    match f(deps.clone(), input).await {
        Ok(out) => serde_json::to_value(out).map_err(|e| TaskFailure::new("Fatal", e.to_string())),
        Err(e) => Err(TaskFailure::new(e.kind.as_str(), e.message)),
    }
}

#[async_trait]
impl TaskInvoker for StepInvoker {
    async fn invoke(
        &self,
        resource: &str,
        input: serde_json::Value,
    ) -> Result<serde_json::Value, TaskFailure> {
        let d = &self.deps;
        match resource.rsplit(':').next().unwrap_or_default() {
            "start-run" => {
                call(d, input, |d, i| async move {
                    steps::start_run::handle(&d, i).await
                })
                .await
            }
            "fetch-page" => {
                call(d, input, |d, i| async move {
                    steps::fetch_page::handle(&d, i).await
                })
                .await
            }
            "transform-batch" => {
                call(d, input, |d, i| async move {
                    steps::transform_batch::handle(&d, i).await
                })
                .await
            }
            "write-s3" => {
                call(d, input, |d, i| async move {
                    steps::write_s3::handle(&d, i).await
                })
                .await
            }
            "finalize" => {
                call(d, input, |d, i| async move {
                    steps::finalize::handle(&d, i).await
                })
                .await
            }
            other => Err(TaskFailure::new(
                "States.TaskFailed",
                format!("the embedded engine has no step for resource '{resource}' ({other})"),
            )),
        }
    }
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
}

impl Engine {
    pub fn new(deps: Deps) -> Result<Self, asl::AslError> {
        Self::with_definition(deps, FLOW_RUN_ASL)
    }

    pub fn with_definition(deps: Deps, definition: &str) -> Result<Self, asl::AslError> {
        Ok(Engine {
            deps,
            machine: StateMachine::parse(definition, &local_substitutions())?,
        })
    }

    /// Run a registered flow to the end.
    pub async fn run(&self, request: RunRequest, observer: &dyn Observer) -> RunOutcome {
        let run_id = format!(
            "{}-{}",
            self.deps.clock.now().format("%Y%m%dT%H%M%SZ"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let ctx = ExecutionContext {
            execution_id: format!("local:{}:{run_id}", request.flow),
            execution_name: run_id.clone(),
            state_machine_id: "ferry:local:flow-run".into(),
            start_time: self.deps.clock.now(),
        };
        let input = serde_json::to_value(&request).expect("a run request serializes");
        let invoker = StepInvoker {
            deps: self.deps.clone(),
        };
        let result = self.machine.execute(input, ctx, &invoker, observer).await;
        let record = self.deps.runs.get_run(&run_id).await.ok().flatten();
        RunOutcome {
            run_id,
            record,
            failure: result.err(),
        }
    }
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
        settings: Settings::default(),
    })
}
