//! The zendesk connector's reads: requests, paging, windows, records.

use super::*;

/// The export refuses start times newer than this many seconds ago.
pub(super) const MIN_START_AGE_SECONDS: i64 = 61;
/// Boundary keys kept in the cursor at most.
pub(super) const MAX_BOUNDARY_KEYS: usize = 2000;

/// Where reading an entity stands between pages (opaque to the engine).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct ZCursor {
    /// Export `after_cursor` to resume from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) cursor: Option<String>,
    /// Time-based export: the next `start_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) start_time: Option<i64>,
    /// Cursor pagination: `page[after]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) after: Option<String>,
    /// `id@timestamp` of the previous page's items stamped with its last timestamp: repeated
    /// at the next page's start and dropped there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) boundary: Vec<String>,
    #[serde(default)]
    pub(super) pages: u64,
}

/// The zendesk connector bound to one flow.
pub struct ZendeskSource {
    pub(super) base: String,
    pub(super) cfg: ZendeskConfig,
    pub(super) http: HttpClient,
}

impl ZendeskSource {
    pub fn new(props: &Map<String, Value>, auth: Authenticator) -> Result<Self, SourceError> {
        let cfg = ZendeskConfig::parse(props)?;
        let base = cfg.base();
        let http = HttpClient::new(cfg.http.clone(), Arc::new(auth), &base)?;
        Ok(ZendeskSource { base, cfg, http })
    }

    pub(super) fn page_size(&self, def: &EntityDef, req: &ReadRequest) -> u32 {
        let max = match def.api {
            Api::CursorList => MAX_LIST_PAGE,
            _ => MAX_EXPORT_PAGE,
        };
        req.page_size
            .or(self.cfg.page_size)
            .unwrap_or(max)
            .clamp(1, max)
    }

    /// The first `start_time` of an export: the window start floored to the second (the
    /// export is inclusive, the window exclusive), no later than a minute ago.
    pub(super) fn first_start_time(window: Option<&Window>, now: DateTime<Utc>) -> i64 {
        let start = window
            .and_then(|w| w.start)
            .map(|s| s.timestamp())
            .unwrap_or(0);
        start.min(now.timestamp() - MIN_START_AGE_SECONDS).max(0)
    }

    pub(super) fn request(&self, def: &EntityDef, req: &ReadRequest, c: &ZCursor) -> HttpRequest {
        let mut r = HttpRequest::get(format!("{}{}", self.base, def.path));
        let size = self.page_size(def, req).to_string();
        match def.api {
            Api::CursorExport => {
                match &c.cursor {
                    Some(cur) => r.query.push(("cursor".into(), cur.clone())),
                    None => r.query.push((
                        "start_time".into(),
                        Self::first_start_time(req.window.as_ref(), Utc::now()).to_string(),
                    )),
                }
                r.query.push(("per_page".into(), size));
                if def.name == "tickets" && self.cfg.exclude_deleted {
                    r.query.push(("exclude_deleted".into(), "true".into()));
                }
            }
            Api::TimeExport => {
                let st = c
                    .start_time
                    .unwrap_or_else(|| Self::first_start_time(req.window.as_ref(), Utc::now()));
                r.query.push(("start_time".into(), st.to_string()));
                r.query.push(("per_page".into(), size));
            }
            Api::CursorList => {
                r.query.push(("page[size]".into(), size));
                if let Some(a) = &c.after {
                    r.query.push(("page[after]".into(), a.clone()));
                }
            }
        }
        r
    }

    pub(super) fn rejected(&self, url: &str, what: impl std::fmt::Display) -> SourceError {
        SourceError::Rejected {
            message: format!("zendesk: {url}: {what}"),
        }
    }
}

pub(super) fn boundary_key(r: &Value, sort_field: &str) -> Option<(String, DateTime<Utc>)> {
    let id = r.get("id")?;
    let t = normalize::time(r.get(sort_field)?)?;
    Some((format!("{id}@{}", t.timestamp_micros()), t))
}

#[async_trait]
impl Source for ZendeskSource {
    /// The entities, after one authenticated call (`GET /api/v2/users/me.json`, "Show Self")
    /// proves the profile works: a refused credential is `AuthFailed`, not a list.
    /// <https://developer.zendesk.com/api-reference/ticketing/users/users/>
    async fn list_entities(&self) -> Result<Vec<EntityInfo>, SourceError> {
        let mut r = HttpRequest::get(format!("{}/api/v2/users/me.json", self.base));
        r.headers = vec![("Accept".into(), "application/json".into())];
        let resp = self
            .http
            .send(&r)
            .await?
            .ok_or_else(|| SourceError::Fatal {
                message: "an ignored status answered a Zendesk request".into(),
            })?;
        // Without valid credentials Show Self answers the anonymous user (no id).
        let user = resp.body.get("user");
        if user.and_then(|u| u.get("id")).is_none_or(Value::is_null) {
            return Err(self.http.auth.auth_error(format!(
                "{} answered as the anonymous user: the credentials were not accepted; put an admin's `email/token` and API token (or an OAuth token) into the profile's secret",
                resp.url
            )));
        }
        let admin = user.and_then(|u| u.get("role")).and_then(Value::as_str) == Some("admin");
        Ok(ENTITIES
            .iter()
            .map(|e| EntityInfo {
                name: e.name.into(),
                label: e.label.into(),
                description: Some(if admin || !e.path.contains("/incremental/") {
                    format!("GET {}{}", self.base, e.path)
                } else {
                    format!(
                        "GET {}{} (admin only: the profile's user is not an admin)",
                        self.base, e.path
                    )
                }),
            })
            .collect())
    }

    async fn describe(&self, entity: &str) -> Result<EntityDescription, SourceError> {
        let def = entity_def(entity)?;
        Ok(EntityDescription {
            entity: entity.into(),
            fields: (def.fields)(),
        })
    }

    async fn read_page(
        &self,
        req: &ReadRequest,
        cursor: Option<&Value>,
    ) -> Result<Page, SourceError> {
        let def = entity_def(&req.entity)?;
        let c: ZCursor = super::cursor_from("zendesk", cursor)?.unwrap_or_default();
        let request = self.request(def, req, &c);
        let resp = self
            .http
            .send(&request)
            .await?
            .ok_or_else(|| SourceError::Fatal {
                message: format!("{}: no response to read", def.key),
            })?;
        let body = &resp.body;
        let items = match body.get(def.key) {
            Some(Value::Array(a)) => a,
            _ => {
                return Err(self.rejected(
                    &resp.url,
                    format!(
                        "the response has no `{}` array; it starts with {}",
                        def.key,
                        snippet(body)
                    ),
                ))
            }
        };
        let fields = (def.fields)();
        let inc_field = req
            .incremental_field
            .clone()
            .unwrap_or_else(|| "updated_at".into());
        let previous: std::collections::HashSet<&str> =
            c.boundary.iter().map(String::as_str).collect();
        let mut records = Vec::with_capacity(items.len());
        let mut last_t: Option<DateTime<Utc>> = None;
        let mut keys: Vec<(String, DateTime<Utc>)> = Vec::new();
        let mut fresh = 0usize;
        // Messages name a record by its position in the page, never by a value (its id included).
        for (n, item) in items.iter().enumerate() {
            if let Some((k, t)) = boundary_key(item, def.sort_field) {
                if previous.contains(k.as_str()) {
                    continue; // repeated at the page boundary
                }
                last_t = last_t.max(Some(t));
                keys.push((k, t));
                fresh += 1;
            }
            let rec = normalize::shape(item, &fields).map_err(|why| {
                self.rejected(&resp.url, format!("{} {n} of the page: {why}", def.name))
            })?;
            if let Some(w) = &req.window {
                let t = rec.get(&inc_field).and_then(normalize::time);
                match t {
                    Some(t) if w.contains(t) => {}
                    Some(_) => continue,
                    None => {
                        return Err(self.rejected(
                            &resp.url,
                            format!(
                                "{} {n} of the page has no datetime in `{inc_field}`, the flow's incremental field; pick a field every record has (updated_at)",
                                def.name
                            ),
                        ))
                    }
                }
            }
            records.push(rec);
        }
        // Items of the page's last second: the next page may repeat them.
        let mut boundary: Vec<String> = keys
            .into_iter()
            .filter(|(_, t)| Some(*t) == last_t)
            .map(|(k, _)| k)
            .collect();
        if boundary.len() > MAX_BOUNDARY_KEYS {
            boundary.drain(..boundary.len() - MAX_BOUNDARY_KEYS);
        }
        let pages = c.pages + 1;
        let next = match def.api {
            Api::CursorExport => {
                if body
                    .get("end_of_stream")
                    .and_then(Value::as_bool)
                    .unwrap_or(true)
                {
                    None
                } else {
                    let after = body
                        .get("after_cursor")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| self.rejected(&resp.url, "end_of_stream is false but there is no after_cursor to continue from"))?;
                    if c.cursor.as_deref() == Some(after) {
                        return Err(self.rejected(&resp.url, format!("the export handed back the cursor it was given (after {pages} pages); the API is looping")));
                    }
                    Some(ZCursor {
                        cursor: Some(after.into()),
                        boundary,
                        pages,
                        ..Default::default()
                    })
                }
            }
            Api::TimeExport => {
                if body
                    .get("end_of_stream")
                    .and_then(Value::as_bool)
                    .unwrap_or(true)
                {
                    None
                } else {
                    let end_time = body
                        .get("end_time")
                        .and_then(|v| {
                            v.as_i64()
                                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                        })
                        .ok_or_else(|| {
                            self.rejected(
                                &resp.url,
                                "end_of_stream is false but there is no end_time to continue from",
                            )
                        })?;
                    let current = request
                        .query
                        .iter()
                        .find(|(k, _)| k == "start_time")
                        .and_then(|(_, v)| v.parse::<i64>().ok())
                        .unwrap_or(0);
                    if end_time <= current && fresh == 0 {
                        return Err(self.rejected(&resp.url, format!("the time-based export does not advance past start_time={current}: more items share that second than one page holds; set source.properties.page_size to {MAX_EXPORT_PAGE}")));
                    }
                    Some(ZCursor {
                        start_time: Some(end_time),
                        boundary,
                        pages,
                        ..Default::default()
                    })
                }
            }
            Api::CursorList => {
                let meta = body.get("meta");
                let more = meta
                    .and_then(|m| m.get("has_more"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if !more {
                    None
                } else {
                    let after = meta
                        .and_then(|m| m.get("after_cursor"))
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| {
                            self.rejected(
                                &resp.url,
                                "meta.has_more is true but meta.after_cursor is missing",
                            )
                        })?;
                    if c.after.as_deref() == Some(after) {
                        return Err(self.rejected(&resp.url, format!("the list handed back the cursor it was given (after {pages} pages); the API is looping")));
                    }
                    Some(ZCursor {
                        after: Some(after.into()),
                        pages,
                        ..Default::default()
                    })
                }
            }
        };
        Ok(Page {
            records,
            next: next.map(|n| super::cursor_json(&n)).transpose()?,
            bytes: resp.bytes,
        })
    }
}

pub(super) fn snippet(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}
