//! HubSpot's CRM v3 as its docs describe it: `GET /crm/v3/objects/{object}` (limit ≤ 100,
//! `after` cursor, `properties` — unknown names silently ignored, default properties when none
//! are asked — `archived=true` returns only archived records), `POST
//! /crm/v3/objects/{object}/search` (filterGroups with GT/GTE/LT/LTE/EQ on epoch-millisecond
//! values, one sort, limit ≤ 200, `after` offsets, at most 10,000 results per query: paging
//! past them answers 400; archived records never appear), `GET /crm/v3/properties/{object}`,
//! private-app bearer tokens or OAuth tokens from `POST /oauth/v1/token`, HubSpot's error bodies
//! (`{"status": "error", "message", "correlationId", "category"}`) and 429 with
//! `errorType: RATE_LIMIT`.
//!
//! Each behaviour names the page it follows next to its handler: objects list
//! ([`list`]), search ([`search`]), properties ([`props`]), error bodies ([`error`]),
//! 429 answers ([`gate`]), OAuth ([`token`], [`authorize`]).
//!
//! Data: `n` records per object; record `i` (1..=n) has id `1000 + i` and last-modified time
//! `BASE + (i / same_time) seconds` (`same_time` records share each millisecond value, so a
//! search slice boundary falls inside a group of equal times); every `archived_every`-th record
//! is archived (archivedAt = its last-modified time).

use crate::{Fault, Seen};
use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap()
}

pub const SEARCH_CAP: usize = 10_000;

#[derive(Debug, Clone)]
pub enum HsAuth {
    /// A private app's access token.
    PrivateApp(String),
    /// OAuth: `POST /oauth/v1/token` with grant_type=refresh_token.
    OAuth {
        client_id: String,
        client_secret: String,
        refresh_token: String,
    },
}

#[derive(Debug, Clone)]
pub struct HsConfig {
    /// Records per object.
    pub records: u64,
    pub same_time: u64,
    pub archived_every: u64,
    pub auth: HsAuth,
}

impl Default for HsConfig {
    fn default() -> Self {
        HsConfig {
            records: 300,
            same_time: 3,
            archived_every: 25,
            auth: HsAuth::PrivateApp("pat-na1-test".into()),
        }
    }
}

pub fn last_modified_property(object: &str) -> &'static str {
    if object == "contacts" {
        "lastmodifieddate"
    } else {
        "hs_lastmodifieddate"
    }
}

/// (name, type, fieldType) of an object's properties.
fn properties(object: &str) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut p = match object {
        "contacts" => vec![
            ("email", "string", "text"),
            ("firstname", "string", "text"),
            ("lastname", "string", "text"),
            ("lifecyclestage", "enumeration", "radio"),
            ("num_notes", "number", "number"),
            ("hs_email_optout", "bool", "booleancheckbox"),
            ("date_of_birth", "date", "date"),
            ("lastmodifieddate", "datetime", "date"),
        ],
        "companies" => vec![
            ("name", "string", "text"),
            ("domain", "string", "text"),
            ("numberofemployees", "number", "number"),
            ("hs_lastmodifieddate", "datetime", "date"),
        ],
        "deals" => vec![
            ("dealname", "string", "text"),
            ("amount", "number", "number"),
            ("dealstage", "enumeration", "radio"),
            ("closedate", "datetime", "date"),
            ("hs_lastmodifieddate", "datetime", "date"),
        ],
        _ => vec![
            ("subject", "string", "text"),
            ("content", "string", "textarea"),
            ("hs_pipeline_stage", "enumeration", "select"),
            ("hs_lastmodifieddate", "datetime", "date"),
        ],
    };
    p.push(("createdate", "datetime", "date"));
    p.push(("hs_object_id", "number", "number"));
    p
}

fn default_properties(object: &str) -> Vec<&'static str> {
    match object {
        "contacts" => vec![
            "createdate",
            "email",
            "firstname",
            "hs_object_id",
            "lastmodifieddate",
            "lastname",
        ],
        "companies" => vec![
            "createdate",
            "domain",
            "hs_lastmodifieddate",
            "hs_object_id",
            "name",
        ],
        "deals" => vec![
            "amount",
            "closedate",
            "createdate",
            "dealname",
            "dealstage",
            "hs_lastmodifieddate",
            "hs_object_id",
        ],
        _ => vec![
            "content",
            "createdate",
            "hs_lastmodifieddate",
            "hs_object_id",
            "hs_pipeline_stage",
            "subject",
        ],
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Debug, Clone)]
struct Rec {
    id: u64,
    modified: DateTime<Utc>,
    archived: bool,
    props: HashMap<String, Value>,
}

fn make(object: &str, i: u64, cfg: &HsConfig) -> Rec {
    let modified = base_time()
        + ChronoDuration::seconds((i / cfg.same_time.max(1)) as i64)
        + ChronoDuration::milliseconds(250);
    let created = modified - ChronoDuration::days(10);
    let mut p: HashMap<String, Value> = HashMap::new();
    let mut put = |k: &str, v: Value| {
        p.insert(k.into(), v);
    };
    let id = 1000 + i;
    put("createdate", json!(iso(created)));
    put(last_modified_property(object), json!(iso(modified)));
    put("hs_object_id", json!(id.to_string()));
    match object {
        "contacts" => {
            put("email", json!(format!("person{i}@example.com")));
            put("firstname", json!(format!("First{i}")));
            put(
                "lastname",
                if i.is_multiple_of(7) {
                    Value::Null
                } else {
                    json!(format!("Last{i}"))
                },
            );
            put(
                "lifecyclestage",
                json!(["lead", "customer", "subscriber"][(i % 3) as usize]),
            );
            put(
                "num_notes",
                if i.is_multiple_of(4) {
                    json!("")
                } else {
                    json!((i % 9).to_string())
                },
            );
            put("hs_email_optout", json!((i.is_multiple_of(2)).to_string()));
            put(
                "date_of_birth",
                if i.is_multiple_of(5) {
                    json!("")
                } else {
                    json!(format!("1990-01-{:02}", 1 + i % 28))
                },
            );
        }
        "companies" => {
            put("name", json!(format!("Company {i}")));
            put("domain", json!(format!("c{i}.example.com")));
            put("numberofemployees", json!((i * 10).to_string()));
        }
        "deals" => {
            put("dealname", json!(format!("Deal {i}")));
            put("amount", json!(format!("{}.50", i * 100)));
            put("dealstage", json!("appointmentscheduled"));
            put("closedate", json!(iso(modified + ChronoDuration::days(30))));
        }
        _ => {
            put("subject", json!(format!("Ticket {i}")));
            put("content", json!(format!("Help with {i}")));
            put("hs_pipeline_stage", json!("1"));
        }
    }
    Rec {
        id,
        modified,
        archived: cfg.archived_every > 0 && i.is_multiple_of(cfg.archived_every),
        props: p,
    }
}

struct Inner {
    cfg: HsConfig,
    /// Records per object; edits (`touch`) change them while a read pages.
    data: Mutex<HashMap<String, Vec<Rec>>>,
    /// (data request number, object, record numbers): edit those records, at the time of that
    /// request, once the mock has answered that many data requests.
    scheduled: Mutex<Vec<(u64, String, Vec<u64>)>>,
    common: super::Common,
    /// Search request bodies, in order.
    search_bodies: Mutex<Vec<Value>>,
    tokens: Mutex<(BTreeSet<String>, String, u64)>,
    codes: super::oauth::AuthCodes,
}

type S = Arc<Inner>;

pub struct HubSpotMock {
    pub addr: SocketAddr,
    inner: S,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HubSpotMock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub const OBJECTS: [&str; 4] = ["contacts", "companies", "deals", "tickets"];

impl HubSpotMock {
    pub async fn start(cfg: HsConfig) -> HubSpotMock {
        let data = OBJECTS
            .iter()
            .map(|o| {
                (
                    o.to_string(),
                    (1..=cfg.records).map(|i| make(o, i, &cfg)).collect(),
                )
            })
            .collect();
        let refresh = match &cfg.auth {
            HsAuth::OAuth { refresh_token, .. } => refresh_token.clone(),
            _ => String::new(),
        };
        let inner = Arc::new(Inner {
            cfg,
            data: Mutex::new(data),
            scheduled: Mutex::new(vec![]),
            common: Default::default(),
            search_bodies: Mutex::new(vec![]),
            tokens: Mutex::new((BTreeSet::new(), refresh, 0)),
            codes: Default::default(),
        });
        let app = Router::new()
            .route("/crm/v3/objects/{object}", get(list))
            .route("/crm/v3/objects/{object}/search", post(search))
            .route("/crm/v3/properties/{object}", get(props))
            .route("/oauth/v1/token", post(token))
            .route("/oauth/authorize", get(authorize))
            .layer(axum::middleware::from_fn_with_state(inner.clone(), gate))
            .with_state(inner.clone());
        let (addr, task) = super::serve(app, "hubspot").await;
        HubSpotMock { addr, inner, task }
    }

    /// The authorization-code grant's state (refuse the next consent, the last request).
    pub fn consent(&self) -> &super::oauth::AuthCodes {
        &self.inner.codes
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.inner.common.faults.lock().unwrap().extend(faults);
    }

    pub fn fault_every(&self, every: u64, faults: Vec<Fault>) {
        *self.inner.common.periodic.lock().unwrap() = Some((every, faults));
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.inner.common.log.lock().unwrap().clone()
    }

    /// Search request bodies, in order.
    pub fn search_bodies(&self) -> Vec<Value> {
        self.inner.search_bodies.lock().unwrap().clone()
    }

    /// Modified time of record `i`.
    pub fn modified(&self, i: u64) -> DateTime<Utc> {
        make("contacts", i, &self.inner.cfg).modified
    }

    /// Edit records `is` of `object` now: their last-modified time becomes the current time
    /// (as a user's edit in HubSpot would).
    pub fn touch(&self, object: &str, is: &[u64]) {
        touch(&self.inner, object, is);
    }

    /// Edit records `is` of `object` once `after` data requests have been answered (while a
    /// run pages).
    pub fn touch_after(&self, after: u64, object: &str, is: &[u64]) {
        self.inner
            .scheduled
            .lock()
            .unwrap()
            .push((after, object.to_string(), is.to_vec()));
    }

    /// (id, last-modified) of every live record of `object`.
    pub fn versions(&self, object: &str) -> BTreeSet<(String, DateTime<Utc>)> {
        self.inner.data.lock().unwrap()[object]
            .iter()
            .filter(|r| !r.archived)
            .map(|r| (r.id.to_string(), r.modified))
            .collect()
    }

    /// Ids of `object`'s records modified in `(start, end]`, archived or not as asked.
    pub fn ids_in(
        &self,
        object: &str,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        archived: bool,
    ) -> BTreeSet<String> {
        self.inner.data.lock().unwrap()[object]
            .iter()
            .filter(|r| r.archived == archived)
            .filter(|r| start.is_none_or(|s| r.modified > s) && end.is_none_or(|e| r.modified <= e))
            .map(|r| r.id.to_string())
            .collect()
    }
}

fn touch(s: &Inner, object: &str, is: &[u64]) {
    let now = Utc::now();
    let mut data = s.data.lock().unwrap();
    for r in data.get_mut(object).unwrap() {
        if is.contains(&(r.id - 1000)) {
            r.modified = now;
            r.props
                .insert(last_modified_property(object).into(), json!(iso(now)));
        }
    }
}

/// HubSpot's error body: `status: "error"`, `message`, `correlationId`, `category`.
/// <https://developers.hubspot.com/docs/faq/api-error-responses>
fn error(status: StatusCode, category: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"status": "error", "message": message, "correlationId": "7f1c2b9e-0000-4000-8000-000000000000", "category": category})),
    )
        .into_response()
}

fn object_json(o: &str, r: &Rec, props: &[String]) -> Value {
    let mut p = Map::new();
    for k in props {
        // Unknown names are left out without a word.
        if let Some(v) = r.props.get(k) {
            p.insert(k.clone(), v.clone());
        } else if properties(o).iter().any(|(n, _, _)| n == k) {
            p.insert(k.clone(), Value::Null);
        }
    }
    let mut v = json!({
        "id": r.id.to_string(),
        "properties": p,
        "createdAt": r.props["createdate"],
        "updatedAt": iso(r.modified),
        "archived": r.archived,
    });
    if r.archived {
        v["archivedAt"] = json!(iso(r.modified));
    }
    v
}

/// Objects list: `limit` (at most 100), the `after` cursor from `paging.next.after` (absent on
/// the last page), `properties` (unknown names ignored; the default properties when none are
/// asked), `archived=true` for archived records only.
/// <https://developers.hubspot.com/docs/api-reference/latest/crm/objects/companies/get-companies>,
/// <https://developers.hubspot.com/docs/guides/api/crm/understanding-the-crm>
async fn list(
    State(s): State<S>,
    Path(object): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let data = s.data.lock().unwrap();
    let Some(recs) = data.get(&object) else {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!("Unable to infer object type from: {object}"),
        );
    };
    let limit: usize = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(10);
    if limit > 100 {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "limit must be less than or equal to 100",
        );
    }
    let archived = q.get("archived").map(String::as_str) == Some("true");
    let after: u64 = q.get("after").and_then(|v| v.parse().ok()).unwrap_or(0);
    let props: Vec<String> = match q.get("properties") {
        Some(p) => p.split(',').map(String::from).collect(),
        None => default_properties(&object)
            .into_iter()
            .map(String::from)
            .collect(),
    };
    let matching: Vec<&Rec> = recs
        .iter()
        .filter(|r| r.archived == archived && r.id >= after)
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .take(limit)
        .map(|r| object_json(&object, r, &props))
        .collect();
    let mut body = json!({ "results": page });
    if let Some(next) = matching.get(limit) {
        body["paging"] =
            json!({"next": {"after": next.id.to_string(), "link": format!("?after={}", next.id)}});
    }
    axum::Json(body).into_response()
}

fn filter_ok(r: &Rec, f: &Value) -> Result<bool, String> {
    let name = f["propertyName"].as_str().unwrap_or("");
    let op = f["operator"].as_str().unwrap_or("");
    let val = match &f["value"] {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let have = r.props.get(name).ok_or_else(|| {
        format!("There was a problem with the request: property {name} does not exist")
    })?;
    let have_ms = have
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.timestamp_millis());
    let want_ms = val.parse::<i64>().ok().or_else(|| {
        DateTime::parse_from_rfc3339(&val)
            .ok()
            .map(|t| t.timestamp_millis())
    });
    let (Some(h), Some(w)) = (have_ms, want_ms) else {
        return Ok(op == "EQ" && have.as_str() == Some(val.as_str()));
    };
    Ok(match op {
        "GT" => h > w,
        "GTE" => h >= w,
        "LT" => h < w,
        "LTE" => h <= w,
        "EQ" => h == w,
        "NEQ" => h != w,
        _ => return Err(format!("unsupported operator {op}")),
    })
}

/// CRM search: filterGroups (OR) of filters (AND), one sort, `limit` ≤ 200, `after` offsets,
/// default properties per object, at most 10,000 results per query (paging past them: 400).
/// <https://developers.hubspot.com/docs-beta/crm/search>,
/// <https://developers.hubspot.com/docs/api-reference/2026-03/crm/search-the-crm>,
/// <https://docs.aws.amazon.com/glue/latest/dg/hubspot-connector-limitations.md>
async fn search(
    State(s): State<S>,
    Path(object): Path<String>,
    body: axum::Json<Value>,
) -> Response {
    let data = s.data.lock().unwrap();
    let Some(recs) = data.get(&object) else {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!("Unable to infer object type from: {object}"),
        );
    };
    let limit = body.get("limit").and_then(Value::as_u64).unwrap_or(10) as usize;
    if limit > 200 {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "There was a problem with the request. limit must be <= 200",
        );
    }
    let after: usize = match body.get("after") {
        Some(Value::String(a)) => a.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as usize,
        _ => 0,
    };
    if after + limit > SEARCH_CAP {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "There was a problem with the request. The search endpoints are limited to 10,000 total results for any given query.",
        );
    }
    let groups = body
        .get("filterGroups")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut matching: Vec<&Rec> = vec![];
    for r in recs.iter().filter(|r| !r.archived) {
        let mut any = groups.is_empty();
        for g in &groups {
            let mut all = true;
            for f in g["filters"].as_array().cloned().unwrap_or_default() {
                match filter_ok(r, &f) {
                    Ok(b) => all &= b,
                    Err(m) => return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &m),
                }
            }
            any |= all;
        }
        if any {
            matching.push(r);
        }
    }
    if let Some(sort) = body
        .pointer("/sorts/0/propertyName")
        .and_then(Value::as_str)
    {
        let desc = body.pointer("/sorts/0/direction").and_then(Value::as_str) == Some("DESCENDING");
        let key = |r: &Rec| {
            r.props
                .get(sort)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        matching.sort_by(|a, b| {
            let o = key(a).cmp(&key(b)).then(a.id.cmp(&b.id));
            if desc {
                o.reverse()
            } else {
                o
            }
        });
    }
    let props: Vec<String> = match body.get("properties").and_then(Value::as_array) {
        Some(p) if !p.is_empty() => p
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => default_properties(&object)
            .into_iter()
            .map(String::from)
            .collect(),
    };
    let total = matching.len();
    let page: Vec<Value> = matching
        .iter()
        .skip(after)
        .take(limit)
        .map(|r| object_json(&object, r, &props))
        .collect();
    let mut out = json!({"total": total, "results": page});
    if after + limit < total {
        out["paging"] = json!({"next": {"after": (after + limit).to_string()}});
    }
    axum::Json(out).into_response()
}

/// Read all properties of an object type: `results` of `name`, `label`, `type`, `fieldType`,
/// `groupName`, `hidden`, `calculated`, `hasUniqueValue`, `formField`; an unknown object type is
/// a 400 `VALIDATION_ERROR`.
/// <https://developers.hubspot.com/docs/api-reference/legacy/crm/properties/get-properties>,
/// <https://developers.hubspot.com/docs/api-reference/latest/crm/properties/guide>
async fn props(State(_s): State<S>, Path(object): Path<String>) -> Response {
    if !OBJECTS.contains(&object.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!("Unable to infer object type from: {object}"),
        );
    }
    let results: Vec<Value> = properties(&object)
        .into_iter()
        .map(|(name, ty, ft)| {
            json!({"name": name, "label": name.replace('_', " "), "type": ty, "fieldType": ft,
                   "groupName": format!("{object}information"), "hidden": false, "calculated": false,
                   "hasUniqueValue": name == "hs_object_id", "formField": true})
        })
        .collect();
    axum::Json(json!({ "results": results })).into_response()
}

async fn token(State(s): State<S>, _headers: HeaderMap, body: String) -> Response {
    let HsAuth::OAuth {
        client_id,
        client_secret,
        ..
    } = &s.cfg.auth
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    // HubSpot takes the client credentials as form fields only (OAuth token endpoint docs).
    let body_ok = form.get("client_id") == Some(client_id)
        && form.get("client_secret") == Some(client_secret);
    if body_ok && form.get("grant_type").map(String::as_str) == Some("authorization_code") {
        // https://developers.hubspot.com/docs/apps/legacy-apps/authentication/working-with-oauth
        // (step 4: exchange the code; all parameters in the form body).
        if let Err((_, d)) = s.codes.redeem(&form) {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"status": "BAD_AUTH_CODE", "message": d})),
            )
                .into_response();
        }
        let mut tk = s.tokens.lock().unwrap();
        tk.2 += 1;
        let at = format!("hs-at-{}", tk.2);
        tk.0.insert(at.clone());
        return axum::Json(json!({"token_type": "bearer", "refresh_token": tk.1, "access_token": at, "expires_in": 1800})).into_response();
    }
    let mut tk = s.tokens.lock().unwrap();
    if !body_ok
        || form.get("grant_type").map(String::as_str) != Some("refresh_token")
        || form.get("refresh_token") != Some(&tk.1)
    {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"}))).into_response();
    }
    tk.2 += 1;
    let at = format!("hs-at-{}", tk.2);
    tk.0.insert(at.clone());
    axum::Json(json!({"token_type": "bearer", "refresh_token": tk.1, "access_token": at, "expires_in": 1800})).into_response()
}

/// The consent page (app.hubspot.com/oauth/authorize): `client_id`, `scope` (space-separated),
/// `redirect_uri`, `state`; the user approves and is sent back with `code` (and `state`), or
/// with `error`/`error_description`. No PKCE parameters are documented for it.
/// https://developers.hubspot.com/docs/apps/legacy-apps/authentication/working-with-oauth
async fn authorize(State(s): State<S>, RawQuery(q): RawQuery) -> Response {
    let HsAuth::OAuth { client_id, .. } = &s.cfg.auth else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let d = super::oauth::Dialect {
        client_id: client_id.clone(),
        scope_param: "scope",
        require_state: false,
        pkce: super::oauth::Pkce::Unsupported,
    };
    s.codes.authorize(&d, q.as_deref().unwrap_or(""))
}

fn authorized(s: &S, headers: &HeaderMap) -> bool {
    let Some(t) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    match &s.cfg.auth {
        HsAuth::PrivateApp(k) => t == k,
        HsAuth::OAuth { .. } => s.tokens.lock().unwrap().0.contains(t),
    }
}

async fn gate(State(s): State<S>, req: Request<Body>, next: axum::middleware::Next) -> Response {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let (req, body) = if path.ends_with("/search") {
        let (parts, b) = req.into_parts();
        let bytes = axum::body::to_bytes(b, usize::MAX)
            .await
            .unwrap_or_default();
        let v: Option<Value> = serde_json::from_slice(&bytes).ok();
        (Request::from_parts(parts, Body::from(bytes)), v)
    } else {
        (req, None)
    };
    let resp = if path == "/oauth/v1/token" || path == "/oauth/authorize" {
        next.run(req).await
    } else if !authorized(&s, req.headers()) {
        // 401 with category INVALID_AUTHENTICATION for a missing, bad or expired token:
        // https://developers.hubspot.com/docs/faq/api-error-responses
        error(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        )
    } else {
        // Edits scheduled for this point of the read happen before it is answered.
        let answered = s
            .common
            .data_requests
            .load(std::sync::atomic::Ordering::SeqCst);
        let due: Vec<(u64, String, Vec<u64>)> = {
            let mut sch = s.scheduled.lock().unwrap();
            let (due, later) = sch.drain(..).partition(|(n, _, _)| *n <= answered);
            *sch = later;
            due
        };
        for (_, object, is) in due {
            touch(&s, &object, &is);
        }
        match s.common.next_fault() {
            // 429 when a limit is hit: `errorType: RATE_LIMIT`, `policyName` (SECONDLY, DAILY,
            // …) naming the limit, and the `X-HubSpot-RateLimit-*` headers of the burst window.
            // https://developers.hubspot.com/docs/guides/apps/api-usage/usage-details,
            // https://developers.hubspot.com/docs/api/usage-details
            Some(Fault::Status {
                status: 429,
                retry_after,
            }) => {
                let mut r = (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(json!({"status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT",
                                      "correlationId": "c0ffee00-0000-4000-8000-000000000000", "policyName": "SECONDLY"})),
                )
                    .into_response();
                let h = r.headers_mut();
                h.insert("x-hubspot-ratelimit-max", HeaderValue::from_static("100"));
                h.insert(
                    "x-hubspot-ratelimit-remaining",
                    HeaderValue::from_static("0"),
                );
                h.insert(
                    "x-hubspot-ratelimit-interval-milliseconds",
                    HeaderValue::from_static("10000"),
                );
                if let Some(ra) = retry_after {
                    h.insert("retry-after", HeaderValue::from_str(&ra).unwrap());
                }
                r
            }
            // Other statuses with the common error body (5xx: HubSpot's side, retried).
            // https://developers.hubspot.com/docs/faq/api-error-responses
            Some(Fault::Status { status, .. }) => error(
                StatusCode::from_u16(status).unwrap(),
                "INTERNAL_ERROR",
                "injected failure",
            ),
            Some(Fault::Slow(d)) => {
                tokio::time::sleep(d).await;
                next.run(req).await
            }
            Some(Fault::Truncated) | Some(Fault::Malformed) => {
                (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response()
            }
            None => next.run(req).await,
        }
    };
    s.common
        .record(at, &method, &path, &query, resp.status().as_u16());
    if let Some(b) = body {
        s.search_bodies.lock().unwrap().push(b);
    }
    resp
}
