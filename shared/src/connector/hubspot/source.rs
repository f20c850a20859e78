//! The hubspot connector's reads: requests, paging, windows, records.

use super::*;

/// Results one search query can page through.
pub const SEARCH_CAP: u64 = 10_000;
pub(super) const LIST_MAX: u32 = 100;
pub(super) const SEARCH_MAX: u32 = 200;

/// Where a read stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub(super) enum HsCursor {
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
    pub(super) cfg: HubSpotConfig,
    pub(super) base: String,
    pub(super) http: HttpClient,
    pub(super) meta: tokio::sync::Mutex<HashMap<String, std::sync::Arc<ObjectMeta>>>,
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

    pub(super) async fn send(&self, r: HttpRequest) -> Result<HttpResponse, SourceError> {
        self.http.send(&r).await?.ok_or_else(|| SourceError::Fatal {
            message: "an ignored status answered a HubSpot request".into(),
        })
    }

    pub(super) fn object(
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

    pub(super) async fn object_meta(
        &self,
        entity: &str,
    ) -> Result<std::sync::Arc<ObjectMeta>, SourceError> {
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
    pub(super) fn selected(
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
    pub(super) fn search_property(
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

    pub(super) fn record(
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

    pub(super) fn page_size(&self, req: &ReadRequest, max: u32) -> u32 {
        req.page_size
            .or(self.cfg.page_size)
            .unwrap_or(max)
            .clamp(1, max)
    }

    pub(super) fn after_phase(&self, archived: bool) -> Option<HsCursor> {
        (!archived && self.cfg.include_archived).then_some(HsCursor::List {
            after: None,
            archived: true,
        })
    }

    pub(super) async fn read_list(
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
    pub(super) async fn read_search(
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

pub(super) fn results(resp: &HttpResponse) -> Result<&Vec<Value>, SourceError> {
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

pub(super) fn next_after(resp: &HttpResponse) -> Option<String> {
    match resp.body.pointer("/paging/next/after")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The search filters of a window on `prop` (epoch milliseconds): `GT start` — or `GTE lo`
/// where a read past the search cap resumes at a modified time — and `LTE end`.
pub(super) fn window_filters(prop: &str, window: &Window, lo: Option<i64>) -> Vec<Value> {
    let mut filters = vec![];
    match (lo, window.start) {
        (Some(l), _) => filters.push(json!({"propertyName": prop, "operator": "GTE", "value": l.to_string()})),
        (None, Some(s)) => filters.push(json!({"propertyName": prop, "operator": "GT", "value": s.timestamp_millis().to_string()})),
        (None, None) => {}
    }
    filters.push(json!({"propertyName": prop, "operator": "LTE", "value": window.end.timestamp_millis().to_string()}));
    filters
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
