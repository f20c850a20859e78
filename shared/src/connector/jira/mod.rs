//! The `jira` connector: Jira Cloud issues (JQL `updated` windows) and their changelogs.
//!
//! ```yaml
//! source:
//!   connector: jira
//!   profile: jira        # API token: {"type": "basic", "username": "me@acme.com", "password": "<API token>",
//!                        #             "hosts": ["acme.atlassian.net"]}
//!                        # OAuth 2.0 (3LO): {"type": "oauth2_refresh_token",
//!                        #   "token_url": "https://auth.atlassian.com/oauth/token", …,
//!                        #   "hosts": ["api.atlassian.com"]} with base_url
//!                        #   https://api.atlassian.com/ex/jira/<cloud id>
//!   entity: issues       # issues | issue_changelogs
//!   properties:
//!     site: acme         # https://acme.atlassian.net (or base_url)
//!     jql: project = OPS # optional: ANDed with the window
//!     fields: [summary, status, assignee, customfield_10016]   # default: every navigable field
//!     page_size: 100
//!     time_zone: Europe/Berlin   # default: the profile user's time zone (GET /rest/api/3/myself)
//!   incremental: { field: updated }
//! ```
//!
//! Vendor documentation this follows:
//! - Enhanced JQL search, `POST /rest/api/3/search/jql` (`jql`, `fields`, `maxResults`,
//!   `nextPageToken`; the response's `nextPageToken` is absent on the last page; a query must be
//!   bounded; fewer issues than `maxResults` come back when many fields are asked for). The old
//!   `startAt` search `/rest/api/3/search` is removed:
//!   <https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-search/#api-rest-api-3-search-jql-post>,
//!   <https://confluence.atlassian.com/display/JIRAKB/Run+JQL+search+query+using+Jira+Cloud+REST+API>
//! - JQL date fields: `"yyyy/MM/dd HH:mm"` (minute precision), interpreted in the *searching
//!   user's* time zone: <https://support.atlassian.com/jira-software-cloud/docs/jql-fields/#Updated>
//! - The user's time zone: `GET /rest/api/3/myself` (`timeZone`):
//!   <https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-myself/>
//! - Field metadata, `GET /rest/api/3/field` (`id`, `name`, `navigable`, `schema.type`):
//!   <https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-fields/>
//! - Changelogs, `GET /rest/api/3/issue/{id}/changelog` (`startAt`, `maxResults` ≤ 100, `isLast`):
//!   <https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issues/#api-rest-api-3-issue-issueidorkey-changelog-get>
//! - Rate limiting: 429 with `Retry-After` (seconds), also on some 503s:
//!   <https://developer.atlassian.com/cloud/jira/platform/rate-limiting/>
//! - Basic auth with an API token; OAuth 2.0 (3LO) through `api.atlassian.com/ex/jira/{cloudid}`:
//!   <https://developer.atlassian.com/cloud/jira/platform/basic-auth-for-rest-apis/>,
//!   <https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/>
//!
//! How reading works:
//! - **Windows in JQL have minute precision and the user's time zone.** A window `(start, end]`
//!   becomes `updated >= "<start floored to the minute>" AND updated < "<end floored + 1 minute>"`
//!   written in the profile user's time zone (or `time_zone`), one hour wider where a daylight-
//!   saving change makes the local time ambiguous; the exact `(start, end]` is then applied to
//!   each issue's `updated` (milliseconds) client-side, so the issues of a boundary minute are
//!   read by both neighbouring windows' queries and delivered by exactly one.
//! - **Pages are time slices, not tokens**: the query is ordered by `updated` and after each page
//!   the next query starts at the minute of the latest `updated` read, issues already read at
//!   that version (`id@updated`) skipped; `nextPageToken` is followed only while a page does not
//!   leave its starting minute. An issue edited during the read leaves its place in the ordered
//!   result (its new `updated` is later); a token's position would shift and skip an issue that
//!   was never read; a slice restarts from what was read, so nothing is skipped and the edited
//!   issue is read at its new version by this run or the next.
//! - **Unknown field names are silently ignored** by Jira: `fields` is checked against
//!   `/rest/api/3/field` first; values are typed from `schema.type` (`number` float, `datetime`
//!   timestamp — Jira writes `+0000` offsets — `date`, `string`, arrays of strings as lists,
//!   objects such as users and statuses as JSON text).
//! - `issue_changelogs`: for every issue updated since the window start, its changelog pages;
//!   histories whose `created` is in the window are delivered. An issue edited while the run
//!   pages can be listed again, so its histories can come twice: `id` is the history's key.

use super::auth::Authenticator;
use super::http::{HttpClient, HttpRequest, HttpResponse, HttpSettings};
use super::normalize::{self, fields};
use super::*;
use chrono::{DateTime, Duration as ChronoDuration, LocalResult, TimeZone, Timelike, Utc};
use serde_json::{json, Map, Value};
use std::collections::HashSet;

mod config;
mod source;
mod types;
pub use config::*;
pub use source::*;
pub use types::*;

/// How `ferry profiles connect` runs the OAuth consent. Atlassian (the `jira` connector), OAuth 2.0 (3LO): fixed hosts (`--host` only for a
/// stand-in server), `audience=api.atlassian.com` and `prompt=consent` on the authorize
/// request, `offline_access` for a refresh token (rotating), the code redeemed with a JSON body
/// holding the client secret. The API is `api.atlassian.com/ex/jira/<cloud id>`: after the
/// exchange `ferry profiles connect` asks `/oauth/token/accessible-resources` for the site.
pub static CONSENT: super::consent::Consent = super::consent::Consent {
    authorize: "https://auth.atlassian.com/authorize",
    token: "https://auth.atlassian.com/oauth/token",
    api_host: Some("api.atlassian.com"),
    default_host: Some("auth.atlassian.com"),
    host_hint: "auth.atlassian.com (Atlassian's own; another host only for a stand-in server)",
    scopes: &["read:jira-work", "read:jira-user", "offline_access"],
    scope_param: "scope",
    scope_separator: " ",
    pkce: false,
    body: super::consent::TokenBody::Json,
    shape: super::consent::TokenShape::Standard,
    redirect_host: "localhost",
    extra: &[("audience", "api.atlassian.com"), ("prompt", "consent")],
    client_auth: super::auth::ClientAuth::Body,
    needs_client_secret: true,
    docs: "https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/",
};

/// The `jira` connector in the [registry](super::registry). AppFlow reaches Jira Cloud only
/// through a custom connector, so no `connectorType` maps here.
pub static CONNECTOR: super::registry::Connector = super::registry::Connector {
    name: "jira",
    appflow_type: None,
    needs_profile: true,
    oauth_client_auth: super::auth::ClientAuth::Body,
    auth_kinds: &["basic", "bearer", "oauth2_refresh_token"],
    consent: Some(&CONSENT),
    static_description: false,
    last_modified: &[("*", "updated")],
    example_host: "acme.atlassian.net",
    probe_entity: None,
    account_properties: None,
    api_host_property: super::registry::ApiHostProperty::TokenSite,
    validate,
    build: |source, profile| {
        let auth = super::registry::require(profile, "jira", "its credentials")?.authenticator()?;
        Ok(Box::new(JiraSource::new(&source.properties, auth)?))
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
        assert!(validate("issues", &props(json!({"site": "acme"}))).is_empty());
        let e = validate("sprints", &props(json!({"site": "acme"})));
        assert_eq!(e[0].path, "source.entity");
        let e = validate("issues", &props(json!({"site": "acme.atlassian.net"})));
        assert_eq!(e[0].path, "source.properties.site");
        let e = validate(
            "issues",
            &props(json!({"site": "acme", "jql": "project = X ORDER BY created"})),
        );
        assert_eq!(e[0].path, "source.properties.jql");
        let e = validate(
            "issues",
            &props(json!({"site": "acme", "time_zone": "Mars/Base"})),
        );
        assert_eq!(e[0].path, "source.properties.time_zone");
        let e = validate(
            "issues",
            &props(json!({"site": "acme", "fields": ["summary", "*all"]})),
        );
        assert_eq!(e[0].path, "source.properties.fields[1]");
    }

    #[test]
    fn jql_times_are_minutes_in_the_users_zone() {
        let t = DateTime::parse_from_rfc3339("2026-02-01T10:15:42.500Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(jql_time(t, chrono_tz::UTC, false), "2026/02/01 10:15");
        assert_eq!(
            jql_time(t, chrono_tz::Asia::Kolkata, false),
            "2026/02/01 15:45"
        );
        // 2026-11-01 01:30 happens twice in New York: widened by an hour.
        let t = DateTime::parse_from_rfc3339("2026-11-01T05:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            jql_time(t, chrono_tz::America::New_York, false),
            "2026/11/01 00:30"
        );
        assert_eq!(
            jql_time(t, chrono_tz::America::New_York, true),
            "2026/11/01 02:30"
        );
        assert_eq!(
            jira_time("2026-02-01T10:15:30.123+0530").map(normalize::rfc3339),
            Some("2026-02-01T04:45:30.123Z".to_string())
        );
    }
}
