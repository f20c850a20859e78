//! The `salesforce` connector: sObjects over the REST API, with Bulk API 2.0 for large extracts.
//!
//! ```yaml
//! source:
//!   connector: salesforce
//!   profile: sfdc                # OAuth2 refresh-token secret, see docs/connectors/salesforce.md
//!   entity: Account              # any queryable sObject
//!   properties:
//!     api_version: v62.0         # default
//!     sandbox: false             # token host test.salesforce.com instead of login.salesforce.com
//!     fields: [Id, Name, BillingAddress, SystemModstamp]   # default: every field but base64
//!     include_deleted: false     # true: queryAll / Bulk queryAll, with IsDeleted
//!     api: auto                  # auto | rest | bulk
//!     bulk_threshold: 100000     # auto: Bulk API 2.0 above this many records in the window
//!   incremental: { field: SystemModstamp }
//! ```
//!
//! How it talks to Salesforce (the documentation each part follows):
//! - Token refresh with `grant_type=refresh_token` and `client_id`/`client_secret` as form fields
//!   against `https://login.salesforce.com/services/oauth2/token` (`test.salesforce.com` for
//!   sandboxes); the response's `instance_url` is the API host and is written back to the secret.
//!   <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/intro_understanding_refresh_token_oauth.htm>,
//!   <https://developer.salesforce.com/docs/atlas.en-us.222.0.api_rest.meta/api/intro_understanding_oauth_endpoints.htm>
//! - Entities: `GET /services/data/vXX.X/sobjects` (`queryable` ones); fields and types:
//!   `GET /services/data/vXX.X/sobjects/{name}/describe`.
//! - Extraction by SOQL: `GET …/query?q=` (or `…/queryAll?q=` for deleted and archived records,
//!   which `query` hides), following `nextRecordsUrl` until `done`; page size by the
//!   `Sforce-Query-Options: batchSize=N` header (200..2000, a hint the server may override).
//!   <https://developer.salesforce.com/docs/platform/api-rest/guide/resources-queryall-more-results.html>,
//!   <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_queryoptions.htm>
//! - The window goes into the `WHERE` clause as unquoted dateTime literals
//!   (`YYYY-MM-DDThh:mm:ssZ`, whole seconds only):
//!   <https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/api/sforce_api_calls_soql_select_dateformats.htm>
//! - Bulk API 2.0 query jobs: `POST …/jobs/query {operation, query}`, poll
//!   `GET …/jobs/query/{id}` until `JobComplete` (`Failed`/`Aborted` end the run), then
//!   `GET …/jobs/query/{id}/results?maxRecords=N&locator=L`, CSV, next locator in the
//!   `Sforce-Locator` header (`null` at the end), with the same API version as the job.
//!   <https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/query_get_job_results.htm>,
//!   <https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_bulk_v2/bulk_api_2_job_states.htm>,
//!   <https://developer.salesforce.com/docs/atlas.en-us.238.0.api_asynch.meta/api_asynch/queries.htm>
//! - Errors are JSON arrays of `{message, errorCode}`; `403` with `REQUEST_LIMIT_EXCEEDED` is the
//!   org's API limit (→ `Throttled`), `401` `INVALID_SESSION_ID` an expired token (refreshed).
//!   <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm>
//!
//! Quirks handled:
//! - SOQL takes whole-second literals but `SystemModstamp` has milliseconds: the `WHERE` clause is
//!   widened to whole seconds and records are placed in the exact window `(start, end]` here.
//! - REST writes datetimes as `2026-01-01T00:00:00.000+0000` (not RFC 3339), Bulk as
//!   `…000Z`; both become `2026-01-01T00:00:00.000Z`. Bulk CSV has only text and an empty cell for
//!   null; values are typed from `describe` (numbers, booleans, dates) so the REST and Bulk paths
//!   give identical records. Salesforce stores no empty strings, so REST `""` is null as well.
//! - Bulk API 2.0 cannot query compound fields: both paths query the components
//!   (`BillingStreet`, …) and assemble the compound (`BillingAddress`) as a struct, null when
//!   every component is null. base64 fields (not available in Bulk) are left out.
//! - SOQL refuses unknown fields rather than ignoring them: `fields` is checked against
//!   `describe` first, with an error naming the field.
//! - The `nextRecordsUrl` of a `queryAll` says `query`; it still continues the `queryAll`.

use super::auth::Authenticator;
use super::http::{HttpClient, HttpRequest, HttpSettings};
use super::*;
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

mod config;
mod source;
mod types;
pub use config::*;
pub use source::*;
pub use types::*;

/// How `ferry profiles connect` runs the OAuth consent. Salesforce: web server flow with PKCE; `refresh_token` scope for a refresh token; the token
/// response's `instance_url` is the org's API host.
pub static CONSENT: super::consent::Consent = super::consent::Consent {
    authorize: "https://{host}/services/oauth2/authorize",
    token: "https://{host}/services/oauth2/token",
    api_host: None,
    default_host: Some("login.salesforce.com"),
    host_hint: "the login host: login.salesforce.com, test.salesforce.com (sandbox) or your My Domain (acme.my.salesforce.com)",
    scopes: &["api", "refresh_token"],
    scope_param: "scope",
    scope_separator: " ",
    pkce: true,
    body: super::consent::TokenBody::Form,
    shape: super::consent::TokenShape::Standard,
    redirect_host: "localhost",
    extra: &[("prompt", "consent")],
    client_auth: super::auth::ClientAuth::Body,
    needs_client_secret: false,
    docs: "https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_web_server_flow.htm",
};

/// The `salesforce` connector in the [registry](super::registry).
pub static CONNECTOR: super::registry::Connector = super::registry::Connector {
    name: "salesforce",
    appflow_type: Some("Salesforce"),
    needs_profile: true,
    oauth_client_auth: super::auth::ClientAuth::Body,
    auth_kinds: &[
        "oauth2_refresh_token",
        "oauth2_client_credentials",
        "bearer",
    ],
    consent: Some(&CONSENT),
    static_description: false,
    last_modified: &[("*", "LastModifiedDate")],
    example_host: "acme.my.salesforce.com",
    probe_entity: Some("Account"),
    account_properties: None,
    api_host_property: super::registry::ApiHostProperty::None,
    validate,
    build: |source, profile| {
        let p = super::registry::require(
            profile,
            "salesforce",
            "a secret with client_id, client_secret and refresh_token; see docs/connectors/salesforce.md",
        )?;
        Ok(Box::new(SalesforceSource::new(
            &source.properties,
            source.incremental.as_ref().map(|i| i.field.as_str()),
            p.name,
            p.secret,
            p.secrets.clone(),
        )?))
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_sf_time(s).unwrap()
    }

    #[test]
    fn window_bounds_are_widened_to_whole_seconds() {
        assert_eq!(
            soql_lower("SystemModstamp", t("2026-01-01T00:00:05Z")),
            "SystemModstamp > 2026-01-01T00:00:05Z"
        );
        assert_eq!(
            soql_lower("SystemModstamp", t("2026-01-01T00:00:05.250Z")),
            "SystemModstamp >= 2026-01-01T00:00:05Z"
        );
        assert_eq!(
            soql_upper("X", t("2026-01-01T00:00:05Z")),
            "X <= 2026-01-01T00:00:05Z"
        );
        assert_eq!(
            soql_upper("X", t("2026-01-01T00:00:05.250Z")),
            "X < 2026-01-01T00:00:06Z"
        );
    }

    #[test]
    fn rest_and_bulk_values_type_the_same() {
        let rest_t = json!("2026-01-01T10:00:00.120+0000");
        let bulk_t = "2026-01-01T10:00:00.120Z".to_string();
        assert_eq!(
            typed(Kind::Timestamp, "f", Cell::Json(&rest_t)).unwrap(),
            typed(Kind::Timestamp, "f", Cell::Csv(&bulk_t)).unwrap()
        );
        assert_eq!(
            typed(Kind::Timestamp, "f", Cell::Csv(&bulk_t)).unwrap(),
            json!("2026-01-01T10:00:00.120Z")
        );
        for (k, j, c) in [
            (Kind::Float, json!(1500.5), "1500.5"),
            (Kind::Float, json!(1.0E7), "1.0E7"),
            (Kind::Integer, json!(42), "42"),
            (Kind::Boolean, json!(true), "true"),
            (Kind::Date, json!("2026-02-03"), "2026-02-03"),
            (Kind::Text, json!("a,b"), "a,b"),
            (Kind::Text, Value::Null, ""),
            (Kind::Integer, Value::Null, ""),
            (Kind::Text, json!(""), ""),
        ] {
            let c = c.to_string();
            assert_eq!(
                typed(k, "f", Cell::Json(&j)).unwrap(),
                typed(k, "f", Cell::Csv(&c)).unwrap(),
                "{k:?} {j}"
            );
        }
        let e = typed(Kind::Integer, "f", Cell::Csv(&"xyz".to_string())).unwrap_err();
        assert!(
            e.contains("f:") && !e.contains("xyz"),
            "no record value: {e}"
        );
    }

    #[test]
    fn money_is_an_exact_decimal_with_the_describe_scale() {
        let k = Kind::of_field(&json!({"type": "currency", "precision": 18, "scale": 2})).unwrap();
        assert_eq!(
            k,
            Kind::Decimal {
                precision: 18,
                scale: 2
            }
        );
        assert_eq!(
            k.field_type(),
            FieldType::Decimal {
                precision: 18,
                scale: 2
            }
        );
        let pct = Kind::of_field(&json!({"type": "percent", "precision": 5, "scale": 3})).unwrap();
        // REST JSON numbers read through `numbers_as_text`, Bulk CSV text: the same exact value.
        let body: Value = serde_json::from_str(&numbers_as_text(
            r#"{"done": true, "totalSize": 2, "records": [{"AnnualRevenue": 98765432109876.54, "Pct": 12.5, "Name": "a 1.5, \"2\" \\ 3", "N": -4e3}]}"#,
        ))
        .unwrap();
        let r = &body["records"][0];
        assert_eq!(r["Name"], json!("a 1.5, \"2\" \\ 3"), "strings untouched");
        assert_eq!(body["done"], json!(true));
        assert_eq!(
            typed(k, "AnnualRevenue", Cell::Json(&r["AnnualRevenue"])).unwrap(),
            json!("98765432109876.54"),
            "a float would give 98765432109876.5 or …56"
        );
        assert_eq!(
            typed(k, "AnnualRevenue", Cell::Csv(&"98765432109876.54".into())).unwrap(),
            json!("98765432109876.54")
        );
        assert_eq!(
            typed(k, "f", Cell::Csv(&"1.0E7".into())).unwrap(),
            json!("10000000.00")
        );
        assert_eq!(
            typed(pct, "Pct", Cell::Json(&r["Pct"])).unwrap(),
            json!("12.500")
        );
        assert_eq!(
            typed(k, "N", Cell::Json(&r["N"])).unwrap(),
            json!("-4000.00")
        );
        assert_eq!(
            typed(k, "f", Cell::Csv(&String::new())).unwrap(),
            Value::Null
        );
        assert!(
            typed(pct, "Pct", Cell::Csv(&"123456.7".into())).is_err(),
            "does not fit"
        );
        assert_eq!(
            numbers_as_text("[1,-2.5e3,\"3\"]"),
            "[\"1\",\"-2.5e3\",\"3\"]"
        );
    }

    #[test]
    fn csv_quoting_and_line_endings() {
        let rows =
            parse_csv("\"Id\",\"Name\"\r\n\"1\",\"a, \"\"b\"\"\nc\"\r\n\"2\",\"\"\n").unwrap();
        assert_eq!(
            rows,
            vec![vec!["Id", "Name"], vec!["1", "a, \"b\"\nc"], vec!["2", ""]]
        );
        let rows = parse_csv("Id,Name\n3,x").unwrap();
        assert_eq!(rows[1], vec!["3", "x"]);
        assert!(parse_csv("Id\n\"open").is_err());
    }

    #[test]
    fn compound_subfield_names() {
        assert_eq!(sub_name("BillingAddress", "BillingStreet"), "street");
        assert_eq!(
            sub_name("BillingAddress", "BillingGeocodeAccuracy"),
            "geocodeAccuracy"
        );
        assert_eq!(sub_name("Address", "PostalCode"), "postalCode");
        assert_eq!(sub_name("Site__c", "Site__Latitude__s"), "latitude");
    }

    #[test]
    fn limit_errors_are_throttled_and_query_errors_rejected() {
        let e = error_hook(403, br#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#).unwrap();
        assert_eq!(e.kind(), crate::error::ErrorKind::Throttled);
        let e = error_hook(
            400,
            br#"[{"message":"No such column 'Foo'","errorCode":"INVALID_FIELD"}]"#,
        )
        .unwrap();
        assert_eq!(e.kind(), crate::error::ErrorKind::SourceRejected);
        assert!(error_hook(
            403,
            br#"[{"message":"no","errorCode":"INSUFFICIENT_ACCESS"}]"#
        )
        .is_none());
        assert!(error_hook(500, b"<html>").is_none());
    }

    #[test]
    fn properties_are_checked_naming_the_field() {
        let p = |v: Value| v.as_object().unwrap().clone();
        assert!(SalesforceConfig::parse(&p(json!({}))).is_ok());
        let e = SalesforceConfig::parse(&p(json!({"api_version": "62"}))).unwrap_err();
        assert!(
            e.to_string().contains("source.properties.api_version"),
            "{e}"
        );
        let e = SalesforceConfig::parse(&p(json!({"fields": ["Id", "Name; DROP"]}))).unwrap_err();
        assert!(e.to_string().contains("source.properties.fields[1]"), "{e}");
        assert!(SalesforceConfig::parse(&p(
            json!({"fields": ["Id", "Owner.Name", "Account.Owner.Manager.Name"]})
        ))
        .is_ok());
        for bad in ["Owner.", ".Name", "A.B.C.D.E.F.G"] {
            let e = SalesforceConfig::parse(&p(json!({"fields": [bad]}))).unwrap_err();
            assert!(e.to_string().contains("fields[0]"), "{bad}: {e}");
        }
        let e = SalesforceConfig::parse(&p(json!({"bulk": true}))).unwrap_err();
        assert!(e.to_string().contains("bulk"), "{e}");
        assert_eq!(
            validate("Account; x", &p(json!({})))[0].path,
            "source.entity"
        );
    }
}
