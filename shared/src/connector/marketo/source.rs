//! The marketo connector's reads: requests, paging, windows, records.

use super::*;

/// A job's date range at most (Marketo: "31 days or fewer").
pub(super) const MAX_RANGE_DAYS: i64 = 31;
/// Range request size for the file.
pub(super) const FILE_PART_BYTES: u64 = 8 * 1024 * 1024;
/// A read_page call waits for a job at most this long before handing back an empty page.
pub(super) const POLL_SLICE: std::time::Duration = std::time::Duration::from_secs(20);
/// Times a failed job is created again.
pub(super) const MAX_JOB_ATTEMPTS: u32 = 3;

/// Inclusive second ranges of at most 31 days covering `(start, end]`.
pub(super) fn slices(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let floor = |t: DateTime<Utc>| DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t);
    let last = {
        let f = floor(end);
        if f < end {
            f + ChronoDuration::seconds(1)
        } else {
            f
        }
    };
    let mut out = vec![];
    let mut lo = floor(start);
    while lo <= last {
        let hi = (lo + ChronoDuration::days(MAX_RANGE_DAYS)).min(last);
        out.push((lo, hi));
        lo = hi + ChronoDuration::seconds(1);
    }
    out
}

/// The next midnight in US Central time, when Marketo's daily quotas reset.
pub(super) fn until_central_midnight(now: DateTime<Utc>) -> std::time::Duration {
    let tz = chrono_tz::America::Chicago;
    let local = now.with_timezone(&tz).date_naive();
    let next = local.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0));
    let next = next.and_then(|n| tz.from_local_datetime(&n).earliest());
    next.map(|n| (n.with_timezone(&Utc) - now).to_std().unwrap_or_default())
        .unwrap_or(std::time::Duration::from_secs(3600))
}

/// Where a read stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub(super) enum MkCursor {
    /// Create and enqueue the job of slice `slice`.
    Create {
        slice: usize,
        #[serde(default)]
        attempt: u32,
    },
    /// Wait for the job.
    Poll {
        slice: usize,
        export_id: String,
        enqueued: DateTime<Utc>,
        #[serde(default)]
        attempt: u32,
    },
    /// Read the job's file from byte `offset`.
    File {
        slice: usize,
        export_id: String,
        offset: u64,
        size: u64,
        header: Vec<String>,
        #[serde(default)]
        part: u64,
    },
}

/// An export job's inclusive date range.
pub(super) type JobRange = (DateTime<Utc>, DateTime<Utc>);
/// A part of a job's file: its header, its whole records, and the bytes they took.
pub(super) type Part = (Vec<String>, Vec<Vec<String>>, u64);

/// The Marketo source bound to one flow.
pub struct MarketoSource {
    pub(super) cfg: MarketoConfig,
    pub(super) base: String,
    pub(super) http: HttpClient,
    pub(super) describe: tokio::sync::Mutex<Option<std::sync::Arc<Vec<LeadField>>>>,
}

/// What one Marketo error code means for the request.
pub(super) enum Verdict {
    Refresh,
    Retry { throttled: bool },
    Fail(SourceError),
}

impl MarketoSource {
    pub fn new(props: &Map<String, Value>, auth: Authenticator) -> Result<Self, SourceError> {
        let cfg = MarketoConfig::parse(props)?;
        let base = cfg.base();
        let http = HttpClient::new(cfg.http.clone(), std::sync::Arc::new(auth), &base)?;
        Ok(MarketoSource {
            cfg,
            base,
            http,
            describe: Default::default(),
        })
    }

    pub(super) fn part_bytes(&self) -> u64 {
        self.cfg.file_part_bytes.unwrap_or(FILE_PART_BYTES)
    }

    pub(super) fn verdict(&self, code: &str, message: &str, url: &str) -> Verdict {
        let said = format!("Marketo error {code} ({message})");
        match code {
            "601" | "602" => Verdict::Refresh,
            "600" => Verdict::Fail(self.http.auth.auth_error(format!("{url}: {said}: no access token was sent"))),
            "603" => Verdict::Fail(self.http.auth.auth_error(format!(
                "{url}: {said}: the API user's role lacks this permission (Read-Only Lead / Read-Only Activity) or the instance allows API calls from listed IPs only"
            ))),
            "606" | "615" => Verdict::Retry { throttled: true },
            "502" | "604" | "608" | "611" | "713" => Verdict::Retry { throttled: false },
            "607" => Verdict::Fail(SourceError::Throttled {
                message: format!("marketo: {url}: {said}: the daily API quota is used up; it resets at midnight US Central"),
                retry_after: Some(until_central_midnight(Utc::now())),
            }),
            "1029" if message.to_ascii_lowercase().contains("quota") => Verdict::Fail(SourceError::Throttled {
                message: format!("marketo: {url}: {said}: the daily bulk export quota is used up; it resets at midnight US Central"),
                retry_after: Some(until_central_midnight(Utc::now())),
            }),
            "1029" => Verdict::Fail(SourceError::Throttled {
                message: format!("marketo: {url}: {said}: the bulk export queue (shared by every integration of the instance) is full"),
                retry_after: Some(std::time::Duration::from_secs(60)),
            }),
            "1035" => Verdict::Fail(SourceError::config(
                "source.incremental.field",
                format!("{said}: this Marketo subscription has no updatedAt filter for bulk lead extracts; use createdAt, or ask Marketo support to enable it"),
            )),
            _ => Verdict::Fail(SourceError::Rejected {
                message: format!("marketo: {url}: {said}"),
            }),
        }
    }

    /// Send, reading Marketo's in-body errors: a JSON answer with `success: false` is retried,
    /// re-authenticated or failed by its code.
    pub(super) async fn call(
        &self,
        r: &HttpRequest,
        raw: bool,
    ) -> Result<HttpResponse, SourceError> {
        let s = self.http.settings();
        let mut refreshed = false;
        let mut retries = 0usize;
        loop {
            let resp = if raw {
                self.http.send_raw(r).await?
            } else {
                self.http.send(r).await?
            }
            .ok_or_else(|| SourceError::Fatal {
                message: "an ignored status answered a Marketo request".into(),
            })?;
            let body: std::borrow::Cow<Value> = match (&resp.body, raw) {
                (Value::String(t), true) if t.trim_start().starts_with('{') => {
                    match serde_json::from_str::<Value>(t) {
                        Ok(v) => std::borrow::Cow::Owned(v),
                        Err(_) => return Ok(resp),
                    }
                }
                (_, true) => return Ok(resp),
                (b, false) => std::borrow::Cow::Borrowed(b),
            };
            if body.get("success").and_then(Value::as_bool) != Some(false) {
                if raw {
                    return Err(SourceError::Rejected {
                        message: format!(
                            "marketo: {} answered JSON where a CSV file was expected",
                            resp.url
                        ),
                    });
                }
                return Ok(resp);
            }
            let e = body.pointer("/errors/0");
            let code = match e.and_then(|e| e.get("code")) {
                Some(Value::String(c)) => c.clone(),
                Some(v) => v.to_string(),
                None => "none".into(),
            };
            let message = e
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("no message")
                .chars()
                .take(200)
                .collect::<String>();
            match self.verdict(&code, &message, &resp.url) {
                Verdict::Refresh if !refreshed => {
                    refreshed = true;
                    if !self.http.auth.token_refused().await? {
                        return Err(self.http.auth.auth_error(format!(
                            "{}: Marketo error {code} ({message}): the profile has no OAuth client credentials to get a new token with",
                            resp.url
                        )));
                    }
                }
                Verdict::Refresh => {
                    return Err(self.http.auth.auth_error(format!(
                        "{}: Marketo error {code} ({message}) again after a new token: check the profile's client_id and client_secret",
                        resp.url
                    )))
                }
                Verdict::Retry { throttled } => {
                    if retries >= s.max_retries {
                        let message = format!(
                            "marketo: {}: Marketo error {code} ({message}) after {retries} retries",
                            resp.url
                        );
                        return Err(if throttled {
                            SourceError::Throttled {
                                message,
                                retry_after: Some(std::time::Duration::from_secs(20)),
                            }
                        } else {
                            // The retry budget is spent here, as the HTTP client's is.
                            SourceError::Unavailable { message }
                        });
                    }
                    let base = s
                        .backoff_initial_ms
                        .saturating_mul(1 << retries.min(16))
                        .min(s.backoff_max_ms);
                    // 606 is a 20-second window: wait at least a little of it.
                    let wait = rand::random_range(base / 2..=base.max(1));
                    tracing::debug!(code = %code, wait_ms = wait, "marketo: backing off");
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                    retries += 1;
                }
                Verdict::Fail(e) => return Err(e),
            }
        }
    }

    pub(super) async fn lead_fields(&self) -> Result<std::sync::Arc<Vec<LeadField>>, SourceError> {
        if let Some(d) = &*self.describe.lock().await {
            return Ok(d.clone());
        }
        let r = HttpRequest::get(format!("{}/rest/v1/leads/describe2.json", self.base));
        let resp = self.call(&r, false).await?;
        let fields = resp
            .body
            .pointer("/result/0/fields")
            .and_then(Value::as_array)
            .ok_or_else(|| SourceError::Rejected {
                message: format!("marketo: {} has no result[0].fields", resp.url),
            })?;
        let list: Vec<(String, String, FieldType)> = fields
            .iter()
            .filter_map(|f| {
                let name = f.get("name")?.as_str()?.to_string();
                let label = f
                    .get("displayName")
                    .and_then(Value::as_str)
                    .unwrap_or(&name)
                    .to_string();
                let ty = lead_type(
                    f.get("dataType")
                        .and_then(Value::as_str)
                        .unwrap_or("string"),
                );
                Some((name, label, ty))
            })
            .collect();
        let list = std::sync::Arc::new(list);
        *self.describe.lock().await = Some(list.clone());
        Ok(list)
    }

    /// The lead columns read: the flow's (checked) or every field; id, createdAt, updatedAt
    /// always.
    pub(super) async fn lead_columns(&self) -> Result<Vec<LeadField>, SourceError> {
        let all = self.lead_fields().await?;
        let mut out: Vec<(String, String, FieldType)> = match &self.cfg.fields {
            None => all.to_vec(),
            Some(fs) => {
                let mut v = vec![];
                for (i, f) in fs.iter().enumerate() {
                    match all.iter().find(|a| &a.0 == f) {
                        Some(a) => v.push(a.clone()),
                        None => {
                            return Err(SourceError::config(
                                format!("source.properties.fields[{i}]"),
                                format!("'{f}' is not a lead field of this instance (REST API names, case-sensitive; `ferry entities describe marketo leads` lists them)"),
                            ))
                        }
                    }
                }
                v
            }
        };
        for (must, ty) in [
            ("id", FieldType::Integer),
            ("createdAt", FieldType::Timestamp),
            ("updatedAt", FieldType::Timestamp),
        ] {
            if !out.iter().any(|c| c.0 == must) {
                out.push((must.into(), must.into(), ty));
            }
        }
        Ok(out)
    }

    pub(super) async fn columns(&self, entity: &str) -> Result<Vec<Column>, SourceError> {
        Ok(if entity == "leads" {
            self.lead_columns()
                .await?
                .into_iter()
                .map(|(name, _, ty)| Column { name, ty })
                .collect()
        } else {
            activity_fields()
                .into_iter()
                .map(|f| Column {
                    name: f.name,
                    ty: f.data_type,
                })
                .collect()
        })
    }

    /// The filter field and the job ranges of a read.
    pub(super) fn plan(&self, req: &ReadRequest) -> Result<(String, Vec<JobRange>), SourceError> {
        let field = match (req.entity.as_str(), req.incremental_field.as_deref()) {
            ("activities", None | Some("activityDate") | Some("createdAt")) => "createdAt",
            ("activities", Some(f)) => {
                return Err(SourceError::config(
                    "source.incremental.field",
                    format!("'{f}' cannot drive a bulk activity extract (its only date filter is the activity's date): use activityDate"),
                ))
            }
            (_, Some("updatedAt")) if req.window.is_some() => "updatedAt",
            (_, Some("createdAt")) | (_, None) => "createdAt",
            (_, Some(_)) if req.window.is_none() => "createdAt",
            (_, Some(f)) => {
                return Err(SourceError::config(
                    "source.incremental.field",
                    format!("'{f}' cannot drive a bulk lead extract: use updatedAt or createdAt"),
                ))
            }
        };
        let (start, end) = match &req.window {
            Some(w) => (
                w.start
                    .or(self.cfg.history_start)
                    .unwrap_or_else(default_history_start),
                w.end,
            ),
            None => (
                self.cfg.history_start.unwrap_or_else(default_history_start),
                Utc::now(),
            ),
        };
        Ok((field.to_string(), slices(start, end)))
    }

    pub(super) fn export_path(entity: &str) -> &'static str {
        if entity == "leads" {
            "/bulk/v1/leads/export"
        } else {
            "/bulk/v1/activities/export"
        }
    }

    pub(super) async fn create_job(
        &self,
        req: &ReadRequest,
        filter_field: &str,
        range: (DateTime<Utc>, DateTime<Utc>),
        columns: &[Column],
    ) -> Result<String, SourceError> {
        let t = |d: DateTime<Utc>| d.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut filter = json!({ filter_field: {"startAt": t(range.0), "endAt": t(range.1)} });
        let mut body = json!({"format": "CSV"});
        if req.entity == "leads" {
            body["fields"] = json!(columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>());
        } else if let Some(ids) = &self.cfg.activity_type_ids {
            filter["activityTypeIds"] = json!(ids);
        }
        body["filter"] = filter;
        let mut r = HttpRequest::get(format!(
            "{}{}/create.json",
            self.base,
            Self::export_path(&req.entity)
        ));
        r.method = reqwest::Method::POST;
        r.body = Some(body);
        let resp = self.call(&r, false).await?;
        let id = resp
            .body
            .pointer("/result/0/exportId")
            .and_then(Value::as_str)
            .ok_or_else(|| SourceError::Rejected {
                message: format!("marketo: {} answered without result[0].exportId", resp.url),
            })?
            .to_string();
        let mut r = HttpRequest::get(format!(
            "{}{}/{id}/enqueue.json",
            self.base,
            Self::export_path(&req.entity)
        ));
        r.method = reqwest::Method::POST;
        self.call(&r, false).await?;
        Ok(id)
    }

    /// Parse the whole CSV records of `buf` (`header` known, or the first record of the file
    /// when `offset` is 0). Returns (header, rows, bytes consumed): a record that reaches the
    /// end of a part that is not the file's last may be cut, and is left for the next part.
    pub(super) fn parse_part(
        buf: &[u8],
        header: Option<Vec<String>>,
        last_part: bool,
    ) -> Result<Part, String> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(buf);
        let mut header = header;
        let mut rows = vec![];
        let mut consumed = 0u64;
        let mut rec = csv::StringRecord::new();
        loop {
            let more = match rdr.read_record(&mut rec) {
                Ok(m) => m,
                // A part may end inside a multi-byte character or a quoted field.
                Err(_) if !last_part => break,
                Err(e) => return Err(format!("the CSV file does not parse: {e}")),
            };
            if !more {
                break;
            }
            let end = rdr.position().byte();
            if !last_part && end >= buf.len() as u64 {
                break;
            }
            consumed = end;
            let fields: Vec<String> = rec.iter().map(String::from).collect();
            match &header {
                None => header = Some(fields),
                Some(_) => rows.push(fields),
            }
        }
        if last_part {
            consumed = buf.len() as u64;
        }
        Ok((header.unwrap_or_default(), rows, consumed))
    }

    pub(crate) fn typed(v: &str, ty: &FieldType) -> Result<Value, String> {
        if v == "null" || (v.is_empty() && *ty != FieldType::String) {
            return Ok(Value::Null);
        }
        match ty {
            FieldType::Decimal { .. } => {
                let t = v.trim();
                t.parse::<f64>()
                    .map(|_| Value::String(t.to_string()))
                    .map_err(|_| "a currency value that is not a number".to_string())
            }
            FieldType::Boolean if v == "1" => Ok(Value::Bool(true)),
            FieldType::Boolean if v == "0" => Ok(Value::Bool(false)),
            FieldType::Json => match serde_json::from_str::<Value>(v) {
                Ok(j) => Ok(Value::String(j.to_string())),
                Err(_) => Ok(Value::String(v.to_string())),
            },
            _ => normalize::value(&Value::String(v.to_string()), ty),
        }
    }
}

#[async_trait]
impl Source for MarketoSource {
    /// The entities, after `describe2` proves the credentials.
    async fn list_entities(&self) -> Result<Vec<EntityInfo>, SourceError> {
        self.lead_fields().await?;
        Ok(ENTITIES
            .iter()
            .map(|(n, l)| EntityInfo {
                name: (*n).into(),
                label: (*l).into(),
                description: Some(format!("{}{}", self.base, Self::export_path(n))),
            })
            .collect())
    }

    async fn describe(&self, entity: &str) -> Result<EntityDescription, SourceError> {
        entity_def(entity)?;
        let fields = if entity == "leads" {
            self.lead_columns()
                .await?
                .into_iter()
                .map(|(name, label, ty)| {
                    let mut f = FieldInfo::new(&name, ty);
                    f.label = Some(label);
                    match name.as_str() {
                        "id" => f.key(),
                        "createdAt" | "updatedAt" => f.incremental(),
                        _ => f,
                    }
                })
                .collect()
        } else {
            activity_fields()
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
        entity_def(&req.entity)?;
        let (filter_field, slices) = self.plan(req)?;
        let columns = self.columns(&req.entity).await?;
        let mut c: MkCursor = super::cursor_from("marketo", cursor)?.unwrap_or(MkCursor::Create {
            slice: 0,
            attempt: 0,
        });
        let started = std::time::Instant::now();
        let poll = std::time::Duration::from_secs_f64(self.cfg.poll_seconds);
        let done = |slice: usize| -> Option<MkCursor> {
            (slice + 1 < slices.len()).then_some(MkCursor::Create {
                slice: slice + 1,
                attempt: 0,
            })
        };
        let mut bytes = 0u64;
        loop {
            c = match c {
                MkCursor::Create { slice, attempt } => {
                    let Some(range) = slices.get(slice).copied() else {
                        return Ok(Page {
                            records: vec![],
                            next: None,
                            bytes,
                        });
                    };
                    let export_id = self.create_job(req, &filter_field, range, &columns).await?;
                    tracing::info!(entity = %req.entity, export_id = %export_id, from = %range.0, to = %range.1, "marketo: export job enqueued");
                    MkCursor::Poll {
                        slice,
                        export_id,
                        enqueued: Utc::now(),
                        attempt,
                    }
                }
                MkCursor::Poll {
                    slice,
                    export_id,
                    enqueued,
                    attempt,
                } => {
                    let r = HttpRequest::get(format!(
                        "{}{}/{export_id}/status.json",
                        self.base,
                        Self::export_path(&req.entity)
                    ));
                    let resp = self.call(&r, false).await?;
                    bytes += resp.bytes;
                    let st = resp
                        .body
                        .pointer("/result/0")
                        .cloned()
                        .unwrap_or(Value::Null);
                    let status = st.get("status").and_then(Value::as_str).unwrap_or("");
                    match status {
                        "Completed" => {
                            let size = st.get("fileSize").and_then(Value::as_u64).unwrap_or(0);
                            if size == 0 {
                                match done(slice) {
                                    Some(n) => n,
                                    None => {
                                        return Ok(Page {
                                            records: vec![],
                                            next: None,
                                            bytes,
                                        })
                                    }
                                }
                            } else {
                                MkCursor::File {
                                    slice,
                                    export_id,
                                    offset: 0,
                                    size,
                                    header: vec![],
                                    part: self.part_bytes(),
                                }
                            }
                        }
                        "Failed" | "Cancelled" => {
                            if attempt + 1 >= MAX_JOB_ATTEMPTS {
                                return Err(SourceError::Rejected {
                                    message: format!(
                                        "marketo: export job {export_id} ended {status} {MAX_JOB_ATTEMPTS} times{}",
                                        st.get("errorMsg").and_then(Value::as_str).map(|m| format!(" ({m})")).unwrap_or_default()
                                    ),
                                });
                            }
                            tracing::warn!(export_id = %export_id, status, "marketo: export job ended without a file; creating it again");
                            MkCursor::Create {
                                slice,
                                attempt: attempt + 1,
                            }
                        }
                        "Created" | "Queued" | "Processing" => {
                            let waited = Utc::now() - enqueued;
                            if waited.num_seconds() as f64 > self.cfg.max_wait_minutes * 60.0 {
                                return Err(SourceError::Rejected {
                                    message: format!(
                                        "marketo: export job {export_id} is still {status} after {} minutes (source.properties.max_wait_minutes): the instance's bulk queue is busy with other jobs",
                                        waited.num_minutes()
                                    ),
                                });
                            }
                            let c = MkCursor::Poll {
                                slice,
                                export_id,
                                enqueued,
                                attempt,
                            };
                            if started.elapsed() + poll > POLL_SLICE {
                                // Hand back an empty page: the chunk's budget keeps running.
                                return Ok(Page {
                                    records: vec![],
                                    next: Some(super::cursor_json(&c)?),
                                    bytes,
                                });
                            }
                            tokio::time::sleep(poll).await;
                            c
                        }
                        other => {
                            return Err(SourceError::Rejected {
                                message: format!(
                                    "marketo: export job {export_id} has the status '{other}'"
                                ),
                            })
                        }
                    }
                }
                MkCursor::File {
                    slice,
                    export_id,
                    offset,
                    size,
                    header,
                    part,
                } => {
                    let last = (offset + part).min(size);
                    let mut r = HttpRequest::get(format!(
                        "{}{}/{export_id}/file.json",
                        self.base,
                        Self::export_path(&req.entity)
                    ));
                    r.headers = vec![("Range".into(), format!("bytes={offset}-{}", last - 1))];
                    // A body shorter than what was asked for was cut on the way (a proxy, a
                    // dropped connection): read as is, its last records would be lost or half
                    // read. The part is asked for again (within the connector's retries).
                    let mut retries = 0usize;
                    let resp = loop {
                        let resp = self.call(&r, true).await?;
                        bytes += resp.bytes;
                        let got = resp.body.as_str().unwrap_or_default().len() as u64;
                        let expected = if resp.status == 200 {
                            size
                        } else {
                            last - offset
                        };
                        if size == 0 || got >= expected {
                            break resp;
                        }
                        if retries >= self.http.settings().max_retries {
                            return Err(SourceError::Transient {
                                message: format!(
                                    "marketo: export job {export_id}: a file part came back with {got} of the {expected} bytes asked for (truncated), {retries} times"
                                ),
                            });
                        }
                        retries += 1;
                        tracing::warn!(export_id = %export_id, got, expected, "a truncated file part: asking again");
                    };
                    let text = resp.body.as_str().unwrap_or_default().as_bytes();
                    // A server that ignores Range answers the whole file.
                    let buf: &[u8] = if resp.status == 200 && offset > 0 {
                        text.get(offset as usize..).unwrap_or_default()
                    } else {
                        text
                    };
                    let whole = resp.status == 200;
                    let last_part = whole || last >= size;
                    let (header, rows, consumed) =
                        Self::parse_part(buf, (!header.is_empty()).then_some(header), last_part)
                            .map_err(|why| SourceError::Rejected {
                                message: format!("marketo: export job {export_id}: {why}"),
                            })?;
                    if header.is_empty() && !last_part {
                        // Not even the header fits in the part: ask for a bigger one.
                        return Ok(Page {
                            records: vec![],
                            next: Some(super::cursor_json(&MkCursor::File {
                                slice,
                                export_id,
                                offset,
                                size,
                                header,
                                part: part.saturating_mul(2),
                            })?),
                            bytes,
                        });
                    }
                    if header.is_empty() {
                        return Err(SourceError::Rejected {
                            message: format!(
                                "marketo: export job {export_id}: the file has no header row"
                            ),
                        });
                    }
                    let idx: Vec<(usize, &Column)> = columns
                        .iter()
                        .filter_map(|c| header.iter().position(|h| h == &c.name).map(|i| (i, c)))
                        .collect();
                    if let Some(c) = columns.iter().find(|c| !header.contains(&c.name)) {
                        return Err(SourceError::Rejected {
                            message: format!(
                                "marketo: export job {export_id}: the file has no `{}` column",
                                c.name
                            ),
                        });
                    }
                    let inc = req.incremental_field.clone().unwrap_or_else(|| {
                        if req.entity == "leads" {
                            "createdAt".into()
                        } else {
                            "activityDate".into()
                        }
                    });
                    let mut records = Vec::with_capacity(rows.len());
                    for (n, row) in rows.iter().enumerate() {
                        let mut rec = Map::new();
                        for (i, col) in &idx {
                            let v = row.get(*i).map(String::as_str).unwrap_or("null");
                            let t =
                                Self::typed(v, &col.ty).map_err(|why| SourceError::Rejected {
                                    message: format!(
                                        "marketo: export job {export_id} row {}: `{}`: {why}",
                                        n + 1,
                                        col.name
                                    ),
                                })?;
                            rec.insert(col.name.clone(), t);
                        }
                        if let Some(w) = &req.window {
                            let t = rec.get(&inc).and_then(normalize::time);
                            if t.is_some_and(|t| !w.contains(t)) {
                                continue;
                            }
                        }
                        records.push(Value::Object(rec));
                    }
                    let next_offset = if whole { size } else { offset + consumed };
                    let next = if last_part || next_offset >= size {
                        done(slice)
                    } else if consumed == 0 {
                        // One record longer than a part: ask for a bigger part.
                        Some(MkCursor::File {
                            slice,
                            export_id,
                            offset,
                            size,
                            header,
                            part: part.saturating_mul(2),
                        })
                    } else {
                        Some(MkCursor::File {
                            slice,
                            export_id,
                            offset: next_offset,
                            size,
                            header,
                            part: self.part_bytes().max(part / 2),
                        })
                    };
                    return Ok(Page {
                        records,
                        next: next.map(|n| super::cursor_json(&n)).transpose()?,
                        bytes,
                    });
                }
            };
        }
    }
}
