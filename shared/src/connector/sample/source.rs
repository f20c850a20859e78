//! The sample connector's reads: requests, paging, windows, records.

use super::*;

pub(super) const SPAN_SECONDS: i64 = 90 * 86_400;
/// The earliest opportunity close date.
pub(super) const FIRST_CLOSE: NaiveDate = match NaiveDate::from_ymd_opt(2024, 1, 1) {
    Some(d) => d,
    None => panic!("2024-01-01 is a date"),
};
pub struct SampleSource {
    pub(super) records: u64,
    pub(super) page_size: Option<u32>,
    pub(super) as_of: Option<DateTime<Utc>>,
    /// The end of the run's whole window ([`Source::set_run_end`]): the data set every slice of
    /// the run reads, when `as_of` does not pin one.
    pub(super) run_end: Option<DateTime<Utc>>,
    pub(super) seed: u64,
    pub(super) latency: Option<std::time::Duration>,
}

impl SampleSource {
    pub fn from_properties(props: &serde_json::Map<String, Value>) -> Result<Self, SourceError> {
        let mut s = SampleSource {
            records: DEFAULT_RECORDS,
            page_size: None,
            as_of: None,
            run_end: None,
            seed: 0,
            latency: None,
        };
        for (k, v) in props {
            let field = format!("source.properties.{k}");
            let uint = || {
                v.as_u64()
                    .ok_or_else(|| SourceError::config(&field, "must be a whole number ≥ 0"))
            };
            match k.as_str() {
                "records" => s.records = uint()?,
                "page_size" => {
                    let n = uint()?;
                    if n == 0 || n > 100_000 {
                        return Err(SourceError::config(field, "must be between 1 and 100000"));
                    }
                    s.page_size = Some(n as u32)
                }
                "seed" => s.seed = uint()?,
                "latency_ms" => s.latency = Some(std::time::Duration::from_millis(uint()?)),
                "as_of" => {
                    let t = v
                        .as_str()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .ok_or_else(|| SourceError::config(&field, "must be an RFC 3339 time, e.g. 2026-01-01T00:00:00Z"))?;
                    s.as_of = Some(t.with_timezone(&Utc));
                }
                _ => {
                    return Err(SourceError::config(
                        field,
                        "unknown property; the sample connector takes records, page_size, seed, latency_ms, as_of",
                    ))
                }
            }
        }
        Ok(s)
    }

    pub(super) fn step_micros(&self) -> i64 {
        (SPAN_SECONDS * 1_000_000) / self.records.max(1) as i64
    }

    /// The data set a request reads: as of the `as_of` property, else the run's window end,
    /// else the request's window end.
    pub(super) fn as_of_for(&self, req: &ReadRequest) -> DateTime<Utc> {
        self.as_of
            .or(self.run_end)
            .or(req.window.map(|w| w.end))
            .unwrap_or(DateTime::UNIX_EPOCH)
    }

    /// `updated_at` of record `j` for a data set as of `as_of`.
    pub fn updated_at(&self, j: u64, as_of: DateTime<Utc>) -> DateTime<Utc> {
        let base = as_of - ChronoDuration::seconds(SPAN_SECONDS);
        base + ChronoDuration::microseconds(self.step_micros() * (j as i64 + 1))
    }

    /// Indexes `[lo, hi)` of the records updated in `(start, end]`, as of `as_of`.
    pub(super) fn index_range(&self, window: Option<&Window>, as_of: DateTime<Utc>) -> (u64, u64) {
        let Some(w) = window else {
            return (0, self.records);
        };
        let base = as_of - ChronoDuration::seconds(SPAN_SECONDS);
        let step = self.step_micros().max(1);
        // updated_at(j) = base + (j+1)*step ; want start < ts <= end.
        let micros = |t: DateTime<Utc>| (t - base).num_microseconds().unwrap_or(i64::MAX);
        let lo = match w.start {
            None => 0,
            // smallest j with (j+1)*step > s  <=>  j >= floor(s/step)
            Some(s) => {
                let s = micros(s);
                if s < 0 {
                    0
                } else {
                    (s / step) as u64
                }
            }
        };
        // largest j with (j+1)*step <= e  <=>  j <= e/step - 1 ; hi is exclusive
        let e = micros(w.end);
        let hi = if e < step { 0 } else { (e / step) as u64 };
        (lo.min(self.records), hi.min(self.records))
    }

    pub(super) fn record(&self, entity: &str, j: u64, as_of: DateTime<Utc>) -> Value {
        let r = Rng::new(self.seed ^ (j.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ fnv(entity));
        let updated = self.updated_at(j, as_of);
        let created = updated - ChronoDuration::seconds(r.at(1) as i64 % (400 * 86_400));
        let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let id = j + 1;
        match entity {
            "accounts" => {
                let country = pick(
                    &r,
                    2,
                    &["US", "DE", "FR", "GB", "JP", "BR", "IN", "CA", "ES", "AU"],
                );
                json!({
                    "id": format!("ACC-{id:08}"),
                    "name": format!("{} {}", pick(&r, 3, &["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell", "Cyberdyne", "Soylent"]), pick(&r, 4, &["Corp", "GmbH", "Ltd", "SA", "Inc", "KK"])),
                    "industry": if r.at(5).is_multiple_of(13) { Value::Null } else { json!(pick(&r, 6, &["Software", "Retail", "Manufacturing", "Finance", "Health", "Energy"])) },
                    "country": if r.at(7).is_multiple_of(17) { Value::Null } else { json!(country) },
                    "employees": r.at(8) % 100_000,
                    "annual_revenue": decimal(r.at(9) % 10_000_000_000, 2),
                    "rating": (r.at(10) % 5000) as f64 / 1000.0,
                    "is_active": !r.at(11).is_multiple_of(4),
                    "status": pick(&r, 12, &["active", "active", "active", "prospect", "churned", "deleted"]),
                    "phone": format!("+1-555-{:03}-{:04}", r.at(13) % 1000, r.at(14) % 10_000),
                    "address": {
                        "street": format!("{} {} St", r.at(15) % 9999 + 1, pick(&r, 16, &["Main", "Oak", "Pine", "Maple", "Cedar", "Elm"])),
                        "city": pick(&r, 17, &["Springfield", "Berlin", "Paris", "London", "Tokyo", "São Paulo", "Zürich"]),
                        "postal_code": format!("{:05}", r.at(18) % 100_000),
                    },
                    "internal_notes": if r.at(19).is_multiple_of(3) { Value::Null } else { json!(format!("note {} for {}", r.at(20) % 1000, id)) },
                    "created_at": ts(created),
                    "updated_at": ts(updated),
                })
            }
            "contacts" => json!({
                "id": format!("CON-{id:08}"),
                "account_id": format!("ACC-{:08}", r.at(1) % self.records.max(1) + 1),
                "first_name": pick(&r, 2, &["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Zoë", "Łukasz"]),
                "last_name": pick(&r, 3, &["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]),
                "email": format!("user{id}@example.com"),
                "phone": if r.at(4).is_multiple_of(5) { Value::Null } else { json!(format!("+44-20-{:04}-{:04}", r.at(5) % 10_000, r.at(6) % 10_000)) },
                "title": pick(&r, 7, &["Engineer", "Manager", "Director", "VP", "CTO"]),
                "country": pick(&r, 8, &["US", "DE", "FR", "GB", "JP"]),
                "do_not_call": r.at(9).is_multiple_of(10),
                "score": (r.at(10) % 200) as i64 - 50,
                "created_at": ts(created),
                "updated_at": ts(updated),
            }),
            "opportunities" => {
                let close = FIRST_CLOSE + ChronoDuration::days((r.at(5) % 1000) as i64);
                json!({
                    "id": format!("OPP-{id:08}"),
                    "account_id": format!("ACC-{:08}", r.at(1) % self.records.max(1) + 1),
                    "name": format!("Deal {id}"),
                    "stage": pick(&r, 2, &["Prospecting", "Qualification", "Proposal", "Negotiation", "Closed Won", "Closed Lost"]),
                    "amount": decimal(r.at(3) % 100_000_000, 2),
                    "probability": (r.at(4) % 101) as f64 / 100.0,
                    "close_date": close.format("%Y-%m-%d").to_string(),
                    "is_closed": r.at(6).is_multiple_of(3),
                    "created_at": ts(created),
                    "updated_at": ts(updated),
                })
            }
            _ => json!({
                "id": id,
                "subject": format!("{} #{id}", pick(&r, 1, &["Cannot log in", "Refund request", "Bug report", "Feature request", "Invoice question"])),
                "status": pick(&r, 2, &["new", "open", "pending", "solved", "closed"]),
                "priority": pick(&r, 3, &["low", "normal", "high", "urgent"]),
                "requester_email": format!("customer{}@example.org", r.at(4) % 50_000),
                "tags": (0..(r.at(5) % 4)).map(|k| pick(&r, 6 + k, &["billing", "login", "vip", "mobile", "api", "urgent"])).collect::<Vec<_>>(),
                "satisfaction": if r.at(10).is_multiple_of(4) { Value::Null } else { json!(r.at(11) % 5 + 1) },
                "created_at": ts(created),
                "updated_at": ts(updated),
            }),
        }
    }
}

pub(super) fn pick<'a>(r: &Rng, k: u64, xs: &[&'a str]) -> &'a str {
    xs[(r.at(k) % xs.len() as u64) as usize]
}

pub(super) fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// A counter-based generator: `at(k)` is the k-th value for this record (splitmix64).
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub(super) fn at(&self, k: u64) -> u64 {
        let mut z = self
            .0
            .wrapping_add(k.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Pushed filters, as the sample "server" applies them: each value is parsed into the field's
/// declared type and compared like transform-batch does (nulls never match, except
/// `not_equal` and `is_null`). Every operator but `contains` is pushable.
pub(super) struct PushedFilters<'a> {
    pub(super) filters: &'a [crate::flow::tasks::FilterSpec],
    pub(super) types: std::collections::HashMap<String, arrow::datatypes::DataType>,
}

impl<'a> PushedFilters<'a> {
    pub(super) fn new(
        entity: &str,
        filters: &'a [crate::flow::tasks::FilterSpec],
    ) -> Result<Self, SourceError> {
        let types = fields(entity)
            .iter()
            .map(|f| (f.name.clone(), crate::schema::arrow_type(&f.data_type)))
            .collect();
        let p = PushedFilters { filters, types };
        for f in filters {
            p.check(f)?;
        }
        Ok(p)
    }

    pub(super) fn check(&self, f: &crate::flow::tasks::FilterSpec) -> Result<(), SourceError> {
        for c in f.any.iter().chain(f.all.iter()).flatten() {
            self.check(c)?;
        }
        if f.any.is_none() && f.all.is_none() {
            let field = f.field.as_deref().unwrap_or_default();
            if !self.types.contains_key(field) || f.op.is_none_or(|op| !PUSHDOWN_OPS.contains(&op))
            {
                return Err(SourceError::Rejected {
                    message: format!(
                        "sample connector: cannot filter on '{field}' with {:?}",
                        f.op
                    ),
                });
            }
        }
        Ok(())
    }

    pub(super) fn matches(&self, r: &Value) -> bool {
        self.filters.iter().all(|f| self.eval(f, r))
    }

    pub(super) fn eval(&self, f: &crate::flow::tasks::FilterSpec, r: &Value) -> bool {
        use crate::flow::tasks::FilterOp::*;
        use arrow::compute::kernels::cmp;
        if let Some(l) = &f.any {
            return l.iter().any(|c| self.eval(c, r));
        }
        if let Some(l) = &f.all {
            return l.iter().all(|c| self.eval(c, r));
        }
        let (Some(field), Some(op)) = (f.field.as_deref(), f.op) else {
            return false;
        };
        let t = &self.types[field];
        let v = r.get(field).unwrap_or(&Value::Null);
        if v.is_null() {
            return matches!(op, IsNull | NotEqual);
        }
        let typed = |x: &Value| crate::transform::kernels::scalar_of(x, t).ok();
        let Some(x) = typed(v) else {
            return op == NotEqual;
        };
        let test = |target: Option<&Value>,
                    k: fn(
            &dyn arrow::array::Datum,
            &dyn arrow::array::Datum,
        )
            -> Result<arrow::array::BooleanArray, arrow::error::ArrowError>| {
            match target.and_then(typed) {
                Some(y) => k(&x, &y).map(|b| b.value(0)).unwrap_or(false),
                None => false,
            }
        };
        match op {
            IsNull => false,
            IsNotNull => true,
            Equal => test(f.value.as_ref(), cmp::eq),
            NotEqual => !test(f.value.as_ref(), cmp::eq),
            Less => test(f.value.as_ref(), cmp::lt),
            LessOrEqual => test(f.value.as_ref(), cmp::lt_eq),
            Greater => test(f.value.as_ref(), cmp::gt),
            GreaterOrEqual => test(f.value.as_ref(), cmp::gt_eq),
            Between => test(f.min.as_ref(), cmp::gt_eq) && test(f.max.as_ref(), cmp::lt_eq),
            In => f.values.iter().flatten().any(|y| test(Some(y), cmp::eq)),
            Contains => false,
        }
    }
}

#[async_trait]
impl Source for SampleSource {
    fn pushdown(&self) -> crate::transform::FilterPushdown {
        crate::transform::FilterPushdown {
            ops: PUSHDOWN_OPS.to_vec(),
            combinations: true,
        }
    }

    async fn list_entities(&self) -> Result<Vec<EntityInfo>, SourceError> {
        Ok(ENTITIES
            .iter()
            .map(|(n, d)| EntityInfo {
                name: n.to_string(),
                label: n.to_string(),
                description: Some(d.to_string()),
            })
            .collect())
    }

    async fn describe(&self, entity: &str) -> Result<EntityDescription, SourceError> {
        if !ENTITIES.iter().any(|(e, _)| *e == entity) {
            return Err(SourceError::config(
                "source.entity",
                format!("the sample connector has no entity '{entity}'"),
            ));
        }
        Ok(EntityDescription {
            entity: entity.to_string(),
            fields: fields(entity),
        })
    }

    /// Time slices; no API, so as many at once as the engine runs.
    fn slicing(&self, _entity: &str) -> Slicing {
        Slicing::Time { parallelism: 8 }
    }

    /// The window's records, exactly (the window maps to an index range).
    async fn count(&self, req: &ReadRequest) -> Result<Option<u64>, SourceError> {
        if req.incremental_field.as_deref() != Some("updated_at") {
            return Ok(None);
        }
        let (lo, hi) = self.index_range(req.window.as_ref(), self.as_of_for(req));
        Ok(Some(hi.saturating_sub(lo)))
    }

    fn set_run_end(&mut self, end: DateTime<Utc>) {
        self.run_end = Some(end);
    }

    async fn read_page(
        &self,
        req: &ReadRequest,
        cursor: Option<&Value>,
    ) -> Result<Page, SourceError> {
        if let Some(f) = &req.incremental_field {
            if f != "updated_at" && f != "created_at" {
                return Err(SourceError::config(
                    "source.incremental.field",
                    format!("the sample connector filters on updated_at or created_at, not '{f}'"),
                ));
            }
        }
        let as_of = self.as_of_for(req);
        let window = req.window.as_ref();
        let (lo, hi) = if req.incremental_field.as_deref() == Some("created_at") {
            (0, self.records) // filtered below, record by record
        } else {
            self.index_range(window, as_of)
        };
        let start = match cursor {
            None => lo,
            Some(c) => {
                c.get("next")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| SourceError::Rejected {
                        message: format!("sample connector: bad cursor {c}"),
                    })?
            }
        };
        let size = self.page_size.or(req.page_size).unwrap_or(DEFAULT_PAGE) as u64;
        let end = (start + size).min(hi);
        if let Some(l) = self.latency {
            tokio::time::sleep(l).await;
        }
        let pushed = PushedFilters::new(&req.entity, &req.filters)?;
        let mut records = Vec::with_capacity(end.saturating_sub(start) as usize);
        let mut bytes = 0u64;
        for j in start..end {
            let r = self.record(&req.entity, j, as_of);
            if req.incremental_field.as_deref() == Some("created_at") {
                if let (Some(w), Some(t)) = (
                    window,
                    r["created_at"]
                        .as_str()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok()),
                ) {
                    if !w.contains(t.with_timezone(&Utc)) {
                        continue;
                    }
                }
            }
            if !pushed.matches(&r) {
                continue;
            }
            bytes += r.to_string().len() as u64 + 1;
            records.push(r);
        }
        let next = (end < hi).then(|| json!({ "next": end }));
        Ok(Page {
            records,
            next,
            bytes,
        })
    }
}
