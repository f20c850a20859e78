//! The `slack` connector: conversations, users, and the messages of selected channels through
//! the Slack Web API.
//!
//! ```yaml
//! source:
//!   connector: slack
//!   profile: slack-acme          # {"type": "bearer", "hosts": ["slack.com"], "token": "xoxb-…"}  (bot or user token)
//!   entity: messages             # conversations | users | messages | replies
//!   properties:
//!     channels: [C0123456789]    # messages: the conversations to read (IDs, not names)
//!     types: public_channel,private_channel   # conversations: conversations.list `types`
//!     exclude_archived: false    # conversations: hide archived channels
//!     page_size: 200             # `limit` per request (Slack recommends ≤ 200)
//!   incremental: { field: posted_at }
//! ```
//!
//! Methods (all `GET https://slack.com/api/<method>` with `Authorization: Bearer <token>`):
//! - `conversations`: `conversations.list` (`types`, `exclude_archived`, `limit`, `cursor`),
//!   records in `channels`.
//! - `users`: `users.list` (`limit`, `cursor`), records in `members`.
//! - `messages`: `conversations.history` per channel of `channels` (`channel`, `oldest`,
//!   `latest`, `inclusive`, `limit`, `cursor`), records in `messages`, each given the `channel`
//!   it came from and `posted_at` (its `ts` as a timestamp).
//!
//! Every method pages with `cursor` = `response_metadata.next_cursor` until that is empty.
//!
//! Quirks handled (documentation pages below):
//! - Errors are HTTP 200 with `{"ok": false, "error": "<code>"}`: `invalid_auth`, `not_authed`,
//!   `token_revoked`, `token_expired`, `account_inactive`, `missing_scope` (with `needed`) …
//!   end the run `AuthFailed` naming the profile; `ratelimited` ends the chunk `Throttled`;
//!   `channel_not_found` / `not_in_channel` end it `SourceRejected` naming
//!   `source.properties.channels` and the fix; `internal_error`, `fatal_error`,
//!   `service_unavailable`, `request_timeout` are `Retryable`.
//! - Rate limits are per method tier (`conversations.history` Tier 3, 50+/min;
//!   `conversations.list` and `users.list` Tier 2, 20+/min) and answer HTTP 429 with
//!   `Retry-After` in seconds: the shared HTTP client waits, or ends the chunk `Throttled`
//!   beyond `http.max_retry_after_seconds`.
//! - `oldest`/`latest` are exclusive unless `inclusive` is set, and a ferry window is
//!   `(start, end]`: ferry sends `inclusive=true` (so a message posted exactly at the window
//!   end is read) and drops the message stamped exactly `start` client-side (it belonged to the
//!   previous window).
//! - Slack ignores arguments it does not know, so a window that did not reach the API would
//!   silently read everything: every record is placed in the window client-side.
//! - A page can hold fewer items than `limit` — even none — while more follow: paging goes on
//!   while `next_cursor` is non-empty, never stopping on a short page. `next_cursor` is `""`
//!   (not absent) on the last page.
//! - Time formats differ by object: a message `ts` is text (`"1512085950.000216"`, microseconds),
//!   a user's `updated` epoch seconds, a conversation's `created` epoch seconds and `updated`
//!   epoch milliseconds: all are staged as timestamps (`ts` is also kept as text: with
//!   `channel` it is the message's key).
//! - Archived channels are listed by `conversations.list` unless `exclude_archived` is set,
//!   and their history stays readable; deleted users stay in `users.list` with `deleted: true`.
//! - Thread replies are not part of `conversations.history` (only thread parents and replies
//!   also sent to the channel): the `replies` entity finds thread parents in the history and
//!   reads each thread with `conversations.replies`.
//! - A channel the token cannot read (`channel_not_found`, `not_in_channel`) is skipped with a
//!   warning (`on_channel_error: skip`, the default) or fails the run (`fail`).
//!
//! Documentation:
//! - <https://docs.slack.dev/reference/methods/conversations.history>
//! - <https://docs.slack.dev/reference/methods/conversations.list>
//! - <https://docs.slack.dev/reference/methods/users.list>
//! - <https://docs.slack.dev/apis/web-api/rate-limits>
//! - <https://api.slack.com/docs/pagination>

use super::auth::Authenticator;
use super::http::{parse_retry_after, HttpClient, HttpRequest, HttpSettings};
use super::normalize::{
    self,
    fields::{boolean, int, json, s, ts},
};
use super::*;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

const DEFAULT_BASE: &str = "https://slack.com/api";
const DEFAULT_LIMIT: u32 = 200;
/// `conversations.history` takes at most 999; the lists 1000.
const MAX_LIMIT: u32 = 999;

struct EntityDef {
    name: &'static str,
    label: &'static str,
    method: &'static str,
    key: &'static str,
    /// The field a window applies to when the flow names none.
    default_incremental: &'static str,
    fields: fn() -> Vec<FieldInfo>,
}

const ENTITIES: &[EntityDef] = &[
    EntityDef {
        name: "conversations",
        label: "Channels and other conversations (conversations.list)",
        method: "conversations.list",
        key: "channels",
        default_incremental: "updated",
        fields: conversation_fields,
    },
    EntityDef {
        name: "users",
        label: "Users, including deactivated ones (users.list)",
        method: "users.list",
        key: "members",
        default_incremental: "updated",
        fields: user_fields,
    },
    EntityDef {
        name: "messages",
        label: "Messages of the channels in source.properties.channels (conversations.history)",
        method: "conversations.history",
        key: "messages",
        default_incremental: "posted_at",
        fields: message_fields,
    },
    EntityDef {
        name: "replies",
        label:
            "Thread replies in the channels of source.properties.channels (conversations.replies)",
        method: "conversations.replies",
        key: "messages",
        default_incremental: "posted_at",
        fields: reply_fields,
    },
];

fn reply_fields() -> Vec<FieldInfo> {
    let mut f = message_fields();
    f.push(s("parent_user_id"));
    f
}

fn conversation_fields() -> Vec<FieldInfo> {
    vec![
        s("id").key(),
        s("name"),
        s("name_normalized"),
        boolean("is_channel"),
        boolean("is_group"),
        boolean("is_im"),
        boolean("is_mpim"),
        boolean("is_private"),
        boolean("is_archived"),
        boolean("is_general"),
        boolean("is_shared"),
        boolean("is_ext_shared"),
        boolean("is_org_shared"),
        s("creator"),
        s("context_team_id"),
        int("num_members"),
        json("topic"),
        json("purpose"),
        ts("created").incremental(),
        ts("updated").incremental(),
    ]
}

fn user_fields() -> Vec<FieldInfo> {
    vec![
        s("id").key(),
        s("team_id"),
        s("name"),
        s("real_name"),
        boolean("deleted"),
        s("tz"),
        s("tz_label"),
        int("tz_offset"),
        boolean("is_admin"),
        boolean("is_owner"),
        boolean("is_primary_owner"),
        boolean("is_restricted"),
        boolean("is_ultra_restricted"),
        boolean("is_bot"),
        boolean("is_app_user"),
        boolean("is_email_confirmed"),
        json("profile"),
        ts("updated").incremental(),
    ]
}

fn message_fields() -> Vec<FieldInfo> {
    vec![
        s("channel").key(),
        s("ts").key(),
        ts("posted_at").required().incremental(),
        s("type"),
        s("subtype"),
        s("user"),
        s("bot_id"),
        s("team"),
        s("text"),
        s("client_msg_id"),
        s("thread_ts"),
        int("reply_count"),
        int("reply_users_count"),
        s("latest_reply"),
        json("edited"),
        json("reactions"),
        json("files"),
        json("attachments"),
        json("blocks"),
    ]
}

fn entity_def(entity: &str) -> Result<&'static EntityDef, SourceError> {
    normalize::find_entity("slack", ENTITIES, |e| e.name, entity)
}

/// `source.properties` of a slack flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Default `https://slack.com/api` (Enterprise Grid and tests may differ).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Conversation IDs whose messages `messages` reads.
    #[serde(default)]
    pub channels: Vec<String>,
    /// `conversations.list` `types`.
    #[serde(default)]
    pub types: Option<String>,
    #[serde(default)]
    pub exclude_archived: bool,
    /// `limit` per request.
    #[serde(default)]
    pub page_size: Option<u32>,
    /// A channel the token cannot read (`channel_not_found`, `not_in_channel`): `skip` it with
    /// a warning (default) or `fail` the run.
    #[serde(default)]
    pub on_channel_error: OnChannelError,
    /// `replies`: threads whose parent was posted up to this many days before the window
    /// start are searched for new replies (a reply is posted after its parent).
    #[serde(default = "default_replies_lookback")]
    pub replies_lookback_days: u32,
    #[serde(default)]
    pub http: HttpSettings,
}

fn default_replies_lookback() -> u32 {
    30
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnChannelError {
    #[default]
    Skip,
    Fail,
}

const TYPES: &[&str] = &["public_channel", "private_channel", "mpim", "im"];

impl SlackConfig {
    pub fn parse(props: &Map<String, Value>, entity: &str) -> Result<Self, SourceError> {
        let cfg: SlackConfig = parse_properties(
            props,
            Some("slack takes channels, types, exclude_archived, page_size, on_channel_error, replies_lookback_days, base_url, http"),
        )?;
        cfg.check(entity)?;
        Ok(cfg)
    }

    fn check(&self, entity: &str) -> Result<(), SourceError> {
        if let Some(u) = &self.base_url {
            super::http_url(
                "source.properties.base_url",
                u,
                &format!("the default is {DEFAULT_BASE}"),
            )?;
        }
        for (i, c) in self.channels.iter().enumerate() {
            let ok = c.len() >= 9
                && c.len() <= 24
                && matches!(c.as_bytes()[0], b'C' | b'G' | b'D')
                && c.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
            if !ok {
                return Err(SourceError::config(
                    format!("source.properties.channels[{i}]"),
                    format!("'{c}' is not a conversation ID: use the ID (e.g. C0123456789, shown in the channel's details or by the conversations entity), not the #name"),
                ));
            }
        }
        if matches!(entity, "messages" | "replies") && self.channels.is_empty() {
            return Err(SourceError::config(
                "source.properties.channels",
                format!("the {entity} entity reads the channels listed here: add their IDs, e.g. channels: [C0123456789] (the bot must be a member: /invite @your-app)"),
            ));
        }
        if self.replies_lookback_days > 3650 {
            return Err(SourceError::config(
                "source.properties.replies_lookback_days",
                "must be at most 3650 (ten years)",
            ));
        }
        if let Some(t) = &self.types {
            for part in t.split(',') {
                if !TYPES.contains(&part.trim()) {
                    return Err(SourceError::config(
                        "source.properties.types",
                        format!(
                            "'{}' is not a conversation type; use a comma-separated list of {}",
                            part.trim(),
                            TYPES.join(", ")
                        ),
                    ));
                }
            }
        }
        if let Some(p) = self.page_size {
            if p == 0 || p > MAX_LIMIT {
                return Err(SourceError::config(
                    "source.properties.page_size",
                    format!("must be between 1 and {MAX_LIMIT} (Slack recommends at most {DEFAULT_LIMIT})"),
                ));
            }
        }
        self.http.validate("source.properties.http")
    }
}

pub(super) fn validate(entity: &str, props: &Map<String, Value>) -> Vec<crate::flow::FieldError> {
    let mut errs = vec![];
    if !entity.is_empty() {
        if let Err(SourceError::Config { field, message }) = entity_def(entity) {
            errs.push(crate::flow::FieldError::new(field, message));
        }
    }
    if let Err(SourceError::Config { field, message }) = SlackConfig::parse(props, entity) {
        errs.push(crate::flow::FieldError::new(field, message));
    }
    errs
}

/// Where reading stands: the channel (index into `channels`) and Slack's cursor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SCursor {
    #[serde(default)]
    channel: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    #[serde(default)]
    pages: u64,
    /// `replies`: thread parents (their `ts`) of the channel still to read, the first one
    /// being read with `reply_cursor`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parents: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_cursor: Option<String>,
    /// `replies`: the channel's history has been scanned for parents to its end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    history_done: bool,
}

/// The slack connector bound to one flow.
pub struct SlackSource {
    base: String,
    cfg: SlackConfig,
    http: HttpClient,
    warnings: std::sync::Mutex<Vec<String>>,
}

/// A window bound as Slack writes timestamps: seconds and microseconds.
fn slack_ts(t: DateTime<Utc>) -> String {
    format!("{}.{:06}", t.timestamp(), t.timestamp_subsec_micros())
}

impl SlackSource {
    pub fn new(
        props: &Map<String, Value>,
        entity: &str,
        auth: Authenticator,
    ) -> Result<Self, SourceError> {
        let cfg = SlackConfig::parse(props, entity)?;
        let base = cfg.base_url.clone().unwrap_or_else(|| DEFAULT_BASE.into());
        let base = base.trim_end_matches('/').to_string();
        let http = HttpClient::new(cfg.http.clone(), Arc::new(auth), &base)?;
        Ok(SlackSource {
            base,
            cfg,
            http,
            warnings: Default::default(),
        })
    }

    fn request(&self, def: &EntityDef, req: &ReadRequest, c: &SCursor) -> HttpRequest {
        let mut r = HttpRequest::get(format!("{}/{}", self.base, def.method));
        let limit = req
            .page_size
            .or(self.cfg.page_size)
            .unwrap_or(DEFAULT_LIMIT)
            .clamp(1, MAX_LIMIT);
        r.query.push(("limit".into(), limit.to_string()));
        match def.name {
            "conversations" => {
                r.query.push((
                    "types".into(),
                    self.cfg
                        .types
                        .clone()
                        .unwrap_or_else(|| "public_channel,private_channel".into()),
                ));
                r.query.push((
                    "exclude_archived".into(),
                    self.cfg.exclude_archived.to_string(),
                ));
            }
            "messages" => {
                r.query
                    .push(("channel".into(), self.cfg.channels[c.channel].clone()));
                if let Some(w) = &req.window {
                    if let Some(s) = w.start {
                        r.query.push(("oldest".into(), slack_ts(s)));
                    }
                    r.query.push(("latest".into(), slack_ts(w.end)));
                    r.query.push(("inclusive".into(), "true".into()));
                }
            }
            _ => {}
        }
        if let Some(cur) = &c.cursor {
            r.query.push(("cursor".into(), cur.clone()));
        }
        r
    }

    /// The cursor of the next channel of `channels` (`None` after the last).
    fn next_channel(&self, c: &SCursor, pages: u64) -> Option<SCursor> {
        (c.channel + 1 < self.cfg.channels.len()).then(|| SCursor {
            channel: c.channel + 1,
            pages,
            ..Default::default()
        })
    }

    /// A channel the token cannot read: with `on_channel_error: skip`, an empty page that
    /// moves on to the next channel (and a warning); `None`: not a channel error, or `fail`.
    fn channel_error(
        &self,
        def: &EntityDef,
        url: &str,
        body: &Value,
        c: &SCursor,
        channel: &str,
        bytes: u64,
    ) -> Result<Option<Page>, SourceError> {
        let code = body.get("error").and_then(Value::as_str).unwrap_or("");
        if !matches!(code, "channel_not_found" | "not_in_channel")
            || self.cfg.on_channel_error == OnChannelError::Fail
        {
            return Ok(None);
        }
        let w = format!(
            "slack {} ({url}): channel {channel} skipped ({code}): the token cannot read it, so its {} in this window are not read; invite the app (/invite @your-app) or fix the ID in source.properties.channels, or set on_channel_error: fail to fail the run instead",
            def.method, def.name
        );
        tracing::warn!(channel, code, "{w}");
        self.warnings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(w);
        Ok(Some(Page {
            records: vec![],
            next: self
                .next_channel(c, c.pages + 1)
                .map(|n| super::cursor_json(&n))
                .transpose()?,
            bytes,
        }))
    }

    fn limit(&self, req: &ReadRequest) -> String {
        req.page_size
            .or(self.cfg.page_size)
            .unwrap_or(DEFAULT_LIMIT)
            .clamp(1, MAX_LIMIT)
            .to_string()
    }

    /// `replies`: per channel, scan `conversations.history` for thread parents that may have
    /// replies in the window (posted up to `replies_lookback_days` before its start, with a
    /// `latest_reply` after it), then read each thread with `conversations.replies`, keeping
    /// the replies (not the parent, which every answer repeats first) posted in the window.
    /// <https://docs.slack.dev/reference/methods/conversations.replies>
    async fn read_replies(
        &self,
        def: &EntityDef,
        req: &ReadRequest,
        mut c: SCursor,
    ) -> Result<Page, SourceError> {
        let Some(channel) = self.cfg.channels.get(c.channel).cloned() else {
            return Ok(Page {
                records: vec![],
                next: None,
                bytes: 0,
            });
        };
        let pages = c.pages + 1;
        let send = |r: HttpRequest| async move {
            self.http.send(&r).await?.ok_or_else(|| SourceError::Fatal {
                message: "an ignored status answered a Slack request".into(),
            })
        };
        let Some(parent) = c.parents.first().cloned() else {
            if c.history_done {
                return Ok(Page {
                    records: vec![],
                    next: self
                        .next_channel(&c, pages)
                        .map(|n| super::cursor_json(&n))
                        .transpose()?,
                    bytes: 0,
                });
            }
            // Scan one history page for thread parents.
            let hist = entity_def("messages")?;
            let mut r = HttpRequest::get(format!("{}/conversations.history", self.base));
            r.query = vec![
                ("channel".into(), channel.clone()),
                ("limit".into(), self.limit(req)),
            ];
            if let Some(w) = &req.window {
                if let Some(s) = w.start {
                    let back = chrono::Duration::days(self.cfg.replies_lookback_days as i64);
                    let from = s.checked_sub_signed(back).unwrap_or(s);
                    r.query.push(("oldest".into(), slack_ts(from)));
                }
                r.query.push(("latest".into(), slack_ts(w.end)));
                r.query.push(("inclusive".into(), "true".into()));
            }
            if let Some(cur) = &c.cursor {
                r.query.push(("cursor".into(), cur.clone()));
            }
            let resp = send(r).await?;
            let body = &resp.body;
            if body.get("ok").and_then(Value::as_bool) != Some(true) {
                if let Some(p) =
                    self.channel_error(def, &resp.url, body, &c, &channel, resp.bytes)?
                {
                    return Ok(p);
                }
                return Err(self.api_error(hist, &resp.url, body, &resp.headers, Some(&channel)));
            }
            let msgs = body.get("messages").and_then(Value::as_array).ok_or_else(|| {
                SourceError::Rejected {
                    message: format!("slack conversations.history ({}) answered ok=true without a `messages` array", resp.url),
                }
            })?;
            let start = req.window.and_then(|w| w.start);
            c.parents = msgs
                .iter()
                .filter(|m| m.get("reply_count").and_then(Value::as_u64).unwrap_or(0) > 0)
                .filter(|m| {
                    // A thread whose latest reply is not after the window start has nothing new.
                    let latest = m.get("latest_reply").and_then(normalize::time);
                    start.is_none_or(|s| latest.is_none_or(|l| l > s))
                })
                .filter_map(|m| m.get("ts").and_then(Value::as_str).map(String::from))
                .collect();
            let next_cursor = body
                .pointer("/response_metadata/next_cursor")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from);
            if next_cursor.is_some() && next_cursor == c.cursor {
                return Err(SourceError::Rejected {
                    message: format!("slack conversations.history ({}) handed back the cursor it was given; the API is looping", resp.url),
                });
            }
            c.history_done = next_cursor.is_none();
            c.cursor = next_cursor;
            c.pages = pages;
            let next = if c.parents.is_empty() && c.history_done {
                self.next_channel(&c, pages)
            } else {
                Some(c)
            };
            return Ok(Page {
                records: vec![],
                next: next.map(|n| super::cursor_json(&n)).transpose()?,
                bytes: resp.bytes,
            });
        };
        // Read one page of the first pending thread.
        let mut r = HttpRequest::get(format!("{}/conversations.replies", self.base));
        r.query = vec![
            ("channel".into(), channel.clone()),
            ("ts".into(), parent.clone()),
            ("limit".into(), self.limit(req)),
        ];
        if let Some(w) = &req.window {
            if let Some(s) = w.start {
                r.query.push(("oldest".into(), slack_ts(s)));
            }
            r.query.push(("latest".into(), slack_ts(w.end)));
            r.query.push(("inclusive".into(), "true".into()));
        }
        if let Some(rc) = &c.reply_cursor {
            r.query.push(("cursor".into(), rc.clone()));
        }
        let resp = send(r).await?;
        let body = &resp.body;
        let mut records = vec![];
        let mut reply_next = None;
        if body.get("ok").and_then(Value::as_bool) != Some(true) {
            let code = body.get("error").and_then(Value::as_str).unwrap_or("");
            if code == "thread_not_found" {
                // The parent was deleted since the history scan: nothing to read there.
                tracing::info!(channel = %channel, thread = %parent, "thread gone before its replies were read");
            } else if let Some(p) =
                self.channel_error(def, &resp.url, body, &c, &channel, resp.bytes)?
            {
                return Ok(p);
            } else {
                return Err(self.api_error(def, &resp.url, body, &resp.headers, Some(&channel)));
            }
        } else {
            let items = body.get("messages").and_then(Value::as_array).ok_or_else(|| {
                SourceError::Rejected {
                    message: format!("slack conversations.replies ({}) answered ok=true without a `messages` array", resp.url),
                }
            })?;
            let fields = (def.fields)();
            for item in items {
                if item.get("ts").and_then(Value::as_str) == Some(parent.as_str()) {
                    continue; // the parent, repeated at the head of every thread
                }
                let mut item = item.clone();
                if let Some(o) = item.as_object_mut() {
                    o.insert("channel".into(), Value::String(channel.clone()));
                    let posted = o.get("ts").cloned().unwrap_or(Value::Null);
                    o.insert("posted_at".into(), posted);
                }
                let rec =
                    normalize::shape(&item, &fields).map_err(|why| SourceError::Rejected {
                        message: format!(
                            "slack conversations.replies ({}): a reply in thread {parent}: {why}",
                            resp.url
                        ),
                    })?;
                if let Some(w) = &req.window {
                    match rec.get("posted_at").and_then(normalize::time) {
                        Some(t) if w.contains(t) => {}
                        Some(_) => continue,
                        None => {
                            return Err(SourceError::Rejected {
                                message: format!("slack conversations.replies ({}): a reply in thread {parent} has no ts", resp.url),
                            })
                        }
                    }
                }
                records.push(rec);
            }
            reply_next = body
                .pointer("/response_metadata/next_cursor")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from);
            if reply_next.is_some() && reply_next == c.reply_cursor {
                return Err(SourceError::Rejected {
                    message: format!("slack conversations.replies ({}) handed back the cursor it was given; the API is looping", resp.url),
                });
            }
        }
        c.pages = pages;
        let next = match reply_next {
            Some(rc) => {
                c.reply_cursor = Some(rc);
                Some(c)
            }
            None => {
                c.parents.remove(0);
                c.reply_cursor = None;
                if c.parents.is_empty() && c.history_done {
                    self.next_channel(&c, pages)
                } else {
                    Some(c)
                }
            }
        };
        Ok(Page {
            records,
            next: next.map(|n| super::cursor_json(&n)).transpose()?,
            bytes: resp.bytes,
        })
    }

    /// Map `{"ok": false, "error": …}` to the framework's error kinds.
    fn api_error(
        &self,
        def: &EntityDef,
        url: &str,
        body: &Value,
        headers: &reqwest::header::HeaderMap,
        channel: Option<&str>,
    ) -> SourceError {
        let code = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown_error");
        let what = format!(
            "slack {} ({url}) answered ok=false, error `{code}`",
            def.method
        );
        match code {
            "not_authed" | "invalid_auth" | "account_inactive" | "token_revoked" | "token_expired"
            | "no_permission" | "access_denied" | "team_access_not_granted" | "not_allowed_token_type"
            | "ekm_access_denied" | "org_login_required" => self.http.auth.auth_error(format!(
                "{what}: the token was refused; put a valid bot (xoxb-) or user (xoxp-) token into the profile's secret as {{\"type\": \"bearer\", \"token\": \"…\"}}"
            )),
            "missing_scope" => {
                let needed = body.get("needed").and_then(Value::as_str).unwrap_or("?");
                let provided = body.get("provided").and_then(Value::as_str).unwrap_or("?");
                self.http.auth.auth_error(format!(
                    "{what}: the token lacks the scope `{needed}` (it has: {provided}); add it to the app's OAuth scopes and reinstall the app"
                ))
            }
            "ratelimited" | "rate_limited" => {
                let retry_after = headers
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
                SourceError::Throttled {
                    message: format!("{what}: rate limited; the chunk is retried later"),
                    retry_after,
                }
            }
            "channel_not_found" | "not_in_channel" => SourceError::Rejected {
                message: format!(
                    "{what} for channel {}: source.properties.channels must list conversations the token can read — check the ID, and for a bot token invite the app to the channel (/invite @your-app)",
                    channel.unwrap_or("?")
                ),
            },
            "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => SourceError::Transient {
                message: format!("{what}: a Slack-side failure; the chunk is retried"),
            },
            _ => SourceError::Rejected {
                message: format!("{what}{}", body.get("response_metadata").map(|m| format!(" ({m})")).unwrap_or_default()),
            },
        }
    }
}

#[async_trait]
impl Source for SlackSource {
    /// The entities, after `auth.test` (one cheap authenticated call) proves the token works;
    /// methods are shown on the configured `base_url`.
    /// <https://docs.slack.dev/reference/methods/auth.test>
    async fn list_entities(&self) -> Result<Vec<EntityInfo>, SourceError> {
        let def = EntityDef {
            name: "auth",
            label: "auth.test",
            method: "auth.test",
            key: "user_id",
            default_incremental: "",
            fields: Vec::new,
        };
        let resp = self
            .http
            .send(&HttpRequest::get(format!("{}/auth.test", self.base)))
            .await?
            .ok_or_else(|| SourceError::Fatal {
                message: "an ignored status answered a Slack request".into(),
            })?;
        if resp.body.get("ok").and_then(Value::as_bool) != Some(true) {
            return Err(self.api_error(&def, &resp.url, &resp.body, &resp.headers, None));
        }
        Ok(ENTITIES
            .iter()
            .map(|e| EntityInfo {
                name: e.name.into(),
                label: e.label.into(),
                description: Some(format!("GET {}/{}", self.base, e.method)),
            })
            .collect())
    }

    fn take_warnings(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
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
        if matches!(def.name, "messages" | "replies") && self.cfg.channels.is_empty() {
            return Err(SourceError::config(
                "source.properties.channels",
                format!(
                    "the {} entity needs the channel IDs to read, e.g. channels: [C0123456789]",
                    def.name
                ),
            ));
        }
        let c: SCursor = super::cursor_from("slack", cursor)?.unwrap_or_default();
        if def.name == "replies" {
            return self.read_replies(def, req, c).await;
        }
        let channel = (def.name == "messages")
            .then(|| self.cfg.channels.get(c.channel).cloned())
            .flatten();
        if def.name == "messages" && channel.is_none() {
            return Ok(Page {
                records: vec![],
                next: None,
                bytes: 0,
            });
        }
        let resp = self
            .http
            .send(&self.request(def, req, &c))
            .await?
            .ok_or_else(|| SourceError::Fatal {
                message: "an ignored status answered a Slack request".into(),
            })?;
        let body = &resp.body;
        if body.get("ok").and_then(Value::as_bool) != Some(true) {
            if let Some(ch) = &channel {
                if let Some(p) = self.channel_error(def, &resp.url, body, &c, ch, resp.bytes)? {
                    return Ok(p);
                }
            }
            return Err(self.api_error(def, &resp.url, body, &resp.headers, channel.as_deref()));
        }
        if let Some(w) = body.get("warning") {
            tracing::warn!(method = def.method, warning = %w, "slack answered with a warning");
        }
        let items =
            body.get(def.key)
                .and_then(Value::as_array)
                .ok_or_else(|| SourceError::Rejected {
                    message: format!(
                        "slack {} ({}) answered ok=true without a `{}` array",
                        def.method, resp.url, def.key
                    ),
                })?;
        let fields = (def.fields)();
        let inc_field = req
            .incremental_field
            .clone()
            .unwrap_or_else(|| def.default_incremental.into());
        let mut records = Vec::with_capacity(items.len());
        for item in items {
            let mut item = item.clone();
            if let (Some(ch), Some(o)) = (&channel, item.as_object_mut()) {
                o.insert("channel".into(), Value::String(ch.clone()));
                let posted = o.get("ts").cloned().unwrap_or(Value::Null);
                o.insert("posted_at".into(), posted);
            }
            let id = item
                .get("id")
                .or_else(|| item.get("ts"))
                .cloned()
                .unwrap_or(Value::Null);
            let rec = normalize::shape(&item, &fields).map_err(|why| SourceError::Rejected {
                message: format!(
                    "slack {} ({}): {} {id}: {why}",
                    def.method, resp.url, def.name
                ),
            })?;
            if let Some(w) = &req.window {
                match rec.get(&inc_field).and_then(normalize::time) {
                    Some(t) if w.contains(t) => {}
                    Some(_) => continue,
                    None => {
                        return Err(SourceError::Rejected {
                            message: format!(
                                "slack {}: {} {id} has no datetime in `{inc_field}`, the flow's incremental field; use {}",
                                def.method, def.name, def.default_incremental
                            ),
                        })
                    }
                }
            }
            records.push(rec);
        }
        let next_cursor = body
            .pointer("/response_metadata/next_cursor")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let pages = c.pages + 1;
        let next = match next_cursor {
            Some(nc) => {
                if c.cursor.as_deref() == Some(nc) {
                    return Err(SourceError::Rejected {
                        message: format!("slack {} ({}) handed back the cursor it was given (after {pages} pages); the API is looping", def.method, resp.url),
                    });
                }
                Some(SCursor {
                    channel: c.channel,
                    cursor: Some(nc.into()),
                    pages,
                    ..Default::default()
                })
            }
            None => {
                if body.get("has_more").and_then(Value::as_bool) == Some(true) {
                    return Err(SourceError::Rejected {
                        message: format!("slack {} ({}) says has_more but gives no response_metadata.next_cursor", def.method, resp.url),
                    });
                }
                (def.name == "messages")
                    .then(|| self.next_channel(&c, pages))
                    .flatten()
            }
        };
        Ok(Page {
            records,
            next: next.map(|n| super::cursor_json(&n)).transpose()?,
            bytes: resp.bytes,
        })
    }
}

/// The `slack` connector in the [registry](super::registry).
pub static CONNECTOR: super::registry::Connector = super::registry::Connector {
    name: "slack",
    appflow_type: Some("Slack"),
    needs_profile: true,
    oauth_client_auth: super::auth::ClientAuth::Basic,
    auth_kinds: &["bearer", "oauth2_refresh_token"],
    consent: Some(&super::consent::SLACK),
    static_description: true,
    validate,
    build: |source, profile| {
        let auth =
            super::registry::require(profile, "slack", "its credentials")?.authenticator()?;
        Ok(Box::new(SlackSource::new(
            &source.properties,
            &source.entity,
            auth,
        )?))
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
        let e = SlackConfig::parse(&props(json!({})), "messages").unwrap_err();
        assert!(
            e.to_string().contains("source.properties.channels")
                && e.to_string().contains("/invite"),
            "{e}"
        );
        let e =
            SlackConfig::parse(&props(json!({"channels": ["#general"]})), "messages").unwrap_err();
        assert!(
            e.to_string().contains("source.properties.channels[0]")
                && e.to_string().contains("not the #name"),
            "{e}"
        );
        let e = SlackConfig::parse(
            &props(json!({"types": "public_channel,dm"})),
            "conversations",
        )
        .unwrap_err();
        assert!(e.to_string().contains("source.properties.types"), "{e}");
        let e = SlackConfig::parse(&props(json!({"page_size": 5000})), "users").unwrap_err();
        assert!(e.to_string().contains("source.properties.page_size"), "{e}");
        let e = SlackConfig::parse(&props(json!({"channel": ["C0123456789"]})), "messages")
            .unwrap_err();
        assert!(e.to_string().contains("channels, types"), "{e}");
        assert!(SlackConfig::parse(&props(json!({})), "users").is_ok());
        assert!(SlackConfig::parse(
            &props(json!({"channels": ["C0123456789", "G0ABCDEF12"]})),
            "messages"
        )
        .is_ok());
        let errs = validate("emoji", &props(json!({})));
        assert_eq!(errs[0].path, "source.entity");
    }

    #[test]
    fn window_bounds_keep_microseconds() {
        let t = DateTime::parse_from_rfc3339("2017-11-30T23:52:30.000216Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(slack_ts(t), "1512085950.000216");
        assert_eq!(normalize::time(&json!(slack_ts(t))), Some(t));
    }
}
