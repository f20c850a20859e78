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

mod config;
mod source;
mod types;
pub use config::*;
pub use source::*;
use types::*;

/// How `ferry profiles connect` runs the OAuth consent. Zendesk: the account's subdomain hosts both endpoints; PKCE S256; a JSON token request;
/// refresh tokens rotate.
pub static CONSENT: super::consent::Consent = super::consent::Consent {
    authorize: "https://{host}/oauth/authorizations/new",
    token: "https://{host}/oauth/tokens",
    api_host: None,
    default_host: None,
    host_hint: "your Zendesk host, e.g. --host acme.zendesk.com",
    scopes: &["read"],
    scope_param: "scope",
    scope_separator: " ",
    pkce: true,
    body: super::consent::TokenBody::Json,
    shape: super::consent::TokenShape::Standard,
    redirect_host: "127.0.0.1",
    extra: &[],
    client_auth: super::auth::ClientAuth::Body,
    needs_client_secret: false,
    docs: "https://developer.zendesk.com/documentation/ticketing/working-with-oauth/oauth-pkce",
};

/// The `zendesk` connector in the [registry](super::registry).
pub static CONNECTOR: super::registry::Connector = super::registry::Connector {
    name: "zendesk",
    appflow_type: Some("Zendesk"),
    needs_profile: true,
    oauth_client_auth: super::auth::ClientAuth::Basic,
    auth_kinds: &["basic", "bearer", "oauth2_refresh_token"],
    consent: Some(&CONSENT),
    static_description: true,
    last_modified: &[("*", "updated_at")],
    example_host: "acme.zendesk.com",
    probe_entity: Some("groups"),
    account_properties: Some((&["subdomain", "base_url"], "the Zendesk subdomain is part of the AppFlow connector profile, not the flow; pass --set properties.subdomain=SUBDOMAIN, and bind the ferry profile to that host (`ferry profiles put NAME --file creds.json --host SUBDOMAIN.zendesk.com`, docs/security.md)")),
    api_host_property: super::registry::ApiHostProperty::Subdomain(".zendesk.com"),
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
