//! Sources: the trait every connector implements, what they describe, and [`build`], which
//! makes one from a flow's `source` section through the [`registry`].

pub mod auth;
#[cfg(test)]
mod canary_tests;
pub mod check;
pub mod consent;
pub mod http;
pub mod link;
pub mod normalize;
pub mod registry;
#[cfg(test)]
pub(crate) mod testing;

/// Every connector of this build, one line each: the line declares the connector's module
/// (its folder) and lists the `Connector` values it defines in the [`registry`], in this order.
macro_rules! connectors {
    ($($module:ident => [$($value:ident),+]),+ $(,)?) => {
        $(pub mod $module;)+
        /// What [`registry::REGISTRY`] holds.
        const CONNECTORS: &[&registry::Connector] = &[$($(&$module::$value),+),+];
    };
}

connectors! {
    sample => [CONNECTOR],
    rest => [CONNECTOR],
    salesforce => [CONNECTOR],
    zendesk => [CONNECTOR],
    servicenow => [CONNECTOR],
    hubspot => [CONNECTOR],
    slack => [CONNECTOR],
    declarative => [STRIPE_CONNECTOR, SHOPIFY_CONNECTOR, GITHUB_CONNECTOR],
    jira => [CONNECTOR],
    marketo => [CONNECTOR],
    ga4 => [CONNECTOR],
}

use crate::error::{ErrorKind, StepError};
use crate::flow::{FieldError, SourceConfig};
use crate::model::Window;
use crate::ports::{Secret, SecretStore};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A connector's typed `source.properties`: a refusal names the property's path
/// (`source.properties.http.timeout_ms`) and, when `takes` is given, what the connector takes.
pub fn parse_properties<T: serde::de::DeserializeOwned>(
    props: &serde_json::Map<String, serde_json::Value>,
    takes: Option<&str>,
) -> Result<T, SourceError> {
    let v = serde_json::Value::Object(props.clone());
    serde_path_to_error::deserialize::<_, T>(&v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path.is_empty() {
            "source.properties".to_string()
        } else {
            format!("source.properties.{path}")
        };
        let msg = e.into_inner().to_string();
        SourceError::config(
            field,
            match takes {
                Some(t) => format!("{msg}; {t}"),
                None => msg,
            },
        )
    })
}

pub use crate::schema::{FieldInfo, FieldType};
pub use registry::{Connector, Profile, REGISTRY};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityInfo {
    pub name: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityDescription {
    pub entity: String,
    /// Field order is the column order of the output.
    pub fields: Vec<FieldInfo>,
}

/// What one read asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadRequest {
    pub entity: String,
    /// `None` reads everything (complete mode).
    pub window: Option<Window>,
    /// The datetime field the window applies to.
    pub incremental_field: Option<String>,
    pub page_size: Option<u32>,
    /// Filters the source applies itself (only those its [`Source::pushdown`] accepts);
    /// field names are source names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<crate::flow::tasks::FilterSpec>,
}

/// One page of records and where to go next.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub records: Vec<serde_json::Value>,
    /// Opaque, serializable cursor for the next page; `None` when done.
    pub next: Option<serde_json::Value>,
    /// Bytes received from the source for this page.
    pub bytes: u64,
}

/// Records of a page as Arrow, decoded straight from the response bytes with the run's
/// schema, or as JSON values where a response did not fit it (fetch-page decodes those record
/// by record, rejecting only the records at fault).
#[derive(Debug)]
pub enum PageRecords {
    Arrow(arrow::record_batch::RecordBatch),
    Values(Vec<serde_json::Value>),
}

/// A page read by [`Source::read_page_arrow`]: its responses' records in order.
#[derive(Debug)]
pub struct ArrowPage {
    pub parts: Vec<PageRecords>,
    pub next: Option<serde_json::Value>,
    pub bytes: u64,
}

/// Why a source read failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{message}")]
    Throttled {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("{message}")]
    Transient { message: String },
    /// Still failing after the connector's retries: the retry budget is spent.
    #[error("{message}")]
    Unavailable { message: String },
    #[error("connector profile '{profile}': {message}")]
    Auth { profile: String, message: String },
    #[error("{message}")]
    Rejected { message: String },
    #[error("{field}: {message}")]
    Config { field: String, message: String },
    #[error("{message}")]
    Fatal { message: String },
}

impl SourceError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            SourceError::Throttled { .. } => ErrorKind::Throttled,
            SourceError::Transient { .. } => ErrorKind::Retryable,
            SourceError::Unavailable { .. } => ErrorKind::SourceUnavailable,
            SourceError::Auth { .. } => ErrorKind::AuthFailed,
            SourceError::Rejected { .. } => ErrorKind::SourceRejected,
            SourceError::Config { .. } => ErrorKind::InvalidFlow,
            SourceError::Fatal { .. } => ErrorKind::Fatal,
        }
    }
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        SourceError::Config {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A connector's cursor as the JSON the run's state carries. Cursors are plain structs, so
/// this fails only on a programming error, which fails the page instead of the process.
pub(crate) fn cursor_json<T: Serialize>(cursor: &T) -> Result<serde_json::Value, SourceError> {
    serde_json::to_value(cursor).map_err(|e| SourceError::Fatal {
        message: format!("the page cursor could not be serialized: {e}"),
    })
}

/// A flow's API base URL property (`field`, e.g. `source.properties.base_url`): absolute, http or
/// https. `hint` ends the message when it does not parse (an example or the default).
pub(crate) fn http_url(field: &str, u: &str, hint: &str) -> Result<url::Url, SourceError> {
    let parsed = url::Url::parse(u).map_err(|e| {
        SourceError::config(field, format!("'{u}' is not an absolute URL ({e}); {hint}"))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(SourceError::config(field, "must be an http or https URL"));
    }
    Ok(parsed)
}

/// A resume cursor from the run's state (`None` for the first page), as `connector` wrote it
/// with [`cursor_json`]. Anything else fails the page naming the connector.
pub(crate) fn cursor_from<T: serde::de::DeserializeOwned>(
    connector: &str,
    cursor: Option<&serde_json::Value>,
) -> Result<Option<T>, SourceError> {
    match cursor {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| SourceError::Fatal {
                message: format!(
                    "{connector}: the resume cursor {v} is not a {connector} cursor ({e})"
                ),
            }),
    }
}

impl From<SourceError> for StepError {
    fn from(e: SourceError) -> Self {
        StepError::new(e.kind(), e.to_string())
    }
}

/// A connector instance bound to one flow's source settings and credentials.
#[async_trait]
pub trait Source: Send + Sync {
    /// The objects this source offers.
    async fn list_entities(&self) -> Result<Vec<EntityInfo>, SourceError>;
    /// An object's fields and their types.
    async fn describe(&self, entity: &str) -> Result<EntityDescription, SourceError>;
    /// One page: records in the request's window, starting at `cursor` (`None`: the first page).
    async fn read_page(
        &self,
        req: &ReadRequest,
        cursor: Option<&serde_json::Value>,
    ) -> Result<Page, SourceError>;
    /// One page decoded straight to Arrow with `schema` (the run's source schema), without a
    /// `serde_json::Value` per record: records outside the request's window are *not* dropped
    /// (fetch-page filters the Arrow column). `Ok(None)`: this source or entity cannot, use
    /// [`read_page`](Self::read_page) (the default).
    async fn read_page_arrow(
        &self,
        _req: &ReadRequest,
        _cursor: Option<&serde_json::Value>,
        _schema: &arrow::datatypes::SchemaRef,
    ) -> Result<Option<ArrowPage>, SourceError> {
        Ok(None)
    }
    /// Which filters this source can apply itself (default: none; transform-batch runs them).
    fn pushdown(&self) -> crate::transform::FilterPushdown {
        crate::transform::FilterPushdown::none()
    }
    /// Warnings gathered since the last call (e.g. a Slack channel skipped because the token
    /// cannot read it), for the run record; each is also logged when it happens.
    fn take_warnings(&self) -> Vec<String> {
        vec![]
    }
    /// How a run of this source can be cut into slices read independently and in parallel
    /// (`steps::slices`). Default: it cannot; a run is one slice.
    fn slicing(&self, _entity: &str) -> Slicing {
        Slicing::None
    }
    /// How many records the request's window holds, where the source can tell cheaply (a count
    /// query): start-run cuts dense parts of a window narrower. `Ok(None)`: it cannot.
    async fn count(&self, _req: &ReadRequest) -> Result<Option<u64>, SourceError> {
        Ok(None)
    }
    /// The end of the run's whole window, told before any read: a source whose data depends on
    /// the window it is asked for (the sample) keeps one data set across the run's slices.
    fn set_run_end(&mut self, _end: chrono::DateTime<chrono::Utc>) {}
    /// How many more records the caller will read before it stops asking (a hint, told before
    /// each read; `u64::MAX`: all): a source that asks for a page while the previous one
    /// decodes does so only when the records it is reading leave some wanted, so a chunk's last
    /// page asks for nothing it will not use. Default: ignored.
    fn records_wanted(&self, _records: u64) {}
    /// What `read_page` needs to know about `entity` besides the flow (a type dictionary,
    /// property list), read once per run: start-run stages it beside the run's schema and
    /// fetch-page hands it back with [`use_fetch_metadata`](Self::use_fetch_metadata), so a chunk
    /// does not read it again. `Ok(None)`: the source needs none (the default).
    async fn fetch_metadata(
        &self,
        _entity: &str,
    ) -> Result<Option<serde_json::Value>, SourceError> {
        Ok(None)
    }
    /// Take the metadata [`fetch_metadata`](Self::fetch_metadata) gave at the run's start.
    fn use_fetch_metadata(
        &mut self,
        _entity: &str,
        _data: &serde_json::Value,
    ) -> Result<(), SourceError> {
        Ok(())
    }
}

/// Metadata a source stages once per run ([`Source::fetch_metadata`]), as JSON.
pub(crate) fn stage_metadata<T: serde::Serialize>(
    connector: &str,
    m: &T,
) -> Result<Option<serde_json::Value>, SourceError> {
    serde_json::to_value(m)
        .map(Some)
        .map_err(|e| SourceError::Fatal {
            message: format!("{connector}: cannot stage the entity's metadata ({e})"),
        })
}

/// Staged metadata back ([`Source::use_fetch_metadata`]). Staged by another ferry version
/// mid-run, it may not decode: an internal error, not the user's.
pub(crate) fn staged_metadata<T: serde::de::DeserializeOwned>(
    connector: &str,
    data: &serde_json::Value,
) -> Result<T, SourceError> {
    T::deserialize(data).map_err(|e| SourceError::Fatal {
        message: format!(
            "{connector}: the run's staged metadata does not decode ({e}); start the run again"
        ),
    })
}

/// What slicing a source supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slicing {
    /// One slice per run.
    None,
    /// Time slices of the incremental field's window: a slice reads `(start, end]` of its own.
    Time {
        /// Slices run at once unless the flow sets `source.parallelism`: what the API's
        /// documented limits allow for one client.
        parallelism: u32,
    },
}

/// What building a connector needs besides the flow.
#[derive(Clone)]
pub struct ConnectorContext {
    pub secrets: Arc<dyn SecretStore>,
}

/// Build the connector a flow's `source` names, loading its profile's secret.
pub async fn build(
    source: &SourceConfig,
    ctx: &ConnectorContext,
) -> Result<Box<dyn Source>, SourceError> {
    let connector = REGISTRY.get(&source.connector).ok_or_else(|| {
        SourceError::config(
            "source.connector",
            format!(
                "unknown connector '{}'; use one of: {}",
                source.connector,
                REGISTRY.names().join(", ")
            ),
        )
    })?;
    let secret: Option<Secret> = match &source.profile {
        Some(profile) => {
            let s = ctx
                .secrets
                .get_secret(profile)
                .await
                .map_err(|e| SourceError::Auth {
                    profile: profile.clone(),
                    message: format!("cannot read its secret: {e}"),
                })?;
            match s {
                Some(s) => Some(s),
                None => {
                    return Err(SourceError::Auth {
                        profile: profile.clone(),
                        message: "no such profile: create its secret (locally `ferry profiles put NAME --file creds.json`; \
                                  on AWS a Secrets Manager secret named `ferry/profiles/NAME`)"
                            .into(),
                    })
                }
            }
        }
        None => None,
    };
    let profile = match (&source.profile, &secret) {
        (Some(name), Some(secret)) => Some(Profile {
            name,
            secret,
            secrets: ctx.secrets.clone(),
            client_auth: connector.oauth_client_auth,
        }),
        _ => None,
    };
    (connector.build)(source, profile)
}
