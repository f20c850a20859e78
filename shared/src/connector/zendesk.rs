//! The `zendesk` connector: Zendesk Support tickets, users and organizations through the
//! incremental export API, and other objects through cursor pagination.
//!
//! ```yaml
//! source:
//!   connector: zendesk
//!   profile: zendesk-acme        # {"type": "basic", "hosts": ["acme.zendesk.com"], "username": "me@acme.com/token", "password": "<API token>"}
//!   entity: tickets              # tickets | users | organizations | groups | ticket_fields
//!   properties:
//!     subdomain: acme            # https://acme.zendesk.com  (or base_url: https://support.acme.com)
//!     exclude_deleted: false     # tickets: leave out deleted tickets (the export includes them)
//!     page_size: 1000            # export: per_page (≤ 1000); lists: page[size] (≤ 100)
//!     http: { max_retry_after_seconds: 60, budget: { requests: 10, per_seconds: 60 } }
//!   incremental: { field: updated_at }
//! ```
//!
//! How each entity is read (vendor documentation):
//! - `tickets`, `users`: cursor-based incremental export,
//!   `GET /api/v2/incremental/{tickets|users}/cursor.json?start_time=<unix>` for the first page,
//!   then `?cursor=<after_cursor>` until `end_of_stream` is true.
//! - `organizations`: the time-based incremental export (the only kind Zendesk offers for
//!   organizations), `GET /api/v2/incremental/organizations.json?start_time=<unix>`, next page
//!   from `start_time=<end_time>` until `end_of_stream`. A page starts *at* the previous
//!   page's `end_time`, so the items stamped with that second come again: they are recognised by
//!   `(id, updated_at)` (kept in the cursor) and dropped.
//! - `groups`, `ticket_fields`: cursor pagination, `page[size]` / `page[after]=<meta.after_cursor>`
//!   while `meta.has_more`; no server-side time filter, so the window is applied client-side.
//!
//! Quirks handled (documentation pages below):
//! - `start_time` is inclusive ("items created or changed on or after the start time") while a
//!   ferry window is `(start, end]`: the item stamped exactly `start` is dropped client-side;
//!   sub-second window starts are floored so nothing at the start second is missed.
//! - The export refuses a `start_time` less than a minute old; a window starting that recently
//!   (a short schedule with a lookback) asks from one minute back instead and drops the extra
//!   items client-side. The export only returns items older than a minute: items changed after
//!   the window end are dropped and read by the next run.
//! - The ticket export compares `start_time` with `generated_timestamp` (bumped by system
//!   updates too), so it can return tickets whose `updated_at` is older than `start_time`; those
//!   fall outside the window on `updated_at` and are dropped. Use `generated_timestamp` as the
//!   incremental field to also capture system-only updates.
//! - Deleted tickets are in the ticket export (status `deleted`) although the tickets list
//!   hides them; `exclude_deleted: true` passes the export's `exclude_deleted` parameter.
//!   Deleted users are in the user export with `active: false`.
//! - `generated_timestamp` is epoch seconds where every other time is RFC 3339 text: both are
//!   staged as timestamps; `custom_fields`, `via`, `user_fields` … are kept as JSON text.
//! - Zendesk ignores query parameters it does not know, so a mistyped filter silently returns
//!   everything: every record is placed in the window client-side on the incremental field.
//! - A record repeated across a page boundary (cursor or time-based) is emitted once.
//! - 429 with `Retry-After` (export endpoints allow 10 requests per minute): handled by the
//!   shared HTTP client; a wait beyond `http.max_retry_after_seconds` ends the chunk `Throttled`.
//!   401 (`{"error": "Couldn't authenticate you"}`) and 403 (export endpoints are admin-only)
//!   end the run `AuthFailed` naming the profile.
//!
//! Documentation:
//! - <https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/>
//! - <https://developer.zendesk.com/documentation/ticketing/managing-tickets/using-the-incremental-export-api>
//! - <https://developer.zendesk.com/api-reference/introduction/pagination/>
//! - <https://developer.zendesk.com/documentation/api-basics/pagination/paginating-through-lists-using-cursor-pagination>
//! - <https://developer.zendesk.com/api-reference/introduction/rate-limits/>

use super::auth::Authenticator;
use super::http::{HttpClient, HttpRequest, HttpSettings};
use super::normalize::{
    self,
    fields::{boolean, int, ints, json, s, strings, ts},
};
use super::*;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// How an entity is paged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    /// Cursor-based incremental export: `start_time`, then `cursor`, until `end_of_stream`.
    CursorExport,
    /// Time-based incremental export: `start_time`, next `start_time=end_time`.
    TimeExport,
    /// Cursor pagination: `page[size]`, `page[after]`, `meta.has_more`.
    CursorList,
}

struct EntityDef {
    name: &'static str,
    label: &'static str,
    path: &'static str,
    /// The response key holding the records.
    key: &'static str,
    api: Api,
    /// The timestamp the API orders and filters by (boundary repeats share it).
    sort_field: &'static str,
    fields: fn() -> Vec<FieldInfo>,
}

const ENTITIES: &[EntityDef] = &[
    EntityDef {
        name: "tickets",
        label: "Tickets (incremental export, including deleted tickets)",
        path: "/api/v2/incremental/tickets/cursor.json",
        key: "tickets",
        api: Api::CursorExport,
        sort_field: "generated_timestamp",
        fields: ticket_fields,
    },
    EntityDef {
        name: "users",
        label: "Users (incremental export, including deleted users)",
        path: "/api/v2/incremental/users/cursor.json",
        key: "users",
        api: Api::CursorExport,
        sort_field: "updated_at",
        fields: user_fields,
    },
    EntityDef {
        name: "organizations",
        label: "Organizations (time-based incremental export)",
        path: "/api/v2/incremental/organizations.json",
        key: "organizations",
        api: Api::TimeExport,
        sort_field: "updated_at",
        fields: organization_fields,
    },
    EntityDef {
        name: "groups",
        label: "Groups",
        path: "/api/v2/groups.json",
        key: "groups",
        api: Api::CursorList,
        sort_field: "updated_at",
        fields: group_fields,
    },
    EntityDef {
        name: "ticket_fields",
        label: "Ticket fields",
        path: "/api/v2/ticket_fields.json",
        key: "ticket_fields",
        api: Api::CursorList,
        sort_field: "updated_at",
        fields: ticket_field_fields,
    },
];

/// Items of one export page at most (Zendesk's maximum `per_page`).
const MAX_EXPORT_PAGE: u32 = 1000;
/// Cursor pagination's maximum `page[size]`.
const MAX_LIST_PAGE: u32 = 100;
/// The export refuses start times newer than this many seconds ago.
const MIN_START_AGE_SECONDS: i64 = 61;
/// Boundary keys kept in the cursor at most.
const MAX_BOUNDARY_KEYS: usize = 2000;

fn ticket_fields() -> Vec<FieldInfo> {
    vec![
        int("id").key(),
        s("url"),
        s("external_id"),
        s("type"),
        s("subject"),
        s("raw_subject"),
        s("description"),
        s("priority"),
        s("status").required(),
        s("recipient"),
        int("requester_id"),
        int("submitter_id"),
        int("assignee_id"),
        int("organization_id"),
        int("group_id"),
        int("brand_id"),
        int("problem_id"),
        ints("collaborator_ids"),
        ints("follower_ids"),
        strings("tags"),
        json("custom_fields"),
        json("via"),
        json("satisfaction_rating"),
        boolean("has_incidents"),
        boolean("is_public"),
        ts("due_at"),
        ts("created_at").incremental(),
        ts("updated_at").required().incremental(),
        ts("generated_timestamp").incremental(),
    ]
}

fn user_fields() -> Vec<FieldInfo> {
    vec![
        int("id").key(),
        s("url"),
        s("name"),
        s("email"),
        s("phone"),
        s("role"),
        int("role_type"),
        int("organization_id"),
        int("default_group_id"),
        s("locale"),
        s("time_zone"),
        s("external_id"),
        boolean("active"),
        boolean("verified"),
        boolean("suspended"),
        boolean("shared"),
        boolean("restricted_agent"),
        strings("tags"),
        json("user_fields"),
        ts("last_login_at"),
        ts("created_at").incremental(),
        ts("updated_at").required().incremental(),
    ]
}

fn organization_fields() -> Vec<FieldInfo> {
    vec![
        int("id").key(),
        s("url"),
        s("name"),
        s("external_id"),
        strings("domain_names"),
        s("details"),
        s("notes"),
        int("group_id"),
        boolean("shared_tickets"),
        boolean("shared_comments"),
        strings("tags"),
        json("organization_fields"),
        ts("created_at").incremental(),
        ts("updated_at").required().incremental(),
        ts("deleted_at"),
    ]
}

fn group_fields() -> Vec<FieldInfo> {
    vec![
        int("id").key(),
        s("url"),
        s("name"),
        s("description"),
        boolean("default"),
        boolean("deleted"),
        boolean("is_public"),
        ts("created_at").incremental(),
        ts("updated_at").required().incremental(),
    ]
}

fn ticket_field_fields() -> Vec<FieldInfo> {
    vec![
        int("id").key(),
        s("url"),
        s("type"),
        s("title"),
        s("description"),
        boolean("active"),
        boolean("required"),
        int("position"),
        json("custom_field_options"),
        ts("created_at").incremental(),
        ts("updated_at").required().incremental(),
    ]
}

fn entity_def(entity: &str) -> Result<&'static EntityDef, SourceError> {
    normalize::find_entity("zendesk", ENTITIES, |e| e.name, entity)
}

/// `source.properties` of a zendesk flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZendeskConfig {
    /// `acme` for `https://acme.zendesk.com`.
    #[serde(default)]
    pub subdomain: Option<String>,
    /// The instance URL instead of a subdomain (host-mapped instances, tests).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Items per request: export `per_page` (≤ 1000), list `page[size]` (≤ 100).
    #[serde(default)]
    pub page_size: Option<u32>,
    /// Tickets: pass `exclude_deleted=true` to the export.
    #[serde(default)]
    pub exclude_deleted: bool,
    #[serde(default)]
    pub http: HttpSettings,
}

impl ZendeskConfig {
    pub fn parse(props: &Map<String, Value>) -> Result<Self, SourceError> {
        let cfg: ZendeskConfig = parse_properties(
            props,
            Some("zendesk takes subdomain, base_url, page_size, exclude_deleted, http"),
        )?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), SourceError> {
        match (&self.subdomain, &self.base_url) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(SourceError::config(
                    "source.properties.subdomain",
                    "set exactly one of `subdomain` (e.g. acme for https://acme.zendesk.com) or `base_url`",
                ))
            }
            (Some(sd), None) => {
                let ok = !sd.is_empty()
                    && sd.len() <= 63
                    && sd.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !ok {
                    return Err(SourceError::config(
                        "source.properties.subdomain",
                        format!("'{sd}' is not a Zendesk subdomain: give only the first label, e.g. `acme` for https://acme.zendesk.com"),
                    ));
                }
            }
            (None, Some(u)) => {
                super::http_url("source.properties.base_url", u, "e.g. https://acme.zendesk.com")?;
            }
        }
        if let Some(p) = self.page_size {
            if p == 0 || p > MAX_EXPORT_PAGE {
                return Err(SourceError::config(
                    "source.properties.page_size",
                    format!("must be between 1 and {MAX_EXPORT_PAGE} (lists use at most {MAX_LIST_PAGE})"),
                ));
            }
        }
        self.http.validate("source.properties.http")
    }

    fn base(&self) -> String {
        match (&self.subdomain, &self.base_url) {
            (Some(sd), _) => format!("https://{sd}.zendesk.com"),
            (None, Some(u)) => u.trim_end_matches('/').to_string(),
            (None, None) => unreachable!("checked"),
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
    if let Err(SourceError::Config { field, message }) = ZendeskConfig::parse(props) {
        errs.push(crate::flow::FieldError::new(field, message));
    }
    errs
}

/// Where reading an entity stands between pages (opaque to the engine).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ZCursor {
    /// Export `after_cursor` to resume from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    /// Time-based export: the next `start_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_time: Option<i64>,
    /// Cursor pagination: `page[after]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    /// `id@timestamp` of the previous page's items stamped with its last timestamp: repeated
    /// at the next page's start and dropped there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    boundary: Vec<String>,
    #[serde(default)]
    pages: u64,
}

/// The zendesk connector bound to one flow.
pub struct ZendeskSource {
    base: String,
    cfg: ZendeskConfig,
    http: HttpClient,
}

impl ZendeskSource {
    pub fn new(props: &Map<String, Value>, auth: Authenticator) -> Result<Self, SourceError> {
        let cfg = ZendeskConfig::parse(props)?;
        let base = cfg.base();
        let http = HttpClient::new(cfg.http.clone(), Arc::new(auth), &base)?;
        Ok(ZendeskSource { base, cfg, http })
    }

    fn page_size(&self, def: &EntityDef, req: &ReadRequest) -> u32 {
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
    fn first_start_time(window: Option<&Window>, now: DateTime<Utc>) -> i64 {
        let start = window
            .and_then(|w| w.start)
            .map(|s| s.timestamp())
            .unwrap_or(0);
        start.min(now.timestamp() - MIN_START_AGE_SECONDS).max(0)
    }

    fn request(&self, def: &EntityDef, req: &ReadRequest, c: &ZCursor) -> HttpRequest {
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

    fn rejected(&self, url: &str, what: impl std::fmt::Display) -> SourceError {
        SourceError::Rejected {
            message: format!("zendesk: {url}: {what}"),
        }
    }
}

fn boundary_key(r: &Value, sort_field: &str) -> Option<(String, DateTime<Utc>)> {
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

fn snippet(v: &Value) -> String {
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

/// The `zendesk` connector in the [registry](super::registry).
pub static CONNECTOR: super::registry::Connector = super::registry::Connector {
    name: "zendesk",
    appflow_type: Some("Zendesk"),
    needs_profile: true,
    oauth_client_auth: super::auth::ClientAuth::Basic,
    auth_kinds: &["basic", "bearer", "oauth2_refresh_token"],
    consent: Some(&super::consent::ZENDESK),
    static_description: true,
    validate,
    build: |source, profile| {
        let auth =
            super::registry::require(profile, "zendesk", "its credentials")?.authenticator()?;
        Ok(Box::new(ZendeskSource::new(&source.properties, auth)?))
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn properties_are_checked_with_field_names() {
        let e = ZendeskConfig::parse(&props(json!({}))).unwrap_err();
        assert!(e.to_string().contains("source.properties.subdomain"), "{e}");
        let e = ZendeskConfig::parse(&props(json!({"subdomain": "acme.zendesk.com"}))).unwrap_err();
        assert!(e.to_string().contains("first label"), "{e}");
        let e = ZendeskConfig::parse(&props(json!({"subdomain": "acme", "page_size": 5000})))
            .unwrap_err();
        assert!(e.to_string().contains("source.properties.page_size"), "{e}");
        let e = ZendeskConfig::parse(&props(
            json!({"subdomain": "acme", "exclude_deleted": "yes"}),
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("source.properties.exclude_deleted"),
            "{e}"
        );
        let e = ZendeskConfig::parse(&props(json!({"subdomain": "acme", "start_time": 5})))
            .unwrap_err();
        assert!(
            e.to_string().contains("start_time") && e.to_string().contains("subdomain, base_url"),
            "{e}"
        );
        let c = ZendeskConfig::parse(&props(json!({"subdomain": "acme"}))).unwrap();
        assert_eq!(c.base(), "https://acme.zendesk.com");
        let errs = validate("macros", &props(json!({"subdomain": "acme"})));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "source.entity");
        assert!(
            errs[0].message.contains("tickets, users, organizations"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn start_time_is_floored_and_never_too_recent() {
        let now = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let w = |s: &str| Window {
            start: Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)),
            end: now,
        };
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().timestamp();
        assert_eq!(
            ZendeskSource::first_start_time(Some(&w("2026-03-01T10:00:00.900Z")), now),
            t("2026-03-01T10:00:00Z")
        );
        assert_eq!(
            ZendeskSource::first_start_time(Some(&w("2026-03-01T11:59:30Z")), now),
            t("2026-03-01T11:58:59Z")
        );
        assert_eq!(ZendeskSource::first_start_time(None, now), 0);
    }

    #[test]
    fn every_entity_has_a_key_and_an_incremental_field() {
        for e in ENTITIES {
            let f = (e.fields)();
            assert!(
                f.iter().any(|f| f.primary_key && f.name == "id"),
                "{}",
                e.name
            );
            assert!(
                f.iter().any(|f| f.incremental && f.name == "updated_at"),
                "{}",
                e.name
            );
            assert!(f.iter().any(|f| f.name == e.sort_field), "{}", e.name);
        }
    }
}
