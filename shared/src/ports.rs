//! The seams between the steps and the outside world. Small async traits with domain types in
//! and out; one production adapter (AWS) and one embedded adapter (SQLite, local files) each,
//! plus in-memory ones where unit tests need them.

use crate::error::StoreError;
use crate::flow::Flow;
use crate::model::{ChunkResult, CommittedSlice, FlowState, RunRecord, SliceLedger};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// A flow definition as stored: the validated flow plus its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFlow {
    pub flow: Flow,
    pub version: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// AppFlow's flow status: Active | Suspended (deactivated after failures) | Draft.
    pub status: FlowStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum FlowStatus {
    #[default]
    Active,
    Suspended,
    Draft,
}

/// Flow definitions, versioned: every put of a changed definition is a new version.
#[async_trait]
pub trait FlowStore: Send + Sync {
    /// Store `flow` as its next version (or return the current version unchanged if identical).
    async fn put_flow(&self, flow: &Flow, now: DateTime<Utc>) -> Result<StoredFlow, StoreError>;
    /// The latest version, or a given one.
    async fn get_flow(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredFlow>, StoreError>;
    /// Latest version of every flow, sorted by name.
    async fn list_flows(&self) -> Result<Vec<StoredFlow>, StoreError>;
    /// Delete every version; true if the flow existed.
    async fn delete_flow(&self, name: &str) -> Result<bool, StoreError>;
    async fn set_status(&self, name: &str, status: FlowStatus) -> Result<(), StoreError>;
}

/// Run records, per-chunk results and flow state (watermark, lease, schema version, failures).
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Current state; a default (empty) state when the flow never ran.
    async fn get_state(&self, flow: &str) -> Result<FlowState, StoreError>;
    /// Take the run lease: succeeds if no lease is held, the held lease expired at `now`, or it
    /// is already held by `claim.run_id` (a retried start). Otherwise `StoreError::Conflict`.
    /// Records the watermark the run starts from: the commit is refused if it moved meanwhile.
    async fn acquire_lease(
        &self,
        flow: &str,
        claim: &LeaseClaim,
        now: DateTime<Utc>,
    ) -> Result<FlowState, StoreError>;
    /// Extend a lease this run holds. `Conflict` if the lease is no longer ours.
    async fn renew_lease(
        &self,
        flow: &str,
        run_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Commit a successful run, atomically: set the watermark (if `Some`), the schema version
    /// and description, reset the failure count, release the lease, record the commit of
    /// `run_id` and store `commit.record` (the run's final record) — only if `run_id` still
    /// holds the lease and the watermark is the one it started from (`Conflict` otherwise, and
    /// nothing changes). Idempotent: a retry by a run that already committed succeeds and
    /// changes nothing.
    async fn commit_success(
        &self,
        flow: &str,
        run_id: &str,
        commit: &StateCommit,
    ) -> Result<FlowState, StoreError>;
    /// Whether `run_id` committed (its commit is recorded, whatever happened after).
    async fn is_committed(&self, run_id: &str) -> Result<bool, StoreError>;
    /// Release the lease `run_id` holds without counting a failure (a stopped run). True if it
    /// held it.
    async fn release_lease(&self, flow: &str, run_id: &str) -> Result<bool, StoreError>;
    /// Record a failed run: count the failure and release the lease if `run_id` holds it. The
    /// watermark never moves here; a run that committed is never counted as failed. Returns
    /// the consecutive failure count.
    async fn record_failure(&self, flow: &str, run_id: &str) -> Result<u32, StoreError>;
    /// Remove all state of a flow (on delete).
    async fn delete_state(&self, flow: &str) -> Result<(), StoreError>;

    /// The flow's committed slices (`source.slice.commit: slice`) and their revision; an empty
    /// ledger at revision 0 when there are none.
    async fn slice_ledger(&self, flow: &str) -> Result<SliceLedger, StoreError>;
    /// Replace the committed slices with `slices` (revision `rev + 1`), only while `run_id`
    /// holds the lease and the ledger is still at `rev`; with `watermark`, move the watermark
    /// there in the same write (forward only: a watermark already at or past it stays), and the
    /// watermark the run started from with it, so the run's own commit still holds.
    /// `Ok(false)`: the ledger moved on meanwhile (another slice committed): read it again.
    /// `Conflict`: the lease is not `run_id`'s.
    async fn put_slice_ledger(
        &self,
        flow: &str,
        run_id: &str,
        rev: u64,
        slices: &[CommittedSlice],
        watermark: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError>;

    async fn put_run(&self, run: &RunRecord) -> Result<(), StoreError>;
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError>;
    /// A flow's runs, newest first, at most `limit`.
    async fn list_runs(&self, flow: &str, limit: usize) -> Result<Vec<RunRecord>, StoreError>;

    /// Idempotent by (run_id, chunk, stage): a retried step overwrites its own result.
    async fn put_chunk_result(&self, result: &ChunkResult) -> Result<(), StoreError>;
    /// Every chunk result of a run, ordered by (chunk, stage).
    async fn chunk_results(&self, run_id: &str) -> Result<Vec<ChunkResult>, StoreError>;
}

/// A run's claim on its flow's lease.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LeaseClaim {
    pub run_id: String,
    pub expires_at: DateTime<Utc>,
    /// `local:<host>:<pid>` for the embedded engine (see [`crate::model::Lease::holder`]).
    pub holder: Option<String>,
}

impl LeaseClaim {
    pub fn new(run_id: &str, expires_at: DateTime<Utc>) -> Self {
        LeaseClaim {
            run_id: run_id.to_string(),
            expires_at,
            holder: None,
        }
    }
}

/// What a successful run changes in the flow state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StateCommit {
    pub watermark: Option<DateTime<Utc>>,
    pub schema_version: u32,
    pub schema: Option<serde_json::Value>,
    /// The run's final record, stored in the same atomic write as the commit.
    pub record: Option<crate::model::RunRecord>,
    /// The flow's committed slices after this commit (those it made obsolete left out);
    /// `None` leaves them as they are.
    pub slices: Option<Vec<CommittedSlice>>,
}

/// Options for one object write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
}

/// Objects: the staging area and destinations (S3 in production, a directory locally).
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Write (or overwrite) one object.
    async fn put(&self, key: &str, body: Vec<u8>, opts: &PutOptions) -> Result<(), StoreError>;
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError>;
    /// Keys under a prefix, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Delete every object in a folder: `prefix` must end in `/` (so `runs/r1/` can never take
    /// `runs/r10/...` with it; see [`require_folder`]).
    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        require_folder(prefix)?;
        for k in self.list(prefix).await? {
            self.delete(&k).await?;
        }
        Ok(())
    }
    /// How a key is shown to a user: `s3://bucket/key` or a local path.
    fn uri(&self, key: &str) -> String;
}

/// A prefix deleted as a whole must be a folder (end in `/`): `staging/f/r1` would also match
/// `staging/f/r10/...`.
pub fn require_folder(prefix: &str) -> Result<(), StoreError> {
    if prefix.is_empty() || !prefix.ends_with('/') {
        return Err(StoreError::Invalid(format!(
            "refusing to delete by prefix {prefix:?}: a prefix deleted as a whole must be a folder ending in '/'"
        )));
    }
    Ok(())
}

/// A secret value. Debug and Display never show it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(serde_json::Value);

impl Secret {
    pub fn new(value: serde_json::Value) -> Self {
        Secret(value)
    }
    /// The value itself. Do not log what this returns.
    pub fn expose(&self) -> &serde_json::Value {
        &self.0
    }
    /// A digest of the value: the version of stores that keep no version of their own.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(self.0.to_string().as_bytes()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Connector credentials, one secret per connector profile.
#[async_trait]
pub trait SecretStore: Send + Sync {
    async fn get_secret(&self, profile: &str) -> Result<Option<Secret>, StoreError>;
    /// Write a secret (a new profile, or credentials replaced by their owner).
    async fn put_secret(&self, profile: &str, secret: &Secret) -> Result<(), StoreError>;
    /// The secret and the version it is at (opaque), for [`put_secret_if`](Self::put_secret_if).
    /// The default version is a digest of the value.
    async fn get_secret_versioned(
        &self,
        profile: &str,
    ) -> Result<Option<(Secret, String)>, StoreError> {
        Ok(self.get_secret(profile).await?.map(|s| {
            let v = s.digest();
            (s, v)
        }))
    }
    /// Write `secret` only if the stored secret is still at `version` (refreshed OAuth tokens:
    /// two runs sharing a profile must not overwrite each other's rotated refresh token).
    /// `Ok(false)`: another writer got there first and nothing was written.
    async fn put_secret_if(
        &self,
        profile: &str,
        secret: &Secret,
        version: &str,
    ) -> Result<bool, StoreError>;
}

/// A run report or flow event (EventBridge in production, a JSON-lines log locally).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// e.g. `ferry Start Flow Run Report`.
    pub detail_type: String,
    pub detail: serde_json::Value,
    pub time: DateTime<Utc>,
}

#[async_trait]
pub trait EventSink: Send + Sync {
    async fn publish(&self, event: &Event) -> Result<(), StoreError>;
}

/// Run metrics (CloudWatch EMF lines in Lambda; nothing on the embedded engine).
pub trait Metrics: Send + Sync {
    fn run_started(&self, flow: &str, at: DateTime<Utc>);
    fn run_finished(&self, run: &crate::model::RunRecord);
}

/// Metrics that go nowhere (the embedded engine: the CLI's stdout is its own).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn run_started(&self, _: &str, _: DateTime<Utc>) {}
    fn run_finished(&self, _: &crate::model::RunRecord) {}
}

/// Time, injectable for tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until moved; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<std::sync::Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(t: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(std::sync::Mutex::new(t)))
    }
    pub fn set(&self, t: DateTime<Utc>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = t;
    }
    pub fn advance(&self, d: chrono::Duration) {
        let mut g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Where a flow's output (or its rejected records) goes, resolved to a blob store.
#[async_trait]
pub trait DestinationResolver: Send + Sync {
    async fn resolve(
        &self,
        location: &crate::flow::Location,
    ) -> Result<Arc<dyn BlobStore>, StoreError>;
}

/// A column of a catalog table: its name and Hive/Glue type (`bigint`, `decimal(18,2)`,
/// `struct<a:string>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

/// Where a table's (or a partition's) files are and how to read them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StorageDescriptor {
    /// `s3://bucket/prefix/flow/` (a local directory for the embedded catalog).
    pub location: String,
    pub input_format: String,
    pub output_format: String,
    pub serde_library: String,
    #[serde(default)]
    pub serde_parameters: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub compressed: bool,
}

/// A table as ferry registers it in a data catalog (Glue's `TableInput`, in domain terms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogTable {
    pub database: String,
    pub name: String,
    pub columns: Vec<CatalogColumn>,
    pub partition_keys: Vec<CatalogColumn>,
    pub storage: StorageDescriptor,
    /// Table parameters: `classification`, `ferry.schema_version`, `ferry.flow`, partition
    /// projection, ...
    pub parameters: std::collections::BTreeMap<String, String>,
}

/// One partition: its values (in partition-key order) and where its files are.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CatalogPartition {
    pub values: Vec<String>,
    pub location: String,
}

/// A data catalog: the AWS Glue Data Catalog in production, a file per table locally. Every
/// write is idempotent (a retry changes nothing).
#[async_trait]
pub trait Catalog: Send + Sync {
    async fn database_exists(&self, database: &str) -> Result<bool, StoreError>;
    /// Create a database; one that exists already is a success.
    async fn create_database(&self, database: &str) -> Result<(), StoreError>;
    async fn get_table(
        &self,
        database: &str,
        table: &str,
    ) -> Result<Option<CatalogTable>, StoreError>;
    /// Create the table, or replace its definition when it exists.
    async fn put_table(&self, table: &CatalogTable) -> Result<(), StoreError>;
    /// Add partitions; ones that exist already are left as they are (a success).
    async fn add_partitions(
        &self,
        database: &str,
        table: &str,
        partitions: &[CatalogPartition],
        storage: &StorageDescriptor,
        columns: &[CatalogColumn],
    ) -> Result<(), StoreError>;
    /// Every partition of the table, sorted.
    async fn list_partitions(
        &self,
        database: &str,
        table: &str,
    ) -> Result<Vec<CatalogPartition>, StoreError>;
}
