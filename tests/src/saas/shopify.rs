//! A mock Shopify Admin REST API in Shopify's dialect, for the built-in `shopify` definition.
//!
//! - `GET /admin/api/{version}/{orders,customers,products}.json` → `{"orders": [...]}` (the
//!   resource's plural as the key), ordered by id
//!   (<https://shopify.dev/docs/api/admin-rest/latest/resources/order>, customer, product).
//! - Filters: `updated_at_min` / `updated_at_max`, both inclusive ("at or after", "at or
//!   before"), ISO 8601 with any offset; orders take `status` (`open` by default, `closed`,
//!   `cancelled`, `any`): without `status=any` closed and cancelled orders are not listed.
//!   `fields` picks fields (comma-separated). Parameters Shopify does not know are ignored.
//! - Paging (<https://shopify.dev/docs/api/usage/pagination-rest>): `limit` default 50, at most
//!   250 (more is capped, not refused); the next and previous pages are in the `Link` header as
//!   `<…/orders.json?limit=…&page_info=…>; rel="next"`, the `page_info` an opaque token with
//!   `+`, `/` and `=` percent-encoded, `fields` echoed with raw commas. A request with
//!   `page_info` and any parameter other than `limit` and `fields` answers 400. The token keeps
//!   the first request's filters: a record updated while a read pages leaves the result set.
//! - Auth (<https://shopify.dev/docs/api/usage/authentication>): `X-Shopify-Access-Token`;
//!   otherwise `401 {"errors": "[API] Invalid API key or access token (unrecognized login or
//!   wrong password)"}`.
//! - Rate limit (<https://shopify.dev/docs/api/usage/rate-limits>): a leaky bucket per token
//!   (size and leak rate configurable; Shopify's standard is 40 and 2/s), its fill on every
//!   response as `X-Shopify-Shop-Api-Call-Limit: used/size`; a request into a full bucket
//!   answers `429 {"errors": "Exceeded 2 calls per second for api client. Reduce request
//!   rates to resume uninterrupted service."}` with `Retry-After: 2.0`.
//! - Money is text with the currency's decimals (`"199.00"`, `"1000"` for JPY).

use super::{header, status_response, with_body_fault, Common};
use crate::{Fault, Seen};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, TimeZone, Utc};
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub const RESOURCES: [&str; 3] = ["orders", "customers", "products"];
pub const VERSION: &str = "2025-01";

pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 1, 8, 0, 0).unwrap()
}

#[derive(Debug, Clone)]
pub struct ShopifyConfig {
    pub records: u64,
    /// Records sharing each `updated_at` second.
    pub same_time: u64,
    pub token: String,
    pub bucket_size: f64,
    pub leak_per_second: f64,
}

impl Default for ShopifyConfig {
    fn default() -> Self {
        ShopifyConfig {
            records: 230,
            same_time: 2,
            token: "shpat_ferry_test".into(),
            bucket_size: 40.0,
            leak_per_second: 2.0,
        }
    }
}

#[derive(Debug, Clone)]
struct Rec {
    id: u64,
    updated: DateTime<Utc>,
    body: Value,
}

/// Shopify writes times with the shop's offset, e.g. `2026-04-01T03:00:00-05:00`.
fn shop_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono::FixedOffset::west_opt(5 * 3600).unwrap())
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

fn make(resource: &str, i: u64, updated: DateTime<Utc>) -> Rec {
    let id = 450_789_469_000 + i;
    let created = base_time() - ChronoDuration::days(3) + ChronoDuration::minutes(i as i64);
    let body = match resource {
        "orders" => {
            let jpy = i.is_multiple_of(10);
            let price = |cents: u64| {
                if jpy {
                    format!("{}", cents)
                } else {
                    format!("{}.{:02}", cents / 100, cents % 100)
                }
            };
            json!({
                "id": id, "admin_graphql_api_id": format!("gid://shopify/Order/{id}"),
                "name": format!("#{}", 1000 + i), "order_number": 1000 + i,
                "email": format!("buyer{i}@example.com"),
                "currency": if jpy { "JPY" } else { "USD" },
                // Every 7th order is closed, every 13th cancelled: only `status=any` lists them.
                "closed_at": if i.is_multiple_of(7) { json!(shop_time(updated)) } else { Value::Null },
                "cancelled_at": if i.is_multiple_of(13) { json!(shop_time(updated)) } else { Value::Null },
                "financial_status": "paid", "fulfillment_status": null,
                "total_price": price(19_900 + i * 10), "subtotal_price": price(18_000 + i * 10),
                "total_tax": price(1_900), "total_discounts": price(0),
                "test": false, "tags": "wholesale, vip",
                "created_at": shop_time(created), "updated_at": shop_time(updated),
                "processed_at": shop_time(created),
                "line_items": [
                    {"id": id * 10 + 1, "product_id": 632_910_392, "variant_id": 808_950_810,
                     "title": "IPod Nano - 8gb", "sku": "IPOD2008PINK", "quantity": 1 + i % 3,
                     "price": price(19_900), "grams": 200, "tax_lines": []}
                ],
                "customer": {"id": 207_119_551 + i % 20, "email": format!("buyer{i}@example.com")},
                "shipping_address": {"city": "Ottawa", "country_code": "CA"},
            })
        }
        "customers" => json!({
            "id": id, "email": format!("c{i}@example.com"), "first_name": format!("First{i}"),
            "last_name": if i.is_multiple_of(6) { Value::Null } else { json!(format!("Last{i}")) },
            "phone": null, "state": "enabled", "verified_email": !i.is_multiple_of(4),
            "tags": "", "currency": "USD",
            "created_at": shop_time(created), "updated_at": shop_time(updated),
            "default_address": {"city": "Ottawa", "default": true},
        }),
        _ => json!({
            "id": id, "title": format!("Product {i}"), "handle": format!("product-{i}"),
            "vendor": "Acme", "product_type": "Gadget", "status": "active", "tags": "new",
            "body_html": "<p>Good &amp; cheap</p>",
            "created_at": shop_time(created), "updated_at": shop_time(updated),
            "published_at": if i.is_multiple_of(8) { Value::Null } else { json!(shop_time(created)) },
            "variants": [
                {"id": id * 10 + 1, "product_id": id, "title": "Default Title", "sku": format!("SKU-{i}"),
                 "price": format!("{}.99", i), "inventory_quantity": (i % 17) as i64 - 3}
            ],
            "options": [{"name": "Title", "values": ["Default Title"]}],
        }),
    };
    Rec { id, updated, body }
}

struct Inner {
    cfg: ShopifyConfig,
    data: Mutex<HashMap<String, Vec<Rec>>>,
    scheduled: Mutex<Vec<(u64, String, Vec<u64>)>>,
    /// Bucket fill and when it was last leaked.
    bucket: Mutex<(f64, Instant)>,
    common: Common,
}

type S = Arc<Inner>;

pub struct ShopifyMock {
    pub addr: SocketAddr,
    inner: S,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ShopifyMock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ShopifyMock {
    pub async fn start(cfg: ShopifyConfig) -> ShopifyMock {
        let data = RESOURCES
            .iter()
            .map(|r| {
                (
                    r.to_string(),
                    (1..=cfg.records)
                        .map(|i| make(r, i, updated_of(&cfg, i)))
                        .collect(),
                )
            })
            .collect();
        let inner = Arc::new(Inner {
            cfg,
            data: Mutex::new(data),
            scheduled: Mutex::new(vec![]),
            bucket: Mutex::new((0.0, Instant::now())),
            common: Default::default(),
        });
        let app = Router::new()
            .route("/admin/api/{version}/{resource}", get(list))
            .layer(axum::middleware::from_fn_with_state(inner.clone(), gate))
            .with_state(inner.clone());
        let (addr, task) = super::serve(app, "shopify").await;
        ShopifyMock { addr, inner, task }
    }

    /// The API's base URL, as the definition builds it from `shop` and `api_version`.
    pub fn url(&self) -> String {
        format!("http://{}/admin/api/{VERSION}", self.addr)
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

    pub fn updated(&self, i: u64) -> DateTime<Utc> {
        updated_of(&self.inner.cfg, i)
    }

    /// Update records `is` (1-based) of `resource` once `after` data requests were answered.
    pub fn touch_after(&self, after: u64, resource: &str, is: &[u64]) {
        self.inner
            .scheduled
            .lock()
            .unwrap()
            .push((after, resource.into(), is.to_vec()));
    }

    /// (id, updated_at) of every record of `resource`.
    pub fn versions(&self, resource: &str) -> BTreeSet<(u64, DateTime<Utc>)> {
        self.inner.data.lock().unwrap()[resource]
            .iter()
            .map(|r| (r.id, r.updated))
            .collect()
    }

    /// Ids of `resource` updated in `(start, end]`.
    pub fn ids_in(
        &self,
        resource: &str,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> BTreeSet<u64> {
        self.inner.data.lock().unwrap()[resource]
            .iter()
            .filter(|r| start.is_none_or(|s| r.updated > s) && end.is_none_or(|e| r.updated <= e))
            .map(|r| r.id)
            .collect()
    }
}

fn updated_of(cfg: &ShopifyConfig, i: u64) -> DateTime<Utc> {
    base_time() + ChronoDuration::seconds((i / cfg.same_time.max(1)) as i64)
}

fn touch(s: &Inner, resource: &str, is: &[u64]) {
    // Shopify's times are whole seconds.
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let mut data = s.data.lock().unwrap();
    for r in data.get_mut(resource).unwrap() {
        let i = r.id - 450_789_469_000;
        if is.contains(&i) {
            *r = make(resource, i, now);
        }
    }
}

/// What a `page_info` token carries: the first request's filters and where the page starts.
fn page_token(filters: &Map<String, Value>, after_id: u64) -> String {
    use base64::Engine;
    // Padded so that every token ends in `=` (and percent-encodes in a URL): trailing spaces
    // are still the same JSON.
    let mut text = json!({"f": filters, "after": after_id}).to_string();
    loop {
        let t = base64::engine::general_purpose::STANDARD.encode(&text);
        if t.ends_with('=') {
            return t;
        }
        text.push(' ');
    }
}

fn read_token(t: &str) -> Option<(Map<String, Value>, u64)> {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.decode(t).ok()?;
    let v: Value = serde_json::from_slice(&b).ok()?;
    Some((v["f"].as_object()?.clone(), v["after"].as_u64()?))
}

fn bad_request(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"errors": msg}))).into_response()
}

fn parse_time(v: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

async fn list(
    State(s): State<S>,
    Path((version, resource)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let Some(resource) = resource.strip_suffix(".json").map(String::from) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"errors": "Not Found"})),
        )
            .into_response();
    };
    if !RESOURCES.contains(&resource.as_str()) || version != VERSION {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"errors": "Not Found"})),
        )
            .into_response();
    }
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    // https://shopify.dev/docs/api/usage/pagination-rest: default 50, maximum 250.
    let limit = get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 250);
    let fields: Option<Vec<String>> =
        get("fields").map(|f| f.split(',').map(|x| x.trim().to_string()).collect());
    let (filters, after_id) = match get("page_info") {
        Some(t) => {
            if let Some((k, _)) = params
                .iter()
                .find(|(k, _)| !matches!(k.as_str(), "page_info" | "limit" | "fields"))
            {
                return bad_request(&format!(
                    "page_info - When page_info is present, only the limit and fields parameters are allowed (got {k})"
                ));
            }
            match read_token(&t) {
                Some(x) => x,
                None => return bad_request("page_info - Invalid value."),
            }
        }
        None => {
            let mut f = Map::new();
            for k in ["updated_at_min", "updated_at_max", "status"] {
                if let Some(v) = get(k) {
                    if k != "status" && parse_time(&v).is_none() {
                        return bad_request(&format!("{k} - Invalid date: {v}"));
                    }
                    f.insert(k.into(), json!(v));
                }
            }
            (f, 0)
        }
    };
    let min = filters
        .get("updated_at_min")
        .and_then(Value::as_str)
        .and_then(parse_time);
    let max = filters
        .get("updated_at_max")
        .and_then(Value::as_str)
        .and_then(parse_time);
    let status = filters
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("open")
        .to_string();
    let data = s.data.lock().unwrap();
    let matching: Vec<&Rec> = data[&resource]
        .iter()
        .filter(|r| r.id > after_id)
        .filter(|r| min.is_none_or(|m| r.updated >= m) && max.is_none_or(|m| r.updated <= m))
        .filter(|r| {
            if resource != "orders" {
                return true;
            }
            let closed = !r.body["closed_at"].is_null();
            let cancelled = !r.body["cancelled_at"].is_null();
            match status.as_str() {
                "any" => true,
                "closed" => closed,
                "cancelled" => cancelled,
                _ => !closed && !cancelled,
            }
        })
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .take(limit)
        .map(|r| match &fields {
            None => r.body.clone(),
            Some(fs) => Value::Object(
                r.body
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| fs.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        })
        .collect();
    let mut body = Map::new();
    body.insert(resource.clone(), Value::Array(page));
    let mut resp = axum::Json(Value::Object(body)).into_response();
    if matching.len() > limit {
        let last = matching[limit - 1].id;
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        next.append_pair("limit", &limit.to_string());
        next.append_pair("page_info", &page_token(&filters, last));
        let mut q = next.finish();
        if let Some(fs) = &fields {
            // Shopify echoes `fields` with its commas as they are.
            q.push_str(&format!("&fields={}", fs.join(",")));
        }
        let prev = page_token(&filters, 0);
        // Absolute URLs on the host the request was sent to.
        let host = header(&headers, "host").unwrap_or("localhost");
        let base = format!("http://{host}/admin/api/{version}/{resource}.json");
        let link = format!(
            "<{base}?limit={limit}&page_info={}>; rel=\"previous\", <{base}?{q}>; rel=\"next\"",
            url::form_urlencoded::byte_serialize(prev.as_bytes()).collect::<String>()
        );
        resp.headers_mut()
            .insert("link", HeaderValue::from_str(&link).unwrap());
    }
    resp
}

fn authorized(s: &S, req: &Request<Body>) -> bool {
    header(req.headers(), "x-shopify-access-token") == Some(s.cfg.token.as_str())
}

/// The bucket after leaking since the last request, and whether one more request fits.
fn take_from_bucket(s: &Inner) -> (f64, bool) {
    let mut b = s.bucket.lock().unwrap();
    let now = Instant::now();
    let leaked = now.duration_since(b.1).as_secs_f64() * s.cfg.leak_per_second;
    b.0 = (b.0 - leaked).max(0.0);
    b.1 = now;
    if b.0 + 1.0 > s.cfg.bucket_size + 1e-9 {
        return (b.0, false);
    }
    b.0 += 1.0;
    (b.0, true)
}

async fn gate(State(s): State<S>, req: Request<Body>, next: axum::middleware::Next) -> Response {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let resp = if !authorized(&s, &req) {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"})),
        )
            .into_response()
    } else {
        let (fill, fits) = take_from_bucket(&s);
        let mut r = if !fits {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({"errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."})),
            )
                .into_response();
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("2.0"));
            r
        } else {
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
            for (_, resource, is) in due {
                touch(&s, &resource, &is);
            }
            match s.common.next_fault() {
                Some(Fault::Status {
                    status,
                    retry_after,
                }) => status_response(
                    status,
                    retry_after.as_deref(),
                    json!({"errors": "Internal Server Error"}),
                ),
                Some(Fault::Slow(d)) => {
                    tokio::time::sleep(d).await;
                    next.run(req).await
                }
                Some(f) => with_body_fault(&f, next.run(req).await).await,
                None => next.run(req).await,
            }
        };
        r.headers_mut().insert(
            "x-shopify-shop-api-call-limit",
            HeaderValue::from_str(&format!(
                "{}/{}",
                fill.ceil() as u64,
                s.cfg.bucket_size as u64
            ))
            .unwrap(),
        );
        r
    };
    s.common
        .record(at, &method, &path, &query, resp.status().as_u16());
    resp
}
