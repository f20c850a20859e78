//! The `ga4` connector: Google Analytics 4 reports through the Data API's `runReport`. An entity
//! is a report the flow names in its properties: dimensions and metrics.
//!
//! ```yaml
//! source:
//!   connector: ga4
//!   profile: ga4           # {"type": "oauth2_refresh_token", "token_url": "https://oauth2.googleapis.com/token",
//!                          #  "client_id": "…", "client_secret": "…", "refresh_token": "…",
//!                          #  "hosts": ["analyticsdata.googleapis.com"]}
//!   entity: traffic
//!   properties:
//!     property_id: "123456789"
//!     reports:
//!       traffic:
//!         dimensions: [date, country, sessionDefaultChannelGroup]
//!         metrics: [sessions, activeUsers, purchaseRevenue]
//!     page_size: 100000    # rows per request (limit), at most 250000
//!   incremental: { field: date, offset: 2d }   # days are read once their data is final
//! ```
//!
//! Vendor documentation this follows:
//! - `POST /v1beta/properties/{id}:runReport` (`dateRanges` with `YYYY-MM-DD`, `today`,
//!   `NdaysAgo`; `dimensions`, `metrics`, `limit` ≤ 250,000, `offset`, `orderBys`,
//!   `keepEmptyRows`, `returnPropertyQuota`): <https://developers.google.com/analytics/devguides/reporting/data/v1/rest/v1beta/properties/runReport>
//! - The response: `dimensionHeaders`, `metricHeaders` (`type`: `TYPE_INTEGER`, `TYPE_FLOAT`,
//!   `TYPE_SECONDS`, `TYPE_MILLISECONDS`, `TYPE_MINUTES`, `TYPE_HOURS`, `TYPE_STANDARD`,
//!   `TYPE_CURRENCY`, `TYPE_FEET`, `TYPE_MILES`, `TYPE_METERS`, `TYPE_KILOMETERS`), `rows` of
//!   string values, `rowCount` (all rows, whatever `limit`/`offset`), `metadata`
//!   (`dataLossFromOtherRow`, `samplingMetadatas`):
//!   <https://developers.google.com/analytics/devguides/reporting/data/v1/rest/v1beta/RunReportResponse>,
//!   <https://developers.google.com/analytics/devguides/reporting/data/v1/rest/v1beta/MetricType>
//! - Pagination (`limit`, `offset`, `rowCount`): <https://developers.google.com/analytics/devguides/reporting/data/v1/basics#pagination>
//! - Dimension and metric names and metric types, `GET /v1beta/properties/{id}/metadata`:
//!   <https://developers.google.com/analytics/devguides/reporting/data/v1/rest/v1beta/properties/getMetadata>
//! - The `date` dimension is `YYYYMMDD` in the property's time zone:
//!   <https://developers.google.com/analytics/devguides/reporting/data/v1/api-schema>
//! - Quotas: 429 `RESOURCE_EXHAUSTED` when a property's tokens per hour/day or concurrent
//!   requests run out: <https://developers.google.com/analytics/devguides/reporting/data/v1/quotas>
//! - OAuth 2.0 refresh tokens at `https://oauth2.googleapis.com/token`:
//!   <https://developers.google.com/identity/protocols/oauth2/web-server#offline>; or a service
//!   account's key file (`"type": "service_account"`, the JWT bearer grant in `connector::auth`):
//!   <https://developers.google.com/identity/protocols/oauth2/service-account#httprest>
//!
//! How reading works:
//! - **Windows are days.** The `date` dimension is the incremental field (a date column); a day
//!   is in the window `(start, end]` when its midnight (UTC) is, so each day is read by exactly
//!   one run. GA4 keeps processing a day for a day or two: give the flow an `incremental.offset`
//!   of `2d` so that a day is read once it is final.
//! - **Each day is its own report request** (`dateRanges` one day, ordered by every dimension),
//!   paged with `limit`/`offset` against the first page's `rowCount`: if a later page of the same
//!   day reports another `rowCount` (GA4 still processing the day), the run fails naming the
//!   day (its window is read again whole by the next run) instead of skipping or repeating rows. A day that fits in one page is read
//!   atomically. Complete reads ask for `2015-08-14` (GA4's earliest date) to `today`.
//! - **Metric values arrive as text**; they are typed from the response's `metricHeaders`:
//!   integers, floats, and currency as a decimal (38, 6) — never a float.
//! - Names the property does not have are refused by GA4 (400 `INVALID_ARGUMENT`); ferry checks
//!   them against the metadata endpoint first, naming the report and the field.
//! - 429 `RESOURCE_EXHAUSTED`: per-hour or per-day token exhaustion ends the chunk `Throttled`
//!   (an hour, or until the day is over) — retrying at once cannot succeed; other 429s (concurrent
//!   requests) are backed off and retried. Rows folded into `(other)` or sampled data are
//!   reported as warnings of the run.
//! - Authentication: an OAuth refresh token. Service-account keys (a signed JWT) are not
//!   supported: signing needs an RSA crate ferry does not carry; a refresh token minted for the
//!   service user does the same job.

use super::auth::Authenticator;
use super::http::{HttpClient, HttpRequest, HttpResponse, HttpSettings};
use super::*;
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub const DEFAULT_BASE_URL: &str = "https://analyticsdata.googleapis.com";
/// The Data API's largest `limit`.
pub const MAX_LIMIT: u32 = 250_000;
const DEFAULT_LIMIT: u32 = 100_000;
/// GA4's earliest date (`dateRanges` before it are refused).
pub const EARLIEST: &str = "2015-08-14";
/// Per request: at most 9 dimensions and 10 metrics.
const MAX_DIMENSIONS: usize = 9;
const MAX_METRICS: usize = 10;
/// Currency metrics as decimal(38, 6).
const CURRENCY_SCALE: i8 = 6;

/// One report: the entity a flow reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    pub dimensions: Vec<String>,
    pub metrics: Vec<String>,
    /// Rows whose metrics are all zero too (GA4 leaves them out by default).
    #[serde(default)]
    pub keep_empty_rows: bool,
    /// A Data API `FilterExpression`, passed as `dimensionFilter`.
    #[serde(default)]
    pub dimension_filter: Option<Value>,
}

/// `source.properties` of a `ga4` flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ga4Config {
    pub property_id: String,
    #[serde(default = "default_base")]
    pub base_url: String,
    pub reports: BTreeMap<String, ReportSpec>,
    #[serde(default)]
    pub page_size: Option<u32>,
    #[serde(default)]
    pub http: HttpSettings,
}

fn default_base() -> String {
    DEFAULT_BASE_URL.into()
}

impl Ga4Config {
    pub fn parse(props: &Map<String, Value>) -> Result<Self, SourceError> {
        let c: Ga4Config = parse_properties(
            props,
            Some("ga4 takes property_id, reports, base_url, page_size, http"),
        )?;
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<(), SourceError> {
        if self.property_id.is_empty() || !self.property_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SourceError::config(
                "source.properties.property_id",
                format!("'{}' is not a GA4 property id: give the number only (Admin > Property details), e.g. \"123456789\", not G-XXXX or properties/…", self.property_id),
            ));
        }
        super::http_url(
            "source.properties.base_url",
            &self.base_url,
            &format!("leave it out for {DEFAULT_BASE_URL}"),
        )?;
        if self.reports.is_empty() {
            return Err(SourceError::config(
                "source.properties.reports",
                "name at least one report: reports: { traffic: { dimensions: [date, country], metrics: [sessions] } }",
            ));
        }
        for (name, r) in &self.reports {
            let at = format!("source.properties.reports.{name}");
            if r.metrics.is_empty() || r.metrics.len() > MAX_METRICS {
                return Err(SourceError::config(
                    format!("{at}.metrics"),
                    format!("list 1 to {MAX_METRICS} metrics (a Data API request takes at most {MAX_METRICS})"),
                ));
            }
            if r.dimensions.len() > MAX_DIMENSIONS {
                return Err(SourceError::config(
                    format!("{at}.dimensions"),
                    format!("at most {MAX_DIMENSIONS} dimensions per report"),
                ));
            }
            let mut all: Vec<&String> = r.dimensions.iter().chain(&r.metrics).collect();
            for (i, n) in r.dimensions.iter().enumerate() {
                if n.is_empty() || n.contains(',') {
                    return Err(SourceError::config(
                        format!("{at}.dimensions[{i}]"),
                        format!("'{n}' is not a dimension name"),
                    ));
                }
            }
            all.sort();
            if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
                return Err(SourceError::config(
                    at,
                    format!("'{}' is named twice (columns must be unique)", w[0]),
                ));
            }
        }
        if let Some(p) = self.page_size {
            if p == 0 || p > MAX_LIMIT {
                return Err(SourceError::config(
                    "source.properties.page_size",
                    format!("must be between 1 and {MAX_LIMIT}"),
                ));
            }
        }
        self.http.validate("source.properties.http")
    }

    fn report(&self, entity: &str) -> Result<&ReportSpec, SourceError> {
        self.reports.get(entity).ok_or_else(|| {
            SourceError::config(
                "source.entity",
                format!(
                    "'{entity}' is not a report of source.properties.reports; use one of: {}",
                    self.reports.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }
}

pub(super) fn validate(entity: &str, props: &Map<String, Value>) -> Vec<crate::flow::FieldError> {
    let r = Ga4Config::parse(props).and_then(|c| {
        if entity.is_empty() {
            Ok(())
        } else {
            c.report(entity).map(|_| ())
        }
    });
    match r {
        Ok(()) => vec![],
        Err(SourceError::Config { field, message }) => {
            vec![crate::flow::FieldError::new(field, message)]
        }
        Err(e) => vec![crate::flow::FieldError::new(
            "source.properties",
            e.to_string(),
        )],
    }
}

/// The ferry type of a metric type.
pub fn metric_type(t: &str) -> FieldType {
    match t {
        "TYPE_INTEGER" => FieldType::Integer,
        "TYPE_CURRENCY" => FieldType::Decimal {
            precision: 38,
            scale: CURRENCY_SCALE,
        },
        _ => FieldType::Float,
    }
}

/// A metric value typed: integers and floats as numbers, currency as decimal text.
pub(super) fn metric_value(v: &str, ty: &str) -> Result<Value, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(Value::Null);
    }
    match metric_type(ty) {
        FieldType::Integer => v
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.fract() == 0.0)
                    .map(|x| Value::from(x as i64))
                    .ok_or(())
            })
            .map_err(|_| format!("a {ty} value that is not an integer")),
        FieldType::Decimal { .. } => decimal_text(v)
            .map(Value::String)
            .ok_or_else(|| format!("a {ty} value that is not a decimal number")),
        _ => v
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("a {ty} value that is not a number")),
    }
}

/// Decimal text checked and cut to the currency scale (`12.3456789` → `12.345678`); exponent
/// forms (`1.5E3`) are expanded.
fn decimal_text(v: &str) -> Option<String> {
    let (neg, digits) = match v.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, v),
    };
    let (mantissa, exp) = match digits.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (digits, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // Shift the decimal point by the exponent.
    let mut all: String = format!("{int}{frac}");
    let mut point = int.len() as i32 + exp;
    if point < 0 {
        all = format!("{}{all}", "0".repeat((-point) as usize));
        point = 0;
    }
    while all.len() < point as usize {
        all.push('0');
    }
    let (i, f) = all.split_at(point as usize);
    let i = i.trim_start_matches('0');
    let f: String = f.chars().take(CURRENCY_SCALE as usize).collect();
    let i = if i.is_empty() { "0" } else { i };
    let s = if f.is_empty() {
        i.to_string()
    } else {
        format!("{i}.{f}")
    };
    Some(if neg { format!("-{s}") } else { s })
}

/// `20260201` → `2026-02-01`.
fn ga_date(v: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(v, "%Y%m%d").ok()
}

/// Where a read stands: the day being read (`None`: a complete read's single range) and the
/// offset in it, with the `rowCount` its first page reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct GaCursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    day: Option<NaiveDate>,
    #[serde(default)]
    offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    row_count: Option<u64>,
}

#[derive(Debug)]
struct Meta {
    dimensions: BTreeMap<String, String>,
    /// apiName -> (uiName, type).
    metrics: BTreeMap<String, (String, String)>,
}

/// The GA4 source bound to one flow.
pub struct Ga4Source {
    cfg: Ga4Config,
    base: String,
    http: HttpClient,
    meta: tokio::sync::Mutex<Option<std::sync::Arc<Meta>>>,
    warnings: std::sync::Mutex<Vec<String>>,
}

/// 429 `RESOURCE_EXHAUSTED` for hourly or daily tokens cannot be retried within seconds.
fn quota_hook(status: u16, body: &[u8]) -> Option<SourceError> {
    if status != 429 {
        return None;
    }
    let v: Value = serde_json::from_slice(body).ok()?;
    let msg = v.pointer("/error/message").and_then(Value::as_str)?;
    let lower = msg.to_ascii_lowercase();
    // Hourly tokens refill within the hour; daily ones at the property's midnight, which an
    // hourly look finds without knowing the property's time zone.
    if !(lower.contains("per hour") || lower.contains("per day")) {
        return None;
    }
    let wait = std::time::Duration::from_secs(3600);
    Some(SourceError::Throttled {
        message: format!("ga4: the Data API quota is exhausted (429 RESOURCE_EXHAUSTED: {msg}); the chunk ends here and is retried later"),
        retry_after: Some(wait),
    })
}

impl Ga4Source {
    pub fn new(props: &Map<String, Value>, auth: Authenticator) -> Result<Self, SourceError> {
        let cfg = Ga4Config::parse(props)?;
        let base = cfg.base_url.trim_end_matches('/').to_string();
        let http = HttpClient::new(cfg.http.clone(), std::sync::Arc::new(auth), &base)?
            .with_error_hook(quota_hook);
        Ok(Ga4Source {
            cfg,
            base,
            http,
            meta: Default::default(),
            warnings: Default::default(),
        })
    }

    async fn send(&self, r: HttpRequest) -> Result<HttpResponse, SourceError> {
        self.http.send(&r).await?.ok_or_else(|| SourceError::Fatal {
            message: "an ignored status answered a Data API request".into(),
        })
    }

    fn rejected(url: &str, what: impl std::fmt::Display) -> SourceError {
        SourceError::Rejected {
            message: format!("ga4: {url}: {what}"),
        }
    }

    async fn metadata(&self) -> Result<std::sync::Arc<Meta>, SourceError> {
        if let Some(m) = &*self.meta.lock().await {
            return Ok(m.clone());
        }
        let resp = self
            .send(HttpRequest::get(format!(
                "{}/v1beta/properties/{}/metadata",
                self.base, self.cfg.property_id
            )))
            .await?;
        let list = |k: &str| {
            resp.body
                .get(k)
                .and_then(Value::as_array)
                .cloned()
                .ok_or_else(|| Self::rejected(&resp.url, format!("the metadata has no `{k}`")))
        };
        let name = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(String::from);
        let dimensions = list("dimensions")?
            .iter()
            .filter_map(|d| Some((name(d, "apiName")?, name(d, "uiName").unwrap_or_default())))
            .collect();
        let metrics = list("metrics")?
            .iter()
            .filter_map(|m| {
                Some((
                    name(m, "apiName")?,
                    (
                        name(m, "uiName").unwrap_or_default(),
                        name(m, "type").unwrap_or_else(|| "TYPE_FLOAT".into()),
                    ),
                ))
            })
            .collect();
        let m = std::sync::Arc::new(Meta {
            dimensions,
            metrics,
        });
        *self.meta.lock().await = Some(m.clone());
        Ok(m)
    }

    /// The report's fields, checked against the property's metadata.
    async fn fields(&self, entity: &str) -> Result<Vec<FieldInfo>, SourceError> {
        let r = self.cfg.report(entity)?;
        let meta = self.metadata().await?;
        let at = format!("source.properties.reports.{entity}");
        let mut out = vec![];
        for (i, d) in r.dimensions.iter().enumerate() {
            let Some(label) = meta.dimensions.get(d) else {
                return Err(SourceError::config(
                    format!("{at}.dimensions[{i}]"),
                    format!("'{d}' is not a dimension of property {} (see its metadata: `ferry entities describe`, or GA4's API schema page)", self.cfg.property_id),
                ));
            };
            let mut f = if d == "date" {
                FieldInfo::new(d, FieldType::Date).incremental()
            } else {
                FieldInfo::new(d, FieldType::String)
            };
            f.label = Some(label.clone());
            out.push(f);
        }
        for (i, m) in r.metrics.iter().enumerate() {
            let Some((label, ty)) = meta.metrics.get(m) else {
                return Err(SourceError::config(
                    format!("{at}.metrics[{i}]"),
                    format!("'{m}' is not a metric of property {}", self.cfg.property_id),
                ));
            };
            let mut f = FieldInfo::new(m, metric_type(ty));
            f.label = Some(label.clone());
            out.push(f);
        }
        Ok(out)
    }

    fn limit(&self, req: &ReadRequest) -> u32 {
        req.page_size
            .or(self.cfg.page_size)
            .unwrap_or(DEFAULT_LIMIT)
            .clamp(1, MAX_LIMIT)
    }

    /// The days of a window: those whose midnight is in `(start, end]`.
    fn days(window: &Window) -> Option<(NaiveDate, NaiveDate)> {
        let first = match window.start {
            Some(s) => s.date_naive().checked_add_days(Days::new(1))?,
            None => NaiveDate::from_ymd_opt(2015, 8, 14)?,
        };
        let last = window.end.date_naive();
        (first <= last).then_some((first, last))
    }

    fn warn(&self, w: String) {
        tracing::warn!("{w}");
        let mut ws = self
            .warnings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !ws.contains(&w) {
            ws.push(w);
        }
    }
}

#[async_trait]
impl Source for Ga4Source {
    /// The flow's reports, after the property's metadata was read with the credentials.
    async fn list_entities(&self) -> Result<Vec<EntityInfo>, SourceError> {
        self.metadata().await?;
        Ok(self
            .cfg
            .reports
            .iter()
            .map(|(n, r)| EntityInfo {
                name: n.clone(),
                label: format!("report {n}"),
                description: Some(format!(
                    "dimensions {}; metrics {}",
                    r.dimensions.join(", "),
                    r.metrics.join(", ")
                )),
            })
            .collect())
    }

    async fn describe(&self, entity: &str) -> Result<EntityDescription, SourceError> {
        Ok(EntityDescription {
            entity: entity.into(),
            fields: self.fields(entity).await?,
        })
    }

    async fn read_page(
        &self,
        req: &ReadRequest,
        cursor: Option<&Value>,
    ) -> Result<Page, SourceError> {
        let spec = self.cfg.report(&req.entity)?;
        self.fields(&req.entity).await?;
        let has_date = spec.dimensions.iter().any(|d| d == "date");
        if req.window.is_some() {
            match req.incremental_field.as_deref() {
                Some("date") | None if has_date => {}
                Some(f) if f != "date" => {
                    return Err(SourceError::config(
                        "source.incremental.field",
                        format!("'{f}' cannot drive a GA4 window: use date"),
                    ))
                }
                _ => {
                    return Err(SourceError::config(
                        format!("source.properties.reports.{}.dimensions", req.entity),
                        "an incremental GA4 report needs the `date` dimension (windows are days)",
                    ))
                }
            }
        }
        let mut c: GaCursor = super::cursor_from("ga4", cursor)?.unwrap_or_default();
        let range = match &req.window {
            Some(w) => match Self::days(w) {
                None => {
                    return Ok(Page {
                        records: vec![],
                        next: None,
                        bytes: 0,
                    })
                }
                Some((first, last)) => {
                    let day = *c.day.get_or_insert(first);
                    if day > last {
                        return Ok(Page {
                            records: vec![],
                            next: None,
                            bytes: 0,
                        });
                    }
                    Some((day, last))
                }
            },
            None => None,
        };
        let limit = self.limit(req);
        let (start_date, end_date) = match range {
            Some((day, _)) => (day.to_string(), day.to_string()),
            None => (EARLIEST.to_string(), "today".to_string()),
        };
        let mut order: Vec<Value> = vec![];
        for d in &spec.dimensions {
            order.push(json!({"dimension": {"dimensionName": d}}));
        }
        if order.is_empty() {
            order.push(json!({"metric": {"metricName": spec.metrics[0]}}));
        }
        let mut body = json!({
            "dateRanges": [{"startDate": start_date, "endDate": end_date}],
            "dimensions": spec.dimensions.iter().map(|d| json!({"name": d})).collect::<Vec<_>>(),
            "metrics": spec.metrics.iter().map(|m| json!({"name": m})).collect::<Vec<_>>(),
            "limit": limit.to_string(),
            "offset": c.offset.to_string(),
            "orderBys": order,
            "keepEmptyRows": spec.keep_empty_rows,
            "returnPropertyQuota": true,
        });
        if let Some(f) = &spec.dimension_filter {
            body["dimensionFilter"] = f.clone();
        }
        let mut r = HttpRequest::get(format!(
            "{}/v1beta/properties/{}:runReport",
            self.base, self.cfg.property_id
        ));
        r.method = reqwest::Method::POST;
        r.body = Some(body);
        let resp = self.send(r).await?;
        let b = &resp.body;
        let names = |k: &str| -> Vec<String> {
            b.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|h| h.get("name").and_then(Value::as_str).map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let dims = names("dimensionHeaders");
        let mets = names("metricHeaders");
        let types: Vec<String> = b
            .get("metricHeaders")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|h| {
                        h.get("type")
                            .and_then(Value::as_str)
                            .unwrap_or("TYPE_FLOAT")
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default();
        if dims != spec.dimensions || mets != spec.metrics {
            return Err(Self::rejected(
                &resp.url,
                format!("the report's headers ({dims:?} / {mets:?}) are not the dimensions and metrics asked for"),
            ));
        }
        let row_count = b.get("rowCount").and_then(Value::as_u64).unwrap_or(0);
        if let Some(rc) = c.row_count {
            if rc != row_count {
                // Not retried: the pages already delivered cannot be taken back, and paging on
                // would skip or repeat rows. The run fails; its window is read again whole.
                return Err(Self::rejected(
                    &resp.url,
                    format!(
                        "the report for {start_date} had {rc} rows at offset 0 and {row_count} at offset {}: GA4 is still processing that day; set a larger page_size (a day read in one request is consistent) or a larger incremental.offset",
                        c.offset
                    ),
                ));
            }
        }
        if b.pointer("/metadata/dataLossFromOtherRow")
            .and_then(Value::as_bool)
            == Some(true)
        {
            self.warn(format!("ga4 report {}: some rows were folded into an `(other)` row by GA4 (high-cardinality dimensions); fewer dimensions avoid it", req.entity));
        }
        if b.pointer("/metadata/samplingMetadatas")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
        {
            self.warn(format!(
                "ga4 report {}: GA4 answered with sampled data for {start_date}..{end_date}",
                req.entity
            ));
        }
        let empty = vec![];
        let rows = b.get("rows").and_then(Value::as_array).unwrap_or(&empty);
        let mut records = Vec::with_capacity(rows.len());
        for (n, row) in rows.iter().enumerate() {
            let mut rec = Map::new();
            let dv = row.get("dimensionValues").and_then(Value::as_array);
            let mv = row.get("metricValues").and_then(Value::as_array);
            let (Some(dv), Some(mv)) = (dv, mv) else {
                return Err(Self::rejected(
                    &resp.url,
                    format!("row {n} has no dimensionValues/metricValues"),
                ));
            };
            if dv.len() != dims.len() || mv.len() != mets.len() {
                return Err(Self::rejected(
                    &resp.url,
                    format!("row {n} does not have one value per header"),
                ));
            }
            for (name, v) in dims.iter().zip(dv) {
                let s = v.get("value").and_then(Value::as_str).unwrap_or_default();
                let val = if name == "date" {
                    match ga_date(s) {
                        Some(d) => Value::String(d.to_string()),
                        None => {
                            return Err(Self::rejected(
                                &resp.url,
                                format!("row {n}: the date dimension is not YYYYMMDD"),
                            ))
                        }
                    }
                } else {
                    Value::String(s.to_string())
                };
                rec.insert(name.clone(), val);
            }
            for ((name, v), ty) in mets.iter().zip(mv).zip(&types) {
                let s = v.get("value").and_then(Value::as_str).unwrap_or_default();
                let val = metric_value(s, ty).map_err(|why| {
                    Self::rejected(&resp.url, format!("row {n} metric `{name}`: {why}"))
                })?;
                rec.insert(name.clone(), val);
            }
            // A complete read's range is every day; a window's day was asked for exactly.
            if let (Some(w), Some(d)) = (
                &req.window,
                rec.get("date")
                    .and_then(Value::as_str)
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()),
            ) {
                let midnight: DateTime<Utc> = d.and_time(chrono::NaiveTime::MIN).and_utc();
                if !w.contains(midnight) {
                    continue;
                }
            }
            records.push(Value::Object(rec));
        }
        let got = rows.len() as u64;
        let next = if got > 0 && c.offset + got < row_count {
            Some(GaCursor {
                day: c.day,
                offset: c.offset + got,
                row_count: Some(row_count),
            })
        } else {
            match range {
                Some((day, last)) if day < last => Some(GaCursor {
                    day: day.checked_add_days(Days::new(1)),
                    offset: 0,
                    row_count: None,
                }),
                _ => None,
            }
        };
        Ok(Page {
            records,
            next: next.map(|n| super::cursor_json(&n)).transpose()?,
            bytes: resp.bytes,
        })
    }

    fn take_warnings(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// The `ga4` connector in the [registry](super::registry). AppFlow's `GoogleAnalytics` reads
/// Universal Analytics (v3 Reporting API, retired by Google); an imported flow maps here with
/// a note that its object must become a GA4 report.
pub static CONNECTOR: super::registry::Connector = super::registry::Connector {
    name: "ga4",
    appflow_type: Some("GoogleAnalytics"),
    needs_profile: true,
    oauth_client_auth: super::auth::ClientAuth::Body,
    auth_kinds: &["oauth2_refresh_token", "service_account", "bearer"],
    consent: Some(&super::consent::GOOGLE),
    static_description: false,
    validate,
    build: |source, profile| {
        let auth = super::registry::require(profile, "ga4", "its credentials")?.authenticator()?;
        Ok(Box::new(Ga4Source::new(&source.properties, auth)?))
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    fn props(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn config_errors_name_the_field() {
        let ok = json!({"property_id": "123", "reports": {"t": {"dimensions": ["date"], "metrics": ["sessions"]}}});
        assert!(validate("t", &props(ok.clone())).is_empty());
        let e = validate("u", &props(ok));
        assert_eq!(e[0].path, "source.entity");
        let e = validate(
            "t",
            &props(
                json!({"property_id": "G-123", "reports": {"t": {"dimensions": [], "metrics": ["sessions"]}}}),
            ),
        );
        assert_eq!(e[0].path, "source.properties.property_id");
        let e = validate(
            "t",
            &props(
                json!({"property_id": "1", "reports": {"t": {"dimensions": ["date"], "metrics": []}}}),
            ),
        );
        assert_eq!(e[0].path, "source.properties.reports.t.metrics");
        let e = validate(
            "t",
            &props(
                json!({"property_id": "1", "reports": {"t": {"dimensions": ["date", "date"], "metrics": ["x"]}}}),
            ),
        );
        assert_eq!(e[0].path, "source.properties.reports.t");
    }

    #[test]
    fn metric_values_are_typed() {
        assert_eq!(metric_value("42", "TYPE_INTEGER").unwrap(), json!(42));
        assert_eq!(metric_value("1.5", "TYPE_SECONDS").unwrap(), json!(1.5));
        assert_eq!(
            metric_value("1234.5678912", "TYPE_CURRENCY").unwrap(),
            json!("1234.567891")
        );
        assert_eq!(
            metric_value("1.5E3", "TYPE_CURRENCY").unwrap(),
            json!("1500")
        );
        assert_eq!(
            metric_value("-0.25", "TYPE_CURRENCY").unwrap(),
            json!("-0.25")
        );
        assert!(metric_value("abc", "TYPE_INTEGER").is_err());
        assert_eq!(metric_value("", "TYPE_INTEGER").unwrap(), Value::Null);
    }

    #[test]
    fn a_window_is_the_days_whose_midnight_it_holds() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let w = Window {
            start: Some(t("2026-02-01T00:00:00Z")),
            end: t("2026-02-03T00:00:00Z"),
        };
        assert_eq!(
            Ga4Source::days(&w),
            Some((d("2026-02-02"), d("2026-02-03")))
        );
        let w = Window {
            start: Some(t("2026-02-01T10:00:00Z")),
            end: t("2026-02-01T23:00:00Z"),
        };
        assert_eq!(Ga4Source::days(&w), None);
    }
}
