//! The execution context ([`ExecutionContext`]) and the context object that `$$` paths read.
//!
//! The context object has the shape AWS documents for JSONPath states:
//!
//! ```json
//! {
//!   "Execution": { "Id": "...", "Input": {...}, "Name": "...", "StartTime": "2019-03-26T20:14:13.192Z", "RedriveCount": 0 },
//!   "State": { "EnteredTime": "2019-03-26T20:14:13.192Z", "Name": "Test", "RetryCount": 3 },
//!   "StateMachine": { "Id": "arn:aws:states:...:stateMachine:Name", "Name": "Name" }
//! }
//! ```
//!
//! `Map.Item.Index` and `Map.Item.Value` exist in a Map state's `ItemSelector`.
//! (`Execution.RoleArn` and `Task.Token` are not available locally; a path to them fails like
//! any path that matches nothing.)

use super::path::{lookup_segments, ReferencePath, Root, Segment};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

/// Identity of one execution, exposed to the definition through `$$.Execution.*` and
/// `$$.StateMachine.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionContext {
    /// `$$.Execution.Id` (an execution ARN in AWS).
    pub execution_id: String,
    /// `$$.Execution.Name`.
    pub execution_name: String,
    /// `$$.StateMachine.Id` (a state machine ARN in AWS). `$$.StateMachine.Name` is the part
    /// after the last `:`.
    pub state_machine_id: String,
    /// `$$.Execution.StartTime`.
    pub start_time: DateTime<Utc>,
}

impl ExecutionContext {
    /// A context for a new execution named `execution_name` of `state_machine_id`, started now.
    /// The execution id follows the AWS ARN scheme when the state machine id is an ARN
    /// (`...:stateMachine:M` -> `...:execution:M:name`), else it is `"{state_machine_id}:{name}"`.
    pub fn new(state_machine_id: impl Into<String>, execution_name: impl Into<String>) -> Self {
        let state_machine_id = state_machine_id.into();
        let execution_name = execution_name.into();
        let execution_id = if state_machine_id.contains(":stateMachine:") {
            format!(
                "{}:{execution_name}",
                state_machine_id.replacen(":stateMachine:", ":execution:", 1)
            )
        } else {
            format!("{state_machine_id}:{execution_name}")
        };
        ExecutionContext {
            execution_id,
            execution_name,
            state_machine_id,
            start_time: Utc::now(),
        }
    }

    /// `$$.StateMachine.Name`: the state machine id after its last `:`.
    pub fn state_machine_name(&self) -> &str {
        self.state_machine_id
            .rsplit(':')
            .next()
            .unwrap_or(&self.state_machine_id)
    }
}

/// Formats a time as AWS does in the context object (`2019-03-26T20:14:13.192Z`).
pub(super) fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The context object of the state being run. Built cheaply per state: the execution
/// input is borrowed, and only the part a `$$` path selects is cloned.
#[derive(Clone, Copy)]
pub(super) struct ContextObject<'a> {
    pub execution: &'a ExecutionContext,
    pub execution_input: &'a Value,
    pub state_name: &'a str,
    pub entered_time: &'a str,
    pub retry_count: u32,
    /// In a Map state's `ItemSelector`: the item's index and value (`$$.Map.Item`).
    pub map_item: Option<(usize, &'a Value)>,
}

impl ContextObject<'_> {
    /// Resolves the segments of a `$$` path (a clone of the selected node), or `None`.
    pub fn resolve(&self, segments: &[Segment]) -> Option<Value> {
        let key = |i: usize| match segments.get(i) {
            Some(Segment::Key(k)) => Some(k.as_str()),
            _ => None,
        };
        // Fast path: $$.Execution.Input.<rest> reads the borrowed input without copying it all.
        if key(0) == Some("Execution") && key(1) == Some("Input") {
            return lookup_segments(&segments[2..], self.execution_input).cloned();
        }
        let execution = || {
            json!({
                "Id": self.execution.execution_id,
                "Input": self.execution_input,
                "Name": self.execution.execution_name,
                "StartTime": format_time(&self.execution.start_time),
                "RedriveCount": 0,
            })
        };
        let state = || {
            json!({
                "EnteredTime": self.entered_time,
                "Name": self.state_name,
                "RetryCount": self.retry_count,
            })
        };
        let state_machine = || {
            json!({
                "Id": self.execution.state_machine_id,
                "Name": self.execution.state_machine_name(),
            })
        };
        let (top, rest) = match key(0) {
            None if segments.is_empty() => {
                return Some(json!({
                    "Execution": execution(),
                    "State": state(),
                    "StateMachine": state_machine(),
                }))
            }
            Some("Execution") => (execution(), &segments[1..]),
            Some("State") => (state(), &segments[1..]),
            Some("StateMachine") => (state_machine(), &segments[1..]),
            Some("Map") => {
                let (index, value) = self.map_item?;
                (
                    json!({"Item": {"Index": index, "Value": value}}),
                    &segments[1..],
                )
            }
            _ => return None,
        };
        lookup_segments(rest, &top).cloned()
    }
}

/// Applies `path` to `input` (for `$` paths) or to the context object (for `$$` paths) and
/// returns a copy of the selected node, or `None` when the path matches nothing.
pub(super) fn resolve(path: &ReferencePath, input: &Value, ctx: &ContextObject) -> Option<Value> {
    match path.root() {
        Root::Input => path.lookup(input).cloned(),
        Root::Context => ctx.resolve(path.segments()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::path::ReferencePath;
    use super::*;

    #[test]
    fn resolves_every_documented_field() {
        let exec = ExecutionContext {
            execution_id: "arn:aws:states:us-east-1:123456789012:execution:flow:run-1".into(),
            execution_name: "run-1".into(),
            state_machine_id: "arn:aws:states:us-east-1:123456789012:stateMachine:flow".into(),
            start_time: "2019-03-26T20:14:13.192Z".parse().unwrap(),
        };
        let input = json!({"a": {"b": 1}});
        let ctx = ContextObject {
            execution: &exec,
            execution_input: &input,
            state_name: "Test",
            entered_time: "2019-03-26T20:14:13.200Z",
            retry_count: 2,
            map_item: None,
        };
        let get = |p: &str| ctx.resolve(ReferencePath::parse(p).unwrap().segments());
        assert_eq!(get("$$.Execution.Id"), Some(json!(exec.execution_id)));
        assert_eq!(get("$$.Execution.Name"), Some(json!("run-1")));
        assert_eq!(get("$$.Execution.Input"), Some(input.clone()));
        assert_eq!(get("$$.Execution.Input.a.b"), Some(json!(1)));
        assert_eq!(
            get("$$.Execution.StartTime"),
            Some(json!("2019-03-26T20:14:13.192Z"))
        );
        assert_eq!(get("$$.State.Name"), Some(json!("Test")));
        assert_eq!(
            get("$$.State.EnteredTime"),
            Some(json!("2019-03-26T20:14:13.200Z"))
        );
        assert_eq!(get("$$.State.RetryCount"), Some(json!(2)));
        assert_eq!(
            get("$$.StateMachine.Id"),
            Some(json!(exec.state_machine_id))
        );
        assert_eq!(get("$$.StateMachine.Name"), Some(json!("flow")));
        assert_eq!(get("$$.Task.Token"), None);
        assert_eq!(get("$$.Execution.Nope"), None);
        assert_eq!(get("$$").unwrap()["State"]["RetryCount"], json!(2));
    }

    #[test]
    fn new_builds_an_execution_arn() {
        let c = ExecutionContext::new("arn:aws:states:eu-west-1:1:stateMachine:flow", "run-7");
        assert_eq!(
            c.execution_id,
            "arn:aws:states:eu-west-1:1:execution:flow:run-7"
        );
        assert_eq!(c.state_machine_name(), "flow");
        let local = ExecutionContext::new("local", "x");
        assert_eq!(local.execution_id, "local:x");
    }
}
