//! The hubspot connector's flow properties: parsed, checked, with their defaults.

use super::*;

pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";
/// `source.properties` of a `hubspot` flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotConfig {
    #[serde(default = "default_base")]
    pub base_url: String,
    /// Properties to read; default every property of the object.
    #[serde(default)]
    pub properties: Option<Vec<String>>,
    #[serde(default)]
    pub include_archived: bool,
    #[serde(default)]
    pub page_size: Option<u32>,
    #[serde(default)]
    pub http: HttpSettings,
}

pub(super) fn default_base() -> String {
    DEFAULT_BASE_URL.into()
}

impl HubSpotConfig {
    pub fn parse(props: &Map<String, Value>) -> Result<Self, SourceError> {
        parse_properties::<HubSpotConfig>(props, None)
    }

    pub(super) fn check(&self, entity: &str) -> Result<(), SourceError> {
        super::http_url(
            "source.properties.base_url",
            &self.base_url,
            &format!("leave it out for {DEFAULT_BASE_URL}"),
        )?;
        if !entity.is_empty() && object(entity).is_none() {
            return Err(SourceError::config(
                "source.entity",
                format!(
                    "'{entity}' is not a HubSpot object this connector reads; use one of: {}",
                    OBJECTS.iter().map(|o| o.0).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if let Some(ps) = &self.properties {
            if ps.is_empty() {
                return Err(SourceError::config(
                    "source.properties.properties",
                    "list at least one property, or leave it out to read every property",
                ));
            }
            for (i, p) in ps.iter().enumerate() {
                if p.is_empty() || p.contains(',') || TOP_LEVEL.contains(&p.as_str()) {
                    return Err(SourceError::config(
                        format!("source.properties.properties[{i}]"),
                        format!("'{p}' is not a property name (id, createdAt, updatedAt, archived and archivedAt are always read)"),
                    ));
                }
            }
        }
        if let Some(p) = self.page_size {
            if p == 0 || p > SEARCH_MAX {
                return Err(SourceError::config(
                    "source.properties.page_size",
                    format!(
                        "must be between 1 and {SEARCH_MAX} (list pages are capped at {LIST_MAX})"
                    ),
                ));
            }
        }
        self.http.validate("source.properties.http")
    }
}

pub(crate) fn validate(entity: &str, props: &Map<String, Value>) -> Vec<crate::flow::FieldError> {
    match HubSpotConfig::parse(props).and_then(|c| c.check(entity)) {
        Ok(()) => vec![],
        Err(SourceError::Config { field, message }) => {
            vec![crate::flow::FieldError::new(field, message)]
        }
        Err(e) => vec![crate::flow::FieldError::new(
            "source.properties",
            e.to_string(),
        )],
    }
}
