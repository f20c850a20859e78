//! The Google Analytics Data API v1beta as its docs describe it, for the `ga4` connector:
//!
//! - `POST /v1beta/properties/{id}:runReport`: `dateRanges` (`YYYY-MM-DD`, `today`,
//!   `yesterday`, `NdaysAgo`; both ends inclusive; nothing before 2015-08-14), `dimensions`,
//!   `metrics`, `limit` (int64: a number or a string; more than 250,000 is served as 250,000),
//!   `offset`, `orderBys`, `keepEmptyRows`, `returnPropertyQuota`. Rows carry string values;
//!   `rowCount` counts every row whatever `limit`/`offset`; an empty report has neither `rows`
//!   nor `rowCount`. Unknown JSON members are refused (400 "Invalid JSON payload received.
//!   Unknown name"), and so are unknown dimension or metric names (400 `INVALID_ARGUMENT`).
//!   <https://developers.google.com/analytics/devguides/reporting/data/v1/rest/v1beta/properties/runReport>,
//!   <https://developers.google.com/analytics/devguides/reporting/data/v1/rest/v1beta/RunReportResponse>,
//!   <https://developers.google.com/analytics/devguides/reporting/data/v1/basics#pagination>
//! - Metric types in `metricHeaders` (`TYPE_INTEGER`, `TYPE_FLOAT`, `TYPE_SECONDS`,
//!   `TYPE_CURRENCY`): <https://developers.google.com/analytics/devguides/reporting/data/v1/rest/v1beta/MetricType>
//! - `date` values are `YYYYMMDD`: <https://developers.google.com/analytics/devguides/reporting/data/v1/api-schema>
//! - `GET /v1beta/properties/{id}/metadata`: <https://developers.google.com/analytics/devguides/reporting/data/v1/rest/v1beta/properties/getMetadata>
//! - Quotas: 429 `RESOURCE_EXHAUSTED` ("Exhausted property tokens per hour", "… concurrent
//!   requests"): <https://developers.google.com/analytics/devguides/reporting/data/v1/quotas>
//! - Google's token endpoint (`grant_type=refresh_token`, 400 `invalid_grant` for a revoked
//!   token; the refresh token is not rotated) and 401 `UNAUTHENTICATED` for a bad access token:
//!   <https://developers.google.com/identity/protocols/oauth2/web-server#offline>
//! - Service accounts: the JWT bearer grant (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
//!   `assertion`): a JWT signed RS256 with the account's key, claims `iss` (the account's email),
//!   `scope`, `aud` (the token URI), `iat`, `exp` at most one hour after `iat`; a bad signature
//!   or claim set is 400 `invalid_grant` ("Invalid JWT Signature.", "Invalid JWT: Token must be
//!   a short-lived token (60 minutes) and in a reasonable timeframe."). The mock checks the
//!   signature against `tests/fixtures/keys/ga4-test-service-account.pub.pem`:
//!   <https://developers.google.com/identity/protocols/oauth2/service-account#httprest>
//! - The consent (`ferry profiles connect ga4`): `GET /o/oauth2/v2/auth` with `client_id`,
//!   `redirect_uri` (a loopback `http://127.0.0.1:PORT`), `response_type=code`, `scope`,
//!   `state`, `code_challenge`/`code_challenge_method=S256`, `access_type=offline` (without it
//!   Google issues no refresh token); the code is redeemed at the token endpoint with
//!   `grant_type=authorization_code`, `code`, `client_id`, `client_secret`, `redirect_uri`,
//!   `code_verifier`: <https://developers.google.com/identity/protocols/oauth2/native-app>
//!
//! Data: for each day from `first_day` for `days` days, 60 facts (5 countries × 3 devices × 4
//! channels) with deterministic sessions, users, engagement, duration and revenue (in cents);
//! a report groups them by the dimensions asked for.

use crate::Seen;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{Days, NaiveDate, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub const PROPERTY: &str = "123456789";
const COUNTRIES: [&str; 5] = ["Brazil", "Germany", "India", "Japan", "United States"];
const DEVICES: [&str; 3] = ["desktop", "mobile", "tablet"];
const CHANNELS: [&str; 4] = ["Direct", "Email", "Organic Search", "Paid Search"];
pub const DIMENSIONS: [&str; 4] = [
    "date",
    "country",
    "deviceCategory",
    "sessionDefaultChannelGroup",
];
/// (name, type).
pub const METRICS: [(&str, &str); 5] = [
    ("sessions", "TYPE_INTEGER"),
    ("activeUsers", "TYPE_INTEGER"),
    ("engagementRate", "TYPE_FLOAT"),
    ("averageSessionDuration", "TYPE_SECONDS"),
    ("purchaseRevenue", "TYPE_CURRENCY"),
];

#[derive(Debug, Clone)]
pub struct Ga4Config {
    pub first_day: NaiveDate,
    pub days: u64,
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    /// The service account whose key (`tests/fixtures/keys`) the token endpoint accepts.
    pub service_account: String,
}

impl Default for Ga4Config {
    fn default() -> Self {
        Ga4Config {
            first_day: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            days: 40,
            client_id: "ga-client.apps.googleusercontent.com".into(),
            client_secret: "ga-secret".into(),
            refresh_token: "1//ga-refresh".into(),
            service_account: "ferry-reader@acme-analytics.iam.gserviceaccount.com".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Fact {
    day: NaiveDate,
    dims: [String; 3],
    sessions: i64,
    users: i64,
    engaged: i64,
    duration_s: f64,
    revenue_cents: i64,
}

struct Inner {
    cfg: Ga4Config,
    /// (metric, text): the first row of every report page carries this text as that metric's
    /// value (a value ferry must refuse: the canary tests).
    metric_override: Mutex<Option<(String, String)>>,
    facts: Mutex<Vec<Fact>>,
    common: super::Common,
    bodies: Mutex<Vec<Value>>,
    /// Quota messages to answer the next runReports with (429 RESOURCE_EXHAUSTED).
    quota: Mutex<VecDeque<String>>,
    /// (after n runReports, day): a late fact arrives for that day (GA4 still processing).
    late: Mutex<Vec<(usize, NaiveDate)>>,
    /// (after n runReports, message): a quota answer scheduled for later.
    quota_after: Mutex<Vec<(usize, String)>>,
    tokens: Mutex<(Vec<String>, u64)>,
    codes: super::oauth::AuthCodes,
    /// Whether the last consent asked for offline access (a refresh token).
    offline: std::sync::atomic::AtomicBool,
}

type S = Arc<Inner>;

pub struct Ga4Mock {
    pub addr: SocketAddr,
    inner: S,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Ga4Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn facts_of(day: NaiveDate, k: i64) -> Vec<Fact> {
    let mut v = vec![];
    for (ci, c) in COUNTRIES.iter().enumerate() {
        for (di, d) in DEVICES.iter().enumerate() {
            for (hi, h) in CHANNELS.iter().enumerate() {
                let seed = k * 7 + ci as i64 * 3 + di as i64 * 5 + hi as i64 * 11;
                let sessions = seed % 50 + 1;
                v.push(Fact {
                    day,
                    dims: [c.to_string(), d.to_string(), h.to_string()],
                    sessions,
                    users: sessions - seed % 3,
                    engaged: sessions / 2,
                    duration_s: sessions as f64 * 12.25,
                    revenue_cents: if hi == 1 { 0 } else { seed * 1999 },
                });
            }
        }
    }
    v
}

impl Ga4Mock {
    pub async fn start(cfg: Ga4Config) -> Ga4Mock {
        let mut facts = vec![];
        for k in 0..cfg.days {
            let day = cfg.first_day.checked_add_days(Days::new(k)).unwrap();
            facts.extend(facts_of(day, k as i64));
        }
        let inner = Arc::new(Inner {
            cfg,
            metric_override: Mutex::new(None),
            facts: Mutex::new(facts),
            common: Default::default(),
            bodies: Mutex::new(vec![]),
            quota: Mutex::new(VecDeque::new()),
            late: Mutex::new(vec![]),
            quota_after: Mutex::new(vec![]),
            tokens: Mutex::new((vec![], 0)),
            codes: Default::default(),
            offline: Default::default(),
        });
        let app = Router::new()
            .route("/v1beta/properties/{target}", post(run_report))
            .route("/v1beta/properties/{id}/metadata", get(metadata_path))
            .route("/token", post(token))
            .route("/o/oauth2/v2/auth", get(authorize))
            .layer(axum::middleware::from_fn_with_state(inner.clone(), gate))
            .with_state(inner.clone());
        let (addr, task) = super::serve(app, "ga4").await;
        Ga4Mock { addr, inner, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The authorization-code grant's state (the last consent request).
    pub fn consent(&self) -> &super::oauth::AuthCodes {
        &self.inner.codes
    }

    /// A service account key file as Google's console downloads it, pointed at this server.
    pub fn service_account_secret(&self) -> Value {
        json!({
            "type": "service_account",
            "project_id": "acme-analytics",
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": SERVICE_ACCOUNT_KEY,
            "client_email": self.inner.cfg.service_account,
            "client_id": "104242424242424242424",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": format!("{}/token", self.url()),
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/ferry-reader%40acme-analytics.iam.gserviceaccount.com",
            "universe_domain": "googleapis.com",
            "hosts": ["127.0.0.1"],
        })
    }
    pub fn requests(&self) -> Vec<Seen> {
        self.inner.common.log.lock().unwrap().clone()
    }
    pub fn push_faults(&self, faults: impl IntoIterator<Item = crate::Fault>) {
        self.inner.common.faults.lock().unwrap().extend(faults);
    }
    /// Every `every`-th API request gets the next fault of `faults` (round robin). A 5xx is
    /// answered with Google's error body (`{"error": {"code", "message", "status"}}`,
    /// `UNAVAILABLE` for 503): <https://cloud.google.com/apis/design/errors#http_mapping>,
    /// <https://developers.google.com/analytics/devguides/reporting/data/v1/quotas>
    /// Serve `text` as metric `metric`'s value in the first row of every report page.
    pub fn override_metric(&self, metric: &str, text: &str) {
        *self.inner.metric_override.lock().unwrap() = Some((metric.to_string(), text.to_string()));
    }

    pub fn fault_every(&self, every: u64, faults: Vec<crate::Fault>) {
        *self.inner.common.periodic.lock().unwrap() = Some((every, faults));
    }
    /// The runReport after `after` runReports were answered gets 429 `RESOURCE_EXHAUSTED`
    /// with `message` (a quota running out in the middle of a run).
    pub fn exhaust_after(&self, after: usize, message: &str) {
        self.inner
            .quota_after
            .lock()
            .unwrap()
            .push((after, message.into()));
    }
    /// runReport bodies, in order.
    pub fn bodies(&self) -> Vec<Value> {
        self.inner.bodies.lock().unwrap().clone()
    }
    /// Answer the next runReport 429 RESOURCE_EXHAUSTED with this message.
    pub fn exhaust(&self, message: &str) {
        self.inner.quota.lock().unwrap().push_back(message.into());
    }
    /// A late row for `day` arrives once `after` runReport requests were answered.
    pub fn late_row_after(&self, after: usize, day: NaiveDate) {
        self.inner.late.lock().unwrap().push((after, day));
    }
    /// Sessions per (date, country) over the mock's facts, for checks.
    pub fn sessions_by_day_country(&self) -> BTreeMap<(NaiveDate, String), i64> {
        let mut m = BTreeMap::new();
        for f in self.inner.facts.lock().unwrap().iter() {
            *m.entry((f.day, f.dims[0].clone())).or_insert(0) += f.sessions;
        }
        m
    }
    /// Revenue per day in cents.
    pub fn revenue_cents(&self, day: NaiveDate) -> i64 {
        self.inner
            .facts
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.day == day)
            .map(|f| f.revenue_cents)
            .sum()
    }
}

fn api_error(status: StatusCode, state: &str, message: &str) -> Response {
    (
        status,
        axum::Json(
            json!({"error": {"code": status.as_u16(), "message": message, "status": state}}),
        ),
    )
        .into_response()
}

async fn metadata_path(State(s): State<S>, Path(id): Path<String>) -> Response {
    meta_for(&s, &id)
}

fn meta_for(_s: &S, id: &str) -> Response {
    if id != PROPERTY {
        return api_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "User does not have sufficient permissions for this property.",
        );
    }
    let dims: Vec<Value> = DIMENSIONS
        .iter()
        .map(|d| json!({"apiName": d, "uiName": d, "description": d, "category": "Mock"}))
        .collect();
    let mets: Vec<Value> = METRICS
        .iter()
        .map(|(m, t)| json!({"apiName": m, "uiName": m, "type": t, "category": "Mock"}))
        .collect();
    axum::Json(
        json!({"name": format!("properties/{id}/metadata"), "dimensions": dims, "metrics": mets}),
    )
    .into_response()
}

fn parse_day(s: &str, today: NaiveDate) -> Option<NaiveDate> {
    match s {
        "today" => Some(today),
        "yesterday" => today.pred_opt(),
        _ => {
            if let Some(n) = s.strip_suffix("daysAgo") {
                return today.checked_sub_days(Days::new(n.parse().ok()?));
            }
            NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
        }
    }
}

fn int64(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

async fn run_report(
    State(s): State<S>,
    Path(target): Path<String>,
    body: axum::Json<Value>,
) -> Response {
    let Some(id) = target.strip_suffix(":runReport") else {
        return api_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.");
    };
    if id != PROPERTY {
        return api_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "User does not have sufficient permissions for this property.",
        );
    }
    s.bodies.lock().unwrap().push(body.0.clone());
    let answered = s.bodies.lock().unwrap().len() - 1;
    let due: Vec<NaiveDate> = {
        let mut l = s.late.lock().unwrap();
        let (due, later): (Vec<_>, Vec<_>) = l.drain(..).partition(|(n, _)| *n <= answered);
        *l = later;
        due.into_iter().map(|(_, d)| d).collect()
    };
    for day in due {
        // A late row: a country the day had not seen yet.
        s.facts.lock().unwrap().push(Fact {
            day,
            dims: ["Aaland Islands".into(), "mobile".into(), "Direct".into()],
            sessions: 1,
            users: 1,
            engaged: 1,
            duration_s: 3.0,
            revenue_cents: 0,
        });
    }
    {
        let mut q = s.quota_after.lock().unwrap();
        let (due, later): (Vec<_>, Vec<_>) = q.drain(..).partition(|(n, _)| *n <= answered);
        *q = later;
        s.quota
            .lock()
            .unwrap()
            .extend(due.into_iter().map(|(_, m)| m));
    }
    if let Some(m) = s.quota.lock().unwrap().pop_front() {
        return api_error(StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED", &m);
    }
    const KNOWN: [&str; 13] = [
        "dateRanges",
        "dimensions",
        "metrics",
        "limit",
        "offset",
        "orderBys",
        "keepEmptyRows",
        "returnPropertyQuota",
        "dimensionFilter",
        "metricFilter",
        "currencyCode",
        "cohortSpec",
        "metricAggregations",
    ];
    if let Some(k) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| !KNOWN.contains(&k.as_str())))
    {
        return api_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."),
        );
    }
    let names = |k: &str| -> Vec<String> {
        body.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.get("name").and_then(Value::as_str).map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let dims = names("dimensions");
    let mets = names("metrics");
    for d in &dims {
        if !DIMENSIONS.contains(&d.as_str()) {
            return api_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &format!("Field {d} is not a valid dimension. For a list of valid dimensions and metrics, see https://developers.google.com/analytics/devguides/reporting/data/v1/api-schema"));
        }
    }
    for m in &mets {
        if !METRICS.iter().any(|x| x.0 == m) {
            return api_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &format!("Field {m} is not a valid metric. For a list of valid dimensions and metrics, see https://developers.google.com/analytics/devguides/reporting/data/v1/api-schema"));
        }
    }
    let today = Utc::now().date_naive();
    let range = body.pointer("/dateRanges/0");
    let (Some(from), Some(to)) = (
        range
            .and_then(|r| r.get("startDate"))
            .and_then(Value::as_str)
            .and_then(|d| parse_day(d, today)),
        range
            .and_then(|r| r.get("endDate"))
            .and_then(Value::as_str)
            .and_then(|d| parse_day(d, today)),
    ) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "A date range must have a valid startDate and endDate.",
        );
    };
    if from < NaiveDate::from_ymd_opt(2015, 8, 14).unwrap() || from > to {
        return api_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Invalid date range: startDate must be on or after 2015-08-14 and not after endDate.",
        );
    }
    // Server-side cap: "limit … cannot exceed 250,000".
    let limit = int64(body.get("limit")).unwrap_or(10_000).min(250_000) as usize;
    let offset = int64(body.get("offset")).unwrap_or(0) as usize;
    // Group the facts by the dimensions asked for.
    let facts = s.facts.lock().unwrap();
    let mut groups: BTreeMap<Vec<String>, Vec<&Fact>> = BTreeMap::new();
    for f in facts.iter().filter(|f| f.day >= from && f.day <= to) {
        let key: Vec<String> = dims
            .iter()
            .map(|d| match d.as_str() {
                "date" => f.day.format("%Y%m%d").to_string(),
                "country" => f.dims[0].clone(),
                "deviceCategory" => f.dims[1].clone(),
                _ => f.dims[2].clone(),
            })
            .collect();
        groups.entry(key).or_default().push(f);
    }
    let mut rows: Vec<(Vec<String>, Vec<String>)> = groups
        .into_iter()
        .map(|(k, fs)| {
            let sessions: i64 = fs.iter().map(|f| f.sessions).sum();
            let vals = mets
                .iter()
                .map(|m| match m.as_str() {
                    "sessions" => sessions.to_string(),
                    "activeUsers" => fs.iter().map(|f| f.users).sum::<i64>().to_string(),
                    "engagementRate" => {
                        let e: i64 = fs.iter().map(|f| f.engaged).sum();
                        (e as f64 / sessions.max(1) as f64).to_string()
                    }
                    "averageSessionDuration" => {
                        let d: f64 = fs.iter().map(|f| f.duration_s).sum();
                        (d / sessions.max(1) as f64).to_string()
                    }
                    _ => {
                        let c: i64 = fs.iter().map(|f| f.revenue_cents).sum();
                        format!("{}.{:02}", c / 100, c % 100)
                    }
                })
                .collect();
            (k, vals)
        })
        .collect();
    // Without orderBys rows come by the first metric, descending (so paging without an order
    // is not stable); the connector orders by every dimension.
    let ordered = body
        .get("orderBys")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !ordered {
        rows.sort_by(|a, b| b.1.first().cmp(&a.1.first()));
    }
    let total = rows.len();
    let over = s.metric_override.lock().unwrap().clone();
    let page: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(limit)
        .enumerate()
        .map(|(n, (k, v))| {
            let mut v = v.clone();
            if let Some((m, text)) = over.as_ref().filter(|_| n == 0) {
                if let Some(at) = mets.iter().position(|x| x == m) {
                    v[at] = text.clone();
                }
            }
            json!({"dimensionValues": k.iter().map(|x| json!({"value": x})).collect::<Vec<_>>(),
                   "metricValues": v.iter().map(|x| json!({"value": x})).collect::<Vec<_>>()})
        })
        .collect();
    let mut out = json!({
        "dimensionHeaders": dims.iter().map(|d| json!({"name": d})).collect::<Vec<_>>(),
        "metricHeaders": mets.iter().map(|m| json!({"name": m, "type": METRICS.iter().find(|x| x.0 == m).unwrap().1})).collect::<Vec<_>>(),
        "metadata": {"currencyCode": "USD", "timeZone": "America/Los_Angeles"},
        "kind": "analyticsData#runReport",
    });
    // An empty report has neither rows nor rowCount.
    if total > 0 {
        out["rows"] = json!(page);
        out["rowCount"] = json!(total);
    }
    if body.get("returnPropertyQuota").and_then(Value::as_bool) == Some(true) {
        out["propertyQuota"] = json!({"tokensPerDay": {"consumed": 10, "remaining": 199_990}, "tokensPerHour": {"consumed": 10, "remaining": 39_990}, "concurrentRequests": {"consumed": 0, "remaining": 10}});
    }
    axum::Json(out).into_response()
}

async fn token(State(s): State<S>, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    if form.get("grant_type").map(String::as_str)
        == Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        if let Err(why) = check_assertion(&s, form.get("assertion").map(String::as_str)) {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "invalid_grant", "error_description": why})),
            )
                .into_response();
        }
        return issue_token(&s);
    }
    if form.get("grant_type").map(String::as_str) == Some("authorization_code") {
        let client_ok = form.get("client_id") == Some(&s.cfg.client_id)
            && form.get("client_secret") == Some(&s.cfg.client_secret);
        let redeemed = s.codes.redeem(&form);
        if !client_ok || redeemed.is_err() {
            let (error, d) = match redeemed {
                Err((e, d)) if client_ok => (e, d),
                _ => ("invalid_client", "The OAuth client was not found.".into()),
            };
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": error, "error_description": d})),
            )
                .into_response();
        }
        let mut t = s.tokens.lock().unwrap();
        t.1 += 1;
        let at = format!("ya29.mock-{}", t.1);
        t.0.push(at.clone());
        let mut out = json!({"access_token": at, "expires_in": 3599, "scope": "https://www.googleapis.com/auth/analytics.readonly", "token_type": "Bearer"});
        // A refresh token only for offline access.
        if s.offline.load(std::sync::atomic::Ordering::SeqCst) {
            out["refresh_token"] = json!(s.cfg.refresh_token);
        }
        return axum::Json(out).into_response();
    }
    let ok = form.get("grant_type").map(String::as_str) == Some("refresh_token")
        && form.get("client_id") == Some(&s.cfg.client_id)
        && form.get("client_secret") == Some(&s.cfg.client_secret)
        && form.get("refresh_token") == Some(&s.cfg.refresh_token);
    if !ok {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}))).into_response();
    }
    issue_token(&s)
}

fn issue_token(s: &S) -> Response {
    let mut t = s.tokens.lock().unwrap();
    t.1 += 1;
    let at = format!("ya29.mock-{}", t.1);
    t.0.push(at.clone());
    axum::Json(json!({"access_token": at, "expires_in": 3599, "scope": "https://www.googleapis.com/auth/analytics.readonly", "token_type": "Bearer"})).into_response()
}

/// The test service account's key pair (generated for the tests: `tests/fixtures/keys`).
pub const SERVICE_ACCOUNT_KEY: &str =
    include_str!("../../fixtures/keys/ga4-test-service-account.pem");
const SERVICE_ACCOUNT_PUBLIC_KEY: &str =
    include_str!("../../fixtures/keys/ga4-test-service-account.pub.pem");

#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    scope: String,
    iat: i64,
    exp: i64,
}

/// Google's checks of a JWT bearer assertion, with its error texts.
fn check_assertion(s: &S, assertion: Option<&str>) -> Result<(), &'static str> {
    let jwt = assertion.ok_or("Invalid JWT: no assertion.")?;
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(SERVICE_ACCOUNT_PUBLIC_KEY.as_bytes())
        .expect("the test public key");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // `aud` is the token URI the key file names: this server's /token.
    v.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(jwt, &key, &v)
        .map_err(|_| "Invalid JWT Signature.")?
        .claims;
    let aud = jsonwebtoken::decode::<Value>(jwt, &key, &v)
        .ok()
        .and_then(|d| {
            d.claims
                .get("aud")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    if claims.exp - claims.iat > 3600 || claims.iat > now + 60 || claims.exp < now {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.");
    }
    if claims.iss != s.cfg.service_account || !aud.ends_with("/token") {
        return Err("Invalid JWT Signature.");
    }
    if !claims
        .scope
        .split(' ')
        .any(|x| x == "https://www.googleapis.com/auth/analytics.readonly")
    {
        return Err("Invalid scope for this API: analytics.readonly is needed.");
    }
    Ok(())
}

/// Google's consent screen for an installed app: the user approves and is sent back to the
/// loopback redirect with `code` and `state` (see the module docs).
async fn authorize(
    State(s): State<S>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let q = q.unwrap_or_default();
    let offline = url::form_urlencoded::parse(q.as_bytes())
        .any(|(k, v)| k == "access_type" && v == "offline");
    s.offline
        .store(offline, std::sync::atomic::Ordering::SeqCst);
    let d = super::oauth::Dialect {
        client_id: s.cfg.client_id.clone(),
        scope_param: "scope",
        require_state: false,
        pkce: super::oauth::Pkce::Optional,
    };
    s.codes.authorize(&d, &q)
}

fn authorized(s: &S, h: &HeaderMap) -> bool {
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| s.tokens.lock().unwrap().0.iter().any(|x| x == t))
}

async fn gate(State(s): State<S>, req: Request<Body>, next: axum::middleware::Next) -> Response {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let resp = if path == "/token" || path == "/o/oauth2/v2/auth" {
        next.run(req).await
    } else if !authorized(&s, req.headers()) {
        api_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.")
    } else {
        match s.common.next_fault() {
            Some(crate::Fault::Status {
                status,
                retry_after,
            }) => super::status_response(
                status,
                retry_after.as_deref(),
                json!({"error": {"code": status, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}),
            ),
            Some(crate::Fault::Slow(d)) => {
                tokio::time::sleep(d).await;
                next.run(req).await
            }
            Some(f) => super::with_body_fault(&f, next.run(req).await).await,
            None => next.run(req).await,
        }
    };
    s.common
        .record(at, &method, &path, &query, resp.status().as_u16());
    resp
}
