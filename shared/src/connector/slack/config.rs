//! The slack connector's flow properties: parsed, checked, with their defaults.

use super::*;

pub(super) const DEFAULT_BASE: &str = "https://slack.com/api";
pub(super) const DEFAULT_LIMIT: u32 = 200;
/// `conversations.history` takes at most 999; the lists 1000.
pub(super) const MAX_LIMIT: u32 = 999;

/// `source.properties` of a slack flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Default `https://slack.com/api` (Enterprise Grid and tests may differ).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Conversation IDs whose messages `messages` reads.
    #[serde(default)]
    pub channels: Vec<String>,
    /// `conversations.list` `types`.
    #[serde(default)]
    pub types: Option<String>,
    #[serde(default)]
    pub exclude_archived: bool,
    /// `limit` per request.
    #[serde(default)]
    pub page_size: Option<u32>,
    /// A channel the token cannot read (`channel_not_found`, `not_in_channel`): `skip` it with
    /// a warning (default) or `fail` the run.
    #[serde(default)]
    pub on_channel_error: OnChannelError,
    /// `replies`: threads whose parent was posted up to this many days before the window
    /// start are searched for new replies (a reply is posted after its parent).
    #[serde(default = "default_replies_lookback")]
    pub replies_lookback_days: u32,
    #[serde(default)]
    pub http: HttpSettings,
}

pub(super) fn default_replies_lookback() -> u32 {
    30
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnChannelError {
    #[default]
    Skip,
    Fail,
}

pub(super) const TYPES: &[&str] = &["public_channel", "private_channel", "mpim", "im"];

impl SlackConfig {
    pub fn parse(props: &Map<String, Value>, entity: &str) -> Result<Self, SourceError> {
        let cfg: SlackConfig = parse_properties(
            props,
            Some("slack takes channels, types, exclude_archived, page_size, on_channel_error, replies_lookback_days, base_url, http"),
        )?;
        cfg.check(entity)?;
        Ok(cfg)
    }

    pub(super) fn check(&self, entity: &str) -> Result<(), SourceError> {
        if let Some(u) = &self.base_url {
            super::http_url(
                "source.properties.base_url",
                u,
                &format!("the default is {DEFAULT_BASE}"),
            )?;
        }
        for (i, c) in self.channels.iter().enumerate() {
            let ok = c.len() >= 9
                && c.len() <= 24
                && matches!(c.as_bytes()[0], b'C' | b'G' | b'D')
                && c.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
            if !ok {
                return Err(SourceError::config(
                    format!("source.properties.channels[{i}]"),
                    format!("'{c}' is not a conversation ID: use the ID (e.g. C0123456789, shown in the channel's details or by the conversations entity), not the #name"),
                ));
            }
        }
        if matches!(entity, "messages" | "replies") && self.channels.is_empty() {
            return Err(SourceError::config(
                "source.properties.channels",
                format!("the {entity} entity reads the channels listed here: add their IDs, e.g. channels: [C0123456789] (the bot must be a member: /invite @your-app)"),
            ));
        }
        if self.replies_lookback_days > 3650 {
            return Err(SourceError::config(
                "source.properties.replies_lookback_days",
                "must be at most 3650 (ten years)",
            ));
        }
        if let Some(t) = &self.types {
            for part in t.split(',') {
                if !TYPES.contains(&part.trim()) {
                    return Err(SourceError::config(
                        "source.properties.types",
                        format!(
                            "'{}' is not a conversation type; use a comma-separated list of {}",
                            part.trim(),
                            TYPES.join(", ")
                        ),
                    ));
                }
            }
        }
        if let Some(p) = self.page_size {
            if p == 0 || p > MAX_LIMIT {
                return Err(SourceError::config(
                    "source.properties.page_size",
                    format!("must be between 1 and {MAX_LIMIT} (Slack recommends at most {DEFAULT_LIMIT})"),
                ));
            }
        }
        self.http.validate("source.properties.http")
    }
}

pub(crate) fn validate(entity: &str, props: &Map<String, Value>) -> Vec<crate::flow::FieldError> {
    let mut errs = vec![];
    if !entity.is_empty() {
        if let Err(SourceError::Config { field, message }) = entity_def(entity) {
            errs.push(crate::flow::FieldError::new(field, message));
        }
    }
    if let Err(SourceError::Config { field, message }) = SlackConfig::parse(props, entity) {
        errs.push(crate::flow::FieldError::new(field, message));
    }
    errs
}
