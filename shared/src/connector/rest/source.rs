//! The rest connector's reads: requests, paging, windows, records.

use super::*;

/// Page-token hashes kept in the cursor for loop detection.
pub(super) const SEEN_TOKENS: usize = 512;

/// An endpoint with its JSONPaths compiled.
#[derive(Debug)]
pub(super) struct Endpoint {
    pub(super) name: String,
    pub(super) cfg: EndpointConfig,
    pub(super) field: String,
    pub(super) records: JsonPath,
    pub(super) cursor_path: Option<(String, JsonPath)>,
    pub(super) token_path: Option<JsonPath>,
    pub(super) has_more: Option<JsonPath>,
    pub(super) total: Option<JsonPath>,
    pub(super) total_pages: Option<JsonPath>,
    pub(super) next_url: Option<JsonPath>,
    /// `derived` fields with their paths compiled.
    pub(super) derived: Vec<(String, JsonPath)>,
    /// Declared fields: records read as values are shaped to them (epoch seconds to
    /// timestamps, numeric text to numbers; see [`super::normalize`]).
    pub(super) declared: Option<Vec<FieldInfo>>,
    /// The records' path and the paging fields' paths as plain field names, when every one of
    /// them is that simple: pages can then be decoded straight to Arrow.
    pub(super) arrow_paths: Option<(Vec<String>, Vec<Vec<String>>)>,
    /// A cursor paginator's `token_path` as plain field names: the next page can be asked for
    /// from the cursor at the end of a page, before its records are decoded ([`super::tail`]).
    pub(super) token_fields: Option<Vec<String>>,
}

pub(super) fn compile(field: &str, path: &str) -> Result<JsonPath, SourceError> {
    JsonPath::parse(path).map_err(|e| {
        SourceError::config(
            field,
            format!("'{path}' is not a valid JSONPath ({e}); e.g. `$.data[*]` or `$.meta.next`"),
        )
    })
}

impl Endpoint {
    pub(super) fn new(
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
                if inc.set.is_empty() && inc.sorted.is_none() {
                    return Err(SourceError::config(
                        format!("{f}.incremental.set"),
                        "name at least one parameter, e.g. {updated_since: \"{start}\"} (or, for an API that sorts newest first and has no such parameter, `sorted: descending`)",
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
        let declared = cfg
            .fields
            .as_ref()
            .map(|decl| declared_fields(&format!("{f}.fields"), decl))
            .transpose()?;
        let derived = cfg
            .derived
            .iter()
            .map(|(k, p)| Ok((k.clone(), compile(&format!("{f}.derived.{k}"), p)?)))
            .collect::<Result<Vec<_>, SourceError>>()?;
        let sorted = cfg.incremental.as_ref().and_then(|i| i.sorted).is_some();
        if sorted
            && matches!(
                cfg.paginator,
                Paginator::Offset { .. } | Paginator::PageNumber { .. }
            )
        {
            return Err(SourceError::config(
                format!("{f}.incremental.sorted"),
                "works with the link_header, next_url, cursor and single paginators (offset and page numbers shift while records change)",
            ));
        }
        // Records that are reshaped, left out or looked at one by one are read as values.
        let plain = derived.is_empty() && cfg.skip_records_with.is_empty() && !sorted;
        let arrow_paths = (|| {
            if !plain {
                return None;
            }
            let records = crate::schema::simple_path(&cfg.records, true)?;
            let meta_paths = match &cfg.paginator {
                Paginator::Single | Paginator::LinkHeader { .. } => vec![],
                Paginator::NextUrl { path, .. } => vec![path.clone()],
                Paginator::Cursor {
                    token_path,
                    has_more_path,
                    ..
                } => token_path.iter().chain(has_more_path).cloned().collect(),
                Paginator::Offset {
                    total_path,
                    has_more_path,
                    ..
                } => total_path.iter().chain(has_more_path).cloned().collect(),
                Paginator::PageNumber {
                    total_path,
                    total_pages_path,
                    has_more_path,
                    ..
                } => total_path
                    .iter()
                    .chain(total_pages_path)
                    .chain(has_more_path)
                    .cloned()
                    .collect(),
            };
            let meta = meta_paths
                .iter()
                .map(|p| crate::schema::simple_path(p, false).filter(|p| !p.is_empty()))
                .collect::<Option<Vec<_>>>()?;
            Some((records, meta))
        })();
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
            derived,
            declared,
            arrow_paths,
            token_fields: match &cfg.paginator {
                Paginator::Cursor {
                    token_path: Some(p),
                    ..
                } => crate::schema::simple_path(p, false).filter(|p| !p.is_empty()),
                _ => None,
            },
        })
    }

    /// How to decode this endpoint's pages straight to Arrow with `schema`, if it can be: with
    /// a window, the record's cursor must be a top-level datetime column (fetch-page filters
    /// on it); returns that column's name too.
    pub(super) fn page_shape(
        &self,
        schema: &arrow::datatypes::SchemaRef,
        window: Option<&Window>,
    ) -> Option<(crate::schema::PageShape, Option<String>)> {
        if self.cfg.parent.is_some() {
            return None;
        }
        let cursor_col = match (window, &self.cursor_path) {
            (None, _) | (Some(_), None) => None,
            (Some(_), Some((p, _))) => {
                let [name] = crate::schema::simple_path(p, false)?.try_into().ok()?;
                let f = schema.field_with_name(&name).ok()?;
                if !matches!(f.data_type(), arrow::datatypes::DataType::Timestamp(..)) {
                    return None;
                }
                Some(name)
            }
        };
        let (records, meta) = self.arrow_paths.clone()?;
        Some((
            crate::schema::PageShape::new(records, meta, schema.clone())?,
            cursor_col,
        ))
    }
}

/// One response's records: as Arrow (decoded straight from the body) or as JSON values.
pub(super) enum Recs {
    Values(Vec<Value>),
    Arrow(arrow::record_batch::RecordBatch),
}

impl Recs {
    pub(super) fn len(&self) -> usize {
        match self {
            Recs::Values(v) => v.len(),
            Recs::Arrow(b) => b.num_rows(),
        }
    }
}

/// What one step of an endpoint's paging read: its responses' records in order.
pub(super) struct StepPage {
    pub(super) recs: Vec<Recs>,
    pub(super) next: Option<Value>,
    pub(super) bytes: u64,
}

impl StepPage {
    pub(super) fn empty() -> Self {
        StepPage {
            recs: vec![],
            next: None,
            bytes: 0,
        }
    }

    pub(super) fn into_page(self) -> Page {
        Page {
            records: self
                .recs
                .into_iter()
                .flat_map(|r| match r {
                    Recs::Values(v) => v,
                    Recs::Arrow(_) => {
                        unreachable!("Arrow records are only asked for by read_page_arrow")
                    }
                })
                .collect(),
            next: self.next,
            bytes: self.bytes,
        }
    }
}

/// The `rest` connector bound to one flow.
pub struct RestSource {
    pub(super) base: url::Url,
    pub(super) cfg: RestConfig,
    pub(super) http: HttpClient,
    pub(super) endpoints: BTreeMap<String, Endpoint>,
    pub(super) concurrency: usize,
    /// Warnings for the run record (fields widened to JSON text by inference).
    pub(super) warnings: std::sync::Mutex<Vec<String>>,
    /// Pages decoded to Arrow so far, and the fields already reported as not in the schema
    /// ([`RestSource::note_unknown_fields`]).
    pub(super) pages_decoded: std::sync::atomic::AtomicU64,
    pub(super) unknown_reported: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Records the caller will still read ([`Source::records_wanted`]), and how many the last
    /// page decoded held: a page is asked for ahead only if the pages being read leave some.
    pub(super) wanted: std::sync::atomic::AtomicU64,
    pub(super) last_page: std::sync::atomic::AtomicU64,
    /// The next cursor page, asked for while this one decodes ([`RestSource::read_ahead`]);
    /// `FERRY_READ_AHEAD=0` (read when the source is built) never asks ahead.
    pub(super) ahead: std::sync::Mutex<Option<Ahead>>,
    pub(super) read_ahead: bool,
    /// The page shape of the last `read_page_arrow`, by (entity, schema, windowed).
    pub(super) shape: std::sync::Mutex<Option<(ShapeKey, Option<PageShapeOf>)>>,
}

type ShapeKey = (String, arrow::datatypes::SchemaRef, bool);
type PageShapeOf = (crate::schema::PageShape, Option<String>);

/// The request of the page after this one, from this page's bytes (`None`: not known before
/// the page decodes, or none): asked for while this page decodes ([`RestSource::read_ahead`]).
pub(super) type NextRequest<'a> = dyn Fn(&[u8]) -> Option<HttpRequest> + Send + Sync + 'a;

/// A page asked for ahead: its request and the task reading it (stopped when dropped unused).
pub(super) struct Ahead {
    req: HttpRequest,
    task: Option<tokio::task::JoinHandle<Result<Option<HttpResponse>, SourceError>>>,
}

impl Drop for Ahead {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// The keys of a page's records (as values) that `schema` does not have.
fn unknown_keys(ep: &Endpoint, body: &Value, schema: &arrow::datatypes::Schema) -> Vec<String> {
    let mut unknown = vec![];
    for r in ep.records.query(body).all() {
        if let Some(o) = r.as_object() {
            unknown.extend(
                o.keys()
                    .filter(|k| schema.field_with_name(k).is_err())
                    .cloned(),
            );
        }
    }
    unknown
}

/// Of the pages arrow-json decoded straight to Arrow (those the scanner gave back), the first and
/// every this many after it are also read as JSON values, to find fields the inferred schema does
/// not have (~3 % more decode time); the scanner names them from every page it reads.
const UNKNOWN_FIELDS_EVERY: u64 = 32;

impl RestSource {
    pub fn new(
        props: &serde_json::Map<String, Value>,
        incremental_field: Option<&str>,
        auth: Authenticator,
    ) -> Result<Self, SourceError> {
        let cfg = RestConfig::parse(props)?;
        cfg.check("", incremental_field)?;
        let base = url::Url::parse(&cfg.base_url).map_err(|e| {
            SourceError::config(
                "source.properties.base_url",
                format!("is not a URL ({e}); write it as https://api.example.com"),
            )
        })?;
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
            warnings: Default::default(),
            pages_decoded: Default::default(),
            unknown_reported: Default::default(),
            wanted: std::sync::atomic::AtomicU64::new(u64::MAX),
            last_page: Default::default(),
            ahead: Default::default(),
            read_ahead: std::env::var_os("FERRY_READ_AHEAD").is_none_or(|v| v != "0"),
            shape: Default::default(),
        })
    }

    /// The authenticator (for tests: refresh counts).
    pub fn auth(&self) -> &Authenticator {
        &self.http.auth
    }

    pub(super) fn endpoint(&self, entity: &str) -> Result<&Endpoint, SourceError> {
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

    pub(super) fn url_for(
        &self,
        ep: &Endpoint,
        parent: Option<&Value>,
    ) -> Result<String, SourceError> {
        let mut path = ep.cfg.path.clone();
        if let Some(p) = parent {
            let mut err = None;
            path = PLACEHOLDER
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

    pub(super) fn base_request(
        &self,
        ep: &Endpoint,
        url: String,
        window: Option<&Window>,
    ) -> HttpRequest {
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
    pub(super) async fn fetch(&self, r: &HttpRequest) -> Result<Option<HttpResponse>, SourceError> {
        self.http.send(r).await
    }

    /// Send one page request and take its records: with `shape`, straight from the body's
    /// bytes to Arrow (the window is applied later, on the Arrow column); otherwise, or when
    /// the page does not fit the shape (a record of another type), as JSON values in the
    /// window. Also returns how many records the response held. `Ok(None)`: an ignored status.
    pub(super) async fn fetch_records(
        &self,
        ep: &Endpoint,
        req: &HttpRequest,
        window: Option<&Window>,
        shape: Option<&(crate::schema::PageShape, Option<String>)>,
        next: Option<&NextRequest<'_>>,
    ) -> Result<Option<(HttpResponse, Recs, usize)>, SourceError> {
        let resp = match shape {
            None => self.fetch(req).await?,
            Some((shape, cursor_col)) => {
                // Asked for ahead, unless that task stopped or panicked: then ask now.
                let ahead = match self.take_ahead(req) {
                    Some(task) => task.await.ok(),
                    None => None,
                };
                let sent = match ahead {
                    Some(r) => r?,
                    None => self.http.send_raw(req).await?,
                };
                let Some(mut resp) = sent else {
                    return Ok(None);
                };
                let body = std::mem::take(&mut resp.body);
                let body_text = body.as_str().unwrap_or_default();
                let text = body_text.as_bytes();
                if let Some(next) = next {
                    if let Some(r) = next(text) {
                        self.read_ahead(r);
                        // Let the request go out before this page decodes: a task spawned from
                        // a worker waits in its slot that no other worker takes, and the decode
                        // below does not yield.
                        tokio::task::yield_now().await;
                    }
                }
                let decoded = shape.decode(body_text);
                // The scanner names every page's unknown keys; a page arrow-json decoded is read
                // as values too when sampled (and, should it not decode, once only).
                let sampled = match &decoded {
                    Ok(page) if page.unknown.is_some() => None,
                    _ => {
                        let n = self
                            .pages_decoded
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        (n % UNKNOWN_FIELDS_EVERY == 0 || decoded.is_err())
                            .then(|| serde_json::from_slice::<Value>(text))
                    }
                };
                if let Some(Ok(v)) = &sampled {
                    self.note_unknown_fields(ep, unknown_keys(ep, v, shape.record_schema()));
                }
                if let Ok(page) = decoded {
                    if let Some(keys) = page.unknown {
                        self.note_unknown_fields(ep, keys);
                    }
                    // A record without its cursor value: the values path names it.
                    let complete = cursor_col.as_ref().is_none_or(|c| {
                        page.batch
                            .column_by_name(c)
                            .is_some_and(|a| a.null_count() == 0)
                    });
                    if complete {
                        resp.body = page.meta;
                        let n = page.batch.num_rows();
                        self.last_page
                            .store(n as u64, std::sync::atomic::Ordering::Relaxed);
                        return Ok(Some((resp, Recs::Arrow(page.batch), n)));
                    }
                }
                if text.iter().all(u8::is_ascii_whitespace) {
                    resp.body = Value::Null;
                    Some(resp)
                } else {
                    let noted = sampled.is_some();
                    match sampled.unwrap_or_else(|| serde_json::from_slice(text)) {
                        Ok(v) => {
                            if !noted {
                                let keys = unknown_keys(ep, &v, shape.record_schema());
                                self.note_unknown_fields(ep, keys);
                            }
                            resp.body = v;
                            Some(resp)
                        }
                        // Truncated: the standard path asks again, retrying as it does.
                        Err(e) if e.is_eof() => self.fetch(req).await?,
                        Err(e) => {
                            let s = String::from_utf8_lossy(&text[..text.len().min(200)])
                                .replace(['\n', '\r'], " ");
                            return Err(SourceError::Rejected {
                                message: format!(
                                    "{} {} answered {} with a body that is not valid JSON ({e}); it starts with: {s}{}",
                                    req.method,
                                    resp.url,
                                    resp.status,
                                    if text.len() > 200 { "…" } else { "" }
                                ),
                            });
                        }
                    }
                }
            }
        };
        let Some(resp) = resp else { return Ok(None) };
        let raw = ep.records.query(&resp.body).all().len();
        let recs = self.records(ep, &resp, window)?;
        Ok(Some((resp, Recs::Values(recs), raw)))
    }

    /// Ask for `req` now, on a task of its own, while this page decodes: the next read that
    /// sends exactly this request takes its answer instead ([`RestSource::take_ahead`]); any
    /// other request, or the source being dropped, stops it. The request goes through the same
    /// client (rate limit, retries, auth) as it would have a moment later.
    fn read_ahead(&self, req: HttpRequest) {
        let http = self.http.clone();
        let r = req.clone();
        let task = tokio::spawn(async move { http.send_raw(&r).await });
        *self.ahead.lock().unwrap_or_else(|e| e.into_inner()) = Some(Ahead {
            req,
            task: Some(task),
        });
    }

    /// Whether the caller will want a page after the `reading` records it is reading now.
    fn reads_ahead(&self, reading: u64) -> bool {
        self.read_ahead && reading < self.wanted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The answer to `req` if it was asked for ahead.
    fn take_ahead(
        &self,
        req: &HttpRequest,
    ) -> Option<tokio::task::JoinHandle<Result<Option<HttpResponse>, SourceError>>> {
        let mut a = self.ahead.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        if a.req == *req {
            a.task.take()
        } else {
            None
        }
    }

    /// Say which fields of a page's records the run's schema does not have, once each: with
    /// inferred fields (none declared) the schema comes from the first page, so a field that
    /// first appears later is not written — never silently.
    fn note_unknown_fields(&self, ep: &Endpoint, unknown: Vec<String>) {
        if ep.cfg.fields.is_some() || unknown.is_empty() {
            return;
        }
        let unknown: std::collections::BTreeSet<String> = unknown.into_iter().collect();
        let mut reported = self
            .unknown_reported
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let new: Vec<String> = unknown
            .into_iter()
            .filter(|k| reported.insert(k.clone()))
            .collect();
        if new.is_empty() {
            return;
        }
        let w = format!(
            "{}: records carry fields the run's schema does not have ({}), so they are not written: the schema was inferred from the first page; declare them under {}.fields to keep them",
            ep.field,
            new.join(", "),
            ep.field
        );
        tracing::warn!(endpoint = %ep.name, "{w}");
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(w);
    }

    /// Records of a response, in-window, as objects.
    pub(super) fn records(
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
            let mut rec = node.clone();
            if !ep.derived.is_empty() {
                if let Some(o) = rec.as_object_mut() {
                    for (k, path) in &ep.derived {
                        let v = path.query(node).first().cloned().unwrap_or(Value::Null);
                        o.insert(k.clone(), v);
                    }
                }
            }
            if ep
                .cfg
                .skip_records_with
                .iter()
                .any(|k| rec.get(k).is_some_and(|v| !v.is_null()))
            {
                continue;
            }
            let node = &rec;
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
            // A record that does not fit its declared fields is kept as it came: fetch-page
            // rejects it alone, naming the field.
            match &ep.declared {
                Some(fields) => out.push(shape_declared(&rec, fields).unwrap_or(rec)),
                None => out.push(rec),
            }
        }
        Ok(out)
    }

    /// For an endpoint whose records come newest first (`incremental.sorted: descending`):
    /// whether this response reached the window's start, so no later page can hold a record
    /// inside the window.
    pub(super) fn passed_start(ep: &Endpoint, body: &Value, window: Option<&Window>) -> bool {
        let (Some(inc), Some(start)) = (&ep.cfg.incremental, window.and_then(|w| w.start)) else {
            return false;
        };
        if inc.sorted != Some(SortOrder::Descending) {
            return false;
        }
        let Some((_, cp)) = &ep.cursor_path else {
            return false;
        };
        ep.records.query(body).all().into_iter().any(|node| {
            let mut rec = node.clone();
            if let Some(o) = rec.as_object_mut() {
                for (k, path) in &ep.derived {
                    let v = path.query(node).first().cloned().unwrap_or(Value::Null);
                    o.insert(k.clone(), v);
                }
            }
            cp.query(&rec)
                .first()
                .and_then(crate::model::parse_time)
                .is_some_and(|t| t <= start)
        })
    }

    pub(super) fn first_u64(path: &Option<JsonPath>, body: &Value) -> Option<u64> {
        path.as_ref()?.query(body).first().and_then(|v| match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        })
    }

    pub(super) fn has_more(ep: &Endpoint, body: &Value) -> Option<bool> {
        ep.has_more.as_ref()?.query(body).first().map(|v| match v {
            Value::Bool(b) => *b,
            Value::Null => false,
            Value::String(s) => s == "true",
            Value::Number(n) => n.as_f64() != Some(0.0),
            _ => true,
        })
    }

    /// Read all pages of one endpoint (for child requests: one parent's children).
    pub(super) async fn read_all(
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
                .read_one(ep, parent, window, page_size, cursor.as_ref(), 1, None)
                .await?
                .into_page();
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
    pub(super) async fn read_one(
        &self,
        ep: &Endpoint,
        parent: Option<&Value>,
        window: Option<&Window>,
        page_size: Option<u32>,
        cursor: Option<&Value>,
        fan_out: usize,
        shape: Option<&(crate::schema::PageShape, Option<String>)>,
    ) -> Result<StepPage, SourceError> {
        let url = self.url_for(ep, parent)?;
        let c = Cursor::from_value(cursor, &ep.field)?;
        let max_pages = ep.cfg.paginator.max_pages();
        let mut req = self.base_request(ep, url.clone(), window);
        let mut seen = c.seen.clone();
        match &ep.cfg.paginator {
            Paginator::Single => Ok(match self.fetch_records(ep, &req, window, shape, None).await? {
                None => StepPage::empty(),
                Some((r, recs, _)) => StepPage {
                    recs: vec![recs],
                    next: None,
                    bytes: r.bytes,
                },
            }),
            Paginator::NextUrl { .. } | Paginator::LinkHeader { .. } => {
                if let Some(Value::String(u)) = &c.next {
                    // The next URL carries every parameter already.
                    req.url = u.clone();
                    req.query.clear();
                }
                let Some((resp, recs, raw)) =
                    self.fetch_records(ep, &req, window, shape, None).await?
                else {
                    return Ok(StepPage::empty());
                };
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
                let next = next.filter(|_| !Self::passed_start(ep, &resp.body, window));
                let next = self.advance(
                    ep,
                    &resp,
                    recs.len(),
                    raw,
                    c.pages + 1,
                    max_pages,
                    next.map(Value::String),
                    &mut seen,
                )?;
                Ok(StepPage {
                    bytes: resp.bytes,
                    recs: vec![recs],
                    next: next
                        .map(|n| {
                            Cursor {
                                pages: c.pages + 1,
                                next: Some(n),
                                seen,
                                total: None,
                            }
                            .to_value()
                        })
                        .transpose()?,
                })
            }
            Paginator::Cursor {
                token_header,
                param,
                placement,
                ..
            } => {
                let base = req.clone();
                if let Some(t) = &c.next {
                    place(&mut req, *placement, param, t.clone());
                }
                // The next page's request, from a cursor read off the end of this page: asked
                // for while this one decodes, when the caller will want it and paging goes on.
                let next_request = |body: &[u8]| {
                    let t = super::tail::tail_value(body, ep.token_fields.as_deref()?)
                        .filter(|t| !t.is_null() && t.as_str() != Some(""))?;
                    let mut r = base.clone();
                    place(&mut r, *placement, param, t);
                    Some(r)
                };
                // (This page likely holds as many records as the last one.)
                let ahead = self
                    .reads_ahead(self.last_page.load(std::sync::atomic::Ordering::Relaxed))
                    && max_pages.is_none_or(|m| c.pages + 1 < m);
                let next: Option<&NextRequest<'_>> = ahead.then_some(&next_request);
                let Some((resp, recs, raw)) =
                    self.fetch_records(ep, &req, window, shape, next).await?
                else {
                    return Ok(StepPage::empty());
                };
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
                if Self::passed_start(ep, &resp.body, window) {
                    return Ok(StepPage {
                        bytes: resp.bytes,
                        recs: vec![recs],
                        next: None,
                    });
                }
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
                    recs.len(),
                    raw,
                    c.pages + 1,
                    max_pages,
                    token,
                    &mut seen,
                )?;
                Ok(StepPage {
                    bytes: resp.bytes,
                    recs: vec![recs],
                    next: next
                        .map(|n| {
                            Cursor {
                                pages: c.pages + 1,
                                next: Some(n),
                                seen,
                                total: None,
                            }
                            .to_value()
                        })
                        .transpose()?,
                })
            }
            Paginator::Offset { .. } | Paginator::PageNumber { .. } => {
                self.read_numbered(ep, req, window, page_size, c, fan_out, shape)
                    .await
            }
        }
    }

    /// Offset and page-number paging: the position is a number, so with a known total the
    /// following pages can be requested concurrently.
    pub(super) async fn read_numbered(
        &self,
        ep: &Endpoint,
        req: HttpRequest,
        window: Option<&Window>,
        page_size: Option<u32>,
        c: Cursor,
        fan_out: usize,
        shape: Option<&(crate::schema::PageShape, Option<String>)>,
    ) -> Result<StepPage, SourceError> {
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
        // With a known total, the next step's first page is asked for when this step's last
        // page has arrived, while it decodes (a step's pages are decoded one after another).
        let next_pos = pos + n * step;
        let ahead = shape.is_some()
            && self.reads_ahead(n * size)
            && total_pages.is_some_and(|tp| done_pages + n < tp)
            && max_pages.is_none_or(|m| c.pages + n < m);
        let next_request = |_: &[u8]| Some(request_at(next_pos));
        // Futures collected first: a stream holding the mapping closure is not `Send` for every
        // lifetime, which `async_trait` requires.
        let futs: Vec<_> = reqs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let next: Option<&NextRequest<'_>> =
                    (ahead && i as u64 == n - 1).then_some(&next_request);
                self.fetch_records(ep, r, window, shape, next)
            })
            .collect();
        let resps: Vec<Option<(HttpResponse, Recs, usize)>> = stream::iter(futs)
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
            let Some((resp, recs, raw_count)) = resp else {
                stop = true;
                break;
            };
            bytes += resp.bytes;
            let raw_count = raw_count as u64;
            records.push(recs);
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
        Ok(StepPage {
            recs: records,
            bytes,
            next: (!stop)
                .then(|| {
                    Cursor {
                        pages,
                        next: Some(json!(next_pos)),
                        seen: vec![],
                        total,
                    }
                    .to_value()
                })
                .transpose()?,
        })
    }

    /// Decide whether token-style paging goes on, checking for repeated tokens.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn advance(
        &self,
        ep: &Endpoint,
        resp: &HttpResponse,
        kept: usize,
        raw: usize,
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
        if kept == 0 && raw == 0 && ep.has_more.is_none() {
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

    pub(super) async fn read_children(
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
                None,
            )
            .await?
            .into_page();
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
pub(super) struct Cursor {
    #[serde(default)]
    pub(super) pages: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) next: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) seen: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) total: Option<u64>,
}

impl Cursor {
    pub(super) fn from_value(v: Option<&Value>, field: &str) -> Result<Self, SourceError> {
        match v {
            None | Some(Value::Null) => Ok(Cursor::default()),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| SourceError::Fatal {
                message: format!("{field}: the resume cursor {v} is not a rest cursor ({e})"),
            }),
        }
    }
    pub(super) fn to_value(&self) -> Result<Value, SourceError> {
        super::cursor_json(self)
    }
}

/// A `{field}` placeholder of a child endpoint's path.
pub(super) static PLACEHOLDER: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    #[allow(
        clippy::expect_used,
        reason = "a constant pattern; every child-endpoint test compiles it"
    )]
    regex::Regex::new(r"\{([A-Za-z0-9_.]+)\}").expect("static regex")
});

pub(super) fn token_hash(t: &Value) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(t.to_string().as_bytes());
    hex::encode(&d[..8])
}

pub(super) fn format_time(t: DateTime<Utc>, format: Option<&str>) -> String {
    match format {
        None | Some("rfc3339") => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        Some("epoch_seconds") => t.timestamp().to_string(),
        Some("epoch_millis") => t.timestamp_millis().to_string(),
        Some(f) => t.format(f).to_string(),
    }
}

/// Put a paging or window value into the query, the JSON body or a header.
pub(super) fn place(r: &mut HttpRequest, placement: Placement, name: &str, v: Value) {
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
            Some(decl) => declared_fields(&format!("{}.fields", ep.field), decl)?
                .into_iter()
                .map(mark)
                .collect(),
            None => {
                let req = ReadRequest {
                    entity: entity.into(),
                    window: None,
                    incremental_field: None,
                    page_size: None,
                    filters: vec![],
                };
                let page = self.read_page(&req, None).await?;
                let mut warnings = vec![];
                let fields = infer_fields(&page.records, &mut warnings)
                    .into_iter()
                    .map(mark)
                    .collect();
                for w in &warnings {
                    tracing::warn!(endpoint = %ep.name, "{w}");
                }
                self.warnings
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(warnings);
                fields
            }
        };
        Ok(EntityDescription {
            entity: entity.into(),
            fields,
        })
    }

    /// Time slices for endpoints that send the window to the API (`incremental.set` with
    /// `{start}`): each slice asks for its own `(start, end]`. Two at once by default: a generic
    /// API's rate limits are unknown, `source.parallelism` raises it.
    fn slicing(&self, entity: &str) -> Slicing {
        match self.endpoint(entity) {
            Ok(ep) => match &ep.cfg.incremental {
                // Both ends sent: a slice asks for its own window. With only a start (GitHub's
                // `since`) every slice would read on to the present, each re-reading the next.
                Some(inc)
                    if inc.set.values().any(|t| t.contains("{start}"))
                        && inc.set.values().any(|t| t.contains("{end}")) =>
                {
                    Slicing::Time { parallelism: 2 }
                }
                _ => Slicing::None,
            },
            Err(_) => Slicing::None,
        }
    }

    fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn records_wanted(&self, records: u64) {
        self.wanted
            .store(records, std::sync::atomic::Ordering::Relaxed);
    }

    async fn read_page(
        &self,
        req: &ReadRequest,
        cursor: Option<&Value>,
    ) -> Result<Page, SourceError> {
        let ep = self.endpoint(&req.entity)?;
        match &ep.cfg.parent {
            Some(p) => self.read_children(ep, p, req, cursor).await,
            None => self
                .read_one(
                    ep,
                    None,
                    req.window.as_ref(),
                    req.page_size,
                    cursor,
                    self.concurrency,
                    None,
                )
                .await
                .map(StepPage::into_page),
        }
    }

    async fn read_page_arrow(
        &self,
        req: &ReadRequest,
        cursor: Option<&Value>,
        schema: &arrow::datatypes::SchemaRef,
    ) -> Result<Option<ArrowPage>, SourceError> {
        let ep = self.endpoint(&req.entity)?;
        // One shape per entity, schema and window kind for the source's life: its decoder
        // (and the room it grew) is reused page after page.
        let key = (req.entity.clone(), schema.clone(), req.window.is_some());
        let cached = {
            let c = self.shape.lock().unwrap_or_else(|e| e.into_inner());
            c.as_ref().filter(|(k, _)| *k == key).map(|(_, s)| s.clone())
        };
        let shape = match cached {
            Some(s) => s,
            None => {
                let s = ep.page_shape(schema, req.window.as_ref());
                *self.shape.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, s.clone()));
                s
            }
        };
        let Some(shape) = shape else {
            return Ok(None);
        };
        let step = self
            .read_one(
                ep,
                None,
                req.window.as_ref(),
                req.page_size,
                cursor,
                self.concurrency,
                Some(&shape),
            )
            .await?;
        Ok(Some(ArrowPage {
            parts: step
                .recs
                .into_iter()
                .map(|r| match r {
                    Recs::Arrow(b) => PageRecords::Arrow(b),
                    Recs::Values(v) => PageRecords::Values(v),
                })
                .collect(),
            next: step.next,
            bytes: step.bytes,
        }))
    }
}
