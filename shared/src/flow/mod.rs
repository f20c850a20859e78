//! Flow definitions: the model a user writes (YAML or JSON), parsing with field paths in every
//! error, and validation into a flow the steps can trust.
//!
//! The format is documented in `docs/flows.md`; keep the two in step.

pub mod catalog;
pub mod collect;
pub mod schedule;
pub mod tasks;
pub mod time;

use crate::model::PullMode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub use tasks::TaskSpec;

/// One problem in a flow definition: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `source.incremental.lookback` or `tasks[2].mask.field`.
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a flow definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("{origin}: not valid {format}: {message}")]
    Syntax {
        origin: String,
        format: &'static str,
        message: String,
    },
    #[error("{origin}: invalid flow:\n{}", list(.errors))]
    Invalid {
        origin: String,
        errors: Vec<FieldError>,
    },
}

impl FlowError {
    pub fn errors(&self) -> Vec<FieldError> {
        match self {
            FlowError::Syntax { message, .. } => vec![FieldError::new("", message.clone())],
            FlowError::Invalid { errors, .. } => errors.clone(),
        }
    }
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A flow as the user writes it. Unknown fields are refused everywhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub source: SourceConfig,
    pub destination: DestinationConfig,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskSpec>,
    #[serde(default)]
    pub trigger: Trigger,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `salesforce | zendesk | servicenow | hubspot | slack | rest | sample`.
    pub connector: String,
    /// Connector profile: names the secret holding credentials. None for `sample`.
    #[serde(default)]
    pub profile: Option<String>,
    /// The object read: `accounts`, `Account`, `tickets`, ...
    pub entity: String,
    /// Connector-specific settings, checked by the connector.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub properties: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<IncrementalConfig>,
    /// How much one fetch-page invocation pulls before handing over.
    #[serde(default)]
    pub chunk: ChunkBudget,
    /// At most this many slices of a run read at once (default: the connector's, from its API
    /// limits; docs/flows.md "Slices").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// How a run's window is cut into slices read in parallel (default: one slice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<SliceConfig>,
}

/// `source.slice`: size hints for cutting a run's window into slices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceConfig {
    /// Cut the window into this many slices of equal length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Cut until a slice holds at most about this many records (sources that can count; the
    /// others cut by `count` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// `run` (default): the run commits once, after every slice. `slice`: each slice commits
    /// on its own as it ends (its own manifest), the watermark follows the committed prefix,
    /// and a failed run's next run reads only the slices that did not commit.
    #[serde(default, skip_serializing_if = "SliceCommit::is_run")]
    pub commit: SliceCommit,
}

/// `source.slice.commit`: when a sliced run's output becomes committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SliceCommit {
    /// Once, after every slice ended (one manifest).
    #[default]
    Run,
    /// Each slice as it ends (a manifest per slice); a failed run resumes from the rest.
    Slice,
}

impl SliceCommit {
    fn is_run(&self) -> bool {
        *self == SliceCommit::Run
    }
}

impl SliceConfig {
    /// The most slices one run may have.
    pub const MAX_SLICES: u32 = 10_000;
    /// The most slices of a run that commits per slice (each committed slice is kept in the
    /// flow's state until the watermark passes it).
    pub const MAX_COMMITTED_SLICES: u32 = 1_000;

    /// The most slices a run with these settings is cut into (`records` halves slices up to
    /// it): a run that commits per slice keeps each committed slice in the flow's state item,
    /// which must stay far below DynamoDB's 400 KB item limit.
    pub fn max_slices(&self) -> u32 {
        match self.commit {
            SliceCommit::Run => Self::MAX_SLICES,
            SliceCommit::Slice => Self::MAX_COMMITTED_SLICES,
        }
    }
    /// The most slices read at once (a Distributed Map runs up to 10,000 child executions).
    pub const MAX_PARALLELISM: u32 = 1_000;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementalConfig {
    /// The datetime field that drives the window.
    pub field: String,
    /// Re-read this much before the watermark, for late-arriving updates (`10m`, `1h`).
    #[serde(
        default,
        with = "duration_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub lookback: Option<Duration>,
    /// First run starts here; default 30 days before the first run.
    #[serde(
        default,
        with = "time::opt_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub first_execution_from: Option<DateTime<Utc>>,
    /// Windows end this long before now (AppFlow's scheduleOffset), for sources that index late.
    #[serde(
        default,
        with = "duration_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub offset: Option<Duration>,
}

/// The chunk budget: a fetch-page invocation stops at whichever limit comes first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkBudget {
    #[serde(default = "ChunkBudget::default_records")]
    pub records: u64,
    #[serde(default = "ChunkBudget::default_megabytes")]
    pub megabytes: u64,
    #[serde(default = "ChunkBudget::default_seconds")]
    pub seconds: u64,
    /// Records per source page, where the source lets us choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
}

impl ChunkBudget {
    /// Upper bounds, from the functions' measured memory and timeouts (docs/deploy.md,
    /// "Function sizing"): a chunk of at most [`Self::MAX_MEGABYTES`] of source data fits
    /// fetch-page's memory with headroom, and [`Self::MAX_SECONDS`] leaves fetch-page (840 s)
    /// time to finish the page in flight and stage the chunk.
    pub const MAX_RECORDS: u64 = 2_000_000;
    pub const MAX_MEGABYTES: u64 = 192;
    pub const MAX_SECONDS: u64 = 720;

    fn default_records() -> u64 {
        250_000
    }
    fn default_megabytes() -> u64 {
        128
    }
    fn default_seconds() -> u64 {
        600
    }
}

impl Default for ChunkBudget {
    fn default() -> Self {
        ChunkBudget {
            records: Self::default_records(),
            megabytes: Self::default_megabytes(),
            seconds: Self::default_seconds(),
            page_size: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Parquet,
    Csv,
    Jsonl,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
    pub fn as_str(self) -> &'static str {
        self.extension()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Zstd,
    Snappy,
    Gzip,
}

/// Where objects go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// A local directory (relative to the current directory).
    Local {
        path: String,
    },
    S3(S3Location),
}

impl Location {
    /// `s3://bucket/prefix` or a local path.
    pub fn parse(s: &str) -> Location {
        match s.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                Location::S3(S3Location {
                    bucket: bucket.to_string(),
                    prefix: prefix.trim_matches('/').to_string(),
                    kms_key_id: None,
                    bucket_owner_full_control: false,
                })
            }
            None => Location::Local {
                path: s.to_string(),
            },
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local { path } => f.write_str(path),
            Location::S3(s) if s.prefix.is_empty() => write!(f, "s3://{}", s.bucket),
            Location::S3(s) => write!(f, "s3://{}/{}", s.bucket, s.prefix),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Location {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    /// SSE-KMS key (id, alias or ARN); SSE-S3 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub bucket_owner_full_control: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// A local directory (the embedded default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Location>,
    #[serde(default)]
    pub format: Format,
    /// Default: zstd for Parquet, none for CSV and JSON lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    #[serde(default)]
    pub layout: Layout,
    /// Target object size; files roll over past it. Default 128.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size_mb: Option<u64>,
    /// One object per partition per run.
    #[serde(default)]
    pub single_file: bool,
    /// `none`: every chunk writes its own files (rolled over at `file_size_mb`), no rows are
    /// carried between chunks. Default: rows are carried until a file reaches `file_size_mb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<Aggregation>,
    /// Keep source types in Parquet (default); `false` writes every column as a string.
    #[serde(default = "yes")]
    pub preserve_source_types: bool,
    /// Where rejected records go: `s3://bucket/prefix` or a local directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_location: Option<String>,
    /// What rejected records do to the run (AppFlow's error handling): `continue` (default:
    /// counted, reported, kept at `error_location` when set) or `fail` (the first rejected
    /// record fails the run; nothing is committed).
    #[serde(default, skip_serializing_if = "OnRejected::is_default")]
    pub on_rejected: OnRejected,
    /// Fail the run (nothing committed, the watermark kept) when more records than this are
    /// rejected: a count (`100`) or a share of the records read (`"5%"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rejected: Option<RejectLimit>,
    /// Let `local` and a local `error_location` name a directory outside the working directory
    /// (an absolute path or one that climbs out with `..`). Refused by default, as an S3 prefix
    /// with `..` is.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_outside: bool,
    #[serde(default)]
    pub parquet: ParquetOptions,
    #[serde(default)]
    pub csv: CsvOptions,
    /// Register the output as a table in the data catalog (Glue on AWS, a file locally).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<catalog::CatalogConfig>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnRejected {
    #[default]
    Continue,
    Fail,
}

impl OnRejected {
    fn is_default(&self) -> bool {
        *self == OnRejected::Continue
    }
}

/// `max_rejected`: a count or a percentage of the records read.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RejectLimit {
    Count(u64),
    /// `"5%"`.
    Share(#[serde(with = "percent")] f64),
}

impl RejectLimit {
    /// Whether `rejected` of `read` records passes the limit.
    pub fn exceeded(&self, rejected: u64, read: u64) -> bool {
        match *self {
            RejectLimit::Count(n) => rejected > n,
            RejectLimit::Share(p) => read > 0 && (rejected as f64) * 100.0 > p * read as f64,
        }
    }
}

impl std::fmt::Display for RejectLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RejectLimit::Count(n) => write!(f, "{n} records"),
            RejectLimit::Share(p) => write!(f, "{p}% of the records read"),
        }
    }
}

mod percent {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(p: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{p}%"))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let text = String::deserialize(d)?;
        text.trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<f64>().ok())
            .filter(|p| (0.0..=100.0).contains(p))
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "'{text}' is not a percentage; write a count (`100`) or a share of the records read (`\"5%\"`)"
                ))
            })
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl DestinationConfig {
    /// The output location (validated: exactly one of `local` and `s3`).
    pub fn location(&self) -> Location {
        match (&self.local, &self.s3) {
            (_, Some(s3)) => Location::S3(s3.clone()),
            (Some(path), None) => Location::Local { path: path.clone() },
            (None, None) => Location::Local {
                path: "ferry-out".into(),
            },
        }
    }
    pub fn error_location(&self) -> Option<Location> {
        self.error_location.as_deref().map(Location::parse)
    }
    pub fn compression(&self) -> Compression {
        self.compression.unwrap_or(match self.format {
            Format::Parquet => Compression::Zstd,
            Format::Csv | Format::Jsonl => Compression::None,
        })
    }
    pub fn target_file_bytes(&self) -> Option<u64> {
        if self.single_file {
            None
        } else {
            Some(self.file_size_mb.unwrap_or(128) * 1024 * 1024)
        }
    }
    /// How objects are sized (validated: `single_file` and `aggregation: none` exclude each other).
    pub fn sizing(&self) -> Sizing {
        let target = self.file_size_mb.unwrap_or(128) * 1024 * 1024;
        match (self.single_file, self.aggregation) {
            (true, _) => Sizing::SingleFile,
            (false, Some(Aggregation::None)) => Sizing::PerChunk(target),
            (false, _) => Sizing::Target(target),
        }
    }
}

/// AppFlow's `aggregationConfig.aggregationType` (plus ferry's per-run file size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Files per chunk, no carrying between chunks.
    None,
    /// Rows carried between chunks until a file reaches `file_size_mb` (the default).
    TargetSize,
}

/// How a run's rows are cut into objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizing {
    /// Each chunk writes its rows, files rolled over at this many bytes.
    PerChunk(u64),
    /// Files of about this many bytes across the run; the last one of each partition is smaller.
    Target(u64),
    /// One object per partition per run.
    SingleFile,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetOptions {
    /// Rows per row group.
    #[serde(default = "ParquetOptions::default_row_group")]
    pub row_group_size: usize,
}

impl ParquetOptions {
    fn default_row_group() -> usize {
        128 * 1024
    }
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            row_group_size: Self::default_row_group(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvOptions {
    #[serde(default = "yes")]
    pub header: bool,
    #[serde(default = "CsvOptions::default_delimiter")]
    pub delimiter: char,
}

impl CsvOptions {
    fn default_delimiter() -> char {
        ','
    }
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: true,
            delimiter: ',',
        }
    }
}

/// AppFlow's `prefixConfig` plus Hive-style partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    #[serde(default)]
    pub prefix_type: PrefixType,
    #[serde(default)]
    pub date: DateGranularity,
    #[serde(default = "Layout::default_hierarchy")]
    pub hierarchy: Vec<HierarchyPart>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_by: Vec<String>,
}

impl Layout {
    fn default_hierarchy() -> Vec<HierarchyPart> {
        vec![HierarchyPart::ExecutionId]
    }
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            prefix_type: PrefixType::default(),
            date: DateGranularity::default(),
            hierarchy: Self::default_hierarchy(),
            partition_by: vec![],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PrefixType {
    Filename,
    #[default]
    Path,
    PathAndFilename,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DateGranularity {
    #[default]
    None,
    Year,
    Month,
    Day,
    Hour,
    Minute,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HierarchyPart {
    ExecutionId,
    SchemaVersion,
}

/// What starts a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    OnDemand(OnDemand),
    Scheduled(ScheduledTrigger),
    Event(EventTrigger),
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger::OnDemand(OnDemand {})
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnDemand {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledTrigger {
    /// `rate(1 hour)` or `cron(0 6 * * ? *)`, as EventBridge writes them.
    pub expression: String,
    #[serde(default)]
    pub mode: ScheduleMode,
    #[serde(
        default,
        with = "time::opt_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(
        default,
        with = "time::opt_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub end_time: Option<DateTime<Utc>>,
    /// IANA time zone for cron expressions; UTC by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Deactivate the schedule after this many consecutive failed runs (1-100, default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivate_after_failures: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleMode {
    #[default]
    Incremental,
    Complete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTrigger {
    /// An EventBridge event pattern.
    pub pattern: serde_json::Value,
    #[serde(default)]
    pub mode: ScheduleMode,
}

/// What flow validation needs to know about connectors. The connector registry
/// (`crate::connector::registry`) implements it; `Flow::parse`/`from_value`/`validate` there
/// bind the built-in registry, so this module never imports a connector.
pub trait SourceRules {
    /// Every connector name this build can run, for messages.
    fn connector_names(&self) -> Vec<&'static str>;
    /// Whether `connector` needs `source.profile`; `None` when there is no such connector.
    fn needs_profile(&self, connector: &str) -> Option<bool>;
    /// The connector's own checks of `source.entity` and `source.properties` (no network).
    fn validate_properties(
        &self,
        connector: &str,
        entity: &str,
        props: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<FieldError>;
}

impl Flow {
    /// What a run report says of this flow.
    pub fn reported(&self) -> crate::model::ReportedFlow {
        crate::model::ReportedFlow {
            name: self.name.clone(),
            connector: self.source.connector.clone(),
            entity: self.source.entity.clone(),
            destination: self.destination.location().to_string(),
        }
    }
}

impl Flow {
    /// Parse YAML or JSON (JSON is YAML, but a `.json` origin gives JSON's error messages) and
    /// validate. `origin` names the input in messages (a file path).
    pub fn parse_with(
        text: &str,
        origin: &str,
        rules: &dyn SourceRules,
    ) -> Result<Flow, FlowError> {
        let is_json = origin.ends_with(".json") || text.trim_start().starts_with('{');
        let value: serde_json::Value = if is_json {
            serde_json::from_str(text).map_err(|e| FlowError::Syntax {
                origin: origin.to_string(),
                format: "JSON",
                message: e.to_string(),
            })?
        } else {
            serde_yaml::from_str(text).map_err(|e| FlowError::Syntax {
                origin: origin.to_string(),
                format: "YAML",
                message: e.to_string(),
            })?
        };
        Self::from_value_with(value, origin, rules)
    }

    /// Deserialize from a JSON value and validate, reporting every problem at once.
    pub fn from_value_with(
        value: serde_json::Value,
        origin: &str,
        rules: &dyn SourceRules,
    ) -> Result<Flow, FlowError> {
        let collected = collect::deserialize_all::<Flow>(value, explain_serde);
        let mut errors = collected.errors.clone();
        if let Some(flow) = &collected.value {
            errors.extend(
                flow.validate_with(rules)
                    .into_iter()
                    .filter(|e| !collected.is_repaired(&e.path)),
            );
        }
        match collected.value {
            Some(flow) if errors.is_empty() => Ok(flow),
            _ => Err(FlowError::Invalid {
                origin: origin.to_string(),
                errors,
            }),
        }
    }

    /// The time zone times without an offset are read in (`ferry run --from/--to`): the
    /// schedule's `timezone`, else UTC.
    pub fn time_zone(&self) -> chrono_tz::Tz {
        match &self.trigger {
            Trigger::Scheduled(ScheduledTrigger {
                timezone: Some(tz), ..
            }) => time::parse_tz(tz).unwrap_or(chrono_tz::Tz::UTC),
            _ => chrono_tz::Tz::UTC,
        }
    }

    /// Every problem in the flow, each naming its field and the fix, with the connector's own
    /// checks from `rules` (the connector registry). Empty means valid.
    pub fn validate_with(&self, rules: &dyn SourceRules) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate_name(&self.name, &mut errs);
        if let Some(d) = &self.description {
            if d.chars().count() > 2048 {
                errs.push(FieldError::new(
                    "description",
                    "is longer than 2048 characters; shorten it",
                ));
            }
        }
        self.validate_source(rules, &mut errs);
        self.validate_destination(&mut errs);
        for (i, t) in self.tasks.iter().enumerate() {
            t.validate(&format!("tasks[{i}]"), &mut errs);
        }
        self.validate_trigger(&mut errs);
        if self.tags.len() > 50 {
            errs.push(FieldError::new(
                "tags",
                "has more than 50 tags; AWS allows at most 50",
            ));
        }
        for (k, v) in &self.tags {
            if k.is_empty() || k.len() > 128 || v.len() > 256 {
                errs.push(FieldError::new(
                    format!("tags.{k}"),
                    "tag keys are 1-128 characters and values at most 256",
                ));
            }
        }
        errs
    }

    fn validate_source(&self, rules: &dyn SourceRules, errs: &mut Vec<FieldError>) {
        let s = &self.source;
        match rules.needs_profile(&s.connector) {
            None => errs.push(FieldError::new(
                "source.connector",
                format!(
                    "unknown connector '{}'; use one of: {}",
                    s.connector,
                    rules.connector_names().join(", ")
                ),
            )),
            Some(needs_profile) => {
                if needs_profile && s.profile.is_none() {
                    errs.push(FieldError::new(
                        "source.profile",
                        format!(
                            "the {} connector needs a connector profile naming its credentials; add `profile: <name>` \
                             and create the secret (see docs/connectors.md)",
                            s.connector
                        ),
                    ));
                }
                errs.extend(rules.validate_properties(&s.connector, &s.entity, &s.properties));
            }
        }
        if let Some(p) = &s.profile {
            if p.trim().is_empty() {
                errs.push(FieldError::new(
                    "source.profile",
                    "is empty; name a connector profile or remove the field",
                ));
            } else if let Err(e) = validate_profile_name(p) {
                errs.push(FieldError::new("source.profile", e));
            }
        }
        if s.entity.trim().is_empty() {
            errs.push(FieldError::new(
                "source.entity",
                "is empty; name the object to read, e.g. `accounts`",
            ));
        }
        if let Some(inc) = &s.incremental {
            if inc.field.trim().is_empty() {
                errs.push(FieldError::new(
                    "source.incremental.field",
                    "is empty; name the datetime field that drives the window, e.g. `updated_at`",
                ));
            }
        }
        let c = &s.chunk;
        if c.records == 0 || c.megabytes == 0 || c.seconds == 0 {
            errs.push(FieldError::new(
                "source.chunk",
                "records, megabytes and seconds must be greater than 0",
            ));
        }
        for (field, value, max) in [
            ("source.chunk.records", c.records, ChunkBudget::MAX_RECORDS),
            (
                "source.chunk.megabytes",
                c.megabytes,
                ChunkBudget::MAX_MEGABYTES,
            ),
            ("source.chunk.seconds", c.seconds, ChunkBudget::MAX_SECONDS),
        ] {
            if value > max {
                errs.push(FieldError::new(
                    field,
                    format!("{value} is above the limit of {max} (what one fetch-page invocation can hold and finish in time); a run of any size is read in many chunks, so lower it"),
                ));
            }
        }
        if c.page_size == Some(0) {
            errs.push(FieldError::new(
                "source.chunk.page_size",
                "must be greater than 0",
            ));
        }
        if let Some(p) = s.parallelism {
            if p == 0 || p > SliceConfig::MAX_PARALLELISM {
                errs.push(FieldError::new(
                    "source.parallelism",
                    format!(
                        "{p} is out of range; set how many slices read at once, from 1 to {}",
                        SliceConfig::MAX_PARALLELISM
                    ),
                ));
            }
        }
        if let Some(slice) = &s.slice {
            if let Some(n) = slice.count {
                let max = match slice.commit {
                    SliceCommit::Run => SliceConfig::MAX_SLICES,
                    SliceCommit::Slice => SliceConfig::MAX_COMMITTED_SLICES,
                };
                if n == 0 || n > max {
                    errs.push(FieldError::new(
                        "source.slice.count",
                        format!(
                            "{n} is out of range; cut the window into 1 to {max} slices{}",
                            if slice.commit == SliceCommit::Slice {
                                " (with commit: slice)"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
            }
            if slice.records == Some(0) {
                errs.push(FieldError::new(
                    "source.slice.records",
                    "must be greater than 0 (the most records one slice should hold)",
                ));
            }
            if slice.count.is_none() && slice.records.is_none() {
                errs.push(FieldError::new(
                    "source.slice",
                    "is empty; set count (slices of equal length) or records (the most records per slice), e.g. `slice: { count: 8 }`",
                ));
            }
            if s.incremental.is_none() {
                errs.push(FieldError::new(
                    "source.slice",
                    "slices cut the incremental field's window; set source.incremental.field too (or remove source.slice)",
                ));
            }
        }
    }

    fn validate_destination(&self, errs: &mut Vec<FieldError>) {
        let d = &self.destination;
        match (&d.local, &d.s3) {
            (Some(_), Some(_)) => errs.push(FieldError::new(
                "destination",
                "has both `local` and `s3`; keep exactly one",
            )),
            (None, None) => errs.push(FieldError::new(
                "destination",
                "has no location; add `local: <directory>` or `s3: { bucket: ..., prefix: ... }`",
            )),
            (Some(p), None) if p.trim().is_empty() => errs.push(FieldError::new(
                "destination.local",
                "is empty; name a directory, e.g. `ferry-out`",
            )),
            (Some(p), None) if !d.allow_outside => {
                if let Some(why) = outside_working_dir(p) {
                    errs.push(FieldError::new(
                        "destination.local",
                        format!("'{p}' {why}; name a directory under the working directory, e.g. `ferry-out`, or set `destination.allow_outside: true`"),
                    ));
                }
            }
            _ => {}
        }
        if let Some(s3) = &d.s3 {
            validate_bucket(&s3.bucket, "destination.s3.bucket", errs);
            if s3.prefix.split('/').any(|p| p == ".." || p == ".") {
                errs.push(FieldError::new(
                    "destination.s3.prefix",
                    "may not contain `.` or `..` segments",
                ));
            }
        }
        if let Some(e) = &d.error_location {
            match Location::parse(e) {
                Location::S3(s3) => validate_bucket(&s3.bucket, "destination.error_location", errs),
                Location::Local { path } if path.trim().is_empty() => errs.push(FieldError::new(
                    "destination.error_location",
                    "is empty; give `s3://bucket/prefix` or a local directory",
                )),
                Location::Local { path } if !d.allow_outside => {
                    if let Some(why) = outside_working_dir(&path) {
                        errs.push(FieldError::new(
                            "destination.error_location",
                            format!("'{path}' {why}; name a directory under the working directory, or set `destination.allow_outside: true`"),
                        ));
                    }
                }
                _ => {}
            }
        }
        if let Some(c) = d.compression {
            let ok = match d.format {
                Format::Parquet => true,
                Format::Csv | Format::Jsonl => matches!(c, Compression::None | Compression::Gzip),
            };
            if !ok {
                errs.push(FieldError::new(
                    "destination.compression",
                    format!(
                        "{:?} is not available for {}; use gzip or none",
                        c,
                        d.format.as_str()
                    )
                    .to_lowercase(),
                ));
            }
        }
        if d.single_file && d.file_size_mb.is_some() {
            errs.push(FieldError::new(
                "destination.file_size_mb",
                "cannot be combined with `single_file: true`; keep one of them",
            ));
        }
        if d.single_file && d.aggregation == Some(Aggregation::None) {
            errs.push(FieldError::new(
                "destination.aggregation",
                "`none` cannot be combined with `single_file: true`; keep one of them",
            ));
        }
        if d.file_size_mb == Some(0) {
            errs.push(FieldError::new(
                "destination.file_size_mb",
                "must be at least 1",
            ));
        }
        if d.parquet.row_group_size == 0 {
            errs.push(FieldError::new(
                "destination.parquet.row_group_size",
                "must be at least 1",
            ));
        }
        if !d.csv.delimiter.is_ascii() || matches!(d.csv.delimiter, '"' | '\n' | '\r') {
            errs.push(FieldError::new(
                "destination.csv.delimiter",
                "must be a single ASCII character other than a quote or a line break",
            ));
        }
        if let Some(c) = &d.catalog {
            c.validate(&self.name, d, errs);
        }
        let l = &d.layout;
        if l.partition_by.len() > 10 {
            errs.push(FieldError::new(
                "destination.layout.partition_by",
                "names more than 10 fields; AppFlow and ferry allow at most 10",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, f) in l.partition_by.iter().enumerate() {
            if f.trim().is_empty() {
                errs.push(FieldError::new(
                    format!("destination.layout.partition_by[{i}]"),
                    "is empty; name a destination field",
                ));
            }
            if !seen.insert(f) {
                errs.push(FieldError::new(
                    format!("destination.layout.partition_by[{i}]"),
                    format!("'{f}' is listed twice"),
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, h) in l.hierarchy.iter().enumerate() {
            if !seen.insert(*h as u8) {
                errs.push(FieldError::new(
                    format!("destination.layout.hierarchy[{i}]"),
                    "is listed twice",
                ));
            }
        }
    }

    fn validate_trigger(&self, errs: &mut Vec<FieldError>) {
        match &self.trigger {
            Trigger::OnDemand(_) => {}
            Trigger::Scheduled(s) => {
                if let Err(e) = schedule::validate_expression(&s.expression) {
                    errs.push(FieldError::new("trigger.scheduled.expression", e));
                }
                if let (Some(a), Some(b)) = (s.start_time, s.end_time) {
                    if b <= a {
                        errs.push(FieldError::new(
                            "trigger.scheduled.end_time",
                            "must be after start_time",
                        ));
                    }
                }
                if let Some(tz) = &s.timezone {
                    if let Err(e) = time::parse_tz(tz) {
                        errs.push(FieldError::new("trigger.scheduled.timezone", e));
                    }
                }
                if let Some(n) = s.deactivate_after_failures {
                    if !(1..=100).contains(&n) {
                        errs.push(FieldError::new(
                            "trigger.scheduled.deactivate_after_failures",
                            "must be between 1 and 100",
                        ));
                    }
                }
                if s.mode == ScheduleMode::Incremental && self.source.incremental.is_none() {
                    errs.push(FieldError::new(
                        "trigger.scheduled.mode",
                        "is incremental but the source has no `incremental` section; add `source.incremental.field` or set `mode: complete`",
                    ));
                }
            }
            Trigger::Event(e) => {
                if !e.pattern.is_object() {
                    errs.push(FieldError::new(
                        "trigger.event.pattern",
                        "must be an EventBridge event pattern (an object)",
                    ));
                }
                if e.mode == ScheduleMode::Incremental && self.source.incremental.is_none() {
                    errs.push(FieldError::new(
                        "trigger.event.mode",
                        "is incremental but the source has no `incremental` section; add `source.incremental.field` or set `mode: complete`",
                    ));
                }
            }
        }
    }

    /// The pull mode a run uses unless told otherwise.
    pub fn default_mode(&self) -> PullMode {
        let trigger_mode = match &self.trigger {
            Trigger::Scheduled(s) => Some(s.mode),
            Trigger::Event(e) => Some(e.mode),
            Trigger::OnDemand(_) => None,
        };
        match (trigger_mode, &self.source.incremental) {
            (Some(ScheduleMode::Complete), _) | (_, None) => PullMode::Complete,
            (_, Some(_)) => PullMode::Incremental,
        }
    }

    /// Serialize as YAML (for `flows get`).
    pub fn to_yaml(&self) -> String {
        // Through JSON, so enums are plain one-key maps rather than YAML tags.
        serde_json::to_value(self)
            .ok()
            .and_then(|v| serde_yaml::to_string(&v).ok())
            .unwrap_or_default()
    }
}

/// A connector profile's name: it names a secret (`ferry/profiles/<name>` on AWS), so it is
/// 1-128 letters, digits, `_`, `-`, `.`, `@`, starting with a letter or digit: no `/`, no `..`.
pub fn validate_profile_name(name: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a profile name; use 1-128 letters, digits, `_`, `-`, `.`, `@`, starting with a letter or digit (no `/`, no `..`), e.g. `zendesk-acme`"
        ))
    }
}

fn validate_name(name: &str, errs: &mut Vec<FieldError>) {
    let ok = name.len() >= 2
        && name.len() <= 256
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        errs.push(FieldError::new(
            "name",
            format!(
                "'{name}' is not a valid flow name; use 2-256 characters: letters, digits, `_`, `-`, `.`, starting with a letter or digit"
            ),
        ));
    }
}

fn validate_bucket(bucket: &str, path: &str, errs: &mut Vec<FieldError>) {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        errs.push(FieldError::new(
            path,
            format!("'{bucket}' is not a valid S3 bucket name (3-63 lowercase letters, digits, `-`, `.`)"),
        ));
    }
}

/// Why a local directory is outside the working directory, if it is.
fn outside_working_dir(p: &str) -> Option<&'static str> {
    use std::path::Component;
    let mut depth = 0usize;
    for c in std::path::Path::new(p).components() {
        match c {
            Component::Prefix(_) | Component::RootDir => {
                return Some("is an absolute path, outside the working directory")
            }
            Component::CurDir => {}
            Component::ParentDir if depth == 0 => {
                return Some("climbs out of the working directory with `..`")
            }
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
        }
    }
    None
}

/// An example value for a field, by its name (the last part of its path).
fn example_for(field: &str) -> Option<&'static str> {
    Some(match field {
        "name" => "sample-crm-accounts",
        "description" => "\"CRM accounts into Parquet\"",
        "connector" => "salesforce",
        "profile" => "crm-prod",
        "entity" => "accounts",
        "records" => "250000",
        "megabytes" => "128",
        "seconds" => "600",
        "page_size" => "1000",
        "field" => "updated_at",
        "lookback" => "10m",
        "offset" => "5m",
        "first_execution_from" | "start_time" | "end_time" => "2026-01-01T00:00:00Z",
        "local" => "ferry-out",
        "bucket" => "my-lake",
        "prefix" => "raw/crm",
        "kms_key_id" => "alias/ferry",
        "format" => "parquet",
        "compression" => "zstd",
        "file_size_mb" => "128",
        "single_file" | "bucket_owner_full_control" | "header" | "allow_outside" => "true",
        "preserve_source_types" => "false",
        "aggregation" => "none",
        "error_location" => "s3://my-lake/rejected",
        "row_group_size" => "131072",
        "delimiter" => "\";\"",
        "prefix_type" => "path",
        "date" => "day",
        "hierarchy" => "[execution_id]",
        "partition_by" => "[country]",
        "tasks" => "[ { map_all: {} } ]",
        "trigger" => "{ on_demand: {} }",
        "expression" => "\"rate(1 hour)\"",
        "mode" => "incremental",
        "timezone" => "Europe/Paris",
        "deactivate_after_failures" => "3",
        "pattern" => "{ source: [my.app] }",
        "tags" => "{ owner: data-eng }",
        "exclude" => "[internal_notes]",
        "from" => "address.city",
        "to" => "city",
        "type" => "integer",
        "precision" => "18",
        "scale" => "2",
        "op" => "equal",
        "value" => "deleted",
        "values" => "[US, DE]",
        "min" => "10",
        "max" => "500",
        "keep_last" => "4",
        "keep_first" => "2",
        "first" => "12",
        "last" => "6",
        "char" => "\"#\"",
        "length" => "255",
        "left" => "amount",
        "right" => "quantity",
        "check" => "non_null",
        "matches" => "\"^[0-9]{5}$\"",
        "action" => "drop_record",
        "properties" => "{ records: 1000 }",
        "incremental" => "{ field: updated_at }",
        "chunk" => "{ records: 100000 }",
        "slice" => "{ count: 8 }",
        "parquet" => "{ row_group_size: 65536 }",
        "csv" => "{ header: true, delimiter: \",\" }",
        "layout" => "{ date: day }",
        "s3" => "{ bucket: my-lake, prefix: raw }",
        "source" => "{ connector: sample, entity: accounts }",
        "destination" => "{ local: ferry-out }",
        _ => return None,
    })
}

/// serde's name for an expected type -> what a user writes, and a generic example.
fn expected_form(expected: &str) -> (String, &'static str) {
    let e = expected.trim();
    let form = |f: &str, x: &'static str| (f.to_string(), x);
    match e {
        "u8" | "u16" | "u32" | "u64" | "usize" => form("a whole number (0 or more)", "128"),
        "i8" | "i16" | "i32" | "i64" | "isize" => form("a whole number", "2"),
        "f32" | "f64" => form("a number", "1.5"),
        "a boolean" => form("`true` or `false`", "true"),
        "a string" => form("text", "\"text\""),
        "a character" => form("a single character", "\",\""),
        "a sequence" => form("a list", "[a, b]"),
        "a map" => form("a section of `key: value` fields", "{ key: value }"),
        "unit" => form("an empty section `{}`", "{}"),
        _ if e.starts_with("struct ") || e.starts_with("a map") => {
            form("a section of `key: value` fields", "{ key: value }")
        }
        _ if e.starts_with("enum ") => form("a one-key section naming the kind", "{ kind: {} }"),
        _ if e.starts_with("a sequence") => form("a list", "[a, b]"),
        _ => (e.to_string(), "..."),
    }
}

/// How a value found in the file reads in a message.
fn describe_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "nothing (null)".into(),
        serde_json::Value::Bool(b) => format!("`{b}`"),
        serde_json::Value::Number(n) => format!("the number {n}"),
        serde_json::Value::String(s) => format!("the text '{s}'"),
        serde_json::Value::Array(_) => "a list".into(),
        serde_json::Value::Object(_) => "a section".into(),
    }
}

/// `a`, `b` from serde's "expected one of `a`, `b`".
fn listed(s: &str) -> Vec<&str> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .filter(|x| !x.is_empty())
        .collect()
}

/// Make serde's messages say what is expected, with an example to copy. `path` is the field's
/// path, `found` the value in the file (when there was one).
fn explain_serde(path: &str, msg: &str, found: Option<&serde_json::Value>) -> String {
    let field = path
        .rsplit(['.', '['])
        .next()
        .unwrap_or(path)
        .trim_end_matches(']');
    let field_is_index = path.ends_with(']');
    let key = if field_is_index {
        "- ".to_string()
    } else {
        format!("{field}: ")
    };
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let options = rest
            .split_once("expected ")
            .map(|(_, o)| listed(o))
            .unwrap_or_default();
        let hint = match collect::closest(name, options.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None if options.is_empty() => "remove it".to_string(),
            None => format!(
                "remove it or fix its spelling (fields here: {})",
                options.join(", ")
            ),
        };
        return format!("unknown field `{name}`; {hint}");
    }
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        let name = rest.split('`').next().unwrap_or_default();
        let options = rest
            .split_once("expected ")
            .map(|(_, o)| listed(o))
            .unwrap_or_default();
        let what = if path.starts_with("tasks[") && path.matches('.').count() == 0 {
            "task kind"
        } else {
            "value"
        };
        let example = if what == "task kind" {
            format!(
                "`- {}: {{ ... }}`",
                options.first().copied().unwrap_or("map_all")
            )
        } else {
            let x = example_for(field)
                .filter(|x| options.contains(x))
                .or(options.first().copied())
                .unwrap_or("...");
            format!("`{key}{x}`")
        };
        return match collect::closest(name, options.iter().copied()) {
            Some(c) => format!(
                "'{name}' is not a {what} here; did you mean `{c}`? (one of {})",
                options.join(", ")
            ),
            None => format!(
                "'{name}' is not a {what} here; use one of {}, e.g. {example}",
                options.join(", ")
            ),
        };
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        return match example_for(name) {
            Some(x) => format!("is missing; add it, e.g. `{name}: {x}`"),
            None => "is missing; add it".to_string(),
        };
    }
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let expected = rest
                .rsplit_once(", expected ")
                .map(|(_, e)| e)
                .unwrap_or("");
            let (form, generic) = expected_form(expected);
            let example = if field_is_index {
                generic
            } else {
                example_for(field).unwrap_or(generic)
            };
            let found = match found {
                Some(v) => describe_value(v),
                None => rest
                    .rsplit_once(", expected ")
                    .map(|(f, _)| f.to_string())
                    .unwrap_or_default(),
            };
            return format!("expected {form}, found {found}; write e.g. `{key}{example}`");
        }
    }
    if msg.starts_with("expected a one-key map") || msg.contains("expected enum") {
        return format!(
            "{msg}; write e.g. `{key}{}`",
            example_for(field).unwrap_or("{ kind: {} }")
        );
    }
    msg.to_string()
}

/// `10m`, `1h 30m`, `90s` as [`Duration`]s in YAML.
pub mod duration_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(None),
            Some(s) => humantime::parse_duration(s.trim()).map(Some).map_err(|e| {
                serde::de::Error::custom(format!(
                    "'{s}' is not a duration ({e}); write e.g. `10m`, `1h`, `90s`"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests;
