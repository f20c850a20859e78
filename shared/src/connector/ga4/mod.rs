//! The `ga4` connector: Google Analytics 4 reports through the Data API's `runReport`. An entity
//! is a report the flow names in its properties: dimensions and metrics.
//!
//! ```yaml
//! source:
//!   connector: ga4
//!   profile: ga4           # {"type": "oauth2_refresh_token", "token_url": "https://oauth2.googleapis.com/token",
//!                          #  "client_id": "…", "client_secret": "…", "refresh_token": "…",
//!                          #  "hosts": ["analyticsdata.googleapis.com"]}
//!   entity: traffic
//!   properties:
//!     property_id: "123456789"
//!     reports:
//!       traffic:
//!         dimensions: [date, country, sessionDefaultChannelGroup]
//!         metrics: [sessions, activeUsers, purchaseRevenue]
//!     page_size: 100000    # rows per request (limit), at most 250000
//!   incremental: { field: date, offset: 2d }   # days are read once their data is final
//! ```
//!
//! Vendor documentation this follows:
//! - `POST /v1beta/properties/{id}:runReport` (`dateRanges` with `YYYY-MM-DD`, `today`,
//!   `NdaysAgo`; `dimensions`, `metrics`, `limit` ≤ 250,000, `offset`, `orderBys`,
//!   `keepEmptyRows`, `returnPropertyQuota`): <https://developers.google.com/analytics/devguides/reporting/data/v1/rest/v1beta/properties/runReport>
//! - The response: `dimensionHeaders`, `metricHeaders` (`type`: `TYPE_INTEGER`, `TYPE_FLOAT`,
//!   `TYPE_SECONDS`, `TYPE_MILLISECONDS`, `TYPE_MINUTES`, `TYPE_HOURS`, `TYPE_STANDARD`,
//!   `TYPE_CURRENCY`, `TYPE_FEET`, `TYPE_MILES`, `TYPE_METERS`, `TYPE_KILOMETERS`), `rows` of
//!   string values, `rowCount` (all rows, whatever `limit`/`offset`), `metadata`
//!   (`dataLossFromOtherRow`, `samplingMetadatas`):
//!   <https://developers.google.com/analytics/devguides/reporting/data/v1/rest/v1beta/RunReportResponse>,
//!   <https://developers.google.com/analytics/devguides/reporting/data/v1/rest/v1beta/MetricType>
//! - Pagination (`limit`, `offset`, `rowCount`): <https://developers.google.com/analytics/devguides/reporting/data/v1/basics#pagination>
//! - Dimension and metric names and metric types, `GET /v1beta/properties/{id}/metadata`:
//!   <https://developers.google.com/analytics/devguides/reporting/data/v1/rest/v1beta/properties/getMetadata>
//! - The `date` dimension is `YYYYMMDD` in the property's time zone:
//!   <https://developers.google.com/analytics/devguides/reporting/data/v1/api-schema>
//! - Quotas: 429 `RESOURCE_EXHAUSTED` when a property's tokens per hour/day or concurrent
//!   requests run out: <https://developers.google.com/analytics/devguides/reporting/data/v1/quotas>
//! - OAuth 2.0 refresh tokens at `https://oauth2.googleapis.com/token`:
//!   <https://developers.google.com/identity/protocols/oauth2/web-server#offline>; or a service
//!   account's key file (`"type": "service_account"`, the JWT bearer grant in `connector::auth`):
//!   <https://developers.google.com/identity/protocols/oauth2/service-account#httprest>
//!
//! How reading works:
//! - **Windows are days.** The `date` dimension is the incremental field (a date column); a day
//!   is in the window `(start, end]` when its midnight (UTC) is, so each day is read by exactly
//!   one run. GA4 keeps processing a day for a day or two: give the flow an `incremental.offset`
//!   of `2d` so that a day is read once it is final.
//! - **Each day is its own report request** (`dateRanges` one day, ordered by every dimension),
//!   paged with `limit`/`offset` against the first page's `rowCount`: if a later page of the same
//!   day reports another `rowCount` (GA4 still processing the day), the run fails naming the
//!   day (its window is read again whole by the next run) instead of skipping or repeating rows. A day that fits in one page is read
//!   atomically. Complete reads ask for `2015-08-14` (GA4's earliest date) to `today`.
//! - **Metric values arrive as text**; they are typed from the response's `metricHeaders`:
//!   integers, floats, and currency as a decimal (38, 6) — never a float.
//! - Names the property does not have are refused by GA4 (400 `INVALID_ARGUMENT`); ferry checks
//!   them against the metadata endpoint first, naming the report and the field.
//! - 429 `RESOURCE_EXHAUSTED`: per-hour or per-day token exhaustion ends the chunk `Throttled`
//!   (an hour, or until the day is over) — retrying at once cannot succeed; other 429s (concurrent
//!   requests) are backed off and retried. Rows folded into `(other)` or sampled data are
//!   reported as warnings of the run.
//! - Authentication: an OAuth refresh token. Service-account keys (a signed JWT) are not
//!   supported: signing needs an RSA crate ferry does not carry; a refresh token minted for the
//!   service user does the same job.

use super::auth::Authenticator;
use super::http::{HttpClient, HttpRequest, HttpResponse, HttpSettings};
use super::*;
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

mod config;
mod source;
mod types;
pub use config::*;
pub use source::*;
pub use types::*;

/// How `ferry profiles connect` runs the OAuth consent. Google (the `ga4` connector), an installed app's consent: fixed Google hosts (`--host` only
/// for a stand-in server), PKCE S256, a loopback redirect on `127.0.0.1`, `access_type=offline`
/// for a refresh token and `prompt=consent` so that a second connect gets one too; the code is
/// redeemed with the client secret in the form body.
pub static CONSENT: super::consent::Consent = super::consent::Consent {
    authorize: "https://accounts.google.com/o/oauth2/v2/auth",
    token: "https://oauth2.googleapis.com/token",
    api_host: Some("analyticsdata.googleapis.com"),
    default_host: Some("accounts.google.com"),
    host_hint: "accounts.google.com (Google's own; another host only for a stand-in server)",
    scopes: &["https://www.googleapis.com/auth/analytics.readonly"],
    scope_param: "scope",
    scope_separator: " ",
    pkce: true,
    body: super::consent::TokenBody::Form,
    shape: super::consent::TokenShape::Standard,
    redirect_host: "127.0.0.1",
    extra: &[("access_type", "offline"), ("prompt", "consent")],
    client_auth: super::auth::ClientAuth::Body,
    needs_client_secret: true,
    docs: "https://developers.google.com/identity/protocols/oauth2/native-app",
};

/// The `ga4` connector in the [registry](super::registry). AppFlow's `GoogleAnalytics` reads
/// Universal Analytics (v3 Reporting API, retired by Google); an imported flow maps here with
/// a note that its object must become a GA4 report.
pub static CONNECTOR: super::registry::Connector = super::registry::Connector {
    name: "ga4",
    appflow_type: Some("GoogleAnalytics"),
    needs_profile: true,
    oauth_client_auth: super::auth::ClientAuth::Body,
    auth_kinds: &["oauth2_refresh_token", "service_account", "bearer"],
    consent: Some(&CONSENT),
    static_description: false,
    last_modified: &[("*", "date")],
    example_host: "analyticsdata.googleapis.com",
    probe_entity: None,
    account_properties: None,
    api_host_property: super::registry::ApiHostProperty::BaseUrl(""),
    validate,
    build: |source, profile| {
        let auth = super::registry::require(profile, "ga4", "its credentials")?.authenticator()?;
        Ok(Box::new(Ga4Source::new(&source.properties, auth)?))
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
        let ok = json!({"property_id": "123", "reports": {"t": {"dimensions": ["date"], "metrics": ["sessions"]}}});
        assert!(validate("t", &props(ok.clone())).is_empty());
        let e = validate("u", &props(ok));
        assert_eq!(e[0].path, "source.entity");
        let e = validate(
            "t",
            &props(
                json!({"property_id": "G-123", "reports": {"t": {"dimensions": [], "metrics": ["sessions"]}}}),
            ),
        );
        assert_eq!(e[0].path, "source.properties.property_id");
        let e = validate(
            "t",
            &props(
                json!({"property_id": "1", "reports": {"t": {"dimensions": ["date"], "metrics": []}}}),
            ),
        );
        assert_eq!(e[0].path, "source.properties.reports.t.metrics");
        let e = validate(
            "t",
            &props(
                json!({"property_id": "1", "reports": {"t": {"dimensions": ["date", "date"], "metrics": ["x"]}}}),
            ),
        );
        assert_eq!(e[0].path, "source.properties.reports.t");
    }

    #[test]
    fn metric_values_are_typed() {
        assert_eq!(metric_value("42", "TYPE_INTEGER").unwrap(), json!(42));
        assert_eq!(metric_value("1.5", "TYPE_SECONDS").unwrap(), json!(1.5));
        assert_eq!(
            metric_value("1234.5678912", "TYPE_CURRENCY").unwrap(),
            json!("1234.567891")
        );
        assert_eq!(
            metric_value("1.5E3", "TYPE_CURRENCY").unwrap(),
            json!("1500")
        );
        assert_eq!(
            metric_value("-0.25", "TYPE_CURRENCY").unwrap(),
            json!("-0.25")
        );
        assert!(metric_value("abc", "TYPE_INTEGER").is_err());
        assert_eq!(metric_value("", "TYPE_INTEGER").unwrap(), Value::Null);
    }

    #[test]
    fn a_window_is_the_days_whose_midnight_it_holds() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let w = Window {
            start: Some(t("2026-02-01T00:00:00Z")),
            end: t("2026-02-03T00:00:00Z"),
        };
        assert_eq!(
            Ga4Source::days(&w),
            Some((d("2026-02-02"), d("2026-02-03")))
        );
        let w = Window {
            start: Some(t("2026-02-01T10:00:00Z")),
            end: t("2026-02-01T23:00:00Z"),
        };
        assert_eq!(Ga4Source::days(&w), None);
    }
}
