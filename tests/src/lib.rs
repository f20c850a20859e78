//! The mock SaaS server: an axum app serving a deterministic ticket data set in every paging
//! style the `rest` connector speaks, with auth, window filters and fault injection. Tests start
//! it in-process on `127.0.0.1:0`; `src/bin/mock-saas.rs` runs it standalone for benchmarks.
//!
//! Data: tickets `1..=n`, ticket `i` updated at `BASE + i minutes`; ticket `i` has `i % 3`
//! comments, and tickets whose id is a multiple of 7 answer 404 on their comments (deleted).
//!
//! Routes (every data route honours `updated_since` (>=), `updated_before` (<=) and
//! `q=updated_at>=…`, unless `ignore_filter` is set):
//! - `GET /offset/tickets?offset&limit`          `{"data": [...], "total": n}`
//! - `GET /page/tickets?page&per_page`           `{"items": [...], "page": p, "total_pages": t}`
//! - `GET /cursor/tickets?cursor&limit`          `{"data": [...], "meta": {"next_cursor", "has_more"}}`
//! - `GET /cursor-header/tickets?cursor&limit`   `[...]` with `X-Next-Cursor`
//! - `POST /search/tickets {cursor, limit, updated_since}`  `{"results": [...], "next": tok}`
//! - `GET /link/tickets?page&per_page`           `[...]` with `Link: <…>; rel="next"`
//! - `GET /next/tickets?after&limit`             `{"data": [...], "next": "/next/tickets?..."}`
//! - `GET /single/tickets`                       `{"data": [...all]}`
//! - `GET /tickets/{id}/comments`                `{"comments": [...]}`
//! - `POST /oauth/token`                         client_credentials and refresh_token grants
// Mock handlers return axum `Response`s as their error side: large, and fine for a test server.
#![allow(clippy::result_large_err)]

pub mod aws;
pub mod campaign;
pub mod faults;
pub mod saas;
pub mod stack;
pub mod store_contract;

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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every record of a read, page by page; the cursor goes through JSON text between pages, as it
/// does through the state machine's state.
pub async fn read_all(
    src: &dyn ferry::connector::Source,
    req: &ferry::connector::ReadRequest,
) -> Result<Vec<Value>, ferry::connector::SourceError> {
    let (mut out, mut cursor) = (vec![], None);
    for _ in 0..100_000 {
        let page = src.read_page(req, cursor.as_ref()).await?;
        out.extend(page.records);
        match page.next {
            Some(c) => cursor = Some(serde_json::from_str::<Value>(&c.to_string()).unwrap()),
            None => return Ok(out),
        }
    }
    panic!("paging never ended");
}

/// A read of every ticket of the mock's `tickets` entity: no window, no filters.
pub fn all_tickets() -> ferry::connector::ReadRequest {
    ferry::connector::ReadRequest {
        entity: "tickets".into(),
        window: None,
        incremental_field: None,
        page_size: None,
        filters: vec![],
    }
}

/// `got` has no duplicates and is exactly `expected`.
pub fn assert_once<T: Ord + Clone + std::fmt::Debug>(
    what: &str,
    got: &[T],
    expected: &BTreeSet<T>,
) {
    let set: BTreeSet<T> = got.iter().cloned().collect();
    assert_eq!(got.len(), set.len(), "{what}: duplicates");
    assert_eq!(&set, expected, "{what}: set differs");
}

/// `updated_at` of ticket 1 is BASE + 1 minute.
pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

pub fn updated_at(id: u64) -> DateTime<Utc> {
    base_time() + ChronoDuration::minutes(id as i64)
}

#[derive(Debug, Clone)]
pub enum MockAuth {
    None,
    ApiKeyHeader {
        header: String,
        key: String,
    },
    ApiKeyQuery {
        param: String,
        key: String,
    },
    Basic {
        user: String,
        password: String,
    },
    Bearer(String),
    /// OAuth2: tokens come from `/oauth/token`; access tokens live `token_ttl`.
    OAuth {
        client_id: String,
        client_secret: String,
        refresh_token: String,
        token_ttl: Duration,
    },
}

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status, with an optional `Retry-After` value.
    Status {
        status: u16,
        retry_after: Option<String>,
    },
    /// Wait this long before answering normally.
    Slow(Duration),
    /// Half the JSON body.
    Truncated,
    /// A body that is not JSON.
    Malformed,
}

impl Fault {
    pub fn status(status: u16) -> Self {
        Fault::Status {
            status,
            retry_after: None,
        }
    }
    pub fn throttle(retry_after: &str) -> Self {
        Fault::Status {
            status: 429,
            retry_after: Some(retry_after.into()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MockConfig {
    pub tickets: u64,
    pub auth: MockAuth,
    /// Serve every record whatever the window filter says.
    pub ignore_filter: bool,
    /// Added to every data response.
    pub latency: Duration,
    /// Page size when the request gives none.
    pub default_page: u64,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            tickets: 250,
            auth: MockAuth::None,
            ignore_filter: false,
            latency: Duration::ZERO,
            default_page: 25,
        }
    }
}

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
}

#[derive(Default)]
struct OAuthState {
    access: HashMap<String, Instant>,
    refresh: String,
    revoked: bool,
    issued: u64,
}

struct Inner {
    cfg: MockConfig,
    faults: Mutex<VecDeque<Fault>>,
    /// Data requests whose query contains the text wait, then get the status.
    failing_query: Mutex<Option<(String, Duration, u16)>>,
    periodic: Mutex<Option<(u64, Vec<Fault>)>>,
    data_requests: AtomicU64,
    log: Mutex<Vec<Seen>>,
    oauth: Mutex<OAuthState>,
    token_requests: AtomicU64,
    endless: AtomicBool,
    broken_link: AtomicBool,
    /// `/next/tickets` hands out absolute next URLs on this host (same port) instead of
    /// relative ones: an API, proxy or attacker steering the client to another host.
    next_host: Mutex<Option<String>>,
    port: AtomicU64,
    /// (ticket id, field, value): served instead of that field's generated value.
    overrides: Mutex<Vec<(u64, String, Value)>>,
    /// Tickets updated since the server started: id -> new `updated_at`.
    touched: Mutex<HashMap<u64, DateTime<Utc>>>,
    /// (after n data requests, ids): updates scheduled for later.
    scheduled: Mutex<Vec<(u64, Vec<u64>)>>,
}

impl Inner {
    /// Ticket `id`'s `updated_at` now.
    fn updated(&self, id: u64) -> DateTime<Utc> {
        self.touched
            .lock()
            .unwrap()
            .get(&id)
            .copied()
            .unwrap_or_else(|| updated_at(id))
    }
}

type S = Arc<Inner>;

/// A running mock server.
pub struct Mock {
    pub addr: SocketAddr,
    inner: S,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mock {
    pub async fn start(cfg: MockConfig) -> Mock {
        Self::start_on("127.0.0.1:0", cfg).await
    }

    pub async fn start_on(bind: &str, cfg: MockConfig) -> Mock {
        let refresh = match &cfg.auth {
            MockAuth::OAuth { refresh_token, .. } => refresh_token.clone(),
            _ => String::new(),
        };
        let inner = Arc::new(Inner {
            cfg,
            faults: Mutex::new(VecDeque::new()),
            failing_query: Mutex::new(None),
            periodic: Mutex::new(None),
            data_requests: AtomicU64::new(0),
            log: Mutex::new(vec![]),
            oauth: Mutex::new(OAuthState {
                refresh,
                ..Default::default()
            }),
            token_requests: AtomicU64::new(0),
            endless: AtomicBool::new(false),
            broken_link: AtomicBool::new(false),
            next_host: Mutex::new(None),
            port: AtomicU64::new(0),
            overrides: Mutex::new(vec![]),
            touched: Mutex::new(HashMap::new()),
            scheduled: Mutex::new(vec![]),
        });
        let app = router(inner.clone());
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .expect("bind mock server");
        let addr = listener.local_addr().unwrap();
        inner.port.store(addr.port() as u64, Ordering::SeqCst);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("mock server");
        });
        Mock { addr, inner, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serve until the process ends (for the binary).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }

    /// Faults for the next data requests, in order, one each.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.inner.faults.lock().unwrap().extend(faults);
    }

    /// Every data request whose query string contains `text` waits `delay`, then gets `status`
    /// (one slice's window failing while the others are read); `None` stops it.
    pub fn fail_queries(&self, failing: Option<(&str, Duration, u16)>) {
        *self.inner.failing_query.lock().unwrap() =
            failing.map(|(t, d, st)| (t.to_string(), d, st));
    }

    /// Every `every`-th data request gets the next fault of `faults` (round robin).
    pub fn fault_every(&self, every: u64, faults: Vec<Fault>) {
        *self.inner.periodic.lock().unwrap() = Some((every, faults));
    }

    /// Cursor routes hand out the same next cursor forever.
    /// Serve `Link` headers whose link values lack `rel` (a broken server or proxy).
    pub fn set_link_without_rel(&self, on: bool) {
        self.inner.broken_link.store(on, Ordering::SeqCst);
    }

    /// `/next/tickets` answers with absolute next URLs on `host` (this server's port).
    pub fn set_next_host(&self, host: Option<&str>) {
        *self.inner.next_host.lock().unwrap() = host.map(str::to_string);
    }

    pub fn set_endless_cursor(&self, on: bool) {
        self.inner.endless.store(on, Ordering::SeqCst);
    }

    /// The OAuth refresh token stops working.
    /// Serve `value` as ticket `id`'s `field` (a record the flow's schema does not expect).
    pub fn override_field(&self, id: u64, field: &str, value: Value) {
        self.inner
            .overrides
            .lock()
            .unwrap()
            .push((id, field.to_string(), value));
    }

    pub fn revoke_refresh_token(&self) {
        self.inner.oauth.lock().unwrap().revoked = true;
    }

    /// Every issued access token expires now.
    pub fn expire_access_tokens(&self) {
        let mut o = self.inner.oauth.lock().unwrap();
        let now = Instant::now();
        for v in o.access.values_mut() {
            *v = now;
        }
    }

    /// Token endpoint calls so far.
    pub fn token_requests(&self) -> u64 {
        self.inner.token_requests.load(Ordering::SeqCst)
    }

    /// The refresh token the server currently accepts.
    pub fn current_refresh_token(&self) -> String {
        self.inner.oauth.lock().unwrap().refresh.clone()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.inner.log.lock().unwrap().clone()
    }

    /// Update tickets `ids` once `after` data requests have been answered: their `updated_at`
    /// moves to the next whole second (after the window end of a run paging at that moment),
    /// and the window filters see the new value (a record edited while a run pages).
    pub fn touch_after(&self, after: u64, ids: &[u64]) {
        self.inner
            .scheduled
            .lock()
            .unwrap()
            .push((after, ids.to_vec()));
    }

    /// (id, updated_at) of every ticket now.
    pub fn versions(&self) -> BTreeSet<(u64, DateTime<Utc>)> {
        (1..=self.inner.cfg.tickets)
            .map(|i| (i, self.inner.updated(i)))
            .collect()
    }

    /// Ids of the tickets updated in `(start, end]` (all when `None`).
    pub fn ids_in(
        &self,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> BTreeSet<u64> {
        (1..=self.inner.cfg.tickets)
            .filter(|i| {
                let t = updated_at(*i);
                start.is_none_or(|s| t > s) && end.is_none_or(|e| t <= e)
            })
            .collect()
    }

    /// Every (ticket_id, comment id) pair served by the comments route.
    pub fn comment_ids(&self, tickets: &BTreeSet<u64>) -> BTreeSet<String> {
        tickets
            .iter()
            .filter(|t| *t % 7 != 0)
            .flat_map(|t| (0..t % 3).map(move |k| format!("{t}-{k}")))
            .collect()
    }
}

fn router(s: S) -> Router {
    Router::new()
        .route("/offset/tickets", get(offset))
        .route("/page/tickets", get(page))
        .route("/cursor/tickets", get(cursor))
        .route("/cursor-header/tickets", get(cursor_header))
        .route("/search/tickets", post(search))
        .route("/link/tickets", get(link))
        .route("/next/tickets", get(next_url))
        .route("/single/tickets", get(single))
        .route("/tickets/{id}/comments", get(comments))
        .route("/oauth/token", post(token))
        .layer(axum::middleware::from_fn_with_state(s.clone(), gate))
        .with_state(s)
}

fn ticket(id: u64, updated: DateTime<Utc>) -> Value {
    let status = ["open", "pending", "solved"][(id % 3) as usize];
    json!({
        "id": id,
        "subject": format!("Ticket {id}"),
        "status": status,
        "priority": id % 5,
        "updated_at": updated.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "tags": [format!("t{}", id % 4)],
    })
}

type Q = HashMap<String, String>;

fn parse_t(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The ids matching the request's filters, in order.
fn filtered(s: &S, q: &Q) -> Vec<u64> {
    let (mut lo, mut hi) = (None, None);
    if !s.cfg.ignore_filter {
        lo = q.get("updated_since").and_then(|v| parse_t(v));
        hi = q.get("updated_before").and_then(|v| parse_t(v));
        if let Some(expr) = q.get("q") {
            for part in expr.split(" AND ") {
                if let Some(v) = part.trim().strip_prefix("updated_at>=") {
                    lo = parse_t(v);
                } else if let Some(v) = part.trim().strip_prefix("updated_at<=") {
                    hi = parse_t(v);
                }
            }
        }
    }
    (1..=s.cfg.tickets)
        .filter(|i| {
            let t = s.updated(*i);
            lo.is_none_or(|l| t >= l) && hi.is_none_or(|h| t <= h)
        })
        .collect()
}

fn num(q: &Q, k: &str, default: u64) -> u64 {
    q.get(k).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn records(s: &S, ids: &[u64]) -> Vec<Value> {
    let overrides = s.overrides.lock().unwrap();
    ids.iter()
        .map(|i| {
            let mut t = ticket(*i, s.updated(*i));
            for (id, field, v) in overrides.iter() {
                if id == i {
                    t[field.as_str()] = v.clone();
                }
            }
            t
        })
        .collect()
}

/// Cursor tokens are opaque to clients: "c" + hex of the next index.
fn token_for(i: usize) -> String {
    format!("c{:x}", i * 7919 + 13)
}
fn index_of(tok: &str) -> Option<usize> {
    let n = usize::from_str_radix(tok.strip_prefix('c')?, 16).ok()?;
    (n >= 13 && (n - 13) % 7919 == 0).then(|| (n - 13) / 7919)
}

/// One cursor-paged slice: records and the next token.
fn cursor_slice(s: &S, q: &Q, tok: Option<&str>) -> Result<(Vec<Value>, Option<String>), Response> {
    let ids = filtered(s, q);
    let start = match tok.filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => index_of(t).ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "bad cursor"})),
            )
                .into_response()
        })?,
    };
    let limit = num(q, "limit", s.cfg.default_page) as usize;
    let end = (start + limit).min(ids.len());
    let page = records(&s, &ids[start.min(ids.len())..end]);
    let next = if s.endless.load(Ordering::SeqCst) {
        Some(token_for(start)) // the same token again: a looping API
    } else {
        (end < ids.len()).then(|| token_for(end))
    };
    Ok((page, next))
}

async fn offset(State(s): State<S>, Query(q): Query<Q>) -> Response {
    let ids = filtered(&s, &q);
    let off = num(&q, "offset", 0) as usize;
    let lim = num(&q, "limit", s.cfg.default_page) as usize;
    let page = &ids[off.min(ids.len())..(off + lim).min(ids.len())];
    axum::Json(json!({"data": records(&s, page), "total": ids.len()})).into_response()
}

async fn page(State(s): State<S>, Query(q): Query<Q>) -> Response {
    let ids = filtered(&s, &q);
    let p = num(&q, "page", 1).max(1) as usize;
    let per = num(&q, "per_page", s.cfg.default_page).max(1) as usize;
    let lo = ((p - 1) * per).min(ids.len());
    let page = &ids[lo..(lo + per).min(ids.len())];
    axum::Json(
        json!({"items": records(&s, page), "page": p, "total_pages": ids.len().div_ceil(per)}),
    )
    .into_response()
}

async fn cursor(State(s): State<S>, Query(q): Query<Q>) -> Response {
    match cursor_slice(&s, &q, q.get("cursor").map(String::as_str)) {
        Err(r) => r,
        Ok((data, next)) => axum::Json(json!({
            "data": data,
            "meta": {"has_more": next.is_some(), "next_cursor": next}
        }))
        .into_response(),
    }
}

async fn cursor_header(State(s): State<S>, Query(q): Query<Q>) -> Response {
    match cursor_slice(&s, &q, q.get("cursor").map(String::as_str)) {
        Err(r) => r,
        Ok((data, next)) => {
            let mut r = axum::Json(Value::Array(data)).into_response();
            if let Some(n) = next {
                r.headers_mut()
                    .insert("x-next-cursor", HeaderValue::from_str(&n).unwrap());
            }
            r
        }
    }
}

async fn search(State(s): State<S>, body: axum::Json<Value>) -> Response {
    let mut q = Q::new();
    for k in ["updated_since", "updated_before", "limit", "q"] {
        if let Some(v) = body.get(k) {
            q.insert(
                k.into(),
                v.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string()),
            );
        }
    }
    match cursor_slice(&s, &q, body.get("cursor").and_then(Value::as_str)) {
        Err(r) => r,
        Ok((data, next)) => axum::Json(json!({"results": data, "next": next})).into_response(),
    }
}

fn query_with(q: &Q, k: &str, v: String) -> String {
    let mut q = q.clone();
    q.insert(k.into(), v);
    let mut pairs: Vec<_> = q.into_iter().collect();
    pairs.sort();
    link_query(pairs)
}

/// A query string as servers echo it in `Link` URLs: percent-encoded, except that commas stay
/// raw. RFC 8288 puts the target between `<` and `>`, and a URI may hold commas (RFC 3986
/// §2.2 sub-delims), so GitHub-style and ServiceNow `Link` headers carry them unencoded
/// (`fields=id,subject`): a client that splits the header on `,` breaks.
/// <https://www.rfc-editor.org/rfc/rfc8288#section-3>
pub fn link_query(pairs: impl IntoIterator<Item = (String, String)>) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(&k, &v);
    }
    ser.finish().replace("%2C", ",")
}

async fn link(State(s): State<S>, Query(q): Query<Q>) -> Response {
    let ids = filtered(&s, &q);
    let p = num(&q, "page", 1).max(1) as usize;
    let per = num(&q, "per_page", s.cfg.default_page).max(1) as usize;
    let lo = ((p - 1) * per).min(ids.len());
    let hi = (lo + per).min(ids.len());
    let mut r = axum::Json(Value::Array(records(&s, &ids[lo..hi]))).into_response();
    // Link values carry raw commas in their URLs (echoed parameters) and a quoted title
    // with a comma and a semicolon: only an RFC 8288 parser reads them right.
    let mut links = vec![format!(
        "</link/tickets?{}>; rel=\"first\"; title=\"page 1, the first; of many\"",
        query_with(&q, "page", "1".into())
    )];
    if hi < ids.len() {
        links.push(format!(
            "</link/tickets?{}>;title=\"page {}, next\" ; rel=\"next\"",
            query_with(&q, "page", (p + 1).to_string()),
            p + 1
        ));
    }
    if s.broken_link.load(Ordering::SeqCst) {
        for l in &mut links {
            *l = l.replace("rel=", "rev=");
        }
    }
    r.headers_mut()
        .insert("link", HeaderValue::from_str(&links.join(", ")).unwrap());
    r
}

async fn next_url(State(s): State<S>, Query(q): Query<Q>) -> Response {
    let ids = filtered(&s, &q);
    let after = num(&q, "after", 0);
    let lim = num(&q, "limit", s.cfg.default_page) as usize;
    let page: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|i| *i > after)
        .take(lim)
        .collect();
    let origin = match s.next_host.lock().unwrap().as_deref() {
        Some(h) => format!("http://{h}:{}", s.port.load(Ordering::SeqCst)),
        None => String::new(),
    };
    let next = match page.last() {
        Some(last) if ids.last() != Some(last) => Value::String(format!(
            "{origin}/next/tickets?{}",
            query_with(&q, "after", last.to_string())
        )),
        _ => Value::Null,
    };
    axum::Json(json!({"data": records(&s, &page), "next": next})).into_response()
}

async fn single(State(s): State<S>, Query(q): Query<Q>) -> Response {
    axum::Json(json!({"data": records(&s, &filtered(&s, &q))})).into_response()
}

async fn comments(State(s): State<S>, Path(id): Path<u64>) -> Response {
    if id == 0 || id > s.cfg.tickets || id.is_multiple_of(7) {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "no such ticket"})),
        )
            .into_response();
    }
    let cs: Vec<Value> = (0..id % 3)
        .map(|k| json!({"id": format!("{id}-{k}"), "body": format!("comment {k} on {id}"), "author": k}))
        .collect();
    axum::Json(json!({"comments": cs})).into_response()
}

async fn token(State(s): State<S>, headers: HeaderMap, body: String) -> Response {
    s.token_requests.fetch_add(1, Ordering::SeqCst);
    let MockAuth::OAuth {
        client_id,
        client_secret,
        token_ttl,
        ..
    } = &s.cfg.auth
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let want = format!("Basic {}", b64(&format!("{client_id}:{client_secret}")));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let mut o = s.oauth.lock().unwrap();
    let mut resp = json!({"token_type": "bearer", "expires_in": token_ttl.as_secs()});
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some("refresh_token") => {
            if o.revoked || form.get("refresh_token") != Some(&o.refresh) {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": "invalid_grant"})),
                )
                    .into_response();
            }
            o.issued += 1;
            o.refresh = format!("rt-{}", o.issued);
            resp["refresh_token"] = json!(o.refresh);
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "unsupported_grant_type"})),
            )
                .into_response()
        }
    }
    o.issued += 1;
    let at = format!("at-{}", o.issued);
    o.access.insert(at.clone(), Instant::now() + *token_ttl);
    resp["access_token"] = json!(at);
    axum::Json(resp).into_response()
}

/// Standard base64, as in an HTTP Basic `Authorization` header.
pub fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn authorized(s: &S, headers: &HeaderMap, query: &str) -> bool {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    match &s.cfg.auth {
        MockAuth::None => true,
        MockAuth::ApiKeyHeader { header, key } => h(header) == Some(key.as_str()),
        MockAuth::ApiKeyQuery { param, key } => url::form_urlencoded::parse(query.as_bytes())
            .any(|(k, v)| k == param.as_str() && v == key.as_str()),
        MockAuth::Basic { user, password } => {
            h("authorization")
                == Some(format!("Basic {}", b64(&format!("{user}:{password}"))).as_str())
        }
        MockAuth::Bearer(t) => h("authorization") == Some(format!("Bearer {t}").as_str()),
        MockAuth::OAuth { .. } => {
            let Some(tok) = h("authorization").and_then(|v| v.strip_prefix("Bearer ")) else {
                return false;
            };
            let o = s.oauth.lock().unwrap();
            o.access.get(tok).is_some_and(|exp| *exp > Instant::now())
        }
    }
}

/// Logging, auth and faults around every route.
async fn gate(State(s): State<S>, req: Request<Body>, next: axum::middleware::Next) -> Response {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let is_token = path == "/oauth/token";
    let resp = if is_token {
        next.run(req).await
    } else if !authorized(&s, req.headers(), &query) {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "unauthorized"})),
        )
            .into_response()
    } else {
        let n = s.data_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let due: Vec<u64> = {
            let mut sch = s.scheduled.lock().unwrap();
            let (due, later): (Vec<_>, Vec<_>) = sch.drain(..).partition(|(a, _)| *a < n);
            *sch = later;
            due.into_iter().flat_map(|(_, ids)| ids).collect()
        };
        if !due.is_empty() {
            let now = Utc::now();
            let next_second = DateTime::from_timestamp(now.timestamp() + 1, 0).unwrap_or(now);
            let mut t = s.touched.lock().unwrap();
            for id in due {
                t.insert(id, next_second);
            }
        }
        let mut fault = s.faults.lock().unwrap().pop_front();
        let failing = s.failing_query.lock().unwrap().clone();
        if let Some((_, delay, status)) = failing.filter(|(t, _, _)| {
            query.contains(t.as_str()) || query.replace("%3A", ":").contains(t.as_str())
        }) {
            tokio::time::sleep(delay).await;
            fault = Some(Fault::status(status));
        }
        if fault.is_none() {
            if let Some((every, fs)) = &*s.periodic.lock().unwrap() {
                if *every > 0 && n.is_multiple_of(*every) && !fs.is_empty() {
                    fault = Some(fs[((n / every - 1) as usize) % fs.len()].clone());
                }
            }
        }
        if !s.cfg.latency.is_zero() {
            tokio::time::sleep(s.cfg.latency).await;
        }
        match fault {
            Some(Fault::Status {
                status,
                retry_after,
            }) => {
                let mut r = (
                    StatusCode::from_u16(status).unwrap(),
                    axum::Json(json!({"error": "injected"})),
                )
                    .into_response();
                if let Some(ra) = retry_after {
                    r.headers_mut()
                        .insert("retry-after", HeaderValue::from_str(&ra).unwrap());
                }
                r
            }
            Some(Fault::Slow(d)) => {
                tokio::time::sleep(d).await;
                next.run(req).await
            }
            Some(f @ (Fault::Truncated | Fault::Malformed)) => {
                let r = next.run(req).await;
                let (parts, body) = r.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_default();
                let new: Vec<u8> = match f {
                    Fault::Truncated => bytes[..bytes.len() / 2].to_vec(),
                    _ => b"<html><body>502 Bad Gateway (proxy)</body></html>".to_vec(),
                };
                let mut parts = parts;
                parts.headers.remove("content-length");
                Response::from_parts(parts, Body::from(new))
            }
            None => next.run(req).await,
        }
    };
    s.log.lock().unwrap().push(Seen {
        at,
        method,
        path,
        query,
        status: resp.status().as_u16(),
    });
    resp
}

/// Running flows on the embedded engine against the mock server.
pub mod harness {
    use ferry::adapters::memory::MemorySecrets;
    use ferry::flow::Flow;
    use ferry::local::asl::NoopObserver;
    use ferry::local::{embedded_deps, Engine, RunOutcome};
    use ferry::ports::{Secret, SecretStore};
    use ferry::steps::start_run::RunRequest;
    use serde_json::Value;
    use std::path::Path;
    use std::sync::Arc;

    /// An embedded engine over a temporary home, with in-memory secrets.
    pub struct Local {
        pub home: tempfile::TempDir,
        pub base: tempfile::TempDir,
        pub engine: Engine,
        pub secrets: Arc<MemorySecrets>,
    }

    impl Local {
        pub fn new() -> Local {
            let home = tempfile::tempdir().unwrap();
            let base = tempfile::tempdir().unwrap();
            let mut deps = embedded_deps(home.path(), base.path(), None).unwrap();
            let secrets = Arc::new(MemorySecrets::default());
            deps.secrets = secrets.clone();
            Local {
                engine: Engine::new(deps).unwrap(),
                home,
                base,
                secrets,
            }
        }

        /// The slices a run's chunks belong to (chunk numbers are `slice × STRIDE + n`).
        pub async fn slices_of(&self, run_id: &str) -> std::collections::BTreeSet<u32> {
            self.engine
                .deps
                .runs
                .chunk_results(run_id)
                .await
                .unwrap()
                .iter()
                .map(|r| r.chunk / ferry::steps::slices::STRIDE)
                .collect()
        }

        pub async fn put_secret(&self, profile: &str, v: Value) {
            self.secrets
                .put_secret(profile, &Secret::new(v))
                .await
                .unwrap();
        }

        pub fn secret(&self, profile: &str) -> Value {
            self.secrets.secrets.lock().unwrap()[profile]
                .expose()
                .clone()
        }

        /// An engine over the same deps whose `Throttled` retry waits 1 s instead of 30 s, for
        /// tests where the state machine retries a throttled chunk.
        pub fn fast_retry_engine(&self) -> Engine {
            let asl = ferry::local::FLOW_RUN_ASL
                .replace("\"IntervalSeconds\": 30", "\"IntervalSeconds\": 1");
            assert_ne!(
                asl,
                ferry::local::FLOW_RUN_ASL,
                "the Throttled retry interval moved; update this helper"
            );
            Engine::with_definition(self.engine.deps.clone(), &asl).unwrap()
        }

        /// Register (or update) a flow and run it to the end.
        pub async fn run(&self, flow_yaml: &str) -> RunOutcome {
            let flow = Flow::parse(flow_yaml, "test.yaml")
                .unwrap_or_else(|e| panic!("flow does not parse: {e}"));
            self.run_flow_on(&self.engine, &flow).await
        }

        /// Register (or update) `flow` and run it to the end on `engine` (e.g. a
        /// [`fast_retry_engine`](Self::fast_retry_engine)).
        pub async fn run_flow_on(&self, engine: &Engine, flow: &Flow) -> RunOutcome {
            self.engine
                .deps
                .flows
                .put_flow(flow, chrono::Utc::now())
                .await
                .unwrap();
            engine
                .run(
                    RunRequest {
                        flow: flow.name.clone(),
                        trigger: None,
                        mode: None,
                        window: None,
                    },
                    &NoopObserver,
                )
                .await
        }

        pub async fn watermark(&self, flow: &str) -> Option<chrono::DateTime<chrono::Utc>> {
            self.engine
                .deps
                .runs
                .get_state(flow)
                .await
                .unwrap()
                .watermark
        }

        /// Every record written as JSON lines under the destination directory `dir`.
        pub fn output(&self, dir: &str) -> Vec<Value> {
            let mut out = vec![];
            collect(&self.base.path().join(dir), &mut out);
            out
        }
    }

    impl Default for Local {
        fn default() -> Self {
            Self::new()
        }
    }

    fn collect(p: &Path, out: &mut Vec<Value>) {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for e in entries {
            if e.is_dir() {
                if e.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('_'))
                {
                    continue; // manifests, rejected records
                }
                collect(&e, out);
            } else if e.extension().is_some_and(|x| x == "jsonl") {
                for line in std::fs::read_to_string(&e)
                    .unwrap()
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                {
                    out.push(serde_json::from_str(line).unwrap());
                }
            }
        }
    }

    /// A `rest` flow writing JSON lines to `out/`, with `source_props` (YAML, indented for
    /// `properties:`) and optional extra source lines (YAML at the source's indentation).
    pub fn rest_flow(
        name: &str,
        entity: &str,
        profile: Option<&str>,
        properties: &Value,
        source_extra: &str,
    ) -> String {
        let props = serde_json::to_string(properties).unwrap();
        let profile = profile
            .map(|p| format!("  profile: {p}\n"))
            .unwrap_or_default();
        format!(
            "name: {name}\nsource:\n  connector: rest\n{profile}  entity: {entity}\n  properties: {props}\n{source_extra}destination:\n  local: out\n  format: jsonl\n  compression: none\ntasks:\n  - map_all: {{}}\ntrigger:\n  on_demand: {{}}\n"
        )
    }
}
