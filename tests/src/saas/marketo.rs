//! Marketo's REST and bulk extract APIs as their docs describe them, for the `marketo` connector:
//!
//! - Identity: `GET|POST /identity/oauth/token` with `grant_type=client_credentials`,
//!   `client_id`, `client_secret` (query or form body); the same access token is handed out
//!   again until it expires, `expires_in` being what is left of it; bad client credentials
//!   answer 401: <https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/authentication>
//! - Errors come inside HTTP 200 bodies: `{"requestId", "success": false, "errors": [{"code",
//!   "message"}]}` — 600 no token, 601 invalid token, 602 expired token, 606 rate limit, 615
//!   concurrency, 1003 invalid request, 1029 queue full / daily export quota:
//!   <https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/error-codes>
//! - `GET /rest/v1/leads/describe2.json`: <https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/lead-database/leads>
//! - Bulk extract: `POST /bulk/v1/{leads|activities}/export/create.json` (`fields`, `format`,
//!   one `filter`; `createdAt`/`updatedAt` `{startAt, endAt}` of 31 days at most, both ends
//!   inclusive, second precision), `POST …/{exportId}/enqueue.json` (at most 10 queued jobs),
//!   `GET …/{exportId}/status.json` (`Created`, `Queued`, `Processing`, `Completed`, `Failed`;
//!   `numberOfRecords`, `fileSize`, `fileChecksum`), `GET …/{exportId}/file.json` (CSV, the
//!   `Range` header honoured); the file is written when the job completes:
//!   <https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/bulk-extract/bulk-extract>,
//!   <https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/bulk-extract/bulk-lead-extract>,
//!   <https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/bulk-extract/bulk-activity-extract>
//! - The CSV writes `null` for empty values, quotes fields holding commas, quotes or line
//!   breaks, and activities' `attributes` as JSON text.
//!
//! Data: lead `i` (1..=n) has id `i`, `updatedAt` = `BASE + (i / same_time) * spacing`
//! (seconds, no milliseconds), `createdAt` 30 days earlier; each lead has `i % 3 + 1`
//! activities on the hour before its `updatedAt`.

use crate::Seen;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

#[derive(Debug, Clone)]
pub struct MarketoConfig {
    pub leads: u64,
    pub same_time: u64,
    /// Seconds between groups of leads.
    pub spacing: i64,
    /// Status polls before a job completes.
    pub polls_to_complete: u32,
    /// Answer `file.json` with the whole file whatever `Range` says.
    pub ignore_range: bool,
    pub client_id: String,
    pub client_secret: String,
}

impl Default for MarketoConfig {
    fn default() -> Self {
        MarketoConfig {
            leads: 120,
            same_time: 2,
            spacing: 36 * 3600,
            polls_to_complete: 2,
            ignore_range: false,
            client_id: "mkto-client".into(),
            client_secret: "mkto-secret".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Lead {
    id: u64,
    updated: DateTime<Utc>,
    created: DateTime<Utc>,
    edits: u64,
}

#[derive(Debug, Clone)]
struct Job {
    id: String,
    entity: String,
    field: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    fields: Vec<String>,
    status: String,
    polls: u32,
    file: Option<String>,
    records: u64,
}

struct Inner {
    cfg: MarketoConfig,
    /// (lead id, field, text) written in export files instead of the generated value (a value
    /// ferry must refuse: the canary tests).
    overrides: Mutex<Vec<(u64, String, String)>>,
    leads: Mutex<Vec<Lead>>,
    jobs: Mutex<Vec<Job>>,
    common: super::Common,
    /// Marketo error (code, message) answered to the next data requests, in 200 bodies.
    errors: Mutex<VecDeque<(String, String)>>,
    scheduled: Mutex<Vec<(u64, Vec<u64>)>>,
    /// (after n data requests, code, message): errors scheduled for later.
    errors_after: Mutex<Vec<(u64, String, String)>>,
    /// (token, expired), and tokens handed out.
    token: Mutex<(Option<String>, bool, u64)>,
}

type S = Arc<Inner>;

pub struct MarketoMock {
    pub addr: SocketAddr,
    inner: S,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MarketoMock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn orig_updated(i: u64, cfg: &MarketoConfig) -> DateTime<Utc> {
    base_time() + ChronoDuration::seconds((i / cfg.same_time.max(1)) as i64 * cfg.spacing)
}

/// (name, displayName, dataType) of the lead fields.
pub const LEAD_FIELDS: [(&str, &str, &str); 10] = [
    ("id", "Id", "integer"),
    ("email", "Email Address", "email"),
    ("firstName", "First Name", "string"),
    ("lastName", "Last Name", "string"),
    ("company", "Company Name", "string"),
    ("leadScore", "Lead Score", "score"),
    ("annualRevenue", "Annual Revenue", "currency"),
    ("unsubscribed", "Unsubscribed", "boolean"),
    ("createdAt", "Created At", "datetime"),
    ("updatedAt", "Updated At", "datetime"),
];

fn t(d: DateTime<Utc>) -> String {
    d.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn lead_value(l: &Lead, f: &str) -> String {
    let i = l.id;
    match f {
        "id" => i.to_string(),
        "email" => format!("lead{i}@example.com"),
        "firstName" => format!("First{i}"),
        "lastName" => {
            if i.is_multiple_of(5) {
                "null".into()
            } else {
                format!("Last{i}")
            }
        }
        // Commas, quotes and a line break inside a field.
        "company" => {
            if i.is_multiple_of(4) {
                format!("Acme, Inc. \"Branch {i}\"\nWest")
            } else {
                format!("Co {i}")
            }
        }
        "leadScore" => (i % 100).to_string(),
        "annualRevenue" => {
            if i.is_multiple_of(6) {
                "null".into()
            } else {
                format!("{}.{:02}", i * 1000, i % 100)
            }
        }
        "unsubscribed" => (i.is_multiple_of(3)).to_string(),
        "createdAt" => t(l.created),
        "updatedAt" => t(l.updated),
        _ => "null".into(),
    }
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

/// Activities: (guid, leadId, activityDate, typeId) of lead `l`.
fn activities(l: &Lead) -> Vec<(String, u64, DateTime<Utc>, u64)> {
    let k = l.id % 3 + 1;
    let mut v: Vec<_> = (0..k)
        .map(|j| {
            (
                format!("{}-{j}", l.id),
                l.id,
                orig_act_time(l, j, k),
                [1, 6, 12][j as usize % 3],
            )
        })
        .collect();
    for e in 0..l.edits {
        v.push((format!("{}-e{e}", l.id), l.id, l.updated, 13));
    }
    v
}

fn orig_act_time(l: &Lead, j: u64, k: u64) -> DateTime<Utc> {
    l.created + ChronoDuration::days(30) - ChronoDuration::minutes(((k - j) * 10) as i64)
}

impl MarketoMock {
    pub async fn start(cfg: MarketoConfig) -> MarketoMock {
        let leads = (1..=cfg.leads)
            .map(|i| {
                let u = orig_updated(i, &cfg);
                Lead {
                    id: i,
                    updated: u,
                    created: u - ChronoDuration::days(30),
                    edits: 0,
                }
            })
            .collect();
        let inner = Arc::new(Inner {
            cfg,
            overrides: Default::default(),
            leads: Mutex::new(leads),
            jobs: Mutex::new(vec![]),
            common: Default::default(),
            errors: Mutex::new(VecDeque::new()),
            scheduled: Mutex::new(vec![]),
            errors_after: Mutex::new(vec![]),
            token: Mutex::new((None, false, 0)),
        });
        let app = Router::new()
            .route("/identity/oauth/token", get(token).post(token))
            .route("/rest/v1/leads/describe2.json", get(describe))
            .route("/bulk/v1/{entity}/export/create.json", post(create))
            .route("/bulk/v1/{entity}/export/{id}/enqueue.json", post(enqueue))
            .route("/bulk/v1/{entity}/export/{id}/status.json", get(status))
            .route("/bulk/v1/{entity}/export/{id}/file.json", get(file))
            .layer(axum::middleware::from_fn_with_state(inner.clone(), gate))
            .with_state(inner.clone());
        let (addr, task) = super::serve(app, "marketo").await;
        MarketoMock { addr, inner, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn requests(&self) -> Vec<Seen> {
        self.inner.common.log.lock().unwrap().clone()
    }
    pub fn push_faults(&self, faults: impl IntoIterator<Item = crate::Fault>) {
        self.inner.common.faults.lock().unwrap().extend(faults);
    }
    /// Every `every`-th data request gets the next fault of `faults` (round robin). A 5xx is
    /// an HTTP-level error (Marketo's 502 "Bad Gateway" when the remote server is busy or
    /// answers badly), unlike the API errors of 200 bodies:
    /// <https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/error-codes>
    pub fn fault_every(&self, every: u64, faults: Vec<crate::Fault>) {
        *self.inner.common.periodic.lock().unwrap() = Some((every, faults));
    }
    /// The data request after `after` data requests were answered gets Marketo error `code` in
    /// an HTTP 200 body (e.g. 1029, the daily export quota, in the middle of a run).
    pub fn error_after(&self, after: u64, code: &str, message: &str) {
        self.inner
            .errors_after
            .lock()
            .unwrap()
            .push((after, code.into(), message.into()));
    }
    /// Answer the next data request with Marketo error `code` in an HTTP 200 body.
    pub fn push_error(&self, code: &str, message: &str) {
        self.inner
            .errors
            .lock()
            .unwrap()
            .push_back((code.into(), message.into()));
    }
    /// Errors pushed or scheduled that were not answered yet.
    pub fn pending_errors(&self) -> usize {
        self.inner.errors.lock().unwrap().len() + self.inner.errors_after.lock().unwrap().len()
    }
    /// The current access token expires now (the API answers 602 until a new one is fetched).
    pub fn expire_token(&self) {
        self.inner.token.lock().unwrap().1 = true;
    }
    /// Access tokens handed out.
    pub fn tokens_issued(&self) -> u64 {
        self.inner.token.lock().unwrap().2
    }
    /// Create bodies' filters: (entity, field, startAt, endAt).
    pub fn jobs(&self) -> Vec<(String, String, DateTime<Utc>, DateTime<Utc>)> {
        self.inner
            .jobs
            .lock()
            .unwrap()
            .iter()
            .map(|j| (j.entity.clone(), j.field.clone(), j.from, j.to))
            .collect()
    }
    pub fn updated(&self, i: u64) -> DateTime<Utc> {
        orig_updated(i, &self.inner.cfg)
    }
    /// Edit leads `ids` once `after` data requests have been answered.
    /// Write `text` as lead `id`'s `field` in export files.
    pub fn override_field(&self, id: u64, field: &str, text: &str) {
        self.inner
            .overrides
            .lock()
            .unwrap()
            .push((id, field.to_string(), text.to_string()));
    }

    pub fn touch_after(&self, after: u64, ids: &[u64]) {
        self.inner
            .scheduled
            .lock()
            .unwrap()
            .push((after, ids.to_vec()));
    }
    /// (id, updatedAt) of every lead now.
    pub fn versions(&self) -> BTreeSet<(u64, DateTime<Utc>)> {
        self.inner
            .leads
            .lock()
            .unwrap()
            .iter()
            .map(|l| (l.id, l.updated))
            .collect()
    }
    pub fn ids_in(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> BTreeSet<u64> {
        self.inner
            .leads
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.updated > start && l.updated <= end)
            .map(|l| l.id)
            .collect()
    }
    pub fn activity_ids_in(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> BTreeSet<String> {
        self.inner
            .leads
            .lock()
            .unwrap()
            .iter()
            .flat_map(activities)
            .filter(|a| a.2 > start && a.2 <= end)
            .map(|a| a.0)
            .collect()
    }
}

fn ok(result: Value) -> Response {
    axum::Json(json!({"requestId": "e42b#14272d07d78", "success": true, "result": result}))
        .into_response()
}

/// An error in an HTTP 200 body, as Marketo answers them.
fn mk_error(code: &str, message: &str) -> Response {
    axum::Json(json!({"requestId": "e42b#14272d07d78", "success": false, "errors": [{"code": code, "message": message}]})).into_response()
}

async fn token(
    State(s): State<S>,
    Query(q): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    let mut p: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    p.extend(q);
    let ok = p.get("grant_type").map(String::as_str) == Some("client_credentials")
        && p.get("client_id") == Some(&s.cfg.client_id)
        && p.get("client_secret") == Some(&s.cfg.client_secret);
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(
                json!({"error": "unauthorized", "error_description": "Bad client credentials"}),
            ),
        )
            .into_response();
    }
    let mut tk = s.token.lock().unwrap();
    // The same token until it expires.
    if tk.0.is_none() || tk.1 {
        tk.2 += 1;
        tk.0 = Some(format!("cdf01657-110d-4155-99a7-{:012}:int", tk.2));
        tk.1 = false;
    }
    axum::Json(json!({"access_token": tk.0.clone().unwrap(), "token_type": "bearer", "expires_in": 3599, "scope": "apis@acme.example"})).into_response()
}

async fn describe() -> Response {
    let fields: Vec<Value> = LEAD_FIELDS
        .iter()
        .map(|(n, d, t)| json!({"name": n, "displayName": d, "dataType": t, "length": null, "updateable": *n != "id", "crmManaged": false}))
        .collect();
    ok(json!([{"name": "API Lead", "searchableFields": [["email"], ["id"]], "fields": fields}]))
}

fn parse_t(v: Option<&Value>) -> Option<DateTime<Utc>> {
    v.and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
}

async fn create(
    State(s): State<S>,
    Path(entity): Path<String>,
    body: axum::Json<Value>,
) -> Response {
    if entity != "leads" && entity != "activities" {
        return (StatusCode::NOT_FOUND, "").into_response();
    }
    if body.get("format").and_then(Value::as_str).unwrap_or("CSV") != "CSV" {
        return mk_error("1003", "Invalid format");
    }
    let filter = body
        .get("filter")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let dates: Vec<&String> = filter
        .keys()
        .filter(|k| *k == "createdAt" || *k == "updatedAt")
        .collect();
    if dates.len() != 1 || (entity == "activities" && dates[0] != "createdAt") {
        return mk_error("1003", "Invalid filter: exactly one date range filter (createdAt, or updatedAt for leads) is required");
    }
    let field = dates[0].clone();
    let (Some(from), Some(to)) = (
        parse_t(filter[&field].get("startAt")),
        parse_t(filter[&field].get("endAt")),
    ) else {
        return mk_error("1003", "startAt and endAt are required in ISO-8601 format");
    };
    if to - from > ChronoDuration::days(31) || to < from {
        return mk_error("1003", "Date range in filter exceeds 31 days");
    }
    let fields: Vec<String> = if entity == "leads" {
        let f: Vec<String> = body
            .get("fields")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(bad) = f
            .iter()
            .find(|x| !LEAD_FIELDS.iter().any(|l| l.0 == x.as_str()))
        {
            return mk_error("1003", &format!("Invalid field '{bad}'"));
        }
        f
    } else {
        [
            "marketoGUID",
            "leadId",
            "activityDate",
            "activityTypeId",
            "campaignId",
            "primaryAttributeValueId",
            "primaryAttributeValue",
            "attributes",
        ]
        .map(String::from)
        .to_vec()
    };
    let mut jobs = s.jobs.lock().unwrap();
    let id = format!(
        "{:08x}-1c3a-4a2b-9f3e-{:012x}",
        jobs.len() + 1,
        jobs.len() + 1
    );
    jobs.push(Job {
        id: id.clone(),
        entity,
        field,
        from,
        to,
        fields,
        status: "Created".into(),
        polls: 0,
        file: None,
        records: 0,
    });
    ok(json!([{"exportId": id, "format": "CSV", "status": "Created", "createdAt": t(Utc::now())}]))
}

async fn enqueue(State(s): State<S>, Path((_e, id)): Path<(String, String)>) -> Response {
    let mut jobs = s.jobs.lock().unwrap();
    let queued = jobs
        .iter()
        .filter(|j| j.status == "Queued" || j.status == "Processing")
        .count();
    let Some(j) = jobs.iter_mut().find(|j| j.id == id) else {
        return mk_error("1003", "Export job not found");
    };
    if queued >= 10 {
        return mk_error("1029", "Too many jobs (10) in queue");
    }
    j.status = "Queued".into();
    ok(json!([{"exportId": id, "format": "CSV", "status": "Queued", "queuedAt": t(Utc::now())}]))
}

fn write_file(s: &Inner, j: &Job) -> (String, u64) {
    let leads = s.leads.lock().unwrap();
    let mut out = j
        .fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    let mut n = 0;
    if j.entity == "leads" {
        for l in leads.iter() {
            let at = if j.field == "updatedAt" {
                l.updated
            } else {
                l.created
            };
            if at >= j.from && at <= j.to {
                let row: Vec<String> = j
                    .fields
                    .iter()
                    .map(|f| {
                        let over = s.overrides.lock().unwrap();
                        match over.iter().find(|(i, name, _)| *i == l.id && name == f) {
                            Some((_, _, t)) => csv_field(t),
                            None => csv_field(&lead_value(l, f)),
                        }
                    })
                    .collect();
                out.push_str(&row.join(","));
                out.push('\n');
                n += 1;
            }
        }
    } else {
        for l in leads.iter() {
            for (guid, lead, at, ty) in activities(l) {
                if at >= j.from && at <= j.to {
                    let attrs = json!([{"name": "Source", "value": "Web, \"direct\""}]).to_string();
                    let row = [
                        guid,
                        lead.to_string(),
                        t(at),
                        ty.to_string(),
                        "null".into(),
                        (lead * 10).to_string(),
                        format!("Page {lead}"),
                        attrs,
                    ];
                    out.push_str(
                        &row.iter()
                            .map(|v| csv_field(v))
                            .collect::<Vec<_>>()
                            .join(","),
                    );
                    out.push('\n');
                    n += 1;
                }
            }
        }
    }
    (out, n)
}

async fn status(State(s): State<S>, Path((_e, id)): Path<(String, String)>) -> Response {
    let mut jobs = s.jobs.lock().unwrap();
    let Some(j) = jobs.iter_mut().find(|j| j.id == id) else {
        return mk_error("1003", "Export job not found");
    };
    if j.status == "Queued" || j.status == "Processing" {
        j.polls += 1;
        j.status = if j.polls >= s.cfg.polls_to_complete {
            "Completed".into()
        } else {
            "Processing".into()
        };
        if j.status == "Completed" {
            // The file is written when the job completes: what the data is then.
            let job = j.clone();
            let (f, n) = write_file(&s, &job);
            j.file = Some(f);
            j.records = n;
        }
    }
    let mut r =
        json!({"exportId": j.id, "format": "CSV", "status": j.status, "createdAt": t(Utc::now())});
    if let Some(f) = &j.file {
        r["numberOfRecords"] = json!(j.records);
        r["fileSize"] = json!(f.len());
        r["fileChecksum"] = json!("sha256:mock");
        r["finishedAt"] = json!(t(Utc::now()));
    }
    ok(json!([r]))
}

async fn file(
    State(s): State<S>,
    Path((_e, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let jobs = s.jobs.lock().unwrap();
    let Some(f) = jobs
        .iter()
        .find(|j| j.id == id)
        .and_then(|j| j.file.clone())
    else {
        return mk_error("1003", "Export job not in completed state");
    };
    let range = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
    match range {
        Some((a, b)) if !s.cfg.ignore_range && a < f.len() => {
            let b = b.min(f.len() - 1);
            let mut r = (StatusCode::PARTIAL_CONTENT, f.as_bytes()[a..=b].to_vec()).into_response();
            r.headers_mut().insert(
                "content-range",
                HeaderValue::from_str(&format!("bytes {a}-{b}/{}", f.len())).unwrap(),
            );
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("text/csv"));
            r
        }
        _ => (StatusCode::OK, [("content-type", "text/csv")], f).into_response(),
    }
}

async fn gate(State(s): State<S>, req: Request<Body>, next: axum::middleware::Next) -> Response {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let resp = if path == "/identity/oauth/token" {
        next.run(req).await
    } else {
        let bearer = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(String::from);
        let tk = s.token.lock().unwrap().clone();
        match bearer {
            None => mk_error("600", "Access token not specified"),
            Some(b) if Some(&b) != tk.0.as_ref() => mk_error("601", "Access token invalid"),
            Some(_) if tk.1 => mk_error("602", "Access token expired"),
            Some(_) => {
                let answered = s
                    .common
                    .data_requests
                    .load(std::sync::atomic::Ordering::SeqCst);
                let due: Vec<Vec<u64>> = {
                    let mut sch = s.scheduled.lock().unwrap();
                    let (due, later): (Vec<_>, Vec<_>) =
                        sch.drain(..).partition(|(n, _)| *n <= answered);
                    *sch = later;
                    due.into_iter().map(|(_, ids)| ids).collect()
                };
                let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
                for ids in due {
                    for l in s
                        .leads
                        .lock()
                        .unwrap()
                        .iter_mut()
                        .filter(|l| ids.contains(&l.id))
                    {
                        l.updated = now;
                        l.edits += 1;
                    }
                }
                {
                    let mut ea = s.errors_after.lock().unwrap();
                    let (due, later): (Vec<_>, Vec<_>) =
                        ea.drain(..).partition(|(n, _, _)| *n <= answered);
                    *ea = later;
                    s.errors
                        .lock()
                        .unwrap()
                        .extend(due.into_iter().map(|(_, c, m)| (c, m)));
                }
                let err = s.errors.lock().unwrap().pop_front();
                match (err, s.common.next_fault()) {
                    (Some((c, m)), _) => mk_error(&c, &m),
                    (
                        None,
                        Some(crate::Fault::Status {
                            status,
                            retry_after,
                        }),
                    ) => super::status_response(
                        status,
                        retry_after.as_deref(),
                        json!({"requestId": "x", "success": false, "errors": [{"code": "502", "message": "Bad Gateway"}]}),
                    ),
                    (None, Some(crate::Fault::Slow(d))) => {
                        tokio::time::sleep(d).await;
                        next.run(req).await
                    }
                    (None, Some(f)) => super::with_body_fault(&f, next.run(req).await).await,
                    (None, None) => next.run(req).await,
                }
            }
        }
    };
    s.common
        .record(at, &method, &path, &query, resp.status().as_u16());
    resp
}
