//! The zendesk connector's flow properties: parsed, checked, with their defaults.

use super::*;

/// Items of one export page at most (Zendesk's maximum `per_page`).
pub(super) const MAX_EXPORT_PAGE: u32 = 1000;
/// Cursor pagination's maximum `page[size]`.
pub(super) const MAX_LIST_PAGE: u32 = 100;
/// `source.properties` of a zendesk flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZendeskConfig {
    /// `acme` for `https://acme.zendesk.com`.
    #[serde(default)]
    pub subdomain: Option<String>,
    /// The instance URL instead of a subdomain (host-mapped instances, tests).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Items per request: export `per_page` (≤ 1000), list `page[size]` (≤ 100).
    #[serde(default)]
    pub page_size: Option<u32>,
    /// Tickets: pass `exclude_deleted=true` to the export.
    #[serde(default)]
    pub exclude_deleted: bool,
    #[serde(default)]
    pub http: HttpSettings,
}

impl ZendeskConfig {
    pub fn parse(props: &Map<String, Value>) -> Result<Self, SourceError> {
        let cfg: ZendeskConfig = parse_properties(
            props,
            Some("zendesk takes subdomain, base_url, page_size, exclude_deleted, http"),
        )?;
        cfg.check()?;
        Ok(cfg)
    }

    pub(super) fn check(&self) -> Result<(), SourceError> {
        match (&self.subdomain, &self.base_url) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(SourceError::config(
                    "source.properties.subdomain",
                    "set exactly one of `subdomain` (e.g. acme for https://acme.zendesk.com) or `base_url`",
                ))
            }
            (Some(sd), None) => {
                let ok = !sd.is_empty()
                    && sd.len() <= 63
                    && sd.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !ok {
                    return Err(SourceError::config(
                        "source.properties.subdomain",
                        format!("'{sd}' is not a Zendesk subdomain: give only the first label, e.g. `acme` for https://acme.zendesk.com"),
                    ));
                }
            }
            (None, Some(u)) => {
                super::http_url("source.properties.base_url", u, "e.g. https://acme.zendesk.com")?;
            }
        }
        if let Some(p) = self.page_size {
            if p == 0 || p > MAX_EXPORT_PAGE {
                return Err(SourceError::config(
                    "source.properties.page_size",
                    format!("must be between 1 and {MAX_EXPORT_PAGE} (lists use at most {MAX_LIST_PAGE})"),
                ));
            }
        }
        self.http.validate("source.properties.http")
    }

    pub(super) fn base(&self) -> String {
        match (&self.subdomain, &self.base_url) {
            (Some(sd), _) => format!("https://{sd}.zendesk.com"),
            (None, Some(u)) => u.trim_end_matches('/').to_string(),
            (None, None) => unreachable!("checked"),
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
    if let Err(SourceError::Config { field, message }) = ZendeskConfig::parse(props) {
        errs.push(crate::flow::FieldError::new(field, message));
    }
    errs
}
