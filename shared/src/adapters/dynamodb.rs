//! DynamoDB flow store and run store: one table, keys `pk`/`sk`, GSI `gsi1` (`gsi1pk`/`gsi1sk`)
//! and TTL attribute `expires_at`. The item layout and the access patterns it serves are in
//! docs/aws.md. Semantics match the SQLite store exactly; every state change that must not race
//! is one conditional write.

use crate::error::StoreError;
use crate::flow::Flow;
use crate::model::{ChunkResult, CommittedSlice, FlowState, Lease, RunRecord, SliceLedger};
use crate::ports::{FlowStatus, FlowStore, LeaseClaim, RunStore, StateCommit, StoredFlow};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

type Item = HashMap<String, AttributeValue>;

/// How long per-chunk results live after they are written (the TTL attribute `expires_at`).
pub const CHUNK_RESULT_TTL_DAYS: i64 = 30;
/// The GSI that lists flows by name and a flow's runs newest first.
pub const GSI1: &str = "gsi1";
const FLOWS_GSI_PK: &str = "FLOWS";
const HEAD: &str = "HEAD";
const STATE: &str = "STATE";
const RUN: &str = "RUN";
/// The commit marker of a run (`RUN#<id>` / `COMMIT`), written in the commit's transaction.
const COMMIT: &str = "COMMIT";

pub struct DynamoStore {
    client: Client,
    table: String,
}

fn flow_pk(name: &str) -> String {
    format!("FLOW#{name}")
}
fn version_sk(v: u32) -> String {
    format!("V#{v:010}")
}
fn run_pk(run_id: &str) -> String {
    format!("RUN#{run_id}")
}
fn runs_gsi_pk(flow: &str) -> String {
    format!("RUNS#{flow}")
}
fn chunk_sk(chunk: u32, stage: &str) -> String {
    format!("CHUNK#{chunk:010}#{stage}")
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn parse_ts(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n<T: std::str::FromStr>(item: &Item, k: &str) -> Option<T> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn ddb<E, R>(what: &str, e: SdkError<E, R>) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    super::sdk_error(format!("dynamodb {what}"), e)
}

/// A request the SDK's builder refused (a required field left unset).
fn built(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::backend("dynamodb: build the request", e)
}

fn js(e: serde_json::Error) -> StoreError {
    StoreError::backend("dynamodb: stored JSON", e)
}

/// Whether an SDK error is a failed condition (of a write or of a transaction).
fn condition_failed<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(
        e.as_service_error().and_then(|se| se.code()),
        Some("ConditionalCheckFailedException") | Some("TransactionCanceledException")
    )
}

/// A transaction cancelled because another write raced it (not because a condition failed):
/// transient, the caller retries.
fn transaction_conflict<R>(
    e: &SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError, R>,
) -> bool {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => c
            .cancellation_reasons()
            .iter()
            .any(|r| r.code() == Some("TransactionConflict")),
        _ => false,
    }
}

/// The committed slices kept in a flow's state item (`slices`, JSON; `slices_rev`).
fn ledger_from_item(item: Option<&Item>) -> Result<SliceLedger, StoreError> {
    let Some(item) = item else {
        return Ok(SliceLedger::default());
    };
    Ok(SliceLedger {
        rev: get_n(item, "slices_rev").unwrap_or(0),
        slices: get_s(item, "slices")
            .map(serde_json::from_str)
            .transpose()
            .map_err(js)?
            .unwrap_or_default(),
    })
}

fn state_from_item(flow: &str, item: Option<&Item>) -> Result<FlowState, StoreError> {
    let Some(item) = item else {
        return Ok(FlowState {
            flow: flow.to_string(),
            ..Default::default()
        });
    };
    let lease = match (
        get_s(item, "lease_run_id"),
        parse_ts(get_s(item, "lease_expires_at")),
    ) {
        (Some(run_id), Some(expires_at)) => Some(Lease {
            run_id: run_id.to_string(),
            expires_at,
            holder: get_s(item, "lease_holder").map(str::to_string),
        }),
        _ => None,
    };
    Ok(FlowState {
        flow: flow.to_string(),
        watermark: parse_ts(get_s(item, "watermark")),
        lease,
        schema_version: get_n(item, "schema_version").unwrap_or(0),
        schema: get_s(item, "schema")
            .map(serde_json::from_str)
            .transpose()
            .map_err(js)?,
        consecutive_failures: get_n(item, "consecutive_failures").unwrap_or(0),
        last_run_id: get_s(item, "last_run_id").map(str::to_string),
    })
}

fn status_from(s: Option<&str>) -> FlowStatus {
    match s {
        Some("Suspended") => FlowStatus::Suspended,
        Some("Draft") => FlowStatus::Draft,
        _ => FlowStatus::Active,
    }
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn key(pk: String, sk: &str) -> Item {
        HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
    }

    /// The flow state item a failed conditional update saw: returned with the error
    /// (`ReturnValuesOnConditionCheckFailure`), else read again.
    async fn state_on_condition_failure<R>(
        &self,
        flow: &str,
        e: &SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError, R>,
    ) -> Result<Option<Item>, StoreError> {
        use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
        match e.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(c)) if c.item.is_some() => {
                Ok(c.item.clone())
            }
            _ => self.get_item(flow_pk(flow), STATE).await,
        }
    }

    async fn get_item(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| ddb("GetItem", e))?;
        Ok(out.item)
    }

    fn stored_from(head: &Item, version_item: Option<&Item>) -> Result<StoredFlow, StoreError> {
        let src = version_item.unwrap_or(head);
        let def = get_s(src, "definition")
            .ok_or_else(|| StoreError::Invalid("dynamodb: flow item has no definition".into()))?;
        Ok(StoredFlow {
            flow: serde_json::from_str::<Flow>(def).map_err(js)?,
            version: get_n(src, "version").unwrap_or(0),
            created_at: parse_ts(get_s(head, "created_at")).unwrap_or_default(),
            updated_at: parse_ts(get_s(src, "updated_at")).unwrap_or_default(),
            status: status_from(get_s(head, "status")),
        })
    }

    /// Every item of a partition (optionally under a sort-key prefix), all pages.
    async fn query_partition(
        &self,
        pk: String,
        sk_prefix: Option<&str>,
        keys_only: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = vec![];
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_values(":pk", s(pk.clone()))
                .set_exclusive_start_key(start.take());
            q = match sk_prefix {
                Some(p) => q
                    .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                    .expression_attribute_values(":p", s(p)),
                None => q.key_condition_expression("pk = :pk"),
            };
            if keys_only {
                q = q.projection_expression("pk, sk");
            }
            let page = q.send().await.map_err(|e| ddb("Query", e))?;
            out.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    /// Delete items by key, 25 per request, resending unprocessed ones.
    async fn delete_keys(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        for batch in keys.chunks(25) {
            let mut reqs: Vec<WriteRequest> = batch
                .iter()
                .map(|k| {
                    Ok(WriteRequest::builder()
                        .delete_request(
                            DeleteRequest::builder()
                                .set_key(Some(k.clone()))
                                .build()
                                .map_err(built)?,
                        )
                        .build())
                })
                .collect::<Result<_, StoreError>>()?;
            let mut attempt = 0u32;
            while !reqs.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, reqs)
                    .send()
                    .await
                    .map_err(|e| ddb("BatchWriteItem", e))?;
                reqs = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                attempt += 1;
                if !reqs.is_empty() {
                    if attempt > 8 {
                        return Err(StoreError::Invalid(format!(
                            "dynamodb BatchWriteItem: {} deletes still unprocessed after {attempt} attempts",
                            reqs.len()
                        )));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt.min(6)))
                        .await;
                }
            }
        }
        Ok(())
    }

    /// Release a lease this run holds without counting a failure (a run stopped by a user).
    /// Returns whether the run held it.
    async fn release(&self, flow: &str, run_id: &str) -> Result<bool, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(flow_pk(flow), STATE)))
            .update_expression(
                "REMOVE lease_run_id, lease_expires_at, lease_expires_ms, lease_watermark, lease_holder",
            )
            .condition_expression("lease_run_id = :r")
            .expression_attribute_values(":r", s(run_id))
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(ddb("UpdateItem", e)),
        }
    }

    /// A run record as its item.
    fn run_item(run: &RunRecord) -> Result<Item, StoreError> {
        let rec = serde_json::to_string(run).map_err(js)?;
        let mut item = Self::key(run_pk(&run.run_id), RUN);
        item.insert("record".into(), s(rec));
        item.insert("flow".into(), s(&run.flow));
        item.insert("status".into(), s(run.status.as_str()));
        item.insert("started_at".into(), s(ts(run.started_at)));
        item.insert("gsi1pk".into(), s(runs_gsi_pk(&run.flow)));
        item.insert(
            "gsi1sk".into(),
            s(format!("{}#{}", ts(run.started_at), run.run_id)),
        );
        Ok(item)
    }

    /// Why a conditional write naming `run_id`'s lease failed: the lease is gone or someone
    /// else's, or (lease still ours) the watermark was moved underneath us.
    fn lease_conflict(flow: &str, run_id: &str, old: Option<&Item>, doing: &str) -> StoreError {
        let holder = old.and_then(|i| get_s(i, "lease_run_id"));
        match holder {
            Some(h) if h == run_id => StoreError::Conflict(format!(
                "the watermark of flow '{flow}' was moved by someone else while run {run_id} held the lease (now {}); {doing} was refused",
                old.and_then(|i| get_s(i, "watermark")).unwrap_or("unset")
            )),
            Some(h) => StoreError::Conflict(format!(
                "run {run_id} no longer holds the lease of flow '{flow}' (run {h} holds it now); {doing} was refused"
            )),
            None => StoreError::Conflict(format!(
                "run {run_id} no longer holds the lease of flow '{flow}' (it expired or was released); {doing} was refused"
            )),
        }
    }
}

#[async_trait]
impl FlowStore for DynamoStore {
    async fn put_flow(&self, flow: &Flow, now: DateTime<Utc>) -> Result<StoredFlow, StoreError> {
        let def = serde_json::to_string(flow).map_err(js)?;
        // Optimistic: read the head, write version + head in one transaction conditioned on the
        // head being unchanged; retry (with a short random pause) if another writer won.
        for attempt in 0..20u64 {
            if attempt > 0 {
                let ms = rand::random_range(5..=20 * attempt);
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            let head = self.get_item(flow_pk(&flow.name), HEAD).await?;
            let (version, created) = match &head {
                Some(h) if get_s(h, "definition") == Some(def.as_str()) => {
                    return Self::stored_from(h, None);
                }
                Some(h) => (
                    get_n::<u32>(h, "version").unwrap_or(0) + 1,
                    get_s(h, "created_at").unwrap_or_default().to_string(),
                ),
                None => (1, ts(now)),
            };
            let status = head
                .as_ref()
                .and_then(|h| get_s(h, "status"))
                .unwrap_or("Active")
                .to_string();
            let mut version_item = Self::key(flow_pk(&flow.name), &version_sk(version));
            version_item.insert("name".into(), s(&flow.name));
            version_item.insert("version".into(), n(version));
            version_item.insert("definition".into(), s(&def));
            version_item.insert("created_at".into(), s(&created));
            version_item.insert("updated_at".into(), s(ts(now)));
            let mut head_item = version_item.clone();
            head_item.insert("sk".into(), s(HEAD));
            head_item.insert("status".into(), s(&status));
            head_item.insert("gsi1pk".into(), s(FLOWS_GSI_PK));
            head_item.insert("gsi1sk".into(), s(&flow.name));
            let head_put = match &head {
                Some(_) => Put::builder()
                    .condition_expression("version = :prev")
                    .expression_attribute_values(":prev", n(version - 1)),
                None => Put::builder().condition_expression("attribute_not_exists(pk)"),
            }
            .table_name(&self.table)
            .set_item(Some(head_item.clone()))
            .build()
            .map_err(built)?;
            let version_put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(version_item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(built)?;
            let r = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(version_put).build())
                .transact_items(TransactWriteItem::builder().put(head_put).build())
                .send()
                .await;
            match r {
                Ok(_) => return Self::stored_from(&head_item, None),
                Err(e) if condition_failed(&e) => continue,
                Err(e) => return Err(ddb("TransactWriteItems", e)),
            }
        }
        Err(StoreError::Conflict(format!(
            "flow '{}' is being changed by someone else at the same time; try again",
            flow.name
        )))
    }

    async fn get_flow(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredFlow>, StoreError> {
        let Some(head) = self.get_item(flow_pk(name), HEAD).await? else {
            return Ok(None);
        };
        match version {
            None => Self::stored_from(&head, None).map(Some),
            Some(v) if get_n::<u32>(&head, "version") == Some(v) => {
                Self::stored_from(&head, None).map(Some)
            }
            Some(v) => match self.get_item(flow_pk(name), &version_sk(v)).await? {
                Some(item) => Self::stored_from(&head, Some(&item)).map(Some),
                None => Ok(None),
            },
        }
    }

    async fn list_flows(&self) -> Result<Vec<StoredFlow>, StoreError> {
        let mut out = vec![];
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("gsi1pk = :p")
                .expression_attribute_values(":p", s(FLOWS_GSI_PK))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| ddb("Query gsi1 (flows)", e))?;
            for item in page.items.unwrap_or_default() {
                // A GSI projecting keys only: read the head itself.
                if item.contains_key("definition") {
                    out.push(Self::stored_from(&item, None)?);
                } else if let Some(name) = get_s(&item, "gsi1sk") {
                    if let Some(f) = self.get_flow(name, None).await? {
                        out.push(f);
                    }
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.flow.name.cmp(&b.flow.name));
        Ok(out)
    }

    async fn delete_flow(&self, name: &str) -> Result<bool, StoreError> {
        let items = self.query_partition(flow_pk(name), None, true).await?;
        let keys: Vec<Item> = items
            .into_iter()
            .filter(|i| get_s(i, "sk").is_some_and(|sk| sk == HEAD || sk.starts_with("V#")))
            .collect();
        let existed = !keys.is_empty();
        // The head goes first so a concurrent reader never sees a head without its versions.
        let (head, versions): (Vec<Item>, Vec<Item>) =
            keys.into_iter().partition(|i| get_s(i, "sk") == Some(HEAD));
        self.delete_keys(head).await?;
        self.delete_keys(versions).await?;
        Ok(existed)
    }

    async fn set_status(&self, name: &str, status: FlowStatus) -> Result<(), StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(flow_pk(name), HEAD)))
            .update_expression("SET #s = :s")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":s", s(format!("{status:?}")))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Err(StoreError::NotFound(format!("flow '{name}'"))),
            Err(e) => Err(ddb("UpdateItem", e)),
        }
    }
}

#[async_trait]
impl RunStore for DynamoStore {
    async fn get_state(&self, flow: &str) -> Result<FlowState, StoreError> {
        let item = self.get_item(flow_pk(flow), STATE).await?;
        state_from_item(flow, item.as_ref())
    }

    async fn acquire_lease(
        &self,
        flow: &str,
        claim: &LeaseClaim,
        now: DateTime<Utc>,
    ) -> Result<FlowState, StoreError> {
        let (run_id, expires_at) = (claim.run_id.as_str(), claim.expires_at);
        // `lease_watermark` remembers the watermark the run started from, so commit_success can
        // tell a moved watermark from a lost lease.
        let (holder_expr, holder) = match &claim.holder {
            Some(h) => ("SET lease_holder = :h", s(h)),
            None => ("REMOVE lease_holder", s("")),
        };
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(flow_pk(flow), STATE)));
        if claim.holder.is_some() {
            req = req.expression_attribute_values(":h", holder);
        }
        let set = "SET lease_run_id = :r, lease_expires_at = :e, lease_expires_ms = :em, last_run_id = :r, \
                   lease_watermark = if_not_exists(watermark, :none)";
        let update = if claim.holder.is_some() {
            format!("{set}, lease_holder = :h")
        } else {
            format!("{set} {holder_expr}")
        };
        let r = req
            .update_expression(update)
            .condition_expression(
                "attribute_not_exists(lease_run_id) OR lease_run_id = :r OR lease_expires_ms <= :now",
            )
            .expression_attribute_values(":r", s(run_id))
            .expression_attribute_values(":e", s(ts(expires_at)))
            .expression_attribute_values(":em", n(expires_at.timestamp_millis()))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .expression_attribute_values(":none", s(""))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(out) => state_from_item(flow, out.attributes.as_ref()),
            Err(e) if condition_failed(&e) => {
                let old = self.state_on_condition_failure(flow, &e).await?;
                let st = state_from_item(flow, old.as_ref())?;
                let (holder, until) = st
                    .lease
                    .map(|l| (l.run_id, ts(l.expires_at)))
                    .unwrap_or_else(|| ("?".into(), "?".into()));
                Err(StoreError::Conflict(format!(
                    "flow '{flow}' is already running (run {holder}, lease held until {until}); wait for it to finish, or stop it with `ferry stop {holder}`"
                )))
            }
            Err(e) => Err(ddb("UpdateItem (acquire lease)", e)),
        }
    }

    async fn renew_lease(
        &self,
        flow: &str,
        run_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(flow_pk(flow), STATE)))
            .update_expression("SET lease_expires_at = :e, lease_expires_ms = :em")
            .condition_expression("lease_run_id = :r")
            .expression_attribute_values(":r", s(run_id))
            .expression_attribute_values(":e", s(ts(expires_at)))
            .expression_attribute_values(":em", n(expires_at.timestamp_millis()))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Err(StoreError::Conflict(format!(
                "run {run_id} no longer holds the lease of flow '{flow}' (it expired and another run took it)"
            ))),
            Err(e) => Err(ddb("UpdateItem (renew lease)", e)),
        }
    }

    async fn commit_success(
        &self,
        flow: &str,
        run_id: &str,
        commit: &StateCommit,
    ) -> Result<FlowState, StoreError> {
        let mut set = vec!["schema_version = :sv", "consecutive_failures = :zero"];
        let mut values: Item = [
            (":r".to_string(), s(run_id)),
            (":sv".to_string(), n(commit.schema_version)),
            (":zero".to_string(), n(0)),
            (":none".to_string(), s("")),
        ]
        .into();
        let mut names: HashMap<String, String> = HashMap::new();
        if let Some(w) = commit.watermark {
            set.push("watermark = :w");
            values.insert(":w".into(), s(ts(w)));
        }
        if let Some(schema) = &commit.schema {
            set.push("#schema = :schema");
            names.insert("#schema".into(), "schema".into());
            values.insert(":schema".into(), s(schema.to_string()));
        }
        if let Some(slices) = &commit.slices {
            set.push("slices = :slices, slices_rev = if_not_exists(slices_rev, :zero) + :one");
            values.insert(
                ":slices".into(),
                s(serde_json::to_string(slices).map_err(js)?),
            );
            values.insert(":one".into(), n(1));
        }
        set.push("committed_run_id = :r");
        let update = aws_sdk_dynamodb::types::Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(flow_pk(flow), STATE)))
            .update_expression(format!(
                "SET {} REMOVE lease_run_id, lease_expires_at, lease_expires_ms, lease_watermark, lease_holder",
                set.join(", ")
            ))
            // Ours, and the watermark is the one the run started from.
            .condition_expression(
                "lease_run_id = :r AND ((attribute_not_exists(watermark) AND lease_watermark = :none) OR watermark = lease_watermark)",
            )
            .set_expression_attribute_values(Some(values))
            .set_expression_attribute_names((!names.is_empty()).then_some(names))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| StoreError::backend("dynamodb commit update", e))?;
        let mut marker = Self::key(run_pk(run_id), COMMIT);
        marker.insert("flow".into(), s(flow));
        marker.insert("committed_at".into(), s(ts(Utc::now())));
        if let Some(w) = commit.watermark {
            marker.insert("watermark".into(), s(ts(w)));
        }
        let mut items = vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(marker))
                        .build()
                        .map_err(|e| StoreError::backend("dynamodb commit marker", e))?,
                )
                .build(),
        ];
        if let Some(rec) = &commit.record {
            items.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(Self::run_item(rec)?))
                            .build()
                            .map_err(|e| StoreError::backend("dynamodb run record", e))?,
                    )
                    .build(),
            );
        }
        let r = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match r {
            Ok(_) => self.get_state(flow).await,
            Err(e) if transaction_conflict(&e) => {
                Err(ddb("TransactWriteItems (commit run, concurrent write)", e))
            }
            Err(e) if condition_failed(&e) => {
                // A retry by a run that committed: its marker is there.
                if self.is_committed(run_id).await? {
                    return self.get_state(flow).await;
                }
                let old = self.get_item(flow_pk(flow), STATE).await?;
                Err(Self::lease_conflict(
                    flow,
                    run_id,
                    old.as_ref(),
                    "the watermark was not moved: committing the run",
                ))
            }
            Err(e) => Err(ddb("TransactWriteItems (commit run)", e)),
        }
    }

    async fn is_committed(&self, run_id: &str) -> Result<bool, StoreError> {
        Ok(self.get_item(run_pk(run_id), COMMIT).await?.is_some())
    }

    async fn release_lease(&self, flow: &str, run_id: &str) -> Result<bool, StoreError> {
        self.release(flow, run_id).await
    }

    async fn record_failure(&self, flow: &str, run_id: &str) -> Result<u32, StoreError> {
        if self.is_committed(run_id).await? {
            return Ok(self.get_state(flow).await?.consecutive_failures);
        }
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(flow_pk(flow), STATE)))
            .update_expression(
                "ADD consecutive_failures :one REMOVE lease_run_id, lease_expires_at, lease_expires_ms, lease_watermark, lease_holder",
            )
            .condition_expression("lease_run_id = :r")
            .expression_attribute_values(":r", s(run_id))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match r {
            Ok(out) => Ok(state_from_item(flow, out.attributes.as_ref())?.consecutive_failures),
            // Not ours (any more): count nothing, report the current count.
            Err(e) if condition_failed(&e) => Ok(self.get_state(flow).await?.consecutive_failures),
            Err(e) => Err(ddb("UpdateItem (record failure)", e)),
        }
    }

    async fn delete_state(&self, flow: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(flow_pk(flow), STATE)))
            .send()
            .await
            .map_err(|e| ddb("DeleteItem", e))?;
        Ok(())
    }

    async fn slice_ledger(&self, flow: &str) -> Result<SliceLedger, StoreError> {
        let item = self.get_item(flow_pk(flow), STATE).await?;
        ledger_from_item(item.as_ref())
    }

    async fn put_slice_ledger(
        &self,
        flow: &str,
        run_id: &str,
        rev: u64,
        slices: &[CommittedSlice],
        watermark: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let current = self.get_item(flow_pk(flow), STATE).await?;
        let state = state_from_item(flow, current.as_ref())?;
        let advance = watermark.filter(|w| state.watermark.is_none_or(|c| c < *w));
        let mut set = vec!["slices = :slices", "slices_rev = :next"];
        let mut cond = vec![
            "lease_run_id = :r".to_string(),
            if rev == 0 {
                "(attribute_not_exists(slices_rev) OR slices_rev = :rev)".to_string()
            } else {
                "slices_rev = :rev".to_string()
            },
        ];
        let mut values: Item = [
            (":r".to_string(), s(run_id)),
            (
                ":slices".to_string(),
                s(serde_json::to_string(slices).map_err(js)?),
            ),
            (":rev".to_string(), n(rev)),
            (":next".to_string(), n(rev + 1)),
        ]
        .into();
        if let Some(w) = advance {
            set.push("watermark = :w");
            set.push("lease_watermark = :w");
            values.insert(":w".into(), s(ts(w)));
            values.insert(":none".into(), s(""));
            // As the run's commit: a watermark moved behind the run's back is never absorbed.
            cond.push(
                "((attribute_not_exists(watermark) AND lease_watermark = :none) OR watermark = lease_watermark)"
                    .into(),
            );
        }
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(flow_pk(flow), STATE)))
            .update_expression(format!("SET {}", set.join(", ")))
            .condition_expression(cond.join(" AND "))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => {
                let old = self.state_on_condition_failure(flow, &e).await?;
                let holder = old.as_ref().and_then(|i| get_s(i, "lease_run_id"));
                if holder == Some(run_id) && ledger_from_item(old.as_ref())?.rev != rev {
                    return Ok(false);
                }
                Err(Self::lease_conflict(
                    flow,
                    run_id,
                    old.as_ref(),
                    "committing its slice",
                ))
            }
            Err(e) => Err(ddb("UpdateItem (slice ledger)", e)),
        }
    }

    async fn put_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let item = Self::run_item(run)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| ddb("PutItem (run)", e))?;
        Ok(())
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let item = self.get_item(run_pk(run_id), RUN).await?;
        item.as_ref()
            .and_then(|i| get_s(i, "record"))
            .map(|r| serde_json::from_str(r).map_err(js))
            .transpose()
    }

    async fn list_runs(&self, flow: &str, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let mut out = vec![];
        let mut start: Option<Item> = None;
        while out.len() < limit {
            let want = (limit - out.len()).min(1000) as i32;
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("gsi1pk = :p")
                .expression_attribute_values(":p", s(runs_gsi_pk(flow)))
                .scan_index_forward(false)
                .limit(want)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| ddb("Query gsi1 (runs)", e))?;
            for item in page.items.unwrap_or_default() {
                match get_s(&item, "record") {
                    Some(r) => out.push(serde_json::from_str(r).map_err(js)?),
                    // A GSI projecting keys only: read the run itself.
                    None => {
                        if let Some(id) = get_s(&item, "pk").and_then(|p| p.strip_prefix("RUN#")) {
                            if let Some(r) = self.get_run(id).await? {
                                out.push(r);
                            }
                        }
                    }
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn put_chunk_result(&self, result: &ChunkResult) -> Result<(), StoreError> {
        let rec = serde_json::to_string(result).map_err(js)?;
        let mut item = Self::key(
            run_pk(&result.run_id),
            &chunk_sk(result.chunk, result.stage.as_str()),
        );
        item.insert("result".into(), s(rec));
        item.insert(
            "expires_at".into(),
            n((Utc::now() + chrono::Duration::days(CHUNK_RESULT_TTL_DAYS)).timestamp()),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| ddb("PutItem (chunk result)", e))?;
        Ok(())
    }

    async fn chunk_results(&self, run_id: &str) -> Result<Vec<ChunkResult>, StoreError> {
        let items = self
            .query_partition(run_pk(run_id), Some("CHUNK#"), false)
            .await?;
        items
            .iter()
            .filter_map(|i| get_s(i, "result"))
            .map(|r| serde_json::from_str(r).map_err(js))
            .collect()
    }
}

/// The table ferry expects (what template.yaml declares): for tests and `ferry` bootstrap.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(built)
    };
    let key = |name: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
            .map_err(built)
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .attribute_definitions(attr("gsi1pk")?)
        .attribute_definitions(attr("gsi1sk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(GSI1)
                .key_schema(key("gsi1pk", KeyType::Hash)?)
                .key_schema(key("gsi1sk", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(built)?,
        )
        .send()
        .await
        .map_err(|e| ddb("CreateTable", e))?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()
                .map_err(built)?,
        )
        .send()
        .await
        .map_err(|e| ddb("UpdateTimeToLive", e))?;
    Ok(())
}
