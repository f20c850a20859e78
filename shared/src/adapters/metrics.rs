//! CloudWatch metrics as embedded-metric-format (EMF) log lines: a JSON line on stdout that
//! CloudWatch Logs turns into metrics. Namespace `ferry`, dimension `FlowName`; metrics
//! `RunsStarted` (start-run), `RunsSucceeded`, `RunsFailed`, `RunTimeMs`, `RecordsProcessed`,
//! `BytesWritten` (finalize).
//!
//! The Lambda functions' `Deps` carry [`Emf::stdout`]; the embedded engine's carry
//! [`crate::ports::NoMetrics`] (the CLI's stdout carries its own output).

use crate::model::{RunRecord, RunStatus};
use crate::ports::Metrics;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub const NAMESPACE: &str = "ferry";
pub const DIMENSION: &str = "FlowName";

type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// The metrics port as EMF lines: on stdout in Lambda ([`Emf::stdout`]), where CloudWatch Logs
/// turns them into metrics; to any sink in tests.
#[derive(Clone)]
pub struct Emf {
    sink: Sink,
}

impl Emf {
    pub fn new(sink: Sink) -> Self {
        Emf { sink }
    }
    /// Print metric lines on stdout (what CloudWatch Logs reads in Lambda).
    pub fn stdout() -> Self {
        Emf::new(Arc::new(|line: &str| println!("{line}")))
    }
}

impl Metrics for Emf {
    fn run_started(&self, flow: &str, at: DateTime<Utc>) {
        (self.sink)(&emf_line(flow, at, &[("RunsStarted", "Count", 1.0)]));
    }
    fn run_finished(&self, run: &RunRecord) {
        (self.sink)(&run_finished_line(run));
    }
}

/// One EMF document: `metrics` are (name, unit, value).
pub fn emf_line(flow: &str, time: DateTime<Utc>, metrics: &[(&str, &str, f64)]) -> String {
    let defs: Vec<Value> = metrics
        .iter()
        .map(|(name, unit, _)| json!({"Name": name, "Unit": unit}))
        .collect();
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": time.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[DIMENSION]],
                "Metrics": defs,
            }]
        }),
    );
    doc.insert(DIMENSION.into(), json!(flow));
    for (name, _, v) in metrics {
        doc.insert((*name).into(), json!(v));
    }
    Value::Object(doc).to_string()
}

/// The metrics of a finished run (success or failure), as finalize reports them.
pub fn run_finished_line(rec: &RunRecord) -> String {
    let ok = rec.status == RunStatus::Successful;
    let ms = (rec.last_updated_at - rec.started_at)
        .num_milliseconds()
        .max(0) as f64;
    emf_line(
        &rec.flow,
        rec.last_updated_at,
        &[
            ("RunsSucceeded", "Count", if ok { 1.0 } else { 0.0 }),
            ("RunsFailed", "Count", if ok { 0.0 } else { 1.0 }),
            ("RunTimeMs", "Milliseconds", ms),
            ("RecordsProcessed", "Count", rec.records_processed as f64),
            ("BytesWritten", "Bytes", rec.bytes_written as f64),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PullMode, TriggerType, Window};

    fn rec(status: RunStatus) -> RunRecord {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        RunRecord {
            run_id: "r1".into(),
            flow: "crm".into(),
            flow_version: 1,
            execution_id: "x".into(),
            status,
            trigger: TriggerType::Scheduled,
            mode: PullMode::Incremental,
            started_at: t0,
            last_updated_at: t0 + chrono::Duration::milliseconds(1500),
            window: Window {
                start: None,
                end: t0,
            },
            records_processed: 42,
            records_filtered: 0,
            records_rejected: 0,
            records_written: 40,
            bytes_processed: 0,
            bytes_written: 1234,
            files_written: 1,
            chunks: 1,
            schema_version: 1,
            manifest_key: None,
            max_cursor: None,
            watermark_after: None,
            warnings: vec![],
            error: None,
        }
    }

    #[test]
    fn finished_run_is_one_emf_document() {
        let v: Value =
            serde_json::from_str(&run_finished_line(&rec(RunStatus::Successful))).unwrap();
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "ferry");
        assert_eq!(cw["Dimensions"], json!([["FlowName"]]));
        let names: Vec<&str> = cw["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "RunsSucceeded",
                "RunsFailed",
                "RunTimeMs",
                "RecordsProcessed",
                "BytesWritten"
            ]
        );
        assert_eq!(v["FlowName"], "crm");
        assert_eq!(v["RunsSucceeded"], 1.0);
        assert_eq!(v["RunsFailed"], 0.0);
        assert_eq!(v["RunTimeMs"], 1500.0);
        assert_eq!(v["RecordsProcessed"], 42.0);
        assert_eq!(v["BytesWritten"], 1234.0);
        assert_eq!(v["_aws"]["Timestamp"], 1767225601500i64);
        // Every metric named in the directive has a value in the document.
        for n in names {
            assert!(v[n].is_number(), "{n}");
        }
        let f: Value = serde_json::from_str(&run_finished_line(&rec(RunStatus::Error))).unwrap();
        assert_eq!(
            (f["RunsSucceeded"].as_f64(), f["RunsFailed"].as_f64()),
            (Some(0.0), Some(1.0))
        );
    }
}
