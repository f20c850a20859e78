//! The marketo connector's flow properties: parsed, checked, with their defaults.

use super::*;

/// `source.properties` of a `marketo` flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketoConfig {
    /// `123-ABC-456` for `https://123-ABC-456.mktorest.com`.
    #[serde(default)]
    pub munchkin_id: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    #[serde(default)]
    pub activity_type_ids: Option<Vec<u32>>,
    #[serde(default = "default_poll")]
    pub poll_seconds: f64,
    #[serde(default = "default_wait")]
    pub max_wait_minutes: f64,
    #[serde(default)]
    pub history_start: Option<DateTime<Utc>>,
    /// Bytes of the file asked for per `Range` request (default 8 MiB).
    #[serde(default)]
    pub file_part_bytes: Option<u64>,
    #[serde(default)]
    pub http: HttpSettings,
}

pub(super) fn default_poll() -> f64 {
    30.0
}
pub(super) fn default_wait() -> f64 {
    120.0
}

impl MarketoConfig {
    pub fn parse(props: &Map<String, Value>) -> Result<Self, SourceError> {
        let c: MarketoConfig = parse_properties(
            props,
            Some("marketo takes munchkin_id, base_url, fields, activity_type_ids, poll_seconds, max_wait_minutes, history_start, file_part_bytes, http"),
        )?;
        c.check()?;
        Ok(c)
    }

    pub(super) fn check(&self) -> Result<(), SourceError> {
        match (&self.munchkin_id, &self.base_url) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(SourceError::config(
                    "source.properties.munchkin_id",
                    "set exactly one of `munchkin_id` (e.g. 123-ABC-456, Admin > Munchkin) or `base_url`",
                ))
            }
            (Some(m), None) => {
                let ok = !m.is_empty()
                    && m.len() <= 20
                    && m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !ok {
                    return Err(SourceError::config(
                        "source.properties.munchkin_id",
                        format!("'{m}' is not a Munchkin id (e.g. 123-ABC-456)"),
                    ));
                }
            }
            (None, Some(u)) => {
                super::http_url("source.properties.base_url", u, "e.g. https://123-ABC-456.mktorest.com")?;
            }
        }
        if let Some(fs) = &self.fields {
            if fs.is_empty() {
                return Err(SourceError::config(
                    "source.properties.fields",
                    "list at least one field, or leave it out to read every lead field",
                ));
            }
            for (i, f) in fs.iter().enumerate() {
                if f.is_empty() || f.contains(',') {
                    return Err(SourceError::config(
                        format!("source.properties.fields[{i}]"),
                        format!("'{f}' is not a lead field name"),
                    ));
                }
            }
        }
        if !(self.poll_seconds > 0.0 && self.poll_seconds <= 300.0) {
            return Err(SourceError::config(
                "source.properties.poll_seconds",
                "must be more than 0 and at most 300",
            ));
        }
        if !(self.max_wait_minutes > 0.0 && self.max_wait_minutes <= 24.0 * 60.0) {
            return Err(SourceError::config(
                "source.properties.max_wait_minutes",
                "must be more than 0 and at most 1440 (a day)",
            ));
        }
        if self
            .file_part_bytes
            .is_some_and(|b| !(1024..=512 * 1024 * 1024).contains(&b))
        {
            return Err(SourceError::config(
                "source.properties.file_part_bytes",
                "must be between 1024 and 536870912 (512 MiB)",
            ));
        }
        self.http.validate("source.properties.http")
    }

    pub(super) fn base(&self) -> String {
        match (&self.munchkin_id, &self.base_url) {
            (Some(m), _) => format!("https://{m}.mktorest.com"),
            (None, Some(u)) => u.trim_end_matches('/').to_string(),
            // `check` refused it.
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
    match MarketoConfig::parse(props) {
        Err(SourceError::Config { field, message }) => {
            errs.push(crate::flow::FieldError::new(field, message))
        }
        Ok(c) => {
            if entity == "activities" && c.fields.is_some() {
                errs.push(crate::flow::FieldError::new(
                    "source.properties.fields",
                    "activities have fixed columns; `fields` is for leads",
                ));
            }
            if entity == "leads" && c.activity_type_ids.is_some() {
                errs.push(crate::flow::FieldError::new(
                    "source.properties.activity_type_ids",
                    "is for activities",
                ));
            }
        }
        Err(_) => {}
    }
    errs
}

pub(super) fn default_history_start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_577_836_800, 0).unwrap_or_default() // 2020-01-01T00:00:00Z
}
