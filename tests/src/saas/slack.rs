//! A mock Slack Web API, in Slack's dialect:
//!
//! - `GET /api/conversations.list?types&exclude_archived&limit&cursor` → `{"ok", "channels", "response_metadata": {"next_cursor"}}`
//! - `GET /api/users.list?limit&cursor` → `{"ok", "members", "cache_ts", "response_metadata"}`
//! - `GET /api/conversations.history?channel&oldest&latest&inclusive&limit&cursor`
//!   → `{"ok", "messages" (newest first), "has_more", "pin_count", "response_metadata"}`;
//!   `oldest`/`latest` exclusive unless `inclusive` is `true`/`1`.
//! - Auth: `Authorization: Bearer <token>`; errors are HTTP 200 with `{"ok": false, "error": …}`
//!   (`not_authed`, `invalid_auth`, `missing_scope` with `needed`/`provided`,
//!   `channel_not_found`, `not_in_channel`); throttling is HTTP 429 with `Retry-After` and
//!   `{"ok": false, "error": "ratelimited"}`.
//! - `next_cursor` is `""` on the last page; unknown arguments are ignored.
//! - OAuth v2 with PKCE from a localhost redirect: `GET /oauth/v2/authorize` with `client_id`,
//!   `user_scope` (comma-separated; such redirects cannot ask for bot scopes), `redirect_uri`,
//!   `state`, `code_challenge`/`code_challenge_method=S256`; `POST /api/oauth.v2.access`
//!   (form) answers `{"ok": true, "authed_user": {"access_token": "xoxp-…", …}}`, errors
//!   `{"ok": false, "error": "invalid_code"}` (<https://docs.slack.dev/authentication/using-pkce>,
//!   <https://docs.slack.dev/reference/methods/oauth.v2.access>).
//!
//! Data (times from [`crate::base_time`]): member channels `C0000000001` (general),
//! `C0000000002` (random), `G0000000003` (private), `C0000000004` (archived); `C0000000009`
//! exists but the bot is not in it. Message `j` (1-based) of channel `k` has
//! `ts = BASE + 60j + 7k seconds` plus `(37j + k) µs`. User `i` (`U%010d`) was updated at
//! `BASE + i min` (epoch seconds), deleted when `i.is_multiple_of(5)`.

use super::{header, status_response, token, untoken, with_body_fault, Common};
use crate::{base_time, Fault, Seen};
use axum::body::Body;
use axum::extract::{Query, RawQuery, State};
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// (id, name, is_private, is_archived, bot is a member)
pub const CHANNELS: &[(&str, &str, bool, bool, bool)] = &[
    ("C0000000001", "general", false, false, true),
    ("C0000000002", "random", false, false, true),
    ("G0000000003", "secret", true, false, true),
    ("C0000000004", "old-project", false, true, true),
    ("C0000000009", "elsewhere", false, false, false),
];

#[derive(Debug, Clone)]
pub struct SlackMockConfig {
    /// Messages per member channel.
    pub messages: u64,
    pub users: u64,
    /// The bot token the API accepts.
    pub token: String,
}

impl Default for SlackMockConfig {
    fn default() -> Self {
        SlackMockConfig {
            messages: 60,
            users: 23,
            token: "xoxb-test-1".into(),
        }
    }
}

struct Inner {
    cfg: SlackMockConfig,
    common: Common,
    /// `{"ok": false, "error": code}` (HTTP 200) for the next data requests.
    api_errors: Mutex<VecDeque<String>>,
    /// Serve every message whatever `oldest`/`latest` say.
    ignore_window: AtomicBool,
    /// Pages shorter than `limit`, every other one empty, while more follow.
    short_pages: AtomicBool,
    /// `conversations.history` answers `missing_scope` for this scope.
    missing_scope: Mutex<Option<String>>,
    pages_served: AtomicU64,
    /// Messages posted while the mock runs: (channel, number, micro-epoch ts).
    posted: Mutex<Vec<(String, u64, i64)>>,
    /// (data requests answered, channels): post one message to each of those channels, at the
    /// time of the next request, once the mock has answered that many.
    scheduled: Mutex<Vec<(u64, Vec<String>)>>,
    codes: super::oauth::AuthCodes,
    /// User tokens issued through OAuth, accepted like the configured token.
    user_tokens: Mutex<BTreeSet<String>>,
    /// (channel id, field, value) served instead of the channel's generated value.
    overrides: Mutex<Vec<(String, String, Value)>>,
}

/// The Slack app's client id the mock knows.
pub const OAUTH_CLIENT_ID: &str = "1234567890.0987654321";

type S = Arc<Inner>;

pub struct SlackMock {
    pub addr: SocketAddr,
    inner: S,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SlackMock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Micro-epoch of message `j` of channel number `k`.
pub fn message_micros(j: u64, k: u64) -> i64 {
    (base_time().timestamp() + 60 * j as i64 + 7 * k as i64) * 1_000_000
        + ((37 * j + k) % 1_000_000) as i64
}
pub fn ts_text(micros: i64) -> String {
    format!(
        "{}.{:06}",
        micros.div_euclid(1_000_000),
        micros.rem_euclid(1_000_000)
    )
}
fn parse_ts(s: &str) -> Option<i64> {
    let (a, b) = s.split_once('.').unwrap_or((s, "0"));
    let secs: i64 = a.parse().ok()?;
    let mut frac = b.to_string();
    frac.truncate(6);
    while frac.len() < 6 {
        frac.push('0');
    }
    Some(secs * 1_000_000 + frac.parse::<i64>().ok()?)
}
fn channel_number(id: &str) -> u64 {
    id[1..].parse().unwrap_or(0)
}
pub fn user_updated(i: u64) -> i64 {
    base_time().timestamp() + 60 * i as i64
}

impl SlackMock {
    pub async fn start(cfg: SlackMockConfig) -> SlackMock {
        let inner = Arc::new(Inner {
            cfg,
            common: Common::default(),
            api_errors: Mutex::new(VecDeque::new()),
            ignore_window: AtomicBool::new(false),
            short_pages: AtomicBool::new(false),
            missing_scope: Mutex::new(None),
            pages_served: AtomicU64::new(0),
            posted: Mutex::new(vec![]),
            scheduled: Mutex::new(vec![]),
            codes: Default::default(),
            user_tokens: Default::default(),
            overrides: Default::default(),
        });
        let app = Router::new()
            .route("/oauth/v2/authorize", get(authorize))
            .route("/api/oauth.v2.access", post(oauth_access))
            .route("/api/conversations.list", get(conversations_list))
            .route("/api/users.list", get(users_list))
            .route("/api/conversations.history", get(history))
            .route("/api/conversations.replies", get(replies))
            .route("/api/auth.test", get(auth_test))
            .layer(axum::middleware::from_fn_with_state(inner.clone(), gate))
            .with_state(inner.clone());
        let (addr, task) = super::serve(app, "slack").await;
        SlackMock { addr, inner, task }
    }

    /// The authorization-code grant's state (refuse the next consent, the last request).
    pub fn consent(&self) -> &super::oauth::AuthCodes {
        &self.inner.codes
    }

    /// The Web API base, `…/api`.
    pub fn url(&self) -> String {
        format!("http://{}/api", self.addr)
    }
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.inner.common.faults.lock().unwrap().extend(faults);
    }
    /// Serve `value` as channel `id`'s `field` in `conversations.list` (a value ferry must
    /// refuse: the canary tests).
    pub fn override_channel_field(&self, id: &str, field: &str, value: Value) {
        self.inner
            .overrides
            .lock()
            .unwrap()
            .push((id.to_string(), field.to_string(), value));
    }

    pub fn fault_every(&self, every: u64, faults: Vec<Fault>) {
        *self.inner.common.periodic.lock().unwrap() = Some((every, faults));
    }
    pub fn push_api_errors<'a>(&self, codes: impl IntoIterator<Item = &'a str>) {
        self.inner
            .api_errors
            .lock()
            .unwrap()
            .extend(codes.into_iter().map(String::from));
    }
    pub fn set_ignore_window(&self, on: bool) {
        self.inner.ignore_window.store(on, Ordering::SeqCst);
    }
    pub fn set_short_pages(&self, on: bool) {
        self.inner.short_pages.store(on, Ordering::SeqCst);
    }
    pub fn set_missing_scope(&self, scope: Option<&str>) {
        *self.inner.missing_scope.lock().unwrap() = scope.map(String::from);
    }
    pub fn requests(&self) -> Vec<Seen> {
        self.inner.common.log.lock().unwrap().clone()
    }

    /// Post one message to each of `channels` once `after` data requests have been answered
    /// (people keep talking while ferry pages).
    pub fn post_after(&self, after: u64, channels: &[&str]) {
        self.inner
            .scheduled
            .lock()
            .unwrap()
            .push((after, channels.iter().map(|c| c.to_string()).collect()));
    }

    /// (channel, ts) of every message in `channels`, seeded and posted.
    pub fn all_message_keys(&self, channels: &[&str]) -> BTreeSet<(String, String)> {
        let mut out = self.message_keys(channels, None, None);
        for (c, _, m) in self.inner.posted.lock().unwrap().iter() {
            if channels.contains(&c.as_str()) {
                out.insert((c.clone(), ts_text(*m)));
            }
        }
        out
    }

    /// (channel, ts) of the messages of `channels` posted in `(start, end]`.
    pub fn message_keys(
        &self,
        channels: &[&str],
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> BTreeSet<(String, String)> {
        let (lo, hi) = (
            start.map(|t| t.timestamp_micros()),
            end.map(|t| t.timestamp_micros()),
        );
        let mut out = BTreeSet::new();
        for c in channels {
            let k = channel_number(c);
            for j in 1..=self.inner.cfg.messages {
                let m = message_micros(j, k);
                if lo.is_none_or(|l| m > l) && hi.is_none_or(|h| m <= h) {
                    out.insert((c.to_string(), ts_text(m)));
                }
            }
        }
        out
    }
    /// (channel, ts) of the thread replies in `channels` posted in `(start, end]`.
    pub fn reply_keys(
        &self,
        channels: &[&str],
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> BTreeSet<(String, String)> {
        let (lo, hi) = (
            start.map(|t| t.timestamp_micros()),
            end.map(|t| t.timestamp_micros()),
        );
        let mut out = BTreeSet::new();
        for c in channels {
            let k = channel_number(c);
            for j in (1..=self.inner.cfg.messages).filter(|j| j.is_multiple_of(6)) {
                for r in 1..=2 {
                    let m = reply_micros(j, k, r);
                    if lo.is_none_or(|l| m > l) && hi.is_none_or(|h| m <= h) {
                        out.insert((c.to_string(), ts_text(m)));
                    }
                }
            }
        }
        out
    }
    pub fn user_ids(&self) -> BTreeSet<String> {
        (1..=self.inner.cfg.users)
            .map(|i| format!("U{i:010}"))
            .collect()
    }
    /// Channel ids conversations.list returns for public+private types.
    pub fn channel_ids(&self, exclude_archived: bool) -> BTreeSet<String> {
        CHANNELS
            .iter()
            .filter(|c| !(exclude_archived && c.3))
            .map(|c| c.0.to_string())
            .collect()
    }
}

type Q = HashMap<String, String>;

/// Cursor pagination: `response_metadata.next_cursor`, `""` at the end.
/// <https://docs.slack.dev/apis/web-api/pagination>
fn ok(mut v: Value, next: Option<String>) -> Response {
    v["ok"] = json!(true);
    v["response_metadata"] = json!({"next_cursor": next.unwrap_or_default()});
    axum::Json(v).into_response()
}
/// The consent page for a PKCE app's localhost redirect: user scopes only.
/// <https://docs.slack.dev/authentication/using-pkce>
async fn authorize(State(s): State<S>, RawQuery(q): RawQuery) -> Response {
    let d = super::oauth::Dialect {
        client_id: OAUTH_CLIENT_ID.into(),
        scope_param: "user_scope",
        require_state: false,
        pkce: super::oauth::Pkce::Optional,
    };
    s.codes.authorize(&d, q.as_deref().unwrap_or(""))
}

/// `oauth.v2.access`: the code exchange; a PKCE app sends `code_verifier` instead of the
/// secret. Errors are HTTP 200 `{"ok": false, "error": ...}`.
/// <https://docs.slack.dev/reference/methods/oauth.v2.access>
async fn oauth_access(State(s): State<S>, body: String) -> Response {
    let p = super::oauth::params(None, &body);
    match s.codes.redeem(&p) {
        Err((e, _)) => api_error(match e {
            "invalid_client" => "invalid_client_id",
            _ => "invalid_code",
        }),
        Ok(g) => {
            let t = format!("xoxp-user-{}", s.user_tokens.lock().unwrap().len() + 1);
            s.user_tokens.lock().unwrap().insert(t.clone());
            axum::Json(json!({"ok": true, "app_id": "A0KRD7HC3",
                "authed_user": {"id": "U0000000001", "scope": g.scope, "access_token": t, "token_type": "user"},
                "team": {"id": "T9TK3CUKW", "name": "Acme"}, "enterprise": null,
                "is_enterprise_install": false}))
            .into_response()
        }
    }
}

fn api_error(code: &str) -> Response {
    axum::Json(json!({"ok": false, "error": code})).into_response()
}
fn limit(q: &Q, default: usize, max: usize) -> usize {
    q.get("limit")
        .and_then(|v| v.parse().ok())
        .filter(|v: &usize| *v > 0)
        .unwrap_or(default)
        .min(max)
}

/// One page of `n` items from `pos`, honouring short pages; the next token carries a serial so
/// an empty page's token still differs from the one that asked for it.
fn paged(
    s: &S,
    prefix: &str,
    q: &Q,
    len: usize,
    default: usize,
    max: usize,
) -> Result<(usize, usize, Option<String>), Response> {
    let pos = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => match untoken(c).and_then(|t| {
            let mut it = t.split(':');
            (it.next()? == prefix).then_some(())?;
            it.next()?.parse::<usize>().ok()
        }) {
            Some(p) => p,
            None => return Err(api_error("invalid_cursor")),
        },
    };
    let mut n = limit(q, default, max);
    let serial = s.pages_served.fetch_add(1, Ordering::SeqCst);
    if s.short_pages.load(Ordering::SeqCst) {
        n = if serial % 2 == 1 { 0 } else { (n / 3).max(1) };
    }
    let to = (pos + n).min(len);
    let next = (to < len).then(|| token(&format!("{prefix}:{to}:{serial}")));
    Ok((pos.min(len), to, next))
}

fn channel_json(c: &(&str, &str, bool, bool, bool)) -> Value {
    let k = channel_number(c.0) as i64;
    let created = base_time().timestamp() - 86_400 * k;
    json!({
        "id": c.0, "name": c.1, "name_normalized": c.1,
        "is_channel": !c.2, "is_group": c.2, "is_im": false, "is_mpim": false,
        "is_private": c.2, "is_archived": c.3, "is_general": c.1 == "general",
        "is_shared": false, "is_ext_shared": false, "is_org_shared": false, "is_member": c.4,
        "creator": "U0000000001", "context_team_id": "T0000000001", "num_members": 3 + k,
        "topic": {"value": format!("about {}", c.1), "creator": "U0000000001", "last_set": created},
        "purpose": {"value": "", "creator": "", "last_set": 0},
        "created": created,
        "updated": (created + 3600) * 1000 + 123,
        "unlinked": 0, "parent_conversation": null,
    })
}

/// <https://docs.slack.dev/reference/methods/conversations.list>
async fn conversations_list(State(s): State<S>, Query(q): Query<Q>) -> Response {
    let types = q
        .get("types")
        .cloned()
        .unwrap_or_else(|| "public_channel".into());
    let exclude_archived = q
        .get("exclude_archived")
        .is_some_and(|v| v == "true" || v == "1");
    let chans: Vec<_> = CHANNELS
        .iter()
        .filter(|c| {
            (types.contains("public_channel") && !c.2) || (types.contains("private_channel") && c.2)
        })
        .filter(|c| !(exclude_archived && c.3))
        .collect();
    match paged(&s, "cl", &q, chans.len(), 100, 1000) {
        Err(r) => r,
        Ok((a, b, next)) => ok(
            json!({"channels": chans[a..b].iter().map(|c| {
                let mut v = channel_json(c);
                for (id, field, value) in s.overrides.lock().unwrap().iter() {
                    if id == c.0 {
                        v[field.as_str()] = value.clone();
                    }
                }
                v
            }).collect::<Vec<_>>()}),
            next,
        ),
    }
}

/// <https://docs.slack.dev/reference/methods/users.list>
async fn users_list(State(s): State<S>, Query(q): Query<Q>) -> Response {
    let n = s.cfg.users as usize;
    match paged(&s, "ul", &q, n, n.max(1), 1000) {
        Err(r) => r,
        Ok((a, b, next)) => {
            let members: Vec<Value> = (a + 1..=b)
                .map(|i| {
                    let i = i as u64;
                    json!({
                        "id": format!("U{i:010}"), "team_id": "T0000000001", "name": format!("user{i}"),
                        "real_name": format!("User {i}"), "deleted": i.is_multiple_of(5), "color": "9f69e7",
                        "tz": "Europe/Berlin", "tz_label": "Central European Time", "tz_offset": 3600,
                        "is_admin": i == 1, "is_owner": i == 1, "is_primary_owner": i == 1,
                        "is_restricted": false, "is_ultra_restricted": false, "is_bot": i.is_multiple_of(7),
                        "is_app_user": false, "is_email_confirmed": true,
                        "profile": {"real_name": format!("User {i}"), "display_name": format!("u{i}"), "email": format!("u{i}@example.test")},
                        "updated": user_updated(i),
                    })
                })
                .collect();
            ok(
                json!({"members": members, "cache_ts": Utc::now().timestamp()}),
                next,
            )
        }
    }
}

/// `conversations.history`: newest first; `oldest`/`latest` exclusive unless `inclusive`;
/// `limit` ≤ 999 and "fewer than the requested number of items may be returned"; a bot token
/// reads only conversations it is a member of (`not_in_channel`).
/// <https://docs.slack.dev/reference/methods/conversations.history>
async fn history(State(s): State<S>, Query(q): Query<Q>) -> Response {
    if let Some(scope) = s.missing_scope.lock().unwrap().clone() {
        return axum::Json(json!({"ok": false, "error": "missing_scope", "needed": scope, "provided": "users:read,channels:read"})).into_response();
    }
    let Some(ch) = q.get("channel") else {
        return api_error("channel_not_found");
    };
    let Some(c) = CHANNELS.iter().find(|c| c.0 == ch) else {
        return api_error("channel_not_found");
    };
    if !c.4 {
        return api_error("not_in_channel");
    }
    let k = channel_number(c.0);
    let inclusive = q.get("inclusive").is_some_and(|v| v == "true" || v == "1");
    let ignore = s.ignore_window.load(Ordering::SeqCst);
    let oldest = if ignore {
        0
    } else {
        q.get("oldest").and_then(|v| parse_ts(v)).unwrap_or(0)
    };
    let latest = if ignore {
        i64::MAX
    } else {
        q.get("latest")
            .and_then(|v| parse_ts(v))
            .unwrap_or(i64::MAX)
    };
    // The channel's messages: the seeded ones and those posted since (`post_after`).
    let posted: Vec<(u64, i64)> = s
        .posted
        .lock()
        .unwrap()
        .iter()
        .filter(|(c, _, _)| c == ch)
        .map(|(_, j, m)| (*j, *m))
        .collect();
    let mut msgs: Vec<(u64, i64)> = (1..=s.cfg.messages)
        .map(|j| (j, message_micros(j, k)))
        .chain(posted)
        .filter(|(_, m)| {
            if inclusive {
                *m >= oldest && *m <= latest
            } else {
                *m > oldest && *m < latest
            }
        })
        .collect();
    msgs.sort_by_key(|(_, m)| std::cmp::Reverse(*m)); // newest first
                                                      // The cursor names the last message served ("next_ts"), so messages posted meanwhile (newer,
                                                      // at the head of the list) do not shift the pages that follow.
                                                      // <https://docs.slack.dev/apis/web-api/pagination>
    let before = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => i64::MAX,
        Some(c) => match untoken(c).and_then(|t| {
            let mut it = t.split(':');
            (it.next()? == "next_ts").then_some(())?;
            it.next()?.parse::<i64>().ok()
        }) {
            Some(b) => b,
            None => return api_error("invalid_cursor"),
        },
    };
    msgs.retain(|(_, m)| *m < before);
    let mut n = limit(&q, 100, 999);
    let serial = s.pages_served.fetch_add(1, Ordering::SeqCst);
    if s.short_pages.load(Ordering::SeqCst) {
        n = if serial % 2 == 1 { 0 } else { (n / 3).max(1) };
    }
    let take = n.min(msgs.len());
    let next = if take < msgs.len() {
        // An empty page hands out a cursor at its bound, with a serial so it is a new token.
        let bound = if take == 0 { before } else { msgs[take - 1].1 };
        Some(token(&format!("next_ts:{bound}:{serial}")))
    } else {
        None
    };
    let page: Vec<Value> = msgs[..take]
        .iter()
        .map(|(j, m)| {
            let mut v = json!({
                "type": "message", "user": format!("U{:010}", 1 + j % 5), "text": format!("message {j} in {}", c.1),
                "ts": ts_text(*m), "team": "T0000000001",
                "blocks": [{"type": "rich_text", "block_id": format!("b{j}")}],
            });
            if j.is_multiple_of(4) {
                v["subtype"] = json!("bot_message");
                v["bot_id"] = json!("B0000000001");
                v.as_object_mut().unwrap().remove("user");
            }
            if j.is_multiple_of(6) && *j <= s.cfg.messages {
                v["thread_ts"] = json!(ts_text(*m));
                v["reply_count"] = json!(2);
                v["reply_users_count"] = json!(1);
                v["latest_reply"] = json!(ts_text(*m + 5_000_000));
            }
            if j.is_multiple_of(9) {
                v["edited"] = json!({"user": "U0000000002", "ts": ts_text(*m + 9_000_000)});
                v["reactions"] = json!([{"name": "tada", "users": ["U0000000003"], "count": 1}]);
            }
            v
        })
        .collect();
    ok(
        json!({"messages": page, "has_more": next.is_some(), "pin_count": 0}),
        next,
    )
}

async fn auth_test(State(s): State<S>) -> Response {
    axum::Json(
        json!({"ok": true, "url": "https://acme.slack.com/", "team": "Acme", "user": "ferry-bot",
        "team_id": "T0000000001", "user_id": "U0000000042", "bot_id": "B0000000001",
        "is_enterprise_install": false, "token_prefix": &s.cfg.token[..4.min(s.cfg.token.len())]}),
    )
    .into_response()
}

/// Reply `r` (1-based) of the thread started by message `j` of channel `k` (a thread parent
/// when `j` is a multiple of 6): posted `2.5 s * r` after its parent.
pub fn reply_micros(j: u64, k: u64, r: u64) -> i64 {
    message_micros(j, k) + 2_500_000 * r as i64
}

/// `conversations.replies?channel&ts&oldest&latest&inclusive&limit&cursor`: the thread's
/// messages oldest first, the parent always first, then the replies in `oldest`/`latest`
/// (exclusive unless `inclusive`); a `ts` that is no message answers `thread_not_found`.
/// <https://docs.slack.dev/reference/methods/conversations.replies>
async fn replies(State(s): State<S>, Query(q): Query<Q>) -> Response {
    let Some(c) = q
        .get("channel")
        .and_then(|ch| CHANNELS.iter().find(|c| c.0 == ch))
    else {
        return api_error("channel_not_found");
    };
    if !c.4 {
        return api_error("not_in_channel");
    }
    let k = channel_number(c.0);
    let Some(parent) = q.get("ts").and_then(|t| parse_ts(t)) else {
        return api_error("thread_not_found");
    };
    let Some(j) = (1..=s.cfg.messages).find(|j| message_micros(*j, k) == parent) else {
        return api_error("thread_not_found");
    };
    let inclusive = q.get("inclusive").is_some_and(|v| v == "true" || v == "1");
    let oldest = q.get("oldest").and_then(|v| parse_ts(v)).unwrap_or(0);
    let latest = q
        .get("latest")
        .and_then(|v| parse_ts(v))
        .unwrap_or(i64::MAX);
    let n = if j.is_multiple_of(6) { 2 } else { 0 };
    let rs: Vec<(u64, i64)> = (1..=n)
        .map(|r| (r, reply_micros(j, k, r)))
        .filter(|(_, m)| {
            if inclusive {
                *m >= oldest && *m <= latest
            } else {
                *m > oldest && *m < latest
            }
        })
        .collect();
    match paged(&s, &format!("r{j}"), &q, rs.len(), 1000, 1000) {
        Err(r) => r,
        Ok((a, b, next)) => {
            let mut msgs = vec![json!({
                "type": "message", "user": format!("U{:010}", 1 + j % 5), "text": format!("message {j} in {}", c.1),
                "ts": ts_text(parent), "thread_ts": ts_text(parent), "reply_count": n, "reply_users_count": 1,
                "latest_reply": ts_text(reply_micros(j, k, n.max(1))),
            })];
            for (r, m) in &rs[a..b] {
                msgs.push(json!({
                    "type": "message", "user": "U0000000003", "text": format!("reply {r} to {j}"),
                    "ts": ts_text(*m), "thread_ts": ts_text(parent), "parent_user_id": format!("U{:010}", 1 + j % 5),
                }));
            }
            ok(json!({"messages": msgs, "has_more": next.is_some()}), next)
        }
    }
}

async fn gate(State(s): State<S>, req: Request<Body>, next: axum::middleware::Next) -> Response {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let auth = header(req.headers(), "authorization").map(String::from);
    let oauth = path == "/oauth/v2/authorize" || path == "/api/oauth.v2.access";
    let resp = match auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) {
        _ if oauth => next.run(req).await,
        None => api_error("not_authed"),
        Some(t) if t != s.cfg.token && !s.user_tokens.lock().unwrap().contains(t) => {
            api_error("invalid_auth")
        }
        Some(_) => {
            let answered = s.common.data_requests.load(Ordering::SeqCst);
            let due: Vec<String> = {
                let mut sch = s.scheduled.lock().unwrap();
                let (due, later): (Vec<_>, Vec<_>) =
                    sch.drain(..).partition(|(n, _)| *n <= answered);
                *sch = later;
                due.into_iter().flat_map(|(_, c)| c).collect()
            };
            for c in due {
                let mut p = s.posted.lock().unwrap();
                let j = s.cfg.messages + 1 + p.len() as u64;
                p.push((c, j, Utc::now().timestamp_micros()));
            }
            let code = s.api_errors.lock().unwrap().pop_front();
            match (code, s.common.next_fault()) {
                (Some(code), _) => api_error(&code),
                (
                    None,
                    Some(Fault::Status {
                        status: 429,
                        retry_after,
                    }),
                ) => status_response(
                    429,
                    retry_after.as_deref(),
                    json!({"ok": false, "error": "ratelimited"}),
                ),
                (
                    None,
                    Some(Fault::Status {
                        status,
                        retry_after,
                    }),
                ) => status_response(
                    status,
                    retry_after.as_deref(),
                    json!({"ok": false, "error": "service_unavailable"}),
                ),
                (None, Some(Fault::Slow(d))) => {
                    tokio::time::sleep(d).await;
                    next.run(req).await
                }
                (None, Some(f)) => with_body_fault(&f, next.run(req).await).await,
                (None, None) => next.run(req).await,
            }
        }
    };
    s.common
        .record(at, &method, &path, &query, resp.status().as_u16());
    resp
}
