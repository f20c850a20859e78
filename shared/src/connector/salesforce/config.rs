//! The salesforce connector's flow properties: parsed, checked, with their defaults.

use super::*;

pub const DEFAULT_API_VERSION: &str = "v62.0";
pub(super) const LOGIN_URL: &str = "https://login.salesforce.com";
pub(super) const SANDBOX_LOGIN_URL: &str = "https://test.salesforce.com";

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

pub(super) fn is_name(s: &str) -> bool {
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

    pub(super) fn check(&self) -> Result<(), SourceError> {
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

pub(crate) fn validate(entity: &str, props: &Map<String, Value>) -> Vec<crate::flow::FieldError> {
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
