//! An embedded interpreter for Amazon States Language (ASL) state machines, so that the same
//! definition file that runs on AWS Step Functions in production runs locally.
//!
//! ```ignore
//! // (module path depends on where this module is mounted)
//! let subs = HashMap::from([("StartRunFunctionArn".to_string(), "local:start-run".to_string())]);
//! let machine = StateMachine::parse(definition, &subs)?;
//! let ctx = ExecutionContext::new("arn:aws:states:local:0:stateMachine:ferry", "run-1");
//! let output = machine.execute(serde_json::json!({}), ctx, &invoker, &NoopObserver).await?;
//! ```
//!
//! # Supported (JSONPath query language only)
//! - States: `Task`, `Pass`, `Choice`, `Wait` (`Seconds`, `SecondsPath`, `Timestamp`,
//!   `TimestampPath`), `Succeed`, `Fail` (`Error`, `Cause`, `ErrorPath`, `CausePath`).
//! - Input/output processing: `InputPath`, `Parameters`, `ResultSelector`, `ResultPath`,
//!   `OutputPath`, with reference paths and the context object (`$$`) (modules `path`,
//!   `context`, `template`).
//! - Intrinsic functions (module `intrinsics`): `States.Format`, `States.StringToJson`,
//!   `States.JsonToString`, `States.Array`, `States.ArrayGetItem`, `States.ArrayLength`,
//!   `States.JsonMerge` (shallow), `States.MathAdd`, `States.StringSplit`, `States.UUID`.
//! - Choice rules (module `choice`): every comparison operator and its `...Path` variant,
//!   `StringMatches`, the `Is*` type tests, `And`/`Or`/`Not`.
//! - `Retry` (`IntervalSeconds`, `MaxAttempts`, `BackoffRate`, `MaxDelaySeconds`,
//!   `JitterStrategy`) and `Catch` (module `retry`); Task `TimeoutSeconds` (-> `States.Timeout`),
//!   `HeartbeatSeconds` (accepted, not enforced: there is no heartbeat API locally);
//!   state machine `TimeoutSeconds`.
//!
//! - `Map` (module `executor`): `ItemProcessor` with `ProcessorConfig.Mode` `INLINE` (iterations
//!   in the execution's own history) or `DISTRIBUTED` (each item a child execution with its own
//!   history and `$$.Execution`), `ItemsPath` or `ItemReader` (read by
//!   [`TaskInvoker::read_items`]; `ReaderConfig.MaxItems`), `ItemSelector` with `$$.Map.Item`,
//!   `MaxConcurrency`/`MaxConcurrencyPath` (items run concurrently), `ToleratedFailureCount`,
//!   `ToleratedFailurePercentage`, `Label`, `ResultSelector`, `ResultPath`, `Retry`, `Catch`.
//!
//! # AWS limits, enforced
//! An execution's history holds at most 25,000 events, counted per state as AWS writes them
//! (`executor::History`); past it the execution fails with `States.Runtime` and no Catch runs.
//! A state's input or output, a task's input or result, a Map item's input and the execution
//! input are at most 256 KiB of JSON; past it the state fails with `States.DataLimitExceeded`
//! (terminal, as in AWS). Both limits can be lowered ([`StateMachine::with_limits`]) but are on
//! by default.
//!
//! # Rejected when parsing
//! `Parallel` states, `ItemBatcher`, `ResultWriter`, the legacy `Iterator`, JSONata (`QueryLanguage: "JSONata"`, `Arguments`, `Output`,
//! `Condition`), `Assign`, `Credentials`, `TimeoutSecondsPath`, `HeartbeatSecondsPath`,
//! non-reference JSONPath (`..`, `*`, slices, filters), other intrinsic functions, unknown fields, `${Placeholder}`s without a substitution, and transitions
//! to states that do not exist.

mod choice;
mod context;
mod definition;
mod error;
mod executor;
mod intrinsics;
mod path;
mod retry;
mod template;

#[cfg(test)]
mod tests;

pub use context::ExecutionContext;
pub use error::{names as error_names, AslError, ExecutionFailure, TaskFailure};

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// The default limit on state transitions per execution (a guard against endless loops).
pub const DEFAULT_MAX_TRANSITIONS: u64 = 1_000_000;

/// AWS Step Functions' quota on the events in one execution's history.
pub const MAX_HISTORY_EVENTS: u64 = 25_000;

/// AWS Step Functions' quota on a state's input or output (256 KiB of UTF-8 JSON).
pub const MAX_PAYLOAD_BYTES: usize = 262_144;

/// The AWS limits the interpreter enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Events in one execution's history (a Distributed Map's children have their own).
    pub history_events: u64,
    /// Bytes of a state's input or output, as JSON.
    pub payload_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            history_events: MAX_HISTORY_EVENTS,
            payload_bytes: MAX_PAYLOAD_BYTES,
        }
    }
}

/// Runs the work of Task states.
#[async_trait::async_trait]
pub trait TaskInvoker: Send + Sync {
    /// `resource` is the Task's Resource string after substitution; `input` the effective input
    /// (after InputPath + Parameters). An `Err` is a task error, matched by `Retry`/`Catch`
    /// `ErrorEquals` on its `error` name.
    async fn invoke(&self, resource: &str, input: Value) -> Result<Value, TaskFailure>;

    /// Reads the items of a Map state's `ItemReader` (`resource` e.g.
    /// `arn:aws:states:::s3:getObject`, `parameters` its evaluated `Parameters`, `config` its
    /// `ReaderConfig`). The default has no reader.
    async fn read_items(
        &self,
        resource: &str,
        _parameters: Value,
        _config: &Value,
    ) -> Result<Value, TaskFailure> {
        Err(TaskFailure::new(
            error::names::ITEM_READER_FAILED,
            format!("this engine has no item reader for '{resource}'"),
        ))
    }
}

/// Receives progress notifications (all methods default to doing nothing).
pub trait Observer: Send + Sync {
    /// A state starts, with its raw input.
    fn state_entered(&self, _name: &str, _input: &Value) {}
    /// A state finished successfully (or an error was caught), with its output.
    fn state_exited(&self, _name: &str, _output: &Value) {}
    /// A Task failed with `error` and will be retried after `delay`; `attempt` is the 1-based
    /// retry number of the retrier that matched.
    fn retrying(&self, _state: &str, _error: &str, _attempt: u32, _delay: Duration) {}
}

/// An [`Observer`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {}

/// A parsed and validated state machine.
#[derive(Debug, Clone)]
pub struct StateMachine {
    definition: definition::Definition,
    max_transitions: u64,
    time_scale: f64,
    limits: Limits,
}

impl StateMachine {
    /// Parses a JSON ASL definition, replacing `${Name}` placeholders (in any string, keys
    /// included) from `substitutions`, and validates the whole definition up front.
    pub fn parse(
        definition: &str,
        substitutions: &HashMap<String, String>,
    ) -> Result<StateMachine, AslError> {
        Ok(StateMachine {
            definition: definition::parse(definition, substitutions)?,
            max_transitions: DEFAULT_MAX_TRANSITIONS,
            time_scale: 1.0,
            limits: Limits::default(),
        })
    }

    /// All `${Placeholder}` names in a definition text.
    pub fn placeholders(definition: &str) -> BTreeSet<String> {
        definition::placeholders(definition)
    }

    /// Sets the limit on state transitions per execution (default [`DEFAULT_MAX_TRANSITIONS`]);
    /// exceeding it fails the execution with `States.Runtime`.
    pub fn with_max_transitions(mut self, max_transitions: u64) -> Self {
        self.max_transitions = max_transitions;
        self
    }

    /// Compress time: retry waits and Wait states last `scale` of what the definition says
    /// (tests and fault campaigns; the number and order of retries are unchanged).
    pub fn with_time_scale(mut self, scale: f64) -> Self {
        self.time_scale = scale.clamp(0.0, 1.0);
        self
    }

    /// Enforce other limits than AWS's (tests); the default is [`Limits::default`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The `StartAt` state.
    pub fn start_at(&self) -> &str {
        &self.definition.start_at
    }

    /// The top-level `Comment`, if any.
    pub fn comment(&self) -> Option<&str> {
        self.definition.comment.as_deref()
    }

    /// The names of all states, sorted.
    pub fn state_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.definition.states.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The distinct Task `Resource` strings (after substitution), sorted.
    pub fn resources(&self) -> BTreeSet<&str> {
        self.definition
            .states
            .values()
            .flat_map(|s| definition::resources(s))
            .collect()
    }

    /// Runs one execution to completion and returns its output, or why it failed.
    pub async fn execute(
        &self,
        input: Value,
        ctx: ExecutionContext,
        invoker: &dyn TaskInvoker,
        observer: &dyn Observer,
    ) -> Result<Value, ExecutionFailure> {
        self.execute_counted(input, ctx, invoker, observer).await.0
    }

    /// [`StateMachine::execute`], also returning how many events the execution's history
    /// holds (as AWS counts them; a Distributed Map's children are not in it).
    pub async fn execute_counted(
        &self,
        input: Value,
        ctx: ExecutionContext,
        invoker: &dyn TaskInvoker,
        observer: &dyn Observer,
    ) -> (Result<Value, ExecutionFailure>, u64) {
        let history = executor::History::new(self.limits.history_events);
        let result = executor::Executor {
            definition: &self.definition,
            context: &ctx,
            execution_input: &input,
            invoker,
            observer,
            max_transitions: self.max_transitions,
            time_scale: self.time_scale,
            limits: self.limits,
            history: &history,
            abort: None,
        }
        .run()
        .await;
        (result, history.events())
    }

    /// The names of the states of every Map state's processor, sorted (with their Map's name).
    pub fn processor_state_names(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = self
            .definition
            .states
            .iter()
            .filter_map(|(name, s)| match &s.kind {
                definition::Kind::Map(m) => {
                    let mut names: Vec<String> = m.processor.states.keys().cloned().collect();
                    names.sort_unstable();
                    Some((name.clone(), names))
                }
                _ => None,
            })
            .collect();
        out.sort();
        out
    }
}
