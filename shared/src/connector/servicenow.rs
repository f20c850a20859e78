//! The `servicenow` connector: any table of a ServiceNow instance through the Table API.
//!
//! ```yaml
//! source:
//!   connector: servicenow
//!   profile: snow                    # basic: {"type": "basic", "hosts": ["acme.service-now.com"], "username": …, "password": …}
//!                                    # or OAuth2 (token_url https://<instance>/oauth_token.do)
//!   entity: incident                 # any table name (sys_db_object.name)
//!   properties:
//!     instance_url: https://acme.service-now.com
//!     fields: [number, short_description, state, priority, sys_updated_on]   # optional
//!     query: active=true             # optional encoded query, ANDed with the window
//!     include_deleted: false         # true: deleted records too, from sys_audit_delete
//!     display_value: false           # false (default) | true | all
//!     page_size: 1000                # sysparm_limit
//!     http: { max_retries: 5 }
//!   incremental: { field: sys_updated_on }
//! ```
//!
//! Vendor documentation this follows:
//! - Table API, `GET /api/now/table/{tableName}` (sysparm_query with `ORDERBY`, sysparm_fields,
//!   sysparm_limit, sysparm_offset, sysparm_display_value, sysparm_exclude_reference_link, the
//!   `Link` header; "If part of the query is invalid, such as by specifying an invalid field name,
//!   the instance ignores the invalid part"):
//!   <https://docs.servicenow.com/bundle/geneva-servicenow-platform/page/integrate/inbound_rest/reference/r_TableAPI-GET.html>,
//!   <https://www.servicenow.com/docs/r/ko-KR/api-reference/rest-apis/c_TableAPI.html?contentId=vtAQdHKvSBdQ6SeXQ2AdXA>
//! - Table API FAQs (display values vs actual values; date/time values are UTC unless display
//!   values are asked for): <https://support.servicenow.com/kb?id=kb_article_view&sysparm_article=KB0534905>
//! - Encoded queries (`^` AND, `^OR`, `^NQ` new query, `ORDERBY`):
//!   <https://servicenow.github.io/sdk/guides/encoded-query-guide>
//! - Dates in web-service queries: a plain `YYYY-MM-DD HH:MM:SS` value is taken as UTC;
//!   `gs.dateGenerate` would convert from the API user's time zone:
//!   <https://www.servicenow.com/community/united-kingdom-snug/soap-web-service-and-time-zones-examples/ba-p/2270667>
//! - "Use ORDERBY so you don't get duplicate records" when paging with sysparm_limit + Link:
//!   <https://www.servicenow.com/community/developer-forum/want-to-limit-query-to-50-records-at-a-time-while-making-a-get/m-p/1913870>
//! - Inbound REST API rate limiting (429 with `Retry-After`, `X-RateLimit-*` headers):
//!   <https://www.servicenow.com/docs/r/australia/api-reference/rest-api-explorer/inbound-REST-API-rate-limiting.html>
//!
//! How reading works, and the quirks it handles:
//! - **Keyset paging, not offsets.** A window is read ordered by `<field>, sys_id`; each page
//!   asks for the rows after the last one read (`f>t ^NQ f=t^sys_id>id`, the encoded query's
//!   OR of two groups). Offsets shift when a row in the window is updated during the read (it
//!   leaves the window), which would skip a row for good; the keyset does not. Complete reads
//!   order by `sys_id` alone. `sysparm_offset` is used only to step over a page that came back
//!   empty while the `Link` header still names a next page (rows hidden by ACLs are removed
//!   after the limit is applied, so pages can be short or empty).
//! - **The window is `(start, end]`**: `f>start^f<=end` in UTC `YYYY-MM-DD HH:MM:SS`.
//! - **Invalid query parts are silently ignored** by the instance: the incremental field,
//!   `fields` and every field named in `query` are checked against `sys_dictionary` first (a
//!   misspelt `activ=true` would return every row), records outside the window are dropped
//!   client-side, and a page that does not move past the keyset (the paging condition was
//!   ignored) fails the read instead of looping.
//! - **The `Link` header holds raw commas** (the echoed `sysparm_fields=a,b,c`): it is parsed
//!   per RFC 8288 by [`super::link`]; a header that does not parse, or a link without `rel`,
//!   is an error, never "last page". Only an answer without any `Link` header is read until a
//!   short page.
//! - **Deleted records** (`include_deleted`): after the live rows, the table's
//!   `sys_audit_delete` rows (by deletion time, in the window) as `sys_deleted: true` rows.
//! - **Everything is a string** in Table API JSON (`"5"`, `"true"`, `""` for empty). Values are
//!   typed from `sys_dictionary.internal_type`: integers, floats, booleans, `glide_date_time` to
//!   RFC 3339 UTC, `glide_date` to dates; `""` becomes null.
//! - **Inherited columns**: `sys_dictionary` holds a column on the table that defines it
//!   (`incident` inherits most of its columns from `task`), so the table's `super_class` chain is
//!   followed through `sys_db_object`.
//! - **Reference fields** come as `{link, value}` objects unless
//!   `sysparm_exclude_reference_link=true`, which every request sends.
//! - **Display values**: `display_value: true` returns display values (labels of choices and
//!   references) — fetched as `all` so `sys_id` and the date/time columns keep their UTC actual
//!   values (display date/times are in the API user's time zone and format); every other column
//!   is then text. `all` keeps the typed actual value in `<field>` and adds
//!   `<field>_display`.

use super::auth::Authenticator;
use super::http::{HttpClient, HttpRequest, HttpResponse, HttpSettings};
use super::link::LinkTarget;
use super::*;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

const DEFAULT_PAGE_SIZE: u32 = 1000;
/// The Table API's own ceiling for sysparm_limit (its default).
const MAX_PAGE_SIZE: u32 = 10_000;
const SN_TIME: &str = "%Y-%m-%d %H:%M:%S";
/// Pages read when listing tables or columns before giving up (a looping `Link` header).
const MAX_META_PAGES: usize = 1000;

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
    fn parse(v: Option<&Value>) -> Result<Self, SourceError> {
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
    fn err() -> SourceError {
        SourceError::config(
            "source.properties.display_value",
            "must be false (actual values), true (display values) or all (both)",
        )
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 80
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl ServiceNowConfig {
    pub fn parse(props: &Map<String, Value>) -> Result<Self, SourceError> {
        parse_properties::<ServiceNowConfig>(props, None)
    }

    fn check(&self, entity: &str) -> Result<DisplayValue, SourceError> {
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

pub(super) fn validate(entity: &str, props: &Map<String, Value>) -> Vec<crate::flow::FieldError> {
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

/// A column: name, type, and the table it is inherited from.
type Column = (String, FieldType, Option<String>);

/// What `sys_dictionary` says about a table (read once per run: `fetch_metadata`).
#[derive(Debug, Serialize, Deserialize)]
struct TableMeta {
    /// Every column with its dictionary type, in output order.
    columns: Vec<Column>,
    types: HashMap<String, FieldType>,
}

/// The ServiceNow source bound to one flow.
pub struct ServiceNowSource {
    cfg: ServiceNowConfig,
    base: String,
    display: DisplayValue,
    http: HttpClient,
    meta: tokio::sync::Mutex<HashMap<String, std::sync::Arc<TableMeta>>>,
}

/// Where a read stands: after `(t, id)` (a window) or after `id` (complete), plus an offset
/// past pages that came back empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SnCursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after_id: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    offset: u64,
    /// Reading `sys_audit_delete` (after the live rows, with `include_deleted`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ServiceNowSource {
    pub fn new(props: &Map<String, Value>, auth: Authenticator) -> Result<Self, SourceError> {
        let cfg = ServiceNowConfig::parse(props)?;
        let display = cfg.check("")?;
        let base = cfg.instance_url.trim_end_matches('/').to_string();
        let http = HttpClient::new(cfg.http.clone(), std::sync::Arc::new(auth), &base)?;
        Ok(ServiceNowSource {
            cfg,
            base,
            display,
            http,
            meta: Default::default(),
        })
    }

    /// The authenticator (for tests: refresh counts).
    pub fn auth(&self) -> &Authenticator {
        &self.http.auth
    }

    async fn get(
        &self,
        table: &str,
        query: Vec<(String, String)>,
    ) -> Result<HttpResponse, SourceError> {
        let mut r = HttpRequest::get(format!("{}/api/now/table/{table}", self.base));
        r.query = query;
        r.headers = vec![("Accept".into(), "application/json".into())];
        self.http.send(&r).await?.ok_or_else(|| SourceError::Fatal {
            message: "an ignored status answered a ServiceNow request".into(),
        })
    }

    async fn get_url(&self, url: &str) -> Result<HttpResponse, SourceError> {
        let mut r = HttpRequest::get(url);
        r.headers = vec![("Accept".into(), "application/json".into())];
        self.http.send(&r).await?.ok_or_else(|| SourceError::Fatal {
            message: "an ignored status answered a ServiceNow request".into(),
        })
    }

    /// Every row of a metadata query, following the `Link` header.
    async fn get_all(
        &self,
        table: &str,
        query: Vec<(String, String)>,
    ) -> Result<Vec<Map<String, Value>>, SourceError> {
        let mut out = vec![];
        let mut resp = self.get(table, query).await?;
        for _ in 0..MAX_META_PAGES {
            let rows = result_rows(&resp)?;
            let empty = rows.is_empty();
            out.extend(rows);
            match super::link::target(&resp.headers, "next", &self.base, &resp.url)? {
                LinkTarget::Found(next) if !empty => resp = self.get_url(&next).await?,
                _ => return Ok(out),
            }
        }
        Err(SourceError::Rejected {
            message: format!(
                "{table}: the Link header kept naming a next page after {MAX_META_PAGES} pages"
            ),
        })
    }

    /// The table and its ancestors (`super_class`), the table first.
    async fn table_chain(&self, table: &str) -> Result<Vec<String>, SourceError> {
        let mut chain = vec![];
        let mut cur = table.to_string();
        while chain.len() < 16 && !cur.is_empty() && !chain.contains(&cur) {
            let rows = self
                .get(
                    "sys_db_object",
                    vec![
                        ("sysparm_query".into(), format!("name={cur}")),
                        (
                            "sysparm_fields".into(),
                            "name,label,super_class.name".into(),
                        ),
                        ("sysparm_exclude_reference_link".into(), "true".into()),
                        ("sysparm_limit".into(), "1".into()),
                    ],
                )
                .await?;
            let rows = result_rows(&rows)?;
            let Some(row) = rows.first() else {
                if chain.is_empty() {
                    return Err(SourceError::config(
                        "source.entity",
                        format!("'{table}' is not a table of this instance (no sys_db_object row), or the profile's user cannot read it; `ferry entities` lists the tables"),
                    ));
                }
                break;
            };
            // A name query on an unknown name is ignored by the instance: check the answer.
            if text(row.get("name")) != Some(cur.as_str()) {
                return Err(SourceError::Rejected {
                    message: format!(
                        "sys_db_object answered a row for '{}' when asked for '{cur}'",
                        text(row.get("name")).unwrap_or("")
                    ),
                });
            }
            chain.push(cur.clone());
            cur = text(row.get("super_class.name")).unwrap_or("").to_string();
        }
        Ok(chain)
    }

    async fn table_meta(&self, table: &str) -> Result<std::sync::Arc<TableMeta>, SourceError> {
        if let Some(m) = self.meta.lock().await.get(table) {
            return Ok(m.clone());
        }
        let chain = self.table_chain(table).await?;
        let rows = self
            .get_all(
                "sys_dictionary",
                vec![
                    (
                        "sysparm_query".into(),
                        format!(
                            "nameIN{}^elementISNOTEMPTY^internal_type!=collection^ORDERBYelement",
                            chain.join(",")
                        ),
                    ),
                    (
                        "sysparm_fields".into(),
                        "name,element,column_label,internal_type".into(),
                    ),
                    ("sysparm_exclude_reference_link".into(), "true".into()),
                    ("sysparm_limit".into(), "1000".into()),
                ],
            )
            .await?;
        // A column defined on the table overrides the one it inherits.
        let depth = |t: &str| chain.iter().position(|c| c == t).unwrap_or(usize::MAX);
        let mut best: BTreeMap<String, (usize, FieldType, Option<String>)> = BTreeMap::new();
        for r in &rows {
            let (Some(el), Some(t)) = (text(r.get("element")), text(r.get("name"))) else {
                continue;
            };
            let d = depth(t);
            if d == usize::MAX {
                continue;
            }
            let ty = sn_type(text(r.get("internal_type")).unwrap_or("string"));
            let label = text(r.get("column_label"))
                .filter(|s| !s.is_empty())
                .map(String::from);
            if best.get(el).is_none_or(|(bd, _, _)| d < *bd) {
                best.insert(el.to_string(), (d, ty, label));
            }
        }
        let mut columns: Vec<Column> = vec![];
        if let Some((_, t, l)) = best.remove("sys_id") {
            columns.push(("sys_id".into(), t, l));
        } else {
            columns.push(("sys_id".into(), FieldType::String, Some("Sys ID".into())));
        }
        columns.extend(best.into_iter().map(|(k, (_, t, l))| (k, t, l)));
        let types = columns
            .iter()
            .map(|(k, t, _)| (k.clone(), t.clone()))
            .collect();
        let m = std::sync::Arc::new(TableMeta { columns, types });
        self.meta.lock().await.insert(table.to_string(), m.clone());
        Ok(m)
    }

    /// The columns this flow reads (checked against the dictionary: the instance ignores
    /// unknown names in sysparm_fields).
    fn selected<'a>(
        &self,
        meta: &'a TableMeta,
        table: &str,
        must: &[&str],
    ) -> Result<Vec<&'a Column>, SourceError> {
        self.check_query(meta, table)?;
        let Some(fs) = &self.cfg.fields else {
            return Ok(meta.columns.iter().collect());
        };
        for (i, f) in fs.iter().enumerate() {
            if !meta.types.contains_key(f) {
                return Err(SourceError::config(
                    format!("source.properties.fields[{i}]"),
                    format!("'{f}' is not a column of {table} (the Table API would silently leave it out); `ferry entities describe` lists the columns"),
                ));
            }
        }
        Ok(meta
            .columns
            .iter()
            .filter(|(k, _, _)| k == "sys_id" || fs.contains(k) || must.contains(&k.as_str()))
            .collect())
    }

    fn page_size(&self, req: &ReadRequest) -> u32 {
        req.page_size
            .or(self.cfg.page_size)
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .clamp(1, MAX_PAGE_SIZE)
    }

    /// The encoded query of one page.
    fn encoded_query(&self, field: Option<&str>, window: Option<&Window>, c: &SnCursor) -> String {
        let mut base: Vec<String> = vec![];
        if let Some(q) = self.cfg.query.as_deref().filter(|q| !q.trim().is_empty()) {
            base.push(q.trim_matches('^').to_string());
        }
        keyset_query(base, field, window, c)
    }

    /// Every field the flow's encoded query names must be a column of the table: the instance
    /// silently drops a condition on an unknown field and returns every row.
    fn check_query(&self, meta: &TableMeta, table: &str) -> Result<(), SourceError> {
        let Some(q) = self.cfg.query.as_deref() else {
            return Ok(());
        };
        for (field, term) in query_fields(q)? {
            // A dot-walk (`caller_id.name`) starts at a reference column of this table.
            let head = field.split('.').next().unwrap_or(&field);
            if !meta.types.contains_key(head) {
                return Err(SourceError::config(
                    "source.properties.query",
                    format!(
                        "'{head}' (in the condition `{term}`) is not a column of {table}: the Table API would silently ignore that condition and return every row; fix the field name (`ferry entities FLOW --describe {table}` lists the columns)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// One record as ferry writes it: typed actual values, display values as asked.
    fn normalize(
        &self,
        meta: &TableMeta,
        raw: &Map<String, Value>,
        inc: Option<&str>,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        for (k, v) in raw {
            let ty = meta.types.get(k).cloned().unwrap_or(FieldType::String);
            match self.display {
                DisplayValue::False => {
                    out.insert(k.clone(), coerce(actual(v), &ty));
                }
                DisplayValue::True => {
                    let val =
                        if Some(k.as_str()) == inc || k == "sys_id" || ty == FieldType::Timestamp {
                            coerce(actual(v), &ty)
                        } else {
                            coerce(display(v), &FieldType::String)
                        };
                    out.insert(k.clone(), val);
                }
                DisplayValue::All => {
                    out.insert(k.clone(), coerce(actual(v), &ty));
                    out.insert(
                        format!("{k}_display"),
                        coerce(display(v), &FieldType::String),
                    );
                }
            }
        }
        if self.cfg.include_deleted {
            out.insert("sys_deleted".into(), Value::Bool(false));
        }
        out
    }
}

/// `base` conditions ANDed with the window on `field` and the keyset after the cursor, ordered
/// for keyset paging.
fn keyset_query(
    base: Vec<String>,
    field: Option<&str>,
    window: Option<&Window>,
    c: &SnCursor,
) -> String {
    let mut base = base;
    if let (Some(f), Some(w)) = (field, window) {
        if let Some(s) = w.start {
            base.push(format!("{f}>{}", s.format(SN_TIME)));
        }
        base.push(format!("{f}<={}", w.end.format(SN_TIME)));
    }
    let with = |extra: &[String]| {
        base.iter()
            .chain(extra)
            .cloned()
            .collect::<Vec<_>>()
            .join("^")
    };
    match (
        field.filter(|_| window.is_some()),
        &c.after_time,
        &c.after_id,
    ) {
        (Some(f), Some(t), Some(id)) => format!(
            "{}^NQ{}^ORDERBY{f}^ORDERBYsys_id",
            with(&[format!("{f}>{t}")]),
            with(&[format!("{f}={t}"), format!("sys_id>{id}")])
        ),
        (Some(f), _, _) => with(&[format!("ORDERBY{f}"), "ORDERBYsys_id".into()]),
        (None, _, Some(id)) => with(&[format!("sys_id>{id}"), "ORDERBYsys_id".into()]),
        (None, _, None) => with(&["ORDERBYsys_id".into()]),
    }
}

/// The fields an encoded query's conditions name, with the condition they appear in.
/// Conditions are separated by `^` (`^OR` starts an alternative); a condition is a field name
/// (lower-case letters, digits, `_`, and `.` for dot-walks) followed by an operator
/// (`=`, `!=`, `>`, `IN`, `LIKE`, `STARTSWITH`, `ISEMPTY`, …).
/// <https://servicenow.github.io/sdk/guides/encoded-query-guide>
fn query_fields(q: &str) -> Result<Vec<(String, String)>, SourceError> {
    let mut out = vec![];
    for term in q.split('^').map(str::trim).filter(|t| !t.is_empty()) {
        // `EQ` ends a query in URLs copied from list views; it names no field.
        if term == "EQ" {
            continue;
        }
        let cond = term.strip_prefix("OR").unwrap_or(term);
        let end = cond
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'))
            .unwrap_or(cond.len());
        let (field, op) = cond.split_at(end);
        if field.is_empty() || op.is_empty() || field.starts_with('.') || field.ends_with('.') {
            return Err(SourceError::config(
                "source.properties.query",
                format!(
                    "`{term}` is not a condition ferry can check (a lower-case field name followed by an operator, e.g. active=true or priority<=2); conditions are joined with ^ (AND) or ^OR"
                ),
            ));
        }
        out.push((field.to_string(), term.to_string()));
    }
    Ok(out)
}

/// `result` rows of a Table API answer.
fn result_rows(resp: &HttpResponse) -> Result<Vec<Map<String, Value>>, SourceError> {
    let rows = resp
        .body
        .get("result")
        .and_then(Value::as_array)
        .ok_or_else(|| SourceError::Rejected {
            message: format!(
                "{} answered {} without a `result` array",
                resp.url, resp.status
            ),
        })?;
    rows.iter()
        .map(|r| {
            r.as_object().cloned().ok_or_else(|| SourceError::Rejected {
                message: format!("{}: a `result` element is not an object", resp.url),
            })
        })
        .collect()
}

fn text(v: Option<&Value>) -> Option<&str> {
    match v? {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("value").and_then(Value::as_str),
        _ => None,
    }
}

/// The actual value of a field (`{display_value, value}` when both were asked for; a
/// `{link, value}` object for a reference whose link was not excluded).
fn actual(v: &Value) -> &Value {
    match v {
        Value::Object(o) if o.contains_key("value") => &o["value"],
        other => other,
    }
}

fn display(v: &Value) -> &Value {
    match v {
        Value::Object(o) if o.contains_key("display_value") => &o["display_value"],
        other => actual(other),
    }
}

/// The ferry type of a `sys_dictionary.internal_type`.
fn sn_type(t: &str) -> FieldType {
    match t {
        "integer" | "longint" | "auto_increment" | "order_index" => FieldType::Integer,
        "float" | "decimal" | "percent_complete" => FieldType::Float,
        "boolean" => FieldType::Boolean,
        "glide_date_time" | "due_date" | "calendar_date_time" => FieldType::Timestamp,
        "glide_date" => FieldType::Date,
        _ => FieldType::String,
    }
}

/// Table API JSON carries text; type it. `""` is an empty value.
fn coerce(v: &Value, ty: &FieldType) -> Value {
    let s = match v {
        Value::Null => return Value::Null,
        Value::String(s) if s.is_empty() => return Value::Null,
        Value::String(s) => s.as_str(),
        other => return other.clone(),
    };
    match ty {
        FieldType::Integer => s.parse::<i64>().map(Value::from).unwrap_or_else(|_| {
            s.parse::<f64>()
                .ok()
                .filter(|f| f.fract() == 0.0)
                .map(|f| Value::from(f as i64))
                .unwrap_or(Value::String(s.into()))
        }),
        FieldType::Float => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::String(s.into())),
        FieldType::Boolean => match s {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            other => Value::String(other.into()),
        },
        FieldType::Timestamp => parse_sn_time(s)
            .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
            .unwrap_or(Value::String(s.into())),
        FieldType::Date => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(|d| Value::String(d.to_string()))
            .unwrap_or(Value::String(s.into())),
        _ => Value::String(s.into()),
    }
}

fn parse_sn_time(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, SN_TIME)
        .map(|n| n.and_utc())
        .ok()
        .or_else(|| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
}

/// Whether a Table API answer names a next page: `Some(true/false)` from its `Link` header
/// (RFC 8288, raw commas and all), `None` when it has no `Link` header.
fn link_more(resp: &HttpResponse, req_url: &str) -> Result<Option<bool>, SourceError> {
    Ok(
        match super::link::target(&resp.headers, "next", req_url, &resp.url)? {
            LinkTarget::NoHeader => None,
            LinkTarget::Absent => Some(false),
            LinkTarget::Found(_) => Some(true),
        },
    )
}

#[async_trait]
impl Source for ServiceNowSource {
    async fn list_entities(&self) -> Result<Vec<EntityInfo>, SourceError> {
        let rows = self
            .get_all(
                "sys_db_object",
                vec![
                    ("sysparm_query".into(), "nameISNOTEMPTY^ORDERBYname".into()),
                    (
                        "sysparm_fields".into(),
                        "name,label,super_class.name".into(),
                    ),
                    ("sysparm_exclude_reference_link".into(), "true".into()),
                    ("sysparm_limit".into(), "1000".into()),
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let name = text(r.get("name"))?.to_string();
                let parent = text(r.get("super_class.name")).filter(|s| !s.is_empty());
                Some(EntityInfo {
                    label: text(r.get("label"))
                        .filter(|s| !s.is_empty())
                        .unwrap_or(&name)
                        .to_string(),
                    description: parent.map(|p| format!("extends {p}")),
                    name,
                })
            })
            .collect())
    }

    async fn describe(&self, entity: &str) -> Result<EntityDescription, SourceError> {
        let meta = self.table_meta(entity).await?;
        let must = ["sys_updated_on"];
        let mut fields = vec![];
        for (name, ty, label) in self.selected(&meta, entity, &must)? {
            let shown = match self.display {
                DisplayValue::True if name != "sys_id" && *ty != FieldType::Timestamp => {
                    FieldType::String
                }
                _ => ty.clone(),
            };
            let mut f = FieldInfo::new(name, shown.clone());
            f.label = label.clone();
            if name == "sys_id" {
                f = f.key();
            }
            if shown == FieldType::Timestamp {
                f = f.incremental();
            }
            fields.push(f);
            if self.display == DisplayValue::All {
                fields.push(FieldInfo::new(
                    &format!("{name}_display"),
                    FieldType::String,
                ));
            }
        }
        if self.cfg.include_deleted {
            fields.push(FieldInfo::new("sys_deleted", FieldType::Boolean).required());
        }
        Ok(EntityDescription {
            entity: entity.into(),
            fields,
        })
    }

    /// Time slices of the window field: each slice's `sysparm_query` bounds both ends
    /// (`field>start^field<=end`), and so does its read of deleted rows. Four at once by
    /// default: each slice is one request at a time, well inside the per-instance inbound REST
    /// rate-limit rules and semaphores an instance has by default (a 429 backs the slice off).
    fn slicing(&self, _entity: &str) -> Slicing {
        Slicing::Time { parallelism: 4 }
    }

    async fn fetch_metadata(&self, entity: &str) -> Result<Option<Value>, SourceError> {
        super::stage_metadata("servicenow", &*self.table_meta(entity).await?)
    }

    fn use_fetch_metadata(&mut self, entity: &str, data: &Value) -> Result<(), SourceError> {
        let m: TableMeta = super::staged_metadata("servicenow", data)?;
        self.meta
            .get_mut()
            .insert(entity.to_string(), std::sync::Arc::new(m));
        Ok(())
    }

    async fn read_page(
        &self,
        req: &ReadRequest,
        cursor: Option<&Value>,
    ) -> Result<Page, SourceError> {
        let table = req.entity.as_str();
        let meta = self.table_meta(table).await?;
        let field = req
            .incremental_field
            .as_deref()
            .filter(|_| req.window.is_some());
        if let Some(f) = field {
            match meta.types.get(f) {
                Some(FieldType::Timestamp) => {}
                Some(_) => {
                    return Err(SourceError::config(
                        "source.incremental.field",
                        format!("'{f}' is not a date/time column of {table}; use sys_updated_on"),
                    ))
                }
                None => {
                    return Err(SourceError::config(
                        "source.incremental.field",
                        format!("'{f}' is not a column of {table} (the instance would ignore the window filter and return every row); use sys_updated_on"),
                    ))
                }
            }
        }
        let must: Vec<&str> = field.into_iter().collect();
        let selected = self.selected(&meta, table, &must)?;
        let c: SnCursor = super::cursor_from("servicenow", cursor)?.unwrap_or_default();
        if c.deleted {
            return self.read_deleted(req, field, c).await;
        }
        let limit = self.page_size(req);
        let mut query = vec![
            (
                "sysparm_query".to_string(),
                self.encoded_query(field, req.window.as_ref(), &c),
            ),
            ("sysparm_limit".into(), limit.to_string()),
            ("sysparm_exclude_reference_link".into(), "true".into()),
            (
                "sysparm_display_value".into(),
                match self.display {
                    DisplayValue::False => "false",
                    // Display values for every column but the keys: ask for both.
                    DisplayValue::True | DisplayValue::All => "all",
                }
                .into(),
            ),
        ];
        if self.cfg.fields.is_some() {
            query.push((
                "sysparm_fields".into(),
                selected
                    .iter()
                    .map(|(k, _, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ));
        }
        if c.offset > 0 {
            query.push(("sysparm_offset".into(), c.offset.to_string()));
        }
        let resp = self.get(table, query).await?;
        let rows = result_rows(&resp)?;
        // The end of data is the absence of a `Link rel="next"`; only an instance that sends no
        // Link header at all is read until a short page.
        let more = link_more(&resp, &self.base)?.unwrap_or(rows.len() as u32 >= limit);
        let mut records = Vec::with_capacity(rows.len());
        let mut last: Option<(Option<String>, String)> = None;
        for (n, raw) in rows.iter().enumerate() {
            let id = text(raw.get("sys_id"))
                .filter(|s| !s.is_empty())
                .ok_or_else(|| SourceError::Rejected {
                    message: format!("{}: a {table} row has no sys_id", resp.url),
                })?;
            let key_time = match field {
                None => None,
                Some(f) => {
                    let t = text(raw.get(f)).unwrap_or("");
                    let Some(parsed) = parse_sn_time(t) else {
                        return Err(SourceError::Rejected {
                            message: format!(
                                "{}: row {n} of the page of {table} has {} in {f}; every row needs a UTC date/time (YYYY-MM-DD HH:MM:SS) there to place it in the window",
                                resp.url,
                                // The value itself is customer data: not in the message.
                                if t.is_empty() { "no value" } else { "a value that is not a date/time" }
                            ),
                        });
                    };
                    // The instance drops invalid query parts: keep only what is in the window.
                    if let Some(w) = &req.window {
                        if w.contains(parsed) {
                            records.push(Value::Object(self.normalize(&meta, raw, field)));
                        }
                    }
                    Some(t.to_string())
                }
            };
            if field.is_none() {
                records.push(Value::Object(self.normalize(&meta, raw, None)));
            }
            last = Some((key_time, id.to_string()));
        }
        let next = match last {
            Some((t, id)) => {
                // The page must move past the keyset; if it does not, the paging condition
                // was ignored and the same rows would come back forever.
                let stuck = c
                    .after_id
                    .as_ref()
                    .is_some_and(|pid| (&c.after_time, pid) >= (&t, &id));
                if stuck {
                    return Err(SourceError::Rejected {
                        message: format!(
                            "{}: the page did not move past the last row read; the instance ignored the paging condition, stopping instead of reading the same rows again",
                            resp.url
                        ),
                    });
                }
                more.then_some(SnCursor {
                    after_time: t,
                    after_id: Some(id),
                    offset: 0,
                    deleted: false,
                })
            }
            None => more.then(|| SnCursor {
                offset: c.offset + limit as u64,
                ..c.clone()
            }),
        };
        // After the live rows, the deleted ones.
        let next = next.or_else(|| {
            self.cfg.include_deleted.then(|| SnCursor {
                deleted: true,
                ..Default::default()
            })
        });
        Ok(Page {
            records,
            next: next.map(|n| super::cursor_json(&n)).transpose()?,
            bytes: resp.bytes,
        })
    }
}

impl ServiceNowSource {
    /// One page of the table's deleted records: `sys_audit_delete` rows whose `tablename` is
    /// the table, by deletion time (`sys_created_on`, the window applies to it) and sys_id.
    /// Each becomes `{sys_id: documentkey, <incremental field>: deleted at, sys_deleted: true}`.
    /// <https://support.servicenow.com/kb?id=kb_article_view&sysparm_article=KB0724183>,
    /// <https://hi.service-now.com/kb_view.do?sysparm_article=KB0634666>
    async fn read_deleted(
        &self,
        req: &ReadRequest,
        field: Option<&str>,
        c: SnCursor,
    ) -> Result<Page, SourceError> {
        let table = req.entity.as_str();
        let limit = self.page_size(req);
        let key = field.map(|_| "sys_created_on");
        let mut query = vec![
            (
                "sysparm_query".to_string(),
                keyset_query(
                    vec![format!("tablename={table}")],
                    key,
                    req.window.as_ref(),
                    &c,
                ),
            ),
            ("sysparm_limit".into(), limit.to_string()),
            (
                "sysparm_fields".into(),
                "sys_id,tablename,documentkey,sys_created_on".into(),
            ),
            ("sysparm_exclude_reference_link".into(), "true".into()),
        ];
        if c.offset > 0 {
            query.push(("sysparm_offset".into(), c.offset.to_string()));
        }
        let resp = self.get("sys_audit_delete", query).await?;
        let rows = result_rows(&resp)?;
        let more = link_more(&resp, &self.base)?.unwrap_or(rows.len() as u32 >= limit);
        let inc = req.incremental_field.as_deref().unwrap_or("sys_updated_on");
        let mut records = vec![];
        let mut last: Option<(Option<String>, String)> = None;
        for r in &rows {
            let (Some(id), Some(doc), Some(at)) = (
                text(r.get("sys_id")).filter(|s| !s.is_empty()),
                text(r.get("documentkey")).filter(|s| !s.is_empty()),
                text(r.get("sys_created_on")).and_then(parse_sn_time),
            ) else {
                return Err(SourceError::Rejected {
                    message: format!("{}: a sys_audit_delete row lacks sys_id, documentkey or a sys_created_on date/time", resp.url),
                });
            };
            // The instance drops conditions on fields it does not know: keep the table's rows
            // in the window only.
            let ours = text(r.get("tablename")) == Some(table);
            if ours && req.window.as_ref().is_none_or(|w| w.contains(at)) {
                let mut o = Map::new();
                o.insert("sys_id".into(), Value::String(doc.into()));
                o.insert(
                    inc.into(),
                    Value::String(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                );
                o.insert("sys_deleted".into(), Value::Bool(true));
                records.push(Value::Object(o));
            }
            last = Some((
                key.and(text(r.get("sys_created_on")).map(String::from)),
                id.to_string(),
            ));
        }
        let next = match last {
            Some((t, id)) => {
                if c.after_id.is_some()
                    && (c.after_time.clone(), c.after_id.clone()) >= (t.clone(), Some(id.clone()))
                {
                    return Err(SourceError::Rejected {
                        message: format!("{}: the page did not move past the last sys_audit_delete row read; the instance ignored the paging condition, stopping instead of looping", resp.url),
                    });
                }
                more.then_some(SnCursor {
                    after_time: t,
                    after_id: Some(id),
                    offset: 0,
                    deleted: true,
                })
            }
            None => more.then(|| SnCursor {
                offset: c.offset + limit as u64,
                ..c.clone()
            }),
        };
        Ok(Page {
            records,
            next: next.map(|n| super::cursor_json(&n)).transpose()?,
            bytes: resp.bytes,
        })
    }
}

/// The `servicenow` connector in the [registry](super::registry).
pub static CONNECTOR: super::registry::Connector = super::registry::Connector {
    name: "servicenow",
    appflow_type: Some("Servicenow"),
    needs_profile: true,
    oauth_client_auth: super::auth::ClientAuth::Body,
    auth_kinds: &[
        "basic",
        "oauth2_refresh_token",
        "oauth2_client_credentials",
        "bearer",
    ],
    consent: Some(&super::consent::SERVICENOW),
    static_description: false,
    validate,
    build: |source, profile| {
        let auth =
            super::registry::require(profile, "servicenow", "its credentials")?.authenticator()?;
        Ok(Box::new(ServiceNowSource::new(&source.properties, auth)?))
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn src(v: Value) -> ServiceNowSource {
        ServiceNowSource::new(&props(v), Authenticator::none()).unwrap()
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = validate("incident", &props(json!({"instance_url": "acme"})));
        assert_eq!(e[0].path, "source.properties.instance_url");
        let e = validate(
            "Incident; drop",
            &props(json!({"instance_url": "https://a.service-now.com"})),
        );
        assert_eq!(e[0].path, "source.entity");
        let e = validate(
            "incident",
            &props(json!({"instance_url": "https://a.service-now.com", "display_value": "maybe"})),
        );
        assert_eq!(e[0].path, "source.properties.display_value");
        let e = validate(
            "incident",
            &props(json!({"instance_url": "https://a.service-now.com", "sysparm_limit": 5})),
        );
        assert!(e[0].message.contains("sysparm_limit"), "{}", e[0]);
        let e = validate(
            "incident",
            &props(json!({"instance_url": "https://a.service-now.com", "query": "a=1^NQb=2"})),
        );
        assert_eq!(e[0].path, "source.properties.query");
        let e = validate(
            "incident",
            &props(json!({"instance_url": "https://a.service-now.com", "page_size": 0})),
        );
        assert_eq!(e[0].path, "source.properties.page_size");
        assert!(validate(
            "incident",
            &props(json!({"instance_url": "https://a.service-now.com", "display_value": true}))
        )
        .is_empty());
        assert!(validate("x_acme_table", &props(json!({"instance_url": "https://a.service-now.com", "display_value": "all", "fields": ["number"]}))).is_empty());
    }

    #[test]
    fn window_and_keyset_queries() {
        let s = src(json!({"instance_url": "https://a.service-now.com", "query": "active=true"}));
        let w = Window {
            start: Some(
                DateTime::parse_from_rfc3339("2026-01-01T00:00:00.700Z")
                    .unwrap()
                    .with_timezone(&Utc),
            ),
            end: DateTime::parse_from_rfc3339("2026-01-02T10:20:30Z")
                .unwrap()
                .with_timezone(&Utc),
        };
        assert_eq!(
            s.encoded_query(Some("sys_updated_on"), Some(&w), &SnCursor::default()),
            "active=true^sys_updated_on>2026-01-01 00:00:00^sys_updated_on<=2026-01-02 10:20:30^ORDERBYsys_updated_on^ORDERBYsys_id"
        );
        let c = SnCursor {
            after_time: Some("2026-01-01 05:00:00".into()),
            after_id: Some("abc".into()),
            offset: 0,
            deleted: false,
        };
        assert_eq!(
            s.encoded_query(Some("sys_updated_on"), Some(&w), &c),
            "active=true^sys_updated_on>2026-01-01 00:00:00^sys_updated_on<=2026-01-02 10:20:30^sys_updated_on>2026-01-01 05:00:00\
             ^NQactive=true^sys_updated_on>2026-01-01 00:00:00^sys_updated_on<=2026-01-02 10:20:30^sys_updated_on=2026-01-01 05:00:00^sys_id>abc\
             ^ORDERBYsys_updated_on^ORDERBYsys_id"
        );
        let c = SnCursor {
            after_time: None,
            after_id: Some("abc".into()),
            offset: 0,
            deleted: false,
        };
        assert_eq!(
            s.encoded_query(None, None, &c),
            "active=true^sys_id>abc^ORDERBYsys_id"
        );
    }

    #[test]
    fn query_conditions_name_their_fields() {
        let fields: Vec<String> = query_fields(
            "active=true^priority<=2^ORstate=6^caller_id.nameSTARTSWITHAb^short_descriptionLIKEdisk^assigned_toISEMPTY^EQ",
        )
        .unwrap()
        .into_iter()
        .map(|(f, _)| f)
        .collect();
        assert_eq!(
            fields,
            [
                "active",
                "priority",
                "state",
                "caller_id.name",
                "short_description",
                "assigned_to"
            ]
        );
        for bad in ["active", "=true", "Active=true", "a=1^^", "caller_id.=x"] {
            let r = query_fields(bad);
            if bad == "a=1^^" {
                assert!(r.is_ok());
                continue;
            }
            let e = r.unwrap_err();
            assert!(
                e.to_string().contains("source.properties.query"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn values_are_typed_and_empty_is_null() {
        assert_eq!(coerce(&json!("42"), &FieldType::Integer), json!(42));
        assert_eq!(coerce(&json!(""), &FieldType::Integer), Value::Null);
        assert_eq!(coerce(&json!("1.5"), &FieldType::Float), json!(1.5));
        assert_eq!(coerce(&json!("true"), &FieldType::Boolean), json!(true));
        assert_eq!(
            coerce(&json!("2026-01-01 10:00:05"), &FieldType::Timestamp),
            json!("2026-01-01T10:00:05Z")
        );
        assert_eq!(
            coerce(&json!("2026-01-01"), &FieldType::Date),
            json!("2026-01-01")
        );
        assert_eq!(
            coerce(&json!("INC001"), &FieldType::String),
            json!("INC001")
        );
        assert_eq!(sn_type("glide_date_time"), FieldType::Timestamp);
        assert_eq!(sn_type("reference"), FieldType::String);
        assert_eq!(
            actual(&json!({"link": "https://x", "value": "abc"})),
            &json!("abc")
        );
        assert_eq!(
            display(&json!({"display_value": "High", "value": "2"})),
            &json!("High")
        );
    }

    #[test]
    fn link_header_with_raw_commas_names_the_next_page() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            "<https://a.service-now.com/api/now/table/incident?sysparm_fields=number,sys_id&sysparm_offset=0>;rel=\"first\",<https://a.service-now.com/api/now/table/incident?sysparm_fields=number,sys_id&sysparm_offset=10>;rel=\"next\"".parse().unwrap(),
        );
        let resp = HttpResponse {
            status: 200,
            headers: h,
            body: json!({"result": []}),
            bytes: 0,
            url: "u".into(),
        };
        assert_eq!(
            link_more(&resp, "https://a.service-now.com").unwrap(),
            Some(true)
        );
    }
}
