//! The jira connector's reads: requests, paging, windows, records.

use super::*;

/// Issues per search page we ask for (Jira may return fewer).
pub(super) const MAX_PAGE: u32 = 100;
/// Changelog entries per request (the endpoint's maximum).
pub(super) const CHANGELOG_PAGE: u32 = 100;

/// A JQL date literal: `t` in `tz`, floored to the minute, `widen` minutes earlier (negative) or
/// later where the local time is ambiguous (a daylight-saving change repeats the hour).
pub(super) fn jql_time(t: DateTime<Utc>, tz: chrono_tz::Tz, later: bool) -> String {
    let local = t.with_timezone(&tz).naive_local();
    let floored = local
        .with_second(0)
        .and_then(|l| l.with_nanosecond(0))
        .unwrap_or(local);
    let floored = match tz.from_local_datetime(&floored) {
        // Jira may read the repeated hour either way: widen by an hour.
        LocalResult::Ambiguous(_, _) if later => floored + ChronoDuration::hours(1),
        LocalResult::Ambiguous(_, _) => floored - ChronoDuration::hours(1),
        _ => floored,
    };
    floored.format("%Y/%m/%d %H:%M").to_string()
}

/// Where a read stands: a time slice starting at `lo` (UTC ms, a minute boundary of the query),
/// the issue versions already read at or after it, and the token within the slice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct JCursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) lo: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) seen: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) token: Option<String>,
}

/// The Jira source bound to one flow.
pub struct JiraSource {
    pub(super) cfg: JiraConfig,
    pub(super) base: String,
    pub(super) http: HttpClient,
    pub(super) fields: tokio::sync::Mutex<Option<std::sync::Arc<Vec<JField>>>>,
    pub(super) tz: tokio::sync::Mutex<Option<chrono_tz::Tz>>,
}

impl JiraSource {
    pub fn new(props: &Map<String, Value>, auth: Authenticator) -> Result<Self, SourceError> {
        let cfg = JiraConfig::parse(props)?;
        let base = cfg.base();
        let http = HttpClient::new(cfg.http.clone(), std::sync::Arc::new(auth), &base)?;
        Ok(JiraSource {
            cfg,
            base,
            http,
            fields: Default::default(),
            tz: Default::default(),
        })
    }

    pub(super) async fn send(&self, r: HttpRequest) -> Result<HttpResponse, SourceError> {
        self.http.send(&r).await?.ok_or_else(|| SourceError::Fatal {
            message: "an ignored status answered a Jira request".into(),
        })
    }

    pub(super) fn rejected(url: &str, what: impl std::fmt::Display) -> SourceError {
        SourceError::Rejected {
            message: format!("jira: {url}: {what}"),
        }
    }

    /// The profile user (`/myself`): proves the credentials and gives the JQL time zone.
    pub(super) async fn myself(&self) -> Result<Value, SourceError> {
        let resp = self
            .send(HttpRequest::get(format!("{}/rest/api/3/myself", self.base)))
            .await?;
        if resp.body.get("accountId").and_then(Value::as_str).is_none() {
            return Err(self.http.auth.auth_error(format!(
                "{} answered without an accountId: the credentials were not accepted as a user; put the user's email and API token (or an OAuth token) into the profile's secret",
                resp.url
            )));
        }
        Ok(resp.body)
    }

    pub(super) async fn time_zone(&self) -> Result<chrono_tz::Tz, SourceError> {
        if let Some(tz) = *self.tz.lock().await {
            return Ok(tz);
        }
        let tz: chrono_tz::Tz = match &self.cfg.time_zone {
            Some(t) => t.parse().map_err(|_| {
                SourceError::config(
                    "source.properties.time_zone",
                    format!("'{t}' is not an IANA time zone name"),
                )
            })?,
            None => {
                let me = self.myself().await?;
                let name = me.get("timeZone").and_then(Value::as_str).unwrap_or("UTC");
                name.parse::<chrono_tz::Tz>().map_err(|_| {
                    SourceError::config(
                        "source.properties.time_zone",
                        format!("the profile user's time zone '{name}' is not one ferry knows; set time_zone to the IANA name Jira uses for it"),
                    )
                })?
            }
        };
        *self.tz.lock().await = Some(tz);
        Ok(tz)
    }

    pub(super) async fn all_fields(&self) -> Result<std::sync::Arc<Vec<JField>>, SourceError> {
        if let Some(f) = &*self.fields.lock().await {
            return Ok(f.clone());
        }
        let resp = self
            .send(HttpRequest::get(format!("{}/rest/api/3/field", self.base)))
            .await?;
        let arr = resp
            .body
            .as_array()
            .ok_or_else(|| Self::rejected(&resp.url, "the field list is not a JSON array"))?;
        let list: Vec<JField> = arr
            .iter()
            .filter_map(|f| {
                let id = f.get("id")?.as_str()?.to_string();
                Some(JField {
                    name: f
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or(&id)
                        .to_string(),
                    ty: field_type(f.get("schema")),
                    navigable: f.get("navigable").and_then(Value::as_bool).unwrap_or(true),
                    id,
                })
            })
            .collect();
        let list = std::sync::Arc::new(list);
        *self.fields.lock().await = Some(list.clone());
        Ok(list)
    }

    /// The issue fields read, in output order: the flow's (checked: Jira ignores unknown ids)
    /// or every navigable one; `created` and `updated` always.
    pub(super) async fn selected(&self) -> Result<Vec<JField>, SourceError> {
        let all = self.all_fields().await?;
        let find = |id: &str| all.iter().find(|f| f.id == id).cloned();
        let mut out: Vec<JField> = match &self.cfg.fields {
            Some(fs) => {
                let mut v = vec![];
                for (i, f) in fs.iter().enumerate() {
                    match find(f) {
                        Some(jf) => v.push(jf),
                        None => {
                            return Err(SourceError::config(
                                format!("source.properties.fields[{i}]"),
                                format!("'{f}' is not a field id of this site (Jira would silently leave it out); `ferry entities describe` lists them"),
                            ))
                        }
                    }
                }
                v
            }
            None => all
                .iter()
                .filter(|f| f.navigable && f.id != "issuekey" && f.id != "thumbnail")
                .cloned()
                .collect(),
        };
        for must in ["created", "updated"] {
            if !out.iter().any(|f| f.id == must) {
                out.push(find(must).unwrap_or(JField {
                    id: must.into(),
                    name: must.into(),
                    ty: FieldType::Timestamp,
                    navigable: true,
                }));
            }
        }
        for f in out.iter_mut() {
            if f.id == "created" || f.id == "updated" {
                f.ty = FieldType::Timestamp;
            }
        }
        Ok(out)
    }

    pub(super) fn page_size(&self, req: &ReadRequest) -> u32 {
        req.page_size
            .or(self.cfg.page_size)
            .unwrap_or(MAX_PAGE)
            .clamp(1, MAX_PAGE)
    }

    /// The JQL of one slice: the flow's restriction, `updated >= lo` and, for issues, the
    /// window's end; ordered by `updated` then `id`.
    pub(super) fn jql(&self, lo: i64, hi: Option<DateTime<Utc>>, tz: chrono_tz::Tz) -> String {
        let mut parts = vec![];
        if let Some(q) = &self.cfg.jql {
            parts.push(format!("({q})"));
        }
        let lo = DateTime::<Utc>::from_timestamp_millis(lo).unwrap_or_default();
        parts.push(format!("updated >= \"{}\"", jql_time(lo, tz, false)));
        if let Some(hi) = hi {
            let next_minute = hi + ChronoDuration::minutes(1);
            parts.push(format!("updated < \"{}\"", jql_time(next_minute, tz, true)));
        }
        format!("{} ORDER BY updated ASC, id ASC", parts.join(" AND "))
    }

    /// One search page of the slice in `c`: (issues not read before with their `updated`, the
    /// cursor after them).
    pub(super) async fn search_page(
        &self,
        req: &ReadRequest,
        c: JCursor,
        field_ids: &[String],
        bound_end: bool,
    ) -> Result<(Vec<(Value, DateTime<Utc>)>, Option<JCursor>, u64), SourceError> {
        let tz = self.time_zone().await?;
        let window = req.window.as_ref();
        let lo = c.lo.unwrap_or_else(|| {
            window
                .and_then(|w| w.start)
                .map(|s| s.timestamp_millis())
                .unwrap_or(0)
        });
        let jql = self.jql(lo, window.filter(|_| bound_end).map(|w| w.end), tz);
        let mut body = json!({
            "jql": jql,
            "fields": field_ids,
            "maxResults": self.page_size(req),
        });
        if let Some(t) = &c.token {
            body["nextPageToken"] = json!(t);
        }
        let mut r = HttpRequest::get(format!("{}/rest/api/3/search/jql", self.base));
        r.method = reqwest::Method::POST;
        r.body = Some(body);
        let resp = self.send(r).await?;
        let issues = resp
            .body
            .get("issues")
            .and_then(Value::as_array)
            .ok_or_else(|| Self::rejected(&resp.url, "the answer has no `issues` array"))?;
        let seen: HashSet<&str> = c.seen.iter().map(String::as_str).collect();
        let mut out = vec![];
        let mut last: Option<DateTime<Utc>> = None;
        let mut keys: Vec<(String, DateTime<Utc>)> = vec![];
        for (n, issue) in issues.iter().enumerate() {
            let id = match issue.get("id") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Err(Self::rejected(&resp.url, "an issue has no id")),
            };
            let updated = issue
                .pointer("/fields/updated")
                .and_then(Value::as_str)
                .and_then(jira_time)
                .ok_or_else(|| {
                    // The issue's position on the page, never its id or key (record values).
                    Self::rejected(
                        &resp.url,
                        format!("issue {n} of the page has no `updated` datetime"),
                    )
                })?;
            let k = format!("{id}@{}", updated.timestamp_millis());
            last = last.max(Some(updated));
            if seen.contains(k.as_str()) {
                continue;
            }
            keys.push((k, updated));
            out.push((issue.clone(), updated));
        }
        let token = resp
            .body
            .get("nextPageToken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(String::from);
        let last_page = token.is_none()
            || resp.body.get("isLast").and_then(Value::as_bool) == Some(true)
            || issues.is_empty();
        let next = if last_page {
            None
        } else {
            let minute = |t: DateTime<Utc>| t.timestamp_millis().div_euclid(60_000) * 60_000;
            let new_lo = last.map(minute).unwrap_or(lo);
            if new_lo > minute_floor(lo) {
                // A new slice from the minute of the latest issue read; versions read at or
                // after that minute are skipped there.
                let seen_now: Vec<String> = c
                    .seen
                    .into_iter()
                    .chain(keys.into_iter().map(|(k, _)| k))
                    .filter(|k| {
                        k.rsplit_once('@')
                            .and_then(|(_, t)| t.parse::<i64>().ok())
                            .is_some_and(|t| t >= new_lo)
                    })
                    .collect();
                Some(JCursor {
                    lo: Some(new_lo),
                    seen: seen_now,
                    token: None,
                })
            } else {
                // The whole page is in the slice's first minute: follow the token.
                if c.token.as_deref() == token.as_deref() {
                    return Err(Self::rejected(
                        &resp.url,
                        "nextPageToken did not change; stopping instead of looping",
                    ));
                }
                let mut seen = c.seen;
                seen.extend(keys.into_iter().map(|(k, _)| k));
                Some(JCursor {
                    lo: Some(lo),
                    seen,
                    token,
                })
            }
        };
        Ok((out, next, resp.bytes))
    }

    /// One issue as a record; `n` is its position on the page (what messages name).
    pub(super) fn issue_record(
        &self,
        issue: &Value,
        n: usize,
        fields: &[JField],
        url: &str,
    ) -> Result<Value, SourceError> {
        let mut rec = Map::new();
        rec.insert(
            "id".into(),
            match issue.get("id") {
                Some(Value::Number(n)) => Value::String(n.to_string()),
                Some(v) => v.clone(),
                None => Value::Null,
            },
        );
        rec.insert(
            "key".into(),
            issue.get("key").cloned().unwrap_or(Value::Null),
        );
        let f = issue.get("fields");
        for jf in fields {
            let v = f.and_then(|f| f.get(&jf.id)).unwrap_or(&Value::Null);
            let shaped = shape_value(v, &jf.ty).map_err(|why| {
                Self::rejected(
                    url,
                    format!("issue {n} of the page, field `{}`: {why}", jf.id),
                )
            })?;
            rec.insert(jf.id.clone(), shaped);
        }
        Ok(Value::Object(rec))
    }

    /// Every changelog history of one issue.
    pub(super) async fn changelog(&self, issue_id: &str) -> Result<(Vec<Value>, u64), SourceError> {
        let mut out = vec![];
        let mut bytes = 0;
        let mut start = 0u64;
        loop {
            let mut r = HttpRequest::get(format!(
                "{}/rest/api/3/issue/{issue_id}/changelog",
                self.base
            ));
            r.query = vec![
                ("startAt".into(), start.to_string()),
                ("maxResults".into(), CHANGELOG_PAGE.to_string()),
            ];
            r.ignore_status = vec![404];
            let Some(resp) = self.http.send(&r).await? else {
                // Deleted since the search: nothing to read.
                return Ok((out, bytes));
            };
            bytes += resp.bytes;
            let values = resp
                .body
                .get("values")
                .and_then(Value::as_array)
                .ok_or_else(|| Self::rejected(&resp.url, "the changelog has no `values` array"))?;
            out.extend(values.iter().cloned());
            let n = values.len() as u64;
            let is_last = resp
                .body
                .get("isLast")
                .and_then(Value::as_bool)
                .unwrap_or_else(|| {
                    let total = resp.body.get("total").and_then(Value::as_u64).unwrap_or(0);
                    start + n >= total
                });
            if is_last || n == 0 {
                return Ok((out, bytes));
            }
            start += n;
        }
    }
}

pub(super) fn minute_floor(ms: i64) -> i64 {
    ms.div_euclid(60_000) * 60_000
}

#[async_trait]
impl Source for JiraSource {
    /// The entities, after `/rest/api/3/myself` proves the credentials.
    async fn list_entities(&self) -> Result<Vec<EntityInfo>, SourceError> {
        self.myself().await?;
        Ok(ENTITIES
            .iter()
            .map(|(n, l)| EntityInfo {
                name: (*n).into(),
                label: (*l).into(),
                description: Some(format!("{}/rest/api/3/search/jql", self.base)),
            })
            .collect())
    }

    /// `issues`: time slices, each a JQL search bounded on both ends (two at once by default:
    /// Atlassian's burst limits are per user, not documented as numbers). Changelogs read every
    /// issue updated since a window's start, so slices of them would each read to the present:
    /// one slice.
    fn slicing(&self, entity: &str) -> Slicing {
        match entity_def(entity) {
            Ok((name, _)) if *name == "issues" => Slicing::Time { parallelism: 2 },
            _ => Slicing::None,
        }
    }

    async fn describe(&self, entity: &str) -> Result<EntityDescription, SourceError> {
        let (name, _) = entity_def(entity)?;
        let fields = if *name == "issues" {
            let mut v = vec![fields::s("id").key(), fields::s("key").required()];
            for jf in self.selected().await? {
                let mut f = FieldInfo::new(&jf.id, jf.ty.clone());
                f.label = Some(jf.name.clone());
                if jf.ty == FieldType::Timestamp {
                    f = f.incremental();
                }
                v.push(f);
            }
            v
        } else {
            changelog_fields()
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
        let (name, _) = entity_def(&req.entity)?;
        let c: JCursor = super::cursor_from("jira", cursor)?.unwrap_or_default();
        if *name == "issues" {
            let fields = self.selected().await?;
            if let Some(f) = &req.incremental_field {
                if !fields
                    .iter()
                    .any(|jf| &jf.id == f && jf.ty == FieldType::Timestamp)
                {
                    return Err(SourceError::config(
                        "source.incremental.field",
                        format!("'{f}' is not a datetime field read from issues; use updated"),
                    ));
                }
            }
            let ids: Vec<String> = fields.iter().map(|f| f.id.clone()).collect();
            let (issues, next, bytes) = self.search_page(req, c, &ids, true).await?;
            let url = format!("{}/rest/api/3/search/jql", self.base);
            let mut records = Vec::with_capacity(issues.len());
            for (n, (issue, updated)) in issues.into_iter().enumerate() {
                // The exact window, on milliseconds (the query was minute-wide).
                if req.window.as_ref().is_some_and(|w| !w.contains(updated)) {
                    continue;
                }
                records.push(self.issue_record(&issue, n, &fields, &url)?);
            }
            Ok(Page {
                records,
                next: next.map(|n| super::cursor_json(&n)).transpose()?,
                bytes,
            })
        } else {
            let (issues, next, mut bytes) = self
                .search_page(req, c, &["updated".to_string()], false)
                .await?;
            let mut records = vec![];
            for (n, (issue, _)) in issues.into_iter().enumerate() {
                let id = match issue.get("id") {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => continue,
                };
                let key = issue.get("key").cloned().unwrap_or(Value::Null);
                let (histories, b) = self.changelog(&id).await?;
                bytes += b;
                for h in histories {
                    let Some(created) =
                        h.get("created").and_then(Value::as_str).and_then(jira_time)
                    else {
                        return Err(SourceError::Rejected {
                            message: format!(
                                "jira: a changelog history of issue {n} of the page has no `created` datetime"
                            ),
                        });
                    };
                    if req.window.as_ref().is_some_and(|w| !w.contains(created)) {
                        continue;
                    }
                    records.push(json!({
                        "id": match h.get("id") { Some(Value::Number(n)) => Value::String(n.to_string()), Some(v) => v.clone(), None => Value::Null },
                        "issue_id": id,
                        "issue_key": key,
                        "author_account_id": h.pointer("/author/accountId").cloned().unwrap_or(Value::Null),
                        "author_display_name": h.pointer("/author/displayName").cloned().unwrap_or(Value::Null),
                        "created": normalize::rfc3339(created),
                        "items": h.get("items").map(|i| Value::String(i.to_string())).unwrap_or(Value::Null),
                    }));
                }
            }
            Ok(Page {
                records,
                next: next.map(|n| super::cursor_json(&n)).transpose()?,
                bytes,
            })
        }
    }
}
