//! Domain records shared by the steps and the stores: windows, run records (AppFlow's execution
//! record fields), flow state, per-chunk results and the run manifest.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The slice of source time a run reads: `(start, end]`. `start: None` reads from the beginning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start: Option<DateTime<Utc>>,
    pub end: DateTime<Utc>,
}

impl Window {
    /// Whether a record's cursor value falls in the window: `start < t <= end`.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start.is_none_or(|s| t > s) && t <= self.end
    }
}

/// How a run picks its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PullMode {
    /// `(watermark - lookback, now - offset]`, then the watermark moves to the window's end.
    #[default]
    Incremental,
    /// Everything; the watermark is not used.
    Complete,
    /// An explicit window given by the caller; the watermark does not move.
    Backfill,
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TriggerType {
    #[default]
    OnDemand,
    Scheduled,
    Event,
}

impl TriggerType {
    /// AppFlow's `triggerType` spelling, used in run report events.
    pub fn appflow_name(self) -> &'static str {
        match self {
            TriggerType::OnDemand => "OnDemand",
            TriggerType::Scheduled => "Scheduled",
            TriggerType::Event => "Event",
        }
    }
}

/// AppFlow's `executionStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    InProgress,
    Successful,
    Error,
    CancelStarted,
    Canceled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::InProgress => "InProgress",
            RunStatus::Successful => "Successful",
            RunStatus::Error => "Error",
            RunStatus::CancelStarted => "CancelStarted",
            RunStatus::Canceled => "Canceled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "InProgress" => RunStatus::InProgress,
            "Successful" => RunStatus::Successful,
            "Error" => RunStatus::Error,
            "CancelStarted" => RunStatus::CancelStarted,
            "Canceled" => RunStatus::Canceled,
            _ => return None,
        })
    }
}

/// Why a run failed (AppFlow's `errorInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// The stable error name (`Throttled`, `AuthFailed`, ...).
    pub error: String,
    pub message: String,
}

/// One run of a flow: AppFlow's execution record plus ferry's counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub flow: String,
    pub flow_version: u32,
    /// The state machine execution that runs it (ARN in AWS, an id locally).
    pub execution_id: String,
    pub status: RunStatus,
    pub trigger: TriggerType,
    pub mode: PullMode,
    pub started_at: DateTime<Utc>,
    pub last_updated_at: DateTime<Utc>,
    /// `dataPullStartTime` / `dataPullEndTime`: the window read.
    pub window: Window,
    #[serde(default)]
    pub records_processed: u64,
    #[serde(default)]
    pub records_filtered: u64,
    #[serde(default)]
    pub records_rejected: u64,
    #[serde(default)]
    pub records_written: u64,
    #[serde(default)]
    pub bytes_processed: u64,
    #[serde(default)]
    pub bytes_written: u64,
    #[serde(default)]
    pub files_written: u64,
    #[serde(default)]
    pub chunks: u32,
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_key: Option<String>,
    /// Highest cursor value seen (the incremental field), for information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cursor: Option<DateTime<Utc>>,
    /// The watermark after this run, if it moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_after: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
}

/// The run lease: at most one run of a flow at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub run_id: String,
    pub expires_at: DateTime<Utc>,
    /// Who runs it, for the embedded engine: `local:<host>:<pid>`; a local run whose process
    /// is gone is detected by it. `None` on AWS (the execution is the holder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

/// Per-flow mutable state, changed only by conditional writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FlowState {
    pub flow: String,
    /// End of the last committed incremental window.
    pub watermark: Option<DateTime<Utc>>,
    pub lease: Option<Lease>,
    /// Output schema version; bumps when the written schema changes.
    pub schema_version: u32,
    /// Fingerprint (and description) of the schema that `schema_version` names.
    pub schema: Option<serde_json::Value>,
    pub consecutive_failures: u32,
    pub last_run_id: Option<String>,
}

/// Which step a chunk result comes from. Each step writes its own, keyed by (run, chunk, stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkStage {
    Fetch,
    Transform,
    Write,
}

impl ChunkStage {
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkStage::Fetch => "fetch",
            ChunkStage::Transform => "transform",
            ChunkStage::Write => "write",
        }
    }
}

/// One object written to the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputObject {
    /// Full location: `s3://bucket/key` or a local path.
    pub uri: String,
    /// Key relative to the destination root.
    pub key: String,
    pub format: String,
    pub rows: u64,
    pub bytes: u64,
    pub schema_version: u32,
}

/// A step's result for one chunk, stored idempotently by (run_id, chunk, stage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkResult {
    pub run_id: String,
    pub chunk: u32,
    pub stage: ChunkStage,
    #[serde(default)]
    pub records: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub filtered: u64,
    #[serde(default)]
    pub rejected: u64,
    #[serde(default)]
    pub max_cursor: Option<DateTime<Utc>>,
    #[serde(default)]
    pub files: Vec<OutputObject>,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Schema of the rows this chunk wrote (Arrow schema as JSON), for the run's schema check.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
}

/// The commit marker: every object a run wrote. Readers ignore objects no manifest lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub flow: String,
    pub flow_version: u32,
    pub run_id: String,
    pub execution_id: String,
    pub window: Window,
    pub mode: PullMode,
    pub schema_version: u32,
    pub records_written: u64,
    pub bytes_written: u64,
    pub committed_at: DateTime<Utc>,
    pub objects: Vec<OutputObject>,
    /// The Arrow schema the objects were written with (`schema::schema_to_json`), so the
    /// catalog can be rebuilt from manifests alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// A slice's own manifest (`source.slice.commit: slice`): the slice's index in its run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<u32>,
    /// A run's manifest when its slices committed on their own: their manifests' keys. Each
    /// object is listed by exactly one manifest (a slice's, or the run's `objects`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<String>,
}

/// One slice committed on its own (`source.slice.commit: slice`), kept in the flow's state
/// while it matters: until the watermark passes it (incremental), or until a backfill over its
/// window commits. The next run reads around it, so its records are never read twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedSlice {
    pub run_id: String,
    pub index: u32,
    /// The run's mode: an incremental run's slices matter to incremental runs, a backfill's to
    /// backfills.
    pub mode: PullMode,
    /// The part of the window the slice read: `(start, end]`.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The slice's manifest (a key under the destination).
    pub manifest: String,
    pub records: u64,
}

/// The committed slices of a flow with the revision they are at (each change is a new
/// revision, written only over the one it read).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SliceLedger {
    pub rev: u64,
    pub slices: Vec<CommittedSlice>,
}

/// AppFlow's run report detail fields, under ferry's names for ferry's things.
/// What a run report says of the flow (AppFlow's `source`, `source-object`, `destination`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedFlow {
    pub name: String,
    pub connector: String,
    pub entity: String,
    /// `s3://bucket/prefix` or a local directory.
    pub destination: String,
}

pub fn report_detail(
    flow: &ReportedFlow,
    rec: &RunRecord,
    end: Option<chrono::DateTime<chrono::Utc>>,
) -> serde_json::Value {
    let status = match (&rec.status, &rec.error) {
        (RunStatus::Successful, _) => "Execution Successful".to_string(),
        (RunStatus::InProgress, _) => "InProgress".to_string(),
        (_, Some(e)) => format!("{}: {}", e.error, e.message),
        (s, None) => s.as_str().to_string(),
    };
    json!({
        "flow-name": flow.name,
        "flow-version": rec.flow_version,
        "execution-id": rec.execution_id,
        "run-id": rec.run_id,
        "source": flow.connector,
        "source-object": flow.entity,
        "destination": flow.destination,
        "trigger-type": rec.trigger.appflow_name(),
        "start-time": rec.started_at.to_rfc3339(),
        "end-time": end.map(|t| t.to_rfc3339()),
        "incremental-transfer-time-range": {
            "start": rec.window.start.map(|t| t.to_rfc3339()),
            "end": rec.window.end.to_rfc3339(),
        },
        "num-of-records-processed": rec.records_processed,
        "num-of-records-filtered": rec.records_filtered,
        "num-of-record-failures": rec.records_rejected,
        "num-of-records-written": rec.records_written,
        "data-processed": rec.bytes_processed,
        "data-written": rec.bytes_written,
        "status": status,
        "warnings": rec.warnings.len(),
        "error": rec.error.as_ref().map(|e| json!({"name": e.error, "message": e.message})),
    })
}

/// A datetime value: RFC 3339 text (or `YYYY-MM-DD HH:MM:SS` in UTC), or epoch
/// seconds/milliseconds ([`crate::time::time`]).
pub fn parse_time(v: &serde_json::Value) -> Option<DateTime<Utc>> {
    crate::time::time(v)
}
