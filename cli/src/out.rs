//! Output: lines on stdout that survive a closed pipe, JSON documents with every key, and errors
//! with stable names.

use ferry::flow::FieldError;
use ferry::model::RunRecord;
use serde_json::{json, Value};
use std::io::Write;

/// `println!` that ends the process quietly when stdout is closed (`ferry runs list X | head -1`).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::write_line(&format!($($arg)*))
    };
}

pub fn write_line(s: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{s}").and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Print a JSON document on stdout.
pub fn json(v: &Value) {
    write_line(&serde_json::to_string_pretty(v).unwrap_or_default());
}

/// A failure with a stable name (`InvalidFlow`, `InvalidArgument`, `NotFound`, `AuthFailed`,
/// `SourceError`, `Fatal`), a message, and for flows the list of problems.
#[derive(Debug)]
pub struct CliError {
    pub name: String,
    pub message: String,
    pub problems: Vec<Problem>,
}

/// One problem of a flow file, with its place in the file when known.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl Problem {
    pub fn new(e: &FieldError, at: Option<(usize, usize)>) -> Self {
        Problem {
            path: e.path.clone(),
            message: e.message.clone(),
            line: at.map(|a| a.0),
            column: at.map(|a| a.1),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CliError {}

impl CliError {
    pub fn new(name: impl Into<String>, message: impl Into<String>) -> Self {
        CliError {
            name: name.into(),
            message: message.into(),
            problems: vec![],
        }
    }
    pub fn invalid_flow(message: impl Into<String>, problems: Vec<Problem>) -> Self {
        CliError {
            name: "InvalidFlow".into(),
            message: message.into(),
            problems,
        }
    }
}

pub fn not_found(message: impl Into<String>) -> anyhow::Error {
    CliError::new("NotFound", message).into()
}

pub fn invalid_argument(message: impl Into<String>) -> anyhow::Error {
    CliError::new("InvalidArgument", message).into()
}

/// The JSON error document: `{"error": {"name", "message", "problems": [...]}}`.
pub fn error_json(e: &anyhow::Error) -> Value {
    let (name, message, problems) = match e.downcast_ref::<CliError>() {
        Some(c) => (c.name.clone(), c.message.clone(), c.problems.clone()),
        None => ("Fatal".to_string(), format!("{e:#}"), vec![]),
    };
    json!({ "error": { "name": name, "message": message, "problems": problems } })
}

/// The keys of a run record, in order, each present in `--json` output (`null` or `[]` when
/// empty), plus `duration_seconds`.
pub fn run_json(r: &RunRecord) -> Value {
    let mut m = match serde_json::to_value(r) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    for k in ["manifest_key", "max_cursor", "watermark_after"] {
        m.entry(k).or_insert(Value::Null);
    }
    // The same error object as every other failure: {"name", "message"}.
    m.insert(
        "error".into(),
        match &r.error {
            Some(e) => json!({ "name": e.error, "message": e.message }),
            None => Value::Null,
        },
    );
    m.entry("warnings").or_insert(json!([]));
    m.insert(
        "duration_seconds".into(),
        json!(duration(r).num_milliseconds() as f64 / 1000.0),
    );
    Value::Object(m)
}

/// How long a run took (so far, for one in progress: until its last update).
pub fn duration(r: &RunRecord) -> chrono::Duration {
    (r.last_updated_at - r.started_at).max(chrono::Duration::zero())
}

/// `1m 05s`, `12.3s`, `2h 04m`.
pub fn human_duration(d: chrono::Duration) -> String {
    let ms = d.num_milliseconds();
    let s = ms / 1000;
    match s {
        _ if s < 60 => format!("{:.1}s", ms as f64 / 1000.0),
        _ if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `41,778`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(41778), "41,778");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(
            human_duration(chrono::Duration::milliseconds(12_340)),
            "12.3s"
        );
        assert_eq!(human_duration(chrono::Duration::seconds(65)), "1m 05s");
        assert_eq!(human_duration(chrono::Duration::seconds(7440)), "2h 04m");
    }
}
