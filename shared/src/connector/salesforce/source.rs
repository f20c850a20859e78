//! The salesforce connector's reads: requests, paging, windows, records.

use super::*;

/// Where the pages of a read come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "api", rename_all = "snake_case")]
pub(super) enum Cursor {
    /// The next `nextRecordsUrl` (a path on the instance).
    Rest { next: String },
    /// A Bulk API 2.0 query job; `locator` is the next result set (`None`: the first).
    Bulk {
        job: String,
        version: String,
        #[serde(default)]
        complete: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        locator: Option<String>,
    },
}

/// The `salesforce` connector bound to one flow.
pub struct SalesforceSource {
    pub(super) cfg: SalesforceConfig,
    pub(super) http: HttpClient,
    pub(super) incremental_field: Option<String>,
    pub(super) described: tokio::sync::Mutex<HashMap<String, Described>>,
    pub(super) raw_describes: tokio::sync::Mutex<HashMap<String, Arc<Vec<Value>>>>,
}

/// Salesforce error bodies: `[{"message": …, "errorCode": …}]`.
pub(super) fn error_hook(status: u16, body: &[u8]) -> Option<SourceError> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let first = match &v {
        Value::Array(a) => a.first()?.clone(),
        Value::Object(_) => v.clone(),
        _ => return None,
    };
    let code = first.get("errorCode").and_then(Value::as_str)?;
    let message = first.get("message").and_then(Value::as_str).unwrap_or("");
    match code {
        "REQUEST_LIMIT_EXCEEDED" => Some(SourceError::Throttled {
            message: format!(
                "Salesforce answered {status} REQUEST_LIMIT_EXCEEDED ({message}): the org's API request limit is used up; the chunk ends here and is retried later"
            ),
            retry_after: None,
        }),
        "INVALID_FIELD" | "MALFORMED_QUERY" | "INVALID_TYPE" | "INVALID_QUERY_FILTER_OPERATOR"
        | "INVALID_QUERY_LOCATOR" | "QUERY_TIMEOUT" => Some(SourceError::Rejected {
            message: format!("Salesforce refused the query with {status} {code}: {message}"),
        }),
        _ => None,
    }
}

/// SOQL dateTime literal of a lower bound `t` (records `> t`), widened to whole seconds.
pub(super) fn soql_lower(field: &str, t: DateTime<Utc>) -> String {
    let s = t.trunc_subsecs(0);
    let lit = s.format("%Y-%m-%dT%H:%M:%SZ");
    if s == t {
        format!("{field} > {lit}")
    } else {
        format!("{field} >= {lit}")
    }
}

/// SOQL dateTime literal of an upper bound `t` (records `<= t`), widened to whole seconds.
pub(super) fn soql_upper(field: &str, t: DateTime<Utc>) -> String {
    let s = t.trunc_subsecs(0);
    if s == t {
        format!("{field} <= {}", s.format("%Y-%m-%dT%H:%M:%SZ"))
    } else {
        let up = s + chrono::Duration::seconds(1);
        format!("{field} < {}", up.format("%Y-%m-%dT%H:%M:%SZ"))
    }
}

impl SalesforceSource {
    /// Build from the flow's properties and the profile's secret. The secret is an
    /// `oauth2_refresh_token` credential; `type`, `token_url` (from `sandbox`/`login_url`) and
    /// `client_auth: body` are filled in when absent.
    pub fn new(
        props: &Map<String, Value>,
        incremental_field: Option<&str>,
        profile: &str,
        secret: &crate::ports::Secret,
        secrets: Arc<dyn crate::ports::SecretStore>,
    ) -> Result<Self, SourceError> {
        let cfg = SalesforceConfig::parse(props)?;
        let mut raw = secret.expose().as_object().cloned().ok_or_else(|| SourceError::Auth {
            profile: profile.into(),
            message: "the secret must be a JSON object: {\"client_id\": …, \"client_secret\": …, \"refresh_token\": …}".into(),
        })?;
        raw.entry("type")
            .or_insert_with(|| "oauth2_refresh_token".into());
        if raw.get("type").and_then(Value::as_str) == Some("oauth2_refresh_token")
            && !raw.contains_key("token_url")
        {
            let host = cfg.login_url.clone().unwrap_or_else(|| {
                (if cfg.sandbox {
                    SANDBOX_LOGIN_URL
                } else {
                    LOGIN_URL
                })
                .to_string()
            });
            raw.insert(
                "token_url".into(),
                format!("{}/services/oauth2/token", host.trim_end_matches('/')).into(),
            );
        }
        let secret = crate::ports::Secret::new(Value::Object(raw));
        let auth = Authenticator::from_secret_with(
            profile,
            &secret,
            secrets,
            super::auth::ClientAuth::Body,
        )?;
        if let Some(login) = &cfg.login_url {
            // The refresh token goes to the flow's login URL: like any request carrying the
            // profile's credentials, only to a host the profile names (docs/security.md).
            auth.check_destination(login)?;
        }
        Self::with_auth(cfg, incremental_field, auth)
    }

    pub fn with_auth(
        cfg: SalesforceConfig,
        incremental_field: Option<&str>,
        auth: Authenticator,
    ) -> Result<Self, SourceError> {
        let http = HttpClient::new(cfg.http.clone(), Arc::new(auth), "salesforce")?
            .with_error_hook(error_hook);
        Ok(SalesforceSource {
            cfg,
            http,
            incremental_field: incremental_field.map(String::from),
            described: Default::default(),
            raw_describes: Default::default(),
        })
    }

    /// The authenticator (for tests: refresh counts).
    pub fn auth(&self) -> &Authenticator {
        &self.http.auth
    }

    /// The instance URL: the flow's, else the profile's (fetching a token first if needed).
    pub(super) async fn instance(&self) -> Result<String, SourceError> {
        if let Some(u) = &self.cfg.instance_url {
            return Ok(u.trim_end_matches('/').to_string());
        }
        if let Some(u) = self.http.auth.instance_url().await {
            return Ok(u.trim_end_matches('/').to_string());
        }
        // No token yet: getting one names the instance.
        let probe = reqwest::Client::new().get("http://localhost/");
        let _ = self.http.auth.apply(probe).await?;
        self.http.auth.instance_url().await.map(|u| u.trim_end_matches('/').to_string()).ok_or_else(|| {
            self.http.auth.auth_error(
                "no instance URL: the token response had no `instance_url` and neither the profile's secret nor source.properties.instance_url names one (e.g. https://mycompany.my.salesforce.com)",
            )
        })
    }

    pub(super) async fn data_url(&self, rest: &str) -> Result<String, SourceError> {
        Ok(format!(
            "{}/services/data/{}/{}",
            self.instance().await?,
            self.cfg.api_version,
            rest.trim_start_matches('/')
        ))
    }

    pub(super) async fn get_json(&self, req: HttpRequest) -> Result<(Value, u64), SourceError> {
        let resp = self
            .http
            .send(&req)
            .await?
            .ok_or_else(|| SourceError::Rejected {
                message: format!("{} returned no data", self.http.redact(&req.url)),
            })?;
        Ok((resp.body, resp.bytes))
    }

    pub(super) async fn described(&self, entity: &str) -> Result<Described, SourceError> {
        if let Some(d) = self.described.lock().await.get(entity) {
            return Ok(d.clone());
        }
        let d = self.fetch_description(entity).await?;
        self.described
            .lock()
            .await
            .insert(entity.to_string(), d.clone());
        Ok(d)
    }

    /// The `fields` of an object's describe, read once per object.
    pub(super) async fn describe_fields(
        &self,
        object: &str,
    ) -> Result<Arc<Vec<Value>>, SourceError> {
        if let Some(f) = self.raw_describes.lock().await.get(object) {
            return Ok(f.clone());
        }
        let mut req = HttpRequest::get(
            self.data_url(&format!("sobjects/{object}/describe"))
                .await?,
        );
        req.ignore_status = vec![404];
        let Some(resp) = self.http.send(&req).await? else {
            return Err(SourceError::config(
                "source.entity",
                format!("'{object}' is not an object of this Salesforce org (describe answered 404 NOT_FOUND); list them with `ferry entities FLOW`"),
            ));
        };
        let fields = resp
            .body
            .get("fields")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| SourceError::Rejected {
                message: format!("{}: the describe response has no `fields` array", resp.url),
            })?;
        let fields = Arc::new(fields);
        self.raw_describes
            .lock()
            .await
            .insert(object.to_string(), fields.clone());
        Ok(fields)
    }

    /// A relationship path of the flow's `fields` (`Owner.Name`), resolved through the
    /// describes: each step a reference field's `relationshipName` on the current object (to
    /// the first of its `referenceTo` objects), the last a plain field. The column is named by
    /// the path in the API's own casing, as Bulk API 2.0 names its CSV column.
    /// <https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_relationships_query_using.htm>
    pub(super) async fn related(
        &self,
        entity: &str,
        wanted: &str,
        i: usize,
    ) -> Result<(FieldInfo, Column), SourceError> {
        let err = |why: String| {
            SourceError::config(
                format!("source.properties.fields[{i}]"),
                format!("'{wanted}': {why}"),
            )
        };
        let segs: Vec<&str> = wanted.split('.').collect();
        let mut object = entity.to_string();
        let mut path = vec![];
        for rel in &segs[..segs.len() - 1] {
            let fields = self.describe_fields(&object).await?;
            let f = fields
                .iter()
                .find(|f| {
                    f.get("relationshipName")
                        .and_then(Value::as_str)
                        .is_some_and(|r| r.eq_ignore_ascii_case(rel))
                })
                .ok_or_else(|| {
                    err(format!(
                        "{object} has no relationship named {rel} (a lookup's relationship name, e.g. Owner for OwnerId; custom ones end in __r)"
                    ))
                })?;
            path.push(
                f.get("relationshipName")
                    .and_then(Value::as_str)
                    .unwrap_or(rel)
                    .to_string(),
            );
            object = f
                .get("referenceTo")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    err(format!(
                        "the relationship {rel} of {object} names no object"
                    ))
                })?
                .to_string();
        }
        let last = segs[segs.len() - 1];
        let fields = self.describe_fields(&object).await?;
        let f = fields
            .iter()
            .find(|f| {
                f.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(last))
            })
            .ok_or_else(|| err(format!("{object} has no field {last}")))?;
        let kind = Kind::of_field(f).ok_or_else(|| {
            err(format!(
                "{object}.{last} is a compound or base64 field, which ferry does not read through a relationship; list its components"
            ))
        })?;
        path.push(
            f.get("name")
                .and_then(Value::as_str)
                .unwrap_or(last)
                .to_string(),
        );
        let name = path.join(".");
        let mut info = FieldInfo::new(&name, kind.field_type());
        info.label = f.get("label").and_then(Value::as_str).map(String::from);
        Ok((info, Column::Related { name, path, kind }))
    }

    pub(super) async fn fetch_description(&self, entity: &str) -> Result<Described, SourceError> {
        if !is_name(entity) {
            return Err(SourceError::config(
                "source.entity",
                format!("'{entity}' is not an sObject API name, e.g. Account or Invoice__c"),
            ));
        }
        let fields = self.describe_fields(entity).await?;
        let fields = fields.as_slice();
        let s = |f: &Value, k: &str| f.get(k).and_then(Value::as_str).map(String::from);
        let mut components: HashMap<String, Vec<(String, String, Kind, bool)>> = HashMap::new();
        for f in fields {
            if let (Some(c), Some(n), Some(_)) =
                (s(f, "compoundFieldName"), s(f, "name"), s(f, "type"))
            {
                if let Some(k) = Kind::of_field(f) {
                    let nillable = f.get("nillable").and_then(Value::as_bool).unwrap_or(true);
                    components.entry(c.clone()).or_default().push((
                        sub_name(&c, &n),
                        n,
                        k,
                        nillable,
                    ));
                }
            }
        }
        let mut all: Vec<(FieldInfo, Column)> = vec![];
        let mut kinds = HashMap::new();
        for f in fields {
            let (Some(name), Some(t)) = (s(f, "name"), s(f, "type")) else {
                continue;
            };
            if s(f, "compoundFieldName").is_some() {
                continue; // read as part of its compound
            }
            let nillable = f.get("nillable").and_then(Value::as_bool).unwrap_or(true);
            let (mut info, col) = match Kind::of_field(f) {
                Some(k) => {
                    kinds.insert(name.clone(), k);
                    (
                        FieldInfo::new(&name, k.field_type()),
                        Column::Plain {
                            name: name.clone(),
                            kind: k,
                        },
                    )
                }
                None if t == "address" || t == "location" => {
                    let parts = components.remove(&name).unwrap_or_default();
                    if parts.is_empty() {
                        continue;
                    }
                    let sub = parts
                        .iter()
                        .map(|(sn, _, k, _)| FieldInfo::new(sn, k.field_type()))
                        .collect();
                    (
                        FieldInfo::new(&name, FieldType::Object { fields: sub }),
                        Column::Compound {
                            name: name.clone(),
                            parts: parts.into_iter().map(|(sn, n, k, _)| (sn, n, k)).collect(),
                        },
                    )
                }
                None => continue, // base64: not in Bulk results; REST gives a blob URL
            };
            info.nullable = nillable;
            info.label = s(f, "label");
            if name == "Id" {
                info = info.key();
            }
            if matches!(
                col,
                Column::Plain {
                    kind: Kind::Timestamp,
                    ..
                }
            ) {
                info = info.incremental();
            }
            all.push((info, col));
        }
        let chosen: Vec<(FieldInfo, Column)> = match &self.cfg.fields {
            None => all,
            Some(wanted) => {
                let mut out = vec![];
                for (i, w) in wanted.iter().enumerate() {
                    if w.contains('.') {
                        out.push(self.related(entity, w, i).await?);
                        continue;
                    }
                    match all.iter().find(|(f, _)| f.name.eq_ignore_ascii_case(w)) {
                        Some(x) => out.push(x.clone()),
                        None => {
                            let hint = fields
                                .iter()
                                .find(|f| s(f, "name").is_some_and(|n| n.eq_ignore_ascii_case(w)))
                                .map(|f| match (s(f, "compoundFieldName"), s(f, "type")) {
                                    (Some(c), _) => format!(
                                        "it is a component of {c}: list {c} (read as a struct)"
                                    ),
                                    (_, Some(t)) => format!("its type {t} cannot be read in bulk"),
                                    _ => String::new(),
                                })
                                .unwrap_or_else(|| {
                                    "Salesforce refuses unknown fields in SOQL".into()
                                });
                            return Err(SourceError::config(
                                format!("source.properties.fields[{i}]"),
                                format!(
                                    "'{w}' is not a readable field of {entity}: {hint}; fields: {}",
                                    all.iter()
                                        .map(|(f, _)| f.name.as_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            ));
                        }
                    }
                }
                // The key and the window field are always read.
                for must in ["Id"]
                    .into_iter()
                    .chain(self.incremental_field.as_deref())
                    .chain(self.cfg.include_deleted.then_some("IsDeleted"))
                {
                    if !out.iter().any(|(f, _)| f.name == must) {
                        if let Some(x) = all.iter().find(|(f, _)| f.name == must) {
                            out.push(x.clone());
                        }
                    }
                }
                out
            }
        };
        let soql_fields = chosen
            .iter()
            .flat_map(|(_, c)| match c {
                Column::Plain { name, .. } | Column::Related { name, .. } => vec![name.clone()],
                Column::Compound { parts, .. } => parts.iter().map(|(_, n, _)| n.clone()).collect(),
            })
            .collect();
        Ok(Described {
            desc: EntityDescription {
                entity: entity.into(),
                fields: chosen.iter().map(|(f, _)| f.clone()).collect(),
            },
            columns: chosen.into_iter().map(|(_, c)| c).collect(),
            soql_fields,
            kinds,
        })
    }

    /// The window field, checked to be a datetime of the object.
    pub(super) fn window_field<'a>(
        &self,
        d: &Described,
        req: &'a ReadRequest,
    ) -> Result<Option<&'a str>, SourceError> {
        let (Some(f), Some(_)) = (req.incremental_field.as_deref(), &req.window) else {
            return Ok(None);
        };
        match d.kinds.get(f) {
            Some(Kind::Timestamp) => Ok(Some(f)),
            Some(k) => Err(SourceError::config(
                "source.incremental.field",
                format!("{f} is a {k:?} field; the window needs a dateTime field such as SystemModstamp or LastModifiedDate"),
            )),
            None => Err(SourceError::config(
                "source.incremental.field",
                format!("'{f}' is not a field of {}; use SystemModstamp, LastModifiedDate or another dateTime field", req.entity),
            )),
        }
    }

    pub(super) fn where_clause(
        &self,
        d: &Described,
        req: &ReadRequest,
    ) -> Result<String, SourceError> {
        let (Some(f), Some(w)) = (self.window_field(d, req)?, req.window.as_ref()) else {
            return Ok(String::new());
        };
        let mut conds = vec![];
        if let Some(s) = w.start {
            conds.push(soql_lower(f, s));
        }
        conds.push(soql_upper(f, w.end));
        Ok(format!(" WHERE {}", conds.join(" AND ")))
    }

    /// The SOQL of a read.
    pub(super) fn soql(&self, d: &Described, req: &ReadRequest) -> Result<String, SourceError> {
        Ok(format!(
            "SELECT {} FROM {}{}",
            d.soql_fields.join(", "),
            req.entity,
            self.where_clause(d, req)?
        ))
    }

    pub(super) fn query_resource(&self) -> &'static str {
        if self.cfg.include_deleted {
            "queryAll"
        } else {
            "query"
        }
    }

    pub(super) fn with_batch_size(&self, mut r: HttpRequest, req: &ReadRequest) -> HttpRequest {
        if let Some(n) = req.page_size {
            r.headers.push((
                "Sforce-Query-Options".into(),
                format!("batchSize={}", n.clamp(200, 2000)),
            ));
        }
        r
    }

    pub(super) async fn count_window(
        &self,
        d: &Described,
        req: &ReadRequest,
    ) -> Result<u64, SourceError> {
        let soql = format!(
            "SELECT COUNT() FROM {}{}",
            req.entity,
            self.where_clause(d, req)?
        );
        let mut r = HttpRequest::get(self.data_url(self.query_resource()).await?);
        r.query.push(("q".into(), soql));
        let (body, _) = self.get_json(r).await?;
        body.get("totalSize")
            .and_then(Value::as_u64)
            .ok_or_else(|| SourceError::Rejected {
                message: "Salesforce answered a COUNT() query without totalSize".into(),
            })
    }

    /// Records of one page as output records, in the exact window.
    pub(super) fn shape(
        &self,
        d: &Described,
        req: &ReadRequest,
        rows: impl Iterator<Item = HashMap<String, CellOwned>>,
    ) -> Result<Vec<Value>, SourceError> {
        let wf = self.window_field(d, req)?;
        let mut out = vec![];
        for (n, row) in rows.into_iter().enumerate() {
            let at = row_at(n);
            let get = |name: &str, kind: Kind| -> Result<Value, SourceError> {
                let v = match row.get(name) {
                    None => Cell::Json(&Value::Null),
                    Some(CellOwned::Json(v)) => Cell::Json(v),
                    Some(CellOwned::Csv(s)) => Cell::Csv(s),
                };
                typed(kind, name, v).map_err(|m| SourceError::Rejected {
                    message: format!("{} {at}: {m}", req.entity),
                })
            };
            let mut rec = Map::new();
            for c in &d.columns {
                match c {
                    Column::Plain { name, kind } => {
                        rec.insert(name.clone(), get(name, *kind)?);
                    }
                    Column::Related { name, path, kind } => {
                        // Bulk CSV names the column by its path; REST nests the related
                        // records (`"Owner": {"attributes": …, "Name": …}`, null when empty).
                        let v = match row.get(name) {
                            Some(_) => get(name, *kind)?,
                            None => {
                                let mut cur = match row.get(&path[0]) {
                                    Some(CellOwned::Json(v)) => Some(v),
                                    _ => None,
                                };
                                for seg in &path[1..] {
                                    cur = cur.and_then(|v| v.get(seg)).filter(|v| !v.is_null());
                                }
                                let cell = cur.unwrap_or(&Value::Null);
                                typed(*kind, name, Cell::Json(cell)).map_err(|m| {
                                    SourceError::Rejected {
                                        message: format!("{} {at}: {m}", req.entity),
                                    }
                                })?
                            }
                        };
                        rec.insert(name.clone(), v);
                    }
                    Column::Compound { name, parts } => {
                        let mut o = Map::new();
                        for (sub, src, k) in parts {
                            o.insert(sub.clone(), get(src, *k)?);
                        }
                        let v = if o.values().all(Value::is_null) {
                            Value::Null
                        } else {
                            Value::Object(o)
                        };
                        rec.insert(name.clone(), v);
                    }
                }
            }
            if let (Some(f), Some(w)) = (wf, &req.window) {
                let t = rec.get(f).and_then(Value::as_str).and_then(parse_sf_time);
                match t {
                    Some(t) if w.contains(t) => {}
                    Some(_) => continue, // the WHERE clause is widened to whole seconds
                    None => {
                        return Err(SourceError::Rejected {
                            message: format!(
                                "{} {at}: no {f} value to place it in the window",
                                req.entity
                            ),
                        })
                    }
                }
            }
            out.push(Value::Object(rec));
        }
        Ok(out)
    }

    pub(super) async fn rest_page(
        &self,
        d: &Described,
        req: &ReadRequest,
        url: String,
        first: Option<String>,
    ) -> Result<Page, SourceError> {
        let mut r = HttpRequest::get(url);
        if let Some(q) = first {
            r.query.push(("q".into(), q));
        }
        let r = self.with_batch_size(r, req);
        // Read the body as text and keep every number's digits (money must stay exact).
        let resp = self
            .http
            .send_raw(&r)
            .await?
            .ok_or_else(|| SourceError::Rejected {
                message: format!("{} returned no data", self.http.redact(&r.url)),
            })?;
        let bytes = resp.bytes;
        let body: Value =
            serde_json::from_str(&numbers_as_text(resp.body.as_str().unwrap_or_default()))
                .map_err(|e| {
                    let message = format!("{}: the query response is not JSON ({e})", resp.url);
                    if e.is_eof() {
                        SourceError::Transient { message }
                    } else {
                        SourceError::Rejected { message }
                    }
                })?;
        let records = body
            .get("records")
            .and_then(Value::as_array)
            .ok_or_else(|| SourceError::Rejected {
                message: "a Salesforce query response has no `records` array".into(),
            })?;
        let rows = records.iter().map(|r| {
            r.as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| *k != "attributes")
                        .map(|(k, v)| (k.clone(), CellOwned::Json(v.clone())))
                        .collect()
                })
                .unwrap_or_default()
        });
        let records = self.shape(d, req, rows)?;
        let done = body.get("done").and_then(Value::as_bool).unwrap_or(true);
        let next = body.get("nextRecordsUrl").and_then(Value::as_str);
        let next = match (done, next) {
            (false, Some(n)) => Some(super::cursor_json(&Cursor::Rest {
                next: n.to_string(),
            })?),
            (false, None) => {
                return Err(SourceError::Rejected {
                    message: "Salesforce said the query is not done but gave no nextRecordsUrl"
                        .into(),
                })
            }
            _ => None,
        };
        Ok(Page {
            records,
            next,
            bytes,
        })
    }

    pub(super) async fn bulk_create(
        &self,
        d: &Described,
        req: &ReadRequest,
    ) -> Result<Cursor, SourceError> {
        let mut r = HttpRequest::get(self.data_url("jobs/query").await?);
        r.method = reqwest::Method::POST;
        r.body = Some(json!({"operation": self.query_resource(), "query": self.soql(d, req)?}));
        let (body, _) = self.get_json(r).await?;
        let job = body
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| SourceError::Rejected {
                message: "Salesforce created a Bulk API 2.0 query job without an id".into(),
            })?;
        tracing::info!(entity = %req.entity, job, "Bulk API 2.0 query job created");
        Ok(Cursor::Bulk {
            job: job.into(),
            version: self.cfg.api_version.clone(),
            complete: false,
            locator: None,
        })
    }

    pub(super) async fn bulk_page(
        &self,
        d: &Described,
        req: &ReadRequest,
        cursor: Cursor,
    ) -> Result<Page, SourceError> {
        let Cursor::Bulk {
            job,
            version,
            complete,
            locator,
        } = cursor
        else {
            unreachable!("bulk cursor")
        };
        let base = format!(
            "{}/services/data/{version}/jobs/query/{job}",
            self.instance().await?
        );
        if !complete {
            let started = std::time::Instant::now();
            loop {
                let (body, _) = self.get_json(HttpRequest::get(base.clone())).await?;
                match body.get("state").and_then(Value::as_str).unwrap_or("") {
                    "JobComplete" => break,
                    s @ ("Failed" | "Aborted") => {
                        return Err(SourceError::Rejected {
                            message: format!(
                                "the Bulk API 2.0 query job {job} ended {s}: {}",
                                body.get("errorMessage")
                                    .and_then(Value::as_str)
                                    .unwrap_or("no error message")
                            ),
                        })
                    }
                    _ => {}
                }
                if started.elapsed().as_secs() >= self.cfg.bulk_wait_seconds {
                    // Hand back; the next call polls on.
                    let next = Cursor::Bulk {
                        job,
                        version,
                        complete: false,
                        locator: None,
                    };
                    return Ok(Page {
                        records: vec![],
                        next: Some(super::cursor_json(&next)?),
                        bytes: 0,
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(self.cfg.bulk_poll_ms)).await;
            }
        }
        let mut r = HttpRequest::get(format!("{base}/results"));
        if let Some(n) = req.page_size {
            r.query.push(("maxRecords".into(), n.to_string()));
        }
        if let Some(l) = &locator {
            r.query.push(("locator".into(), l.clone()));
        }
        let resp = self
            .http
            .send_raw(&r)
            .await?
            .ok_or_else(|| SourceError::Rejected {
                message: format!("{} returned no data", self.http.redact(&r.url)),
            })?;
        let text = resp.body.as_str().unwrap_or_default();
        let rows = parse_csv(text).map_err(|m| SourceError::Transient {
            message: format!("{}: {m}", resp.url),
        })?;
        let mut it = rows.into_iter();
        let header = it.next().unwrap_or_default();
        let rows: Vec<HashMap<String, CellOwned>> = it
            .filter(|r| !(r.len() == 1 && r[0].is_empty()))
            .map(|r| {
                header
                    .iter()
                    .cloned()
                    .zip(r.into_iter().map(CellOwned::Csv))
                    .collect()
            })
            .collect();
        let records = self.shape(d, req, rows.into_iter())?;
        let next_locator = resp
            .headers
            .get("sforce-locator")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && *v != "null")
            .map(String::from);
        let next = next_locator
            .map(|l| {
                super::cursor_json(&Cursor::Bulk {
                    job,
                    version,
                    complete: true,
                    locator: Some(l),
                })
            })
            .transpose()?;
        Ok(Page {
            records,
            next,
            bytes: resp.bytes,
        })
    }
}

#[async_trait]
impl Source for SalesforceSource {
    async fn list_entities(&self) -> Result<Vec<EntityInfo>, SourceError> {
        let (body, _) = self
            .get_json(HttpRequest::get(self.data_url("sobjects").await?))
            .await?;
        let list = body
            .get("sobjects")
            .and_then(Value::as_array)
            .ok_or_else(|| SourceError::Rejected {
                message: "the sobjects response has no `sobjects` array".into(),
            })?;
        Ok(list
            .iter()
            .filter(|o| o.get("queryable").and_then(Value::as_bool).unwrap_or(false))
            .filter_map(|o| {
                let name = o.get("name")?.as_str()?.to_string();
                Some(EntityInfo {
                    label: o
                        .get("label")
                        .and_then(Value::as_str)
                        .unwrap_or(&name)
                        .to_string(),
                    description: o
                        .get("custom")
                        .and_then(Value::as_bool)
                        .filter(|c| *c)
                        .map(|_| "custom object".into()),
                    name,
                })
            })
            .collect())
    }

    async fn describe(&self, entity: &str) -> Result<EntityDescription, SourceError> {
        Ok(self.described(entity).await?.desc)
    }

    /// Time slices of the window field (`(start, end]` goes into each slice's `WHERE`). Four at
    /// once by default: each slice is one query cursor (or one Bulk API job) at a time, far
    /// below the org's concurrent-request and open-cursor limits.
    fn slicing(&self, _entity: &str) -> Slicing {
        Slicing::Time { parallelism: 4 }
    }

    /// `SELECT COUNT() … WHERE <window>`: start-run cuts dense parts of a backfill narrower.
    async fn count(&self, req: &ReadRequest) -> Result<Option<u64>, SourceError> {
        if req.incremental_field.is_none() || req.window.is_none() {
            return Ok(None);
        }
        let d = self.described(&req.entity).await?;
        Ok(Some(self.count_window(&d, req).await?))
    }

    async fn read_page(
        &self,
        req: &ReadRequest,
        cursor: Option<&Value>,
    ) -> Result<Page, SourceError> {
        let d = self.described(&req.entity).await?;
        let cursor: Option<Cursor> = super::cursor_from("salesforce", cursor)?;
        match cursor {
            Some(Cursor::Rest { next }) => {
                let url = format!("{}{}", self.instance().await?, next);
                self.rest_page(&d, req, url, None).await
            }
            Some(c @ Cursor::Bulk { .. }) => self.bulk_page(&d, req, c).await,
            None => {
                let bulk = match self.cfg.api {
                    ApiChoice::Rest => false,
                    ApiChoice::Bulk => true,
                    ApiChoice::Auto => {
                        let n = self.count_window(&d, req).await?;
                        tracing::info!(entity = %req.entity, records = n, threshold = self.cfg.bulk_threshold, "Salesforce record count");
                        n > self.cfg.bulk_threshold
                    }
                };
                if bulk {
                    let c = self.bulk_create(&d, req).await?;
                    self.bulk_page(&d, req, c).await
                } else {
                    let url = self.data_url(self.query_resource()).await?;
                    let soql = self.soql(&d, req)?;
                    self.rest_page(&d, req, url, Some(soql)).await
                }
            }
        }
    }
}
