//! Jira Cloud's REST API v3 as its docs describe it, for the `jira` connector:
//!
//! - `POST /rest/api/3/search/jql` (enhanced search): `jql`, `fields`, `maxResults`,
//!   `nextPageToken`; the answer has `issues` and a `nextPageToken` except on the last page; an
//!   unbounded query (no restriction) is refused with 400; unknown field ids and unknown body
//!   members are silently ignored; fewer issues than `maxResults` come back when many fields
//!   are asked for.
//!   <https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-search/#api-rest-api-3-search-jql-post>
//! - JQL dates `"yyyy/MM/dd HH:mm"` have minute precision and are read in the *searching user's*
//!   time zone (here Asia/Kolkata, +05:30, so a UTC reading is off by five and a half hours);
//!   issue datetimes are written with the user's offset (`+0530`):
//!   <https://support.atlassian.com/jira-software-cloud/docs/jql-fields/#Updated>,
//!   <https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-myself/>
//! - `GET /rest/api/3/field`: <https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-fields/>
//! - `GET /rest/api/3/issue/{id}/changelog` (`startAt`, `maxResults` ≤ 100, `total`, `isLast`):
//!   <https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issues/#api-rest-api-3-issue-issueidorkey-changelog-get>
//! - 429 with `Retry-After` (seconds) and `X-RateLimit-Reset`:
//!   <https://developer.atlassian.com/cloud/jira/platform/rate-limiting/>
//! - Basic auth with email and API token, or a bearer token (OAuth 2.0 3LO); 401 with
//!   `errorMessages` otherwise: <https://developer.atlassian.com/cloud/jira/platform/basic-auth-for-rest-apis/>
//! - OAuth 2.0 (3LO) consent (`ferry profiles connect jira`): `GET /authorize` with
//!   `audience=api.atlassian.com`, `client_id`, `scope`, `redirect_uri`, `state`,
//!   `response_type=code`, `prompt=consent`; the code is redeemed at `POST /oauth/token` with a
//!   JSON body (`grant_type=authorization_code`, `client_id`, `client_secret`, `code`,
//!   `redirect_uri`); `GET /oauth/token/accessible-resources` lists the sites the token reaches
//!   (`id` is the cloud id), and the API is served under `/ex/jira/{cloudid}/rest/api/3/...` as
//!   well: <https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/>
//!
//! Data: issue `i` (1..=n) has id `10000 + i`, key `OPS-i` and `updated` = `BASE + (i /
//! same_time) * 20 s + 123 ms`, so three issues share each 20 seconds and every minute holds
//! several groups: a minute-precision JQL bound always falls inside a run of issues.

use crate::{Fault, Seen};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Duration as ChronoDuration, FixedOffset, NaiveDateTime, TimeZone, Utc};
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap()
}

/// The profile user's time zone.
pub const USER_TZ: &str = "Asia/Kolkata";
fn user_offset() -> FixedOffset {
    FixedOffset::east_opt(5 * 3600 + 30 * 60).unwrap()
}

#[derive(Debug, Clone)]
pub struct JiraConfig {
    pub issues: u64,
    pub same_time: u64,
    /// (email, API token) for basic auth.
    pub email: String,
    pub api_token: String,
    /// An OAuth access token accepted as a bearer token.
    pub bearer: String,
    /// OAuth 2.0 (3LO) client and the first refresh token (rotated at every refresh).
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
}

impl Default for JiraConfig {
    fn default() -> Self {
        JiraConfig {
            issues: 200,
            same_time: 3,
            email: "me@acme.example".into(),
            api_token: "ATATT-jira-token".into(),
            bearer: "jira-3lo-access".into(),
            client_id: "jira-3lo-client".into(),
            client_secret: "jira-3lo-secret".into(),
            refresh_token: "jira-rt-0".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Issue {
    n: u64,
    /// `updated` as first served.
    orig: DateTime<Utc>,
    updated: DateTime<Utc>,
    /// Edits since the start: each adds a changelog history.
    edits: u64,
}

impl Issue {
    fn id(&self) -> String {
        (10_000 + self.n).to_string()
    }
    fn created(&self) -> DateTime<Utc> {
        base_time() - ChronoDuration::days(10) + ChronoDuration::seconds(self.n as i64)
    }
    /// (id, created) of each history: one per (n % 3) + 1, the last at `updated`, plus one per
    /// edit.
    fn histories(&self) -> Vec<(String, DateTime<Utc>)> {
        let k = self.n % 3 + 1;
        let orig = self.orig;
        let mut v: Vec<(String, DateTime<Utc>)> = (0..k)
            .map(|j| {
                (
                    (self.n * 100 + j).to_string(),
                    orig - ChronoDuration::hours((k - 1 - j) as i64),
                )
            })
            .collect();
        for e in 0..self.edits {
            v.push(((self.n * 100 + 50 + e).to_string(), self.updated));
        }
        v
    }
}

fn orig_updated(n: u64, same: u64) -> DateTime<Utc> {
    let same = if same == 0 { 3 } else { same };
    base_time()
        + ChronoDuration::seconds(((n / same) * 20) as i64)
        + ChronoDuration::milliseconds(123)
}

/// A datetime as Jira writes it: the user's offset, milliseconds, `+0530`.
pub fn jira_text(t: DateTime<Utc>) -> String {
    t.with_timezone(&user_offset())
        .format("%Y-%m-%dT%H:%M:%S%.3f%z")
        .to_string()
}

struct Inner {
    cfg: JiraConfig,
    issues: Mutex<Vec<Issue>>,
    scheduled: Mutex<Vec<(u64, Vec<u64>)>>,
    common: super::Common,
    /// JQL of each search, in order.
    jqls: Mutex<Vec<String>>,
    /// (current refresh token, access tokens issued).
    oauth: Mutex<(String, Vec<String>)>,
    codes: super::oauth::AuthCodes,
    /// (issue number, field id, value) served instead of the generated value.
    overrides: Mutex<Vec<(u64, String, Value)>>,
}

/// The cloud id of the mock's one site (accessible-resources).
pub const CLOUD_ID: &str = "11223344-a1b2-3b33-c444-def123456789";

type S = Arc<Inner>;

pub struct JiraMock {
    pub addr: SocketAddr,
    inner: S,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JiraMock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JiraMock {
    pub async fn start(cfg: JiraConfig) -> JiraMock {
        let issues = (1..=cfg.issues)
            .map(|n| Issue {
                n,
                orig: orig_updated(n, cfg.same_time),
                updated: orig_updated(n, cfg.same_time),
                edits: 0,
            })
            .collect();
        let cfg_refresh = cfg.refresh_token.clone();
        let inner = Arc::new(Inner {
            cfg,
            issues: Mutex::new(issues),
            scheduled: Mutex::new(vec![]),
            common: Default::default(),
            jqls: Mutex::new(vec![]),
            oauth: Mutex::new((cfg_refresh, vec![])),
            codes: Default::default(),
            overrides: Mutex::new(vec![]),
        });
        let app = Router::new()
            .route("/rest/api/3/myself", get(myself))
            .route("/rest/api/3/field", get(fields))
            .route("/rest/api/3/search/jql", post(search))
            .route("/rest/api/3/issue/{id}/changelog", get(changelog))
            .route("/oauth/token", post(oauth_token))
            .route("/authorize", get(authorize))
            .route(
                "/oauth/token/accessible-resources",
                get(accessible_resources),
            )
            // 3LO: the same API under api.atlassian.com/ex/jira/{cloudid}.
            .route("/ex/jira/{cloud}/rest/api/3/myself", get(myself))
            .route("/ex/jira/{cloud}/rest/api/3/field", get(fields))
            .route("/ex/jira/{cloud}/rest/api/3/search/jql", post(search))
            .route(
                "/ex/jira/{cloud}/rest/api/3/issue/{id}/changelog",
                get(changelog_3lo),
            )
            .layer(axum::middleware::from_fn_with_state(inner.clone(), gate))
            .with_state(inner.clone());
        let (addr, task) = super::serve(app, "jira").await;
        JiraMock { addr, inner, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.inner.common.faults.lock().unwrap().extend(faults);
    }
    /// Every `every`-th data request gets the next fault of `faults` (round robin). A 5xx is
    /// answered with Jira's error body (`errorMessages`, `errors`), as the REST API's status
    /// codes section describes:
    /// <https://developer.atlassian.com/cloud/jira/platform/rest/v3/intro/#status-codes>
    pub fn fault_every(&self, every: u64, faults: Vec<Fault>) {
        *self.inner.common.periodic.lock().unwrap() = Some((every, faults));
    }
    pub fn requests(&self) -> Vec<Seen> {
        self.inner.common.log.lock().unwrap().clone()
    }
    /// The refresh token the mock accepts now (Atlassian rotates it at every refresh).
    pub fn refresh_token(&self) -> String {
        self.inner.oauth.lock().unwrap().0.clone()
    }
    /// The authorization-code grant's state (the last consent request).
    pub fn consent(&self) -> &super::oauth::AuthCodes {
        &self.inner.codes
    }
    pub fn jqls(&self) -> Vec<String> {
        self.inner.jqls.lock().unwrap().clone()
    }
    /// `updated` of issue `n` as first served.
    pub fn updated(&self, n: u64) -> DateTime<Utc> {
        orig_updated(n, self.inner.cfg.same_time)
    }
    /// Edit issues `ns` once `after` data requests have been answered.
    /// Serve `value` as issue `n`'s field `field` (when asked for; a value ferry must refuse:
    /// the canary tests).
    pub fn override_field(&self, n: u64, field: &str, value: Value) {
        self.inner
            .overrides
            .lock()
            .unwrap()
            .push((n, field.to_string(), value));
    }

    pub fn touch_after(&self, after: u64, ns: &[u64]) {
        self.inner
            .scheduled
            .lock()
            .unwrap()
            .push((after, ns.to_vec()));
    }
    /// (id, updated) of every issue now.
    pub fn versions(&self) -> BTreeSet<(String, DateTime<Utc>)> {
        self.inner
            .issues
            .lock()
            .unwrap()
            .iter()
            .map(|i| (i.id(), i.updated))
            .collect()
    }
    /// Ids of issues updated in `(start, end]`.
    pub fn ids_in(
        &self,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> BTreeSet<String> {
        self.inner
            .issues
            .lock()
            .unwrap()
            .iter()
            .filter(|i| start.is_none_or(|s| i.updated > s) && end.is_none_or(|e| i.updated <= e))
            .map(Issue::id)
            .collect()
    }
    /// History ids created in `(start, end]`.
    pub fn history_ids_in(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> BTreeSet<String> {
        self.inner
            .issues
            .lock()
            .unwrap()
            .iter()
            .flat_map(Issue::histories)
            .filter(|(_, t)| *t > start && *t <= end)
            .map(|(id, _)| id)
            .collect()
    }
}

fn touch(s: &Inner, ns: &[u64]) {
    let now = Utc::now();
    for i in s.issues.lock().unwrap().iter_mut() {
        if ns.contains(&i.n) {
            i.updated = now;
            i.edits += 1;
        }
    }
}

/// Jira's error body: `errorMessages` and `errors`.
fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"errorMessages": [message], "errors": {}})),
    )
        .into_response()
}

async fn myself(State(s): State<S>) -> Response {
    axum::Json(json!({
        "accountId": "5b10ac8d82e05b22cc7d4ef5",
        "emailAddress": s.cfg.email,
        "displayName": "Mia Krystof",
        "active": true,
        "timeZone": USER_TZ,
        "accountType": "atlassian",
    }))
    .into_response()
}

/// (id, name, navigable, schema) of the site's fields.
fn field_list() -> Vec<Value> {
    let f = |id: &str, name: &str, schema: Value| {
        json!({"id": id, "key": id, "name": name, "custom": id.starts_with("customfield_"),
               "orderable": true, "navigable": true, "searchable": true,
               "clauseNames": [id], "schema": schema})
    };
    vec![
        f(
            "summary",
            "Summary",
            json!({"type": "string", "system": "summary"}),
        ),
        f(
            "status",
            "Status",
            json!({"type": "status", "system": "status"}),
        ),
        f(
            "labels",
            "Labels",
            json!({"type": "array", "items": "string", "system": "labels"}),
        ),
        f(
            "assignee",
            "Assignee",
            json!({"type": "user", "system": "assignee"}),
        ),
        f(
            "duedate",
            "Due date",
            json!({"type": "date", "system": "duedate"}),
        ),
        f(
            "created",
            "Created",
            json!({"type": "datetime", "system": "created"}),
        ),
        f(
            "updated",
            "Updated",
            json!({"type": "datetime", "system": "updated"}),
        ),
        f(
            "customfield_10016",
            "Story point estimate",
            json!({"type": "number", "custom": "com.pyxis.greenhopper.jira:jsw-story-points", "customId": 10016}),
        ),
        // No schema, not navigable: left out of a default read.
        json!({"id": "thumbnail", "name": "Images", "custom": false, "navigable": false, "searchable": false}),
    ]
}

async fn fields() -> Response {
    axum::Json(Value::Array(field_list())).into_response()
}

fn issue_fields(i: &Issue, asked: &[String]) -> Value {
    let mut m = Map::new();
    for f in asked {
        let v = match f.as_str() {
            "summary" => json!(format!("Issue {} \"quoted\", with, commas", i.n)),
            "status" => {
                let name = ["To Do", "In Progress", "Done"][(i.n % 3) as usize];
                json!({"name": name, "id": (i.n % 3).to_string()})
            }
            "labels" => json!(if i.n.is_multiple_of(2) {
                vec!["backend", "p1"]
            } else {
                vec![]
            }),
            "assignee" => {
                if i.n.is_multiple_of(4) {
                    Value::Null
                } else {
                    json!({"accountId": format!("acc-{}", i.n % 5), "displayName": format!("User {}", i.n % 5)})
                }
            }
            "duedate" => {
                if i.n.is_multiple_of(5) {
                    Value::Null
                } else {
                    json!(format!("2026-03-{:02}", 1 + i.n % 28))
                }
            }
            "created" => json!(jira_text(i.created())),
            "updated" => json!(jira_text(i.updated)),
            "customfield_10016" => {
                if i.n.is_multiple_of(3) {
                    Value::Null
                } else {
                    json!((i.n % 8) as f64 + 0.5)
                }
            }
            // Unknown ids are left out without a word.
            _ => continue,
        };
        m.insert(f.clone(), v);
    }
    Value::Object(m)
}

/// One JQL condition.
enum Cond {
    Updated(&'static str, DateTime<Utc>),
    Project(String),
}

/// The JQL this mock understands: `A AND B AND …` of `updated <op> "yyyy/MM/dd HH:mm"` and
/// `project = KEY`, parentheses around a part, and `ORDER BY updated ASC, id ASC`.
fn parse_jql(jql: &str) -> Result<(Vec<Cond>, bool), String> {
    let lower = jql.to_ascii_lowercase();
    let (cond, order) = match lower.find(" order by ") {
        Some(i) => (&jql[..i], Some(lower[i + 10..].trim().to_string())),
        None => (jql, None),
    };
    let ordered = match order.as_deref() {
        None => false,
        Some("updated asc, id asc") | Some("updated asc") => true,
        Some(o) => {
            return Err(format!(
                "Error in the JQL Query: unsupported order '{o}' (mock)"
            ))
        }
    };
    let re = regex::Regex::new(r#"^updated\s*(>=|<=|>|<)\s*"(\d{4}/\d{2}/\d{2} \d{2}:\d{2})"$"#)
        .unwrap();
    let mut out = vec![];
    for part in cond.split(" AND ") {
        let p = part
            .trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .trim();
        if let Some(c) = re.captures(p) {
            let local = NaiveDateTime::parse_from_str(&c[2], "%Y/%m/%d %H:%M").map_err(|e| {
                format!("Date value '{}' for field 'updated' is invalid: {e}", &c[2])
            })?;
            // The user's zone, not UTC.
            let t = user_offset()
                .from_local_datetime(&local)
                .single()
                .unwrap()
                .with_timezone(&Utc);
            let op = match &c[1] {
                ">=" => ">=",
                "<=" => "<=",
                ">" => ">",
                _ => "<",
            };
            out.push(Cond::Updated(op, t));
        } else if let Some(k) = p.strip_prefix("project = ") {
            out.push(Cond::Project(k.trim().to_string()));
        } else {
            return Err(format!(
                "Error in the JQL Query: '{p}' is not understood (mock)"
            ));
        }
    }
    if out.is_empty() {
        return Err("Unbounded JQL queries are not allowed here. Please add a search restriction to your query.".into());
    }
    Ok((out, ordered))
}

fn matches(i: &Issue, conds: &[Cond]) -> bool {
    conds.iter().all(|c| match c {
        // Jira compares the issue's instant with the literal's minute start.
        Cond::Updated(">=", t) => i.updated >= *t,
        Cond::Updated(">", t) => i.updated > *t,
        Cond::Updated("<=", t) => i.updated <= *t,
        Cond::Updated(_, t) => i.updated < *t,
        Cond::Project(k) => k == "OPS",
    })
}

async fn search(State(s): State<S>, body: axum::Json<Value>) -> Response {
    let jql = body
        .get("jql")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    s.jqls.lock().unwrap().push(jql.clone());
    let (conds, ordered) = match parse_jql(&jql) {
        Ok(x) => x,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let asked: Vec<String> = body
        .get("fields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut max = body.get("maxResults").and_then(Value::as_u64).unwrap_or(50) as usize;
    // "API may return fewer items per page where a large number of fields is requested."
    if asked.len() > 5 {
        max = max.min(37);
    }
    let offset = match body.get("nextPageToken").and_then(Value::as_str) {
        None => 0,
        Some(t) => match super::untoken(t)
            .and_then(|o| o.strip_prefix("o:").and_then(|n| n.parse::<usize>().ok()))
        {
            Some(o) => o,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "The provided next page token is invalid or expired.",
                )
            }
        },
    };
    let issues = s.issues.lock().unwrap();
    let mut hits: Vec<&Issue> = issues.iter().filter(|i| matches(i, &conds)).collect();
    if ordered {
        hits.sort_by(|a, b| a.updated.cmp(&b.updated).then(a.n.cmp(&b.n)));
    }
    let page: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(max)
        .map(|i| {
            let mut fields = issue_fields(i, &asked);
            for (n, field, v) in s.overrides.lock().unwrap().iter() {
                if *n == i.n && fields.get(field).is_some() {
                    fields[field.as_str()] = v.clone();
                }
            }
            json!({"expand": "", "id": i.id(), "key": format!("OPS-{}", i.n),
                   "self": format!("https://acme.atlassian.net/rest/api/3/issue/{}", i.id()),
                   "fields": fields})
        })
        .collect();
    let mut out = json!({"issues": page, "isLast": offset + max >= hits.len()});
    if offset + max < hits.len() {
        out["nextPageToken"] = json!(super::token(&format!("o:{}", offset + max)));
    }
    axum::Json(out).into_response()
}

async fn changelog(
    State(s): State<S>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let issues = s.issues.lock().unwrap();
    let Some(i) = issues.iter().find(|i| i.id() == id) else {
        return error(
            StatusCode::NOT_FOUND,
            "Issue does not exist or you do not have permission to see it.",
        );
    };
    let start: usize = q.get("startAt").and_then(|v| v.parse().ok()).unwrap_or(0);
    let max: usize = q
        .get("maxResults")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
        .min(100);
    let all = i.histories();
    let values: Vec<Value> = all
        .iter()
        .skip(start)
        .take(max)
        .map(|(hid, t)| {
            json!({"id": hid, "author": {"accountId": "acc-1", "displayName": "User 1"},
                   "created": jira_text(*t),
                   "items": [{"field": "status", "fieldtype": "jira", "from": "1", "fromString": "To Do", "to": "3", "toString": "In Progress"}]})
        })
        .collect();
    axum::Json(json!({"self": format!("/rest/api/3/issue/{id}/changelog"), "maxResults": max, "startAt": start,
                      "total": all.len(), "isLast": start + max >= all.len(), "values": values}))
    .into_response()
}

/// `POST /oauth/token` of auth.atlassian.com: `grant_type=refresh_token` with the client id and
/// secret in the body (JSON in Atlassian's examples; a form body is accepted too); refresh tokens
/// rotate, so the one just used stops working.
/// <https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/#use-a-refresh-token-to-get-another-access-token-and-refresh-token-pair>
async fn oauth_token(State(s): State<S>, body: String) -> Response {
    let p: HashMap<String, String> = match serde_json::from_str::<Value>(&body) {
        Ok(Value::Object(m)) => m
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
            .collect(),
        _ => url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect(),
    };
    let mut o = s.oauth.lock().unwrap();
    if p.get("grant_type").map(String::as_str) == Some("authorization_code") {
        let client_ok = p.get("client_id") == Some(&s.cfg.client_id)
            && p.get("client_secret") == Some(&s.cfg.client_secret);
        let redeemed = s.codes.redeem(&p);
        if !client_ok {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "access_denied", "error_description": "Unauthorized"})),
            )
                .into_response();
        }
        if let Err((e, d)) = redeemed {
            return (
                StatusCode::FORBIDDEN,
                axum::Json(json!({"error": e, "error_description": d})),
            )
                .into_response();
        }
        let n = o.1.len() + 1;
        let access = format!("jira-3lo-at-{n}");
        o.1.push(access.clone());
        return axum::Json(json!({"access_token": access, "refresh_token": o.0, "expires_in": 3600,
                                 "scope": "read:jira-work read:jira-user offline_access", "token_type": "Bearer"}))
        .into_response();
    }
    let ok = p.get("grant_type").map(String::as_str) == Some("refresh_token")
        && p.get("client_id") == Some(&s.cfg.client_id)
        && p.get("client_secret") == Some(&s.cfg.client_secret)
        && p.get("refresh_token") == Some(&o.0);
    if !ok {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."})),
        )
            .into_response();
    }
    let n = o.1.len() + 1;
    let access = format!("jira-3lo-at-{n}");
    o.1.push(access.clone());
    o.0 = format!("jira-rt-{n}");
    axum::Json(json!({"access_token": access, "refresh_token": o.0, "expires_in": 3600,
                      "scope": "read:jira-work read:jira-user offline_access", "token_type": "Bearer"}))
    .into_response()
}

/// Atlassian's consent screen: the user grants the app access and is sent back with `code`.
async fn authorize(
    State(s): State<S>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let d = super::oauth::Dialect {
        client_id: s.cfg.client_id.clone(),
        scope_param: "scope",
        require_state: false,
        pkce: super::oauth::Pkce::Unsupported,
    };
    s.codes.authorize(&d, q.as_deref().unwrap_or(""))
}

/// The sites a 3LO token reaches (one here).
async fn accessible_resources() -> Response {
    axum::Json(json!([{"id": CLOUD_ID, "url": "https://acme.atlassian.net", "name": "acme",
        "scopes": ["read:jira-work", "read:jira-user"], "avatarUrl": "https://site-admin-avatar-cdn.prod.public.atl-paas.net/avatars/240/site.png"}]))
    .into_response()
}

async fn changelog_3lo(
    State(s): State<S>,
    Path((_cloud, id)): Path<(String, String)>,
    q: Query<HashMap<String, String>>,
) -> Response {
    changelog(State(s), Path(id), q).await
}

fn authorized(s: &S, h: &HeaderMap) -> bool {
    let got = h.get("authorization").and_then(|v| v.to_str().ok());
    if let Some(t) = got.and_then(|g| g.strip_prefix("Bearer ")) {
        if s.oauth.lock().unwrap().1.iter().any(|a| a == t) {
            return true;
        }
    }
    let basic = format!(
        "Basic {}",
        super::b64(&format!("{}:{}", s.cfg.email, s.cfg.api_token))
    );
    got == Some(basic.as_str()) || got == Some(format!("Bearer {}", s.cfg.bearer).as_str())
}

async fn gate(State(s): State<S>, req: Request<Body>, next: axum::middleware::Next) -> Response {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let resp = if path == "/oauth/token" || path == "/authorize" {
        next.run(req).await
    } else if !authorized(&s, req.headers()) {
        error(
            StatusCode::UNAUTHORIZED,
            "Client must be authenticated to access this resource.",
        )
    } else {
        let answered = s
            .common
            .data_requests
            .load(std::sync::atomic::Ordering::SeqCst);
        let due: Vec<Vec<u64>> = {
            let mut sch = s.scheduled.lock().unwrap();
            let (due, later): (Vec<_>, Vec<_>) = sch.drain(..).partition(|(n, _)| *n <= answered);
            *sch = later;
            due.into_iter().map(|(_, ns)| ns).collect()
        };
        for ns in due {
            touch(&s, &ns);
        }
        match s.common.next_fault() {
            Some(Fault::Status {
                status: 429,
                retry_after,
            }) => {
                let mut r = error(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded.");
                let h = r.headers_mut();
                if let Some(ra) = retry_after {
                    h.insert("retry-after", HeaderValue::from_str(&ra).unwrap());
                }
                h.insert(
                    "x-ratelimit-reset",
                    HeaderValue::from_static("2026-02-01T00:01Z"),
                );
                h.insert(
                    "ratelimit-reason",
                    HeaderValue::from_static("jira-burst-based"),
                );
                r
            }
            Some(Fault::Status {
                status,
                retry_after,
            }) => super::status_response(
                status,
                retry_after.as_deref(),
                json!({"errorMessages": ["Internal server error"], "errors": {}}),
            ),
            Some(Fault::Slow(d)) => {
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
