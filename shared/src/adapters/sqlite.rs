//! SQLite flow store and run store: the embedded engine's state in `$FERRY_HOME/ferry.db`.
//!
//! Conditional writes are single SQL statements with the condition in the WHERE clause, under
//! SQLite's write lock, so two processes racing for a lease cannot both win.

use crate::error::StoreError;
use crate::flow::Flow;
use crate::model::{ChunkResult, CommittedSlice, FlowState, Lease, RunRecord, SliceLedger};
use crate::ports::{FlowStatus, FlowStore, LeaseClaim, RunStore, StateCommit, StoredFlow};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS flows (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    definition TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS flow_status (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS flow_state (
    flow TEXT PRIMARY KEY,
    watermark TEXT,
    lease_run_id TEXT,
    lease_expires_at TEXT,
    schema_version INTEGER NOT NULL DEFAULT 0,
    schema TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_run_id TEXT,
    lease_holder TEXT,
    lease_watermark TEXT,
    committed_run_id TEXT,
    slices TEXT,
    slices_rev INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    started_at TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_flow ON runs (flow, started_at);
CREATE TABLE IF NOT EXISTS commits (
    run_id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    committed_at TEXT NOT NULL,
    watermark TEXT
);
CREATE TABLE IF NOT EXISTS chunk_results (
    run_id TEXT NOT NULL,
    chunk INTEGER NOT NULL,
    stage TEXT NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (run_id, chunk, stage)
);
"#;

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::backend("sqlite", e)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn js(e: serde_json::Error) -> StoreError {
    StoreError::backend("sqlite: stored JSON", e)
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn parse_ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::backend(format!("create {}", dir.display()), e))?;
        }
        // Two processes opening a new database at once (a `ferry run` creating it while
        // `ferry runs list` polls) can meet SQLITE_BUSY where no busy handler is consulted:
        // switching to WAL and creating the schema take an exclusive lock. Such an open is
        // retried; any other error is returned at once.
        let mut attempt = 0;
        loop {
            match Connection::open(path).and_then(Self::init) {
                Ok(conn) => {
                    return Ok(SqliteStore {
                        conn: Mutex::new(conn),
                    })
                }
                Err(e) if is_busy(&e) && attempt < 50 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => return Err(db(e)),
            }
        }
    }

    /// A private database in memory (unit tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()
            .and_then(Self::init)
            .map_err(db)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn init(conn: Connection) -> rusqlite::Result<Connection> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
        // Columns added after the first release (new databases have them from SCHEMA): added to
        // older databases in place.
        for (col, ty) in [
            ("lease_holder", "TEXT"),
            ("lease_watermark", "TEXT"),
            ("committed_run_id", "TEXT"),
            ("slices", "TEXT"),
            ("slices_rev", "INTEGER NOT NULL DEFAULT 0"),
        ] {
            let exists: bool = conn.query_row(
                "SELECT COUNT(*) FROM pragma_table_info('flow_state') WHERE name = ?1",
                params![col],
                |r| r.get::<_, i64>(0),
            )? > 0;
            if !exists {
                // Another process opening the same older database may add it first.
                match conn.execute_batch(&format!("ALTER TABLE flow_state ADD COLUMN {col} {ty}")) {
                    Err(e) if e.to_string().contains("duplicate column name") => continue,
                    r => r?,
                }
                if col == "lease_watermark" {
                    // A run in flight across the upgrade started from the current watermark.
                    conn.execute_batch(
                        "UPDATE flow_state SET lease_watermark = watermark WHERE lease_run_id IS NOT NULL",
                    )
                    ?;
                }
            }
        }
        Ok(conn)
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut c = self
            .conn
            .lock()
            .map_err(|_| StoreError::Invalid("sqlite connection poisoned".into()))?;
        f(&mut c)
    }

    fn read_state(c: &Connection, flow: &str) -> Result<FlowState, StoreError> {
        let row = c
            .query_row(
                "SELECT watermark, lease_run_id, lease_expires_at, schema_version, schema, consecutive_failures, last_run_id, lease_holder
                 FROM flow_state WHERE flow = ?1",
                params![flow],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, u32>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, u32>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                    ))
                },
            )
            .optional()
            .map_err(db)?;
        let Some((wm, lr, le, sv, schema, cf, last, holder)) = row else {
            return Ok(FlowState {
                flow: flow.to_string(),
                ..Default::default()
            });
        };
        let lease = match (lr, parse_ts(le)) {
            (Some(run_id), Some(expires_at)) => Some(Lease {
                run_id,
                expires_at,
                holder,
            }),
            _ => None,
        };
        Ok(FlowState {
            flow: flow.to_string(),
            watermark: parse_ts(wm),
            lease,
            schema_version: sv,
            schema: schema
                .map(|s| serde_json::from_str(&s))
                .transpose()
                .map_err(js)?,
            consecutive_failures: cf,
            last_run_id: last,
        })
    }

    fn read_ledger(c: &Connection, flow: &str) -> Result<SliceLedger, StoreError> {
        let row: Option<(Option<String>, i64)> = c
            .query_row(
                "SELECT slices, slices_rev FROM flow_state WHERE flow = ?1",
                params![flow],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db)?;
        let Some((slices, rev)) = row else {
            return Ok(SliceLedger::default());
        };
        Ok(SliceLedger {
            rev: u64::try_from(rev).unwrap_or_default(),
            slices: slices
                .map(|s| serde_json::from_str(&s))
                .transpose()
                .map_err(js)?
                .unwrap_or_default(),
        })
    }

    fn status(c: &Connection, name: &str) -> Result<FlowStatus, StoreError> {
        let s: Option<String> = c
            .query_row(
                "SELECT status FROM flow_status WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        Ok(match s.as_deref() {
            Some("Suspended") => FlowStatus::Suspended,
            Some("Draft") => FlowStatus::Draft,
            _ => FlowStatus::Active,
        })
    }

    fn stored(
        c: &Connection,
        row: (String, u32, String, String, String),
    ) -> Result<StoredFlow, StoreError> {
        let (name, version, def, created, updated) = row;
        Ok(StoredFlow {
            flow: serde_json::from_str::<Flow>(&def).map_err(js)?,
            version,
            created_at: parse_ts(Some(created)).unwrap_or_default(),
            updated_at: parse_ts(Some(updated)).unwrap_or_default(),
            status: Self::status(c, &name)?,
        })
    }
}

#[async_trait]
impl FlowStore for SqliteStore {
    async fn put_flow(&self, flow: &Flow, now: DateTime<Utc>) -> Result<StoredFlow, StoreError> {
        let def = serde_json::to_string(flow).map_err(js)?;
        self.with(|c| {
            // IMMEDIATE: a deferred transaction that reads and then writes fails at once with
            // SQLITE_BUSY (no busy wait) when another process wrote in between (WAL snapshots).
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db)?;
            let latest: Option<(u32, String, String)> = tx
                .query_row(
                    "SELECT version, definition, created_at FROM flows WHERE name = ?1 ORDER BY version DESC LIMIT 1",
                    params![flow.name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(db)?;
            let row = match latest {
                Some((v, d, created)) if d == def => {
                    let updated: String = tx
                        .query_row("SELECT updated_at FROM flows WHERE name = ?1 AND version = ?2", params![flow.name, v], |r| r.get(0))
                        .map_err(db)?;
                    (flow.name.clone(), v, d, created, updated)
                }
                Some((v, _, created)) => {
                    tx.execute(
                        "INSERT INTO flows (name, version, definition, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![flow.name, v + 1, def, created, ts(now)],
                    )
                    .map_err(db)?;
                    (flow.name.clone(), v + 1, def.clone(), created, ts(now))
                }
                None => {
                    tx.execute(
                        "INSERT INTO flows (name, version, definition, created_at, updated_at) VALUES (?1, 1, ?2, ?3, ?3)",
                        params![flow.name, def, ts(now)],
                    )
                    .map_err(db)?;
                    (flow.name.clone(), 1, def.clone(), ts(now), ts(now))
                }
            };
            let out = Self::stored(&tx, row)?;
            tx.commit().map_err(db)?;
            Ok(out)
        })
    }

    async fn get_flow(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredFlow>, StoreError> {
        self.with(|c| {
            let sql = "SELECT name, version, definition, created_at, updated_at FROM flows WHERE name = ?1 AND (?2 IS NULL OR version = ?2) ORDER BY version DESC LIMIT 1";
            let row = c
                .query_row(sql, params![name, version], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                .optional()
                .map_err(db)?;
            row.map(|r| Self::stored(c, r)).transpose()
        })
    }

    async fn list_flows(&self) -> Result<Vec<StoredFlow>, StoreError> {
        self.with(|c| {
            let mut st = c
                .prepare(
                    "SELECT f.name, f.version, f.definition, f.created_at, f.updated_at FROM flows f
                     WHERE f.version = (SELECT MAX(version) FROM flows g WHERE g.name = f.name) ORDER BY f.name",
                )
                .map_err(db)?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            rows.into_iter().map(|r| Self::stored(c, r)).collect()
        })
    }

    async fn delete_flow(&self, name: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c
                .execute("DELETE FROM flows WHERE name = ?1", params![name])
                .map_err(db)?;
            c.execute("DELETE FROM flow_status WHERE name = ?1", params![name])
                .map_err(db)?;
            Ok(n > 0)
        })
    }

    async fn set_status(&self, name: &str, status: FlowStatus) -> Result<(), StoreError> {
        let s = format!("{status:?}");
        self.with(|c| {
            c.execute(
                "INSERT INTO flow_status (name, status) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET status = excluded.status",
                params![name, s],
            )
            .map_err(db)?;
            Ok(())
        })
    }
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn get_state(&self, flow: &str) -> Result<FlowState, StoreError> {
        self.with(|c| Self::read_state(c, flow))
    }

    async fn acquire_lease(
        &self,
        flow: &str,
        claim: &LeaseClaim,
        now: DateTime<Utc>,
    ) -> Result<FlowState, StoreError> {
        let run_id = claim.run_id.as_str();
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db)?;
            tx.execute("INSERT OR IGNORE INTO flow_state (flow) VALUES (?1)", params![flow]).map_err(db)?;
            // `lease_watermark` remembers the watermark the run started from (as DynamoDB does):
            // the commit is refused if it moved meanwhile.
            let n = tx
                .execute(
                    "UPDATE flow_state SET lease_run_id = ?2, lease_expires_at = ?3, last_run_id = ?2, lease_holder = ?5,
                         lease_watermark = watermark
                     WHERE flow = ?1 AND (lease_run_id IS NULL OR lease_run_id = ?2 OR lease_expires_at <= ?4)",
                    params![flow, run_id, ts(claim.expires_at), ts(now), claim.holder],
                )
                .map_err(db)?;
            let state = Self::read_state(&tx, flow)?;
            if n == 0 {
                let (holder, until) = state
                    .lease
                    .as_ref()
                    .map(|l| (l.run_id.clone(), ts(l.expires_at)))
                    .unwrap_or_else(|| ("?".into(), "?".into()));
                return Err(StoreError::Conflict(format!(
                    "flow '{flow}' is already running (run {holder}, lease held until {until}); wait for it to finish, or stop it with `ferry stop {holder}`"
                )));
            }
            tx.commit().map_err(db)?;
            Ok(state)
        })
    }

    async fn renew_lease(
        &self,
        flow: &str,
        run_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let n = c
                .execute(
                    "UPDATE flow_state SET lease_expires_at = ?3 WHERE flow = ?1 AND lease_run_id = ?2",
                    params![flow, run_id, ts(expires_at)],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::Conflict(format!(
                    "run {run_id} no longer holds the lease of flow '{flow}' (it expired and another run took it)"
                )));
            }
            Ok(())
        })
    }

    async fn commit_success(
        &self,
        flow: &str,
        run_id: &str,
        commit: &StateCommit,
    ) -> Result<FlowState, StoreError> {
        let schema = commit.schema.as_ref().map(|s| s.to_string());
        let slices = commit
            .slices
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(js)?;
        let record = commit
            .record
            .as_ref()
            .map(|r| serde_json::to_string(r).map(|j| (r, j)))
            .transpose()
            .map_err(js)?;
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db)?;
            // Ours, and the watermark is the one the run started from (as DynamoDB checks).
            let n = tx
                .execute(
                    "UPDATE flow_state SET watermark = COALESCE(?3, watermark), schema_version = ?4, schema = COALESCE(?5, schema),
                         consecutive_failures = 0, lease_run_id = NULL, lease_expires_at = NULL, lease_holder = NULL,
                         lease_watermark = NULL, committed_run_id = ?2
                     WHERE flow = ?1 AND lease_run_id = ?2 AND watermark IS lease_watermark",
                    params![flow, run_id, commit.watermark.map(ts), commit.schema_version, schema],
                )
                .map_err(db)?;
            if n == 0 {
                let committed: bool = tx
                    .query_row("SELECT COUNT(*) FROM commits WHERE run_id = ?1", params![run_id], |r| r.get::<_, i64>(0))
                    .map_err(db)?
                    > 0;
                let s = Self::read_state(&tx, flow)?;
                if committed {
                    // A retry by a run that already committed.
                    return Ok(s);
                }
                let lease_watermark: Option<String> = tx
                    .query_row("SELECT lease_watermark FROM flow_state WHERE flow = ?1", params![flow], |r| r.get(0))
                    .optional()
                    .map_err(db)?
                    .flatten();
                return Err(StoreError::Conflict(match &s.lease {
                    Some(l) if l.run_id == run_id => format!(
                        "the watermark of flow '{flow}' was moved by someone else while run {run_id} held the lease (now {}, the run started from {}); committing the run was refused",
                        s.watermark.map(ts).unwrap_or_else(|| "unset".into()),
                        lease_watermark.unwrap_or_else(|| "unset".into())
                    ),
                    Some(l) => format!(
                        "run {run_id} no longer holds the lease of flow '{flow}' (run {} holds it now); the watermark was not moved: committing the run was refused",
                        l.run_id
                    ),
                    None => format!(
                        "run {run_id} no longer holds the lease of flow '{flow}' (it expired or was released); the watermark was not moved: committing the run was refused"
                    ),
                }));
            }
            if let Some(slices) = &slices {
                tx.execute(
                    "UPDATE flow_state SET slices = ?2, slices_rev = slices_rev + 1 WHERE flow = ?1",
                    params![flow, slices],
                )
                .map_err(db)?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO commits (run_id, flow, committed_at, watermark) VALUES (?1, ?2, ?3, ?4)",
                params![run_id, flow, ts(Utc::now()), commit.watermark.map(ts)],
            )
            .map_err(db)?;
            if let Some((r, json)) = &record {
                tx.execute(
                    "INSERT INTO runs (run_id, flow, started_at, record) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(run_id) DO UPDATE SET record = excluded.record",
                    params![r.run_id, r.flow, ts(r.started_at), json],
                )
                .map_err(db)?;
            }
            let s = Self::read_state(&tx, flow)?;
            tx.commit().map_err(db)?;
            Ok(s)
        })
    }

    async fn is_committed(&self, run_id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM commits WHERE run_id = ?1",
                params![run_id],
                |r| r.get::<_, i64>(0),
            )
            .map_err(db)?
                > 0)
        })
    }

    async fn release_lease(&self, flow: &str, run_id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c
                .execute(
                    "UPDATE flow_state SET lease_run_id = NULL, lease_expires_at = NULL, lease_holder = NULL, lease_watermark = NULL
                     WHERE flow = ?1 AND lease_run_id = ?2",
                    params![flow, run_id],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
    }

    async fn record_failure(&self, flow: &str, run_id: &str) -> Result<u32, StoreError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db)?;
            let committed: bool = tx
                .query_row("SELECT COUNT(*) FROM commits WHERE run_id = ?1", params![run_id], |r| r.get::<_, i64>(0))
                .map_err(db)?
                > 0;
            if !committed {
                tx.execute(
                    "UPDATE flow_state SET consecutive_failures = consecutive_failures + 1, lease_run_id = NULL, lease_expires_at = NULL,
                         lease_holder = NULL, lease_watermark = NULL
                     WHERE flow = ?1 AND lease_run_id = ?2",
                    params![flow, run_id],
                )
                .map_err(db)?;
            }
            let s = Self::read_state(&tx, flow)?;
            tx.commit().map_err(db)?;
            Ok(s.consecutive_failures)
        })
    }

    async fn delete_state(&self, flow: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute("DELETE FROM flow_state WHERE flow = ?1", params![flow])
                .map_err(db)?;
            Ok(())
        })
    }

    async fn slice_ledger(&self, flow: &str) -> Result<SliceLedger, StoreError> {
        self.with(|c| Self::read_ledger(c, flow))
    }

    async fn put_slice_ledger(
        &self,
        flow: &str,
        run_id: &str,
        rev: u64,
        slices: &[CommittedSlice],
        watermark: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(slices).map_err(js)?;
        self.with(|c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db)?;
            let row: Option<(Option<String>, Option<String>, Option<String>)> = tx
                .query_row(
                    "SELECT lease_run_id, watermark, lease_watermark FROM flow_state WHERE flow = ?1",
                    params![flow],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(db)?;
            let (holder, wm, lease_wm) = row.unwrap_or((None, None, None));
            if holder.as_deref() != Some(run_id) {
                return Err(StoreError::Conflict(format!(
                    "run {run_id} no longer holds the lease of flow '{flow}'; committing its slice was refused"
                )));
            }
            if Self::read_ledger(&tx, flow)?.rev != rev {
                return Ok(false);
            }
            let current = parse_ts(wm.clone());
            let advance = match watermark {
                Some(w) if current.is_none_or(|c| c < w) => {
                    if wm != lease_wm {
                        // As the run's commit: a watermark moved behind the run's back is
                        // never silently absorbed.
                        return Err(StoreError::Conflict(format!(
                            "the watermark of flow '{flow}' was moved by someone else while run {run_id} held the lease; moving it past the committed slices was refused"
                        )));
                    }
                    Some(ts(w))
                }
                _ => None,
            };
            tx.execute(
                "UPDATE flow_state SET slices = ?2, slices_rev = ?3,
                     watermark = COALESCE(?4, watermark), lease_watermark = COALESCE(?4, lease_watermark)
                 WHERE flow = ?1",
                params![flow, json, i64::try_from(rev + 1).unwrap_or(i64::MAX), advance],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(true)
        })
    }

    async fn put_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let rec = serde_json::to_string(run).map_err(js)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (run_id, flow, started_at, record) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(run_id) DO UPDATE SET record = excluded.record",
                params![run.run_id, run.flow, ts(run.started_at), rec],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.with(|c| {
            let r: Option<String> = c
                .query_row(
                    "SELECT record FROM runs WHERE run_id = ?1",
                    params![run_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            r.map(|s| serde_json::from_str(&s).map_err(js)).transpose()
        })
    }

    async fn list_runs(&self, flow: &str, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        self.with(|c| {
            let mut st = c
                .prepare("SELECT record FROM runs WHERE flow = ?1 ORDER BY started_at DESC, run_id DESC LIMIT ?2")
                .map_err(db)?;
            let rows = st
                .query_map(params![flow, limit as i64], |r| r.get::<_, String>(0))
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            rows.iter().map(|s| serde_json::from_str(s).map_err(js)).collect()
        })
    }

    async fn put_chunk_result(&self, result: &ChunkResult) -> Result<(), StoreError> {
        let rec = serde_json::to_string(result).map_err(js)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO chunk_results (run_id, chunk, stage, result) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(run_id, chunk, stage) DO UPDATE SET result = excluded.result",
                params![result.run_id, result.chunk, result.stage.as_str(), rec],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    async fn chunk_results(&self, run_id: &str) -> Result<Vec<ChunkResult>, StoreError> {
        self.with(|c| {
            let mut st = c
                .prepare("SELECT result FROM chunk_results WHERE run_id = ?1 ORDER BY chunk, stage")
                .map_err(db)?;
            let rows = st
                .query_map(params![run_id], |r| r.get::<_, String>(0))
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            rows.iter()
                .map(|s| serde_json::from_str(s).map_err(js))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Processes opening a new state database at the same moment (`ferry run` creating it while
    /// `ferry runs list` polls) all get it: seen failing once with "duplicate column name" when
    /// two of them added the same later column.
    #[test]
    fn concurrent_first_opens_of_one_database_all_succeed() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ferry.db");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let opens: Vec<_> = (0..4)
                .map(|_| {
                    let (p, b) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        b.wait();
                        SqliteStore::open(&p).map(|_| ())
                    })
                })
                .collect();
            for o in opens {
                o.join().unwrap().unwrap();
            }
        }
    }

    /// A database from before the later columns gets them when opened.
    #[test]
    fn an_older_database_gains_the_later_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE flow_state (flow TEXT PRIMARY KEY, watermark TEXT, lease_run_id TEXT,
             lease_expires_at TEXT, schema_version INTEGER NOT NULL DEFAULT 0, schema TEXT,
             consecutive_failures INTEGER NOT NULL DEFAULT 0, last_run_id TEXT)",
        )
        .unwrap();
        drop(c);
        SqliteStore::open(&path).unwrap();
        let c = Connection::open(&path).unwrap();
        for col in [
            "lease_holder",
            "lease_watermark",
            "committed_run_id",
            "slices",
            "slices_rev",
        ] {
            let n: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM pragma_table_info('flow_state') WHERE name = ?1",
                    params![col],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "{col}");
        }
    }
}
