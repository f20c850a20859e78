//! The `jira` connector: Jira Cloud issues (JQL `updated` windows) and their changelogs.
//!
//! ```yaml
//! source:
//!   connector: jira
//!   profile: jira        # API token: {"type": "basic", "username": "me@acme.com", "password": "<API token>",
//!                        #             "hosts": ["acme.atlassian.net"]}
//!                        # OAuth 2.0 (3LO): {"type": "oauth2_refresh_token",
//!                        #   "token_url": "https://auth.atlassian.com/oauth/token", …,
//!                        #   "hosts": ["api.atlassian.com"]} with base_url
//!                        #   https://api.atlassian.com/ex/jira/<cloud id>
//!   entity: issues       # issues | issue_changelogs
//!   properties:
//!     site: acme         # https://acme.atlassian.net (or base_url)
//!     jql: project = OPS # optional: ANDed with the window
//!     fields: [summary, status, assignee, customfield_10016]   # default: every navigable field
//!     page_size: 100
//!     time_zone: Europe/Berlin   # default: the profile user's time zone (GET /rest/api/3/myself)
//!   incremental: { field: updated }
//! ```
//!
//! Vendor documentation this follows:
//! - Enhanced JQL search, `POST /rest/api/3/search/jql` (`jql`, `fields`, `maxResults`,
//!   `nextPageToken`; the response's `nextPageToken` is absent on the last page; a query must be
//!   bounded; fewer issues than `maxResults` come back when many fields are asked for). The old
//!   `startAt` search `/rest/api/3/search` is removed:
//!   <https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-search/#api-rest-api-3-search-jql-post>,
//!   <https://confluence.atlassian.com/display/JIRAKB/Run+JQL+search+query+using+Jira+Cloud+REST+API>
//! - JQL date fields: `"yyyy/MM/dd HH:mm"` (minute precision), interpreted in the *searching
//!   user's* time zone: <https://support.atlassian.com/jira-software-cloud/docs/jql-fields/#Updated>
//! - The user's time zone: `GET /rest/api/3/myself` (`timeZone`):
//!   <https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-myself/>
//! - Field metadata, `GET /rest/api/3/field` (`id`, `name`, `navigable`, `schema.type`):
//!   <https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-fields/>
//! - Changelogs, `GET /rest/api/3/issue/{id}/changelog` (`startAt`, `maxResults` ≤ 100, `isLast`):
//!   <https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issues/#api-rest-api-3-issue-issueidorkey-changelog-get>
//! - Rate limiting: 429 with `Retry-After` (seconds), also on some 503s:
//!   <https://developer.atlassian.com/cloud/jira/platform/rate-limiting/>
//! - Basic auth with an API token; OAuth 2.0 (3LO) through `api.atlassian.com/ex/jira/{cloudid}`:
//!   <https://developer.atlassian.com/cloud/jira/platform/basic-auth-for-rest-apis/>,
//!   <https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/>
//!
//! How reading works:
//! - **Windows in JQL have minute precision and the user's time zone.** A window `(start, end]`
//!   becomes `updated >= "<start floored to the minute>" AND updated < "<end floored + 1 minute>"`
//!   written in the profile user's time zone (or `time_zone`), one hour wider where a daylight-
//!   saving change makes the local time ambiguous; the exact `(start, end]` is then applied to
//!   each issue's `updated` (milliseconds) client-side, so the issues of a boundary minute are
//!   read by both neighbouring windows' queries and delivered by exactly one.
//! - **Pages are time slices, not tokens**: the query is ordered by `updated` and after each page
//!   the next query starts at the minute of the latest `updated` read, issues already read at
//!   that version (`id@updated`) skipped; `nextPageToken` is followed only while a page does not
//!   leave its starting minute. An issue edited during the read leaves its place in the ordered
//!   result (its new `updated` is later); a token's position would shift and skip an issue that
//!   was never read; a slice restarts from what was read, so nothing is skipped and the edited
//!   issue is read at its new version by this run or the next.
//! - **Unknown field names are silently ignored** by Jira: `fields` is checked against
//!   `/rest/api/3/field` first; values are typed from `schema.type` (`number` float, `datetime`
//!   timestamp — Jira writes `+0000` offsets — `date`, `string`, arrays of strings as lists,
//!   objects such as users and statuses as JSON text).
//! - `issue_changelogs`: for every issue updated since the window start, its changelog pages;
//!   histories whose `created` is in the window are delivered. An issue edited while the run
//!   pages can be listed again, so its histories can come twice: `id` is the history's key.

use super::auth::Authenticator;
use super::http::{HttpClient, HttpRequest, HttpResponse, HttpSettings};
use super::normalize::{self, fields};
use super::*;
use chrono::{DateTime, Duration as ChronoDuration, LocalResult, TimeZone, Timelike, Utc};
use serde_json::{json, Map, Value};
use std::collections::HashSet;

/// Issues per search page we ask for (Jira may return fewer).
const MAX_PAGE: u32 = 100;
/// Changelog entries per request (the endpoint's maximum).
const CHANGELOG_PAGE: u32 = 100;

/// The entities: name, label.
pub const ENTITIES: &[(&str, &str)] = &[
    ("issues", "Issues (JQL search on `updated`)"),
    (
        "issue_changelogs",
        "Issue changelogs (histories of issues updated in the window)",
    ),
];

/// `source.properties` of a `jira` flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JiraConfig {
    /// `acme` for `https://acme.atlassian.net`.
    #[serde(default)]
    pub site: Option<String>,
    /// The API root instead of a site (OAuth apps: `https://api.atlassian.com/ex/jira/<cloud id>`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// A JQL restriction ANDed with the window (no `ORDER BY`).
    #[serde(default)]
    pub jql: Option<String>,
    /// Field ids to read (issues); default every navigable field.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    #[serde(default)]
    pub page_size: Option<u32>,
    /// The time zone JQL dates are read in, when it is not the profile user's.
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub http: HttpSettings,
}

impl JiraConfig {
    pub fn parse(props: &Map<String, Value>) -> Result<Self, SourceError> {
        let c: JiraConfig = parse_properties(
            props,
            Some("jira takes site, base_url, jql, fields, page_size, time_zone, http"),
        )?;
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<(), SourceError> {
        match (&self.site, &self.base_url) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(SourceError::config(
                    "source.properties.site",
                    "set exactly one of `site` (e.g. acme for https://acme.atlassian.net) or `base_url`",
                ))
            }
            (Some(s), None) => {
                let ok = !s.is_empty()
                    && s.len() <= 63
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !ok {
                    return Err(SourceError::config(
                        "source.properties.site",
                        format!("'{s}' is not a Jira Cloud site name: give only the first label, e.g. `acme` for https://acme.atlassian.net"),
                    ));
                }
            }
            (None, Some(u)) => {
                super::http_url("source.properties.base_url", u, "e.g. https://acme.atlassian.net")?;
            }
        }
        if let Some(q) = &self.jql {
            if q.trim().is_empty() {
                return Err(SourceError::config(
                    "source.properties.jql",
                    "is empty; leave it out to read every issue the profile can see",
                ));
            }
            if q.to_ascii_lowercase().contains("order by") {
                return Err(SourceError::config(
                    "source.properties.jql",
                    "must not have an ORDER BY: ferry orders by `updated` to page by time slices",
                ));
            }
        }
        if let Some(fs) = &self.fields {
            if fs.is_empty() {
                return Err(SourceError::config(
                    "source.properties.fields",
                    "list at least one field id, or leave it out to read every navigable field",
                ));
            }
            for (i, f) in fs.iter().enumerate() {
                if f.is_empty() || f.contains(',') || f.starts_with('*') || f.starts_with('-') {
                    return Err(SourceError::config(
                        format!("source.properties.fields[{i}]"),
                        format!(
                            "'{f}' is not a field id (e.g. summary, status, customfield_10016)"
                        ),
                    ));
                }
            }
        }
        if let Some(p) = self.page_size {
            if p == 0 || p > MAX_PAGE {
                return Err(SourceError::config(
                    "source.properties.page_size",
                    format!("must be between 1 and {MAX_PAGE}"),
                ));
            }
        }
        if let Some(tz) = &self.time_zone {
            tz.parse::<chrono_tz::Tz>().map_err(|_| {
                SourceError::config(
                    "source.properties.time_zone",
                    format!("'{tz}' is not an IANA time zone name (e.g. Europe/Berlin, UTC)"),
                )
            })?;
        }
        self.http.validate("source.properties.http")
    }

    /// The API root (`check` made sure one of `site` and `base_url` is set).
    fn base(&self) -> String {
        match (&self.site, &self.base_url) {
            (Some(s), _) => format!("https://{s}.atlassian.net"),
            (None, Some(u)) => u.trim_end_matches('/').to_string(),
            (None, None) => String::new(),
        }
    }
}

pub(super) fn validate(entity: &str, props: &Map<String, Value>) -> Vec<crate::flow::FieldError> {
    let mut errs = vec![];
    if !entity.is_empty() {
        if let Err(SourceError::Config { field, message }) = entity_def(entity) {
            errs.push(crate::flow::FieldError::new(field, message));
        }
    }
    if let Err(SourceError::Config { field, message }) = JiraConfig::parse(props) {
        errs.push(crate::flow::FieldError::new(field, message));
    }
    errs
}

fn entity_def(entity: &str) -> Result<&'static (&'static str, &'static str), SourceError> {
    normalize::find_entity("jira", ENTITIES, |e| e.0, entity)
}

/// A Jira field: id, label, ferry type.
#[derive(Debug, Clone)]
struct JField {
    id: String,
    name: String,
    ty: FieldType,
    navigable: bool,
}

/// The ferry type of a field's `schema`.
fn field_type(schema: Option<&Value>) -> FieldType {
    let t = schema.and_then(|s| s.get("type")).and_then(Value::as_str);
    match t {
        Some("string") => FieldType::String,
        Some("number") => FieldType::Float,
        Some("datetime") => FieldType::Timestamp,
        Some("date") => FieldType::Date,
        Some("array")
            if schema.and_then(|s| s.get("items")).and_then(Value::as_str) == Some("string") =>
        {
            FieldType::Array {
                item: Box::new(FieldType::String),
            }
        }
        _ => FieldType::Json,
    }
}

/// A Jira datetime (`2026-02-01T10:15:30.123+0000`, or RFC 3339).
pub fn jira_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// One value shaped to its type (Jira datetimes made RFC 3339 first).
pub(super) fn shape_value(v: &Value, ty: &FieldType) -> Result<Value, String> {
    match (ty, v) {
        (FieldType::Timestamp, Value::String(s)) if !s.is_empty() => match jira_time(s) {
            Some(t) => Ok(Value::String(normalize::rfc3339(t))),
            None => Err("a text that is not a Jira datetime".into()),
        },
        _ => normalize::value(v, ty),
    }
}

/// A JQL date literal: `t` in `tz`, floored to the minute, `widen` minutes earlier (negative) or
/// later where the local time is ambiguous (a daylight-saving change repeats the hour).
fn jql_time(t: DateTime<Utc>, tz: chrono_tz::Tz, later: bool) -> String {
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
struct JCursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lo: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    seen: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

/// The Jira source bound to one flow.
pub struct JiraSource {
    cfg: JiraConfig,
    base: String,
    http: HttpClient,
    fields: tokio::sync::Mutex<Option<std::sync::Arc<Vec<JField>>>>,
    tz: tokio::sync::Mutex<Option<chrono_tz::Tz>>,
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

    async fn send(&self, r: HttpRequest) -> Result<HttpResponse, SourceError> {
        self.http.send(&r).await?.ok_or_else(|| SourceError::Fatal {
            message: "an ignored status answered a Jira request".into(),
        })
    }

    fn rejected(url: &str, what: impl std::fmt::Display) -> SourceError {
        SourceError::Rejected {
            message: format!("jira: {url}: {what}"),
        }
    }

    /// The profile user (`/myself`): proves the credentials and gives the JQL time zone.
    async fn myself(&self) -> Result<Value, SourceError> {
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

    async fn time_zone(&self) -> Result<chrono_tz::Tz, SourceError> {
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

    async fn all_fields(&self) -> Result<std::sync::Arc<Vec<JField>>, SourceError> {
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
    async fn selected(&self) -> Result<Vec<JField>, SourceError> {
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

    fn page_size(&self, req: &ReadRequest) -> u32 {
        req.page_size
            .or(self.cfg.page_size)
            .unwrap_or(MAX_PAGE)
            .clamp(1, MAX_PAGE)
    }

    /// The JQL of one slice: the flow's restriction, `updated >= lo` and, for issues, the
    /// window's end; ordered by `updated` then `id`.
    fn jql(&self, lo: i64, hi: Option<DateTime<Utc>>, tz: chrono_tz::Tz) -> String {
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
    async fn search_page(
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
    fn issue_record(
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
    async fn changelog(&self, issue_id: &str) -> Result<(Vec<Value>, u64), SourceError> {
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

fn minute_floor(ms: i64) -> i64 {
    ms.div_euclid(60_000) * 60_000
}

fn changelog_fields() -> Vec<FieldInfo> {
    vec![
        fields::s("id").key(),
        fields::s("issue_id").required(),
        fields::s("issue_key"),
        fields::s("author_account_id"),
        fields::s("author_display_name"),
        fields::ts("created").required().incremental(),
        fields::json("items"),
    ]
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

/// The `jira` connector in the [registry](super::registry). AppFlow reaches Jira Cloud only
/// through a custom connector, so no `connectorType` maps here.
pub static CONNECTOR: super::registry::Connector = super::registry::Connector {
    name: "jira",
    appflow_type: None,
    needs_profile: true,
    oauth_client_auth: super::auth::ClientAuth::Body,
    auth_kinds: &["basic", "bearer", "oauth2_refresh_token"],
    consent: Some(&super::consent::ATLASSIAN),
    static_description: false,
    validate,
    build: |source, profile| {
        let auth = super::registry::require(profile, "jira", "its credentials")?.authenticator()?;
        Ok(Box::new(JiraSource::new(&source.properties, auth)?))
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
        assert!(validate("issues", &props(json!({"site": "acme"}))).is_empty());
        let e = validate("sprints", &props(json!({"site": "acme"})));
        assert_eq!(e[0].path, "source.entity");
        let e = validate("issues", &props(json!({"site": "acme.atlassian.net"})));
        assert_eq!(e[0].path, "source.properties.site");
        let e = validate(
            "issues",
            &props(json!({"site": "acme", "jql": "project = X ORDER BY created"})),
        );
        assert_eq!(e[0].path, "source.properties.jql");
        let e = validate(
            "issues",
            &props(json!({"site": "acme", "time_zone": "Mars/Base"})),
        );
        assert_eq!(e[0].path, "source.properties.time_zone");
        let e = validate(
            "issues",
            &props(json!({"site": "acme", "fields": ["summary", "*all"]})),
        );
        assert_eq!(e[0].path, "source.properties.fields[1]");
    }

    #[test]
    fn jql_times_are_minutes_in_the_users_zone() {
        let t = DateTime::parse_from_rfc3339("2026-02-01T10:15:42.500Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(jql_time(t, chrono_tz::UTC, false), "2026/02/01 10:15");
        assert_eq!(
            jql_time(t, chrono_tz::Asia::Kolkata, false),
            "2026/02/01 15:45"
        );
        // 2026-11-01 01:30 happens twice in New York: widened by an hour.
        let t = DateTime::parse_from_rfc3339("2026-11-01T05:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            jql_time(t, chrono_tz::America::New_York, false),
            "2026/11/01 00:30"
        );
        assert_eq!(
            jql_time(t, chrono_tz::America::New_York, true),
            "2026/11/01 02:30"
        );
        assert_eq!(
            jira_time("2026-02-01T10:15:30.123+0530").map(normalize::rfc3339),
            Some("2026-02-01T04:45:30.123Z".to_string())
        );
    }
}
