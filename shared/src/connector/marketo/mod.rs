//! The `marketo` connector: leads and activities through Marketo's bulk extract API.
//!
//! ```yaml
//! source:
//!   connector: marketo
//!   profile: marketo     # {"type": "oauth2_client_credentials",
//!                        #  "token_url": "https://123-ABC-456.mktorest.com/identity/oauth/token",
//!                        #  "client_id": "…", "client_secret": "…", "hosts": ["123-ABC-456.mktorest.com"]}
//!   entity: leads        # leads | activities
//!   properties:
//!     munchkin_id: 123-ABC-456           # https://123-ABC-456.mktorest.com (or base_url)
//!     fields: [id, email, firstName, lastName, createdAt, updatedAt]   # leads; default every field
//!     activity_type_ids: [1, 6, 12]      # activities; default every type
//!     poll_seconds: 30                   # between job status checks
//!     max_wait_minutes: 120              # a job still queued after this fails the read
//!     history_start: 2020-01-01T00:00:00Z   # where complete reads start
//!     file_part_bytes: 8388608           # the file is read in Range parts of this size
//!   incremental: { field: updatedAt }    # leads: updatedAt | createdAt; activities: activityDate
//! ```
//!
//! Vendor documentation this follows:
//! - Bulk extract (create a job, enqueue it, poll its status, fetch the file; at most 2 jobs
//!   export at once and 10 are queued, shared by every integration of the instance; files are
//!   kept 7 days; 500 MB per day, reset at midnight US Central; `createdAt`/`updatedAt` ranges of
//!   31 days at most; error 1029 for a full queue or the daily quota; 1035 where the
//!   subscription has no `updatedAt` filter): <https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/bulk-extract/bulk-extract>
//! - Leads (`POST /bulk/v1/leads/export/create.json` with `fields`, `format: CSV` and one filter
//!   of `createdAt`/`updatedAt` `{startAt, endAt}`, ISO 8601 without milliseconds):
//!   <https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/bulk-extract/bulk-lead-extract>
//! - Activities (filter `createdAt` required, `activityTypeIds` optional; columns `marketoGUID`,
//!   `leadId`, `activityDate`, `activityTypeId`, `campaignId`, `primaryAttributeValueId`,
//!   `primaryAttributeValue`, `attributes` as JSON text):
//!   <https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/bulk-extract/bulk-activity-extract>
//! - Lead fields, `GET /rest/v1/leads/describe2.json` (`name`, `dataType`):
//!   <https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/lead-database/leads>
//! - Errors: HTTP 200 with `success: false` and `errors: [{code, message}]`; 601/602 access
//!   token invalid/expired (re-authenticate), 606 rate limit (100 calls per 20 s), 615
//!   concurrency (10), 607 daily quota, 604/608/611/713 transient:
//!   <https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/error-codes>
//! - Authentication: `<Identity URL>/oauth/token` with `grant_type=client_credentials` (GET or
//!   POST), the token sent as `Authorization: Bearer`; a token is handed out again until it
//!   expires (`expires_in` is what is left of it):
//!   <https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/authentication>
//!
//! How reading works:
//! - A window `(start, end]` becomes export jobs of at most 31 days each, `[start floored to the
//!   second, …]`, each next job starting one second after the previous one ends (Marketo times
//!   have second precision and the ranges are inclusive); records at exactly `start` are
//!   dropped client-side. One job at a time: create, enqueue, poll every `poll_seconds`, then
//!   the file is read in `Range` parts of a few megabytes, whole CSV records only (a quoted
//!   field may hold a line break), so a large file is staged over several pages and chunks
//!   without holding it in memory.
//! - Marketo answers errors inside HTTP 200 bodies: 601/602 refresh the token once and send
//!   again; 606/615/604/608/611/713 back off and retry (`http.max_retries`); 607 and a
//!   quota-exhausted 1029 end the chunk `Throttled` until midnight US Central; a full queue
//!   (1029) ends it `Throttled` for a minute; 1035 names `source.incremental.field`.
//! - The CSV writes `null` for empty values; values are typed from `describe2`'s `dataType`
//!   (currency as decimal (38, 6), never float).
//! - A job whose status is `Failed` or `Cancelled` is created again (twice at most).

use super::auth::Authenticator;
use super::http::{HttpClient, HttpRequest, HttpResponse, HttpSettings};
use super::normalize::{self, fields};
use super::*;
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use serde_json::{json, Map, Value};

mod config;
mod source;
mod types;
pub use config::*;
pub use source::*;
pub use types::*;

/// The `marketo` connector in the [registry](super::registry).
pub static CONNECTOR: super::registry::Connector = super::registry::Connector {
    name: "marketo",
    appflow_type: Some("Marketo"),
    needs_profile: true,
    oauth_client_auth: super::auth::ClientAuth::Body,
    auth_kinds: &["oauth2_client_credentials"],
    consent: None,
    static_description: false,
    last_modified: &[("activities", "activityDate"), ("*", "updatedAt")],
    example_host: "123-abc-456.mktorest.com",
    probe_entity: None,
    account_properties: None,
    api_host_property: super::registry::ApiHostProperty::None,
    validate,
    build: |source, profile| {
        let auth = super::registry::require(profile, "marketo", "its OAuth client credentials")?
            .authenticator()?;
        Ok(Box::new(MarketoSource::new(&source.properties, auth)?))
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
        assert!(validate("leads", &props(json!({"munchkin_id": "123-ABC-456"}))).is_empty());
        let e = validate("programs", &props(json!({"munchkin_id": "123-ABC-456"})));
        assert_eq!(e[0].path, "source.entity");
        let e = validate("leads", &props(json!({"munchkin_id": "https://x"})));
        assert_eq!(e[0].path, "source.properties.munchkin_id");
        let e = validate(
            "activities",
            &props(json!({"munchkin_id": "1-A-2", "fields": ["email"]})),
        );
        assert_eq!(e[0].path, "source.properties.fields");
        let e = validate(
            "leads",
            &props(json!({"munchkin_id": "1-A-2", "poll_seconds": 0})),
        );
        assert_eq!(e[0].path, "source.properties.poll_seconds");
    }

    #[test]
    fn windows_split_into_inclusive_31_day_ranges() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let s = slices(t("2026-01-01T00:00:00.500Z"), t("2026-03-15T12:00:00.250Z"));
        assert_eq!(s[0].0, t("2026-01-01T00:00:00Z"));
        assert_eq!(s[0].1, t("2026-02-01T00:00:00Z"));
        assert_eq!(s[1].0, t("2026-02-01T00:00:01Z"));
        assert_eq!(s.last().unwrap().1, t("2026-03-15T12:00:01Z"));
        for (lo, hi) in &s {
            assert!(*hi - *lo <= ChronoDuration::days(31));
        }
        for w in s.windows(2) {
            assert_eq!(w[1].0, w[0].1 + ChronoDuration::seconds(1));
        }
    }

    #[test]
    fn csv_parts_keep_only_whole_records() {
        let file = b"id,note\n1,\"a\nb\"\n2,plain\n3,last\n";
        // A part that ends inside the quoted field of record 1.
        let (h, rows, used) = MarketoSource::parse_part(&file[..12], None, false).unwrap();
        assert_eq!(h, ["id", "note"]);
        assert!(rows.is_empty());
        assert_eq!(used, 8);
        let (_, rows, used2) =
            MarketoSource::parse_part(&file[8..24], Some(h.clone()), false).unwrap();
        assert_eq!(rows, [vec!["1".to_string(), "a\nb".to_string()]]);
        let (_, rows, _) =
            MarketoSource::parse_part(&file[8 + used2 as usize..], Some(h), true).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            MarketoSource::typed("null", &FieldType::Integer).unwrap(),
            Value::Null
        );
        assert_eq!(
            MarketoSource::typed(
                "12.50",
                &FieldType::Decimal {
                    precision: 38,
                    scale: 6
                }
            )
            .unwrap(),
            json!("12.50")
        );
    }

    #[test]
    fn quotas_reset_at_midnight_central() {
        let now = Utc.with_ymd_and_hms(2026, 2, 1, 5, 0, 0).unwrap(); // 23:00 CST
        assert_eq!(until_central_midnight(now).as_secs(), 3600);
    }
}
