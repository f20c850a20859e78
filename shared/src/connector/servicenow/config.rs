//! The servicenow connector's flow properties: parsed, checked, with their defaults.

use super::*;

pub(super) const DEFAULT_PAGE_SIZE: u32 = 1000;
/// The Table API's own ceiling for sysparm_limit (its default).
pub(super) const MAX_PAGE_SIZE: u32 = 10_000;
/// `source.properties` of a `servicenow` flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNowConfig {
    /// `https://<instance>.service-now.com`
    pub instance_url: String,
    /// Columns to read (sysparm_fields); default: every column of the table.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// An encoded query ANDed with the window, e.g. `active=true^priority<=2`.
    #[serde(default)]
    pub query: Option<String>,
    /// `false` (default), `true` or `all` (sysparm_display_value).
    #[serde(default)]
    pub display_value: Option<Value>,
    #[serde(default)]
    pub page_size: Option<u32>,
    /// Also read the table's deleted records from `sys_audit_delete` (after the live rows),
    /// as rows with `sys_deleted: true`.
    #[serde(default)]
    pub include_deleted: bool,
    #[serde(default)]
    pub http: HttpSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayValue {
    False,
    True,
    All,
}

impl DisplayValue {
    pub(super) fn parse(v: Option<&Value>) -> Result<Self, SourceError> {
        match v {
            None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(DisplayValue::False),
            Some(Value::Bool(true)) => Ok(DisplayValue::True),
            Some(Value::String(s)) => match s.as_str() {
                "false" => Ok(DisplayValue::False),
                "true" => Ok(DisplayValue::True),
                "all" => Ok(DisplayValue::All),
                _ => Err(Self::err()),
            },
            _ => Err(Self::err()),
        }
    }
    pub(super) fn err() -> SourceError {
        SourceError::config(
            "source.properties.display_value",
            "must be false (actual values), true (display values) or all (both)",
        )
    }
}

pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 80
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl ServiceNowConfig {
    pub fn parse(props: &Map<String, Value>) -> Result<Self, SourceError> {
        parse_properties::<ServiceNowConfig>(props, None)
    }

    pub(super) fn check(&self, entity: &str) -> Result<DisplayValue, SourceError> {
        let u = url::Url::parse(&self.instance_url).map_err(|e| {
            SourceError::config(
                "source.properties.instance_url",
                format!(
                    "'{}' is not an absolute URL ({e}); e.g. https://acme.service-now.com",
                    self.instance_url
                ),
            )
        })?;
        if !matches!(u.scheme(), "http" | "https") || u.query().is_some() {
            return Err(SourceError::config(
                "source.properties.instance_url",
                "must be the instance's https URL without a path or query, e.g. https://acme.service-now.com",
            ));
        }
        if !entity.is_empty() && !valid_name(entity) {
            return Err(SourceError::config(
                "source.entity",
                format!("'{entity}' is not a ServiceNow table name (lower-case letters, digits and _, e.g. incident); `ferry entities` lists them"),
            ));
        }
        if let Some(fs) = &self.fields {
            if fs.is_empty() {
                return Err(SourceError::config(
                    "source.properties.fields",
                    "list at least one column, or leave it out to read every column",
                ));
            }
            for (i, f) in fs.iter().enumerate() {
                if !valid_name(f) {
                    return Err(SourceError::config(
                        format!("source.properties.fields[{i}]"),
                        format!("'{f}' is not a column name (lower-case letters, digits and _)"),
                    ));
                }
            }
        }
        if let Some(q) = &self.query {
            if q.contains("^NQ") || q.contains("ORDERBY") {
                return Err(SourceError::config(
                    "source.properties.query",
                    "must be a plain condition list (^ and ^OR): ^NQ and ORDERBY are set by the connector, which pages in its own order",
                ));
            }
        }
        if let Some(p) = self.page_size {
            if p == 0 || p > MAX_PAGE_SIZE {
                return Err(SourceError::config(
                    "source.properties.page_size",
                    format!("must be between 1 and {MAX_PAGE_SIZE} (sysparm_limit)"),
                ));
            }
        }
        self.http.validate("source.properties.http")?;
        DisplayValue::parse(self.display_value.as_ref())
    }
}

pub(crate) fn validate(entity: &str, props: &Map<String, Value>) -> Vec<crate::flow::FieldError> {
    match ServiceNowConfig::parse(props).and_then(|c| c.check(entity)) {
        Ok(_) => vec![],
        Err(SourceError::Config { field, message }) => {
            vec![crate::flow::FieldError::new(field, message)]
        }
        Err(e) => vec![crate::flow::FieldError::new(
            "source.properties",
            e.to_string(),
        )],
    }
}
