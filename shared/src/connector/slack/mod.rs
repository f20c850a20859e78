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

mod config;
mod source;
mod types;
pub use config::*;
pub use source::*;
use types::*;

/// How `ferry profiles connect` runs the OAuth consent. Slack: PKCE apps may redirect to localhost but then only get user scopes (`user_scope`,
/// comma-separated); the user token is under `authed_user`; refresh tokens only with token
/// rotation on.
pub static CONSENT: super::consent::Consent = super::consent::Consent {
    authorize: "https://{host}/oauth/v2/authorize",
    token: "https://{host}/api/oauth.v2.access",
    api_host: Some("slack.com"),
    default_host: Some("slack.com"),
    host_hint: "slack.com",
    scopes: &[
        "channels:read",
        "channels:history",
        "groups:read",
        "groups:history",
        "users:read",
    ],
    scope_param: "user_scope",
    scope_separator: ",",
    pkce: true,
    body: super::consent::TokenBody::Form,
    shape: super::consent::TokenShape::SlackUser,
    redirect_host: "localhost",
    extra: &[],
    client_auth: super::auth::ClientAuth::Body,
    needs_client_secret: false,
    docs: "https://docs.slack.dev/authentication/using-pkce",
};

/// The `slack` connector in the [registry](super::registry).
pub static CONNECTOR: super::registry::Connector = super::registry::Connector {
    name: "slack",
    appflow_type: Some("Slack"),
    needs_profile: true,
    oauth_client_auth: super::auth::ClientAuth::Basic,
    auth_kinds: &["bearer", "oauth2_refresh_token"],
    consent: Some(&CONSENT),
    static_description: true,
    last_modified: &[("messages", "posted_at"), ("*", "updated")],
    example_host: "slack.com",
    probe_entity: Some("users"),
    account_properties: None,
    api_host_property: super::registry::ApiHostProperty::BaseUrl("/api"),
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
