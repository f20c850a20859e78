//! The parsed state machine model, placeholder substitution and up-front validation.
//!
//! Everything that can be checked without input is checked here, so that a definition
//! either loads completely or is rejected with an [`AslError`] naming the state and field.

use super::choice::{self, Rule};
use super::error::{join_field, AslError, FieldError};
use super::intrinsics::{self, Call, Func};
use super::path::ReferencePath;
use super::retry::{self, integer, Catcher, ResultPath, Retrier};
use super::template::Template;
use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};

/// `InputPath` / `OutputPath`.
#[derive(Debug, Clone, PartialEq)]
pub enum IoPath {
    /// `null`: the result is `{}`.
    Empty,
    Path(ReferencePath),
}

impl Default for IoPath {
    fn default() -> Self {
        IoPath::Path(ReferencePath::whole_input())
    }
}

/// Where a state goes after it succeeds.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Next(String),
    End,
}

/// A value given literally, by a reference path, or by an intrinsic (Fail `Error`/`Cause`).
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Literal(String),
    Path(ReferencePath),
    Intrinsic(Call),
}

/// What a Wait state waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitFor {
    Seconds(u64),
    SecondsPath(ReferencePath),
    Timestamp(DateTime<FixedOffset>),
    TimestampPath(ReferencePath),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskState {
    pub resource: String,
    pub parameters: Option<Template>,
    pub result_selector: Option<Template>,
    pub result_path: ResultPath,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
    pub timeout_seconds: Option<u64>,
    pub heartbeat_seconds: Option<u64>,
    pub transition: Transition,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PassState {
    pub result: Option<Value>,
    pub parameters: Option<Template>,
    pub result_path: ResultPath,
    pub transition: Transition,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceState {
    pub choices: Vec<(Rule, String)>,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WaitState {
    pub wait: WaitFor,
    pub transition: Transition,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailState {
    pub error: Option<Source>,
    pub cause: Option<Source>,
}

/// `ItemProcessor.ProcessorConfig.Mode` of a Map state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapMode {
    /// Iterations run inside the parent execution (their events count in its history).
    Inline,
    /// Each item runs as a child execution with its own history (Distributed Map).
    Distributed,
}

/// `ItemReader`: where a Map state reads its items from (instead of its input).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemReader {
    /// e.g. `arn:aws:states:::s3:getObject`.
    pub resource: String,
    pub parameters: Option<Template>,
    /// `ReaderConfig` as written (`InputType`, `MaxItems`, ...), handed to the reader.
    pub reader_config: Value,
    /// `ReaderConfig.MaxItems`.
    pub max_items: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MapState {
    pub mode: MapMode,
    /// The states each item runs through (`ItemProcessor`).
    pub processor: Box<Definition>,
    pub items_path: Option<ReferencePath>,
    pub item_reader: Option<ItemReader>,
    pub item_selector: Option<Template>,
    /// 0 = no limit (AWS: up to 40 inline iterations, 10,000 child executions at once).
    pub max_concurrency: u64,
    pub max_concurrency_path: Option<ReferencePath>,
    pub tolerated_failure_count: Option<u64>,
    pub tolerated_failure_percentage: Option<f64>,
    pub label: Option<String>,
    pub result_selector: Option<Template>,
    pub result_path: ResultPath,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
    pub transition: Transition,
}

/// The type-specific part of a state.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Task(TaskState),
    Map(MapState),
    Pass(PassState),
    Choice(ChoiceState),
    Wait(WaitState),
    Succeed,
    Fail(FailState),
}

/// One state.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub kind: Kind,
    pub input_path: IoPath,
    pub output_path: IoPath,
}

/// A whole, validated definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub comment: Option<String>,
    pub start_at: String,
    pub states: HashMap<String, State>,
    pub timeout_seconds: Option<u64>,
}

const SUPPORTED_TYPES: &str = "Task, Pass, Choice, Wait, Succeed, Fail, Map";

/// Fields that belong to JSONata states, or to features this interpreter lacks.
fn unsupported_field(field: &str) -> Option<&'static str> {
    Some(match field {
        "Arguments" | "Output" => "is a JSONata field; only the JSONPath query language is supported (use Parameters / ResultSelector / OutputPath)",
        "Assign" => "workflow variables (Assign) are not supported by the local interpreter",
        "Credentials" => "cross-account Credentials are not supported by the local interpreter",
        "TimeoutSecondsPath" => "TimeoutSecondsPath is not supported by the local interpreter; use TimeoutSeconds",
        "HeartbeatSecondsPath" => "HeartbeatSecondsPath is not supported by the local interpreter; use HeartbeatSeconds",
        "Items" | "ItemsPath" | "ItemProcessor" | "ItemSelector" | "ItemReader"
        | "MaxConcurrency" | "MaxConcurrencyPath" | "ToleratedFailureCount" | "ToleratedFailurePercentage"
        | "Label" => "belongs to Map states",
        "Iterator" => "is the legacy name of ItemProcessor, which the local interpreter requires",
        "ItemBatcher" => "ItemBatcher is not supported by the local interpreter",
        "ResultWriter" => "ResultWriter is not supported by the local interpreter; keep the Map's results small (ResultSelector / ResultPath: null)",
        "ToleratedFailureCountPath" | "ToleratedFailurePercentagePath" => "the ...Path forms of the tolerated failure fields are not supported by the local interpreter",
        "Branches" => "belongs to Parallel states, which are not supported",
        _ => return None,
    })
}

fn allowed_fields(state_type: &str) -> &'static [&'static str] {
    match state_type {
        "Task" => &[
            "Type",
            "Comment",
            "QueryLanguage",
            "Resource",
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "InputPath",
            "OutputPath",
            "Next",
            "End",
            "Retry",
            "Catch",
            "TimeoutSeconds",
            "HeartbeatSeconds",
        ],
        "Pass" => &[
            "Type",
            "Comment",
            "QueryLanguage",
            "Result",
            "Parameters",
            "ResultPath",
            "InputPath",
            "OutputPath",
            "Next",
            "End",
        ],
        "Choice" => &[
            "Type",
            "Comment",
            "QueryLanguage",
            "Choices",
            "Default",
            "InputPath",
            "OutputPath",
        ],
        "Wait" => &[
            "Type",
            "Comment",
            "QueryLanguage",
            "Seconds",
            "SecondsPath",
            "Timestamp",
            "TimestampPath",
            "InputPath",
            "OutputPath",
            "Next",
            "End",
        ],
        "Succeed" => &[
            "Type",
            "Comment",
            "QueryLanguage",
            "InputPath",
            "OutputPath",
        ],
        "Fail" => &[
            "Type",
            "Comment",
            "QueryLanguage",
            "Error",
            "Cause",
            "ErrorPath",
            "CausePath",
        ],
        "Map" => &[
            "Type",
            "Comment",
            "QueryLanguage",
            "InputPath",
            "OutputPath",
            "ItemsPath",
            "ItemProcessor",
            "ItemReader",
            "ItemSelector",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ToleratedFailureCount",
            "ToleratedFailurePercentage",
            "Label",
            "ResultSelector",
            "ResultPath",
            "Retry",
            "Catch",
            "Next",
            "End",
        ],
        _ => &[],
    }
}

/// The Task resources of a state, its Map processor's included.
pub fn resources(state: &State) -> Vec<&str> {
    match &state.kind {
        Kind::Task(task) => vec![task.resource.as_str()],
        Kind::Map(map) => map.processor.states.values().flat_map(resources).collect(),
        _ => vec![],
    }
}

/// All `${Name}` placeholders in `text` (names made of ASCII letters, digits, `_`, `-`, `.`, `:`).
pub fn placeholders(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            out.insert(after[..name_len].to_string());
            rest = &after[name_len + 1..];
        } else {
            rest = after;
        }
    }
    out
}

/// Replaces placeholders in one string; errors on the first one without a substitution.
fn substitute_str(text: &str, subs: &HashMap<String, String>) -> Result<String, String> {
    if !text.contains("${") {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            let name = &after[..name_len];
            match subs.get(name) {
                Some(value) => out.push_str(value),
                None => return Err(name.to_string()),
            }
            rest = &after[name_len + 1..];
        } else {
            out.push_str("${");
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Substitutes placeholders in every string (keys and values) of the definition.
/// `path` is the location of `value` (e.g. `["States", "Fetch", "Resource"]`).
fn substitute(
    value: &mut Value,
    subs: &HashMap<String, String>,
    path: &mut Vec<String>,
) -> Result<(), AslError> {
    let error = |path: &[String], name: String| {
        let (state, field) = locate(path);
        AslError::UnsubstitutedPlaceholder { state, field, name }
    };
    match value {
        Value::String(s) => {
            *s = substitute_str(s, subs).map_err(|name| error(path, name))?;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                substitute(item, subs, path)?;
                path.pop();
            }
        }
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut item) in entries {
                let key = substitute_str(&key, subs).map_err(|name| {
                    let mut at = path.clone();
                    at.push(key.clone());
                    error(&at, name)
                })?;
                path.push(key.clone());
                substitute(&mut item, subs, path)?;
                path.pop();
                map.insert(key, item);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Splits a location into (state, field): `["States", "X", "Parameters", "a"]` -> (Some("X"), "Parameters.a").
fn locate(path: &[String]) -> (Option<String>, String) {
    let join = |parts: &[String]| {
        parts
            .iter()
            .fold(String::new(), |acc, p| join_field(&acc, p))
    };
    if path.first().map(String::as_str) == Some("States") && path.len() >= 2 {
        (Some(path[1].clone()), join(&path[2..]))
    } else {
        (None, join(path))
    }
}

/// Parses, substitutes and validates a definition.
pub fn parse(text: &str, subs: &HashMap<String, String>) -> Result<Definition, AslError> {
    let mut root: Value = serde_json::from_str(text).map_err(|e| AslError::InvalidJson {
        message: e.to_string(),
    })?;
    substitute(&mut root, subs, &mut Vec::new())?;
    let Value::Object(top) = &root else {
        return Err(AslError::InvalidJson {
            message: "the definition must be a JSON object".into(),
        });
    };
    let top_error = |e: FieldError| e.at_state(None);
    for key in top.keys() {
        match key.as_str() {
            "Comment" | "StartAt" | "States" | "Version" | "TimeoutSeconds" | "QueryLanguage" => {}
            _ => {
                return Err(AslError::UnknownField {
                    state: None,
                    field: key.clone(),
                    state_type: "state machine (top level)".into(),
                    allowed: "Comment, StartAt, States, Version, TimeoutSeconds, QueryLanguage"
                        .into(),
                })
            }
        }
    }
    check_query_language(top).map_err(top_error)?;
    parse_machine(top, None)
}

/// The states of a machine or of a Map's `ItemProcessor` (`within`: the Map state's name, for
/// errors about the processor's own fields).
fn parse_machine(top: &Map<String, Value>, within: Option<&str>) -> Result<Definition, AslError> {
    let top_error = |e: FieldError| match within {
        None => e.at_state(None),
        Some(map) => e.within("ItemProcessor").at_state(Some(map)),
    };
    let comment = optional_string(top, "Comment").map_err(top_error)?;
    if let Some(version) = optional_string(top, "Version").map_err(top_error)? {
        if version != "1.0" {
            return Err(top_error(FieldError::invalid(
                "Version",
                format!("only \"1.0\" is supported, got \"{version}\""),
            )));
        }
    }
    let timeout_seconds = integer(top, "TimeoutSeconds", 1, 99_999_999).map_err(top_error)?;
    let start_at = match top.get("StartAt") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(top_error(FieldError::invalid(
                "StartAt",
                "must be a string naming a state",
            )))
        }
        None => {
            return Err(AslError::MissingField {
                state: within.map(str::to_string),
                field: within.map_or("StartAt", |_| "ItemProcessor.StartAt").into(),
            })
        }
    };
    let states_value = match top.get("States") {
        Some(Value::Object(states)) => states,
        Some(_) => {
            return Err(top_error(FieldError::invalid(
                "States",
                "must be an object of states",
            )))
        }
        None => {
            return Err(AslError::MissingField {
                state: within.map(str::to_string),
                field: within.map_or("States", |_| "ItemProcessor.States").into(),
            })
        }
    };
    if states_value.is_empty() {
        return Err(top_error(FieldError::invalid(
            "States",
            "must contain at least one state",
        )));
    }
    let mut states = HashMap::with_capacity(states_value.len());
    for (name, value) in states_value {
        let state = parse_state(name, value)?;
        states.insert(name.clone(), state);
    }
    let definition = Definition {
        comment,
        start_at,
        states,
        timeout_seconds,
    };
    check_targets(&definition, states_value)?;
    Ok(definition)
}

fn check_query_language(map: &Map<String, Value>) -> Result<(), FieldError> {
    match map.get("QueryLanguage") {
        None => Ok(()),
        Some(Value::String(s)) if s == "JSONPath" => Ok(()),
        Some(Value::String(s)) if s == "JSONata" => Err(FieldError::unsupported(
            "QueryLanguage",
            "JSONata is not supported by the local interpreter; only \"JSONPath\" is",
        )),
        Some(other) => Err(FieldError::invalid(
            "QueryLanguage",
            format!("must be \"JSONPath\" or \"JSONata\", got {other}"),
        )),
    }
}

fn optional_string(map: &Map<String, Value>, field: &str) -> Result<Option<String>, FieldError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(FieldError::invalid(
            field,
            format!("must be a string, got {other}"),
        )),
    }
}

fn parse_io_path(map: &Map<String, Value>, field: &str) -> Result<IoPath, FieldError> {
    match map.get(field) {
        None => Ok(IoPath::default()),
        Some(Value::Null) => Ok(IoPath::Empty),
        Some(Value::String(text)) => ReferencePath::parse(text)
            .map(IoPath::Path)
            .map_err(|m| FieldError::unsupported(field, m)),
        Some(other) => Err(FieldError::invalid(
            field,
            format!("must be a path string or null, got {other}"),
        )),
    }
}

fn parse_path_field(
    map: &Map<String, Value>,
    field: &str,
) -> Result<Option<ReferencePath>, FieldError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::String(text)) => ReferencePath::parse(text)
            .map(Some)
            .map_err(|m| FieldError::unsupported(field, m)),
        Some(other) => Err(FieldError::invalid(
            field,
            format!("must be a path string, got {other}"),
        )),
    }
}

fn parse_transition(map: &Map<String, Value>) -> Result<Transition, FieldError> {
    let end = match map.get("End") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(FieldError::invalid(
                "End",
                format!("must be a boolean, got {other}"),
            ))
        }
    };
    match (map.get("Next"), end) {
        (Some(_), true) => Err(FieldError::invalid(
            "Next",
            "a state cannot have both 'Next' and 'End': true",
        )),
        (Some(Value::String(next)), false) => Ok(Transition::Next(next.clone())),
        (Some(other), false) => Err(FieldError::invalid(
            "Next",
            format!("must be a string naming a state, got {other}"),
        )),
        (None, true) => Ok(Transition::End),
        (None, false) => Err(FieldError::invalid(
            "Next",
            "the state needs 'Next' or 'End': true",
        )),
    }
}

fn parse_template(map: &Map<String, Value>, field: &str) -> Result<Option<Template>, FieldError> {
    map.get(field)
        .map(|v| Template::compile_payload(v).map_err(|e| e.within(field)))
        .transpose()
}

fn parse_result_path(map: &Map<String, Value>) -> Result<ResultPath, FieldError> {
    match map.get("ResultPath") {
        None => Ok(ResultPath::Path(ReferencePath::whole_input())),
        Some(v) => retry::parse_result_path(v).map_err(|e| e.within("ResultPath")),
    }
}

fn parse_state(name: &str, value: &Value) -> Result<State, AslError> {
    let at = |e: FieldError| e.at_state(Some(name));
    if name.chars().count() > 80 {
        return Err(at(FieldError::invalid(
            "",
            "state names must be at most 80 characters",
        )));
    }
    let Value::Object(map) = value else {
        return Err(at(FieldError::invalid("", "a state must be a JSON object")));
    };
    let state_type = match map.get("Type") {
        Some(Value::String(t)) => t.as_str(),
        Some(other) => {
            return Err(at(FieldError::invalid(
                "Type",
                format!("must be a string, got {other}"),
            )))
        }
        None => {
            return Err(AslError::MissingField {
                state: Some(name.into()),
                field: "Type".into(),
            })
        }
    };
    match state_type {
        "Task" | "Pass" | "Choice" | "Wait" | "Succeed" | "Fail" | "Map" => {}
        "Parallel" => {
            return Err(at(FieldError::unsupported(
                "Type",
                format!("{state_type} states are not supported by the local interpreter; supported state types: {SUPPORTED_TYPES}"),
            )))
        }
        other => {
            return Err(at(FieldError::invalid(
                "Type",
                format!("unknown state type '{other}'; supported state types: {SUPPORTED_TYPES}"),
            )))
        }
    }
    let allowed = allowed_fields(state_type);
    for key in map.keys() {
        if allowed.contains(&key.as_str()) {
            continue;
        }
        if let Some(reason) = unsupported_field(key) {
            return Err(at(FieldError::unsupported(
                key.as_str(),
                format!("'{key}' {reason}"),
            )));
        }
        return Err(AslError::UnknownField {
            state: Some(name.into()),
            field: key.clone(),
            state_type: state_type.into(),
            allowed: allowed.join(", "),
        });
    }
    check_query_language(map).map_err(at)?;
    optional_string(map, "Comment").map_err(at)?;
    let input_path = parse_io_path(map, "InputPath").map_err(at)?;
    let output_path = parse_io_path(map, "OutputPath").map_err(at)?;
    let kind = match state_type {
        "Task" => Kind::Task(parse_task(map).map_err(at)?),
        "Map" => Kind::Map(parse_map(name, map)?),
        "Pass" => Kind::Pass(PassState {
            result: map.get("Result").cloned(),
            parameters: parse_template(map, "Parameters").map_err(at)?,
            result_path: parse_result_path(map).map_err(at)?,
            transition: parse_transition(map).map_err(at)?,
        }),
        "Choice" => Kind::Choice(parse_choice(map).map_err(at)?),
        "Wait" => Kind::Wait(parse_wait(map).map_err(at)?),
        "Succeed" => Kind::Succeed,
        "Fail" => Kind::Fail(FailState {
            error: parse_source(map, "Error", "ErrorPath").map_err(at)?,
            cause: parse_source(map, "Cause", "CausePath").map_err(at)?,
        }),
        _ => unreachable!("type checked above"),
    };
    Ok(State {
        kind,
        input_path,
        output_path,
    })
}

fn parse_task(map: &Map<String, Value>) -> Result<TaskState, FieldError> {
    let resource = match map.get("Resource") {
        Some(Value::String(r)) if !r.is_empty() => r.clone(),
        Some(_) => {
            return Err(FieldError::invalid(
                "Resource",
                "must be a non-empty string",
            ))
        }
        None => {
            return Err(FieldError::invalid(
                "Resource",
                "a Task state requires 'Resource'",
            ))
        }
    };
    let timeout_seconds = integer(map, "TimeoutSeconds", 1, 99_999_999)?;
    let heartbeat_seconds = integer(map, "HeartbeatSeconds", 1, 99_999_999)?;
    if let (Some(timeout), Some(heartbeat)) = (timeout_seconds, heartbeat_seconds) {
        if heartbeat >= timeout {
            return Err(FieldError::invalid(
                "HeartbeatSeconds",
                format!("must be smaller than TimeoutSeconds ({heartbeat} >= {timeout})"),
            ));
        }
    }
    Ok(TaskState {
        resource,
        parameters: parse_template(map, "Parameters")?,
        result_selector: parse_template(map, "ResultSelector")?,
        result_path: parse_result_path(map)?,
        retry: map
            .get("Retry")
            .map(|v| retry::parse_retry(v).map_err(|e| e.within("Retry")))
            .transpose()?
            .unwrap_or_default(),
        catch: map
            .get("Catch")
            .map(|v| retry::parse_catch(v).map_err(|e| e.within("Catch")))
            .transpose()?
            .unwrap_or_default(),
        timeout_seconds,
        heartbeat_seconds,
        transition: parse_transition(map)?,
    })
}

fn parse_map(name: &str, map: &Map<String, Value>) -> Result<MapState, AslError> {
    let at = |e: FieldError| e.at_state(Some(name));
    let processor = match map.get("ItemProcessor") {
        Some(Value::Object(p)) => p,
        Some(_) => {
            return Err(at(FieldError::invalid(
                "ItemProcessor",
                "must be an object with StartAt and States",
            )))
        }
        None => {
            return Err(AslError::MissingField {
                state: Some(name.into()),
                field: "ItemProcessor".into(),
            })
        }
    };
    for key in processor.keys() {
        if !matches!(
            key.as_str(),
            "Comment" | "StartAt" | "States" | "ProcessorConfig"
        ) {
            return Err(AslError::UnknownField {
                state: Some(name.into()),
                field: format!("ItemProcessor.{key}"),
                state_type: "Map".into(),
                allowed: "ItemProcessor: Comment, StartAt, States, ProcessorConfig".into(),
            });
        }
    }
    let mode = match processor.get("ProcessorConfig") {
        None => MapMode::Inline,
        Some(Value::Object(config)) => {
            for key in config.keys() {
                if !matches!(key.as_str(), "Mode" | "ExecutionType") {
                    return Err(at(FieldError::invalid(
                        format!("ItemProcessor.ProcessorConfig.{key}"),
                        "unknown field (allowed: Mode, ExecutionType)",
                    )));
                }
            }
            let mode = match config.get("Mode") {
                None => MapMode::Inline,
                Some(Value::String(m)) if m == "INLINE" => MapMode::Inline,
                Some(Value::String(m)) if m == "DISTRIBUTED" => MapMode::Distributed,
                Some(other) => {
                    return Err(at(FieldError::invalid(
                        "ItemProcessor.ProcessorConfig.Mode",
                        format!("must be \"INLINE\" or \"DISTRIBUTED\", got {other}"),
                    )))
                }
            };
            match (mode, config.get("ExecutionType")) {
                (MapMode::Inline, Some(_)) => {
                    return Err(at(FieldError::invalid(
                        "ItemProcessor.ProcessorConfig.ExecutionType",
                        "only a DISTRIBUTED Map has an ExecutionType",
                    )))
                }
                (MapMode::Distributed, None) => {
                    return Err(at(FieldError::invalid(
                        "ItemProcessor.ProcessorConfig.ExecutionType",
                        "a DISTRIBUTED Map needs ExecutionType \"STANDARD\" or \"EXPRESS\"",
                    )))
                }
                (_, Some(Value::String(t))) if t != "STANDARD" && t != "EXPRESS" => {
                    return Err(at(FieldError::invalid(
                        "ItemProcessor.ProcessorConfig.ExecutionType",
                        format!("must be \"STANDARD\" or \"EXPRESS\", got \"{t}\""),
                    )))
                }
                _ => {}
            }
            mode
        }
        Some(_) => {
            return Err(at(FieldError::invalid(
                "ItemProcessor.ProcessorConfig",
                "must be an object",
            )))
        }
    };
    let processor = parse_machine(processor, Some(name))?;
    let item_reader = match map.get("ItemReader") {
        None => None,
        Some(Value::Object(r)) => {
            if mode == MapMode::Inline {
                return Err(at(FieldError::invalid(
                    "ItemReader",
                    "only a DISTRIBUTED Map reads its items with an ItemReader",
                )));
            }
            for key in r.keys() {
                if !matches!(key.as_str(), "Resource" | "Parameters" | "ReaderConfig") {
                    return Err(at(FieldError::invalid(
                        format!("ItemReader.{key}"),
                        "unknown field (allowed: Resource, Parameters, ReaderConfig)",
                    )));
                }
            }
            let resource = match r.get("Resource") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ => {
                    return Err(at(FieldError::invalid(
                        "ItemReader.Resource",
                        "an ItemReader needs a Resource such as arn:aws:states:::s3:getObject",
                    )))
                }
            };
            let reader_config = r.get("ReaderConfig").cloned().unwrap_or(Value::Null);
            let max_items = match &reader_config {
                Value::Object(c) => integer(c, "MaxItems", 1, 100_000_000)
                    .map_err(|e| at(e.within("ItemReader.ReaderConfig")))?,
                Value::Null => None,
                _ => {
                    return Err(at(FieldError::invalid(
                        "ItemReader.ReaderConfig",
                        "must be an object",
                    )))
                }
            };
            Some(ItemReader {
                resource,
                parameters: parse_template(r, "Parameters")
                    .map_err(|e| at(e.within("ItemReader")))?,
                reader_config,
                max_items,
            })
        }
        Some(_) => return Err(at(FieldError::invalid("ItemReader", "must be an object"))),
    };
    if item_reader.is_some() && map.contains_key("ItemsPath") {
        return Err(at(FieldError::invalid(
            "ItemsPath",
            "a Map that reads its items with an ItemReader cannot also have ItemsPath",
        )));
    }
    if mode == MapMode::Inline {
        for field in [
            "ToleratedFailureCount",
            "ToleratedFailurePercentage",
            "Label",
        ] {
            if map.contains_key(field) {
                return Err(at(FieldError::invalid(
                    field,
                    "only a DISTRIBUTED Map has this field",
                )));
            }
        }
    }
    if map.contains_key("MaxConcurrency") && map.contains_key("MaxConcurrencyPath") {
        return Err(at(FieldError::invalid(
            "MaxConcurrencyPath",
            "a Map state cannot have both MaxConcurrency and MaxConcurrencyPath",
        )));
    }
    let tolerated_failure_percentage = match map.get("ToleratedFailurePercentage") {
        None => None,
        Some(v) => match v.as_f64() {
            Some(p) if (0.0..=100.0).contains(&p) => Some(p),
            _ => {
                return Err(at(FieldError::invalid(
                    "ToleratedFailurePercentage",
                    format!("must be a number from 0 to 100, got {v}"),
                )))
            }
        },
    };
    let label = optional_string(map, "Label").map_err(at)?;
    if let Some(l) = &label {
        if l.chars().count() > 40
            || l.chars()
                .any(|c| c.is_whitespace() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c))
        {
            return Err(at(FieldError::invalid(
                "Label",
                "must be at most 40 characters, without whitespace or any of <>{}[]?*\"#%\\^|~`$&,;:/",
            )));
        }
    }
    Ok(MapState {
        mode,
        processor: Box::new(processor),
        items_path: parse_path_field(map, "ItemsPath").map_err(at)?,
        item_reader,
        item_selector: parse_template(map, "ItemSelector").map_err(at)?,
        max_concurrency: integer(map, "MaxConcurrency", 0, 10_000)
            .map_err(at)?
            .unwrap_or(0),
        max_concurrency_path: parse_path_field(map, "MaxConcurrencyPath").map_err(at)?,
        tolerated_failure_count: integer(map, "ToleratedFailureCount", 0, 100_000_000)
            .map_err(at)?,
        tolerated_failure_percentage,
        label,
        result_selector: parse_template(map, "ResultSelector").map_err(at)?,
        result_path: parse_result_path(map).map_err(at)?,
        retry: map
            .get("Retry")
            .map(|v| retry::parse_retry(v).map_err(|e| e.within("Retry")))
            .transpose()
            .map_err(at)?
            .unwrap_or_default(),
        catch: map
            .get("Catch")
            .map(|v| retry::parse_catch(v).map_err(|e| e.within("Catch")))
            .transpose()
            .map_err(at)?
            .unwrap_or_default(),
        transition: parse_transition(map).map_err(at)?,
    })
}

fn parse_choice(map: &Map<String, Value>) -> Result<ChoiceState, FieldError> {
    let items = match map.get("Choices") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => {
            return Err(FieldError::invalid(
                "Choices",
                "a Choice state requires a non-empty 'Choices' array",
            ))
        }
    };
    let mut choices = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let (rule, next) = choice::parse_rule(item, true).map_err(|e| FieldError {
            field: choice::choice_field(i, &e.field),
            ..e
        })?;
        let Some(next) = next else {
            return Err(FieldError::invalid(
                choice::choice_field(i, "Next"),
                "required: the name of the state to go to",
            ));
        };
        choices.push((rule, next));
    }
    Ok(ChoiceState {
        choices,
        default: optional_string(map, "Default")?,
    })
}

fn parse_wait(map: &Map<String, Value>) -> Result<WaitState, FieldError> {
    let missing = |field: &str| FieldError::invalid(field, "required");
    let present: Vec<&str> = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"]
        .into_iter()
        .filter(|f| map.contains_key(*f))
        .collect();
    if present.len() != 1 {
        return Err(FieldError::invalid(
            present.get(1).copied().unwrap_or("Seconds"),
            "a Wait state needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath",
        ));
    }
    let wait = match present[0] {
        "Seconds" => WaitFor::Seconds(
            integer(map, "Seconds", 0, 99_999_999)?.ok_or_else(|| missing("Seconds"))?,
        ),
        "SecondsPath" => WaitFor::SecondsPath(
            parse_path_field(map, "SecondsPath")?.ok_or_else(|| missing("SecondsPath"))?,
        ),
        "Timestamp" => match map.get("Timestamp") {
            Some(Value::String(s)) => {
                WaitFor::Timestamp(choice::parse_timestamp(s).ok_or_else(|| {
                    FieldError::invalid(
                        "Timestamp",
                        format!("'{s}' is not an RFC 3339 timestamp such as 2016-03-14T01:59:00Z"),
                    )
                })?)
            }
            _ => {
                return Err(FieldError::invalid(
                    "Timestamp",
                    "must be a timestamp string",
                ))
            }
        },
        _ => WaitFor::TimestampPath(
            parse_path_field(map, "TimestampPath")?.ok_or_else(|| missing("TimestampPath"))?,
        ),
    };
    Ok(WaitState {
        wait,
        transition: parse_transition(map)?,
    })
}

/// `Error`/`ErrorPath` or `Cause`/`CausePath` of a Fail state.
fn parse_source(
    map: &Map<String, Value>,
    literal: &str,
    path_field: &str,
) -> Result<Option<Source>, FieldError> {
    match (map.get(literal), map.get(path_field)) {
        (Some(_), Some(_)) => Err(FieldError::invalid(
            path_field,
            format!("a Fail state cannot have both '{literal}' and '{path_field}'"),
        )),
        (Some(Value::String(s)), None) => Ok(Some(Source::Literal(s.clone()))),
        (Some(other), None) => Err(FieldError::invalid(
            literal,
            format!("must be a string, got {other}"),
        )),
        (None, Some(Value::String(text))) => {
            if text.starts_with('$') {
                return ReferencePath::parse(text)
                    .map(|p| Some(Source::Path(p)))
                    .map_err(|m| FieldError::unsupported(path_field, m));
            }
            let call = intrinsics::parse(text).map_err(|e| FieldError {
                field: path_field.to_string(),
                message: e.message,
                unsupported: e.unsupported,
            })?;
            if matches!(
                call.func,
                Func::Array
                    | Func::ArrayLength
                    | Func::JsonMerge
                    | Func::MathAdd
                    | Func::StringSplit
                    | Func::StringToJson
            ) {
                return Err(FieldError::invalid(
                    path_field,
                    format!("{} does not return a string; use a path or States.Format / States.JsonToString / States.ArrayGetItem / States.UUID", call.func.name()),
                ));
            }
            Ok(Some(Source::Intrinsic(call)))
        }
        (None, Some(other)) => Err(FieldError::invalid(
            path_field,
            format!("must be a path or intrinsic string, got {other}"),
        )),
        (None, None) => Ok(None),
    }
}

/// Checks that `StartAt` and every `Next`, `Default` and catcher `Next` name existing states.
fn check_targets(definition: &Definition, raw_states: &Map<String, Value>) -> Result<(), AslError> {
    let exists = |target: &str| definition.states.contains_key(target);
    if !exists(&definition.start_at) {
        return Err(AslError::MissingTarget {
            state: None,
            field: "StartAt".into(),
            target: definition.start_at.clone(),
        });
    }
    let missing = |state: &str, field: String, target: &str| AslError::MissingTarget {
        state: Some(state.to_string()),
        field,
        target: target.to_string(),
    };
    // Iterate in definition order so the first error reported is the first in the text.
    for name in raw_states.keys() {
        let state = &definition.states[name];
        let transition = match &state.kind {
            Kind::Task(t) => Some(&t.transition),
            Kind::Map(m) => Some(&m.transition),
            Kind::Pass(p) => Some(&p.transition),
            Kind::Wait(w) => Some(&w.transition),
            Kind::Choice(_) | Kind::Succeed | Kind::Fail(_) => None,
        };
        if let Some(Transition::Next(next)) = transition {
            if !exists(next) {
                return Err(missing(name, "Next".into(), next));
            }
        }
        let catchers = match &state.kind {
            Kind::Task(task) => &task.catch[..],
            Kind::Map(map) => &map.catch[..],
            _ => &[],
        };
        for (i, catcher) in catchers.iter().enumerate() {
            if !exists(&catcher.next) {
                return Err(missing(name, format!("Catch[{i}].Next"), &catcher.next));
            }
        }
        match &state.kind {
            Kind::Choice(choice_state) => {
                for (i, (_, next)) in choice_state.choices.iter().enumerate() {
                    if !exists(next) {
                        return Err(missing(name, format!("Choices[{i}].Next"), next));
                    }
                }
                if let Some(default) = &choice_state.default {
                    if !exists(default) {
                        return Err(missing(name, "Default".into(), default));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_placeholders() {
        let text =
            r#"{"a": "${One}", "b": "x${Two_2}y ${Three-3} $${Four} ${} ${no space} ${Five"}"#;
        let found: Vec<String> = placeholders(text).into_iter().collect();
        assert_eq!(found, vec!["Four", "One", "Three-3", "Two_2"]);
    }

    #[test]
    fn substitutes_only_known_placeholders() {
        let subs = HashMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(substitute_str("x${A}y${A}", &subs).unwrap(), "x1y1");
        assert_eq!(
            substitute_str("cost $5 ${ A}", &subs).unwrap(),
            "cost $5 ${ A}"
        );
        assert_eq!(substitute_str("${B}", &subs).unwrap_err(), "B");
    }

    #[test]
    fn locates_fields() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            locate(&p(&["States", "X", "Parameters", "a.$"])),
            (Some("X".into()), "Parameters.a.$".into())
        );
        assert_eq!(
            locate(&p(&["States", "X", "Retry", "[0]", "ErrorEquals", "[1]"])),
            (Some("X".into()), "Retry[0].ErrorEquals[1]".into())
        );
        assert_eq!(locate(&p(&["Comment"])), (None, "Comment".into()));
    }
}
