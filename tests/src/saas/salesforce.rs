//! A Salesforce stand-in speaking the REST and Bulk API 2.0 dialect the `salesforce` connector
//! uses: OAuth2 refresh-token grant with client credentials in the form and `instance_url` in
//! the answer; `/sobjects`, `describe`; SOQL over `query`/`queryAll` with `nextRecordsUrl`
//! locators and `Sforce-Query-Options: batchSize`; Bulk API 2.0 query jobs whose CSV results
//! are paged by `Sforce-Locator`; error bodies `[{"message", "errorCode"}]` (401
//! `INVALID_SESSION_ID`, 403 `REQUEST_LIMIT_EXCEEDED`, 400 `INVALID_FIELD`/`MALFORMED_QUERY`).
//!
//! Data: `Account` records `1..=n`. Record `i` has `SystemModstamp` = BASE + i minutes +
//! (i·37 mod 1000) ms; every 17th is deleted (only `queryAll` shows it); every 10th name holds a
//! comma, quotes and a line break; nulls in several columns by `i` modulo small numbers; the
//! billing address is null for every 7th. `touch` moves records' `SystemModstamp` to a new time.
//! SOQL dateTime literals must be whole seconds (`2026-01-01T00:00:00Z`), as Salesforce requires.
//!
//! Each behaviour names the documentation page it follows next to its handler: status codes
//! and error bodies ([`sf_error`], [`gate`]), Bulk API 2.0 query jobs ([`create_job`],
//! [`job_info`], [`job_results`]), SOQL paging ([`query_page`], [`batch_size`]), describe
//! ([`sobjects`], [`describe`]), OAuth ([`token`], [`authorize`]).

use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, TimeZone, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub const CLIENT_ID: &str = "3MVG9mock-client";
pub const CLIENT_SECRET: &str = "mock-client-secret";
pub const REFRESH_TOKEN: &str = "5Aep861mock-refresh";

pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// `SystemModstamp` of record `i` before any `touch`.
pub fn modstamp(i: u64) -> DateTime<Utc> {
    base_time()
        + ChronoDuration::minutes(i as i64)
        + ChronoDuration::milliseconds((i * 37 % 1000) as i64)
}

pub fn account_id(i: u64) -> String {
    format!("001Mk{i:013}")
}

pub fn is_deleted(i: u64) -> bool {
    i.is_multiple_of(17)
}

#[derive(Debug, Clone)]
pub enum SfFault {
    /// This status with a Salesforce error body and an optional `Retry-After`.
    Status {
        status: u16,
        retry_after: Option<String>,
    },
    /// 403 `REQUEST_LIMIT_EXCEEDED`: the org's API request limit is used up.
    /// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm>
    RequestLimit,
}

#[derive(Debug, Clone)]
pub struct SfConfig {
    pub accounts: u64,
    /// Job status polls answered `InProgress` before `JobComplete`.
    pub bulk_polls: u32,
    /// Bulk jobs end `Failed`.
    pub fail_jobs: bool,
}

impl Default for SfConfig {
    fn default() -> Self {
        SfConfig {
            accounts: 450,
            bulk_polls: 1,
            fail_jobs: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SfSeen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub status: u16,
}

struct Job {
    ids: Vec<u64>,
    fields: Vec<String>,
    version: String,
    polls_left: u32,
    operation: String,
}

struct Inner {
    cfg: SfConfig,
    /// (record, field, text) served instead of the generated value (a value ferry must refuse:
    /// the canary tests).
    overrides: Mutex<Vec<(u64, String, String)>>,
    url: Mutex<String>,
    faults: Mutex<VecDeque<SfFault>>,
    periodic: Mutex<Option<(u64, SfFault)>>,
    on_request: Mutex<HashMap<u64, SfFault>>,
    data_requests: AtomicU64,
    log: Mutex<Vec<SfSeen>>,
    tokens: Mutex<HashMap<String, bool>>,
    revoked: Mutex<bool>,
    token_requests: AtomicU64,
    touched: Mutex<HashMap<u64, DateTime<Utc>>>,
    /// (data request number, ids): edit those records (now) when that request arrives.
    scheduled: Mutex<Vec<(u64, Vec<u64>)>>,
    queries: Mutex<Vec<(Vec<u64>, Vec<String>)>>,
    jobs: Mutex<Vec<Job>>,
    codes: super::oauth::AuthCodes,
}

type S = Arc<Inner>;

pub struct SalesforceMock {
    pub addr: SocketAddr,
    inner: S,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SalesforceMock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SalesforceMock {
    pub async fn start(cfg: SfConfig) -> SalesforceMock {
        let inner = Arc::new(Inner {
            cfg,
            overrides: Default::default(),
            url: Mutex::new(String::new()),
            faults: Default::default(),
            periodic: Default::default(),
            on_request: Default::default(),
            data_requests: AtomicU64::new(0),
            log: Default::default(),
            tokens: Default::default(),
            revoked: Mutex::new(false),
            token_requests: AtomicU64::new(0),
            touched: Default::default(),
            scheduled: Default::default(),
            queries: Default::default(),
            jobs: Default::default(),
            codes: Default::default(),
        });
        let app = router(inner.clone());
        let (addr, task) = super::serve(app, "salesforce").await;
        *inner.url.lock().unwrap() = format!("http://{addr}");
        SalesforceMock { addr, inner, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A profile secret for this server: refresh token, client credentials, token URL.
    pub fn secret(&self) -> Value {
        json!({"token_url": format!("{}/services/oauth2/token", self.url()),
               "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN})
    }

    pub fn push_faults(&self, faults: impl IntoIterator<Item = SfFault>) {
        self.inner.faults.lock().unwrap().extend(faults);
    }

    /// Every `every`-th data request gets `fault`.
    pub fn fault_every(&self, every: u64, fault: SfFault) {
        *self.inner.periodic.lock().unwrap() = Some((every, fault));
    }

    /// The `n`-th authorized data request (counting from 1) gets `fault`.
    pub fn fault_on_request(&self, n: u64, fault: SfFault) {
        self.inner.on_request.lock().unwrap().insert(n, fault);
    }

    /// The authorization-code grant's state: refuse the next consent, see the last authorize
    /// request.
    pub fn consent(&self) -> &super::oauth::AuthCodes {
        &self.inner.codes
    }

    /// The OAuth client this server knows.
    pub fn client() -> (&'static str, &'static str) {
        (CLIENT_ID, CLIENT_SECRET)
    }

    pub fn revoke_refresh_token(&self) {
        *self.inner.revoked.lock().unwrap() = true;
    }

    /// Every issued access token stops working (the session timed out).
    pub fn expire_sessions(&self) {
        for v in self.inner.tokens.lock().unwrap().values_mut() {
            *v = false;
        }
    }

    pub fn token_requests(&self) -> u64 {
        self.inner.token_requests.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<SfSeen> {
        self.inner.log.lock().unwrap().clone()
    }

    pub fn jobs_created(&self) -> usize {
        self.inner.jobs.lock().unwrap().len()
    }

    /// Serve `text` as record `i`'s `field`, in both APIs (whatever the field's type).
    pub fn override_field(&self, i: u64, field: &str, text: &str) {
        self.inner
            .overrides
            .lock()
            .unwrap()
            .push((i, field.to_string(), text.to_string()));
    }

    /// Records `ids` are modified at `at`.
    pub fn touch(&self, ids: impl IntoIterator<Item = u64>, at: DateTime<Utc>) {
        let mut t = self.inner.touched.lock().unwrap();
        for i in ids {
            t.insert(i, at);
        }
    }

    /// Edit records `ids` (now) when the `n`-th authorized data request arrives: a user
    /// editing while a run pages.
    pub fn touch_on_request(&self, n: u64, ids: &[u64]) {
        self.inner.scheduled.lock().unwrap().push((n, ids.to_vec()));
    }

    /// (Id, SystemModstamp as ferry writes it) of every live record now.
    pub fn versions(&self) -> BTreeSet<(String, String)> {
        (1..=self.inner.cfg.accounts)
            .filter(|i| !is_deleted(*i))
            .map(|i| {
                (
                    account_id(i),
                    stamp(&self.inner, i)
                        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                        .to_string(),
                )
            })
            .collect()
    }

    pub fn modstamp_of(&self, i: u64) -> DateTime<Utc> {
        stamp(&self.inner, i)
    }

    /// Ids with `SystemModstamp` in `(start, end]`, deleted ones only with `include_deleted`.
    pub fn ids_in(
        &self,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        include_deleted: bool,
    ) -> BTreeSet<String> {
        (1..=self.inner.cfg.accounts)
            .filter(|i| include_deleted || !is_deleted(*i))
            .filter(|i| {
                let t = stamp(&self.inner, *i);
                start.is_none_or(|s| t > s) && end.is_none_or(|e| t <= e)
            })
            .map(account_id)
            .collect()
    }
}

fn stamp(s: &Inner, i: u64) -> DateTime<Utc> {
    s.touched
        .lock()
        .unwrap()
        .get(&i)
        .copied()
        .unwrap_or_else(|| modstamp(i))
}

fn router(s: S) -> Router {
    Router::new()
        .route("/services/oauth2/token", post(token))
        .route("/services/oauth2/authorize", get(authorize))
        .route("/services/data/{v}/sobjects", get(sobjects))
        .route("/services/data/{v}/sobjects/{name}/describe", get(describe))
        .route("/services/data/{v}/query", get(query))
        .route("/services/data/{v}/queryAll", get(query_all))
        .route("/services/data/{v}/query/{locator}", get(query_more))
        .route("/services/data/{v}/queryAll/{locator}", get(query_more))
        .route("/services/data/{v}/jobs/query", post(create_job))
        .route("/services/data/{v}/jobs/query/{id}", get(job_info))
        .route(
            "/services/data/{v}/jobs/query/{id}/results",
            get(job_results),
        )
        .layer(axum::middleware::from_fn_with_state(s.clone(), gate))
        .with_state(s)
}

/// Salesforce's error body: an array of `{"message", "errorCode"}` (`fields` where a field is
/// at fault).
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm>
fn sf_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!([{"message": message, "errorCode": code}])),
    )
        .into_response()
}

/// (name, type, compound, nillable, label)
const FIELDS: &[(&str, &str, Option<&str>, bool, &str)] = &[
    ("Id", "id", None, false, "Account ID"),
    ("IsDeleted", "boolean", None, false, "Deleted"),
    ("Name", "string", None, false, "Account Name"),
    ("Industry", "picklist", None, true, "Industry"),
    ("AnnualRevenue", "currency", None, true, "Annual Revenue"),
    ("Discount__c", "percent", None, true, "Discount"),
    ("OwnerId", "reference", None, false, "Owner ID"),
    ("ParentId", "reference", None, true, "Parent Account ID"),
    ("NumberOfEmployees", "int", None, true, "Employees"),
    ("IsPartner", "boolean", None, false, "Partner"),
    (
        "SLAExpirationDate__c",
        "date",
        None,
        true,
        "SLA Expiration Date",
    ),
    ("Description", "textarea", None, true, "Account Description"),
    (
        "BillingStreet",
        "textarea",
        Some("BillingAddress"),
        true,
        "Billing Street",
    ),
    (
        "BillingCity",
        "string",
        Some("BillingAddress"),
        true,
        "Billing City",
    ),
    (
        "BillingState",
        "string",
        Some("BillingAddress"),
        true,
        "Billing State/Province",
    ),
    (
        "BillingPostalCode",
        "string",
        Some("BillingAddress"),
        true,
        "Billing Zip/Postal Code",
    ),
    (
        "BillingCountry",
        "string",
        Some("BillingAddress"),
        true,
        "Billing Country",
    ),
    (
        "BillingLatitude",
        "double",
        Some("BillingAddress"),
        true,
        "Billing Latitude",
    ),
    (
        "BillingLongitude",
        "double",
        Some("BillingAddress"),
        true,
        "Billing Longitude",
    ),
    (
        "BillingGeocodeAccuracy",
        "picklist",
        Some("BillingAddress"),
        true,
        "Billing Geocode Accuracy",
    ),
    ("BillingAddress", "address", None, true, "Billing Address"),
    ("Logo__c", "base64", None, true, "Logo"),
    ("CreatedDate", "datetime", None, false, "Created Date"),
    (
        "LastModifiedDate",
        "datetime",
        None,
        false,
        "Last Modified Date",
    ),
    ("SystemModstamp", "datetime", None, false, "System Modstamp"),
];

fn field_type(name: &str) -> Option<&'static str> {
    FIELDS.iter().find(|f| f.0 == name).map(|f| f.1)
}

/// A field of record `i` as a typed value (`Value::String` for dates and datetimes as `DateTime`
/// values are written by the caller in each API's format).
enum V {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    /// An exact decimal, written as a JSON number / CSV text with these digits.
    Dec(String),
    Bool(bool),
    Time(DateTime<Utc>),
}

fn value(s: &Inner, i: u64, field: &str) -> V {
    if let Some((_, _, t)) = s
        .overrides
        .lock()
        .unwrap()
        .iter()
        .find(|(n, f, _)| *n == i && f == field)
    {
        return V::Text(t.clone());
    }
    let addr = !i.is_multiple_of(7);
    match field {
        "Id" => V::Text(account_id(i)),
        "IsDeleted" => V::Bool(is_deleted(i)),
        "Name" if i.is_multiple_of(10) => V::Text(format!("Acme, \"Big\" Co\nunit {i}")),
        "Name" => V::Text(format!("Account {i}")),
        "Industry" if i.is_multiple_of(4) => V::Null,
        "Industry" => V::Text(["Energy", "Retail", "Banking"][(i % 3) as usize].into()),
        "AnnualRevenue" if i.is_multiple_of(5) => V::Null,
        // More digits than a 64-bit float holds: only an exact decimal path keeps them.
        "AnnualRevenue" if i.is_multiple_of(13) => V::Dec(format!("98765432109{i:03}.57")),
        "Discount__c" if i.is_multiple_of(3) => V::Null,
        "Discount__c" => V::Dec(format!("{}.{:02}", i % 100, i % 97)),
        "OwnerId" => V::Text(format!("005Mk{:013}", 1 + i % 4)),
        "ParentId" if i.is_multiple_of(8) => V::Text(account_id(i - 1)),
        "ParentId" => V::Null,
        "AnnualRevenue" if i.is_multiple_of(9) => V::Float(i as f64 * 1.0e9),
        "AnnualRevenue" => V::Float(i as f64 * 1000.5),
        "NumberOfEmployees" if i.is_multiple_of(6) => V::Null,
        "NumberOfEmployees" => V::Int(i as i64 * 3),
        "IsPartner" => V::Bool(i.is_multiple_of(2)),
        "SLAExpirationDate__c" if i.is_multiple_of(3) => V::Null,
        "SLAExpirationDate__c" => V::Text(
            NaiveDate::from_ymd_opt(2026, 2, 1 + (i % 28) as u32)
                .unwrap()
                .to_string(),
        ),
        "Description" if i % 2 == 1 => V::Null,
        "Description" => V::Text(format!("Line one\r\nline two, for {i}")),
        _ if field.starts_with("Billing") && !addr => V::Null,
        "BillingStreet" => V::Text(format!("{i} Main St\nSuite 5")),
        "BillingCity" => V::Text("Springfield".into()),
        "BillingState" => V::Text("CA".into()),
        "BillingPostalCode" => V::Text(format!("{:05}", 90000 + i)),
        "BillingCountry" => V::Text("USA".into()),
        "BillingLatitude" => V::Float(37.0 + i as f64 / 1000.0),
        "BillingLongitude" => V::Float(-122.0 - i as f64 / 1000.0),
        "BillingGeocodeAccuracy" => V::Text("Address".into()),
        "Logo__c" => V::Text(format!(
            "/services/data/v62.0/sobjects/Account/{}/Logo__c",
            account_id(i)
        )),
        "CreatedDate" => V::Time(base_time() + ChronoDuration::seconds(i as i64)),
        "LastModifiedDate" => V::Time(stamp(s, i) - ChronoDuration::seconds(1)),
        "SystemModstamp" => V::Time(stamp(s, i)),
        _ => V::Null,
    }
}

/// REST JSON: datetimes as `2026-01-01T00:00:00.000+0000`.
fn rest_value(s: &Inner, i: u64, field: &str) -> Value {
    if field == "BillingAddress" {
        if i.is_multiple_of(7) {
            return Value::Null;
        }
        let mut o = serde_json::Map::new();
        for (sub, f) in [
            ("city", "BillingCity"),
            ("country", "BillingCountry"),
            ("geocodeAccuracy", "BillingGeocodeAccuracy"),
            ("latitude", "BillingLatitude"),
            ("longitude", "BillingLongitude"),
            ("postalCode", "BillingPostalCode"),
            ("state", "BillingState"),
            ("street", "BillingStreet"),
        ] {
            o.insert(sub.into(), rest_value(s, i, f));
        }
        return Value::Object(o);
    }
    if let Some((rel, rest)) = field.split_once('.') {
        // REST nests related records: `"Owner": {"attributes": {…}, "Name": "User 2"}`;
        // an empty lookup is `null`.
        let (_, _, to) = RELATIONSHIPS.iter().find(|r| r.1 == rel).unwrap();
        let key = rest.split('.').next().unwrap();
        let inner = match rel {
            "Owner" => match related_value(s, i, field) {
                V::Null => Value::Null,
                V::Text(t) | V::Dec(t) => Value::String(t),
                V::Bool(b) => json!(b),
                V::Int(n) => json!(n),
                V::Float(f) => json!(f),
                V::Time(t) => Value::String(t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()),
            },
            _ if !i.is_multiple_of(8) => return Value::Null,
            _ => rest_value(s, i - 1, rest),
        };
        let mut o = serde_json::Map::new();
        o.insert(
            "attributes".into(),
            json!({"type": to, "url": format!("/services/data/v62.0/sobjects/{to}/x")}),
        );
        o.insert(key.into(), inner);
        return Value::Object(o);
    }
    match value(s, i, field) {
        V::Null => Value::Null,
        V::Text(t) => Value::String(t),
        V::Int(n) => json!(n),
        V::Float(f) => json!(f),
        // The digits go into the body as a number literal (see `exact_numbers`).
        V::Dec(d) => Value::String(format!("{EXACT}{d}")),
        V::Bool(b) => json!(b),
        V::Time(t) => Value::String(t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()),
    }
}

/// Bulk CSV text: datetimes as `…000Z`, large doubles in E notation, null as empty.
fn csv_value(s: &Inner, i: u64, field: &str) -> String {
    let v = if field.contains('.') {
        related_value(s, i, field)
    } else {
        value(s, i, field)
    };
    match v {
        V::Null => String::new(),
        V::Text(t) | V::Dec(t) => t,
        V::Int(n) => n.to_string(),
        V::Float(f) if f.abs() >= 1.0e7 => format!("{f:E}"),
        V::Float(f) => f.to_string(),
        V::Bool(b) => b.to_string(),
        V::Time(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
    }
}

/// Merge `v` into `into` (objects key by key, recursively; `null` stays `null`).
fn merge(into: &mut Value, v: Value) {
    match (into, v) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, x) in b {
                merge(a.entry(k).or_insert(Value::Null), x);
            }
        }
        (slot @ Value::Null, v) => *slot = v,
        _ => {}
    }
}

/// Marks a string that `exact_numbers` turns into a JSON number literal of its digits.
const EXACT: &str = "\u{1}num:";

/// A JSON body with the marked strings written as number literals of their exact digits, as
/// Salesforce writes currency values (`"AnnualRevenue": 98765432109123.57`).
fn exact_numbers(body: &Value) -> String {
    let text = body.to_string();
    let marker = serde_json::to_string(EXACT).unwrap();
    let marker = &marker[1..marker.len() - 1];
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(&format!("\"{marker}")) {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1 + marker.len()..];
        let end = after.find('"').unwrap();
        out.push_str(&after[..end]);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn csv_cell(v: &str) -> String {
    format!("\"{}\"", v.replace('"', "\"\""))
}

/// The token endpoint: the refresh token flow (`grant_type=refresh_token`, `client_id`,
/// `client_secret`, `refresh_token` in the form; `access_token` and `instance_url` in the
/// answer; 400 `invalid_grant` for a revoked token) and the web server flow's code exchange.
/// <https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_refresh_token_flow.htm>,
/// <https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_web_server_flow.htm>
async fn token(State(s): State<S>, body: String) -> Response {
    s.token_requests.fetch_add(1, Ordering::SeqCst);
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let bad = |code: &str, d: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": code, "error_description": d})),
        )
            .into_response()
    };
    if form.get("grant_type").map(String::as_str) == Some("authorization_code") {
        // Web server flow: the client secret is required unless the app turned "Require
        // Secret for Web Server Flow" off (PKCE alone then proves the client). This app
        // requires it when sent without PKCE.
        // https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_web_server_flow.htm
        if form
            .get("client_secret")
            .is_some_and(|c| c != CLIENT_SECRET)
            || (form.get("client_secret").is_none() && form.get("code_verifier").is_none())
        {
            return bad("invalid_client", "invalid client credentials");
        }
        let grant = match s.codes.redeem(&form) {
            Ok(g) => g,
            Err((code, d)) => return bad(code, &d),
        };
        let n = s.token_requests.load(Ordering::SeqCst);
        let at = format!("00DMk!AQ.access-{n}");
        s.tokens.lock().unwrap().insert(at.clone(), true);
        let url = s.url.lock().unwrap().clone();
        // A refresh token only with the `refresh_token` (offline_access) scope.
        let refresh = grant
            .scope
            .split(' ')
            .any(|x| x == "refresh_token" || x == "offline_access")
            .then_some(REFRESH_TOKEN);
        return axum::Json(json!({
            "access_token": at, "refresh_token": refresh, "signature": "c2lnbmF0dXJl",
            "scope": grant.scope, "instance_url": url,
            "id": format!("{url}/id/00DMk0000000001/005Mk0000000001"),
            "token_type": "Bearer", "issued_at": Utc::now().timestamp_millis().to_string()
        }))
        .into_response();
    }
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return bad("unsupported_grant_type", "grant type not supported");
    }
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return bad("invalid_client", "invalid client credentials");
    }
    if *s.revoked.lock().unwrap()
        || form.get("refresh_token").map(String::as_str) != Some(REFRESH_TOKEN)
    {
        return bad("invalid_grant", "expired access/refresh token");
    }
    let n = s.token_requests.load(Ordering::SeqCst);
    let at = format!("00DMk!AQ.access-{n}");
    s.tokens.lock().unwrap().insert(at.clone(), true);
    let url = s.url.lock().unwrap().clone();
    axum::Json(json!({
        "access_token": at, "signature": "c2lnbmF0dXJl", "scope": "refresh_token api",
        "instance_url": url, "id": format!("{url}/id/00DMk0000000001/005Mk0000000001"),
        "token_type": "Bearer", "issued_at": Utc::now().timestamp_millis().to_string()
    }))
    .into_response()
}

/// The consent page: the user approves and is sent back to the callback URL.
/// https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_web_server_flow.htm
async fn authorize(State(s): State<S>, RawQuery(q): RawQuery) -> Response {
    let d = super::oauth::Dialect {
        client_id: CLIENT_ID.into(),
        scope_param: "scope",
        require_state: false,
        pkce: super::oauth::Pkce::Optional,
    };
    s.codes.authorize(&d, q.as_deref().unwrap_or(""))
}

/// Describe Global: `encoding`, `maxBatchSize`, `sobjects` with `name`, `label`, `queryable`,
/// `custom`, `urls`.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_describeGlobal.htm>
async fn sobjects(Path(_v): Path<String>) -> Response {
    axum::Json(json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [
        {"name": "Account", "label": "Account", "queryable": true, "custom": false, "urls": {}},
        {"name": "Contact", "label": "Contact", "queryable": true, "custom": false, "urls": {}},
        {"name": "Invoice__c", "label": "Invoice", "queryable": true, "custom": true, "urls": {}},
        {"name": "AccountChangeEvent", "label": "Account Change Event", "queryable": false, "custom": false, "urls": {}},
    ]}))
    .into_response()
}

/// Lookups of Account: (field, relationshipName, referenceTo).
const RELATIONSHIPS: &[(&str, &str, &str)] = &[
    ("OwnerId", "Owner", "User"),
    ("ParentId", "Parent", "Account"),
];

/// User's fields (name, type, label), for `Owner.…` paths.
const USER_FIELDS: &[(&str, &str, &str)] = &[
    ("Id", "id", "User ID"),
    ("Name", "string", "Full Name"),
    ("Email", "email", "Email"),
    ("IsActive", "boolean", "Active"),
];

/// `describe`: fields with `type`, `precision`/`scale` (total digits and digits after the
/// point of currency, percent and double fields), `relationshipName`/`referenceTo` of lookups.
/// <https://developer.salesforce.com/docs/platform/apex-ref/references/apex-ref/apex-methods-system-fields-describe.html>,
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_describe.htm>
async fn describe(Path((_v, name)): Path<(String, String)>) -> Response {
    let fields: Vec<Value> = match name.as_str() {
        "Account" => FIELDS
            .iter()
            .map(|(n, t, c, nil, label)| {
                let (precision, scale) = match *t {
                    "currency" => (18, 2),
                    "percent" => (5, 2),
                    "double" => (18, 15),
                    _ => (0, 0),
                };
                let rel = RELATIONSHIPS.iter().find(|r| r.0 == *n);
                json!({"name": n, "type": t, "compoundFieldName": c, "nillable": nil, "label": label,
                "soapType": "xsd:string", "filterable": true, "precision": precision, "scale": scale,
                "relationshipName": rel.map(|r| r.1), "referenceTo": rel.map(|r| vec![r.2]).unwrap_or_default()})
            })
            .collect(),
        "User" => USER_FIELDS
            .iter()
            .map(|(n, t, label)| {
                json!({"name": n, "type": t, "compoundFieldName": null, "nillable": *n == "Email", "label": label,
                "precision": 0, "scale": 0, "relationshipName": null, "referenceTo": []})
            })
            .collect(),
        _ => {
            return sf_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
            )
        }
    };
    axum::Json(json!({"name": name, "label": name, "queryable": true, "fields": fields}))
        .into_response()
}

/// A relationship path of Account (`Owner.Name`, `Parent.Owner.Email`) in the API's casing,
/// or `None` when SOQL would refuse it.
fn relationship_path(f: &str) -> Option<String> {
    let segs: Vec<&str> = f.split('.').collect();
    let mut object = "Account";
    let mut out = vec![];
    for rel in &segs[..segs.len() - 1] {
        let (_, r, to) = RELATIONSHIPS
            .iter()
            .filter(|_| object == "Account")
            .find(|r| r.1.eq_ignore_ascii_case(rel))?;
        out.push(r.to_string());
        object = to;
    }
    let last = segs[segs.len() - 1];
    let name = match object {
        "Account" => {
            FIELDS
                .iter()
                .find(|x| x.0.eq_ignore_ascii_case(last) && x.1 != "address")?
                .0
        }
        _ => {
            USER_FIELDS
                .iter()
                .find(|x| x.0.eq_ignore_ascii_case(last))?
                .0
        }
    };
    out.push(name.to_string());
    Some(out.join("."))
}

/// The value at a relationship path of record `i`: Owner is user `1 + i % 4`, inactive for
/// user 4; every 8th account has account `i - 1` as its parent, the others none.
fn related_value(s: &Inner, i: u64, path: &str) -> V {
    let segs: Vec<&str> = path.split('.').collect();
    match segs[0] {
        "Owner" => {
            let u = 1 + i % 4;
            match segs[1] {
                "Id" => V::Text(format!("005Mk{u:013}")),
                "Name" => V::Text(format!("User {u}")),
                "Email" if u == 2 => V::Null,
                "Email" => V::Text(format!("user{u}@acme.test")),
                "IsActive" => V::Bool(u != 4),
                _ => V::Null,
            }
        }
        "Parent" if i.is_multiple_of(8) => {
            let rest = segs[1..].join(".");
            if rest.contains('.') {
                related_value(s, i - 1, &rest)
            } else {
                value(s, i - 1, &rest)
            }
        }
        _ => V::Null,
    }
}

struct Soql {
    fields: Vec<String>,
    count: bool,
    conds: Vec<(String, String, DateTime<Utc>)>,
}

fn parse_soql(q: &str) -> Result<Soql, Response> {
    let malformed = |m: &str| sf_error(StatusCode::BAD_REQUEST, "MALFORMED_QUERY", m);
    let rest = q
        .strip_prefix("SELECT ")
        .ok_or_else(|| malformed("unexpected token: expected SELECT"))?;
    let (sel, rest) = rest
        .split_once(" FROM ")
        .ok_or_else(|| malformed("unexpected token: expected FROM"))?;
    let (object, wher) = match rest.split_once(" WHERE ") {
        Some((o, w)) => (o.trim(), Some(w)),
        None => (rest.trim(), None),
    };
    if object != "Account" {
        return Err(sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_TYPE",
            &format!("sObject type '{object}' is not supported."),
        ));
    }
    let count = sel.trim() == "COUNT()";
    let fields: Vec<String> = if count {
        vec![]
    } else {
        sel.split(',').map(|f| f.trim().to_string()).collect()
    };
    let mut fields = fields;
    for f in fields.iter_mut() {
        if f.contains('.') {
            // Relationship fields are case-insensitive in SOQL; results use the API's casing.
            match relationship_path(f) {
                Some(p) => *f = p,
                None => {
                    return Err(sf_error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_FIELD",
                        &format!("Didn't understand relationship '{}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name.", f.split('.').next().unwrap_or("")),
                    ))
                }
            }
        } else if field_type(f).is_none() {
            return Err(sf_error(
                StatusCode::BAD_REQUEST,
                "INVALID_FIELD",
                &format!("No such column '{f}' on entity 'Account'."),
            ));
        }
    }
    let mut conds = vec![];
    for c in wher
        .map(|w| w.split(" AND ").collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let parts: Vec<&str> = c.split_whitespace().collect();
        let [f, op, v] = parts[..] else {
            return Err(malformed(&format!("unexpected condition '{c}'")));
        };
        if field_type(f) != Some("datetime") {
            return Err(sf_error(
                StatusCode::BAD_REQUEST,
                "INVALID_FIELD",
                &format!("No such column '{f}' on entity 'Account'."),
            ));
        }
        // Whole seconds only: YYYY-MM-DDThh:mm:ssZ.
        // https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_dateformats.htm
        let t = chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%SZ")
            .map_err(|_| malformed(&format!("line 1:{}: value of filter criterion for field '{f}' must be of type dateTime and should not be enclosed in quotes", q.find(v).unwrap_or(0))))?
            .and_utc();
        if !matches!(op, ">" | ">=" | "<" | "<=" | "=") {
            return Err(malformed(&format!("unexpected token: '{op}'")));
        }
        conds.push((f.to_string(), op.to_string(), t));
    }
    Ok(Soql {
        fields,
        count,
        conds,
    })
}

fn matching(s: &Inner, q: &Soql, all: bool) -> Vec<u64> {
    (1..=s.cfg.accounts)
        .filter(|i| all || !is_deleted(*i))
        .filter(|i| {
            q.conds.iter().all(|(f, op, t)| {
                let V::Time(v) = value(s, *i, f) else {
                    return false;
                };
                match op.as_str() {
                    ">" => v > *t,
                    ">=" => v >= *t,
                    "<" => v < *t,
                    "<=" => v <= *t,
                    _ => v == *t,
                }
            })
        })
        .collect()
}

/// `Sforce-Query-Options: batchSize=n`: 200 to 2,000 records per page (2,000 by default); a
/// size outside the range is served as the nearest (the size is a hint, not a promise).
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_queryoptions.htm>
fn batch_size(h: &HeaderMap) -> usize {
    h.get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("batchSize="))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(2000)
        .clamp(200, 2000)
}

/// One page of a query: `totalSize`, `done`, `records` and, while not done, `nextRecordsUrl`
/// (a queryAll's says `query` too). The result set is fixed when the query runs (the locator
/// pages through it); each page shows the records as they are when it is served.
/// <https://developer.salesforce.com/docs/platform/api-rest/guide/dome-query.html>,
/// <https://developer.salesforce.com/docs/platform/api-rest/guide/resources-queryall-more-results.html>
fn query_page(s: &Inner, v: &str, qid: usize, offset: usize, size: usize) -> Response {
    let (ids, fields) = s.queries.lock().unwrap()[qid].clone();
    let end = (offset + size).min(ids.len());
    let records: Vec<Value> = ids[offset.min(end)..end]
        .iter()
        .map(|i| {
            let mut o = serde_json::Map::new();
            o.insert("attributes".into(), json!({"type": "Account", "url": format!("/services/data/{v}/sobjects/Account/{}", account_id(*i))}));
            for f in &fields {
                let v = rest_value(s, *i, f);
                match f.split_once('.') {
                    // Related fields nest under their relationship, all in one object:
                    // `"Owner": {"attributes": …, "Name": …, "IsActive": …}`.
                    Some((rel, _)) => merge(o.entry(rel.to_string()).or_insert(Value::Null), v),
                    None => {
                        o.insert(f.clone(), v);
                    }
                }
            }
            Value::Object(o)
        })
        .collect();
    let mut body = json!({"totalSize": ids.len(), "done": end >= ids.len(), "records": records});
    if end < ids.len() {
        // queryAll locators say `query` too, as Salesforce's do.
        body["nextRecordsUrl"] = json!(format!("/services/data/{v}/query/01gMk{qid:08}-{end}"));
    }
    (
        [("content-type", "application/json;charset=UTF-8")],
        exact_numbers(&body),
    )
        .into_response()
}

async fn run_query(
    s: S,
    v: String,
    q: HashMap<String, String>,
    h: HeaderMap,
    all: bool,
) -> Response {
    let Some(text) = q.get("q") else {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "A query string has to be specified",
        );
    };
    let soql = match parse_soql(text) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let ids = matching(&s, &soql, all);
    if soql.count {
        return axum::Json(json!({"totalSize": ids.len(), "done": true, "records": []}))
            .into_response();
    }
    let qid = {
        let mut qs = s.queries.lock().unwrap();
        qs.push((ids, soql.fields));
        qs.len() - 1
    };
    query_page(&s, &v, qid, 0, batch_size(&h))
}

async fn query(
    State(s): State<S>,
    Path(v): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    run_query(s, v, q, h, false).await
}

async fn query_all(
    State(s): State<S>,
    Path(v): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    run_query(s, v, q, h, true).await
}

async fn query_more(
    State(s): State<S>,
    Path((v, locator)): Path<(String, String)>,
    h: HeaderMap,
) -> Response {
    let parsed = locator
        .strip_prefix("01gMk")
        .and_then(|l| l.split_once('-'))
        .and_then(|(q, o)| Some((q.parse::<usize>().ok()?, o.parse::<usize>().ok()?)))
        .filter(|(q, _)| *q < s.queries.lock().unwrap().len());
    match parsed {
        Some((qid, off)) => query_page(&s, &v, qid, off, batch_size(&h)),
        None => sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        ),
    }
}

fn job_json(id: usize, j: &Job, state: &str) -> Value {
    json!({"id": format!("750Mk{id:013}"), "operation": j.operation, "object": "Account",
           "createdById": "005Mk0000000001", "createdDate": "2026-01-01T00:00:00.000+0000",
           "systemModstamp": "2026-01-01T00:00:00.000+0000", "state": state, "concurrencyMode": "Parallel",
           "contentType": "CSV", "apiVersion": j.version.trim_start_matches('v').parse::<f64>().unwrap_or(0.0),
           "lineEnding": "LF", "columnDelimiter": "COMMA", "numberRecordsProcessed": j.ids.len()})
}

/// Bulk API 2.0 Create a Query Job: `operation` `query` or `queryAll` (deleted records too),
/// `query`; the answer is the job info in state `UploadComplete`. Aggregate functions such as
/// COUNT() and compound address/geolocation fields are refused.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/query_create_job.htm>,
/// <https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/queries.htm>
async fn create_job(
    State(s): State<S>,
    Path(v): Path<String>,
    body: axum::Json<Value>,
) -> Response {
    let op = body.get("operation").and_then(Value::as_str).unwrap_or("");
    if !matches!(op, "query" | "queryAll") {
        return sf_error(StatusCode::BAD_REQUEST, "INVALIDJOB", "Invalid operation");
    }
    let Some(text) = body.get("query").and_then(Value::as_str) else {
        return sf_error(StatusCode::BAD_REQUEST, "INVALIDJOB", "query is required");
    };
    let soql = match parse_soql(text) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if soql.count {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOB",
            "Aggregate queries are not supported in Bulk API 2.0",
        );
    }
    if let Some(f) = soql
        .fields
        .iter()
        .find(|f| matches!(field_type(f), Some("address" | "location" | "base64")))
    {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOB",
            &format!("Selecting compound data not supported in Bulk Query: {f}"),
        );
    }
    let ids = matching(&s, &soql, op == "queryAll");
    let job = Job {
        ids,
        fields: soql.fields,
        version: v,
        polls_left: s.cfg.bulk_polls,
        operation: op.into(),
    };
    let mut jobs = s.jobs.lock().unwrap();
    let body = job_json(jobs.len(), &job, "UploadComplete");
    jobs.push(job);
    axum::Json(body).into_response()
}

fn job_index(id: &str) -> Option<usize> {
    id.strip_prefix("750Mk")?.parse().ok()
}

/// Get Information About a Query Job: `state` `UploadComplete`, `InProgress`, `JobComplete` or
/// `Failed` (with `errorMessage`), `numberRecordsProcessed`; 404 `NOT_FOUND` for an unknown id.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/query_get_one_job.htm>
async fn job_info(State(s): State<S>, Path((_v, id)): Path<(String, String)>) -> Response {
    let mut jobs = s.jobs.lock().unwrap();
    let Some(j) = job_index(&id).and_then(|n| jobs.get_mut(n)) else {
        return sf_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        );
    };
    let state = if j.polls_left > 0 {
        j.polls_left -= 1;
        "InProgress"
    } else if s.cfg.fail_jobs {
        "Failed"
    } else {
        "JobComplete"
    };
    let mut body = job_json(job_index(&id).unwrap(), j, state);
    if state == "Failed" {
        body["errorMessage"] = json!("Query timed out (mock)");
    }
    axum::Json(body).into_response()
}

fn encode_locator(n: usize) -> String {
    format!("TWs{n:x}")
}
fn decode_locator(l: &str) -> Option<usize> {
    usize::from_str_radix(l.strip_prefix("TWs")?, 16).ok()
}

/// Get Results for a Query Job: CSV of at most `maxRecords` rows from `locator` (the first set
/// without one); the `Sforce-Locator` header names the next set, the text `null` on the last;
/// `Sforce-NumberOfRecords` counts this set's rows. The job must be `JobComplete` (400
/// otherwise), and results are read with the API version the job was created with (409
/// otherwise). A locator can be read again as long as the job exists.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/query_get_job_results.htm>
async fn job_results(
    State(s): State<S>,
    Path((v, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let jobs = s.jobs.lock().unwrap();
    let Some(j) = job_index(&id).and_then(|n| jobs.get(n)) else {
        return sf_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        );
    };
    if j.version != v {
        return sf_error(
            StatusCode::CONFLICT,
            "INVALIDJOBSTATE",
            "Results must be read with the API version the job was created with",
        );
    }
    if j.polls_left > 0 || s.cfg.fail_jobs {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOBSTATE",
            "Job is not complete",
        );
    }
    let start = match q.get("locator") {
        None => 0,
        Some(l) => match decode_locator(l) {
            Some(n) => n,
            None => return sf_error(StatusCode::BAD_REQUEST, "INVALIDLOCATOR", "invalid locator"),
        },
    };
    let max = q
        .get("maxRecords")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(50_000);
    let end = (start + max).min(j.ids.len());
    let mut out = j
        .fields
        .iter()
        .map(|f| csv_cell(f))
        .collect::<Vec<_>>()
        .join(",")
        + "\n";
    for i in &j.ids[start.min(end)..end] {
        out += &j
            .fields
            .iter()
            .map(|f| csv_cell(&csv_value(&s, *i, f)))
            .collect::<Vec<_>>()
            .join(",");
        out.push('\n');
    }
    let mut r = (StatusCode::OK, out).into_response();
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("text/csv"));
    let next = if end < j.ids.len() {
        encode_locator(end)
    } else {
        "null".into()
    };
    h.insert("sforce-locator", HeaderValue::from_str(&next).unwrap());
    h.insert(
        "sforce-numberofrecords",
        HeaderValue::from_str(&(end - start.min(end)).to_string()).unwrap(),
    );
    r
}

async fn gate(State(s): State<S>, req: Request<Body>, next: axum::middleware::Next) -> Response {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let resp = if path == "/services/oauth2/token" || path == "/services/oauth2/authorize" {
        next.run(req).await
    } else {
        let tok = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = tok.is_some_and(|t| s.tokens.lock().unwrap().get(t).copied().unwrap_or(false));
        if !ok {
            // 401 `INVALID_SESSION_ID`: the session ID or OAuth token expired or is invalid.
            // https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm
            sf_error(
                StatusCode::UNAUTHORIZED,
                "INVALID_SESSION_ID",
                "Session expired or invalid",
            )
        } else {
            let n = s.data_requests.fetch_add(1, Ordering::SeqCst) + 1;
            let due: Vec<u64> = {
                let mut sch = s.scheduled.lock().unwrap();
                let (due, later): (Vec<_>, Vec<_>) = sch.drain(..).partition(|(k, _)| *k <= n);
                *sch = later;
                due.into_iter().flat_map(|(_, ids)| ids).collect()
            };
            if !due.is_empty() {
                // SystemModstamp has milliseconds; an edit lands at the current time.
                let now = Utc::now();
                let now = now
                    - ChronoDuration::nanoseconds(now.timestamp_subsec_nanos() as i64 % 1_000_000);
                let mut t = s.touched.lock().unwrap();
                for i in due {
                    t.insert(i, now);
                }
            }
            let mut fault = s
                .on_request
                .lock()
                .unwrap()
                .remove(&n)
                .or_else(|| s.faults.lock().unwrap().pop_front());
            if fault.is_none() {
                if let Some((every, f)) = &*s.periodic.lock().unwrap() {
                    if *every > 0 && n.is_multiple_of(*every) {
                        fault = Some(f.clone());
                    }
                }
            }
            match fault {
                // Other statuses with Salesforce's error body (503 SERVER_UNAVAILABLE: the server
                // is busy). https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm
                Some(SfFault::Status {
                    status,
                    retry_after,
                }) => {
                    let mut r = sf_error(
                        StatusCode::from_u16(status).unwrap(),
                        "SERVER_UNAVAILABLE",
                        "Server is busy (injected)",
                    );
                    if let Some(ra) = retry_after {
                        r.headers_mut()
                            .insert("retry-after", HeaderValue::from_str(&ra).unwrap());
                    }
                    r
                }
                // 403 with errorCode REQUEST_LIMIT_EXCEEDED: the org's API request limit is
                // exceeded (it does not come back within seconds; not a 429).
                // https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm,
                // https://developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta/salesforce_app_limits_cheatsheet/salesforce_app_limits_platform_api.htm
                Some(SfFault::RequestLimit) => sf_error(
                    StatusCode::FORBIDDEN,
                    "REQUEST_LIMIT_EXCEEDED",
                    "TotalRequests Limit exceeded.",
                ),
                None => next.run(req).await,
            }
        }
    };
    s.log.lock().unwrap().push(SfSeen {
        at,
        method,
        path,
        query,
        headers,
        status: resp.status().as_u16(),
    });
    resp
}

/// Record ids (sorted) of JSON-lines output.
pub fn ids_of(records: &[Value]) -> (usize, BTreeSet<String>) {
    let ids: Vec<String> = records
        .iter()
        .map(|r| r["Id"].as_str().unwrap_or_default().to_string())
        .collect();
    (ids.len(), ids.into_iter().collect())
}
