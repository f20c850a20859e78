//! The `hubspot` connector: CRM v3 objects (contacts, companies, deals, tickets).
//!
//! ```yaml
//! source:
//!   connector: hubspot
//!   profile: hubspot               # private app: {"type": "bearer", "hosts": ["api.hubapi.com"], "token": "pat-…"}
//!                                  # or OAuth2: {"type": "oauth2_refresh_token", "hosts": ["api.hubapi.com"],
//!                                  #   "token_url": "https://api.hubapi.com/oauth/v1/token", …}
//!   entity: contacts
//!   properties:
//!     properties: [email, firstname, lastname, lifecyclestage]   # optional: default all
//!     include_archived: true       # also read archived records (archived: true)
//!     page_size: 100               # list ≤ 100, search ≤ 200
//!     http: { budget: { requests: 4, per_seconds: 1 } }
//!   incremental: { field: lastmodifieddate }      # hs_lastmodifieddate for other objects
//! ```
//!
//! Vendor documentation this follows:
//! - CRM search (`POST /crm/v3/objects/{object}/search`, filterGroups/sorts/properties/limit/
//!   after; default properties per object: `lastmodifieddate` for contacts,
//!   `hs_lastmodifieddate` for companies, deals, tickets; "limited to 10,000 total results for
//!   any given query", paging past it answers 400; search requests are rate limited per
//!   account): <https://developers.hubspot.com/docs/api-reference/search/guide>,
//!   <https://developers.hubspot.com/docs/api/crm/search>
//! - Objects (`GET /crm/v3/objects/{object}?limit&after&properties&archived`, paging.next.after,
//!   `archived`/`archivedAt`): <https://developers.hubspot.com/docs/guides/crm/using-object-apis>
//! - Search rate limit (4–5 requests per second per token/account):
//!   <https://developers.hubspot.com/changelog/crm-search-api-rate-limit-increase>
//! - Rate limit headers: <https://developers.hubspot.com/changelog/2018-11-06-rate-limit-information-headers-will-be-included-in-http-responses>
//! - Properties (`GET /crm/v3/properties/{object}`: name, label, type, fieldType):
//!   <https://developers.hubspot.com/docs/api-reference/legacy/crm/properties/get-properties>
//!
//! How reading works, and the quirks it handles:
//! - **Complete reads** page `GET /crm/v3/objects/{object}` with the `after` cursor (no cap).
//! - **Incremental reads** use the search API on the object's last-modified property
//!   (`lastmodifieddate` for contacts, `hs_lastmodifieddate` otherwise; the flow's field, or
//!   `updatedAt`, maps to it), `GT start` and `LTE end` in epoch milliseconds, sorted ascending.
//!   **Pages are time slices, not offsets**: after each page the next search starts at the last
//!   modified time read (`GTE` that time), records at that very time already read skipped by
//!   id. Offsets (`after`) shift when a record of the window is updated during the read (it
//!   leaves the sorted results), which would skip a record for good; and **a search stops at
//!   10,000 results**, which slices never reach. So a window with any number of changes, even
//!   changing while it is read, is read completely and exactly once. `after` is followed only
//!   inside one millisecond; more than 10,000 records sharing one cannot be read and fail the
//!   read with a clear message.
//! - **Archived records** are hidden from search and from the list endpoint unless
//!   `archived=true` is asked for, which returns only archived ones: with `include_archived`
//!   they are read in a second phase (`archived: true`, `archivedAt`), for windows those whose
//!   `archivedAt` is in the window.
//! - **Unknown properties are silently ignored** by HubSpot (the column would just be missing):
//!   `properties` is checked against the properties API first.
//! - **Property values are strings** (`"1200.5"`, `"true"`, `""`): they are typed from the
//!   property's `type` (number, bool, datetime, date); `""` becomes null.
//! - Search results can lag a few seconds behind writes (indexing): give scheduled flows a
//!   `schedule_offset` of a minute.

use super::auth::Authenticator;
use super::http::{HttpClient, HttpRequest, HttpResponse, HttpSettings};
use super::*;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

mod config;
mod source;
mod types;
pub use config::*;
pub use source::*;
pub use types::*;

/// How `ferry profiles connect` runs the OAuth consent. HubSpot: app.hubspot.com consent, api.hubapi.com tokens; redirects must name a domain
/// (`localhost`), never an IP address; the client secret is required.
pub static CONSENT: super::consent::Consent = super::consent::Consent {
    authorize: "https://{host}/oauth/authorize",
    token: "https://api.hubapi.com/oauth/v1/token",
    api_host: Some("api.hubapi.com"),
    default_host: Some("app.hubspot.com"),
    host_hint: "app.hubspot.com",
    scopes: &[
        "oauth",
        "crm.objects.contacts.read",
        "crm.objects.companies.read",
        "crm.objects.deals.read",
        "tickets",
    ],
    scope_param: "scope",
    scope_separator: " ",
    pkce: false,
    body: super::consent::TokenBody::Form,
    shape: super::consent::TokenShape::Standard,
    redirect_host: "localhost",
    extra: &[],
    client_auth: super::auth::ClientAuth::Body,
    needs_client_secret: true,
    docs: "https://developers.hubspot.com/docs/apps/legacy-apps/authentication/working-with-oauth",
};

/// The `hubspot` connector in the [registry](super::registry).
pub static CONNECTOR: super::registry::Connector = super::registry::Connector {
    name: "hubspot",
    appflow_type: Some("Hubspot"),
    needs_profile: true,
    oauth_client_auth: super::auth::ClientAuth::Body,
    auth_kinds: &["bearer", "oauth2_refresh_token"],
    consent: Some(&CONSENT),
    static_description: false,
    last_modified: &[
        ("contacts", "lastmodifieddate"),
        ("*", "hs_lastmodifieddate"),
    ],
    example_host: "api.hubapi.com",
    probe_entity: Some("contacts"),
    account_properties: None,
    api_host_property: super::registry::ApiHostProperty::BaseUrl(""),
    validate,
    build: |source, profile| {
        let auth =
            super::registry::require(profile, "hubspot", "its credentials")?.authenticator()?;
        Ok(Box::new(HubSpotSource::new(&source.properties, auth)?))
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
        assert!(validate("contacts", &props(json!({}))).is_empty());
        let e = validate("leads", &props(json!({})));
        assert_eq!(e[0].path, "source.entity");
        let e = validate("deals", &props(json!({"page_size": 500})));
        assert_eq!(e[0].path, "source.properties.page_size");
        let e = validate("deals", &props(json!({"properties": ["amount", "a,b"]})));
        assert_eq!(e[0].path, "source.properties.properties[1]");
        let e = validate("deals", &props(json!({"archived": true})));
        assert!(e[0].message.contains("archived"), "{}", e[0]);
    }

    #[test]
    fn values_are_typed() {
        assert_eq!(coerce(&json!("1200.5"), &FieldType::Float), json!(1200.5));
        assert_eq!(coerce(&json!(""), &FieldType::Float), Value::Null);
        assert_eq!(coerce(&json!("true"), &FieldType::Boolean), json!(true));
        assert_eq!(
            coerce(&json!("2026-01-01T00:00:01Z"), &FieldType::Timestamp),
            json!("2026-01-01T00:00:01Z")
        );
        assert_eq!(
            coerce(&json!("1767225601000"), &FieldType::Timestamp),
            json!("2026-01-01T00:00:01Z")
        );
        assert_eq!(
            coerce(&json!("2026-03-04T00:00:00Z"), &FieldType::Date),
            json!("2026-03-04")
        );
        // A value that does not read as its property's type stays as sent (transform-batch
        // rejects that record alone).
        assert_eq!(coerce(&json!("soon"), &FieldType::Timestamp), json!("soon"));
        assert_eq!(
            coerce(&json!(1767225601000i64), &FieldType::Timestamp),
            json!("2026-01-01T00:00:01Z")
        );
        assert_eq!(hs_type("enumeration"), FieldType::String);
    }

    #[tokio::test]
    async fn an_empty_page_past_the_search_cap_is_an_error_not_a_panic() {
        use crate::connector::testing::{serve, Canned};
        let srv = serve(vec![
            Canned::json(
                200,
                json!({"results": [{"name": "lastmodifieddate", "type": "datetime", "label": "Last modified"}]}),
            ),
            // No results, yet a next page past the 10,000 cap: `tail.expect(…)` panicked here.
            Canned::json(200, json!({"total": 0, "results": [], "paging": {"next": {"after": "9950"}}})),
        ])
        .await;
        let s = HubSpotSource::new(
            &props(json!({"base_url": srv.url, "page_size": 100})),
            Authenticator::none(),
        )
        .unwrap();
        let end = Utc::now();
        let req = ReadRequest {
            entity: "contacts".into(),
            window: Some(Window {
                start: Some(end - chrono::Duration::hours(1)),
                end,
            }),
            incremental_field: Some("lastmodifieddate".into()),
            page_size: None,
            filters: vec![],
        };
        let e = s.read_page(&req, None).await.unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::SourceRejected, "{e}");
        assert!(e.to_string().contains("9950"), "{e}");
    }

    #[test]
    fn cursors_round_trip() {
        let c = HsCursor::Search {
            lo: Some(5),
            seen: vec!["1".into()],
            after: 200,
            tail: Some(9),
            tail_ids: vec!["7".into()],
        };
        assert_eq!(
            serde_json::from_value::<HsCursor>(to_value(c.clone()).unwrap()).unwrap(),
            c
        );
        let c = HsCursor::List {
            after: None,
            archived: true,
        };
        assert_eq!(
            serde_json::from_value::<HsCursor>(to_value(c.clone()).unwrap()).unwrap(),
            c
        );
    }
}
