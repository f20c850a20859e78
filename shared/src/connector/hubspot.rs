//! The `hubspot` connector: CRM v3 objects (contacts, companies, deals, tickets).
//!
//! ```yaml
//! source:
//!   connector: hubspot
//!   profile: hubspot               # private app: {"type": "bearer", "hosts": ["api.hubapi.com"], "token": "pat-…"}
//!                                  # or OAuth2: {"type": "oauth2_refresh_token", "hosts": ["api.hubapi.com"],
//!                                  #   "token_url": "https://api.hubapi.com/oauth/v1/token", …}
//!   entity: contacts
//!   properties:
//!     properties: [email, firstname, lastname, lifecyclestage]   # optional: default all
//!     include_archived: true       # also read archived records (archived: true)
//!     page_size: 100               # list ≤ 100, search ≤ 200
//!     http: { budget: { requests: 4, per_seconds: 1 } }
//!   incremental: { field: lastmodifieddate }      # hs_lastmodifieddate for other objects
//! ```
//!
//! Vendor documentation this follows:
//! - CRM search (`POST /crm/v3/objects/{object}/search`, filterGroups/sorts/properties/limit/
//!   after; default properties per object: `lastmodifieddate` for contacts,
//!   `hs_lastmodifieddate` for companies, deals, tickets; "limited to 10,000 total results for
//!   any given query", paging past it answers 400; search requests are rate limited per
//!   account): <https://developers.hubspot.com/docs/api-reference/search/guide>,
//!   <https://developers.hubspot.com/docs/api/crm/search>
//! - Objects (`GET /crm/v3/objects/{object}?limit&after&properties&archived`, paging.next.after,
//!   `archived`/`archivedAt`): <https://developers.hubspot.com/docs/guides/crm/using-object-apis>
//! - Search rate limit (4–5 requests per second per token/account):
//!   <https://developers.hubspot.com/changelog/crm-search-api-rate-limit-increase>
//! - Rate limit headers: <https://developers.hubspot.com/changelog/2018-11-06-rate-limit-information-headers-will-be-included-in-http-responses>
//! - Properties (`GET /crm/v3/properties/{object}`: name, label, type, fieldType):
//!   <https://developers.hubspot.com/docs/api-reference/legacy/crm/properties/get-properties>
//!
//! How reading works, and the quirks it handles:
//! - **Complete reads** page `GET /crm/v3/objects/{object}` with the `after` cursor (no cap).
//! - **Incremental reads** use the search API on the object's last-modified property
//!   (`lastmodifieddate` for contacts, `hs_lastmodifieddate` otherwise; the flow's field, or
//!   `updatedAt`, maps to it), `GT start` and `LTE end` in epoch milliseconds, sorted ascending.
//!   **Pages are time slices, not offsets**: after each page the next search starts at the last
//!   modified time read (`GTE` that time), records at that very time already read skipped by
//!   id. Offsets (`after`) shift when a record of the window is updated during the read (it
//!   leaves the sorted results), which would skip a record for good; and **a search stops at
//!   10,000 results**, which slices never reach. So a window with any number of changes, even
//!   changing while it is read, is read completely and exactly once. `after` is followed only
//!   inside one millisecond; more than 10,000 records sharing one cannot be read and fail the
//!   read with a clear message.
//! - **Archived records** are hidden from search and from the list endpoint unless
//!   `archived=true` is asked for, which returns only archived ones: with `include_archived`
//!   they are read in a second phase (`archived: true`, `archivedAt`), for windows those whose
//!   `archivedAt` is in the window.
//! - **Unknown properties are silently ignored** by HubSpot (the column would just be missing):
//!   `properties` is checked against the properties API first.
//! - **Property values are strings** (`"1200.5"`, `"true"`, `""`): they are typed from the
//!   property's `type` (number, bool, datetime, date); `""` becomes null.
//! - Search results can lag a few seconds behind writes (indexing): give scheduled flows a
//!   `schedule_offset` of a minute.

use super::auth::Authenticator;
use super::http::{HttpClient, HttpRequest, HttpResponse, HttpSettings};
use super::*;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";
/// Results one search query can page through.
pub const SEARCH_CAP: u64 = 10_000;
const LIST_MAX: u32 = 100;
const SEARCH_MAX: u32 = 200;

/// The objects this connector reads: name, label, last-modified property.
pub const OBJECTS: &[(&str, &str, &str)] = &[
    ("contacts", "Contacts", "lastmodifieddate"),
    ("companies", "Companies", "hs_lastmodifieddate"),
    ("deals", "Deals", "hs_lastmodifieddate"),
    ("tickets", "Tickets", "hs_lastmodifieddate"),
];

/// Columns every record has besides its properties.
const TOP_LEVEL: &[&str] = &["id", "createdAt", "updatedAt", "archived", "archivedAt"];

/// `source.properties` of a `hubspot` flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotConfig {
    #[serde(default = "default_base")]
    pub base_url: String,
    /// Properties to read; default every property of the object.
    #[serde(default)]
    pub properties: Option<Vec<String>>,
    #[serde(default)]
    pub include_archived: bool,
    #[serde(default)]
    pub page_size: Option<u32>,
    #[serde(default)]
    pub http: HttpSettings,
}

fn default_base() -> String {
    DEFAULT_BASE_URL.into()
}

impl HubSpotConfig {
    pub fn parse(props: &Map<String, Value>) -> Result<Self, SourceError> {
        parse_properties::<HubSpotConfig>(props, None)
    }

    fn check(&self, entity: &str) -> Result<(), SourceError> {
        super::http_url(
            "source.properties.base_url",
            &self.base_url,
            &format!("leave it out for {DEFAULT_BASE_URL}"),
        )?;
        if !entity.is_empty() && object(entity).is_none() {
            return Err(SourceError::config(
                "source.entity",
                format!(
                    "'{entity}' is not a HubSpot object this connector reads; use one of: {}",
                    OBJECTS.iter().map(|o| o.0).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if let Some(ps) = &self.properties {
            if ps.is_empty() {
                return Err(SourceError::config(
                    "source.properties.properties",
                    "list at least one property, or leave it out to read every property",
                ));
            }
            for (i, p) in ps.iter().enumerate() {
                if p.is_empty() || p.contains(',') || TOP_LEVEL.contains(&p.as_str()) {
                    return Err(SourceError::config(
                        format!("source.properties.properties[{i}]"),
                        format!("'{p}' is not a property name (id, createdAt, updatedAt, archived and archivedAt are always read)"),
                    ));
                }
            }
        }
        if let Some(p) = self.page_size {
            if p == 0 || p > SEARCH_MAX {
                return Err(SourceError::config(
                    "source.properties.page_size",
                    format!(
                        "must be between 1 and {SEARCH_MAX} (list pages are capped at {LIST_MAX})"
                    ),
                ));
            }
        }
        self.http.validate("source.properties.http")
    }
}

pub(super) fn validate(entity: &str, props: &Map<String, Value>) -> Vec<crate::flow::FieldError> {
    match HubSpotConfig::parse(props).and_then(|c| c.check(entity)) {
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

fn object(entity: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    OBJECTS.iter().find(|o| o.0 == entity)
}

/// Properties of an object: name -> type, in output order (read once per run:
/// `fetch_metadata`).
#[derive(Debug, Serialize, Deserialize)]
struct ObjectMeta {
    props: Vec<(String, FieldType, Option<String>)>,
    types: HashMap<String, FieldType>,
}

/// Where a read stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum HsCursor {
    /// `GET /crm/v3/objects/{object}` pages.
    List {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        archived: bool,
    },
    /// Search pages of one slice `[lo|(lo, end]`.
    Search {
        /// Lower bound in epoch ms; `None`: the window's start (exclusive).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lo: Option<i64>,
        /// Ids already read whose modified time is `lo` (the slice starts at `lo` inclusive).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        seen: Vec<String>,
        #[serde(default)]
        after: u64,
        /// The latest modified time read in this slice, and the ids read at it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tail: Option<i64>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tail_ids: Vec<String>,
    },
}

/// The HubSpot source bound to one flow.
pub struct HubSpotSource {
    cfg: HubSpotConfig,
    base: String,
    http: HttpClient,
    meta: tokio::sync::Mutex<HashMap<String, std::sync::Arc<ObjectMeta>>>,
}

impl HubSpotSource {
    pub fn new(props: &Map<String, Value>, auth: Authenticator) -> Result<Self, SourceError> {
        let cfg = HubSpotConfig::parse(props)?;
        cfg.check("")?;
        let base = cfg.base_url.trim_end_matches('/').to_string();
        let http = HttpClient::new(cfg.http.clone(), std::sync::Arc::new(auth), &base)?;
        Ok(HubSpotSource {
            cfg,
            base,
            http,
            meta: Default::default(),
        })
    }

    pub fn auth(&self) -> &Authenticator {
        &self.http.auth
    }

    async fn send(&self, r: HttpRequest) -> Result<HttpResponse, SourceError> {
        self.http.send(&r).await?.ok_or_else(|| SourceError::Fatal {
            message: "an ignored status answered a HubSpot request".into(),
        })
    }

    fn object(
        &self,
        entity: &str,
    ) -> Result<&'static (&'static str, &'static str, &'static str), SourceError> {
        object(entity).ok_or_else(|| {
            SourceError::config(
                "source.entity",
                format!(
                    "'{entity}' is not a HubSpot object this connector reads; use one of: {}",
                    OBJECTS.iter().map(|o| o.0).collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    async fn object_meta(&self, entity: &str) -> Result<std::sync::Arc<ObjectMeta>, SourceError> {
        if let Some(m) = self.meta.lock().await.get(entity) {
            return Ok(m.clone());
        }
        self.object(entity)?;
        let mut r = HttpRequest::get(format!("{}/crm/v3/properties/{entity}", self.base));
        r.query = vec![("archived".into(), "false".into())];
        let resp = self.send(r).await?;
        let results = resp
            .body
            .get("results")
            .and_then(Value::as_array)
            .ok_or_else(|| SourceError::Rejected {
                message: format!(
                    "{} answered {} without a `results` array",
                    resp.url, resp.status
                ),
            })?;
        let mut props: Vec<(String, FieldType, Option<String>)> = results
            .iter()
            .filter_map(|p| {
                let name = p.get("name")?.as_str()?.to_string();
                let ty = hs_type(p.get("type").and_then(Value::as_str).unwrap_or("string"));
                let label = p.get("label").and_then(Value::as_str).map(String::from);
                Some((name, ty, label))
            })
            .filter(|(n, _, _)| !TOP_LEVEL.contains(&n.as_str()))
            .collect();
        props.sort_by(|a, b| a.0.cmp(&b.0));
        let types = props
            .iter()
            .map(|(n, t, _)| (n.clone(), t.clone()))
            .collect();
        let m = std::sync::Arc::new(ObjectMeta { props, types });
        self.meta.lock().await.insert(entity.to_string(), m.clone());
        Ok(m)
    }

    /// The properties to ask for: the flow's selection (checked: HubSpot silently ignores
    /// unknown names) plus `must`, or every property.
    fn selected(
        &self,
        meta: &ObjectMeta,
        entity: &str,
        must: &[&str],
    ) -> Result<Vec<String>, SourceError> {
        let Some(ps) = &self.cfg.properties else {
            return Ok(meta.props.iter().map(|p| p.0.clone()).collect());
        };
        for (i, p) in ps.iter().enumerate() {
            if !meta.types.contains_key(p) {
                return Err(SourceError::config(
                    format!("source.properties.properties[{i}]"),
                    format!("'{p}' is not a property of {entity} (HubSpot would silently leave it out); `ferry entities describe` lists them"),
                ));
            }
        }
        Ok(meta
            .props
            .iter()
            .map(|p| p.0.clone())
            .filter(|n| ps.contains(n) || must.contains(&n.as_str()))
            .collect())
    }

    /// The search property a flow's incremental field maps to.
    fn search_property(
        &self,
        meta: &ObjectMeta,
        entity: &str,
        field: &str,
    ) -> Result<String, SourceError> {
        let last_modified = self.object(entity)?.2;
        let p = if field == "updatedAt" {
            last_modified
        } else {
            field
        };
        match meta.types.get(p) {
            Some(FieldType::Timestamp) => Ok(p.to_string()),
            _ => Err(SourceError::config(
                "source.incremental.field",
                format!("'{field}' is not a date/time property of {entity}; use {last_modified} (its last-modified property)"),
            )),
        }
    }

    fn record(
        &self,
        meta: &ObjectMeta,
        raw: &Value,
        url: &str,
    ) -> Result<Map<String, Value>, SourceError> {
        let o = raw.as_object().ok_or_else(|| SourceError::Rejected {
            message: format!("{url}: a `results` element is not an object"),
        })?;
        let id = match o.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(SourceError::Rejected {
                    message: format!("{url}: a record has no id"),
                });
            }
        };
        let mut out = Map::new();
        out.insert("id".into(), Value::String(id));
        if let Some(Value::Object(props)) = o.get("properties") {
            for (k, v) in props {
                let ty = meta.types.get(k).cloned().unwrap_or(FieldType::String);
                out.insert(k.clone(), coerce(v, &ty));
            }
        }
        for k in ["createdAt", "updatedAt", "archivedAt"] {
            out.insert(
                k.into(),
                coerce(o.get(k).unwrap_or(&Value::Null), &FieldType::Timestamp),
            );
        }
        out.insert(
            "archived".into(),
            Value::Bool(o.get("archived").and_then(Value::as_bool).unwrap_or(false)),
        );
        Ok(out)
    }

    fn page_size(&self, req: &ReadRequest, max: u32) -> u32 {
        req.page_size
            .or(self.cfg.page_size)
            .unwrap_or(max)
            .clamp(1, max)
    }

    fn after_phase(&self, archived: bool) -> Option<HsCursor> {
        (!archived && self.cfg.include_archived).then_some(HsCursor::List {
            after: None,
            archived: true,
        })
    }

    async fn read_list(
        &self,
        req: &ReadRequest,
        meta: &ObjectMeta,
        props: &[String],
        after: Option<String>,
        archived: bool,
    ) -> Result<Page, SourceError> {
        let mut r = HttpRequest::get(format!("{}/crm/v3/objects/{}", self.base, req.entity));
        r.query = vec![
            ("limit".into(), self.page_size(req, LIST_MAX).to_string()),
            ("archived".into(), archived.to_string()),
        ];
        if !props.is_empty() {
            r.query.push(("properties".into(), props.join(",")));
        }
        if let Some(a) = &after {
            r.query.push(("after".into(), a.clone()));
        }
        let resp = self.send(r).await?;
        let results = results(&resp)?;
        let mut records = vec![];
        for raw in results {
            let rec = self.record(meta, raw, &resp.url)?;
            // Archived records in a window: those archived inside it.
            if let (true, Some(w)) = (archived, &req.window) {
                let at = rec.get("archivedAt").and_then(crate::model::parse_time);
                if !at.is_some_and(|t| w.contains(t)) {
                    continue;
                }
            }
            records.push(Value::Object(rec));
        }
        let next_after = next_after(&resp);
        if next_after.is_some() && next_after == after {
            return Err(SourceError::Rejected {
                message: format!("{}: paging.next.after repeated the cursor it was asked for; stopping instead of looping", resp.url),
            });
        }
        let next = match next_after {
            Some(a) => Some(HsCursor::List {
                after: Some(a),
                archived,
            }),
            None => self.after_phase(archived),
        };
        Ok(Page {
            records,
            next: next.map(to_value).transpose()?,
            bytes: resp.bytes,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn read_search(
        &self,
        req: &ReadRequest,
        meta: &ObjectMeta,
        props: &[String],
        prop: &str,
        window: &Window,
        lo: Option<i64>,
        seen: Vec<String>,
        after: u64,
        tail: Option<i64>,
        mut tail_ids: Vec<String>,
    ) -> Result<Page, SourceError> {
        let limit = self.page_size(req, SEARCH_MAX) as u64;
        let filters = window_filters(prop, window, lo);
        let mut body = json!({
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
            "properties": props,
            "limit": limit,
        });
        if after > 0 {
            body["after"] = json!(after.to_string());
        }
        let mut r = HttpRequest::get(format!(
            "{}/crm/v3/objects/{}/search",
            self.base, req.entity
        ));
        r.method = reqwest::Method::POST;
        r.body = Some(body);
        let resp = self.send(r).await?;
        let raws = results(&resp)?;
        let mut records = vec![];
        let mut tail = tail;
        for (n, raw) in raws.into_iter().enumerate() {
            let rec = self.record(meta, raw, &resp.url)?;
            let id = rec["id"].as_str().unwrap_or_default().to_string();
            // Messages name the record's position on the page, never its values (its id included).
            let t = rec.get(prop).and_then(crate::model::parse_time).ok_or_else(|| SourceError::Rejected {
                message: format!("{}: result {n} of the page has no {prop}; every searched record needs its last-modified time", resp.url),
            })?;
            let ms = t.timestamp_millis();
            match tail {
                Some(tm) if tm == ms => tail_ids.push(id.clone()),
                Some(tm) if tm > ms => {
                    return Err(SourceError::Rejected {
                        message: format!("{}: results are not sorted by {prop} ascending (result {n} of the page); the slicing of large windows relies on it", resp.url),
                    })
                }
                _ => {
                    tail = Some(ms);
                    tail_ids = vec![id.clone()];
                }
            }
            // Read at the previous slice's boundary already.
            if lo == Some(ms) && seen.contains(&id) {
                continue;
            }
            // The API may ignore a filter: keep only what is in the window.
            if window.contains(t) {
                records.push(Value::Object(rec));
            }
        }
        let next = match next_after(&resp) {
            None => self.after_phase(false),
            Some(a) => {
                let a: u64 = a.parse().map_err(|_| SourceError::Rejected {
                    message: format!(
                        "{}: paging.next.after '{a}' is not a result offset",
                        resp.url
                    ),
                })?;
                if a <= after {
                    return Err(SourceError::Rejected {
                        message: format!("{}: paging.next.after did not move forward ({a}); stopping instead of looping", resp.url),
                    });
                }
                match tail {
                    // Re-slice at the latest time read instead of following the `after`
                    // offset: a record of the window updated during the read leaves the sorted
                    // result set (its new time is past the window end), the offsets shift and
                    // the next page would skip a record never read. A slice starting at the
                    // last time read (`GTE`, ids already read at it skipped) does not shift.
                    Some(t) if lo != Some(t) => Some(HsCursor::Search {
                        lo: Some(t),
                        seen: tail_ids,
                        after: 0,
                        tail: None,
                        tail_ids: vec![],
                    }),
                    // The whole page shares the slice's start time: page on by offset, up to
                    // the cap (more than that many records in one millisecond cannot be read).
                    Some(t) => {
                        if a + limit > SEARCH_CAP {
                            return Err(SourceError::Rejected {
                                message: format!(
                                    "more than {SEARCH_CAP} {} share the {prop} value {}: the search API cannot page past {SEARCH_CAP} results and the window cannot be sliced finer",
                                    req.entity,
                                    DateTime::<Utc>::from_timestamp_millis(t).map(|d| d.to_rfc3339()).unwrap_or_default()
                                ),
                            });
                        }
                        Some(HsCursor::Search {
                            lo,
                            seen,
                            after: a,
                            tail,
                            tail_ids,
                        })
                    }
                    // A page with no records that still names a next one: follow it while
                    // the cap allows (nothing was read that a shift could skip).
                    None if a + limit <= SEARCH_CAP => Some(HsCursor::Search {
                        lo,
                        seen,
                        after: a,
                        tail,
                        tail_ids,
                    }),
                    // `expect` here panicked on such an answer (issue #13).
                    None => {
                        return Err(SourceError::Rejected {
                            message: format!(
                                "{}: paging.next.after is {a} (past the {SEARCH_CAP}-result search cap) but the slice returned no records to continue from; stopping instead of skipping results",
                                resp.url
                            ),
                        });
                    }
                }
            }
        };
        Ok(Page {
            records,
            next: next.map(to_value).transpose()?,
            bytes: resp.bytes,
        })
    }
}

fn to_value(c: HsCursor) -> Result<Value, SourceError> {
    super::cursor_json(&c)
}

fn results(resp: &HttpResponse) -> Result<&Vec<Value>, SourceError> {
    resp.body
        .get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| SourceError::Rejected {
            message: format!(
                "{} answered {} without a `results` array",
                resp.url, resp.status
            ),
        })
}

fn next_after(resp: &HttpResponse) -> Option<String> {
    match resp.body.pointer("/paging/next/after")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The ferry type of a HubSpot property `type`.
fn hs_type(t: &str) -> FieldType {
    match t {
        "number" => FieldType::Float,
        "bool" => FieldType::Boolean,
        "datetime" => FieldType::Timestamp,
        "date" => FieldType::Date,
        _ => FieldType::String,
    }
}

/// The search filters of a window on `prop` (epoch milliseconds): `GT start` — or `GTE lo`
/// where a read past the search cap resumes at a modified time — and `LTE end`.
fn window_filters(prop: &str, window: &Window, lo: Option<i64>) -> Vec<Value> {
    let mut filters = vec![];
    match (lo, window.start) {
        (Some(l), _) => filters.push(json!({"propertyName": prop, "operator": "GTE", "value": l.to_string()})),
        (None, Some(s)) => filters.push(json!({"propertyName": prop, "operator": "GT", "value": s.timestamp_millis().to_string()})),
        (None, None) => {}
    }
    filters.push(json!({"propertyName": prop, "operator": "LTE", "value": window.end.timestamp_millis().to_string()}));
    filters
}

/// Property values are text; type them. `""` is an empty value.
fn coerce(v: &Value, ty: &FieldType) -> Value {
    let s = match v {
        Value::Null => return Value::Null,
        Value::String(s) if s.is_empty() => return Value::Null,
        Value::String(s) => s.as_str(),
        Value::Number(n) if *ty == FieldType::Timestamp => {
            return n
                .as_i64()
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
                .unwrap_or(Value::Null)
        }
        other => return other.clone(),
    };
    match ty {
        FieldType::Float => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::String(s.into())),
        FieldType::Boolean => match s {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            other => Value::String(other.into()),
        },
        FieldType::Timestamp => {
            let t = DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .ok()
                .or_else(|| {
                    s.parse::<i64>()
                        .ok()
                        .and_then(DateTime::<Utc>::from_timestamp_millis)
                });
            t.map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
                .unwrap_or(Value::String(s.into()))
        }
        // Dates come as YYYY-MM-DD, or as midnight UTC of that day.
        FieldType::Date => Value::String(
            s.get(..10)
                .filter(|d| d.len() == 10)
                .unwrap_or(s)
                .to_string(),
        ),
        _ => Value::String(s.into()),
    }
}

#[async_trait]
impl Source for HubSpotSource {
    /// The objects, each checked with one authenticated call to its properties endpoint: a
    /// refused token is `AuthFailed`; an object the token has no scope for (403) is listed as
    /// such. <https://developers.hubspot.com/docs/api-reference/latest/crm/properties/guide.md>
    async fn list_entities(&self) -> Result<Vec<EntityInfo>, SourceError> {
        let mut out = vec![];
        for (name, label, lm) in OBJECTS {
            let mut r = HttpRequest::get(format!("{}/crm/v3/properties/{name}", self.base));
            r.query = vec![("archived".into(), "false".into())];
            r.ignore_status = vec![403];
            let readable = self.http.send(&r).await?.is_some();
            out.push(EntityInfo {
                name: (*name).into(),
                label: (*label).into(),
                description: Some(if readable {
                    format!("CRM v3 {name}; incremental on {lm}")
                } else {
                    format!("CRM v3 {name}: not readable with this token (403: add the crm.objects.{name}.read scope)")
                }),
            });
        }
        Ok(out)
    }

    async fn describe(&self, entity: &str) -> Result<EntityDescription, SourceError> {
        let (_, _, last_modified) = self.object(entity)?;
        let meta = self.object_meta(entity).await?;
        let selected = self.selected(&meta, entity, &[last_modified])?;
        let mut fields = vec![FieldInfo::new("id", FieldType::String).key()];
        for (name, ty, label) in meta.props.iter().filter(|p| selected.contains(&p.0)) {
            let mut f = FieldInfo::new(name, ty.clone());
            f.label = label.clone();
            if *ty == FieldType::Timestamp {
                f = f.incremental();
            }
            fields.push(f);
        }
        fields.push(FieldInfo::new("createdAt", FieldType::Timestamp));
        fields.push(FieldInfo::new("updatedAt", FieldType::Timestamp).incremental());
        fields.push(FieldInfo::new("archived", FieldType::Boolean));
        fields.push(FieldInfo::new("archivedAt", FieldType::Timestamp));
        Ok(EntityDescription {
            entity: entity.into(),
            fields,
        })
    }

    async fn fetch_metadata(&self, entity: &str) -> Result<Option<Value>, SourceError> {
        super::stage_metadata("hubspot", &*self.object_meta(entity).await?)
    }

    fn use_fetch_metadata(&mut self, entity: &str, data: &Value) -> Result<(), SourceError> {
        let m: ObjectMeta = super::staged_metadata("hubspot", data)?;
        self.meta
            .get_mut()
            .insert(entity.to_string(), std::sync::Arc::new(m));
        Ok(())
    }

    /// Time slices of the last-modified property: each slice's search bounds its own window
    /// (`GT start`, `LTE end`). Two at once: the search endpoints allow five requests per
    /// second per account (<https://developers.hubspot.com/docs/api-reference/search/guide>,
    /// "Limitations"), shared with the rest of the account's integrations.
    fn slicing(&self, _entity: &str) -> Slicing {
        Slicing::Time { parallelism: 2 }
    }

    /// The search's `total` for the window (one request asking for one record): start-run
    /// cuts dense parts of a backfill narrower (`slice.records`).
    async fn count(&self, req: &ReadRequest) -> Result<Option<u64>, SourceError> {
        let (Some(w), Some(f)) = (&req.window, req.incremental_field.as_deref()) else {
            return Ok(None);
        };
        let meta = self.object_meta(&req.entity).await?;
        let prop = self.search_property(&meta, &req.entity, f)?;
        let filters = window_filters(&prop, w, None);
        let mut r = HttpRequest::get(format!(
            "{}/crm/v3/objects/{}/search",
            self.base, req.entity
        ));
        r.method = reqwest::Method::POST;
        r.body = Some(
            json!({"filterGroups": [{"filters": filters}], "properties": ["hs_object_id"], "limit": 1}),
        );
        let resp = self.send(r).await?;
        let total = resp
            .body
            .get("total")
            .and_then(Value::as_u64)
            .ok_or_else(|| SourceError::Rejected {
                message: format!("{}: the search answer has no `total`", resp.url),
            })?;
        Ok(Some(total))
    }

    async fn read_page(
        &self,
        req: &ReadRequest,
        cursor: Option<&Value>,
    ) -> Result<Page, SourceError> {
        let meta = self.object_meta(&req.entity).await?;
        let prop = match (&req.window, req.incremental_field.as_deref()) {
            (Some(_), Some(f)) => Some(self.search_property(&meta, &req.entity, f)?),
            (Some(_), None) => Some(self.object(&req.entity)?.2.to_string()),
            _ => None,
        };
        let must: Vec<&str> = prop.iter().map(String::as_str).collect();
        let props = self.selected(&meta, &req.entity, &must)?;
        let c = match super::cursor_from("hubspot", cursor)? {
            Some(c) => c,
            None if prop.is_some() => HsCursor::Search {
                lo: None,
                seen: vec![],
                after: 0,
                tail: None,
                tail_ids: vec![],
            },
            None => HsCursor::List {
                after: None,
                archived: false,
            },
        };
        match c {
            HsCursor::List { after, archived } => {
                self.read_list(req, &meta, &props, after, archived).await
            }
            HsCursor::Search {
                lo,
                seen,
                after,
                tail,
                tail_ids,
            } => {
                let (Some(prop), Some(w)) = (prop, req.window.as_ref()) else {
                    return Err(SourceError::Fatal {
                        message: "a search cursor resumed a read without a window".into(),
                    });
                };
                self.read_search(
                    req, &meta, &props, &prop, w, lo, seen, after, tail, tail_ids,
                )
                .await
            }
        }
    }
}

/// The `hubspot` connector in the [registry](super::registry).
pub static CONNECTOR: super::registry::Connector = super::registry::Connector {
    name: "hubspot",
    appflow_type: Some("Hubspot"),
    needs_profile: true,
    oauth_client_auth: super::auth::ClientAuth::Body,
    auth_kinds: &["bearer", "oauth2_refresh_token"],
    consent: Some(&super::consent::HUBSPOT),
    static_description: false,
    validate,
    build: |source, profile| {
        let auth =
            super::registry::require(profile, "hubspot", "its credentials")?.authenticator()?;
        Ok(Box::new(HubSpotSource::new(&source.properties, auth)?))
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
        assert!(validate("contacts", &props(json!({}))).is_empty());
        let e = validate("leads", &props(json!({})));
        assert_eq!(e[0].path, "source.entity");
        let e = validate("deals", &props(json!({"page_size": 500})));
        assert_eq!(e[0].path, "source.properties.page_size");
        let e = validate("deals", &props(json!({"properties": ["amount", "a,b"]})));
        assert_eq!(e[0].path, "source.properties.properties[1]");
        let e = validate("deals", &props(json!({"archived": true})));
        assert!(e[0].message.contains("archived"), "{}", e[0]);
    }

    #[test]
    fn values_are_typed() {
        assert_eq!(coerce(&json!("1200.5"), &FieldType::Float), json!(1200.5));
        assert_eq!(coerce(&json!(""), &FieldType::Float), Value::Null);
        assert_eq!(coerce(&json!("true"), &FieldType::Boolean), json!(true));
        assert_eq!(
            coerce(&json!("2026-01-01T00:00:01Z"), &FieldType::Timestamp),
            json!("2026-01-01T00:00:01.000Z")
        );
        assert_eq!(
            coerce(&json!("1767225601000"), &FieldType::Timestamp),
            json!("2026-01-01T00:00:01.000Z")
        );
        assert_eq!(
            coerce(&json!("2026-03-04T00:00:00Z"), &FieldType::Date),
            json!("2026-03-04")
        );
        assert_eq!(hs_type("enumeration"), FieldType::String);
    }

    #[tokio::test]
    async fn an_empty_page_past_the_search_cap_is_an_error_not_a_panic() {
        use crate::connector::testing::{serve, Canned};
        let srv = serve(vec![
            Canned::json(
                200,
                json!({"results": [{"name": "lastmodifieddate", "type": "datetime", "label": "Last modified"}]}),
            ),
            // No results, yet a next page past the 10,000 cap: `tail.expect(…)` panicked here.
            Canned::json(200, json!({"total": 0, "results": [], "paging": {"next": {"after": "9950"}}})),
        ])
        .await;
        let s = HubSpotSource::new(
            &props(json!({"base_url": srv.url, "page_size": 100})),
            Authenticator::none(),
        )
        .unwrap();
        let end = Utc::now();
        let req = ReadRequest {
            entity: "contacts".into(),
            window: Some(Window {
                start: Some(end - chrono::Duration::hours(1)),
                end,
            }),
            incremental_field: Some("lastmodifieddate".into()),
            page_size: None,
            filters: vec![],
        };
        let e = s.read_page(&req, None).await.unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::SourceRejected, "{e}");
        assert!(e.to_string().contains("9950"), "{e}");
    }

    #[test]
    fn cursors_round_trip() {
        let c = HsCursor::Search {
            lo: Some(5),
            seen: vec!["1".into()],
            after: 200,
            tail: Some(9),
            tail_ids: vec!["7".into()],
        };
        assert_eq!(
            serde_json::from_value::<HsCursor>(to_value(c.clone()).unwrap()).unwrap(),
            c
        );
        let c = HsCursor::List {
            after: None,
            archived: true,
        };
        assert_eq!(
            serde_json::from_value::<HsCursor>(to_value(c.clone()).unwrap()).unwrap(),
            c
        );
    }
}
