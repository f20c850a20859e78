//! Runs a [`Definition`]: state transitions, input/output processing, retries and catchers.
//!
//! Input/output processing follows AWS order: `InputPath` -> `Parameters` -> (task) ->
//! `ResultSelector` -> `ResultPath` (merged into the state's *raw* input) -> `OutputPath`.
//! Errors raised while building the task input (`InputPath`, `Parameters`) and every
//! `States.Runtime` error fail the execution at once; other errors go through `Retry` and
//! then `Catch`.

use super::context::{format_time, resolve, ContextObject, ExecutionContext};
use super::definition::{
    ChoiceState, Definition, FailState, IoPath, Kind, MapMode, MapState, Source, State, TaskState,
    Transition, WaitFor, WaitState,
};
use super::error::{names, ExecutionFailure, StateError, TaskFailure};
use super::path::type_name;
use super::retry::{error_matches, Catcher, ResultPath, Retrier};
use super::template::{abbreviate, Template};
use super::{Limits, Observer, TaskInvoker};
use chrono::Utc;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The events of one execution's history, counted as AWS writes them (one per line of the
/// console's "Events" table), against the history limit.
///
/// Per state: Task `TaskStateEntered`, then per attempt `TaskScheduled`, `TaskStarted` and
/// `TaskSucceeded`/`TaskFailed`/`TaskTimedOut`, then `TaskStateExited`; Pass, Choice, Wait and
/// Succeed `...StateEntered` + `...StateExited`; Fail `FailStateEntered`; Map `MapStateEntered`,
/// `MapStateStarted`, per inline iteration `MapIterationStarted` + `MapIterationSucceeded`
/// (plus the iteration's own states), for a Distributed Map `MapRunStarted` +
/// `MapRunSucceeded`/`MapRunFailed` (its children are executions with their own histories),
/// then `MapStateSucceeded` + `MapStateExited`. Plus `ExecutionStarted` and
/// `ExecutionSucceeded`/`ExecutionFailed`.
pub(super) struct History {
    events: AtomicU64,
    limit: u64,
}

impl History {
    pub fn new(limit: u64) -> Self {
        History {
            events: AtomicU64::new(0),
            limit,
        }
    }

    /// The events written so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Write `n` events; past the limit the execution fails (`States.Runtime`: no Catch runs).
    fn add(&self, n: u64) -> Result<(), StateError> {
        let total = self.events.fetch_add(n, Ordering::Relaxed) + n;
        if total > self.limit {
            return Err(StateError::runtime(format!(
                "The execution reached {} events in its history, the limit of one Step Functions execution (AWS quota: 25,000); it fails without running any Catch. Long runs must continue in new executions (slices)",
                self.limit
            )));
        }
        Ok(())
    }
}

/// Fails with `States.DataLimitExceeded` when `value`, as JSON, is larger than `limit` bytes.
pub(super) fn check_payload(value: &Value, limit: usize, what: &str) -> Result<(), StateError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    if count.0 > limit {
        return Err(StateError::new(
            names::DATA_LIMIT_EXCEEDED,
            format!(
                "The {what} is {} bytes, more than the {limit} bytes (256 KiB) a Step Functions state may pass; state must carry pointers, not data",
                count.0
            ),
        ));
    }
    Ok(())
}

/// What a state did.
enum Step {
    Next { output: Value, next: String },
    End(Value),
}

/// How a state with Retry/Catch ended: its own output, or a catcher's.
enum Caught {
    No(Value),
    Yes { output: Value, next: String },
}

/// Everything one execution needs.
pub(super) struct Executor<'a> {
    pub definition: &'a Definition,
    pub context: &'a ExecutionContext,
    pub execution_input: &'a Value,
    pub invoker: &'a dyn TaskInvoker,
    pub observer: &'a dyn Observer,
    pub max_transitions: u64,
    /// Retry waits and Wait states last this fraction of their definition (1.0 = as AWS).
    pub time_scale: f64,
    pub limits: Limits,
    /// This execution's history (shared with its inline Map iterations).
    pub history: &'a History,
    /// Set when the Map running this execution (or iteration) failed: it stops before its
    /// next state, as AWS stops a failed Map's other children; the step it is in finishes.
    pub abort: Option<&'a std::sync::atomic::AtomicBool>,
}

impl Executor<'_> {
    /// Runs the execution to completion, applying the state machine's `TimeoutSeconds`.
    pub async fn run(&self) -> Result<Value, ExecutionFailure> {
        let current = Mutex::new(self.definition.start_at.clone());
        let result = self.run_timed(&current).await;
        // ExecutionSucceeded / ExecutionFailed.
        let _ = self.history.add(1);
        result
    }

    async fn run_timed(&self, current: &Mutex<String>) -> Result<Value, ExecutionFailure> {
        let start = self.definition.start_at.clone();
        let fail_at_start = |e: StateError| e.into_failure(&start);
        // ExecutionStarted.
        self.history.add(1).map_err(fail_at_start)?;
        check_payload(
            self.execution_input,
            self.limits.payload_bytes,
            "execution input",
        )
        .map_err(fail_at_start)?;
        let run = self.run_states(current, self.execution_input.clone());
        match self.definition.timeout_seconds {
            None => run.await,
            Some(seconds) => match tokio::time::timeout(Duration::from_secs(seconds), run).await {
                Ok(result) => result,
                Err(_) => Err(ExecutionFailure {
                    error: names::TIMEOUT.into(),
                    cause: format!(
                        "The execution exceeded the state machine's TimeoutSeconds ({seconds} s)"
                    ),
                    state: Some(
                        current
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .clone(),
                    ),
                }),
            },
        }
    }

    /// Runs the definition's states from `StartAt` on `input` (boxed: a Map state runs its
    /// processor through here again).
    fn run_states<'s>(
        &'s self,
        current_name: &'s Mutex<String>,
        input: Value,
    ) -> BoxFuture<'s, Result<Value, ExecutionFailure>> {
        Box::pin(self.run_states_inner(current_name, input))
    }

    async fn run_states_inner(
        &self,
        current_name: &Mutex<String>,
        input: Value,
    ) -> Result<Value, ExecutionFailure> {
        let mut name = self.definition.start_at.clone();
        let mut data = input;
        let mut transitions: u64 = 0;
        loop {
            if self.abort.is_some_and(|a| a.load(Ordering::SeqCst)) {
                return Err(ExecutionFailure {
                    error: "States.Aborted".into(),
                    cause: "stopped: the Map state running it failed".into(),
                    state: Some(name),
                });
            }
            transitions += 1;
            if transitions > self.max_transitions {
                return Err(ExecutionFailure {
                    error: names::RUNTIME.into(),
                    cause: format!(
                        "The execution exceeded the local limit of {} state transitions (an endless loop?)",
                        self.max_transitions
                    ),
                    state: Some(name),
                });
            }
            *current_name
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = name.clone();
            let state = &self.definition.states[&name];
            self.observer.state_entered(&name, &data);
            let step = self.run_state(&name, state, data).await?;
            let output = match &step {
                Step::Next { output, .. } | Step::End(output) => output,
            };
            check_payload(output, self.limits.payload_bytes, "state output")
                .map_err(|e| e.into_failure(&name))?;
            match step {
                Step::Next { output, next } => {
                    self.observer.state_exited(&name, &output);
                    data = output;
                    name = next;
                }
                Step::End(output) => {
                    self.observer.state_exited(&name, &output);
                    return Ok(output);
                }
            }
        }
    }

    async fn run_state(
        &self,
        name: &str,
        state: &State,
        raw: Value,
    ) -> Result<Step, ExecutionFailure> {
        let entered_time = format_time(&Utc::now());
        let ctx = ContextObject {
            execution: self.context,
            execution_input: self.execution_input,
            state_name: name,
            entered_time: &entered_time,
            retry_count: 0,
            map_item: None,
        };
        let fail = |e: StateError| e.into_failure(name);
        // ...StateEntered (+ ...StateExited for the states that cannot fail on their own;
        // MapStateStarted for a Map).
        let events = match &state.kind {
            Kind::Task(_) | Kind::Fail(_) => 1,
            _ => 2,
        };
        self.history.add(events).map_err(fail)?;
        match &state.kind {
            Kind::Task(task) => self.run_task(name, state, task, raw, &entered_time).await,
            Kind::Map(map) => self.run_map(name, state, map, raw, &entered_time).await,
            Kind::Pass(pass) => {
                let effective =
                    effective_input(state, pass.parameters.as_ref(), &raw, &ctx).map_err(fail)?;
                let result = pass.result.clone().unwrap_or(effective);
                let combined = apply_result_path(&pass.result_path, raw, result).map_err(fail)?;
                let output = apply_io_path(&state.output_path, combined, &ctx, "OutputPath")
                    .map_err(fail)?;
                Ok(step(&pass.transition, output))
            }
            Kind::Choice(choice) => {
                let effective =
                    apply_io_path(&state.input_path, raw, &ctx, "InputPath").map_err(fail)?;
                let next = choose(choice, &effective, &ctx).map_err(fail)?;
                let output = apply_io_path(&state.output_path, effective, &ctx, "OutputPath")
                    .map_err(fail)?;
                Ok(Step::Next { output, next })
            }
            Kind::Wait(wait) => {
                let effective =
                    apply_io_path(&state.input_path, raw, &ctx, "InputPath").map_err(fail)?;
                let duration = wait_duration(wait, &effective, &ctx).map_err(fail)?;
                tokio::time::sleep(duration.mul_f64(self.time_scale)).await;
                let output = apply_io_path(&state.output_path, effective, &ctx, "OutputPath")
                    .map_err(fail)?;
                Ok(step(&wait.transition, output))
            }
            Kind::Succeed => {
                let effective =
                    apply_io_path(&state.input_path, raw, &ctx, "InputPath").map_err(fail)?;
                let output = apply_io_path(&state.output_path, effective, &ctx, "OutputPath")
                    .map_err(fail)?;
                Ok(Step::End(output))
            }
            Kind::Fail(fail_state) => Err(fail_execution(name, fail_state, &raw, &ctx)),
        }
    }

    async fn run_task(
        &self,
        name: &str,
        state: &State,
        task: &TaskState,
        raw: Value,
        entered_time: &str,
    ) -> Result<Step, ExecutionFailure> {
        let raw_ref = &raw;
        let result = self
            .retry_catch(name, &task.retry, &task.catch, raw_ref, |retry_count| {
                FutureExt::boxed(async move {
                    let ctx = ContextObject {
                        execution: self.context,
                        execution_input: self.execution_input,
                        state_name: name,
                        entered_time,
                        retry_count,
                        map_item: None,
                    };
                    self.attempt_task(state, task, raw_ref, &ctx).await
                })
            })
            .await?;
        // TaskStateExited.
        self.history.add(1).map_err(|e| e.into_failure(name))?;
        Ok(match result {
            Caught::No(output) => step(&task.transition, output),
            Caught::Yes { output, next } => Step::Next { output, next },
        })
    }

    /// Runs `attempt` (given the state's retry count) under the state's `Retry` and `Catch`.
    async fn retry_catch<'f, F>(
        &self,
        name: &str,
        retry: &[Retrier],
        catch: &[Catcher],
        raw: &Value,
        mut attempt: F,
    ) -> Result<Caught, ExecutionFailure>
    where
        F: FnMut(u32) -> BoxFuture<'f, Result<Value, StateError>>,
    {
        let mut attempts = vec![0u32; retry.len()];
        let mut retry_count = 0u32;
        loop {
            let error = match attempt(retry_count).await {
                Ok(output) => return Ok(Caught::No(output)),
                Err(error) => error,
            };
            if error.is_runtime() {
                return Err(error.into_failure(name));
            }
            if let Some(index) = retry
                .iter()
                .position(|r| error_matches(&r.error_equals, &error.error))
            {
                let retrier = &retry[index];
                if attempts[index] < retrier.max_attempts {
                    let delay = retrier.delay(attempts[index]);
                    attempts[index] += 1;
                    retry_count += 1;
                    self.observer
                        .retrying(name, &error.error, attempts[index], delay);
                    tokio::time::sleep(delay.mul_f64(self.time_scale)).await;
                    continue;
                }
            }
            if let Some(catcher) = catch
                .iter()
                .find(|c| error_matches(&c.error_equals, &error.error))
            {
                let error_output = json!({"Error": error.error, "Cause": error.cause});
                let output = apply_result_path(&catcher.result_path, raw.clone(), error_output)
                    .map_err(|e| {
                        StateError::runtime(format!("Catch ResultPath: {}", e.cause))
                            .into_failure(name)
                    })?;
                return Ok(Caught::Yes {
                    output,
                    next: catcher.next.clone(),
                });
            }
            return Err(error.into_failure(name));
        }
    }

    async fn run_map(
        &self,
        name: &str,
        state: &State,
        map: &MapState,
        raw: Value,
        entered_time: &str,
    ) -> Result<Step, ExecutionFailure> {
        let raw_ref = &raw;
        let result = self
            .retry_catch(name, &map.retry, &map.catch, raw_ref, |retry_count| {
                FutureExt::boxed(async move {
                    let ctx = ContextObject {
                        execution: self.context,
                        execution_input: self.execution_input,
                        state_name: name,
                        entered_time,
                        retry_count,
                        map_item: None,
                    };
                    self.attempt_map(name, state, map, raw_ref, &ctx).await
                })
            })
            .await?;
        // MapStateSucceeded + MapStateExited.
        self.history.add(2).map_err(|e| e.into_failure(name))?;
        Ok(match result {
            Caught::No(output) => step(&map.transition, output),
            Caught::Yes { output, next } => Step::Next { output, next },
        })
    }

    /// One run of a Map state: read the items, run each through the processor (inline in this
    /// execution, or as child executions), then process the results like a Task's.
    async fn attempt_map(
        &self,
        name: &str,
        state: &State,
        map: &MapState,
        raw: &Value,
        ctx: &ContextObject<'_>,
    ) -> Result<Value, StateError> {
        let effective = apply_io_path(&state.input_path, raw.clone(), ctx, "InputPath")?;
        let items = match &map.item_reader {
            Some(reader) => {
                let parameters = match &reader.parameters {
                    Some(t) => t.evaluate(&effective, ctx, "ItemReader.Parameters")?,
                    None => Value::Object(Map::new()),
                };
                let read = self
                    .invoker
                    .read_items(&reader.resource, parameters, &reader.reader_config)
                    .await
                    .map_err(|f| StateError::new(f.error, f.cause))?;
                let mut items = match read {
                    Value::Array(items) => items,
                    other => {
                        return Err(StateError::new(
                            names::ITEM_READER_FAILED,
                            format!(
                                "The ItemReader must read a JSON array, got {}",
                                type_name(&other)
                            ),
                        ))
                    }
                };
                if let Some(max) = reader.max_items {
                    items.truncate(usize::try_from(max).unwrap_or(usize::MAX));
                }
                items
            }
            None => {
                let selected = match &map.items_path {
                    Some(p) => resolve(p, &effective, ctx).ok_or_else(|| {
                        StateError::runtime(format!(
                            "Invalid path '{p}' in ItemsPath: the path matches nothing in '{}'",
                            abbreviate(&effective)
                        ))
                    })?,
                    None => effective.clone(),
                };
                match selected {
                    Value::Array(items) => items,
                    other => {
                        return Err(StateError::runtime(format!(
                            "The Map state's items (ItemsPath) must be an array, got {}",
                            type_name(&other)
                        )))
                    }
                }
            }
        };
        let limit = match &map.max_concurrency_path {
            Some(p) => {
                let v = resolve(p, &effective, ctx).ok_or_else(|| {
                    StateError::runtime(format!(
                        "Invalid path '{p}' in MaxConcurrencyPath: the path matches nothing"
                    ))
                })?;
                v.as_u64().ok_or_else(|| {
                    StateError::runtime(format!(
                        "MaxConcurrencyPath '{p}' must select a non-negative integer, got {v}"
                    ))
                })?
            }
            None => map.max_concurrency,
        };
        // 0 means "as many as AWS allows": 40 inline iterations, 10,000 child executions.
        let limit = match (limit, map.mode) {
            (0, MapMode::Inline) => 40,
            (0, MapMode::Distributed) => 10_000,
            (n, _) => n,
        } as usize;
        // The input of each item: ItemSelector (with $$.Map.Item) or the item itself.
        let mut inputs = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let input = match &map.item_selector {
                Some(selector) => {
                    let item_ctx = ContextObject {
                        map_item: Some((index, &item)),
                        ..*ctx
                    };
                    selector.evaluate(&effective, &item_ctx, "ItemSelector")?
                }
                None => item,
            };
            check_payload(&input, self.limits.payload_bytes, "Map item input")?;
            inputs.push(input);
        }
        let total = inputs.len();
        let label = map.label.as_deref().unwrap_or(name);
        if map.mode == MapMode::Distributed {
            // MapRunStarted.
            self.history.add(1)?;
        }
        let mut outputs = Vec::with_capacity(total);
        let mut failures = 0usize;
        let mut first_failure: Option<(usize, ExecutionFailure)> = None;
        let stop = std::sync::atomic::AtomicBool::new(false);
        let stop_ref = &stop;
        let mut results = futures::stream::iter(inputs.into_iter().enumerate())
            .map(|(index, input)| self.run_item(map, label, index, input, stop_ref))
            .buffered(limit.max(1));
        // A failed Map stops its other items before their next state, and waits for the steps
        // they are in: nothing of the Map runs on after it has failed.
        let mut failed: Option<StateError> = None;
        while let Some((index, result)) = results.next().await {
            if failed.is_some() {
                continue;
            }
            match (result, map.mode) {
                (Ok(output), _) => outputs.push(output),
                (Err(f), MapMode::Inline) => {
                    // An iteration's failure is the Map state's failure.
                    stop.store(true, Ordering::SeqCst);
                    failed = Some(StateError::new(f.error, f.cause));
                }
                (Err(f), MapMode::Distributed) => {
                    failures += 1;
                    outputs.push(Value::Null);
                    let (i, f) = first_failure.get_or_insert((index, f)).clone();
                    let over_count = |n: u64| failures as u64 > n;
                    let over_share = |p: f64| failures as f64 * 100.0 > p * total as f64;
                    let over = match (
                        map.tolerated_failure_count,
                        map.tolerated_failure_percentage,
                    ) {
                        (None, None) => true,
                        (Some(n), None) => over_count(n),
                        (None, Some(p)) => over_share(p),
                        (Some(n), Some(p)) => over_count(n) || over_share(p),
                    };
                    if over && failed.is_none() {
                        stop.store(true, Ordering::SeqCst);
                        failed = Some(StateError::new(
                            names::EXCEED_TOLERATED_FAILURE_THRESHOLD,
                            format!(
                                "The Map Run's child executions failed more than its tolerated failure threshold ({failures} of {total} items failed); item {i} failed with {}: {}",
                                f.error, f.cause
                            ),
                        ));
                    }
                }
            }
        }
        drop(results);
        if let Some(error) = failed {
            if map.mode == MapMode::Distributed {
                // MapRunFailed.
                self.history.add(1)?;
            }
            return Err(error);
        }
        if map.mode == MapMode::Distributed {
            // MapRunSucceeded.
            self.history.add(1)?;
        }
        let result = Value::Array(outputs);
        let result = match &map.result_selector {
            Some(selector) => selector.evaluate(&result, ctx, "ResultSelector")?,
            None => result,
        };
        let combined = apply_result_path(&map.result_path, raw.clone(), result)?;
        apply_io_path(&state.output_path, combined, ctx, "OutputPath")
    }

    /// Runs one item through the Map's processor: inline (this execution's history, context and
    /// input) or as a child execution with its own identity and history.
    async fn run_item(
        &self,
        map: &MapState,
        label: &str,
        index: usize,
        input: Value,
        stop: &std::sync::atomic::AtomicBool,
    ) -> (usize, Result<Value, ExecutionFailure>) {
        let current = Mutex::new(map.processor.start_at.clone());
        match map.mode {
            MapMode::Inline => {
                // MapIterationStarted + MapIterationSucceeded.
                if let Err(e) = self.history.add(2) {
                    return (index, Err(e.into_failure(&map.processor.start_at)));
                }
                let inner = Executor {
                    definition: &map.processor,
                    history: self.history,
                    abort: Some(stop),
                    ..*self
                };
                (index, inner.run_states(&current, input).await)
            }
            MapMode::Distributed => {
                let context = ExecutionContext {
                    execution_id: format!("{}/{label}:{index}", self.context.execution_id),
                    execution_name: format!("{}-{label}-{index}", self.context.execution_name),
                    state_machine_id: format!("{}/{label}", self.context.state_machine_id),
                    start_time: Utc::now(),
                };
                let history = History::new(self.limits.history_events);
                let child = Executor {
                    definition: &map.processor,
                    context: &context,
                    execution_input: &input,
                    history: &history,
                    abort: Some(stop),
                    ..*self
                };
                (index, child.run().await)
            }
        }
    }

    /// One attempt: build the input, invoke, process the result. Returns the state output.
    async fn attempt_task(
        &self,
        state: &State,
        task: &TaskState,
        raw: &Value,
        ctx: &ContextObject<'_>,
    ) -> Result<Value, StateError> {
        let effective = effective_input(state, task.parameters.as_ref(), raw, ctx)?;
        check_payload(&effective, self.limits.payload_bytes, "task input")?;
        // TaskScheduled, TaskStarted, and TaskSucceeded / TaskFailed / TaskTimedOut.
        self.history.add(3)?;
        let invocation = self.invoker.invoke(&task.resource, effective);
        let result = match task.timeout_seconds {
            None => invocation.await,
            Some(seconds) => {
                match tokio::time::timeout(Duration::from_secs(seconds), invocation).await {
                    Ok(result) => result,
                    Err(_) => Err(TaskFailure::new(
                        names::TIMEOUT,
                        format!("The task did not finish within TimeoutSeconds ({seconds} s)"),
                    )),
                }
            }
        }?;
        check_payload(&result, self.limits.payload_bytes, "task result")?;
        let result = match &task.result_selector {
            Some(selector) => selector.evaluate(&result, ctx, "ResultSelector")?,
            None => result,
        };
        let combined = apply_result_path(&task.result_path, raw.clone(), result)?;
        apply_io_path(&state.output_path, combined, ctx, "OutputPath")
    }
}

fn step(transition: &Transition, output: Value) -> Step {
    match transition {
        Transition::Next(next) => Step::Next {
            output,
            next: next.clone(),
        },
        Transition::End => Step::End(output),
    }
}

/// `InputPath` then `Parameters`.
fn effective_input(
    state: &State,
    parameters: Option<&Template>,
    raw: &Value,
    ctx: &ContextObject,
) -> Result<Value, StateError> {
    let selected = apply_io_path(&state.input_path, raw.clone(), ctx, "InputPath")?;
    match parameters {
        Some(template) => template.evaluate(&selected, ctx, "Parameters"),
        None => Ok(selected),
    }
}

/// Applies `InputPath` / `OutputPath`: `null` -> `{}`, a path that matches nothing -> `States.Runtime`.
fn apply_io_path(
    path: &IoPath,
    value: Value,
    ctx: &ContextObject,
    field: &str,
) -> Result<Value, StateError> {
    match path {
        IoPath::Empty => Ok(Value::Object(Map::new())),
        IoPath::Path(p) if p.is_whole() => Ok(value),
        IoPath::Path(p) => resolve(p, &value, ctx).ok_or_else(|| {
            StateError::runtime(format!(
                "Invalid path '{p}' in {field}: the path matches nothing in '{}'",
                abbreviate(&value)
            ))
        }),
    }
}

/// Applies `ResultPath`: `null` keeps the raw input; a path writes the result into a copy of it.
fn apply_result_path(
    path: &ResultPath,
    mut raw: Value,
    result: Value,
) -> Result<Value, StateError> {
    match path {
        ResultPath::Discard => Ok(raw),
        ResultPath::Path(p) => {
            p.set(&mut raw, result).map_err(|message| {
                StateError::new(
                    names::RESULT_PATH_MATCH_FAILURE,
                    format!("Unable to apply ResultPath '{p}' to the state input: {message}"),
                )
            })?;
            Ok(raw)
        }
    }
}

fn choose(choice: &ChoiceState, input: &Value, ctx: &ContextObject) -> Result<String, StateError> {
    for (rule, next) in &choice.choices {
        if rule.evaluate(input, ctx)? {
            return Ok(next.clone());
        }
    }
    choice.default.clone().ok_or_else(|| {
        StateError::new(
            names::NO_CHOICE_MATCHED,
            format!(
                "No Choice rule matched and there is no Default, for input '{}'",
                abbreviate(input)
            ),
        )
    })
}

fn wait_duration(
    wait: &WaitState,
    input: &Value,
    ctx: &ContextObject,
) -> Result<Duration, StateError> {
    let until = |deadline: chrono::DateTime<chrono::FixedOffset>| {
        (deadline.with_timezone(&Utc) - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    match &wait.wait {
        WaitFor::Seconds(seconds) => Ok(Duration::from_secs(*seconds)),
        WaitFor::SecondsPath(path) => {
            let value = resolve(path, input, ctx).ok_or_else(|| {
                StateError::runtime(format!(
                    "Invalid path '{path}' in SecondsPath: the path matches nothing"
                ))
            })?;
            value.as_u64().map(Duration::from_secs).ok_or_else(|| {
                StateError::runtime(format!(
                    "SecondsPath '{path}' must select a non-negative integer, got {value}"
                ))
            })
        }
        WaitFor::Timestamp(deadline) => Ok(until(*deadline)),
        WaitFor::TimestampPath(path) => {
            let value = resolve(path, input, ctx).ok_or_else(|| {
                StateError::runtime(format!(
                    "Invalid path '{path}' in TimestampPath: the path matches nothing"
                ))
            })?;
            value
                .as_str()
                .and_then(super::choice::parse_timestamp)
                .map(until)
                .ok_or_else(|| {
                    StateError::runtime(format!(
                        "TimestampPath '{path}' must select an RFC 3339 timestamp, got {value}"
                    ))
                })
        }
    }
}

/// Builds the failure a Fail state reports (its `Error`/`Cause`, literal or resolved).
fn fail_execution(
    name: &str,
    fail: &FailState,
    raw: &Value,
    ctx: &ContextObject,
) -> ExecutionFailure {
    let resolve_source = |source: &Option<Source>, field: &str| -> Result<String, StateError> {
        match source {
            None => Ok(String::new()),
            Some(Source::Literal(s)) => Ok(s.clone()),
            Some(Source::Path(path)) => match resolve(path, raw, ctx) {
                Some(Value::String(s)) => Ok(s),
                Some(other) => Err(StateError::runtime(format!(
                    "{field} '{path}' must select a string, got {}",
                    type_name(&other)
                ))),
                None => Err(StateError::runtime(format!(
                    "Invalid path '{path}' in {field}: the path matches nothing"
                ))),
            },
            Some(Source::Intrinsic(call)) => match call.evaluate(raw, ctx)? {
                Value::String(s) => Ok(s),
                other => Err(StateError::runtime(format!(
                    "{field} '{}' must return a string, got {}",
                    call.text,
                    type_name(&other)
                ))),
            },
        }
    };
    let result = resolve_source(&fail.error, "ErrorPath")
        .and_then(|error| resolve_source(&fail.cause, "CausePath").map(|cause| (error, cause)));
    match result {
        Ok((error, cause)) => ExecutionFailure {
            error,
            cause,
            state: Some(name.to_string()),
        },
        Err(e) => e.into_failure(name),
    }
}
