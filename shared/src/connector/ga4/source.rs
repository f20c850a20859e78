//! The ga4 connector's reads: requests, paging, windows, records.

use super::*;

/// Where a read stands: the day being read (`None`: a complete read's single range) and the
/// offset in it, with the `rowCount` its first page reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct GaCursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) day: Option<NaiveDate>,
    #[serde(default)]
    pub(super) offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) row_count: Option<u64>,
}

#[derive(Debug)]
pub(super) struct Meta {
    pub(super) dimensions: BTreeMap<String, String>,
    /// apiName -> (uiName, type).
    pub(super) metrics: BTreeMap<String, (String, String)>,
}

/// The GA4 source bound to one flow.
pub struct Ga4Source {
    pub(super) cfg: Ga4Config,
    pub(super) base: String,
    pub(super) http: HttpClient,
    pub(super) meta: tokio::sync::Mutex<Option<std::sync::Arc<Meta>>>,
    pub(super) warnings: std::sync::Mutex<Vec<String>>,
}

/// 429 `RESOURCE_EXHAUSTED` for hourly or daily tokens cannot be retried within seconds.
pub(super) fn quota_hook(status: u16, body: &[u8]) -> Option<SourceError> {
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

    pub(super) async fn send(&self, r: HttpRequest) -> Result<HttpResponse, SourceError> {
        self.http.send(&r).await?.ok_or_else(|| SourceError::Fatal {
            message: "an ignored status answered a Data API request".into(),
        })
    }

    pub(super) fn rejected(url: &str, what: impl std::fmt::Display) -> SourceError {
        SourceError::Rejected {
            message: format!("ga4: {url}: {what}"),
        }
    }

    pub(super) async fn metadata(&self) -> Result<std::sync::Arc<Meta>, SourceError> {
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
    pub(super) async fn fields(&self, entity: &str) -> Result<Vec<FieldInfo>, SourceError> {
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

    pub(super) fn limit(&self, req: &ReadRequest) -> u32 {
        req.page_size
            .or(self.cfg.page_size)
            .unwrap_or(DEFAULT_LIMIT)
            .clamp(1, MAX_LIMIT)
    }

    /// The days of a window: those whose midnight is in `(start, end]`.
    pub(super) fn days(window: &Window) -> Option<(NaiveDate, NaiveDate)> {
        let first = match window.start {
            Some(s) => s.date_naive().checked_add_days(Days::new(1))?,
            None => NaiveDate::from_ymd_opt(2015, 8, 14)?,
        };
        let last = window.end.date_naive();
        (first <= last).then_some((first, last))
    }

    pub(super) fn warn(&self, w: String) {
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
