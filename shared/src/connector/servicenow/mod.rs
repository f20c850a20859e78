//! The `servicenow` connector: any table of a ServiceNow instance through the Table API.
//!
//! ```yaml
//! source:
//!   connector: servicenow
//!   profile: snow                    # basic: {"type": "basic", "hosts": ["acme.service-now.com"], "username": …, "password": …}
//!                                    # or OAuth2 (token_url https://<instance>/oauth_token.do)
//!   entity: incident                 # any table name (sys_db_object.name)
//!   properties:
//!     instance_url: https://acme.service-now.com
//!     fields: [number, short_description, state, priority, sys_updated_on]   # optional
//!     query: active=true             # optional encoded query, ANDed with the window
//!     include_deleted: false         # true: deleted records too, from sys_audit_delete
//!     display_value: false           # false (default) | true | all
//!     page_size: 1000                # sysparm_limit
//!     http: { max_retries: 5 }
//!   incremental: { field: sys_updated_on }
//! ```
//!
//! Vendor documentation this follows:
//! - Table API, `GET /api/now/table/{tableName}` (sysparm_query with `ORDERBY`, sysparm_fields,
//!   sysparm_limit, sysparm_offset, sysparm_display_value, sysparm_exclude_reference_link, the
//!   `Link` header; "If part of the query is invalid, such as by specifying an invalid field name,
//!   the instance ignores the invalid part"):
//!   <https://docs.servicenow.com/bundle/geneva-servicenow-platform/page/integrate/inbound_rest/reference/r_TableAPI-GET.html>,
//!   <https://www.servicenow.com/docs/r/ko-KR/api-reference/rest-apis/c_TableAPI.html?contentId=vtAQdHKvSBdQ6SeXQ2AdXA>
//! - Table API FAQs (display values vs actual values; date/time values are UTC unless display
//!   values are asked for): <https://support.servicenow.com/kb?id=kb_article_view&sysparm_article=KB0534905>
//! - Encoded queries (`^` AND, `^OR`, `^NQ` new query, `ORDERBY`):
//!   <https://servicenow.github.io/sdk/guides/encoded-query-guide>
//! - Dates in web-service queries: a plain `YYYY-MM-DD HH:MM:SS` value is taken as UTC;
//!   `gs.dateGenerate` would convert from the API user's time zone:
//!   <https://www.servicenow.com/community/united-kingdom-snug/soap-web-service-and-time-zones-examples/ba-p/2270667>
//! - "Use ORDERBY so you don't get duplicate records" when paging with sysparm_limit + Link:
//!   <https://www.servicenow.com/community/developer-forum/want-to-limit-query-to-50-records-at-a-time-while-making-a-get/m-p/1913870>
//! - Inbound REST API rate limiting (429 with `Retry-After`, `X-RateLimit-*` headers):
//!   <https://www.servicenow.com/docs/r/australia/api-reference/rest-api-explorer/inbound-REST-API-rate-limiting.html>
//!
//! How reading works, and the quirks it handles:
//! - **Keyset paging, not offsets.** A window is read ordered by `<field>, sys_id`; each page
//!   asks for the rows after the last one read (`f>t ^NQ f=t^sys_id>id`, the encoded query's
//!   OR of two groups). Offsets shift when a row in the window is updated during the read (it
//!   leaves the window), which would skip a row for good; the keyset does not. Complete reads
//!   order by `sys_id` alone. `sysparm_offset` is used only to step over a page that came back
//!   empty while the `Link` header still names a next page (rows hidden by ACLs are removed
//!   after the limit is applied, so pages can be short or empty).
//! - **The window is `(start, end]`**: `f>start^f<=end` in UTC `YYYY-MM-DD HH:MM:SS`.
//! - **Invalid query parts are silently ignored** by the instance: the incremental field,
//!   `fields` and every field named in `query` are checked against `sys_dictionary` first (a
//!   misspelt `activ=true` would return every row), records outside the window are dropped
//!   client-side, and a page that does not move past the keyset (the paging condition was
//!   ignored) fails the read instead of looping.
//! - **The `Link` header holds raw commas** (the echoed `sysparm_fields=a,b,c`): it is parsed
//!   per RFC 8288 by [`super::link`]; a header that does not parse, or a link without `rel`,
//!   is an error, never "last page". Only an answer without any `Link` header is read until a
//!   short page.
//! - **Deleted records** (`include_deleted`): after the live rows, the table's
//!   `sys_audit_delete` rows (by deletion time, in the window) as `sys_deleted: true` rows.
//! - **Everything is a string** in Table API JSON (`"5"`, `"true"`, `""` for empty). Values are
//!   typed from `sys_dictionary.internal_type`: integers, floats, booleans, `glide_date_time` to
//!   RFC 3339 UTC, `glide_date` to dates; `""` becomes null.
//! - **Inherited columns**: `sys_dictionary` holds a column on the table that defines it
//!   (`incident` inherits most of its columns from `task`), so the table's `super_class` chain is
//!   followed through `sys_db_object`.
//! - **Reference fields** come as `{link, value}` objects unless
//!   `sysparm_exclude_reference_link=true`, which every request sends.
//! - **Display values**: `display_value: true` returns display values (labels of choices and
//!   references) — fetched as `all` so `sys_id` and the date/time columns keep their UTC actual
//!   values (display date/times are in the API user's time zone and format); every other column
//!   is then text. `all` keeps the typed actual value in `<field>` and adds
//!   `<field>_display`.

use super::auth::Authenticator;
use super::http::{HttpClient, HttpRequest, HttpResponse, HttpSettings};
use super::link::LinkTarget;
use super::*;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

mod config;
mod source;
mod types;
pub use config::*;
pub use source::*;
use types::*;

/// How `ferry profiles connect` runs the OAuth consent. ServiceNow: the instance's `oauth_auth.do` / `oauth_token.do`; `state` is required by
/// default; scope `useraccount` (the token carries the authorizing user's roles).
pub static CONSENT: super::consent::Consent = super::consent::Consent {
    authorize: "https://{host}/oauth_auth.do",
    token: "https://{host}/oauth_token.do",
    api_host: None,
    default_host: None,
    host_hint: "your instance host, e.g. --host acme.service-now.com",
    scopes: &["useraccount"],
    scope_param: "scope",
    scope_separator: " ",
    pkce: true,
    body: super::consent::TokenBody::Form,
    shape: super::consent::TokenShape::Standard,
    redirect_host: "127.0.0.1",
    extra: &[],
    client_auth: super::auth::ClientAuth::Body,
    needs_client_secret: false,
    docs: "https://www.servicenow.com/docs/r/zurich/platform-security/authentication/authorization-workflow.html",
};

/// The `servicenow` connector in the [registry](super::registry).
pub static CONNECTOR: super::registry::Connector = super::registry::Connector {
    name: "servicenow",
    appflow_type: Some("Servicenow"),
    needs_profile: true,
    oauth_client_auth: super::auth::ClientAuth::Body,
    auth_kinds: &[
        "basic",
        "oauth2_refresh_token",
        "oauth2_client_credentials",
        "bearer",
    ],
    consent: Some(&CONSENT),
    static_description: false,
    last_modified: &[("*", "sys_updated_on")],
    example_host: "acme.service-now.com",
    probe_entity: Some("sys_user"),
    account_properties: Some((&["instance_url"], "the ServiceNow instance is part of the AppFlow connector profile, not the flow; pass --set properties.instance_url=https://INSTANCE.service-now.com, and bind the ferry profile to that host (`ferry profiles put NAME --file creds.json --host INSTANCE.service-now.com`, docs/security.md)")),
    api_host_property: super::registry::ApiHostProperty::InstanceUrl,
    validate,
    build: |source, profile| {
        let auth =
            super::registry::require(profile, "servicenow", "its credentials")?.authenticator()?;
        Ok(Box::new(ServiceNowSource::new(&source.properties, auth)?))
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn src(v: Value) -> ServiceNowSource {
        ServiceNowSource::new(&props(v), Authenticator::none()).unwrap()
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = validate("incident", &props(json!({"instance_url": "acme"})));
        assert_eq!(e[0].path, "source.properties.instance_url");
        let e = validate(
            "Incident; drop",
            &props(json!({"instance_url": "https://a.service-now.com"})),
        );
        assert_eq!(e[0].path, "source.entity");
        let e = validate(
            "incident",
            &props(json!({"instance_url": "https://a.service-now.com", "display_value": "maybe"})),
        );
        assert_eq!(e[0].path, "source.properties.display_value");
        let e = validate(
            "incident",
            &props(json!({"instance_url": "https://a.service-now.com", "sysparm_limit": 5})),
        );
        assert!(e[0].message.contains("sysparm_limit"), "{}", e[0]);
        let e = validate(
            "incident",
            &props(json!({"instance_url": "https://a.service-now.com", "query": "a=1^NQb=2"})),
        );
        assert_eq!(e[0].path, "source.properties.query");
        let e = validate(
            "incident",
            &props(json!({"instance_url": "https://a.service-now.com", "page_size": 0})),
        );
        assert_eq!(e[0].path, "source.properties.page_size");
        assert!(validate(
            "incident",
            &props(json!({"instance_url": "https://a.service-now.com", "display_value": true}))
        )
        .is_empty());
        assert!(validate("x_acme_table", &props(json!({"instance_url": "https://a.service-now.com", "display_value": "all", "fields": ["number"]}))).is_empty());
    }

    #[test]
    fn window_and_keyset_queries() {
        let s = src(json!({"instance_url": "https://a.service-now.com", "query": "active=true"}));
        let w = Window {
            start: Some(
                DateTime::parse_from_rfc3339("2026-01-01T00:00:00.700Z")
                    .unwrap()
                    .with_timezone(&Utc),
            ),
            end: DateTime::parse_from_rfc3339("2026-01-02T10:20:30Z")
                .unwrap()
                .with_timezone(&Utc),
        };
        assert_eq!(
            s.encoded_query(Some("sys_updated_on"), Some(&w), &SnCursor::default()),
            "active=true^sys_updated_on>2026-01-01 00:00:00^sys_updated_on<=2026-01-02 10:20:30^ORDERBYsys_updated_on^ORDERBYsys_id"
        );
        let c = SnCursor {
            after_time: Some("2026-01-01 05:00:00".into()),
            after_id: Some("abc".into()),
            offset: 0,
            deleted: false,
        };
        assert_eq!(
            s.encoded_query(Some("sys_updated_on"), Some(&w), &c),
            "active=true^sys_updated_on>2026-01-01 00:00:00^sys_updated_on<=2026-01-02 10:20:30^sys_updated_on>2026-01-01 05:00:00\
             ^NQactive=true^sys_updated_on>2026-01-01 00:00:00^sys_updated_on<=2026-01-02 10:20:30^sys_updated_on=2026-01-01 05:00:00^sys_id>abc\
             ^ORDERBYsys_updated_on^ORDERBYsys_id"
        );
        let c = SnCursor {
            after_time: None,
            after_id: Some("abc".into()),
            offset: 0,
            deleted: false,
        };
        assert_eq!(
            s.encoded_query(None, None, &c),
            "active=true^sys_id>abc^ORDERBYsys_id"
        );
    }

    #[test]
    fn query_conditions_name_their_fields() {
        let fields: Vec<String> = query_fields(
            "active=true^priority<=2^ORstate=6^caller_id.nameSTARTSWITHAb^short_descriptionLIKEdisk^assigned_toISEMPTY^EQ",
        )
        .unwrap()
        .into_iter()
        .map(|(f, _)| f)
        .collect();
        assert_eq!(
            fields,
            [
                "active",
                "priority",
                "state",
                "caller_id.name",
                "short_description",
                "assigned_to"
            ]
        );
        for bad in ["active", "=true", "Active=true", "a=1^^", "caller_id.=x"] {
            let r = query_fields(bad);
            if bad == "a=1^^" {
                assert!(r.is_ok());
                continue;
            }
            let e = r.unwrap_err();
            assert!(
                e.to_string().contains("source.properties.query"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn values_are_typed_and_empty_is_null() {
        assert_eq!(coerce(&json!("42"), &FieldType::Integer), json!(42));
        assert_eq!(coerce(&json!(""), &FieldType::Integer), Value::Null);
        assert_eq!(coerce(&json!("1.5"), &FieldType::Float), json!(1.5));
        assert_eq!(coerce(&json!("true"), &FieldType::Boolean), json!(true));
        assert_eq!(
            coerce(&json!("2026-01-01 10:00:05"), &FieldType::Timestamp),
            json!("2026-01-01T10:00:05Z")
        );
        assert_eq!(
            coerce(&json!("2026-01-01"), &FieldType::Date),
            json!("2026-01-01")
        );
        assert_eq!(
            coerce(&json!("INC001"), &FieldType::String),
            json!("INC001")
        );
        assert_eq!(sn_type("glide_date_time"), FieldType::Timestamp);
        assert_eq!(sn_type("reference"), FieldType::String);
        assert_eq!(
            actual(&json!({"link": "https://x", "value": "abc"})),
            &json!("abc")
        );
        assert_eq!(
            display(&json!({"display_value": "High", "value": "2"})),
            &json!("High")
        );
    }

    #[test]
    fn link_header_with_raw_commas_names_the_next_page() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            "<https://a.service-now.com/api/now/table/incident?sysparm_fields=number,sys_id&sysparm_offset=0>;rel=\"first\",<https://a.service-now.com/api/now/table/incident?sysparm_fields=number,sys_id&sysparm_offset=10>;rel=\"next\"".parse().unwrap(),
        );
        let resp = HttpResponse {
            status: 200,
            headers: h,
            body: json!({"result": []}),
            bytes: 0,
            url: "u".into(),
        };
        assert_eq!(
            link_more(&resp, "https://a.service-now.com").unwrap(),
            Some(true)
        );
    }
}
