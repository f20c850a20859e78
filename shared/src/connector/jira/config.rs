//! The jira connector's flow properties: parsed, checked, with their defaults.

use super::*;

/// `source.properties` of a `jira` flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JiraConfig {
    /// `acme` for `https://acme.atlassian.net`.
    #[serde(default)]
    pub site: Option<String>,
    /// The API root instead of a site (OAuth apps: `https://api.atlassian.com/ex/jira/<cloud id>`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// A JQL restriction ANDed with the window (no `ORDER BY`).
    #[serde(default)]
    pub jql: Option<String>,
    /// Field ids to read (issues); default every navigable field.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    #[serde(default)]
    pub page_size: Option<u32>,
    /// The time zone JQL dates are read in, when it is not the profile user's.
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub http: HttpSettings,
}

impl JiraConfig {
    pub fn parse(props: &Map<String, Value>) -> Result<Self, SourceError> {
        let c: JiraConfig = parse_properties(
            props,
            Some("jira takes site, base_url, jql, fields, page_size, time_zone, http"),
        )?;
        c.check()?;
        Ok(c)
    }

    pub(super) fn check(&self) -> Result<(), SourceError> {
        match (&self.site, &self.base_url) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(SourceError::config(
                    "source.properties.site",
                    "set exactly one of `site` (e.g. acme for https://acme.atlassian.net) or `base_url`",
                ))
            }
            (Some(s), None) => {
                let ok = !s.is_empty()
                    && s.len() <= 63
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !ok {
                    return Err(SourceError::config(
                        "source.properties.site",
                        format!("'{s}' is not a Jira Cloud site name: give only the first label, e.g. `acme` for https://acme.atlassian.net"),
                    ));
                }
            }
            (None, Some(u)) => {
                super::http_url("source.properties.base_url", u, "e.g. https://acme.atlassian.net")?;
            }
        }
        if let Some(q) = &self.jql {
            if q.trim().is_empty() {
                return Err(SourceError::config(
                    "source.properties.jql",
                    "is empty; leave it out to read every issue the profile can see",
                ));
            }
            if q.to_ascii_lowercase().contains("order by") {
                return Err(SourceError::config(
                    "source.properties.jql",
                    "must not have an ORDER BY: ferry orders by `updated` to page by time slices",
                ));
            }
        }
        if let Some(fs) = &self.fields {
            if fs.is_empty() {
                return Err(SourceError::config(
                    "source.properties.fields",
                    "list at least one field id, or leave it out to read every navigable field",
                ));
            }
            for (i, f) in fs.iter().enumerate() {
                if f.is_empty() || f.contains(',') || f.starts_with('*') || f.starts_with('-') {
                    return Err(SourceError::config(
                        format!("source.properties.fields[{i}]"),
                        format!(
                            "'{f}' is not a field id (e.g. summary, status, customfield_10016)"
                        ),
                    ));
                }
            }
        }
        if let Some(p) = self.page_size {
            if p == 0 || p > MAX_PAGE {
                return Err(SourceError::config(
                    "source.properties.page_size",
                    format!("must be between 1 and {MAX_PAGE}"),
                ));
            }
        }
        if let Some(tz) = &self.time_zone {
            tz.parse::<chrono_tz::Tz>().map_err(|_| {
                SourceError::config(
                    "source.properties.time_zone",
                    format!("'{tz}' is not an IANA time zone name (e.g. Europe/Berlin, UTC)"),
                )
            })?;
        }
        self.http.validate("source.properties.http")
    }

    /// The API root (`check` made sure one of `site` and `base_url` is set).
    pub(super) fn base(&self) -> String {
        match (&self.site, &self.base_url) {
            (Some(s), _) => format!("https://{s}.atlassian.net"),
            (None, Some(u)) => u.trim_end_matches('/').to_string(),
            (None, None) => String::new(),
        }
    }
}

pub(crate) fn validate(entity: &str, props: &Map<String, Value>) -> Vec<crate::flow::FieldError> {
    let mut errs = vec![];
    if !entity.is_empty() {
        if let Err(SourceError::Config { field, message }) = entity_def(entity) {
            errs.push(crate::flow::FieldError::new(field, message));
        }
    }
    if let Err(SourceError::Config { field, message }) = JiraConfig::parse(props) {
        errs.push(crate::flow::FieldError::new(field, message));
    }
    errs
}
