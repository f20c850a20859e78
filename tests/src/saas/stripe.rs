//! A mock Stripe API in Stripe's dialect, for the built-in `stripe` definition.
//!
//! - `GET /v1/{charges,customers,invoices,events}` → `{"object": "list", "url", "has_more",
//!   "data": [...]}`, newest first (by `created`, then by creation order), per
//!   <https://docs.stripe.com/api/pagination>: `limit` 1-100 (default 10; more is a 400, not a
//!   silent cap), `starting_after` / `ending_before` object ids (both at once: 400; an id that
//!   is not in the list: 400 `resource_missing`).
//! - `created` filters as `created[gt]`, `created[gte]`, `created[lt]`, `created[lte]` or an
//!   exact `created=<ts>`, Unix seconds (<https://docs.stripe.com/api/charges/list>); several
//!   objects share each second, so a window bound falls inside a group of equal times.
//! - Unknown parameters are refused: `400 {"error": {"type": "invalid_request_error", "message":
//!   "Received unknown parameter: …"}}` (<https://docs.stripe.com/api/errors>).
//! - Auth: `Authorization: Bearer <secret key>` or HTTP basic with the key as the user name
//!   (<https://docs.stripe.com/api/authentication>); otherwise `401` with an
//!   `invalid_request_error` naming the key masked.
//! - Throttling: `429` with `{"error": {"type": "invalid_request_error", "code": "rate_limit"}}`
//!   and no `Retry-After` (<https://docs.stripe.com/rate-limits>: back off exponentially).
//! - Money is integer minor units (`amount: 2000` is 20.00 usd; jpy has no minor unit).
//!
//! Objects can be created while a read pages ([`StripeMock::create_after`]): they go to the top
//! of the list with a `created` of their own, which `starting_after` paging never shows again in
//! the same read (they are newer than the page being read).

use super::{header, status_response, with_body_fault, Common};
use crate::{Fault, Seen};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub const OBJECTS: [&str; 4] = ["charges", "customers", "invoices", "events"];

/// The first object's `created`.
pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// Objects of each kind.
    pub records: u64,
    /// Objects sharing each `created` second.
    pub same_time: u64,
    pub key: String,
}

impl Default for StripeConfig {
    fn default() -> Self {
        StripeConfig {
            records: 250,
            same_time: 3,
            key: "sk_test_51Ferry".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Obj {
    /// Creation order (ties in `created` are listed newest first by it).
    seq: u64,
    created: i64,
    body: Value,
}

fn prefix(object: &str) -> &'static str {
    match object {
        "charges" => "ch_",
        "customers" => "cus_",
        "invoices" => "in_",
        _ => "evt_",
    }
}

/// Object `i` (1-based) of a kind: an id with letters of both cases and digits, as Stripe's.
fn make(object: &str, seq: u64, created: i64) -> Obj {
    let id = format!(
        "{}{}Xy{seq:06}",
        prefix(object),
        ["A", "b", "Q"][(seq % 3) as usize]
    );
    let body = match object {
        "charges" => json!({
            "id": id, "object": "charge",
            "amount": 1000 + seq * 7, "amount_captured": 1000 + seq * 7,
            "amount_refunded": if seq.is_multiple_of(9) { 500 } else { 0 },
            "currency": if seq.is_multiple_of(5) { "jpy" } else { "usd" },
            "customer": format!("cus_A{:06}", seq % 40),
            "description": if seq.is_multiple_of(4) { Value::Null } else { json!(format!("Order #{seq}")) },
            "status": "succeeded", "paid": true, "captured": true,
            "refunded": false, "disputed": false,
            "failure_code": null, "failure_message": null,
            "payment_intent": format!("pi_{seq:08}"), "payment_method": format!("pm_{seq:08}"),
            "receipt_email": format!("buyer{seq}@example.com"),
            "livemode": false, "created": created,
            "metadata": {"order_id": seq.to_string()},
            "billing_details": {"address": {"city": null}},
            "outcome": {"network_status": "approved_by_network", "risk_level": "normal"},
        }),
        "customers" => json!({
            "id": id, "object": "customer",
            "email": format!("c{seq}@example.com"), "name": format!("Customer {seq}"),
            "phone": null, "description": null, "currency": "usd",
            "balance": -(seq as i64) * 100, "delinquent": seq.is_multiple_of(11),
            "livemode": false, "created": created,
            "address": {"city": "Berlin", "country": "DE", "line1": null},
            "metadata": {},
            "invoice_settings": {"default_payment_method": null},
        }),
        "invoices" => json!({
            "id": id, "object": "invoice", "number": format!("F{seq:05}-0001"),
            "customer": format!("cus_A{:06}", seq % 40), "status": "paid", "currency": "eur",
            "amount_due": 4900, "amount_paid": 4900, "amount_remaining": 0,
            "subtotal": 4118, "total": 4900, "collection_method": "charge_automatically",
            "billing_reason": "subscription_cycle", "due_date": null,
            "period_start": created - 30 * 86_400, "period_end": created,
            "livemode": false, "created": created, "metadata": {},
            "lines": {"object": "list", "data": [], "has_more": false},
        }),
        _ => json!({
            "id": id, "object": "event",
            "type": (["charge.succeeded", "invoice.paid", "customer.updated"][(seq % 3) as usize]),
            "api_version": "2025-01-27.acacia", "livemode": false, "pending_webhooks": 0,
            "created": created,
            "data": {"object": {"id": format!("ch_{seq}"), "object": "charge", "amount": 100}},
            "request": {"id": format!("req_{seq}"), "idempotency_key": null},
        }),
    };
    Obj { seq, created, body }
}

struct Inner {
    cfg: StripeConfig,
    data: Mutex<HashMap<String, Vec<Obj>>>,
    next_seq: Mutex<u64>,
    /// (data requests answered, object, how many): create that many objects once the mock has
    /// answered that many data requests.
    scheduled: Mutex<Vec<(u64, String, u64)>>,
    common: Common,
}

type S = Arc<Inner>;

pub struct StripeMock {
    pub addr: SocketAddr,
    inner: S,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StripeMock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StripeMock {
    pub async fn start(cfg: StripeConfig) -> StripeMock {
        let base = base_time().timestamp();
        let data = OBJECTS
            .iter()
            .map(|o| {
                (
                    o.to_string(),
                    (1..=cfg.records)
                        .map(|i| make(o, i, base + (i / cfg.same_time.max(1)) as i64))
                        .collect(),
                )
            })
            .collect();
        let inner = Arc::new(Inner {
            next_seq: Mutex::new(cfg.records + 1),
            cfg,
            data: Mutex::new(data),
            scheduled: Mutex::new(vec![]),
            common: Default::default(),
        });
        let app = Router::new()
            .route("/v1/{object}", get(list))
            .layer(axum::middleware::from_fn_with_state(inner.clone(), gate))
            .with_state(inner.clone());
        let (addr, task) = super::serve(app, "stripe").await;
        StripeMock { addr, inner, task }
    }

    /// The API's base URL (what the definition's `base_url` points at).
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
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

    /// `created` of object `i` (1-based).
    pub fn created(&self, i: u64) -> DateTime<Utc> {
        DateTime::from_timestamp(
            base_time().timestamp() + (i / self.inner.cfg.same_time.max(1)) as i64,
            0,
        )
        .unwrap()
    }

    /// Create `n` objects of `object` now.
    pub fn create(&self, object: &str, n: u64) {
        create(&self.inner, object, n);
    }

    /// Create `n` objects of `object` once `after` data requests have been answered.
    pub fn create_after(&self, after: u64, object: &str, n: u64) {
        self.inner
            .scheduled
            .lock()
            .unwrap()
            .push((after, object.into(), n));
    }

    /// Ids of `object` created in `(start, end]`.
    pub fn ids_in(
        &self,
        object: &str,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> BTreeSet<String> {
        self.inner.data.lock().unwrap()[object]
            .iter()
            .filter(|o| {
                start.is_none_or(|s| o.created > s.timestamp())
                    && end.is_none_or(|e| o.created <= e.timestamp())
            })
            .map(|o| o.body["id"].as_str().unwrap().to_string())
            .collect()
    }
}

fn create(s: &Inner, object: &str, n: u64) {
    let mut seq = s.next_seq.lock().unwrap();
    let mut data = s.data.lock().unwrap();
    for _ in 0..n {
        let o = make(object, *seq, Utc::now().timestamp());
        data.get_mut(object).unwrap().push(o);
        *seq += 1;
    }
}

fn error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> Response {
    let mut e = json!({"type": kind, "message": message});
    if let Some(c) = code {
        e["code"] = json!(c);
    }
    (status, axum::Json(json!({ "error": e }))).into_response()
}

fn invalid(message: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        None,
        message,
    )
}

/// A list endpoint, as <https://docs.stripe.com/api/pagination> and the objects' list pages
/// describe it.
async fn list(State(s): State<S>, Path(object): Path<String>, RawQuery(q): RawQuery) -> Response {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    if !OBJECTS.contains(&object.as_str()) {
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            None,
            &format!("Unrecognized request URL (GET: /v1/{object})."),
        );
    }
    let mut limit = 10usize;
    let (mut after, mut before) = (None, None);
    let mut bounds: Vec<(String, i64)> = vec![];
    for (k, v) in &params {
        match k.as_str() {
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => limit = n,
                // https://docs.stripe.com/api/pagination: "ranging between 1 and 100".
                _ => return invalid("This value must be less than or equal to 100 (it currently is greater than 100)."),
            },
            "starting_after" => after = Some(v.clone()),
            "ending_before" => before = Some(v.clone()),
            "created" | "created[gt]" | "created[gte]" | "created[lt]" | "created[lte]" => {
                let Ok(t) = v.parse::<i64>() else {
                    return invalid(&format!("Invalid integer: {v}"));
                };
                bounds.push((k.clone(), t));
            }
            // https://docs.stripe.com/api/events/list: `type` filters events.
            "type" if object == "events" => {}
            // https://docs.stripe.com/api/errors: unknown parameters are refused, not ignored.
            other => return invalid(&format!("Received unknown parameter: {other}")),
        }
    }
    if after.is_some() && before.is_some() {
        return invalid(
            "You may only specify one of these parameters: ending_before, starting_after.",
        );
    }
    let data = s.data.lock().unwrap();
    let mut all: Vec<&Obj> = data[&object].iter().collect();
    // Newest first; objects of the same second in reverse creation order.
    all.sort_by(|a, b| (b.created, b.seq).cmp(&(a.created, a.seq)));
    let in_bounds = |o: &Obj| {
        bounds.iter().all(|(k, t)| match k.as_str() {
            "created" => o.created == *t,
            "created[gt]" => o.created > *t,
            "created[gte]" => o.created >= *t,
            "created[lt]" => o.created < *t,
            _ => o.created <= *t,
        })
    };
    let key_of = |id: &str| {
        all.iter()
            .find(|o| o.body["id"] == json!(id))
            .map(|o| (o.created, o.seq))
    };
    let singular = object.trim_end_matches('s');
    let cursor = match after.as_deref().or(before.as_deref()) {
        None => None,
        Some(id) => match key_of(id) {
            Some(k) => Some(k),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("resource_missing"),
                    &format!("No such {singular}: '{id}'"),
                )
            }
        },
    };
    let matching: Vec<&Obj> = all
        .into_iter()
        .filter(|o| in_bounds(o))
        .filter(|o| match (cursor, after.is_some()) {
            (None, _) => true,
            (Some(k), true) => (o.created, o.seq) < k,
            (Some(k), false) => (o.created, o.seq) > k,
        })
        .collect();
    let page: Vec<&Obj> = if before.is_some() {
        // ending_before: the `limit` objects just above the cursor, still newest first.
        let n = matching.len();
        matching[n.saturating_sub(limit)..].to_vec()
    } else {
        matching.iter().take(limit).copied().collect()
    };
    let has_more = matching.len() > page.len();
    axum::Json(json!({
        "object": "list",
        "url": format!("/v1/{object}"),
        "has_more": has_more,
        "data": page.iter().map(|o| o.body.clone()).collect::<Vec<_>>(),
    }))
    .into_response()
}

fn authorized(s: &S, headers: &HeaderMap) -> bool {
    let Some(v) = header(headers, "authorization") else {
        return false;
    };
    if let Some(t) = v.strip_prefix("Bearer ") {
        return t == s.cfg.key;
    }
    // Basic auth with the key as the user name and no password.
    v.strip_prefix("Basic ")
        .and_then(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .is_some_and(|up| up.split_once(':').map(|(u, _)| u) == Some(s.cfg.key.as_str()))
}

async fn gate(State(s): State<S>, req: Request<Body>, next: axum::middleware::Next) -> Response {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let resp = if !authorized(&s, req.headers()) {
        let shown = header(req.headers(), "authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|k| {
                format!(
                    "{}****{}",
                    &k[..k.len().min(8)],
                    &k[k.len().saturating_sub(4)..]
                )
            })
            .unwrap_or_default();
        error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            &format!("Invalid API Key provided: {shown}"),
        )
    } else {
        let answered = s
            .common
            .data_requests
            .load(std::sync::atomic::Ordering::SeqCst);
        let due: Vec<(u64, String, u64)> = {
            let mut sch = s.scheduled.lock().unwrap();
            let (due, later) = sch.drain(..).partition(|(n, _, _)| *n <= answered);
            *sch = later;
            due
        };
        for (_, object, n) in due {
            create(&s, &object, n);
        }
        match s.common.next_fault() {
            // https://docs.stripe.com/rate-limits: 429, no Retry-After.
            Some(Fault::Status {
                status: 429,
                retry_after,
            }) => {
                let mut r = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "invalid_request_error",
                    Some("rate_limit"),
                    "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
                );
                if let Some(ra) = retry_after {
                    r.headers_mut().insert("retry-after", ra.parse().unwrap());
                }
                r
            }
            Some(Fault::Status {
                status,
                retry_after,
            }) => status_response(
                status,
                retry_after.as_deref(),
                json!({"error": {"type": "api_error", "message": "An unknown error occurred"}}),
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
