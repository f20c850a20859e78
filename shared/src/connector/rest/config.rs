//! The rest connector's flow properties: parsed, checked, with their defaults.

use super::*;

pub(super) const DEFAULT_CONCURRENCY: usize = 4;
/// `source.properties` of a `rest` flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestConfig {
    pub base_url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub concurrency: Option<usize>,
    #[serde(default)]
    pub http: HttpSettings,
    pub endpoints: BTreeMap<String, EndpointConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Relative to `base_url`; `{field}` placeholders are filled from the parent record.
    pub path: String,
    #[serde(default)]
    pub method: Method,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body for POST endpoints (paging and window fields are merged into it).
    #[serde(default)]
    pub body: Option<Map<String, Value>>,
    /// JSONPath selecting the records in a response, e.g. `$.data[*]`.
    pub records: String,
    #[serde(default)]
    pub paginator: Paginator,
    #[serde(default)]
    pub incremental: Option<IncrementalInjection>,
    #[serde(default)]
    pub parent: Option<ParentConfig>,
    #[serde(default)]
    pub primary_key: Option<String>,
    /// Declared fields; without them, `describe` infers fields from a first page.
    #[serde(default)]
    pub fields: Option<Vec<FieldDecl>>,
    /// Statuses that mean "no records here" (e.g. 404 for a parent deleted meanwhile).
    #[serde(default)]
    pub ignore_status: Vec<u16>,
    /// Top-level fields that mark a record as not of this endpoint: a record with a non-null
    /// value in any of them is left out (GitHub's issues list returns pull requests too, each
    /// with a `pull_request` key).
    #[serde(default)]
    pub skip_records_with: Vec<String>,
    /// Top-level fields computed from a JSONPath of the record, e.g. `committed_at:
    /// $.commit.committer.date`, so a nested value can be a column or the incremental field.
    #[serde(default)]
    pub derived: BTreeMap<String, String>,
    #[serde(default)]
    pub label: Option<String>,
}

/// A declared field: `{name: id, type: integer}`; objects list their `fields`, arrays name
/// their `items` (a type name, or `{type: object, fields: [...]}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDecl {
    pub name: String,
    #[serde(rename = "type", default = "FieldDecl::default_type")]
    pub data_type: String,
    /// The fields of an `object`.
    #[serde(default)]
    pub fields: Option<Vec<FieldDecl>>,
    /// The element type of an `array`.
    #[serde(default)]
    pub items: Option<Box<ItemDecl>>,
    /// A `decimal`'s digits in all (1-38, default 38) and after the point (`scale`, required):
    /// money sent as `"19.99"` or `19.99` is read exactly, never through a float.
    #[serde(default)]
    pub precision: Option<u8>,
    #[serde(default)]
    pub scale: Option<i8>,
}

/// An array's element type: `string`, or `{type: object, fields: [...]}` / `{type: array, items: ...}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ItemDecl {
    Name(String),
    Typed {
        #[serde(rename = "type")]
        data_type: String,
        #[serde(default)]
        fields: Option<Vec<FieldDecl>>,
        #[serde(default)]
        items: Option<Box<ItemDecl>>,
    },
}

impl FieldDecl {
    pub(super) fn default_type() -> String {
        "string".into()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParentConfig {
    pub endpoint: String,
    /// Parent field -> child field carried into every child record.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// Where a paging value or window value goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    #[default]
    Query,
    Body,
    Header,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementalInjection {
    #[serde(rename = "in", default)]
    pub placement: Placement,
    /// Name -> template; `{start}` and `{end}` are replaced by the window bounds. A name whose
    /// template uses `{start}` is left out when the window has no start (a first full read).
    pub set: BTreeMap<String, String>,
    /// How bounds are written: `rfc3339` (default), `epoch_seconds`, `epoch_millis`, or a
    /// strftime pattern such as `%Y-%m-%d %H:%M:%S`.
    #[serde(default)]
    pub format: Option<String>,
    /// JSONPath of the record's cursor value, e.g. `$.updated_at`; every record must have it.
    /// Default: `$.<source.incremental.field>`.
    #[serde(default)]
    pub cursor_path: Option<String>,
    /// `descending`: the API returns records newest first (by the cursor value) and has no
    /// parameter for the window's start, so paging stops after the first page holding a record
    /// at or before the start (GitHub's pull request list sorted by `updated`).
    #[serde(default)]
    pub sorted: Option<SortOrder>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    Descending,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Paginator {
    /// One request returns everything.
    #[default]
    Single,
    /// The body holds the next page's full URL.
    NextUrl {
        path: String,
        #[serde(default)]
        max_pages: Option<u64>,
    },
    /// RFC 8288 `Link: <…>; rel="next"`.
    LinkHeader {
        #[serde(default = "Paginator::next_rel")]
        rel: String,
        #[serde(default)]
        max_pages: Option<u64>,
    },
    /// An opaque token from the body (`token_path`) or a header (`token_header`), sent back as
    /// `param` in the query, body or a header (`placement`).
    Cursor {
        #[serde(default)]
        token_path: Option<String>,
        #[serde(default)]
        token_header: Option<String>,
        param: String,
        #[serde(rename = "in", default)]
        placement: Placement,
        #[serde(default)]
        has_more_path: Option<String>,
        #[serde(default)]
        max_pages: Option<u64>,
    },
    Offset {
        #[serde(default = "Paginator::offset_param")]
        offset_param: String,
        #[serde(default = "Paginator::limit_param")]
        limit_param: String,
        #[serde(default = "Paginator::limit")]
        limit: u64,
        #[serde(default)]
        total_path: Option<String>,
        #[serde(default)]
        has_more_path: Option<String>,
        #[serde(rename = "in", default)]
        placement: Placement,
        #[serde(default)]
        max_pages: Option<u64>,
    },
    PageNumber {
        #[serde(default = "Paginator::page_param")]
        page_param: String,
        #[serde(default)]
        size_param: Option<String>,
        #[serde(default = "Paginator::limit")]
        size: u64,
        #[serde(default = "Paginator::first_page")]
        first_page: u64,
        /// Total records (`total_path`) or total pages (`total_pages_path`) in the body.
        #[serde(default)]
        total_path: Option<String>,
        #[serde(default)]
        total_pages_path: Option<String>,
        #[serde(default)]
        has_more_path: Option<String>,
        #[serde(rename = "in", default)]
        placement: Placement,
        #[serde(default)]
        max_pages: Option<u64>,
    },
}

impl Paginator {
    pub(super) fn next_rel() -> String {
        "next".into()
    }
    pub(super) fn offset_param() -> String {
        "offset".into()
    }
    pub(super) fn limit_param() -> String {
        "limit".into()
    }
    pub(super) fn page_param() -> String {
        "page".into()
    }
    pub(super) fn limit() -> u64 {
        100
    }
    pub(super) fn first_page() -> u64 {
        1
    }
    pub(super) fn max_pages(&self) -> Option<u64> {
        match self {
            Paginator::Single => Some(1),
            Paginator::NextUrl { max_pages, .. }
            | Paginator::LinkHeader { max_pages, .. }
            | Paginator::Cursor { max_pages, .. }
            | Paginator::Offset { max_pages, .. }
            | Paginator::PageNumber { max_pages, .. } => *max_pages,
        }
    }
}

pub(crate) fn validate(
    entity: &str,
    props: &serde_json::Map<String, Value>,
) -> Vec<crate::flow::FieldError> {
    match RestConfig::parse(props).and_then(|c| c.check(entity, None)) {
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

impl RestConfig {
    pub fn parse(props: &serde_json::Map<String, Value>) -> Result<Self, SourceError> {
        parse_properties::<RestConfig>(props, None)
    }

    pub(super) fn check(
        &self,
        entity: &str,
        incremental_field: Option<&str>,
    ) -> Result<(), SourceError> {
        super::http_url(
            "source.properties.base_url",
            &self.base_url,
            "e.g. https://api.example.com/v2",
        )?;
        self.http.validate("source.properties.http")?;
        if self.concurrency == Some(0) {
            return Err(SourceError::config(
                "source.properties.concurrency",
                "must be ≥ 1",
            ));
        }
        if self.endpoints.is_empty() {
            return Err(SourceError::config(
                "source.properties.endpoints",
                "declare at least one endpoint, e.g. tickets: {path: /tickets, records: $.data[*]}",
            ));
        }
        for (name, ep) in &self.endpoints {
            Endpoint::new(name, ep, incremental_field)?;
            if let Some(p) = &ep.parent {
                if p.endpoint == *name || !self.endpoints.contains_key(&p.endpoint) {
                    return Err(SourceError::config(
                        format!("source.properties.endpoints.{name}.parent.endpoint"),
                        format!("'{}' must name another endpoint of this source", p.endpoint),
                    ));
                }
                if self.endpoints[&p.endpoint].parent.is_some() {
                    return Err(SourceError::config(
                        format!("source.properties.endpoints.{name}.parent.endpoint"),
                        "a parent endpoint cannot itself have a parent (one level of nesting)",
                    ));
                }
            }
        }
        if !entity.is_empty() && !self.endpoints.contains_key(entity) {
            return Err(SourceError::config(
                "source.entity",
                format!(
                    "'{entity}' is not an endpoint of this rest source; declared: {}",
                    self.endpoints
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(())
    }
}
