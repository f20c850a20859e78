//! A mock Zendesk Support API, in Zendesk's dialect:
//!
//! - `GET /api/v2/incremental/{tickets,users}/cursor.json?start_time|cursor&per_page[&exclude_deleted]`
//!   → `{"tickets": [...], "after_cursor", "after_url", "before_cursor", "before_url", "end_of_stream"}`;
//!   items ordered by `generated_timestamp` (tickets) / `updated_at` (users); `start_time`
//!   inclusive; items changed within the last minute left out; a `start_time` younger than a
//!   minute answers 400.
//! - `GET /api/v2/incremental/organizations.json?start_time&per_page` (time-based)
//!   → `{"organizations", "count", "end_time", "next_page", "end_of_stream"}`; the next page
//!   starts at `end_time` inclusive, so items of that second come again (as in Zendesk).
//! - `GET /api/v2/{groups,ticket_fields}.json?page[size]&page[after]`
//!   → `{..., "meta": {"has_more", "after_cursor", "before_cursor"}, "links": {"next", "prev"}}`.
//! - Auth: HTTP basic `{email}/token:{api_token}` or `Authorization: Bearer <oauth token>`;
//!   refusals are `401 {"error": "Couldn't authenticate you"}`. OAuth clients: the consent page
//!   `GET /oauth/authorizations/new` (PKCE S256) and `POST /oauth/tokens` (JSON body, as
//!   Zendesk's examples; form bodies accepted too) with the `authorization_code` and
//!   `refresh_token` grants; a refresh rotates both tokens, the previous ones stop working
//!   (<https://developer.zendesk.com/documentation/ticketing/working-with-oauth/oauth-pkce>,
//!   <https://support.zendesk.com/hc/en-us/articles/9182123625370>).
//! - Throttling: `429` with `Retry-After` and `{"error": "APIRateLimitExceeded", ...}`.
//!
//! Data (times from [`crate::base_time`]): ticket `i` updated at `BASE + i min`, status
//! `deleted` when `i.is_multiple_of(10)`, and for `i.is_multiple_of(11)` a system update 5 days later moves its
//! `generated_timestamp` (not its `updated_at`); user `i` updated at `BASE + 2i min`, inactive
//! (deleted) when `i.is_multiple_of(6)`; organization `i` updated at `BASE + (i / 3) min` (three share
//! each second, so time-based pages repeat items at their boundary); group `i` at `BASE + i h`.

use super::{b64, header, status_response, token, untoken, with_body_fault, Common};
use crate::{base_time, Fault, Seen};
use axum::body::Body;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub enum ZendeskAuth {
    /// API token: basic auth with `{email}/token` and the token.
    Token { email: String, token: String },
    /// OAuth access token.
    Bearer(String),
}

#[derive(Debug, Clone)]
pub struct ZendeskMockConfig {
    pub tickets: u64,
    pub users: u64,
    pub organizations: u64,
    pub groups: u64,
    pub auth: ZendeskAuth,
}

impl Default for ZendeskMockConfig {
    fn default() -> Self {
        ZendeskMockConfig {
            tickets: 120,
            users: 40,
            organizations: 31,
            groups: 12,
            auth: ZendeskAuth::Token {
                email: "agent@acme.test".into(),
                token: "zd-token-1".into(),
            },
        }
    }
}

struct Inner {
    cfg: ZendeskMockConfig,
    common: Common,
    /// Serve every item whatever `start_time` says (as for a parameter Zendesk does not know).
    ignore_start_time: AtomicBool,
    /// Start every cursor page after the first with the previous page's last item again.
    repeat_boundary: AtomicBool,
    /// Hand out the same cursor forever.
    endless: AtomicBool,
    /// Items changed within this many seconds are not exported yet (Zendesk: 60).
    export_delay_seconds: std::sync::atomic::AtomicU64,
    /// Tickets updated since the mock started: id -> new `updated_at` (= generated time).
    touched: std::sync::Mutex<HashMap<u64, DateTime<Utc>>>,
    /// (ticket, field, value) served instead of the generated value.
    overrides: std::sync::Mutex<Vec<(u64, String, Value)>>,
    /// (data requests answered, ticket ids): update those tickets, at the time of the next
    /// request, once the mock has answered that many.
    scheduled: std::sync::Mutex<Vec<(u64, Vec<u64>)>>,
    codes: super::oauth::AuthCodes,
    /// OAuth tokens handed out: (valid access tokens, the current refresh token, serial).
    oauth: std::sync::Mutex<(BTreeSet<String>, Option<String>, u64)>,
}

/// The OAuth client the mock knows (Admin Center > Apps and integrations > OAuth clients).
pub const OAUTH_CLIENT_ID: &str = "ferry_zd";
pub const OAUTH_CLIENT_SECRET: &str = "zd-client-secret-1";

type S = Arc<Inner>;

/// A running mock Zendesk.
pub struct ZendeskMock {
    pub addr: SocketAddr,
    inner: S,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ZendeskMock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn ticket_updated_at(i: u64) -> DateTime<Utc> {
    base_time() + ChronoDuration::minutes(i as i64)
}
pub fn ticket_generated(i: u64) -> DateTime<Utc> {
    if i.is_multiple_of(11) {
        ticket_updated_at(i) + ChronoDuration::days(5)
    } else {
        ticket_updated_at(i)
    }
}
pub fn user_updated_at(i: u64) -> DateTime<Utc> {
    base_time() + ChronoDuration::minutes(2 * i as i64)
}
pub fn org_updated_at(i: u64) -> DateTime<Utc> {
    base_time() + ChronoDuration::minutes((i / 3) as i64)
}
pub fn group_updated_at(i: u64) -> DateTime<Utc> {
    base_time() + ChronoDuration::hours(i as i64)
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl ZendeskMock {
    /// Items changed within `secs` seconds are not exported yet (Zendesk's is 60, the
    /// default); tests of records changing during a read set it lower to stay quick.
    pub fn set_export_delay(&self, secs: u64) {
        self.inner
            .export_delay_seconds
            .store(secs, Ordering::SeqCst);
    }

    /// Serve `value` as ticket `id`'s `field` (a value ferry must refuse: the canary tests).
    pub fn override_field(&self, id: u64, field: &str, value: Value) {
        self.inner
            .overrides
            .lock()
            .unwrap()
            .push((id, field.to_string(), value));
    }

    /// Update tickets `ids` (now) once `after` data requests have been answered.
    pub fn touch_after(&self, after: u64, ids: &[u64]) {
        self.inner
            .scheduled
            .lock()
            .unwrap()
            .push((after, ids.to_vec()));
    }

    /// (id, updated_at) of every ticket now.
    pub fn ticket_versions(&self) -> BTreeSet<(u64, String)> {
        let t = self.inner.touched.lock().unwrap();
        (1..=self.inner.cfg.tickets)
            .map(|i| {
                (
                    i,
                    iso(t.get(&i).copied().unwrap_or_else(|| ticket_updated_at(i))),
                )
            })
            .collect()
    }

    pub async fn start(cfg: ZendeskMockConfig) -> ZendeskMock {
        let inner = Arc::new(Inner {
            cfg,
            common: Common::default(),
            ignore_start_time: AtomicBool::new(false),
            repeat_boundary: AtomicBool::new(false),
            endless: AtomicBool::new(false),
            export_delay_seconds: std::sync::atomic::AtomicU64::new(60),
            touched: Default::default(),
            overrides: Default::default(),
            scheduled: Default::default(),
            codes: Default::default(),
            oauth: Default::default(),
        });
        let app = Router::new()
            .route("/oauth/authorizations/new", get(authorize))
            .route("/oauth/tokens", post(oauth_tokens))
            .route(
                "/api/v2/incremental/tickets/cursor.json",
                get(tickets_export),
            )
            .route("/api/v2/incremental/users/cursor.json", get(users_export))
            .route("/api/v2/incremental/organizations.json", get(orgs_export))
            .route("/api/v2/groups.json", get(groups))
            .route("/api/v2/users/me.json", get(me))
            .route("/api/v2/ticket_fields.json", get(ticket_fields))
            .layer(axum::middleware::from_fn_with_state(inner.clone(), gate))
            .with_state(inner.clone());
        let (addr, task) = super::serve(app, "zendesk").await;
        ZendeskMock { addr, inner, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// The authorization-code grant's state (refuse the next consent, the last request).
    pub fn consent(&self) -> &super::oauth::AuthCodes {
        &self.inner.codes
    }
    /// An admin revokes the OAuth grant: its access and refresh tokens stop working.
    pub fn revoke_oauth(&self) {
        *self.inner.oauth.lock().unwrap() = Default::default();
    }
    pub fn config(&self) -> &ZendeskMockConfig {
        &self.inner.cfg
    }
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.inner.common.faults.lock().unwrap().extend(faults);
    }
    pub fn fault_every(&self, every: u64, faults: Vec<Fault>) {
        *self.inner.common.periodic.lock().unwrap() = Some((every, faults));
    }
    pub fn set_ignore_start_time(&self, on: bool) {
        self.inner.ignore_start_time.store(on, Ordering::SeqCst);
    }
    pub fn set_repeat_boundary(&self, on: bool) {
        self.inner.repeat_boundary.store(on, Ordering::SeqCst);
    }
    pub fn set_endless_cursor(&self, on: bool) {
        self.inner.endless.store(on, Ordering::SeqCst);
    }
    pub fn requests(&self) -> Vec<Seen> {
        self.inner.common.log.lock().unwrap().clone()
    }

    /// Tickets whose `updated_at` is in `(start, end]`; deleted ones only if asked.
    pub fn ticket_ids(
        &self,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        with_deleted: bool,
    ) -> BTreeSet<u64> {
        (1..=self.inner.cfg.tickets)
            .filter(|i| with_deleted || i % 10 != 0)
            .filter(|i| in_window(ticket_updated_at(*i), start, end))
            .collect()
    }
    pub fn user_ids(
        &self,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> BTreeSet<u64> {
        (1..=self.inner.cfg.users)
            .filter(|i| in_window(user_updated_at(*i), start, end))
            .collect()
    }
    pub fn org_ids(
        &self,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> BTreeSet<u64> {
        (1..=self.inner.cfg.organizations)
            .filter(|i| in_window(org_updated_at(*i), start, end))
            .collect()
    }
    pub fn group_ids(&self) -> BTreeSet<u64> {
        (1..=self.inner.cfg.groups).collect()
    }
}

fn in_window(t: DateTime<Utc>, start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> bool {
    start.is_none_or(|s| t > s) && end.is_none_or(|e| t <= e)
}

fn ticket(i: u64, base: &str) -> Value {
    let status = if i.is_multiple_of(10) {
        "deleted"
    } else {
        STATUSES[(i % 4) as usize]
    };
    json!({
        "url": format!("{base}/api/v2/tickets/{i}.json"),
        "id": i,
        "external_id": if i.is_multiple_of(3) { Value::Null } else { json!(format!("ext-{i}")) },
        "via": {"channel": "email", "source": {"from": {}, "to": {}, "rel": null}},
        "created_at": iso(base_time()),
        "updated_at": iso(ticket_updated_at(i)),
        "generated_timestamp": ticket_generated(i).timestamp(),
        "type": if i.is_multiple_of(2) { json!("incident") } else { Value::Null },
        "subject": format!("Printer {i} is on fire"),
        "raw_subject": format!("Printer {i} is on fire"),
        "description": format!("Ticket {i}"),
        "priority": if i.is_multiple_of(5) { Value::Null } else { json!(PRIORITIES[(i % 4) as usize]) },
        "status": status,
        "recipient": "support@acme.test",
        "requester_id": 1000 + i % 7,
        "submitter_id": 1000 + i % 7,
        "assignee_id": if i.is_multiple_of(4) { Value::Null } else { json!(2000 + i % 3) },
        "organization_id": 3000 + i % 5,
        "group_id": 4000 + i % 2,
        "brand_id": 5000,
        "problem_id": null,
        "collaborator_ids": [35334, 234],
        "follower_ids": [],
        "tags": [format!("t{}", i % 4), "enterprise"],
        "custom_fields": [{"id": 27642, "value": format!("{}", i * 3)}, {"id": 27648, "value": i.is_multiple_of(2)}],
        "satisfaction_rating": null,
        "has_incidents": false,
        "is_public": true,
        "due_at": null,
        "sharing_agreement_ids": [],
        "allow_channelback": false,
    })
}

const ROLES: [&str; 3] = ["end-user", "agent", "admin"];
const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];
const STATUSES: [&str; 4] = ["new", "open", "pending", "solved"];

fn user(i: u64, base: &str) -> Value {
    json!({
        "id": i,
        "url": format!("{base}/api/v2/users/{i}.json"),
        "name": format!("User {i}"),
        "email": format!("user{i}@example.test"),
        "phone": null,
        "role": ROLES[(i % 3) as usize],
        "role_type": if i % 3 == 1 { Value::Null } else { json!(0) },
        "organization_id": if i.is_multiple_of(2) { json!(3000 + i % 5) } else { Value::Null },
        "default_group_id": null,
        "locale": "en-US",
        "time_zone": "Berlin",
        "external_id": null,
        "active": !i.is_multiple_of(6),
        "verified": true,
        "suspended": false,
        "shared": false,
        "restricted_agent": true,
        "tags": [],
        "user_fields": {"employee_id": format!("E{i}")},
        "last_login_at": if i.is_multiple_of(2) { json!(iso(base_time())) } else { Value::Null },
        "created_at": iso(base_time()),
        "updated_at": iso(user_updated_at(i)),
    })
}

fn org(i: u64, base: &str) -> Value {
    json!({
        "id": i,
        "url": format!("{base}/api/v2/organizations/{i}.json"),
        "name": format!("Org {i}"),
        "external_id": null,
        "domain_names": [format!("org{i}.test")],
        "details": "",
        "notes": "",
        "group_id": null,
        "shared_tickets": false,
        "shared_comments": false,
        "tags": ["customer"],
        "organization_fields": {"tier": "gold"},
        "created_at": iso(base_time()),
        "updated_at": iso(org_updated_at(i)),
        "deleted_at": null,
    })
}

fn group(i: u64, base: &str) -> Value {
    json!({
        "id": i, "url": format!("{base}/api/v2/groups/{i}.json"), "name": format!("Group {i}"),
        "description": "", "default": i == 1, "deleted": false, "is_public": true,
        "created_at": iso(base_time()), "updated_at": iso(group_updated_at(i)),
    })
}

fn ticket_field(i: u64, base: &str) -> Value {
    json!({
        "id": 27000 + i, "url": format!("{base}/api/v2/ticket_fields/{}.json", 27000 + i), "type": "text",
        "title": format!("Field {i}"), "description": "", "active": true, "required": false, "position": i,
        "custom_field_options": [], "created_at": iso(base_time()), "updated_at": iso(group_updated_at(i)),
    })
}

type Q = HashMap<String, String>;

fn bad_request(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": error, "description": description})),
    )
        .into_response()
}

fn base_of(headers: &HeaderMap) -> String {
    format!("http://{}", header(headers, "host").unwrap_or("localhost"))
}

/// Common start_time handling: required, an integer, older than a minute ("items created or
/// changed within the minute prior to your request are excluded"; `start_time` inclusive: "all
/// the items that were created or changed on or after the start time").
/// <https://developer.zendesk.com/documentation/ticketing/managing-tickets/using-the-incremental-export-api>
fn start_time(q: &Q) -> Result<i64, Response> {
    let Some(v) = q.get("start_time") else {
        return Err(bad_request(
            "InvalidPaginationParameter",
            "start_time or cursor is required",
        ));
    };
    let st: i64 = v.parse().map_err(|_| {
        bad_request(
            "InvalidValue",
            "start_time must be a Unix epoch time in seconds",
        )
    })?;
    if st > Utc::now().timestamp() - 60 {
        return Err(bad_request(
            "InvalidValue",
            "start_time must be more than one minute in the past",
        ));
    }
    Ok(st)
}

fn per_page(q: &Q) -> usize {
    q.get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 1000)
}

/// The cursor-based export over `items` (key, sort time, JSON), ordered by time then id.
fn cursor_export(
    s: &S,
    q: &Q,
    key_name: &str,
    path: &str,
    base: &str,
    mut items: Vec<(u64, DateTime<Utc>, Value)>,
) -> Response {
    // The cursor names the last item served (its time and id): an item updated while a
    // client pages moves to the end of the stream (it is served again there) and shifts
    // nothing in between. <https://developer.zendesk.com/documentation/ticketing/managing-tickets/using-the-incremental-export-api>
    let (st, after): (i64, Option<(i64, u64)>) = match q.get("cursor") {
        Some(c) => match untoken(c).and_then(|t| {
            let mut it = t.split(':');
            let st = it.next()?.parse::<i64>().ok()?;
            let last = match (it.next(), it.next()) {
                (Some(a), Some(b)) if !a.is_empty() => Some((a.parse().ok()?, b.parse().ok()?)),
                _ => None,
            };
            Some((st, last))
        }) {
            Some(x) => x,
            None => return bad_request("InvalidPaginationParameter", "invalid cursor"),
        },
        None => match start_time(q) {
            Ok(st) => (st, None),
            Err(r) => return r,
        },
    };
    let cutoff =
        Utc::now() - ChronoDuration::seconds(s.export_delay_seconds.load(Ordering::SeqCst) as i64);
    items.retain(|(_, t, _)| {
        *t <= cutoff && (s.ignore_start_time.load(Ordering::SeqCst) || t.timestamp() >= st)
    });
    items.sort_by_key(|(id, t, _)| (t.timestamp(), *id));
    let key = |(id, t, _): &(u64, DateTime<Utc>, Value)| (t.timestamp(), *id);
    let pos = match after {
        None => 0,
        Some(last) => items
            .iter()
            .position(|x| key(x) > last)
            .unwrap_or(items.len()),
    };
    let n = per_page(q);
    let from = if pos > 0 && after.is_some() && s.repeat_boundary.load(Ordering::SeqCst) {
        pos - 1
    } else {
        pos
    }
    .min(items.len());
    let to = (pos + n).min(items.len());
    let page: Vec<Value> = items[from..to].iter().map(|(_, _, v)| v.clone()).collect();
    let end = to >= items.len();
    let cursor_at = |k: Option<(i64, u64)>| match k {
        Some((t, id)) => token(&format!("{st}:{t}:{id}")),
        None => token(&format!("{st}::")),
    };
    let last = if to > 0 {
        Some(key(&items[to - 1]))
    } else {
        after
    };
    let after_c = if s.endless.load(Ordering::SeqCst) {
        cursor_at(after)
    } else {
        cursor_at(last)
    };
    let before = cursor_at(after);
    json_response(json!({
        key_name: page,
        "after_url": format!("{base}{path}?cursor={after_c}"),
        "after_cursor": after_c,
        "before_url": format!("{base}{path}?cursor={before}"),
        "before_cursor": before,
        "end_of_stream": end && !s.endless.load(Ordering::SeqCst),
    }))
}

/// "Show Self" (`GET /api/v2/users/me`): the authenticated user; allowed for anonymous users,
/// who get a user without an id. The gate refuses bad credentials with 401.
/// <https://developer.zendesk.com/api-reference/ticketing/users/users/>
async fn me(headers: HeaderMap) -> Response {
    let base = base_of(&headers);
    json_response(
        json!({"user": {"id": 1000, "url": format!("{base}/api/v2/users/1000.json"),
        "name": "Agent Admin", "email": "agent@acme.test", "role": "admin", "active": true}}),
    )
}

fn json_response(v: Value) -> Response {
    axum::Json(v).into_response()
}

/// Cursor-based incremental ticket export: `start_time`, then `cursor=<after_cursor>` until
/// `end_of_stream`; 10 requests a minute.
/// <https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/>
async fn tickets_export(State(s): State<S>, headers: HeaderMap, Query(q): Query<Q>) -> Response {
    let base = base_of(&headers);
    let exclude_deleted = q.get("exclude_deleted").is_some_and(|v| v == "true");
    let items = (1..=s.cfg.tickets)
        .filter(|i| !(exclude_deleted && i.is_multiple_of(10)))
        .map(|i| {
            let mut v = ticket(i, &base);
            for (id, field, value) in s.overrides.lock().unwrap().iter() {
                if *id == i {
                    v[field.as_str()] = value.clone();
                }
            }
            let touched = s.touched.lock().unwrap().get(&i).copied();
            let generated = match touched {
                // An update moves both times (a user's change, not a system one).
                Some(t) => {
                    v["updated_at"] = json!(iso(t));
                    v["generated_timestamp"] = json!(t.timestamp());
                    t
                }
                None => ticket_generated(i),
            };
            (i, generated, v)
        })
        .collect();
    cursor_export(
        &s,
        &q,
        "tickets",
        "/api/v2/incremental/tickets/cursor.json",
        &base,
        items,
    )
}

async fn users_export(State(s): State<S>, headers: HeaderMap, Query(q): Query<Q>) -> Response {
    let base = base_of(&headers);
    let items = (1..=s.cfg.users)
        .map(|i| (i, user_updated_at(i), user(i, &base)))
        .collect();
    cursor_export(
        &s,
        &q,
        "users",
        "/api/v2/incremental/users/cursor.json",
        &base,
        items,
    )
}

/// Time-based export: the next page starts at `end_time`, inclusive, so items of that second
/// come again ("the exported data may contain duplicate items").
/// <https://developer.zendesk.com/documentation/ticketing/managing-tickets/using-the-incremental-export-api>
async fn orgs_export(State(s): State<S>, headers: HeaderMap, Query(q): Query<Q>) -> Response {
    let base = base_of(&headers);
    let st = match start_time(&q) {
        Ok(st) => st,
        Err(r) => return r,
    };
    let n = per_page(&q);
    let mut items: Vec<(u64, DateTime<Utc>)> = (1..=s.cfg.organizations)
        .map(|i| (i, org_updated_at(i)))
        .filter(|(_, t)| s.ignore_start_time.load(Ordering::SeqCst) || t.timestamp() >= st)
        .collect();
    items.sort_by_key(|(id, t)| (*t, *id));
    items.truncate(n);
    let end_time = items.last().map(|(_, t)| t.timestamp()).unwrap_or(st);
    let count = items.len();
    json_response(json!({
        "organizations": items.iter().map(|(i, _)| org(*i, &base)).collect::<Vec<_>>(),
        "count": count,
        "end_time": end_time,
        "next_page": format!("{base}/api/v2/incremental/organizations.json?per_page={n}&start_time={end_time}"),
        "end_of_stream": count < n,
    }))
}

fn cursor_list(s: &S, q: &Q, key: &str, path: &str, base: &str, items: Vec<Value>) -> Response {
    let Some(size) = q.get("page[size]") else {
        // Without page[size] Zendesk uses offset pagination: first page only here.
        let n = items.len();
        return json_response(
            json!({key: items.into_iter().take(100).collect::<Vec<_>>(), "next_page": null, "previous_page": null, "count": n}),
        );
    };
    let size: usize = match size.parse::<usize>() {
        Ok(v) if (1..=100).contains(&v) => v,
        _ => {
            return bad_request(
                "InvalidPaginationParameter",
                "page[size] must be between 1 and 100",
            )
        }
    };
    let pos = match q.get("page[after]") {
        None => 0,
        Some(a) => match untoken(a).and_then(|t| {
            t.strip_prefix("after:")
                .and_then(|x| x.parse::<usize>().ok())
        }) {
            Some(p) => p,
            None => return bad_request("InvalidPaginationParameter", "invalid page[after] cursor"),
        },
    };
    let to = (pos + size).min(items.len());
    let more = to < items.len();
    let next_pos = if s.endless.load(Ordering::SeqCst) {
        pos
    } else {
        to
    };
    let after = token(&format!("after:{next_pos}"));
    json_response(json!({
        key: items[pos.min(items.len())..to].to_vec(),
        "meta": {"has_more": more || s.endless.load(Ordering::SeqCst), "after_cursor": after, "before_cursor": token(&format!("before:{pos}"))},
        "links": {"next": format!("{base}{path}?page[size]={size}&page[after]={after}"), "prev": null},
    }))
}

async fn groups(State(s): State<S>, headers: HeaderMap, Query(q): Query<Q>) -> Response {
    let base = base_of(&headers);
    let items = (1..=s.cfg.groups).map(|i| group(i, &base)).collect();
    cursor_list(&s, &q, "groups", "/api/v2/groups.json", &base, items)
}

async fn ticket_fields(State(s): State<S>, headers: HeaderMap, Query(q): Query<Q>) -> Response {
    let base = base_of(&headers);
    let items = (1..=8).map(|i| ticket_field(i, &base)).collect();
    cursor_list(
        &s,
        &q,
        "ticket_fields",
        "/api/v2/ticket_fields.json",
        &base,
        items,
    )
}

/// The consent page: `response_type=code`, `client_id` (the client's unique identifier),
/// `redirect_uri`, `scope` (space-separated), `state`, `code_challenge` +
/// `code_challenge_method=S256`.
/// <https://developer.zendesk.com/documentation/ticketing/working-with-oauth/oauth-pkce>
async fn authorize(State(s): State<S>, RawQuery(q): RawQuery) -> Response {
    let d = super::oauth::Dialect {
        client_id: OAUTH_CLIENT_ID.into(),
        scope_param: "scope",
        require_state: false,
        pkce: super::oauth::Pkce::Optional,
    };
    s.codes.authorize(&d, q.as_deref().unwrap_or(""))
}

/// `POST /oauth/tokens`: the `authorization_code` grant (`code`, `client_id`, `client_secret`
/// and/or `code_verifier`, `redirect_uri`) and the `refresh_token` grant, which rotates: the
/// previous access and refresh tokens are deleted. Errors: `400 {"error": "invalid_grant",
/// "error_description": ...}`.
/// <https://developer.zendesk.com/api-reference/ticketing/oauth/grant_type_tokens/>
async fn oauth_tokens(State(s): State<S>, headers: HeaderMap, body: String) -> Response {
    let p = super::oauth::params(header(&headers, "content-type"), &body);
    let refused =
        |e: &str, d: &str| status_response(400, None, json!({"error": e, "error_description": d}));
    if p.get("client_id").map(String::as_str) != Some(OAUTH_CLIENT_ID)
        || p.get("client_secret")
            .is_some_and(|c| c != OAUTH_CLIENT_SECRET)
    {
        return refused("invalid_client", "Client authentication failed");
    }
    match p.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            if let Err((e, d)) = s.codes.redeem(&p) {
                return refused(e, &d);
            }
        }
        Some("refresh_token") => {
            let current = s.oauth.lock().unwrap().1.clone();
            if current.is_none() || p.get("refresh_token") != current.as_ref() {
                return refused(
                    "invalid_grant",
                    "The provided access grant is invalid, expired, or revoked (e.g. invalid assertion, expired authorization token, bad end-user password credentials, or mismatching authorization code and redirection URI).",
                );
            }
        }
        _ => return refused("unsupported_grant_type", "grant type not supported"),
    }
    let mut o = s.oauth.lock().unwrap();
    o.2 += 1;
    let (at, rt) = (format!("zd-at-{}", o.2), format!("zd-rt-{}", o.2));
    // Rotation: the previous tokens are deleted.
    o.0.clear();
    o.0.insert(at.clone());
    o.1 = Some(rt.clone());
    axum::Json(
        json!({"access_token": at, "token_type": "bearer", "scope": "read",
        "refresh_token": rt, "expires_in": 1800, "refresh_token_expires_in": 2_592_000}),
    )
    .into_response()
}

fn authorized(s: &S, h: &HeaderMap) -> bool {
    let got = header(h, "authorization");
    if got
        .and_then(|g| g.strip_prefix("Bearer "))
        .is_some_and(|t| s.oauth.lock().unwrap().0.contains(t))
    {
        return true;
    }
    match &s.cfg.auth {
        ZendeskAuth::Token { email, token } => {
            got == Some(format!("Basic {}", b64(&format!("{email}/token:{token}"))).as_str())
        }
        ZendeskAuth::Bearer(t) => got == Some(format!("Bearer {t}").as_str()),
    }
}

async fn gate(State(s): State<S>, req: Request<Body>, next: axum::middleware::Next) -> Response {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let resp = if path.starts_with("/oauth/") {
        next.run(req).await
    } else if !authorized(&s, req.headers()) {
        status_response(401, None, json!({"error": "Couldn't authenticate you"}))
    } else {
        let answered = s.common.data_requests.load(Ordering::SeqCst);
        let due: Vec<u64> = {
            let mut sch = s.scheduled.lock().unwrap();
            let (due, later): (Vec<_>, Vec<_>) = sch.drain(..).partition(|(n, _)| *n <= answered);
            *sch = later;
            due.into_iter().flat_map(|(_, ids)| ids).collect()
        };
        if !due.is_empty() {
            let now = Utc::now();
            let mut t = s.touched.lock().unwrap();
            for i in due {
                t.insert(i, now);
            }
        }
        match s.common.next_fault() {
            Some(Fault::Status {
                status: 429,
                retry_after,
            }) => status_response(
                429,
                retry_after.as_deref(),
                json!({"error": "APIRateLimitExceeded", "description": "Number of allowed API requests per minute exceeded"}),
            ),
            Some(Fault::Status {
                status,
                retry_after,
            }) => status_response(
                status,
                retry_after.as_deref(),
                json!({"error": "ServiceUnavailable", "description": "injected"}),
            ),
            Some(Fault::Slow(d)) => {
                tokio::time::sleep(d).await;
                next.run(req).await
            }
            Some(f) => with_body_fault(&f, next.run(req).await).await,
            None => next.run(req).await,
        }
    };
    s.common
        .record(at, &method, &path, &query, resp.status().as_u16());
    resp
}
