//! Runs a [`Definition`]: state transitions, input/output processing, retries and catchers.
//!
//! Input/output processing follows AWS order: `InputPath` -> `Parameters` -> (task) ->
//! `ResultSelector` -> `ResultPath` (merged into the state's *raw* input) -> `OutputPath`.
//! Errors raised while building the task input (`InputPath`, `Parameters`) and every
//! `States.Runtime` error fail the execution at once; other errors go through `Retry` and
//! then `Catch`.

use super::context::{format_time, resolve, ContextObject, ExecutionContext};
use super::definition::{
    ChoiceState, Definition, FailState, IoPath, Kind, Source, State, TaskState, Transition,
    WaitFor, WaitState,
};
use super::error::{names, ExecutionFailure, StateError, TaskFailure};
use super::path::type_name;
use super::retry::{error_matches, ResultPath};
use super::template::{abbreviate, Template};
use super::{Observer, TaskInvoker};
use chrono::Utc;
use serde_json::{json, Map, Value};
use std::sync::Mutex;
use std::time::Duration;

/// What a state did.
enum Step {
    Next { output: Value, next: String },
    End(Value),
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
}

impl Executor<'_> {
    /// Runs the execution to completion, applying the state machine's `TimeoutSeconds`.
    pub async fn run(&self) -> Result<Value, ExecutionFailure> {
        let current = Mutex::new(self.definition.start_at.clone());
        let run = self.run_states(&current);
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

    async fn run_states(&self, current_name: &Mutex<String>) -> Result<Value, ExecutionFailure> {
        let mut name = self.definition.start_at.clone();
        let mut data = self.execution_input.clone();
        let mut transitions: u64 = 0;
        loop {
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
            match self.run_state(&name, state, data).await? {
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
        };
        let fail = |e: StateError| e.into_failure(name);
        match &state.kind {
            Kind::Task(task) => self.run_task(name, state, task, raw, &entered_time).await,
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
        let mut attempts = vec![0u32; task.retry.len()];
        let mut retry_count = 0u32;
        loop {
            let ctx = ContextObject {
                execution: self.context,
                execution_input: self.execution_input,
                state_name: name,
                entered_time,
                retry_count,
            };
            let error = match self.attempt_task(state, task, &raw, &ctx).await {
                Ok(output) => return Ok(step(&task.transition, output)),
                Err(error) => error,
            };
            if error.is_runtime() {
                return Err(error.into_failure(name));
            }
            if let Some(index) = task
                .retry
                .iter()
                .position(|r| error_matches(&r.error_equals, &error.error))
            {
                let retrier = &task.retry[index];
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
            if let Some(catcher) = task
                .catch
                .iter()
                .find(|c| error_matches(&c.error_equals, &error.error))
            {
                let error_output = json!({"Error": error.error, "Cause": error.cause});
                let output =
                    apply_result_path(&catcher.result_path, raw, error_output).map_err(|e| {
                        StateError::runtime(format!("Catch ResultPath: {}", e.cause))
                            .into_failure(name)
                    })?;
                return Ok(Step::Next {
                    output,
                    next: catcher.next.clone(),
                });
            }
            return Err(error.into_failure(name));
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
