//! Retriers and catchers (`Retry` / `Catch` on Task states).
//!
//! - `ErrorEquals` names are matched exactly; `States.ALL` matches every error, and
//!   `States.TaskFailed` every error except `States.Timeout`. Neither matches
//!   `States.Runtime`, which AWS never retries nor catches.
//! - `States.ALL` must appear alone in its `ErrorEquals`, and only in the last retrier/catcher.
//! - Retriers are scanned in order and the first whose `ErrorEquals` matches applies. Each
//!   retrier counts its own attempts across the whole visit of the state; once that count
//!   reaches `MaxAttempts` the error goes to the catchers (later retriers are not tried).
//! - The wait before retry `n` (0-based, per retrier) is
//!   `min(IntervalSeconds * BackoffRate^n, MaxDelaySeconds)`; with `JitterStrategy: FULL` it
//!   is a uniformly random duration between 0 and that value (in whole milliseconds).

use super::error::{names, FieldError};
use super::path::ReferencePath;
use rand::Rng;
use serde_json::{Map, Value};
use std::time::Duration;

/// `JitterStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    #[default]
    None,
    Full,
}

/// One element of `Retry`.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: u64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<u64>,
    pub jitter: Jitter,
}

/// Where a catcher (or a state) puts its result: `ResultPath`.
#[derive(Debug, Clone, PartialEq)]
pub enum ResultPath {
    /// `"ResultPath": null`: discard the result, keep the raw input.
    Discard,
    /// A reference path into the raw input (`$` replaces it).
    Path(ReferencePath),
}

/// One element of `Catch`.
#[derive(Debug, Clone, PartialEq)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    pub result_path: ResultPath,
}

/// Whether an error name matches an `ErrorEquals` list.
pub fn error_matches(error_equals: &[String], error: &str) -> bool {
    if error == names::RUNTIME {
        return false;
    }
    if error == names::DATA_LIMIT_EXCEEDED {
        // Terminal: only the exact name matches (AWS: States.ALL does not catch it).
        return error_equals.iter().any(|name| name == error);
    }
    error_equals.iter().any(|name| {
        name == error
            || name == names::ALL
            || (name == names::TASK_FAILED && error != names::TIMEOUT)
    })
}

impl Retrier {
    /// The wait before retry number `attempt` (0-based) of this retrier, before jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let mut seconds = self.interval_seconds as f64
            * self.backoff_rate.powi(attempt.min(i32::MAX as u32) as i32);
        if let Some(max) = self.max_delay_seconds {
            seconds = seconds.min(max as f64);
        }
        // Keep Duration::from_secs_f64 away from infinity/overflow (an absurd but valid BackoffRate).
        Duration::from_secs_f64(seconds.clamp(0.0, 1e12))
    }

    /// The wait before retry number `attempt` (0-based), jitter applied.
    pub fn delay(&self, attempt: u32) -> Duration {
        let backoff = self.backoff(attempt);
        match self.jitter {
            Jitter::None => backoff,
            // Millisecond granularity (the resolution of tokio's timer).
            Jitter::Full => {
                let millis = backoff.as_millis().min(u64::MAX as u128) as u64;
                Duration::from_millis(rand::rng().random_range(0..=millis))
            }
        }
    }
}

fn error_equals(map: &Map<String, Value>, is_last: bool) -> Result<Vec<String>, FieldError> {
    let Some(Value::Array(items)) = map.get("ErrorEquals") else {
        return Err(FieldError::invalid(
            "ErrorEquals",
            "required: a non-empty array of error names",
        ));
    };
    if items.is_empty() {
        return Err(FieldError::invalid("ErrorEquals", "must not be empty"));
    }
    let mut names_out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::String(name) = item else {
            return Err(FieldError::invalid(
                format!("ErrorEquals[{i}]"),
                "must be a string",
            ));
        };
        names_out.push(name.clone());
    }
    if names_out.iter().any(|n| n == names::ALL) {
        if names_out.len() != 1 {
            return Err(FieldError::invalid(
                "ErrorEquals",
                "States.ALL must appear alone in ErrorEquals",
            ));
        }
        if !is_last {
            return Err(FieldError::invalid(
                "ErrorEquals",
                "States.ALL may only appear in the last retrier or catcher",
            ));
        }
    }
    Ok(names_out)
}

fn check_fields(map: &Map<String, Value>, allowed: &[&str]) -> Result<(), FieldError> {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(FieldError::invalid(
                key.as_str(),
                format!("unknown field (allowed: {})", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

/// Reads an optional integer field in `[min, max]`.
pub(super) fn integer(
    map: &Map<String, Value>,
    field: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, FieldError> {
    match map.get(field) {
        None => Ok(None),
        Some(value) => match value.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(FieldError::invalid(
                field,
                format!("must be an integer from {min} to {max}, got {value}"),
            )),
        },
    }
}

/// Parses the `Retry` array. Field names in errors are relative to it (e.g. `[1].MaxAttempts`).
pub fn parse_retry(value: &Value) -> Result<Vec<Retrier>, FieldError> {
    let Value::Array(items) = value else {
        return Err(FieldError::invalid("", "must be an array of retriers"));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let retrier =
            parse_retrier(item, i + 1 == items.len()).map_err(|e| e.within(&format!("[{i}]")))?;
        out.push(retrier);
    }
    Ok(out)
}

fn parse_retrier(value: &Value, is_last: bool) -> Result<Retrier, FieldError> {
    let Value::Object(map) = value else {
        return Err(FieldError::invalid("", "a retrier must be a JSON object"));
    };
    check_fields(
        map,
        &[
            "ErrorEquals",
            "IntervalSeconds",
            "MaxAttempts",
            "BackoffRate",
            "MaxDelaySeconds",
            "JitterStrategy",
            "Comment",
        ],
    )?;
    let error_equals = error_equals(map, is_last)?;
    let interval_seconds = integer(map, "IntervalSeconds", 1, 99_999_999)?.unwrap_or(1);
    let max_attempts = integer(map, "MaxAttempts", 0, 99_999_999)?.unwrap_or(3) as u32;
    let max_delay_seconds = integer(map, "MaxDelaySeconds", 1, 31_622_400)?;
    let backoff_rate = match map.get("BackoffRate") {
        None => 2.0,
        Some(v) => match v.as_f64() {
            Some(rate) if rate >= 1.0 && rate.is_finite() => rate,
            _ => {
                return Err(FieldError::invalid(
                    "BackoffRate",
                    format!("must be a number >= 1.0, got {v}"),
                ))
            }
        },
    };
    let jitter = match map.get("JitterStrategy") {
        None => Jitter::None,
        Some(Value::String(s)) if s == "NONE" => Jitter::None,
        Some(Value::String(s)) if s == "FULL" => Jitter::Full,
        Some(v) => {
            return Err(FieldError::invalid(
                "JitterStrategy",
                format!("must be \"FULL\" or \"NONE\", got {v}"),
            ))
        }
    };
    Ok(Retrier {
        error_equals,
        interval_seconds,
        max_attempts,
        backoff_rate,
        max_delay_seconds,
        jitter,
    })
}

/// Parses a `ResultPath` value (a reference path not starting with `$$`, or null).
pub fn parse_result_path(value: &Value) -> Result<ResultPath, FieldError> {
    match value {
        Value::Null => Ok(ResultPath::Discard),
        Value::String(text) => {
            let path = ReferencePath::parse(text).map_err(|m| FieldError::unsupported("", m))?;
            if path.root() == super::path::Root::Context {
                return Err(FieldError::invalid(
                    "",
                    "ResultPath must not begin with '$$' (the context object is read-only)",
                ));
            }
            Ok(ResultPath::Path(path))
        }
        other => Err(FieldError::invalid(
            "",
            format!("must be a path string or null, got {other}"),
        )),
    }
}

/// Parses the `Catch` array. Field names in errors are relative to it (e.g. `[0].Next`).
pub fn parse_catch(value: &Value) -> Result<Vec<Catcher>, FieldError> {
    let Value::Array(items) = value else {
        return Err(FieldError::invalid("", "must be an array of catchers"));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let catcher =
            parse_catcher(item, i + 1 == items.len()).map_err(|e| e.within(&format!("[{i}]")))?;
        out.push(catcher);
    }
    Ok(out)
}

fn parse_catcher(value: &Value, is_last: bool) -> Result<Catcher, FieldError> {
    let Value::Object(map) = value else {
        return Err(FieldError::invalid("", "a catcher must be a JSON object"));
    };
    check_fields(map, &["ErrorEquals", "Next", "ResultPath", "Comment"])?;
    let error_equals = error_equals(map, is_last)?;
    let next = match map.get("Next") {
        Some(Value::String(next)) => next.clone(),
        _ => {
            return Err(FieldError::invalid(
                "Next",
                "required: the name of the state to go to",
            ))
        }
    };
    let result_path = match map.get("ResultPath") {
        None => ResultPath::Path(ReferencePath::whole_input()),
        Some(v) => parse_result_path(v).map_err(|e| e.within("ResultPath"))?,
    };
    Ok(Catcher {
        error_equals,
        next,
        result_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn retrier(v: Value) -> Retrier {
        parse_retry(&json!([v])).unwrap().remove(0)
    }

    #[test]
    fn defaults_match_the_documentation() {
        let r = retrier(json!({"ErrorEquals": ["X"]}));
        assert_eq!(
            (
                r.interval_seconds,
                r.max_attempts,
                r.backoff_rate,
                r.max_delay_seconds,
                r.jitter
            ),
            (1, 3, 2.0, None, Jitter::None)
        );
        assert_eq!(r.backoff(0), Duration::from_secs(1));
        assert_eq!(r.backoff(1), Duration::from_secs(2));
        assert_eq!(r.backoff(2), Duration::from_secs(4));
    }

    #[test]
    fn backoff_and_max_delay() {
        // Spec: IntervalSeconds 3, BackoffRate 2 -> waits 3 and 6; with MaxDelaySeconds 4 -> 3 and 4.
        let r = retrier(
            json!({"ErrorEquals": ["States.Timeout"], "IntervalSeconds": 3, "MaxAttempts": 2, "BackoffRate": 2.0}),
        );
        assert_eq!(
            (r.backoff(0), r.backoff(1)),
            (Duration::from_secs(3), Duration::from_secs(6))
        );
        let r = retrier(
            json!({"ErrorEquals": ["States.Timeout"], "IntervalSeconds": 3, "MaxAttempts": 2, "BackoffRate": 2.0, "MaxDelaySeconds": 4}),
        );
        assert_eq!(
            (r.backoff(0), r.backoff(1)),
            (Duration::from_secs(3), Duration::from_secs(4))
        );
        // Docs: IntervalSeconds 3, BackoffRate 1.5 -> 3 and 4.5 seconds.
        let r = retrier(
            json!({"ErrorEquals": ["X"], "IntervalSeconds": 3, "MaxAttempts": 2, "BackoffRate": 1.5}),
        );
        assert_eq!(r.backoff(1), Duration::from_millis(4500));
        let r = retrier(json!({"ErrorEquals": ["X"], "BackoffRate": 1e300}));
        assert!(r.backoff(u32::MAX) > Duration::from_secs(1_000_000));
    }

    #[test]
    fn full_jitter_stays_within_bounds() {
        let r =
            retrier(json!({"ErrorEquals": ["X"], "IntervalSeconds": 2, "JitterStrategy": "FULL"}));
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..200 {
            let d = r.delay(2);
            assert!(d <= Duration::from_secs(8), "{d:?}");
            distinct.insert(d);
        }
        assert!(distinct.len() > 1, "FULL jitter should randomize");
    }

    #[test]
    fn error_name_matching() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(error_matches(
            &list(&["Throttled", "Retryable"]),
            "Retryable"
        ));
        assert!(!error_matches(&list(&["Throttled"]), "throttled"));
        assert!(error_matches(&list(&["States.ALL"]), "States.Timeout"));
        assert!(error_matches(&list(&["States.ALL"]), "Anything"));
        assert!(!error_matches(&list(&["States.ALL"]), "States.Runtime"));
        assert!(!error_matches(&list(&["States.Runtime"]), "States.Runtime"));
        assert!(error_matches(
            &list(&["States.TaskFailed"]),
            "Lambda.Unknown"
        ));
        assert!(!error_matches(
            &list(&["States.TaskFailed"]),
            "States.Timeout"
        ));
        assert!(error_matches(&list(&["States.Timeout"]), "States.Timeout"));
    }

    #[test]
    fn validation_errors_name_the_field() {
        let e = parse_retry(&json!([{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]))
            .unwrap_err();
        assert_eq!(e.field, "[0].ErrorEquals");
        let e = parse_retry(&json!([{"ErrorEquals": ["States.ALL", "X"]}])).unwrap_err();
        assert!(e.message.contains("alone"));
        let e = parse_retry(&json!([{"ErrorEquals": ["X"], "IntervalSeconds": 0}])).unwrap_err();
        assert_eq!(e.field, "[0].IntervalSeconds");
        let e = parse_retry(&json!([{"ErrorEquals": ["X"], "BackoffRate": 0.5}])).unwrap_err();
        assert_eq!(e.field, "[0].BackoffRate");
        let e =
            parse_retry(&json!([{"ErrorEquals": ["X"], "JitterStrategy": "HALF"}])).unwrap_err();
        assert_eq!(e.field, "[0].JitterStrategy");
        let e = parse_retry(&json!([{"ErrorEquals": []}])).unwrap_err();
        assert_eq!(e.field, "[0].ErrorEquals");
        let e = parse_retry(&json!([{"ErrorEquals": ["X"], "MaxAttempt": 1}])).unwrap_err();
        assert_eq!(e.field, "[0].MaxAttempt");
        let e = parse_catch(&json!([{"ErrorEquals": ["X"]}])).unwrap_err();
        assert_eq!(e.field, "[0].Next");
        let e = parse_catch(&json!([{"ErrorEquals": ["X"], "Next": "A", "ResultPath": "$$.x"}]))
            .unwrap_err();
        assert_eq!(e.field, "[0].ResultPath");
        let c =
            parse_catch(&json!([{"ErrorEquals": ["X"], "Next": "A", "ResultPath": null}])).unwrap();
        assert_eq!(c[0].result_path, ResultPath::Discard);
    }
}
