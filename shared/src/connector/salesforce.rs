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
use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

pub const DEFAULT_API_VERSION: &str = "v62.0";
const LOGIN_URL: &str = "https://login.salesforce.com";
/// SOQL allows five levels of child-to-parent relationships (`Account.Owner.Manager.Name`).
const MAX_RELATIONSHIP_DEPTH: usize = 5;
const SANDBOX_LOGIN_URL: &str = "https://test.salesforce.com";

/// Which API reads the records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiChoice {
    /// REST up to `bulk_threshold` records in the window, Bulk API 2.0 above.
    #[default]
    Auto,
    Rest,
    Bulk,
}

/// `source.properties` of a `salesforce` flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceConfig {
    #[serde(default = "d::api_version")]
    pub api_version: String,
    /// The API host; default: the profile's `instance_url` (from the token response).
    #[serde(default)]
    pub instance_url: Option<String>,
    /// Use the sandbox login host when the profile has no `token_url`.
    #[serde(default)]
    pub sandbox: bool,
    /// Login host (My Domain) when the profile has no `token_url`.
    #[serde(default)]
    pub login_url: Option<String>,
    /// Fields to read (API names; compound fields by their compound name). Default: all.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// Read deleted and archived records too (`queryAll`), with `IsDeleted`.
    #[serde(default)]
    pub include_deleted: bool,
    #[serde(default)]
    pub api: ApiChoice,
    #[serde(default = "d::bulk_threshold")]
    pub bulk_threshold: u64,
    /// Between Bulk job status polls.
    #[serde(default = "d::bulk_poll_ms")]
    pub bulk_poll_ms: u64,
    /// How long one page call waits for a Bulk job before handing back (the next call polls on).
    #[serde(default = "d::bulk_wait_seconds")]
    pub bulk_wait_seconds: u64,
    #[serde(default)]
    pub http: HttpSettings,
}

mod d {
    pub fn api_version() -> String {
        super::DEFAULT_API_VERSION.into()
    }
    pub fn bulk_threshold() -> u64 {
        100_000
    }
    pub fn bulk_poll_ms() -> u64 {
        2_000
    }
    pub fn bulk_wait_seconds() -> u64 {
        60
    }
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

impl SalesforceConfig {
    pub fn parse(props: &Map<String, Value>) -> Result<Self, SourceError> {
        let cfg: SalesforceConfig = parse_properties(props, None)?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), SourceError> {
        let v = self
            .api_version
            .strip_prefix('v')
            .and_then(|n| n.parse::<f64>().ok());
        match v {
            None => {
                return Err(SourceError::config(
                    "source.properties.api_version",
                    format!(
                        "'{}' is not an API version; write it like v62.0",
                        self.api_version
                    ),
                ))
            }
            Some(n) if n < 47.0 => {
                return Err(SourceError::config(
                    "source.properties.api_version",
                    "must be v47.0 or later (Bulk API 2.0 query jobs)",
                ))
            }
            _ => {}
        }
        for (f, u) in [
            ("instance_url", &self.instance_url),
            ("login_url", &self.login_url),
        ] {
            if let Some(u) = u {
                let ok = url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
                if !ok {
                    return Err(SourceError::config(
                        format!("source.properties.{f}"),
                        format!("'{u}' is not an absolute http(s) URL, e.g. https://mycompany.my.salesforce.com"),
                    ));
                }
            }
        }
        if let Some(fs) = &self.fields {
            if fs.is_empty() {
                return Err(SourceError::config(
                    "source.properties.fields",
                    "list at least one field, or leave `fields` out to read them all",
                ));
            }
            for (i, f) in fs.iter().enumerate() {
                let segs: Vec<&str> = f.split('.').collect();
                if segs.len() > MAX_RELATIONSHIP_DEPTH + 1 || !segs.iter().all(|s| is_name(s)) {
                    return Err(SourceError::config(
                        format!("source.properties.fields[{i}]"),
                        format!("'{f}' is not a field API name (letters, digits and _, e.g. Name or Region__c) or a relationship path of at most {MAX_RELATIONSHIP_DEPTH} relationships (e.g. Owner.Name)"),
                    ));
                }
            }
        }
        if self.bulk_threshold == 0 {
            return Err(SourceError::config(
                "source.properties.bulk_threshold",
                "must be ≥ 1 (use api: bulk to always use Bulk API 2.0)",
            ));
        }
        if self.bulk_poll_ms == 0 {
            return Err(SourceError::config(
                "source.properties.bulk_poll_ms",
                "must be ≥ 1",
            ));
        }
        self.http.validate("source.properties.http")
    }
}

pub(super) fn validate(entity: &str, props: &Map<String, Value>) -> Vec<crate::flow::FieldError> {
    let mut errs = vec![];
    if !is_name(entity) {
        errs.push(crate::flow::FieldError::new(
            "source.entity",
            format!("'{entity}' is not an sObject API name, e.g. Account or Invoice__c"),
        ));
    }
    match SalesforceConfig::parse(props) {
        Ok(_) => {}
        Err(SourceError::Config { field, message }) => {
            errs.push(crate::flow::FieldError::new(field, message))
        }
        Err(e) => errs.push(crate::flow::FieldError::new(
            "source.properties",
            e.to_string(),
        )),
    }
    errs
}

/// How a value of a Salesforce field type is written in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    Float,
    /// Money and percentages: exact decimals with the describe's precision and scale.
    Decimal {
        precision: u8,
        scale: i8,
    },
    Boolean,
    Timestamp,
    Date,
}

impl Kind {
    /// The kind of a describe field (`type`, and `precision`/`scale` for currency and percent).
    fn of_field(f: &Value) -> Option<Kind> {
        let t = f.get("type").and_then(Value::as_str)?;
        match t {
            "currency" | "percent" => {
                // Salesforce: precision = total digits, scale = digits after the point
                // (currency defaults to 18, 2). Arrow's Decimal128 holds up to 38 digits.
                let p = f.get("precision").and_then(Value::as_u64).unwrap_or(0);
                let sc = f.get("scale").and_then(Value::as_u64).unwrap_or(2).min(37);
                let p = if p == 0 { 18 } else { p }.clamp(sc + 1, 38);
                Some(Kind::Decimal {
                    precision: p as u8,
                    scale: sc as i8,
                })
            }
            other => Kind::of(other),
        }
    }

    /// `None`: a field the connector leaves out (base64), or a compound (handled apart).
    fn of(sf_type: &str) -> Option<Kind> {
        Some(match sf_type {
            "boolean" => Kind::Boolean,
            "int" | "long" => Kind::Integer,
            "currency" | "percent" => Kind::Decimal {
                precision: 18,
                scale: 2,
            },
            "double" => Kind::Float,
            "date" => Kind::Date,
            "datetime" => Kind::Timestamp,
            "base64" | "address" | "location" => return None,
            // id, reference, string, picklist, multipicklist, combobox, textarea, phone, url,
            // email, encryptedstring, time, anyType and types added later: text.
            _ => Kind::Text,
        })
    }

    fn field_type(self) -> FieldType {
        match self {
            Kind::Text => FieldType::String,
            Kind::Integer => FieldType::Integer,
            Kind::Float => FieldType::Float,
            Kind::Decimal { precision, scale } => FieldType::Decimal { precision, scale },
            Kind::Boolean => FieldType::Boolean,
            Kind::Timestamp => FieldType::Timestamp,
            Kind::Date => FieldType::Date,
        }
    }
}

/// One output column and the SOQL fields it is read from.
#[derive(Debug, Clone)]
enum Column {
    Plain {
        name: String,
        kind: Kind,
    },
    /// An address or location: a struct of its components.
    Compound {
        name: String,
        parts: Vec<(String, String, Kind)>,
    },
    /// A field of a related record (`Owner.Name`): a flat column named by its path, typed from
    /// the related object's describe; null when a relationship on the way is empty.
    Related {
        name: String,
        path: Vec<String>,
        kind: Kind,
    },
}

/// What `describe` found, shaped for reading.
#[derive(Debug, Clone)]
struct Described {
    desc: EntityDescription,
    columns: Vec<Column>,
    /// Every SOQL field, in column order.
    soql_fields: Vec<String>,
    /// Field API name -> kind, for the window field.
    kinds: HashMap<String, Kind>,
}

/// Subfield name of a compound component: `BillingStreet` of `BillingAddress` -> `street`,
/// `Loc__Latitude__s` of `Loc__c` -> `latitude`.
fn sub_name(compound: &str, component: &str) -> String {
    let prefix = compound
        .strip_suffix("__c")
        .map(|p| format!("{p}__"))
        .unwrap_or_else(|| {
            compound
                .strip_suffix("Address")
                .unwrap_or(compound)
                .to_string()
        });
    let rest = component.strip_prefix(prefix.as_str()).unwrap_or(component);
    let rest = rest.strip_suffix("__s").unwrap_or(rest);
    let mut c = rest.chars();
    match c.next() {
        Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
        None => component.to_string(),
    }
}

/// Where the pages of a read come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "api", rename_all = "snake_case")]
enum Cursor {
    /// The next `nextRecordsUrl` (a path on the instance).
    Rest { next: String },
    /// A Bulk API 2.0 query job; `locator` is the next result set (`None`: the first).
    Bulk {
        job: String,
        version: String,
        #[serde(default)]
        complete: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        locator: Option<String>,
    },
}

/// The `salesforce` connector bound to one flow.
pub struct SalesforceSource {
    cfg: SalesforceConfig,
    http: HttpClient,
    incremental_field: Option<String>,
    described: tokio::sync::Mutex<HashMap<String, Described>>,
    raw_describes: tokio::sync::Mutex<HashMap<String, Arc<Vec<Value>>>>,
}

/// Salesforce error bodies: `[{"message": …, "errorCode": …}]`.
fn error_hook(status: u16, body: &[u8]) -> Option<SourceError> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let first = match &v {
        Value::Array(a) => a.first()?.clone(),
        Value::Object(_) => v.clone(),
        _ => return None,
    };
    let code = first.get("errorCode").and_then(Value::as_str)?;
    let message = first.get("message").and_then(Value::as_str).unwrap_or("");
    match code {
        "REQUEST_LIMIT_EXCEEDED" => Some(SourceError::Throttled {
            message: format!(
                "Salesforce answered {status} REQUEST_LIMIT_EXCEEDED ({message}): the org's API request limit is used up; the chunk ends here and is retried later"
            ),
            retry_after: None,
        }),
        "INVALID_FIELD" | "MALFORMED_QUERY" | "INVALID_TYPE" | "INVALID_QUERY_FILTER_OPERATOR"
        | "INVALID_QUERY_LOCATOR" | "QUERY_TIMEOUT" => Some(SourceError::Rejected {
            message: format!("Salesforce refused the query with {status} {code}: {message}"),
        }),
        _ => None,
    }
}

/// SOQL dateTime literal of a lower bound `t` (records `> t`), widened to whole seconds.
fn soql_lower(field: &str, t: DateTime<Utc>) -> String {
    let s = t.trunc_subsecs(0);
    let lit = s.format("%Y-%m-%dT%H:%M:%SZ");
    if s == t {
        format!("{field} > {lit}")
    } else {
        format!("{field} >= {lit}")
    }
}

/// SOQL dateTime literal of an upper bound `t` (records `<= t`), widened to whole seconds.
fn soql_upper(field: &str, t: DateTime<Utc>) -> String {
    let s = t.trunc_subsecs(0);
    if s == t {
        format!("{field} <= {}", s.format("%Y-%m-%dT%H:%M:%SZ"))
    } else {
        let up = s + chrono::Duration::seconds(1);
        format!("{field} < {}", up.format("%Y-%m-%dT%H:%M:%SZ"))
    }
}

/// A datetime as Salesforce writes it: REST `…000+0000`, Bulk `…000Z`, or RFC 3339.
fn parse_sf_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn canonical_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A REST JSON value or a Bulk CSV cell as the output value of its kind.
pub(super) fn typed(kind: Kind, field: &str, v: Cell<'_>) -> Result<Value, String> {
    let text = match v {
        Cell::Json(Value::Null) => return Ok(Value::Null),
        Cell::Json(Value::String(s)) | Cell::Csv(s) if s.is_empty() => return Ok(Value::Null),
        Cell::Json(Value::String(s)) | Cell::Csv(s) => s.as_str(),
        Cell::Json(other) => {
            return match (kind, other) {
                (Kind::Boolean, Value::Bool(_)) => Ok(other.clone()),
                (Kind::Integer, Value::Number(n)) => n
                    .as_i64()
                    .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                    .map(Value::from)
                    .ok_or_else(|| format!("{field}: a number that is not an integer")),
                (Kind::Float, Value::Number(n)) => Ok(Value::from(n.as_f64().unwrap_or(f64::NAN))),
                (Kind::Decimal { precision, scale }, Value::Number(n)) => {
                    decimal(&n.to_string(), precision, scale).ok_or_else(|| {
                        format!("{field}: a number does not fit decimal({precision}, {scale})")
                    })
                }
                (Kind::Text, v) => Ok(Value::String(v.to_string())),
                // The value itself stays out of the message.
                (k, v) => Err(format!(
                    "{field}: a JSON {} is not a {k:?} value",
                    match v {
                        Value::Object(_) => "object",
                        Value::Array(_) => "array",
                        Value::Number(_) => "number",
                        _ => "value",
                    }
                )),
            };
        }
    };
    // Record values stay out of messages: only the value's length is named.
    let bad = || {
        format!(
            "{field}: a value of {} characters is not a {kind:?} value",
            text.chars().count()
        )
    };
    Ok(match kind {
        Kind::Text => Value::String(text.to_string()),
        Kind::Integer => Value::from(text.parse::<i64>().map_err(|_| bad())?),
        Kind::Float => Value::from(text.parse::<f64>().map_err(|_| bad())?),
        Kind::Decimal { precision, scale } => decimal(text, precision, scale).ok_or_else(bad)?,
        Kind::Boolean => match text {
            "true" | "TRUE" | "True" => Value::Bool(true),
            "false" | "FALSE" | "False" => Value::Bool(false),
            _ => return Err(bad()),
        },
        Kind::Timestamp => Value::String(canonical_time(parse_sf_time(text).ok_or_else(bad)?)),
        Kind::Date => Value::String(
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| bad())?
                .format("%Y-%m-%d")
                .to_string(),
        ),
    })
}

/// A decimal's exact text at `scale` (`1500.5` at scale 2 is `"1500.50"`), parsed by Arrow's
/// decimal parser (the one that later reads it into Decimal128); `None` if it is not a number
/// or does not fit `precision`.
fn decimal(text: &str, precision: u8, scale: i8) -> Option<Value> {
    use arrow::datatypes::{Decimal128Type, DecimalType};
    let v = arrow::compute::kernels::cast_utils::parse_decimal::<Decimal128Type>(
        text.trim(),
        precision,
        scale,
    )
    .ok()?;
    Some(Value::String(Decimal128Type::format_decimal(
        v, precision, scale,
    )))
}

/// JSON text with every number literal turned into a string literal of the same text, so that
/// money survives parsing exactly: serde_json reads numbers as 64-bit floats, which cannot hold
/// `98765432109876.54`. Strings (with their escapes) are copied untouched.
pub fn numbers_as_text(json: &str) -> String {
    let b = json.as_bytes();
    let mut out = String::with_capacity(json.len() + 64);
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                out.push_str(&json[last..start]);
                out.push('"');
                out.push_str(&json[start..i]);
                out.push('"');
                last = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&json[last.min(json.len())..]);
    out
}

pub(super) enum Cell<'a> {
    Json(&'a Value),
    Csv(&'a String),
}

/// RFC 4180 CSV as Bulk API 2.0 writes it: a header row, `"` quoting with `""` escapes,
/// quoted commas and line breaks, LF or CRLF line endings (read by the `csv` crate). A body cut
/// inside a quoted value — an odd number of `"` — is refused as truncated instead of read as
/// a shorter last record.
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    if text.bytes().filter(|b| *b == b'"').count() % 2 == 1 {
        return Err("a quoted value is not closed (truncated CSV?)".into());
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    reader
        .records()
        .map(|r| {
            r.map(|rec| rec.iter().map(str::to_string).collect())
                .map_err(|e| format!("not CSV: {e}"))
        })
        .collect()
}

impl SalesforceSource {
    /// Build from the flow's properties and the profile's secret. The secret is an
    /// `oauth2_refresh_token` credential; `type`, `token_url` (from `sandbox`/`login_url`) and
    /// `client_auth: body` are filled in when absent.
    pub fn new(
        props: &Map<String, Value>,
        incremental_field: Option<&str>,
        profile: &str,
        secret: &crate::ports::Secret,
        secrets: Arc<dyn crate::ports::SecretStore>,
    ) -> Result<Self, SourceError> {
        let cfg = SalesforceConfig::parse(props)?;
        let mut raw = secret.expose().as_object().cloned().ok_or_else(|| SourceError::Auth {
            profile: profile.into(),
            message: "the secret must be a JSON object: {\"client_id\": …, \"client_secret\": …, \"refresh_token\": …}".into(),
        })?;
        raw.entry("type")
            .or_insert_with(|| "oauth2_refresh_token".into());
        if raw.get("type").and_then(Value::as_str) == Some("oauth2_refresh_token")
            && !raw.contains_key("token_url")
        {
            let host = cfg.login_url.clone().unwrap_or_else(|| {
                (if cfg.sandbox {
                    SANDBOX_LOGIN_URL
                } else {
                    LOGIN_URL
                })
                .to_string()
            });
            raw.insert(
                "token_url".into(),
                format!("{}/services/oauth2/token", host.trim_end_matches('/')).into(),
            );
        }
        let secret = crate::ports::Secret::new(Value::Object(raw));
        let auth = Authenticator::from_secret_with(
            profile,
            &secret,
            secrets,
            super::auth::ClientAuth::Body,
        )?;
        if let Some(login) = &cfg.login_url {
            // The refresh token goes to the flow's login URL: like any request carrying the
            // profile's credentials, only to a host the profile names (docs/security.md).
            auth.check_destination(login)?;
        }
        Self::with_auth(cfg, incremental_field, auth)
    }

    pub fn with_auth(
        cfg: SalesforceConfig,
        incremental_field: Option<&str>,
        auth: Authenticator,
    ) -> Result<Self, SourceError> {
        let http = HttpClient::new(cfg.http.clone(), Arc::new(auth), "salesforce")?
            .with_error_hook(error_hook);
        Ok(SalesforceSource {
            cfg,
            http,
            incremental_field: incremental_field.map(String::from),
            described: Default::default(),
            raw_describes: Default::default(),
        })
    }

    /// The authenticator (for tests: refresh counts).
    pub fn auth(&self) -> &Authenticator {
        &self.http.auth
    }

    /// The instance URL: the flow's, else the profile's (fetching a token first if needed).
    async fn instance(&self) -> Result<String, SourceError> {
        if let Some(u) = &self.cfg.instance_url {
            return Ok(u.trim_end_matches('/').to_string());
        }
        if let Some(u) = self.http.auth.instance_url().await {
            return Ok(u.trim_end_matches('/').to_string());
        }
        // No token yet: getting one names the instance.
        let probe = reqwest::Client::new().get("http://localhost/");
        let _ = self.http.auth.apply(probe).await?;
        self.http.auth.instance_url().await.map(|u| u.trim_end_matches('/').to_string()).ok_or_else(|| {
            self.http.auth.auth_error(
                "no instance URL: the token response had no `instance_url` and neither the profile's secret nor source.properties.instance_url names one (e.g. https://mycompany.my.salesforce.com)",
            )
        })
    }

    async fn data_url(&self, rest: &str) -> Result<String, SourceError> {
        Ok(format!(
            "{}/services/data/{}/{}",
            self.instance().await?,
            self.cfg.api_version,
            rest.trim_start_matches('/')
        ))
    }

    async fn get_json(&self, req: HttpRequest) -> Result<(Value, u64), SourceError> {
        let resp = self
            .http
            .send(&req)
            .await?
            .ok_or_else(|| SourceError::Rejected {
                message: format!("{} returned no data", self.http.redact(&req.url)),
            })?;
        Ok((resp.body, resp.bytes))
    }

    async fn described(&self, entity: &str) -> Result<Described, SourceError> {
        if let Some(d) = self.described.lock().await.get(entity) {
            return Ok(d.clone());
        }
        let d = self.fetch_description(entity).await?;
        self.described
            .lock()
            .await
            .insert(entity.to_string(), d.clone());
        Ok(d)
    }

    /// The `fields` of an object's describe, read once per object.
    async fn describe_fields(&self, object: &str) -> Result<Arc<Vec<Value>>, SourceError> {
        if let Some(f) = self.raw_describes.lock().await.get(object) {
            return Ok(f.clone());
        }
        let mut req = HttpRequest::get(
            self.data_url(&format!("sobjects/{object}/describe"))
                .await?,
        );
        req.ignore_status = vec![404];
        let Some(resp) = self.http.send(&req).await? else {
            return Err(SourceError::config(
                "source.entity",
                format!("'{object}' is not an object of this Salesforce org (describe answered 404 NOT_FOUND); list them with `ferry entities FLOW`"),
            ));
        };
        let fields = resp
            .body
            .get("fields")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| SourceError::Rejected {
                message: format!("{}: the describe response has no `fields` array", resp.url),
            })?;
        let fields = Arc::new(fields);
        self.raw_describes
            .lock()
            .await
            .insert(object.to_string(), fields.clone());
        Ok(fields)
    }

    /// A relationship path of the flow's `fields` (`Owner.Name`), resolved through the
    /// describes: each step a reference field's `relationshipName` on the current object (to
    /// the first of its `referenceTo` objects), the last a plain field. The column is named by
    /// the path in the API's own casing, as Bulk API 2.0 names its CSV column.
    /// <https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_relationships_query_using.htm>
    async fn related(
        &self,
        entity: &str,
        wanted: &str,
        i: usize,
    ) -> Result<(FieldInfo, Column), SourceError> {
        let err = |why: String| {
            SourceError::config(
                format!("source.properties.fields[{i}]"),
                format!("'{wanted}': {why}"),
            )
        };
        let segs: Vec<&str> = wanted.split('.').collect();
        let mut object = entity.to_string();
        let mut path = vec![];
        for rel in &segs[..segs.len() - 1] {
            let fields = self.describe_fields(&object).await?;
            let f = fields
                .iter()
                .find(|f| {
                    f.get("relationshipName")
                        .and_then(Value::as_str)
                        .is_some_and(|r| r.eq_ignore_ascii_case(rel))
                })
                .ok_or_else(|| {
                    err(format!(
                        "{object} has no relationship named {rel} (a lookup's relationship name, e.g. Owner for OwnerId; custom ones end in __r)"
                    ))
                })?;
            path.push(
                f.get("relationshipName")
                    .and_then(Value::as_str)
                    .unwrap_or(rel)
                    .to_string(),
            );
            object = f
                .get("referenceTo")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    err(format!(
                        "the relationship {rel} of {object} names no object"
                    ))
                })?
                .to_string();
        }
        let last = segs[segs.len() - 1];
        let fields = self.describe_fields(&object).await?;
        let f = fields
            .iter()
            .find(|f| {
                f.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(last))
            })
            .ok_or_else(|| err(format!("{object} has no field {last}")))?;
        let kind = Kind::of_field(f).ok_or_else(|| {
            err(format!(
                "{object}.{last} is a compound or base64 field, which ferry does not read through a relationship; list its components"
            ))
        })?;
        path.push(
            f.get("name")
                .and_then(Value::as_str)
                .unwrap_or(last)
                .to_string(),
        );
        let name = path.join(".");
        let mut info = FieldInfo::new(&name, kind.field_type());
        info.label = f.get("label").and_then(Value::as_str).map(String::from);
        Ok((info, Column::Related { name, path, kind }))
    }

    async fn fetch_description(&self, entity: &str) -> Result<Described, SourceError> {
        if !is_name(entity) {
            return Err(SourceError::config(
                "source.entity",
                format!("'{entity}' is not an sObject API name, e.g. Account or Invoice__c"),
            ));
        }
        let fields = self.describe_fields(entity).await?;
        let fields = fields.as_slice();
        let s = |f: &Value, k: &str| f.get(k).and_then(Value::as_str).map(String::from);
        let mut components: HashMap<String, Vec<(String, String, Kind, bool)>> = HashMap::new();
        for f in fields {
            if let (Some(c), Some(n), Some(_)) =
                (s(f, "compoundFieldName"), s(f, "name"), s(f, "type"))
            {
                if let Some(k) = Kind::of_field(f) {
                    let nillable = f.get("nillable").and_then(Value::as_bool).unwrap_or(true);
                    components.entry(c.clone()).or_default().push((
                        sub_name(&c, &n),
                        n,
                        k,
                        nillable,
                    ));
                }
            }
        }
        let mut all: Vec<(FieldInfo, Column)> = vec![];
        let mut kinds = HashMap::new();
        for f in fields {
            let (Some(name), Some(t)) = (s(f, "name"), s(f, "type")) else {
                continue;
            };
            if s(f, "compoundFieldName").is_some() {
                continue; // read as part of its compound
            }
            let nillable = f.get("nillable").and_then(Value::as_bool).unwrap_or(true);
            let (mut info, col) = match Kind::of_field(f) {
                Some(k) => {
                    kinds.insert(name.clone(), k);
                    (
                        FieldInfo::new(&name, k.field_type()),
                        Column::Plain {
                            name: name.clone(),
                            kind: k,
                        },
                    )
                }
                None if t == "address" || t == "location" => {
                    let parts = components.remove(&name).unwrap_or_default();
                    if parts.is_empty() {
                        continue;
                    }
                    let sub = parts
                        .iter()
                        .map(|(sn, _, k, _)| FieldInfo::new(sn, k.field_type()))
                        .collect();
                    (
                        FieldInfo::new(&name, FieldType::Object { fields: sub }),
                        Column::Compound {
                            name: name.clone(),
                            parts: parts.into_iter().map(|(sn, n, k, _)| (sn, n, k)).collect(),
                        },
                    )
                }
                None => continue, // base64: not in Bulk results; REST gives a blob URL
            };
            info.nullable = nillable;
            info.label = s(f, "label");
            if name == "Id" {
                info = info.key();
            }
            if matches!(
                col,
                Column::Plain {
                    kind: Kind::Timestamp,
                    ..
                }
            ) {
                info = info.incremental();
            }
            all.push((info, col));
        }
        let chosen: Vec<(FieldInfo, Column)> = match &self.cfg.fields {
            None => all,
            Some(wanted) => {
                let mut out = vec![];
                for (i, w) in wanted.iter().enumerate() {
                    if w.contains('.') {
                        out.push(self.related(entity, w, i).await?);
                        continue;
                    }
                    match all.iter().find(|(f, _)| f.name.eq_ignore_ascii_case(w)) {
                        Some(x) => out.push(x.clone()),
                        None => {
                            let hint = fields
                                .iter()
                                .find(|f| s(f, "name").is_some_and(|n| n.eq_ignore_ascii_case(w)))
                                .map(|f| match (s(f, "compoundFieldName"), s(f, "type")) {
                                    (Some(c), _) => format!(
                                        "it is a component of {c}: list {c} (read as a struct)"
                                    ),
                                    (_, Some(t)) => format!("its type {t} cannot be read in bulk"),
                                    _ => String::new(),
                                })
                                .unwrap_or_else(|| {
                                    "Salesforce refuses unknown fields in SOQL".into()
                                });
                            return Err(SourceError::config(
                                format!("source.properties.fields[{i}]"),
                                format!(
                                    "'{w}' is not a readable field of {entity}: {hint}; fields: {}",
                                    all.iter()
                                        .map(|(f, _)| f.name.as_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            ));
                        }
                    }
                }
                // The key and the window field are always read.
                for must in ["Id"]
                    .into_iter()
                    .chain(self.incremental_field.as_deref())
                    .chain(self.cfg.include_deleted.then_some("IsDeleted"))
                {
                    if !out.iter().any(|(f, _)| f.name == must) {
                        if let Some(x) = all.iter().find(|(f, _)| f.name == must) {
                            out.push(x.clone());
                        }
                    }
                }
                out
            }
        };
        let soql_fields = chosen
            .iter()
            .flat_map(|(_, c)| match c {
                Column::Plain { name, .. } | Column::Related { name, .. } => vec![name.clone()],
                Column::Compound { parts, .. } => parts.iter().map(|(_, n, _)| n.clone()).collect(),
            })
            .collect();
        Ok(Described {
            desc: EntityDescription {
                entity: entity.into(),
                fields: chosen.iter().map(|(f, _)| f.clone()).collect(),
            },
            columns: chosen.into_iter().map(|(_, c)| c).collect(),
            soql_fields,
            kinds,
        })
    }

    /// The window field, checked to be a datetime of the object.
    fn window_field<'a>(
        &self,
        d: &Described,
        req: &'a ReadRequest,
    ) -> Result<Option<&'a str>, SourceError> {
        let (Some(f), Some(_)) = (req.incremental_field.as_deref(), &req.window) else {
            return Ok(None);
        };
        match d.kinds.get(f) {
            Some(Kind::Timestamp) => Ok(Some(f)),
            Some(k) => Err(SourceError::config(
                "source.incremental.field",
                format!("{f} is a {k:?} field; the window needs a dateTime field such as SystemModstamp or LastModifiedDate"),
            )),
            None => Err(SourceError::config(
                "source.incremental.field",
                format!("'{f}' is not a field of {}; use SystemModstamp, LastModifiedDate or another dateTime field", req.entity),
            )),
        }
    }

    fn where_clause(&self, d: &Described, req: &ReadRequest) -> Result<String, SourceError> {
        let (Some(f), Some(w)) = (self.window_field(d, req)?, req.window.as_ref()) else {
            return Ok(String::new());
        };
        let mut conds = vec![];
        if let Some(s) = w.start {
            conds.push(soql_lower(f, s));
        }
        conds.push(soql_upper(f, w.end));
        Ok(format!(" WHERE {}", conds.join(" AND ")))
    }

    /// The SOQL of a read.
    fn soql(&self, d: &Described, req: &ReadRequest) -> Result<String, SourceError> {
        Ok(format!(
            "SELECT {} FROM {}{}",
            d.soql_fields.join(", "),
            req.entity,
            self.where_clause(d, req)?
        ))
    }

    fn query_resource(&self) -> &'static str {
        if self.cfg.include_deleted {
            "queryAll"
        } else {
            "query"
        }
    }

    fn with_batch_size(&self, mut r: HttpRequest, req: &ReadRequest) -> HttpRequest {
        if let Some(n) = req.page_size {
            r.headers.push((
                "Sforce-Query-Options".into(),
                format!("batchSize={}", n.clamp(200, 2000)),
            ));
        }
        r
    }

    async fn count_window(&self, d: &Described, req: &ReadRequest) -> Result<u64, SourceError> {
        let soql = format!(
            "SELECT COUNT() FROM {}{}",
            req.entity,
            self.where_clause(d, req)?
        );
        let mut r = HttpRequest::get(self.data_url(self.query_resource()).await?);
        r.query.push(("q".into(), soql));
        let (body, _) = self.get_json(r).await?;
        body.get("totalSize")
            .and_then(Value::as_u64)
            .ok_or_else(|| SourceError::Rejected {
                message: "Salesforce answered a COUNT() query without totalSize".into(),
            })
    }

    /// Records of one page as output records, in the exact window.
    fn shape(
        &self,
        d: &Described,
        req: &ReadRequest,
        rows: impl Iterator<Item = HashMap<String, CellOwned>>,
    ) -> Result<Vec<Value>, SourceError> {
        let wf = self.window_field(d, req)?;
        let mut out = vec![];
        for (n, row) in rows.into_iter().enumerate() {
            let at = row_at(n);
            let get = |name: &str, kind: Kind| -> Result<Value, SourceError> {
                let v = match row.get(name) {
                    None => Cell::Json(&Value::Null),
                    Some(CellOwned::Json(v)) => Cell::Json(v),
                    Some(CellOwned::Csv(s)) => Cell::Csv(s),
                };
                typed(kind, name, v).map_err(|m| SourceError::Rejected {
                    message: format!("{} {at}: {m}", req.entity),
                })
            };
            let mut rec = Map::new();
            for c in &d.columns {
                match c {
                    Column::Plain { name, kind } => {
                        rec.insert(name.clone(), get(name, *kind)?);
                    }
                    Column::Related { name, path, kind } => {
                        // Bulk CSV names the column by its path; REST nests the related
                        // records (`"Owner": {"attributes": …, "Name": …}`, null when empty).
                        let v = match row.get(name) {
                            Some(_) => get(name, *kind)?,
                            None => {
                                let mut cur = match row.get(&path[0]) {
                                    Some(CellOwned::Json(v)) => Some(v),
                                    _ => None,
                                };
                                for seg in &path[1..] {
                                    cur = cur.and_then(|v| v.get(seg)).filter(|v| !v.is_null());
                                }
                                let cell = cur.unwrap_or(&Value::Null);
                                typed(*kind, name, Cell::Json(cell)).map_err(|m| {
                                    SourceError::Rejected {
                                        message: format!("{} {at}: {m}", req.entity),
                                    }
                                })?
                            }
                        };
                        rec.insert(name.clone(), v);
                    }
                    Column::Compound { name, parts } => {
                        let mut o = Map::new();
                        for (sub, src, k) in parts {
                            o.insert(sub.clone(), get(src, *k)?);
                        }
                        let v = if o.values().all(Value::is_null) {
                            Value::Null
                        } else {
                            Value::Object(o)
                        };
                        rec.insert(name.clone(), v);
                    }
                }
            }
            if let (Some(f), Some(w)) = (wf, &req.window) {
                let t = rec.get(f).and_then(Value::as_str).and_then(parse_sf_time);
                match t {
                    Some(t) if w.contains(t) => {}
                    Some(_) => continue, // the WHERE clause is widened to whole seconds
                    None => {
                        return Err(SourceError::Rejected {
                            message: format!(
                                "{} {at}: no {f} value to place it in the window",
                                req.entity
                            ),
                        })
                    }
                }
            }
            out.push(Value::Object(rec));
        }
        Ok(out)
    }

    async fn rest_page(
        &self,
        d: &Described,
        req: &ReadRequest,
        url: String,
        first: Option<String>,
    ) -> Result<Page, SourceError> {
        let mut r = HttpRequest::get(url);
        if let Some(q) = first {
            r.query.push(("q".into(), q));
        }
        let r = self.with_batch_size(r, req);
        // Read the body as text and keep every number's digits (money must stay exact).
        let resp = self
            .http
            .send_raw(&r)
            .await?
            .ok_or_else(|| SourceError::Rejected {
                message: format!("{} returned no data", self.http.redact(&r.url)),
            })?;
        let bytes = resp.bytes;
        let body: Value =
            serde_json::from_str(&numbers_as_text(resp.body.as_str().unwrap_or_default()))
                .map_err(|e| {
                    let message = format!("{}: the query response is not JSON ({e})", resp.url);
                    if e.is_eof() {
                        SourceError::Transient { message }
                    } else {
                        SourceError::Rejected { message }
                    }
                })?;
        let records = body
            .get("records")
            .and_then(Value::as_array)
            .ok_or_else(|| SourceError::Rejected {
                message: "a Salesforce query response has no `records` array".into(),
            })?;
        let rows = records.iter().map(|r| {
            r.as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| *k != "attributes")
                        .map(|(k, v)| (k.clone(), CellOwned::Json(v.clone())))
                        .collect()
                })
                .unwrap_or_default()
        });
        let records = self.shape(d, req, rows)?;
        let done = body.get("done").and_then(Value::as_bool).unwrap_or(true);
        let next = body.get("nextRecordsUrl").and_then(Value::as_str);
        let next = match (done, next) {
            (false, Some(n)) => Some(super::cursor_json(&Cursor::Rest {
                next: n.to_string(),
            })?),
            (false, None) => {
                return Err(SourceError::Rejected {
                    message: "Salesforce said the query is not done but gave no nextRecordsUrl"
                        .into(),
                })
            }
            _ => None,
        };
        Ok(Page {
            records,
            next,
            bytes,
        })
    }

    async fn bulk_create(&self, d: &Described, req: &ReadRequest) -> Result<Cursor, SourceError> {
        let mut r = HttpRequest::get(self.data_url("jobs/query").await?);
        r.method = reqwest::Method::POST;
        r.body = Some(json!({"operation": self.query_resource(), "query": self.soql(d, req)?}));
        let (body, _) = self.get_json(r).await?;
        let job = body
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| SourceError::Rejected {
                message: "Salesforce created a Bulk API 2.0 query job without an id".into(),
            })?;
        tracing::info!(entity = %req.entity, job, "Bulk API 2.0 query job created");
        Ok(Cursor::Bulk {
            job: job.into(),
            version: self.cfg.api_version.clone(),
            complete: false,
            locator: None,
        })
    }

    async fn bulk_page(
        &self,
        d: &Described,
        req: &ReadRequest,
        cursor: Cursor,
    ) -> Result<Page, SourceError> {
        let Cursor::Bulk {
            job,
            version,
            complete,
            locator,
        } = cursor
        else {
            unreachable!("bulk cursor")
        };
        let base = format!(
            "{}/services/data/{version}/jobs/query/{job}",
            self.instance().await?
        );
        if !complete {
            let started = std::time::Instant::now();
            loop {
                let (body, _) = self.get_json(HttpRequest::get(base.clone())).await?;
                match body.get("state").and_then(Value::as_str).unwrap_or("") {
                    "JobComplete" => break,
                    s @ ("Failed" | "Aborted") => {
                        return Err(SourceError::Rejected {
                            message: format!(
                                "the Bulk API 2.0 query job {job} ended {s}: {}",
                                body.get("errorMessage")
                                    .and_then(Value::as_str)
                                    .unwrap_or("no error message")
                            ),
                        })
                    }
                    _ => {}
                }
                if started.elapsed().as_secs() >= self.cfg.bulk_wait_seconds {
                    // Hand back; the next call polls on.
                    let next = Cursor::Bulk {
                        job,
                        version,
                        complete: false,
                        locator: None,
                    };
                    return Ok(Page {
                        records: vec![],
                        next: Some(super::cursor_json(&next)?),
                        bytes: 0,
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(self.cfg.bulk_poll_ms)).await;
            }
        }
        let mut r = HttpRequest::get(format!("{base}/results"));
        if let Some(n) = req.page_size {
            r.query.push(("maxRecords".into(), n.to_string()));
        }
        if let Some(l) = &locator {
            r.query.push(("locator".into(), l.clone()));
        }
        let resp = self
            .http
            .send_raw(&r)
            .await?
            .ok_or_else(|| SourceError::Rejected {
                message: format!("{} returned no data", self.http.redact(&r.url)),
            })?;
        let text = resp.body.as_str().unwrap_or_default();
        let rows = parse_csv(text).map_err(|m| SourceError::Transient {
            message: format!("{}: {m}", resp.url),
        })?;
        let mut it = rows.into_iter();
        let header = it.next().unwrap_or_default();
        let rows: Vec<HashMap<String, CellOwned>> = it
            .filter(|r| !(r.len() == 1 && r[0].is_empty()))
            .map(|r| {
                header
                    .iter()
                    .cloned()
                    .zip(r.into_iter().map(CellOwned::Csv))
                    .collect()
            })
            .collect();
        let records = self.shape(d, req, rows.into_iter())?;
        let next_locator = resp
            .headers
            .get("sforce-locator")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && *v != "null")
            .map(String::from);
        let next = next_locator
            .map(|l| {
                super::cursor_json(&Cursor::Bulk {
                    job,
                    version,
                    complete: true,
                    locator: Some(l),
                })
            })
            .transpose()?;
        Ok(Page {
            records,
            next,
            bytes: resp.bytes,
        })
    }
}

enum CellOwned {
    Json(Value),
    Csv(String),
}

/// How a message names a record: its position in the page, never a value of it (its `Id`
/// included: docs/security.md).
fn row_at(n: usize) -> String {
    format!("record {n} of the page")
}

#[async_trait]
impl Source for SalesforceSource {
    async fn list_entities(&self) -> Result<Vec<EntityInfo>, SourceError> {
        let (body, _) = self
            .get_json(HttpRequest::get(self.data_url("sobjects").await?))
            .await?;
        let list = body
            .get("sobjects")
            .and_then(Value::as_array)
            .ok_or_else(|| SourceError::Rejected {
                message: "the sobjects response has no `sobjects` array".into(),
            })?;
        Ok(list
            .iter()
            .filter(|o| o.get("queryable").and_then(Value::as_bool).unwrap_or(false))
            .filter_map(|o| {
                let name = o.get("name")?.as_str()?.to_string();
                Some(EntityInfo {
                    label: o
                        .get("label")
                        .and_then(Value::as_str)
                        .unwrap_or(&name)
                        .to_string(),
                    description: o
                        .get("custom")
                        .and_then(Value::as_bool)
                        .filter(|c| *c)
                        .map(|_| "custom object".into()),
                    name,
                })
            })
            .collect())
    }

    async fn describe(&self, entity: &str) -> Result<EntityDescription, SourceError> {
        Ok(self.described(entity).await?.desc)
    }

    /// Time slices of the window field (`(start, end]` goes into each slice's `WHERE`). Four at
    /// once by default: each slice is one query cursor (or one Bulk API job) at a time, far
    /// below the org's concurrent-request and open-cursor limits.
    fn slicing(&self, _entity: &str) -> Slicing {
        Slicing::Time { parallelism: 4 }
    }

    /// `SELECT COUNT() … WHERE <window>`: start-run cuts dense parts of a backfill narrower.
    async fn count(&self, req: &ReadRequest) -> Result<Option<u64>, SourceError> {
        if req.incremental_field.is_none() || req.window.is_none() {
            return Ok(None);
        }
        let d = self.described(&req.entity).await?;
        Ok(Some(self.count_window(&d, req).await?))
    }

    async fn read_page(
        &self,
        req: &ReadRequest,
        cursor: Option<&Value>,
    ) -> Result<Page, SourceError> {
        let d = self.described(&req.entity).await?;
        let cursor: Option<Cursor> = super::cursor_from("salesforce", cursor)?;
        match cursor {
            Some(Cursor::Rest { next }) => {
                let url = format!("{}{}", self.instance().await?, next);
                self.rest_page(&d, req, url, None).await
            }
            Some(c @ Cursor::Bulk { .. }) => self.bulk_page(&d, req, c).await,
            None => {
                let bulk = match self.cfg.api {
                    ApiChoice::Rest => false,
                    ApiChoice::Bulk => true,
                    ApiChoice::Auto => {
                        let n = self.count_window(&d, req).await?;
                        tracing::info!(entity = %req.entity, records = n, threshold = self.cfg.bulk_threshold, "Salesforce record count");
                        n > self.cfg.bulk_threshold
                    }
                };
                if bulk {
                    let c = self.bulk_create(&d, req).await?;
                    self.bulk_page(&d, req, c).await
                } else {
                    let url = self.data_url(self.query_resource()).await?;
                    let soql = self.soql(&d, req)?;
                    self.rest_page(&d, req, url, Some(soql)).await
                }
            }
        }
    }
}

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
    consent: Some(&super::consent::SALESFORCE),
    static_description: false,
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
