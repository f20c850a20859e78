//! The `rest` connector: any paginated JSON API, configured in the flow's `source.properties`.
//!
//! ```yaml
//! source:
//!   connector: rest
//!   profile: helpdesk            # optional: the secret holding credentials (see auth.rs)
//!   entity: tickets              # one of the endpoints below
//!   properties:
//!     base_url: https://api.example.com/v2
//!     headers: { Accept: application/json }
//!     params: { include: tags }
//!     concurrency: 4             # requests in flight where the paging style allows it
//!     http: { timeout_ms: 30000, max_retries: 5, max_retry_after_seconds: 60,
//!             budget: { requests: 10, per_seconds: 1 } }
//!     endpoints:
//!       tickets:
//!         path: /tickets
//!         records: $.data[*]
//!         primary_key: id
//!         paginator: { type: cursor, token_path: $.meta.next_cursor, param: cursor,
//!                      has_more_path: $.meta.has_more }
//!         incremental: { in: query, set: { updated_since: "{start}" }, cursor_path: $.updated_at }
//!       comments:
//!         path: /tickets/{id}/comments
//!         records: $.comments[*]
//!         parent: { endpoint: tickets, fields: { id: ticket_id } }
//!         ignore_status: [404]
//! ```
//!
//! The cursor handed between chunks is a small JSON object (`{"pages": n, "next": …,
//! "seen": [...]}`): where to resume, how many pages were read (for `max_pages`) and hashes of
//! the page tokens seen, so an API that hands out the same token twice fails instead of looping.

use super::auth::Authenticator;
use super::http::{HttpClient, HttpRequest, HttpResponse, HttpSettings};
use super::*;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{json, Map, Value};
use serde_json_path::JsonPath;
use std::collections::BTreeMap;

const DEFAULT_CONCURRENCY: usize = 4;
/// Page-token hashes kept in the cursor for loop detection.
const SEEN_TOKENS: usize = 512;

/// `source.properties` of a `rest` flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestConfig {
    pub base_url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub concurrency: Option<usize>,
    #[serde(default)]
    pub http: HttpSettings,
    pub endpoints: BTreeMap<String, EndpointConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Relative to `base_url`; `{field}` placeholders are filled from the parent record.
    pub path: String,
    #[serde(default)]
    pub method: Method,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body for POST endpoints (paging and window fields are merged into it).
    #[serde(default)]
    pub body: Option<Map<String, Value>>,
    /// JSONPath selecting the records in a response, e.g. `$.data[*]`.
    pub records: String,
    #[serde(default)]
    pub paginator: Paginator,
    #[serde(default)]
    pub incremental: Option<IncrementalInjection>,
    #[serde(default)]
    pub parent: Option<ParentConfig>,
    #[serde(default)]
    pub primary_key: Option<String>,
    /// Declared fields; without them, `describe` infers fields from a first page.
    #[serde(default)]
    pub fields: Option<Vec<FieldDecl>>,
    /// Statuses that mean "no records here" (e.g. 404 for a parent deleted meanwhile).
    #[serde(default)]
    pub ignore_status: Vec<u16>,
    #[serde(default)]
    pub label: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDecl {
    pub name: String,
    #[serde(rename = "type", default = "FieldDecl::default_type")]
    pub data_type: String,
}

impl FieldDecl {
    fn default_type() -> String {
        "string".into()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParentConfig {
    pub endpoint: String,
    /// Parent field -> child field carried into every child record.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// Where a paging value or window value goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    #[default]
    Query,
    Body,
    Header,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementalInjection {
    #[serde(rename = "in", default)]
    pub placement: Placement,
    /// Name -> template; `{start}` and `{end}` are replaced by the window bounds. A name whose
    /// template uses `{start}` is left out when the window has no start (a first full read).
    pub set: BTreeMap<String, String>,
    /// How bounds are written: `rfc3339` (default), `epoch_seconds`, `epoch_millis`, or a
    /// strftime pattern such as `%Y-%m-%d %H:%M:%S`.
    #[serde(default)]
    pub format: Option<String>,
    /// JSONPath of the record's cursor value, e.g. `$.updated_at`; every record must have it.
    /// Default: `$.<source.incremental.field>`.
    #[serde(default)]
    pub cursor_path: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Paginator {
    /// One request returns everything.
    #[default]
    Single,
    /// The body holds the next page's full URL.
    NextUrl {
        path: String,
        #[serde(default)]
        max_pages: Option<u64>,
    },
    /// RFC 8288 `Link: <…>; rel="next"`.
    LinkHeader {
        #[serde(default = "Paginator::next_rel")]
        rel: String,
        #[serde(default)]
        max_pages: Option<u64>,
    },
    /// An opaque token from the body (`token_path`) or a header (`token_header`), sent back as
    /// `param` in the query, body or a header (`placement`).
    Cursor {
        #[serde(default)]
        token_path: Option<String>,
        #[serde(default)]
        token_header: Option<String>,
        param: String,
        #[serde(rename = "in", default)]
        placement: Placement,
        #[serde(default)]
        has_more_path: Option<String>,
        #[serde(default)]
        max_pages: Option<u64>,
    },
    Offset {
        #[serde(default = "Paginator::offset_param")]
        offset_param: String,
        #[serde(default = "Paginator::limit_param")]
        limit_param: String,
        #[serde(default = "Paginator::limit")]
        limit: u64,
        #[serde(default)]
        total_path: Option<String>,
        #[serde(default)]
        has_more_path: Option<String>,
        #[serde(rename = "in", default)]
        placement: Placement,
        #[serde(default)]
        max_pages: Option<u64>,
    },
    PageNumber {
        #[serde(default = "Paginator::page_param")]
        page_param: String,
        #[serde(default)]
        size_param: Option<String>,
        #[serde(default = "Paginator::limit")]
        size: u64,
        #[serde(default = "Paginator::first_page")]
        first_page: u64,
        /// Total records (`total_path`) or total pages (`total_pages_path`) in the body.
        #[serde(default)]
        total_path: Option<String>,
        #[serde(default)]
        total_pages_path: Option<String>,
        #[serde(default)]
        has_more_path: Option<String>,
        #[serde(rename = "in", default)]
        placement: Placement,
        #[serde(default)]
        max_pages: Option<u64>,
    },
}

impl Paginator {
    fn next_rel() -> String {
        "next".into()
    }
    fn offset_param() -> String {
        "offset".into()
    }
    fn limit_param() -> String {
        "limit".into()
    }
    fn page_param() -> String {
        "page".into()
    }
    fn limit() -> u64 {
        100
    }
    fn first_page() -> u64 {
        1
    }
    fn max_pages(&self) -> Option<u64> {
        match self {
            Paginator::Single => Some(1),
            Paginator::NextUrl { max_pages, .. }
            | Paginator::LinkHeader { max_pages, .. }
            | Paginator::Cursor { max_pages, .. }
            | Paginator::Offset { max_pages, .. }
            | Paginator::PageNumber { max_pages, .. } => *max_pages,
        }
    }
}

/// An endpoint with its JSONPaths compiled.
#[derive(Debug)]
struct Endpoint {
    name: String,
    cfg: EndpointConfig,
    field: String,
    records: JsonPath,
    cursor_path: Option<(String, JsonPath)>,
    token_path: Option<JsonPath>,
    has_more: Option<JsonPath>,
    total: Option<JsonPath>,
    total_pages: Option<JsonPath>,
    next_url: Option<JsonPath>,
}

fn compile(field: &str, path: &str) -> Result<JsonPath, SourceError> {
    JsonPath::parse(path).map_err(|e| {
        SourceError::config(
            field,
            format!("'{path}' is not a valid JSONPath ({e}); e.g. `$.data[*]` or `$.meta.next`"),
        )
    })
}

impl Endpoint {
    fn new(
        name: &str,
        cfg: &EndpointConfig,
        incremental_field: Option<&str>,
    ) -> Result<Self, SourceError> {
        let f = format!("source.properties.endpoints.{name}");
        let opt = |sub: &str, p: &Option<String>| -> Result<Option<JsonPath>, SourceError> {
            p.as_deref()
                .map(|p| compile(&format!("{f}.{sub}"), p))
                .transpose()
        };
        let (token_path, has_more, total, total_pages, next_url) = match &cfg.paginator {
            Paginator::Single | Paginator::LinkHeader { .. } => (None, None, None, None, None),
            Paginator::NextUrl { path, .. } => (
                None,
                None,
                None,
                None,
                Some(compile(&format!("{f}.paginator.path"), path)?),
            ),
            Paginator::Cursor {
                token_path,
                token_header,
                has_more_path,
                ..
            } => {
                if token_path.is_some() == token_header.is_some() {
                    return Err(SourceError::config(
                        format!("{f}.paginator"),
                        "a cursor paginator needs exactly one of token_path (JSONPath in the body, e.g. $.next_cursor) or token_header (e.g. X-Next-Cursor)",
                    ));
                }
                (
                    opt("paginator.token_path", token_path)?,
                    opt("paginator.has_more_path", has_more_path)?,
                    None,
                    None,
                    None,
                )
            }
            Paginator::Offset {
                total_path,
                has_more_path,
                limit,
                ..
            } => {
                if *limit == 0 {
                    return Err(SourceError::config(
                        format!("{f}.paginator.limit"),
                        "must be ≥ 1",
                    ));
                }
                (
                    None,
                    opt("paginator.has_more_path", has_more_path)?,
                    opt("paginator.total_path", total_path)?,
                    None,
                    None,
                )
            }
            Paginator::PageNumber {
                total_path,
                total_pages_path,
                has_more_path,
                size,
                ..
            } => {
                if *size == 0 {
                    return Err(SourceError::config(
                        format!("{f}.paginator.size"),
                        "must be ≥ 1",
                    ));
                }
                (
                    None,
                    opt("paginator.has_more_path", has_more_path)?,
                    opt("paginator.total_path", total_path)?,
                    opt("paginator.total_pages_path", total_pages_path)?,
                    None,
                )
            }
        };
        let cursor_path = match &cfg.incremental {
            None => None,
            Some(inc) => {
                if inc.set.is_empty() {
                    return Err(SourceError::config(
                        format!("{f}.incremental.set"),
                        "name at least one parameter, e.g. {updated_since: \"{start}\"}",
                    ));
                }
                for (k, t) in &inc.set {
                    if !t.contains("{start}") && !t.contains("{end}") {
                        return Err(SourceError::config(
                            format!("{f}.incremental.set.{k}"),
                            "the template must use {start} or {end}",
                        ));
                    }
                }
                let p = inc
                    .cursor_path
                    .clone()
                    .or(incremental_field.map(|f| format!("$.{f}")));
                p.map(|p| {
                    compile(&format!("{f}.incremental.cursor_path"), &p).map(|c| (p.clone(), c))
                })
                .transpose()?
            }
        };
        Ok(Endpoint {
            name: name.into(),
            cfg: cfg.clone(),
            field: f.clone(),
            records: compile(&format!("{f}.records"), &cfg.records)?,
            cursor_path,
            token_path,
            has_more,
            total,
            total_pages,
            next_url,
        })
    }
}

/// The `rest` connector bound to one flow.
pub struct RestSource {
    base: url::Url,
    cfg: RestConfig,
    http: HttpClient,
    endpoints: BTreeMap<String, Endpoint>,
    concurrency: usize,
}

pub(super) fn validate(
    entity: &str,
    props: &serde_json::Map<String, Value>,
) -> Vec<crate::flow::FieldError> {
    match RestConfig::parse(props).and_then(|c| c.check(entity, None)) {
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

impl RestConfig {
    pub fn parse(props: &serde_json::Map<String, Value>) -> Result<Self, SourceError> {
        parse_properties::<RestConfig>(props, None)
    }

    fn check(&self, entity: &str, incremental_field: Option<&str>) -> Result<(), SourceError> {
        let base = url::Url::parse(&self.base_url).map_err(|e| {
            SourceError::config(
                "source.properties.base_url",
                format!(
                    "'{}' is not an absolute URL ({e}); e.g. https://api.example.com/v2",
                    self.base_url
                ),
            )
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(SourceError::config(
                "source.properties.base_url",
                "must be an http or https URL",
            ));
        }
        self.http.validate("source.properties.http")?;
        if self.concurrency == Some(0) {
            return Err(SourceError::config(
                "source.properties.concurrency",
                "must be ≥ 1",
            ));
        }
        if self.endpoints.is_empty() {
            return Err(SourceError::config(
                "source.properties.endpoints",
                "declare at least one endpoint, e.g. tickets: {path: /tickets, records: $.data[*]}",
            ));
        }
        for (name, ep) in &self.endpoints {
            Endpoint::new(name, ep, incremental_field)?;
            if let Some(p) = &ep.parent {
                if p.endpoint == *name || !self.endpoints.contains_key(&p.endpoint) {
                    return Err(SourceError::config(
                        format!("source.properties.endpoints.{name}.parent.endpoint"),
                        format!("'{}' must name another endpoint of this source", p.endpoint),
                    ));
                }
                if self.endpoints[&p.endpoint].parent.is_some() {
                    return Err(SourceError::config(
                        format!("source.properties.endpoints.{name}.parent.endpoint"),
                        "a parent endpoint cannot itself have a parent (one level of nesting)",
                    ));
                }
            }
        }
        if !entity.is_empty() && !self.endpoints.contains_key(entity) {
            return Err(SourceError::config(
                "source.entity",
                format!(
                    "'{entity}' is not an endpoint of this rest source; declared: {}",
                    self.endpoints
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(())
    }
}

impl RestSource {
    pub fn new(
        props: &serde_json::Map<String, Value>,
        incremental_field: Option<&str>,
        auth: Authenticator,
    ) -> Result<Self, SourceError> {
        let cfg = RestConfig::parse(props)?;
        cfg.check("", incremental_field)?;
        let base = url::Url::parse(&cfg.base_url).expect("checked");
        let mut endpoints = BTreeMap::new();
        for (name, ep) in &cfg.endpoints {
            endpoints.insert(name.clone(), Endpoint::new(name, ep, incremental_field)?);
        }
        let http = HttpClient::new(cfg.http.clone(), Arc::new(auth), &cfg.base_url)?;
        Ok(RestSource {
            base,
            concurrency: cfg.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
            cfg,
            http,
            endpoints,
        })
    }

    /// The authenticator (for tests: refresh counts).
    pub fn auth(&self) -> &Authenticator {
        &self.http.auth
    }

    fn endpoint(&self, entity: &str) -> Result<&Endpoint, SourceError> {
        self.endpoints.get(entity).ok_or_else(|| {
            SourceError::config(
                "source.entity",
                format!(
                    "'{entity}' is not an endpoint of this rest source; declared: {}",
                    self.endpoints
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }

    fn url_for(&self, ep: &Endpoint, parent: Option<&Value>) -> Result<String, SourceError> {
        let mut path = ep.cfg.path.clone();
        if let Some(p) = parent {
            let re = regex::Regex::new(r"\{([A-Za-z0-9_.]+)\}").expect("static regex");
            let mut err = None;
            path = re
                .replace_all(&path, |c: &regex::Captures| {
                    match p.get(&c[1]).filter(|v| !v.is_null()) {
                        Some(Value::String(s)) => s.clone(),
                        Some(v) => v.to_string(),
                        None => {
                            err = Some(c[1].to_string());
                            String::new()
                        }
                    }
                })
                .into_owned();
            if let Some(f) = err {
                return Err(SourceError::Rejected {
                    message: format!(
                        "{}: a parent record has no field '{f}' to fill the path {}",
                        ep.field, ep.cfg.path
                    ),
                });
            }
        }
        let base = self.base.as_str().trim_end_matches('/');
        Ok(format!("{base}/{}", path.trim_start_matches('/')))
    }

    fn base_request(&self, ep: &Endpoint, url: String, window: Option<&Window>) -> HttpRequest {
        let mut r = HttpRequest::get(url);
        r.method = match ep.cfg.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        r.query = self
            .cfg
            .params
            .iter()
            .chain(&ep.cfg.params)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        r.headers = self
            .cfg
            .headers
            .iter()
            .chain(&ep.cfg.headers)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        r.ignore_status = ep.cfg.ignore_status.clone();
        if let Some(b) = &ep.cfg.body {
            r.body = Some(Value::Object(b.clone()));
        } else if ep.cfg.method == Method::Post {
            r.body = Some(json!({}));
        }
        if let (Some(inc), Some(w)) = (&ep.cfg.incremental, window) {
            for (name, tpl) in &inc.set {
                if tpl.contains("{start}") && w.start.is_none() {
                    continue;
                }
                let fmt = |t: DateTime<Utc>| format_time(t, inc.format.as_deref());
                let mut v = tpl.replace("{end}", &fmt(w.end));
                if let Some(s) = w.start {
                    v = v.replace("{start}", &fmt(s));
                }
                place(&mut r, inc.placement, name, Value::String(v));
            }
        }
        r
    }

    /// Send one page request; `Ok(None)` when an ignored status answered.
    async fn fetch(&self, r: &HttpRequest) -> Result<Option<HttpResponse>, SourceError> {
        self.http.send(r).await
    }

    /// Records of a response, in-window, as objects.
    fn records(
        &self,
        ep: &Endpoint,
        resp: &HttpResponse,
        window: Option<&Window>,
    ) -> Result<Vec<Value>, SourceError> {
        let mut out = Vec::new();
        for (i, node) in ep.records.query(&resp.body).all().into_iter().enumerate() {
            if !node.is_object() {
                return Err(SourceError::Rejected {
                    message: format!(
                        "{}: `records: {}` selected a {} in the response of {}, not an object; point it at the array of records, e.g. $.data[*]",
                        ep.field,
                        ep.cfg.records,
                        type_name(node),
                        resp.url
                    ),
                });
            }
            if let (Some((p, cp)), Some(w)) = (&ep.cursor_path, window) {
                let v = cp.query(node).first();
                let t = v.and_then(crate::model::parse_time);
                let Some(t) = t else {
                    // Position and type only: messages reach logs, the execution's cause, the
                    // run record and events, which have other readers than the data.
                    return Err(SourceError::Rejected {
                        message: format!(
                            "{}.incremental.cursor_path: record {} of the page from {} has {} at {p}; every record needs a datetime there to place it in the window (fix cursor_path or the flow's incremental.field)",
                            ep.field,
                            i + 1,
                            resp.url,
                            match v {
                                None => "no value".to_string(),
                                Some(v) => format!("{} (not a datetime)", super::normalize::describe(v)),
                            }
                        ),
                    });
                };
                // The API may ignore the window filter: keep only what is inside it.
                if !w.contains(t) {
                    continue;
                }
            }
            out.push(node.clone());
        }
        Ok(out)
    }

    fn first_u64(path: &Option<JsonPath>, body: &Value) -> Option<u64> {
        path.as_ref()?.query(body).first().and_then(|v| match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        })
    }

    fn has_more(ep: &Endpoint, body: &Value) -> Option<bool> {
        ep.has_more.as_ref()?.query(body).first().map(|v| match v {
            Value::Bool(b) => *b,
            Value::Null => false,
            Value::String(s) => s == "true",
            Value::Number(n) => n.as_f64() != Some(0.0),
            _ => true,
        })
    }

    /// Read all pages of one endpoint (for child requests: one parent's children).
    async fn read_all(
        &self,
        ep: &Endpoint,
        parent: Option<&Value>,
        window: Option<&Window>,
        page_size: Option<u32>,
    ) -> Result<(Vec<Value>, u64), SourceError> {
        let mut out = vec![];
        let mut bytes = 0;
        let mut cursor = None;
        loop {
            let p = self
                .read_one(ep, parent, window, page_size, cursor.as_ref(), 1)
                .await?;
            out.extend(p.records);
            bytes += p.bytes;
            match p.next {
                Some(c) => cursor = Some(c),
                None => return Ok((out, bytes)),
            }
        }
    }

    /// One step of an endpoint's pagination: a page, or (offset/page number with a known total)
    /// up to `fan_out` pages fetched concurrently and returned in order.
    async fn read_one(
        &self,
        ep: &Endpoint,
        parent: Option<&Value>,
        window: Option<&Window>,
        page_size: Option<u32>,
        cursor: Option<&Value>,
        fan_out: usize,
    ) -> Result<Page, SourceError> {
        let url = self.url_for(ep, parent)?;
        let c = Cursor::from_value(cursor, &ep.field)?;
        let max_pages = ep.cfg.paginator.max_pages();
        let mut req = self.base_request(ep, url.clone(), window);
        let mut seen = c.seen.clone();
        match &ep.cfg.paginator {
            Paginator::Single => {
                let resp = self.fetch(&req).await?;
                let (records, bytes) = match resp {
                    None => (vec![], 0),
                    Some(r) => (self.records(ep, &r, window)?, r.bytes),
                };
                Ok(Page {
                    records,
                    next: None,
                    bytes,
                })
            }
            Paginator::NextUrl { .. } | Paginator::LinkHeader { .. } => {
                if let Some(Value::String(u)) = &c.next {
                    // The next URL carries every parameter already.
                    req.url = u.clone();
                    req.query.clear();
                }
                let Some(resp) = self.fetch(&req).await? else {
                    return Ok(Page {
                        records: vec![],
                        next: None,
                        bytes: 0,
                    });
                };
                let records = self.records(ep, &resp, window)?;
                let next = match &ep.cfg.paginator {
                    Paginator::NextUrl { .. } => ep
                        .next_url
                        .as_ref()
                        .and_then(|p| p.query(&resp.body).first())
                        .and_then(|v| v.as_str())
                        .filter(|s| !s.is_empty())
                        .map(|s| {
                            // Relative next links resolve against the page's URL.
                            url::Url::parse(&req.url)
                                .and_then(|b| b.join(s))
                                .map(|u| u.to_string())
                                .unwrap_or_else(|_| s.to_string())
                        }),
                    Paginator::LinkHeader { rel, .. } => {
                        match super::link::target(&resp.headers, rel, &req.url, &resp.url)? {
                            super::link::LinkTarget::Found(u) => Some(u),
                            super::link::LinkTarget::NoHeader | super::link::LinkTarget::Absent => {
                                None
                            }
                        }
                    }
                    _ => unreachable!(),
                };
                // The cursor lands in the execution state: never with a credential in it.
                let next = next.map(|u| self.http.auth.strip_credentials(&u));
                let next = self.advance(
                    ep,
                    &resp,
                    &records,
                    c.pages + 1,
                    max_pages,
                    next.map(Value::String),
                    &mut seen,
                )?;
                Ok(Page {
                    bytes: resp.bytes,
                    records,
                    next: next.map(|n| {
                        Cursor {
                            pages: c.pages + 1,
                            next: Some(n),
                            seen,
                            total: None,
                        }
                        .to_value()
                    }),
                })
            }
            Paginator::Cursor {
                token_header,
                param,
                placement,
                ..
            } => {
                if let Some(t) = &c.next {
                    place(&mut req, *placement, param, t.clone());
                }
                let Some(resp) = self.fetch(&req).await? else {
                    return Ok(Page {
                        records: vec![],
                        next: None,
                        bytes: 0,
                    });
                };
                let records = self.records(ep, &resp, window)?;
                let token = match (&ep.token_path, token_header) {
                    (Some(p), _) => p.query(&resp.body).first().cloned(),
                    (None, Some(h)) => resp
                        .headers
                        .get(h)
                        .and_then(|v| v.to_str().ok())
                        .map(|s| Value::String(s.to_string())),
                    _ => None,
                }
                .filter(|t| !t.is_null() && t.as_str() != Some(""));
                if token.is_none() && Self::has_more(ep, &resp.body) == Some(true) {
                    return Err(SourceError::Rejected {
                        message: format!(
                            "{}.paginator: {} says there are more pages but carries no next cursor at {}; check token_path/token_header",
                            ep.field,
                            resp.url,
                            match &ep.cfg.paginator { Paginator::Cursor { token_path: Some(p), .. } => p.clone(), Paginator::Cursor { token_header: Some(h), .. } => format!("header {h}"), _ => String::new() }
                        ),
                    });
                }
                let next = self.advance(
                    ep,
                    &resp,
                    &records,
                    c.pages + 1,
                    max_pages,
                    token,
                    &mut seen,
                )?;
                Ok(Page {
                    bytes: resp.bytes,
                    records,
                    next: next.map(|n| {
                        Cursor {
                            pages: c.pages + 1,
                            next: Some(n),
                            seen,
                            total: None,
                        }
                        .to_value()
                    }),
                })
            }
            Paginator::Offset { .. } | Paginator::PageNumber { .. } => {
                self.read_numbered(ep, req, window, page_size, c, fan_out)
                    .await
            }
        }
    }

    /// Offset and page-number paging: the position is a number, so with a known total the
    /// following pages can be requested concurrently.
    async fn read_numbered(
        &self,
        ep: &Endpoint,
        req: HttpRequest,
        window: Option<&Window>,
        page_size: Option<u32>,
        c: Cursor,
        fan_out: usize,
    ) -> Result<Page, SourceError> {
        let max_pages = ep.cfg.paginator.max_pages();
        let (size, first) = match &ep.cfg.paginator {
            Paginator::Offset { limit, .. } => (page_size.map(u64::from).unwrap_or(*limit), 0),
            Paginator::PageNumber {
                size, first_page, ..
            } => (page_size.map(u64::from).unwrap_or(*size), *first_page),
            _ => unreachable!(),
        };
        let pos = c.next.as_ref().and_then(Value::as_u64).unwrap_or(first);
        // Page i of this step (0-based) is at position pos + i*step.
        let step = match &ep.cfg.paginator {
            Paginator::Offset { .. } => size,
            _ => 1,
        };
        let total_pages = c.total.map(|t| match &ep.cfg.paginator {
            Paginator::Offset { .. } => t.div_ceil(size),
            _ => t,
        });
        let done_pages = match &ep.cfg.paginator {
            Paginator::Offset { .. } => pos / size.max(1),
            _ => pos - first,
        };
        let mut n = if total_pages.is_some() {
            fan_out.max(1) as u64
        } else {
            1
        };
        if let Some(tp) = total_pages {
            n = n.min(tp.saturating_sub(done_pages)).max(1);
        }
        if let Some(m) = max_pages {
            n = n.min(m.saturating_sub(c.pages)).max(1);
        }
        let request_at = |p: u64| {
            let mut r = req.clone();
            match &ep.cfg.paginator {
                Paginator::Offset {
                    offset_param,
                    limit_param,
                    placement,
                    ..
                } => {
                    place(&mut r, *placement, offset_param, json!(p));
                    place(&mut r, *placement, limit_param, json!(size));
                }
                Paginator::PageNumber {
                    page_param,
                    size_param,
                    placement,
                    ..
                } => {
                    place(&mut r, *placement, page_param, json!(p));
                    if let Some(sp) = size_param {
                        place(&mut r, *placement, sp, json!(size));
                    }
                }
                _ => unreachable!(),
            }
            r
        };
        let reqs: Vec<HttpRequest> = (0..n).map(|i| request_at(pos + i * step)).collect();
        // Futures collected first: a stream holding the mapping closure is not `Send` for every
        // lifetime, which `async_trait` requires.
        let futs: Vec<_> = reqs.iter().map(|r| self.fetch(r)).collect();
        let resps: Vec<Option<HttpResponse>> = stream::iter(futs)
            .buffered(self.concurrency.max(1))
            .try_collect()
            .await?;
        let mut records = vec![];
        let mut bytes = 0;
        let mut total = c.total;
        let mut stop = false;
        let mut fetched = 0u64;
        for resp in resps {
            fetched += 1;
            let Some(resp) = resp else {
                stop = true;
                break;
            };
            bytes += resp.bytes;
            let raw_count = ep.records.query(&resp.body).all().len() as u64;
            records.extend(self.records(ep, &resp, window)?);
            if total.is_none() {
                total = match &ep.cfg.paginator {
                    Paginator::Offset { .. } => Self::first_u64(&ep.total, &resp.body),
                    _ => Self::first_u64(&ep.total_pages, &resp.body).or_else(|| {
                        Self::first_u64(&ep.total, &resp.body).map(|t| t.div_ceil(size))
                    }),
                };
            }
            if raw_count == 0 || Self::has_more(ep, &resp.body) == Some(false) {
                stop = true;
                break;
            }
        }
        let pages = c.pages + fetched;
        let next_pos = pos + fetched * step;
        let next_done = done_pages + fetched;
        let total_pages = total.map(|t| match &ep.cfg.paginator {
            Paginator::Offset { .. } => t.div_ceil(size),
            _ => t,
        });
        if total_pages.is_some_and(|tp| next_done >= tp) || max_pages.is_some_and(|m| pages >= m) {
            stop = true;
        }
        Ok(Page {
            records,
            bytes,
            next: (!stop).then(|| {
                Cursor {
                    pages,
                    next: Some(json!(next_pos)),
                    seen: vec![],
                    total,
                }
                .to_value()
            }),
        })
    }

    /// Decide whether token-style paging goes on, checking for repeated tokens.
    #[allow(clippy::too_many_arguments)]
    fn advance(
        &self,
        ep: &Endpoint,
        resp: &HttpResponse,
        records: &[Value],
        pages: u64,
        max_pages: Option<u64>,
        token: Option<Value>,
        seen: &mut Vec<String>,
    ) -> Result<Option<Value>, SourceError> {
        let Some(token) = token else { return Ok(None) };
        if Self::has_more(ep, &resp.body) == Some(false) {
            return Ok(None);
        }
        // An empty page ends paging only when the API gives no explicit has_more.
        if records.is_empty()
            && ep.records.query(&resp.body).all().is_empty()
            && ep.has_more.is_none()
        {
            return Ok(None);
        }
        if max_pages.is_some_and(|m| pages >= m) {
            return Ok(None);
        }
        let h = token_hash(&token);
        if seen.contains(&h) {
            return Err(SourceError::Rejected {
                message: format!(
                    "{}.paginator: {} handed out a page token it had already given (after {pages} pages); the API is looping, stopping instead of reading the same pages forever",
                    ep.field, resp.url
                ),
            });
        }
        seen.push(h);
        if seen.len() > SEEN_TOKENS {
            seen.remove(0);
        }
        Ok(Some(token))
    }

    async fn read_children(
        &self,
        ep: &Endpoint,
        parent_cfg: &ParentConfig,
        req: &ReadRequest,
        cursor: Option<&Value>,
    ) -> Result<Page, SourceError> {
        let parent = self.endpoint(&parent_cfg.endpoint)?;
        // The window selects parents; children are read whole for every parent in it.
        let parents = self
            .read_one(
                parent,
                None,
                req.window.as_ref(),
                req.page_size,
                cursor,
                self.concurrency,
            )
            .await?;
        let futs: Vec<_> = parents
            .records
            .iter()
            .map(|p| self.read_all(ep, Some(p), None, req.page_size))
            .collect();
        let children: Vec<(Vec<Value>, u64)> = stream::iter(futs)
            .buffered(self.concurrency.max(1))
            .try_collect()
            .await?;
        let mut records = vec![];
        let mut bytes = parents.bytes;
        for (p, (rs, b)) in parents.records.iter().zip(children) {
            bytes += b;
            for mut r in rs {
                if let Some(o) = r.as_object_mut() {
                    for (pf, cf) in &parent_cfg.fields {
                        o.insert(cf.clone(), p.get(pf).cloned().unwrap_or(Value::Null));
                    }
                }
                records.push(r);
            }
        }
        Ok(Page {
            records,
            next: parents.next,
            bytes,
        })
    }
}

/// Where an endpoint's pagination stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Cursor {
    #[serde(default)]
    pages: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    seen: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
}

impl Cursor {
    fn from_value(v: Option<&Value>, field: &str) -> Result<Self, SourceError> {
        match v {
            None | Some(Value::Null) => Ok(Cursor::default()),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| SourceError::Fatal {
                message: format!("{field}: the resume cursor {v} is not a rest cursor ({e})"),
            }),
        }
    }
    fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("cursor serializes")
    }
}

fn token_hash(t: &Value) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(t.to_string().as_bytes());
    hex::encode(&d[..8])
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn format_time(t: DateTime<Utc>, format: Option<&str>) -> String {
    match format {
        None | Some("rfc3339") => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        Some("epoch_seconds") => t.timestamp().to_string(),
        Some("epoch_millis") => t.timestamp_millis().to_string(),
        Some(f) => t.format(f).to_string(),
    }
}

/// Put a paging or window value into the query, the JSON body or a header.
fn place(r: &mut HttpRequest, placement: Placement, name: &str, v: Value) {
    let text = match &v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match placement {
        Placement::Query => {
            r.query.retain(|(k, _)| k != name);
            r.query.push((name.to_string(), text));
        }
        Placement::Header => {
            r.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
            r.headers.push((name.to_string(), text));
        }
        Placement::Body => {
            let b = r.body.get_or_insert_with(|| json!({}));
            if let Some(o) = b.as_object_mut() {
                o.insert(name.to_string(), v);
            }
            if r.method == reqwest::Method::GET {
                r.method = reqwest::Method::POST;
            }
        }
    }
}

fn infer_type(v: &Value) -> FieldType {
    match v {
        Value::Bool(_) => FieldType::Boolean,
        Value::Number(n) if n.is_i64() || n.is_u64() => FieldType::Integer,
        Value::Number(_) => FieldType::Float,
        Value::String(s) if DateTime::parse_from_rfc3339(s).is_ok() => FieldType::Timestamp,
        Value::String(_) => FieldType::String,
        Value::Array(a) => FieldType::Array {
            item: Box::new(
                a.iter()
                    .find(|x| !x.is_null())
                    .map(infer_type)
                    .unwrap_or(FieldType::Json),
            ),
        },
        Value::Object(_) | Value::Null => FieldType::Json,
    }
}

fn declared_type(field: &str, t: &str) -> Result<FieldType, SourceError> {
    Ok(match t {
        "string" => FieldType::String,
        "integer" => FieldType::Integer,
        "float" => FieldType::Float,
        "boolean" => FieldType::Boolean,
        "timestamp" => FieldType::Timestamp,
        "date" => FieldType::Date,
        "json" => FieldType::Json,
        other => {
            return Err(SourceError::config(
                field,
                format!("unknown type '{other}'; use string, integer, float, boolean, timestamp, date or json"),
            ))
        }
    })
}

#[async_trait]
impl Source for RestSource {
    async fn list_entities(&self) -> Result<Vec<EntityInfo>, SourceError> {
        Ok(self
            .endpoints
            .values()
            .map(|e| EntityInfo {
                name: e.name.clone(),
                label: e.cfg.label.clone().unwrap_or_else(|| e.name.clone()),
                description: Some(format!(
                    "{} {}",
                    match e.cfg.method {
                        Method::Get => "GET",
                        Method::Post => "POST",
                    },
                    e.cfg.path
                )),
            })
            .collect())
    }

    async fn describe(&self, entity: &str) -> Result<EntityDescription, SourceError> {
        let ep = self.endpoint(entity)?;
        let pk = ep.cfg.primary_key.as_deref();
        let inc = ep
            .cursor_path
            .as_ref()
            .and_then(|(p, _)| p.strip_prefix("$.").map(String::from));
        let mark = |mut f: FieldInfo| {
            if Some(f.name.as_str()) == pk {
                f = f.key();
            }
            if inc.as_deref() == Some(f.name.as_str()) {
                f = f.incremental();
            }
            f
        };
        let fields = match &ep.cfg.fields {
            Some(decl) => decl
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    declared_type(&format!("{}.fields[{i}].type", ep.field), &d.data_type)
                        .map(|t| mark(FieldInfo::new(&d.name, t)))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => {
                let req = ReadRequest {
                    entity: entity.into(),
                    window: None,
                    incremental_field: None,
                    page_size: None,
                    filters: vec![],
                };
                let page = self.read_page(&req, None).await?;
                let mut fields: Vec<FieldInfo> = vec![];
                for r in page.records.iter().filter_map(Value::as_object) {
                    for (k, v) in r {
                        match fields.iter_mut().find(|f| &f.name == k) {
                            Some(f) if f.data_type == FieldType::Json && !v.is_null() => {
                                f.data_type = infer_type(v)
                            }
                            Some(_) => {}
                            None => fields.push(mark(FieldInfo::new(k, infer_type(v)))),
                        }
                    }
                }
                fields
            }
        };
        Ok(EntityDescription {
            entity: entity.into(),
            fields,
        })
    }

    async fn read_page(
        &self,
        req: &ReadRequest,
        cursor: Option<&Value>,
    ) -> Result<Page, SourceError> {
        let ep = self.endpoint(&req.entity)?;
        match &ep.cfg.parent {
            Some(p) => self.read_children(ep, p, req, cursor).await,
            None => {
                self.read_one(
                    ep,
                    None,
                    req.window.as_ref(),
                    req.page_size,
                    cursor,
                    self.concurrency,
                )
                .await
            }
        }
    }
}

/// The `rest` connector in the [registry](super::registry).
pub static CONNECTOR: super::registry::Spec = super::registry::Spec {
    name: "rest",
    appflow_type: Some("CustomConnector"),
    needs_profile: false,
    oauth_client_auth: super::auth::ClientAuth::Basic,
    static_description: true,
    validate,
    build: |source, profile| {
        let auth = match profile {
            Some(p) => p.authenticator()?,
            None => super::auth::Authenticator::none(),
        };
        Ok(Box::new(RestSource::new(
            &source.properties,
            source.incremental.as_ref().map(|i| i.field.as_str()),
            auth,
        )?))
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
        let e = RestConfig::parse(&props(json!({"base_url": "x", "endpoints": {"t": {"path": "/t", "records": "$[*]", "paginater": {}}}}))).unwrap_err();
        assert!(
            e.to_string().contains("source.properties.endpoints.t"),
            "{e}"
        );
        let c = RestConfig::parse(&props(
            json!({"base_url": "http://h", "endpoints": {"t": {"path": "/t", "records": "$[*"}}}),
        ))
        .unwrap();
        let e = c.check("t", None).unwrap_err();
        assert!(e.to_string().contains("endpoints.t.records"), "{e}");
        let c = RestConfig::parse(&props(
            json!({"base_url": "http://h", "endpoints": {"t": {"path": "/t", "records": "$[*]"}}}),
        ))
        .unwrap();
        assert!(c
            .check("users", None)
            .unwrap_err()
            .to_string()
            .contains("source.entity"));
        let c = RestConfig::parse(&props(json!({"base_url": "http://h", "endpoints": {"t": {"path": "/t", "records": "$[*]", "paginator": {"type": "cursor", "param": "c"}}}}))).unwrap();
        assert!(c
            .check("t", None)
            .unwrap_err()
            .to_string()
            .contains("token_path"));
        let c = RestConfig::parse(&props(json!({"base_url": "http://h", "endpoints": {"c": {"path": "/t/{id}/c", "records": "$[*]", "parent": {"endpoint": "nope"}}}}))).unwrap();
        assert!(c
            .check("c", None)
            .unwrap_err()
            .to_string()
            .contains("parent.endpoint"));
    }

    #[test]
    fn window_values_are_formatted_and_placed() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_time(t, None), "2026-01-02T03:04:05Z");
        assert_eq!(format_time(t, Some("epoch_seconds")), "1767323045");
        assert_eq!(format_time(t, Some("%Y-%m-%d")), "2026-01-02");
        let mut r = HttpRequest::get("http://h");
        place(&mut r, Placement::Body, "cursor", json!("abc"));
        assert_eq!(r.body, Some(json!({"cursor": "abc"})));
        assert_eq!(r.method, reqwest::Method::POST);
    }

    #[test]
    fn inference() {
        assert_eq!(
            infer_type(&json!("2026-01-01T00:00:00Z")),
            FieldType::Timestamp
        );
        assert_eq!(infer_type(&json!(3)), FieldType::Integer);
        assert_eq!(
            infer_type(&json!([1.5])),
            FieldType::Array {
                item: Box::new(FieldType::Float)
            }
        );
    }
}
