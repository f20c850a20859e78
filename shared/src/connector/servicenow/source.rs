//! The servicenow connector's reads: requests, paging, windows, records.

use super::*;

/// Pages read when listing tables or columns before giving up (a looping `Link` header).
pub(super) const MAX_META_PAGES: usize = 1000;

/// The ServiceNow source bound to one flow.
pub struct ServiceNowSource {
    pub(super) cfg: ServiceNowConfig,
    pub(super) base: String,
    pub(super) display: DisplayValue,
    pub(super) http: HttpClient,
    pub(super) meta: tokio::sync::Mutex<HashMap<String, std::sync::Arc<TableMeta>>>,
}

/// Where a read stands: after `(t, id)` (a window) or after `id` (complete), plus an offset
/// past pages that came back empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct SnCursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) after_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) after_id: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) offset: u64,
    /// Reading `sys_audit_delete` (after the live rows, with `include_deleted`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) deleted: bool,
}

pub(super) fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ServiceNowSource {
    pub fn new(props: &Map<String, Value>, auth: Authenticator) -> Result<Self, SourceError> {
        let cfg = ServiceNowConfig::parse(props)?;
        let display = cfg.check("")?;
        let base = cfg.instance_url.trim_end_matches('/').to_string();
        let http = HttpClient::new(cfg.http.clone(), std::sync::Arc::new(auth), &base)?;
        Ok(ServiceNowSource {
            cfg,
            base,
            display,
            http,
            meta: Default::default(),
        })
    }

    /// The authenticator (for tests: refresh counts).
    pub fn auth(&self) -> &Authenticator {
        &self.http.auth
    }

    pub(super) async fn get(
        &self,
        table: &str,
        query: Vec<(String, String)>,
    ) -> Result<HttpResponse, SourceError> {
        let mut r = HttpRequest::get(format!("{}/api/now/table/{table}", self.base));
        r.query = query;
        r.headers = vec![("Accept".into(), "application/json".into())];
        self.http.send(&r).await?.ok_or_else(|| SourceError::Fatal {
            message: "an ignored status answered a ServiceNow request".into(),
        })
    }

    pub(super) async fn get_url(&self, url: &str) -> Result<HttpResponse, SourceError> {
        let mut r = HttpRequest::get(url);
        r.headers = vec![("Accept".into(), "application/json".into())];
        self.http.send(&r).await?.ok_or_else(|| SourceError::Fatal {
            message: "an ignored status answered a ServiceNow request".into(),
        })
    }

    /// Every row of a metadata query, following the `Link` header.
    pub(super) async fn get_all(
        &self,
        table: &str,
        query: Vec<(String, String)>,
    ) -> Result<Vec<Map<String, Value>>, SourceError> {
        let mut out = vec![];
        let mut resp = self.get(table, query).await?;
        for _ in 0..MAX_META_PAGES {
            let rows = result_rows(&resp)?;
            let empty = rows.is_empty();
            out.extend(rows);
            match super::link::target(&resp.headers, "next", &self.base, &resp.url)? {
                LinkTarget::Found(next) if !empty => resp = self.get_url(&next).await?,
                _ => return Ok(out),
            }
        }
        Err(SourceError::Rejected {
            message: format!(
                "{table}: the Link header kept naming a next page after {MAX_META_PAGES} pages"
            ),
        })
    }

    /// The table and its ancestors (`super_class`), the table first.
    pub(super) async fn table_chain(&self, table: &str) -> Result<Vec<String>, SourceError> {
        let mut chain = vec![];
        let mut cur = table.to_string();
        while chain.len() < 16 && !cur.is_empty() && !chain.contains(&cur) {
            let rows = self
                .get(
                    "sys_db_object",
                    vec![
                        ("sysparm_query".into(), format!("name={cur}")),
                        (
                            "sysparm_fields".into(),
                            "name,label,super_class.name".into(),
                        ),
                        ("sysparm_exclude_reference_link".into(), "true".into()),
                        ("sysparm_limit".into(), "1".into()),
                    ],
                )
                .await?;
            let rows = result_rows(&rows)?;
            let Some(row) = rows.first() else {
                if chain.is_empty() {
                    return Err(SourceError::config(
                        "source.entity",
                        format!("'{table}' is not a table of this instance (no sys_db_object row), or the profile's user cannot read it; `ferry entities` lists the tables"),
                    ));
                }
                break;
            };
            // A name query on an unknown name is ignored by the instance: check the answer.
            if text(row.get("name")) != Some(cur.as_str()) {
                return Err(SourceError::Rejected {
                    message: format!(
                        "sys_db_object answered a row for '{}' when asked for '{cur}'",
                        text(row.get("name")).unwrap_or("")
                    ),
                });
            }
            chain.push(cur.clone());
            cur = text(row.get("super_class.name")).unwrap_or("").to_string();
        }
        Ok(chain)
    }

    pub(super) async fn table_meta(
        &self,
        table: &str,
    ) -> Result<std::sync::Arc<TableMeta>, SourceError> {
        if let Some(m) = self.meta.lock().await.get(table) {
            return Ok(m.clone());
        }
        let chain = self.table_chain(table).await?;
        let rows = self
            .get_all(
                "sys_dictionary",
                vec![
                    (
                        "sysparm_query".into(),
                        format!(
                            "nameIN{}^elementISNOTEMPTY^internal_type!=collection^ORDERBYelement",
                            chain.join(",")
                        ),
                    ),
                    (
                        "sysparm_fields".into(),
                        "name,element,column_label,internal_type".into(),
                    ),
                    ("sysparm_exclude_reference_link".into(), "true".into()),
                    ("sysparm_limit".into(), "1000".into()),
                ],
            )
            .await?;
        // A column defined on the table overrides the one it inherits.
        let depth = |t: &str| chain.iter().position(|c| c == t).unwrap_or(usize::MAX);
        let mut best: BTreeMap<String, (usize, FieldType, Option<String>)> = BTreeMap::new();
        for r in &rows {
            let (Some(el), Some(t)) = (text(r.get("element")), text(r.get("name"))) else {
                continue;
            };
            let d = depth(t);
            if d == usize::MAX {
                continue;
            }
            let ty = sn_type(text(r.get("internal_type")).unwrap_or("string"));
            let label = text(r.get("column_label"))
                .filter(|s| !s.is_empty())
                .map(String::from);
            if best.get(el).is_none_or(|(bd, _, _)| d < *bd) {
                best.insert(el.to_string(), (d, ty, label));
            }
        }
        let mut columns: Vec<Column> = vec![];
        if let Some((_, t, l)) = best.remove("sys_id") {
            columns.push(("sys_id".into(), t, l));
        } else {
            columns.push(("sys_id".into(), FieldType::String, Some("Sys ID".into())));
        }
        columns.extend(best.into_iter().map(|(k, (_, t, l))| (k, t, l)));
        let types = columns
            .iter()
            .map(|(k, t, _)| (k.clone(), t.clone()))
            .collect();
        let m = std::sync::Arc::new(TableMeta { columns, types });
        self.meta.lock().await.insert(table.to_string(), m.clone());
        Ok(m)
    }

    /// The columns this flow reads (checked against the dictionary: the instance ignores
    /// unknown names in sysparm_fields).
    pub(super) fn selected<'a>(
        &self,
        meta: &'a TableMeta,
        table: &str,
        must: &[&str],
    ) -> Result<Vec<&'a Column>, SourceError> {
        self.check_query(meta, table)?;
        let Some(fs) = &self.cfg.fields else {
            return Ok(meta.columns.iter().collect());
        };
        for (i, f) in fs.iter().enumerate() {
            if !meta.types.contains_key(f) {
                return Err(SourceError::config(
                    format!("source.properties.fields[{i}]"),
                    format!("'{f}' is not a column of {table} (the Table API would silently leave it out); `ferry entities describe` lists the columns"),
                ));
            }
        }
        Ok(meta
            .columns
            .iter()
            .filter(|(k, _, _)| k == "sys_id" || fs.contains(k) || must.contains(&k.as_str()))
            .collect())
    }

    pub(super) fn page_size(&self, req: &ReadRequest) -> u32 {
        req.page_size
            .or(self.cfg.page_size)
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .clamp(1, MAX_PAGE_SIZE)
    }

    /// The encoded query of one page.
    pub(super) fn encoded_query(
        &self,
        field: Option<&str>,
        window: Option<&Window>,
        c: &SnCursor,
    ) -> String {
        let mut base: Vec<String> = vec![];
        if let Some(q) = self.cfg.query.as_deref().filter(|q| !q.trim().is_empty()) {
            base.push(q.trim_matches('^').to_string());
        }
        keyset_query(base, field, window, c)
    }

    /// Every field the flow's encoded query names must be a column of the table: the instance
    /// silently drops a condition on an unknown field and returns every row.
    pub(super) fn check_query(&self, meta: &TableMeta, table: &str) -> Result<(), SourceError> {
        let Some(q) = self.cfg.query.as_deref() else {
            return Ok(());
        };
        for (field, term) in query_fields(q)? {
            // A dot-walk (`caller_id.name`) starts at a reference column of this table.
            let head = field.split('.').next().unwrap_or(&field);
            if !meta.types.contains_key(head) {
                return Err(SourceError::config(
                    "source.properties.query",
                    format!(
                        "'{head}' (in the condition `{term}`) is not a column of {table}: the Table API would silently ignore that condition and return every row; fix the field name (`ferry entities FLOW --describe {table}` lists the columns)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// One record as ferry writes it: typed actual values, display values as asked.
    pub(super) fn normalize(
        &self,
        meta: &TableMeta,
        raw: &Map<String, Value>,
        inc: Option<&str>,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        for (k, v) in raw {
            let ty = meta.types.get(k).cloned().unwrap_or(FieldType::String);
            match self.display {
                DisplayValue::False => {
                    out.insert(k.clone(), coerce(actual(v), &ty));
                }
                DisplayValue::True => {
                    let val =
                        if Some(k.as_str()) == inc || k == "sys_id" || ty == FieldType::Timestamp {
                            coerce(actual(v), &ty)
                        } else {
                            coerce(display(v), &FieldType::String)
                        };
                    out.insert(k.clone(), val);
                }
                DisplayValue::All => {
                    out.insert(k.clone(), coerce(actual(v), &ty));
                    out.insert(
                        format!("{k}_display"),
                        coerce(display(v), &FieldType::String),
                    );
                }
            }
        }
        if self.cfg.include_deleted {
            out.insert("sys_deleted".into(), Value::Bool(false));
        }
        out
    }
}

/// `base` conditions ANDed with the window on `field` and the keyset after the cursor, ordered
/// for keyset paging.
pub(super) fn keyset_query(
    base: Vec<String>,
    field: Option<&str>,
    window: Option<&Window>,
    c: &SnCursor,
) -> String {
    let mut base = base;
    if let (Some(f), Some(w)) = (field, window) {
        if let Some(s) = w.start {
            base.push(format!("{f}>{}", s.format(SN_TIME)));
        }
        base.push(format!("{f}<={}", w.end.format(SN_TIME)));
    }
    let with = |extra: &[String]| {
        base.iter()
            .chain(extra)
            .cloned()
            .collect::<Vec<_>>()
            .join("^")
    };
    match (
        field.filter(|_| window.is_some()),
        &c.after_time,
        &c.after_id,
    ) {
        (Some(f), Some(t), Some(id)) => format!(
            "{}^NQ{}^ORDERBY{f}^ORDERBYsys_id",
            with(&[format!("{f}>{t}")]),
            with(&[format!("{f}={t}"), format!("sys_id>{id}")])
        ),
        (Some(f), _, _) => with(&[format!("ORDERBY{f}"), "ORDERBYsys_id".into()]),
        (None, _, Some(id)) => with(&[format!("sys_id>{id}"), "ORDERBYsys_id".into()]),
        (None, _, None) => with(&["ORDERBYsys_id".into()]),
    }
}

/// The fields an encoded query's conditions name, with the condition they appear in.
/// Conditions are separated by `^` (`^OR` starts an alternative); a condition is a field name
/// (lower-case letters, digits, `_`, and `.` for dot-walks) followed by an operator
/// (`=`, `!=`, `>`, `IN`, `LIKE`, `STARTSWITH`, `ISEMPTY`, …).
/// <https://servicenow.github.io/sdk/guides/encoded-query-guide>
pub(super) fn query_fields(q: &str) -> Result<Vec<(String, String)>, SourceError> {
    let mut out = vec![];
    for term in q.split('^').map(str::trim).filter(|t| !t.is_empty()) {
        // `EQ` ends a query in URLs copied from list views; it names no field.
        if term == "EQ" {
            continue;
        }
        let cond = term.strip_prefix("OR").unwrap_or(term);
        let end = cond
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'))
            .unwrap_or(cond.len());
        let (field, op) = cond.split_at(end);
        if field.is_empty() || op.is_empty() || field.starts_with('.') || field.ends_with('.') {
            return Err(SourceError::config(
                "source.properties.query",
                format!(
                    "`{term}` is not a condition ferry can check (a lower-case field name followed by an operator, e.g. active=true or priority<=2); conditions are joined with ^ (AND) or ^OR"
                ),
            ));
        }
        out.push((field.to_string(), term.to_string()));
    }
    Ok(out)
}

/// `result` rows of a Table API answer.
pub(super) fn result_rows(resp: &HttpResponse) -> Result<Vec<Map<String, Value>>, SourceError> {
    let rows = resp
        .body
        .get("result")
        .and_then(Value::as_array)
        .ok_or_else(|| SourceError::Rejected {
            message: format!(
                "{} answered {} without a `result` array",
                resp.url, resp.status
            ),
        })?;
    rows.iter()
        .map(|r| {
            r.as_object().cloned().ok_or_else(|| SourceError::Rejected {
                message: format!("{}: a `result` element is not an object", resp.url),
            })
        })
        .collect()
}

/// Whether a Table API answer names a next page: `Some(true/false)` from its `Link` header
/// (RFC 8288, raw commas and all), `None` when it has no `Link` header.
pub(super) fn link_more(resp: &HttpResponse, req_url: &str) -> Result<Option<bool>, SourceError> {
    Ok(
        match super::link::target(&resp.headers, "next", req_url, &resp.url)? {
            LinkTarget::NoHeader => None,
            LinkTarget::Absent => Some(false),
            LinkTarget::Found(_) => Some(true),
        },
    )
}

#[async_trait]
impl Source for ServiceNowSource {
    async fn list_entities(&self) -> Result<Vec<EntityInfo>, SourceError> {
        let rows = self
            .get_all(
                "sys_db_object",
                vec![
                    ("sysparm_query".into(), "nameISNOTEMPTY^ORDERBYname".into()),
                    (
                        "sysparm_fields".into(),
                        "name,label,super_class.name".into(),
                    ),
                    ("sysparm_exclude_reference_link".into(), "true".into()),
                    ("sysparm_limit".into(), "1000".into()),
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let name = text(r.get("name"))?.to_string();
                let parent = text(r.get("super_class.name")).filter(|s| !s.is_empty());
                Some(EntityInfo {
                    label: text(r.get("label"))
                        .filter(|s| !s.is_empty())
                        .unwrap_or(&name)
                        .to_string(),
                    description: parent.map(|p| format!("extends {p}")),
                    name,
                })
            })
            .collect())
    }

    async fn describe(&self, entity: &str) -> Result<EntityDescription, SourceError> {
        let meta = self.table_meta(entity).await?;
        let must = ["sys_updated_on"];
        let mut fields = vec![];
        for (name, ty, label) in self.selected(&meta, entity, &must)? {
            let shown = match self.display {
                DisplayValue::True if name != "sys_id" && *ty != FieldType::Timestamp => {
                    FieldType::String
                }
                _ => ty.clone(),
            };
            let mut f = FieldInfo::new(name, shown.clone());
            f.label = label.clone();
            if name == "sys_id" {
                f = f.key();
            }
            if shown == FieldType::Timestamp {
                f = f.incremental();
            }
            fields.push(f);
            if self.display == DisplayValue::All {
                fields.push(FieldInfo::new(
                    &format!("{name}_display"),
                    FieldType::String,
                ));
            }
        }
        if self.cfg.include_deleted {
            fields.push(FieldInfo::new("sys_deleted", FieldType::Boolean).required());
        }
        Ok(EntityDescription {
            entity: entity.into(),
            fields,
        })
    }

    /// Time slices of the window field: each slice's `sysparm_query` bounds both ends
    /// (`field>start^field<=end`), and so does its read of deleted rows. Four at once by
    /// default: each slice is one request at a time, well inside the per-instance inbound REST
    /// rate-limit rules and semaphores an instance has by default (a 429 backs the slice off).
    fn slicing(&self, _entity: &str) -> Slicing {
        Slicing::Time { parallelism: 4 }
    }

    async fn fetch_metadata(&self, entity: &str) -> Result<Option<Value>, SourceError> {
        super::stage_metadata("servicenow", &*self.table_meta(entity).await?)
    }

    fn use_fetch_metadata(&mut self, entity: &str, data: &Value) -> Result<(), SourceError> {
        let m: TableMeta = super::staged_metadata("servicenow", data)?;
        self.meta
            .get_mut()
            .insert(entity.to_string(), std::sync::Arc::new(m));
        Ok(())
    }

    async fn read_page(
        &self,
        req: &ReadRequest,
        cursor: Option<&Value>,
    ) -> Result<Page, SourceError> {
        let table = req.entity.as_str();
        let meta = self.table_meta(table).await?;
        let field = req
            .incremental_field
            .as_deref()
            .filter(|_| req.window.is_some());
        if let Some(f) = field {
            match meta.types.get(f) {
                Some(FieldType::Timestamp) => {}
                Some(_) => {
                    return Err(SourceError::config(
                        "source.incremental.field",
                        format!("'{f}' is not a date/time column of {table}; use sys_updated_on"),
                    ))
                }
                None => {
                    return Err(SourceError::config(
                        "source.incremental.field",
                        format!("'{f}' is not a column of {table} (the instance would ignore the window filter and return every row); use sys_updated_on"),
                    ))
                }
            }
        }
        let must: Vec<&str> = field.into_iter().collect();
        let selected = self.selected(&meta, table, &must)?;
        let c: SnCursor = super::cursor_from("servicenow", cursor)?.unwrap_or_default();
        if c.deleted {
            return self.read_deleted(req, field, c).await;
        }
        let limit = self.page_size(req);
        let mut query = vec![
            (
                "sysparm_query".to_string(),
                self.encoded_query(field, req.window.as_ref(), &c),
            ),
            ("sysparm_limit".into(), limit.to_string()),
            ("sysparm_exclude_reference_link".into(), "true".into()),
            (
                "sysparm_display_value".into(),
                match self.display {
                    DisplayValue::False => "false",
                    // Display values for every column but the keys: ask for both.
                    DisplayValue::True | DisplayValue::All => "all",
                }
                .into(),
            ),
        ];
        if self.cfg.fields.is_some() {
            query.push((
                "sysparm_fields".into(),
                selected
                    .iter()
                    .map(|(k, _, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ));
        }
        if c.offset > 0 {
            query.push(("sysparm_offset".into(), c.offset.to_string()));
        }
        let resp = self.get(table, query).await?;
        let rows = result_rows(&resp)?;
        // The end of data is the absence of a `Link rel="next"`; only an instance that sends no
        // Link header at all is read until a short page.
        let more = link_more(&resp, &self.base)?.unwrap_or(rows.len() as u32 >= limit);
        let mut records = Vec::with_capacity(rows.len());
        let mut last: Option<(Option<String>, String)> = None;
        for (n, raw) in rows.iter().enumerate() {
            let id = text(raw.get("sys_id"))
                .filter(|s| !s.is_empty())
                .ok_or_else(|| SourceError::Rejected {
                    message: format!("{}: a {table} row has no sys_id", resp.url),
                })?;
            let key_time = match field {
                None => None,
                Some(f) => {
                    let t = text(raw.get(f)).unwrap_or("");
                    let Some(parsed) = parse_sn_time(t) else {
                        return Err(SourceError::Rejected {
                            message: format!(
                                "{}: row {n} of the page of {table} has {} in {f}; every row needs a UTC date/time (YYYY-MM-DD HH:MM:SS) there to place it in the window",
                                resp.url,
                                // The value itself is customer data: not in the message.
                                if t.is_empty() { "no value" } else { "a value that is not a date/time" }
                            ),
                        });
                    };
                    // The instance drops invalid query parts: keep only what is in the window.
                    if let Some(w) = &req.window {
                        if w.contains(parsed) {
                            records.push(Value::Object(self.normalize(&meta, raw, field)));
                        }
                    }
                    Some(t.to_string())
                }
            };
            if field.is_none() {
                records.push(Value::Object(self.normalize(&meta, raw, None)));
            }
            last = Some((key_time, id.to_string()));
        }
        let next = match last {
            Some((t, id)) => {
                // The page must move past the keyset; if it does not, the paging condition
                // was ignored and the same rows would come back forever.
                let stuck = c
                    .after_id
                    .as_ref()
                    .is_some_and(|pid| (&c.after_time, pid) >= (&t, &id));
                if stuck {
                    return Err(SourceError::Rejected {
                        message: format!(
                            "{}: the page did not move past the last row read; the instance ignored the paging condition, stopping instead of reading the same rows again",
                            resp.url
                        ),
                    });
                }
                more.then_some(SnCursor {
                    after_time: t,
                    after_id: Some(id),
                    offset: 0,
                    deleted: false,
                })
            }
            None => more.then(|| SnCursor {
                offset: c.offset + limit as u64,
                ..c.clone()
            }),
        };
        // After the live rows, the deleted ones.
        let next = next.or_else(|| {
            self.cfg.include_deleted.then(|| SnCursor {
                deleted: true,
                ..Default::default()
            })
        });
        Ok(Page {
            records,
            next: next.map(|n| super::cursor_json(&n)).transpose()?,
            bytes: resp.bytes,
        })
    }
}

impl ServiceNowSource {
    /// One page of the table's deleted records: `sys_audit_delete` rows whose `tablename` is
    /// the table, by deletion time (`sys_created_on`, the window applies to it) and sys_id.
    /// Each becomes `{sys_id: documentkey, <incremental field>: deleted at, sys_deleted: true}`.
    /// <https://support.servicenow.com/kb?id=kb_article_view&sysparm_article=KB0724183>,
    /// <https://hi.service-now.com/kb_view.do?sysparm_article=KB0634666>
    pub(super) async fn read_deleted(
        &self,
        req: &ReadRequest,
        field: Option<&str>,
        c: SnCursor,
    ) -> Result<Page, SourceError> {
        let table = req.entity.as_str();
        let limit = self.page_size(req);
        let key = field.map(|_| "sys_created_on");
        let mut query = vec![
            (
                "sysparm_query".to_string(),
                keyset_query(
                    vec![format!("tablename={table}")],
                    key,
                    req.window.as_ref(),
                    &c,
                ),
            ),
            ("sysparm_limit".into(), limit.to_string()),
            (
                "sysparm_fields".into(),
                "sys_id,tablename,documentkey,sys_created_on".into(),
            ),
            ("sysparm_exclude_reference_link".into(), "true".into()),
        ];
        if c.offset > 0 {
            query.push(("sysparm_offset".into(), c.offset.to_string()));
        }
        let resp = self.get("sys_audit_delete", query).await?;
        let rows = result_rows(&resp)?;
        let more = link_more(&resp, &self.base)?.unwrap_or(rows.len() as u32 >= limit);
        let inc = req.incremental_field.as_deref().unwrap_or("sys_updated_on");
        let mut records = vec![];
        let mut last: Option<(Option<String>, String)> = None;
        for r in &rows {
            let (Some(id), Some(doc), Some(at)) = (
                text(r.get("sys_id")).filter(|s| !s.is_empty()),
                text(r.get("documentkey")).filter(|s| !s.is_empty()),
                text(r.get("sys_created_on")).and_then(parse_sn_time),
            ) else {
                return Err(SourceError::Rejected {
                    message: format!("{}: a sys_audit_delete row lacks sys_id, documentkey or a sys_created_on date/time", resp.url),
                });
            };
            // The instance drops conditions on fields it does not know: keep the table's rows
            // in the window only.
            let ours = text(r.get("tablename")) == Some(table);
            if ours && req.window.as_ref().is_none_or(|w| w.contains(at)) {
                let mut o = Map::new();
                o.insert("sys_id".into(), Value::String(doc.into()));
                o.insert(
                    inc.into(),
                    Value::String(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                );
                o.insert("sys_deleted".into(), Value::Bool(true));
                records.push(Value::Object(o));
            }
            last = Some((
                key.and(text(r.get("sys_created_on")).map(String::from)),
                id.to_string(),
            ));
        }
        let next = match last {
            Some((t, id)) => {
                if c.after_id.is_some()
                    && (c.after_time.clone(), c.after_id.clone()) >= (t.clone(), Some(id.clone()))
                {
                    return Err(SourceError::Rejected {
                        message: format!("{}: the page did not move past the last sys_audit_delete row read; the instance ignored the paging condition, stopping instead of looping", resp.url),
                    });
                }
                more.then_some(SnCursor {
                    after_time: t,
                    after_id: Some(id),
                    offset: 0,
                    deleted: true,
                })
            }
            None => more.then(|| SnCursor {
                offset: c.offset + limit as u64,
                ..c.clone()
            }),
        };
        Ok(Page {
            records,
            next: next.map(|n| super::cursor_json(&n)).transpose()?,
            bytes: resp.bytes,
        })
    }
}
