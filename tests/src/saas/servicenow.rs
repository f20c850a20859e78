//! A ServiceNow instance as the Table API shows it: `GET /api/now/table/{table}` with
//! `sysparm_query` (encoded query: `^`, `^OR`, `^NQ`, `ORDERBY`, `=`, `!=`, `>`, `>=`, `<`, `<=`,
//! `IN`, `ISEMPTY`, `ISNOTEMPTY`; conditions on unknown fields are silently ignored, as the
//! instance does), `sysparm_fields` (unknown names ignored, `super_class.name` dot-walk),
//! `sysparm_limit`/`sysparm_offset` with `Link` and `X-Total-Count` headers,
//! `sysparm_display_value` (`true`/`false`/`all`), reference fields as `{link, value}` unless
//! `sysparm_exclude_reference_link=true`, every value a string (`""` when empty), Basic auth or
//! OAuth bearer tokens from `POST /oauth_token.do`, and ServiceNow's error bodies
//! (`{"error": {"message", "detail"}, "status": "failure"}`), 429 with `Retry-After` and
//! `X-RateLimit-*` headers.
//!
//! Data: tables `task` (base), `incident` (extends task) and `sys_user`; `sys_db_object` and
//! `sys_dictionary` describe them. Incident `i` (1..=n) has a pseudo-random `sys_id` (so sys_id
//! order is not time order) and `sys_updated_on = BASE + 20 s * (i / 3)`: three rows share each
//! second, so paging has to break ties.

use crate::{Fault, Seen};
use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// `sys_updated_on` of incident `i` as first served.
pub fn updated_on(i: u64) -> DateTime<Utc> {
    base_time() + ChronoDuration::seconds(20 * (i / 3) as i64)
}

pub fn sys_id(i: u64) -> String {
    // A fixed permutation of i: hex digits in no time order.
    let x = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ 0x5bd1_e995;
    format!("{:016x}{:016x}", x, i)
}

pub fn sn_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

#[derive(Debug, Clone)]
pub enum SnAuth {
    Basic {
        user: String,
        password: String,
    },
    /// OAuth: `POST /oauth_token.do` (refresh_token grant, client id/secret as Basic auth).
    OAuth {
        client_id: String,
        client_secret: String,
        refresh_token: String,
    },
}

#[derive(Debug, Clone)]
pub struct SnConfig {
    pub incidents: u64,
    pub auth: SnAuth,
    /// Incidents whose number is a multiple of this are hidden by ACLs: removed from a page
    /// after the limit is applied (pages come back short), still counted in X-Total-Count.
    pub acl_hidden_every: Option<u64>,
}

impl Default for SnConfig {
    fn default() -> Self {
        SnConfig {
            incidents: 200,
            auth: SnAuth::Basic {
                user: "ferry.integration".into(),
                password: "sn-pass-1".into(),
            },
            acl_hidden_every: None,
        }
    }
}

type Row = BTreeMap<String, String>;

#[derive(Default)]
struct Tables {
    /// table -> rows (actual values as strings)
    rows: HashMap<String, Vec<Row>>,
    /// table -> parent
    parent: HashMap<String, String>,
    /// (table, column) -> internal_type
    columns: BTreeMap<(String, String), String>,
}

struct Inner {
    cfg: SnConfig,
    tables: Mutex<Tables>,
    /// (data requests answered, incidents): edit those incidents, at the time of the next
    /// request, once the mock has answered that many (a user editing while ferry pages).
    scheduled: Mutex<Vec<(u64, Vec<u64>)>>,
    common: super::Common,
    tokens: Mutex<(BTreeSet<String>, String, u64)>,
    codes: super::oauth::AuthCodes,
}

type S = Arc<Inner>;

/// A running mock instance.
pub struct ServiceNowMock {
    pub addr: SocketAddr,
    inner: S,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ServiceNowMock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const STATES: [&str; 7] = [
    "New",
    "In Progress",
    "On Hold",
    "Resolved",
    "Closed",
    "Canceled",
    "New",
];
const PRIORITIES: [&str; 5] = [
    "1 - Critical",
    "2 - High",
    "3 - Moderate",
    "4 - Low",
    "5 - Planning",
];

fn incident(i: u64) -> Row {
    let mut r = Row::new();
    let mut put = |k: &str, v: String| {
        r.insert(k.into(), v);
    };
    put("sys_id", sys_id(i));
    put("number", format!("INC{:07}", i));
    put("short_description", format!("Incident {i}"));
    put("state", (1 + i % 7).to_string());
    put("priority", (1 + i % 5).to_string());
    put("active", (!i.is_multiple_of(4)).to_string());
    put(
        "assigned_to",
        if i.is_multiple_of(5) {
            String::new()
        } else {
            format!("{:032x}", 1000 + i % 3)
        },
    );
    put("caller_id", format!("{:032x}", 1000 + i % 3));
    put(
        "reopen_count",
        if i.is_multiple_of(6) {
            String::new()
        } else {
            (i % 3).to_string()
        },
    );
    put(
        "sys_created_on",
        sn_time(updated_on(i) - ChronoDuration::days(1)),
    );
    put("sys_updated_on", sn_time(updated_on(i)));
    put(
        "due_date",
        if i.is_multiple_of(2) {
            String::new()
        } else {
            sn_time(updated_on(i) + ChronoDuration::days(3))
        },
    );
    r
}

fn seed(cfg: &SnConfig) -> Tables {
    let mut t = Tables::default();
    let cols: &[(&str, &str, &str)] = &[
        ("task", "sys_id", "GUID"),
        ("task", "number", "string"),
        ("task", "short_description", "string"),
        ("task", "state", "integer"),
        ("task", "priority", "integer"),
        ("task", "active", "boolean"),
        ("task", "assigned_to", "reference"),
        ("task", "sys_created_on", "glide_date_time"),
        ("task", "sys_updated_on", "glide_date_time"),
        ("task", "due_date", "due_date"),
        ("incident", "caller_id", "reference"),
        ("incident", "reopen_count", "integer"),
        ("sys_user", "sys_id", "GUID"),
        ("sys_user", "user_name", "string"),
        ("sys_user", "name", "string"),
        ("sys_user", "sys_updated_on", "glide_date_time"),
    ];
    for (tb, c, ty) in cols {
        t.columns
            .insert((tb.to_string(), c.to_string()), ty.to_string());
    }
    t.parent.insert("incident".into(), "task".into());
    let objs = [
        ("task", "Task", ""),
        ("incident", "Incident", "task"),
        ("sys_user", "User", ""),
    ];
    let mut db = vec![];
    for (name, label, sup) in objs {
        let mut r = Row::new();
        r.insert("sys_id".into(), format!("{:032x}", name.len() * 7919));
        r.insert("name".into(), name.into());
        r.insert("label".into(), label.into());
        r.insert(
            "super_class".into(),
            if sup.is_empty() {
                String::new()
            } else {
                format!("{:032x}", sup.len() * 7919)
            },
        );
        r.insert("super_class.name".into(), sup.into());
        db.push(r);
    }
    t.rows.insert("sys_db_object".into(), db);
    let mut dict = vec![];
    for ((tb, c), ty) in &t.columns {
        let mut r = Row::new();
        r.insert("sys_id".into(), format!("d{:031x}", dict.len()));
        r.insert("name".into(), tb.clone());
        r.insert("element".into(), c.clone());
        r.insert("column_label".into(), c.replace('_', " "));
        r.insert("internal_type".into(), ty.clone());
        dict.push(r);
    }
    // The collection row every table has: no element.
    for tb in ["task", "incident", "sys_user"] {
        let mut r = Row::new();
        r.insert("sys_id".into(), format!("c{:031x}", tb.len()));
        r.insert("name".into(), tb.into());
        r.insert("element".into(), String::new());
        r.insert("column_label".into(), tb.into());
        r.insert("internal_type".into(), "collection".into());
        dict.push(r);
    }
    t.rows.insert("sys_dictionary".into(), dict);
    // Deleted records (System Definition > Deleted Records): one row per deletion, `tablename`
    // and `documentkey` (the deleted record's sys_id), `sys_created_on` the time of deletion.
    // <https://support.servicenow.com/kb?id=kb_article_view&sysparm_article=KB0724183>,
    // <https://hi.service-now.com/kb_view.do?sysparm_article=KB0634666>
    t.rows.insert("sys_audit_delete".into(), vec![]);
    t.rows.insert(
        "incident".into(),
        (1..=cfg.incidents).map(incident).collect(),
    );
    t.rows.insert(
        "sys_user".into(),
        (0..3)
            .map(|k| {
                let mut r = Row::new();
                r.insert("sys_id".into(), format!("{:032x}", 1000 + k));
                r.insert("user_name".into(), format!("agent{k}"));
                r.insert("name".into(), format!("Agent {k}"));
                r.insert("sys_updated_on".into(), sn_time(base_time()));
                r
            })
            .collect(),
    );
    t
}

impl ServiceNowMock {
    pub async fn start(cfg: SnConfig) -> ServiceNowMock {
        let refresh = match &cfg.auth {
            SnAuth::OAuth { refresh_token, .. } => refresh_token.clone(),
            _ => String::new(),
        };
        let inner = Arc::new(Inner {
            tables: Mutex::new(seed(&cfg)),
            scheduled: Mutex::new(vec![]),
            cfg,
            common: Default::default(),
            tokens: Mutex::new((BTreeSet::new(), refresh, 0)),
            codes: Default::default(),
        });
        let app = Router::new()
            .route("/api/now/table/{table}", get(table))
            .route("/oauth_token.do", post(token))
            .route("/oauth_auth.do", get(authorize))
            .layer(axum::middleware::from_fn_with_state(inner.clone(), gate))
            .with_state(inner.clone());
        let (addr, task) = super::serve(app, "servicenow").await;
        ServiceNowMock { addr, inner, task }
    }

    /// The authorization-code grant's state (refuse the next consent, the last request).
    pub fn consent(&self) -> &super::oauth::AuthCodes {
        &self.inner.codes
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.inner.common.faults.lock().unwrap().extend(faults);
    }

    pub fn fault_every(&self, every: u64, faults: Vec<Fault>) {
        *self.inner.common.periodic.lock().unwrap() = Some((every, faults));
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.inner.common.log.lock().unwrap().clone()
    }

    /// Requests for one table's rows.
    pub fn table_requests(&self, table: &str) -> Vec<Seen> {
        let p = format!("/api/now/table/{table}");
        self.requests()
            .into_iter()
            .filter(|r| r.path == p)
            .collect()
    }

    /// Set incident `i`'s `sys_updated_on` (a user edits it while ferry reads).
    pub fn touch(&self, i: u64, at: DateTime<Utc>) {
        let mut t = self.inner.tables.lock().unwrap();
        let id = sys_id(i);
        for r in t.rows.get_mut("incident").unwrap() {
            if r["sys_id"] == id {
                r.insert("sys_updated_on".into(), sn_time(at));
            }
        }
    }

    /// Edit incidents `is` (their `sys_updated_on` becomes the time of the edit) once `after`
    /// data requests have been answered.
    pub fn touch_after(&self, after: u64, is: &[u64]) {
        self.inner
            .scheduled
            .lock()
            .unwrap()
            .push((after, is.to_vec()));
    }

    /// (number, sys_updated_on as RFC 3339) of every incident as the instance holds it now.
    pub fn versions(&self) -> BTreeSet<(u64, String)> {
        let t = self.inner.tables.lock().unwrap();
        t.rows["incident"]
            .iter()
            .map(|r| {
                (
                    r["number"][3..].parse::<u64>().unwrap(),
                    format!("{}Z", r["sys_updated_on"].replace(' ', "T")),
                )
            })
            .collect()
    }

    /// Delete incident `i` at `at`: the row goes, a `sys_audit_delete` row records it.
    pub fn delete(&self, i: u64, at: DateTime<Utc>) {
        let mut t = self.inner.tables.lock().unwrap();
        let id = sys_id(i);
        t.rows
            .get_mut("incident")
            .unwrap()
            .retain(|r| r["sys_id"] != id);
        let audit = t.rows.get_mut("sys_audit_delete").unwrap();
        let mut r = Row::new();
        r.insert(
            "sys_id".into(),
            format!("a{:031x}", i * 7 + audit.len() as u64),
        );
        r.insert("tablename".into(), "incident".into());
        r.insert("documentkey".into(), id);
        r.insert("display_value".into(), format!("INC{i:07}"));
        r.insert("sys_created_on".into(), sn_time(at));
        r.insert(
            "payload".into(),
            format!("<?xml version=\"1.0\"?><incident><number>INC{i:07}</number></incident>"),
        );
        audit.push(r);
    }

    /// Numbers of the incidents (visible to the API user) updated in `(start, end]`.
    pub fn incidents_in(
        &self,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> BTreeSet<u64> {
        let t = self.inner.tables.lock().unwrap();
        t.rows["incident"]
            .iter()
            .filter(|r| {
                let u = DateTime::parse_from_rfc3339(&format!(
                    "{}Z",
                    r["sys_updated_on"].replace(' ', "T")
                ))
                .unwrap()
                .with_timezone(&Utc);
                start.is_none_or(|s| u > s) && end.is_none_or(|e| u <= e)
            })
            .map(|r| r["number"][3..].parse::<u64>().unwrap())
            .filter(|i| self.inner.cfg.acl_hidden_every.is_none_or(|k| i % k != 0))
            .collect()
    }
}

fn error(status: StatusCode, message: &str, detail: Value) -> Response {
    (
        status,
        axum::Json(json!({"error": {"message": message, "detail": detail}, "status": "failure"})),
    )
        .into_response()
}

/// One condition of an encoded query.
#[derive(Debug)]
struct Cond {
    field: String,
    op: String,
    value: String,
}

const OPS: [&str; 9] = [
    "ISNOTEMPTY",
    "ISEMPTY",
    "IN",
    ">=",
    "<=",
    "!=",
    ">",
    "<",
    "=",
];

fn parse_cond(term: &str) -> Option<Cond> {
    // The field is the leading run of name characters (and dots).
    let end = term
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'))
        .unwrap_or(term.len());
    let (field, rest) = term.split_at(end);
    let op = OPS.iter().find(|o| rest.starts_with(**o))?;
    Some(Cond {
        field: field.into(),
        op: (*op).into(),
        value: rest[op.len()..].into(),
    })
}

fn cmp_vals(a: &str, b: &str) -> std::cmp::Ordering {
    // Numbers compare as numbers (short values only: a sys_id of digits is still text).
    let num = |s: &str| {
        if s.len() <= 15 {
            s.parse::<f64>().ok()
        } else {
            None
        }
    };
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    }
}

fn matches(c: &Cond, r: &Row) -> bool {
    let v = r.get(&c.field).map(String::as_str).unwrap_or("");
    use std::cmp::Ordering::*;
    match c.op.as_str() {
        "ISNOTEMPTY" => !v.is_empty(),
        "ISEMPTY" => v.is_empty(),
        "IN" => c.value.split(',').any(|x| x == v),
        "=" => v == c.value,
        "!=" => v != c.value,
        ">" => !v.is_empty() && cmp_vals(v, &c.value) == Greater,
        ">=" => !v.is_empty() && cmp_vals(v, &c.value) != Less,
        "<" => !v.is_empty() && cmp_vals(v, &c.value) == Less,
        "<=" => !v.is_empty() && cmp_vals(v, &c.value) != Greater,
        _ => true,
    }
}

/// Filter and order rows by an encoded query; conditions on fields the table lacks are ignored.
fn run_query(rows: &[Row], q: &str, known: &dyn Fn(&str) -> bool) -> Vec<Row> {
    let mut order: Vec<(String, bool)> = vec![];
    // groups (^NQ) of AND-ed clauses, each clause an OR of conditions
    let mut groups: Vec<Vec<Vec<Cond>>> = vec![];
    for g in q.split("^NQ") {
        let mut clauses: Vec<Vec<Cond>> = vec![];
        for term in g.split('^').filter(|t| !t.is_empty()) {
            if let Some(f) = term.strip_prefix("ORDERBYDESC") {
                order.push((f.into(), true));
            } else if let Some(f) = term.strip_prefix("ORDERBY") {
                order.push((f.into(), false));
            } else if let Some(t) = term.strip_prefix("OR") {
                if let (Some(c), Some(last)) = (parse_cond(t), clauses.last_mut()) {
                    if known(&c.field) {
                        last.push(c);
                    }
                }
            } else if let Some(c) = parse_cond(term) {
                if known(&c.field) {
                    clauses.push(vec![c]);
                }
            }
        }
        groups.push(clauses);
    }
    let mut out: Vec<Row> = rows
        .iter()
        .filter(|r| {
            groups
                .iter()
                .any(|g| g.iter().all(|clause| clause.iter().any(|c| matches(c, r))))
        })
        .cloned()
        .collect();
    out.sort_by(|a, b| {
        for (f, desc) in &order {
            let o = cmp_vals(
                a.get(f).map(String::as_str).unwrap_or(""),
                b.get(f).map(String::as_str).unwrap_or(""),
            );
            let o = if *desc { o.reverse() } else { o };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    out
}

fn display_of(table: &str, field: &str, ty: &str, v: &str) -> String {
    if v.is_empty() {
        return String::new();
    }
    match (table, field, ty) {
        (_, "state", _) => STATES[(v.parse::<usize>().unwrap_or(1) - 1) % 7].into(),
        (_, "priority", _) => PRIORITIES[(v.parse::<usize>().unwrap_or(1) - 1) % 5].into(),
        (_, _, "reference") => format!(
            "Agent {}",
            u64::from_str_radix(v, 16).unwrap_or(1000) - 1000
        ),
        // Display date/times are in the API user's time zone (US/Pacific here) and format.
        (_, _, "glide_date_time" | "due_date") => {
            let t = chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S")
                .unwrap()
                .and_utc()
                - ChronoDuration::hours(8);
            t.format("%m-%d-%Y %I:%M:%S %p").to_string()
        }
        _ => v.into(),
    }
}

/// `GET /api/now/table/{table}`: "If part of the query is invalid, such as by specifying an
/// invalid field name, the instance ignores the invalid part"; `sysparm_fields` comma-separated;
/// `Link` (first/prev/next/last, raw commas in the echoed `sysparm_fields`, `%2C` inside
/// `sysparm_query`) and `X-Total-Count` headers.
/// <https://docs.servicenow.com/bundle/geneva-servicenow-platform/page/integrate/inbound_rest/reference/r_TableAPI-GET.html>,
/// <https://githubissues.com/ServiceNowITOM/ansible-sn-inventory/15>
async fn table(
    State(s): State<S>,
    Path(table): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let t = s.tables.lock().unwrap();
    let Some(rows) = t.rows.get(&table) else {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("Invalid table {table}"),
            Value::Null,
        );
    };
    let mut chain = vec![table.clone()];
    while let Some(p) = t.parent.get(chain.last().unwrap()) {
        chain.push(p.clone());
    }
    let col_type = |f: &str| -> Option<String> {
        chain
            .iter()
            .find_map(|tb| t.columns.get(&(tb.clone(), f.to_string())).cloned())
    };
    let meta_table = matches!(
        table.as_str(),
        "sys_db_object" | "sys_dictionary" | "sys_audit_delete"
    );
    let known = |f: &str| meta_table || col_type(f).is_some();
    let all = run_query(
        rows,
        q.get("sysparm_query").map(String::as_str).unwrap_or(""),
        &known,
    );
    let limit: usize = q
        .get("sysparm_limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let offset: usize = q
        .get("sysparm_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let total = all.len();
    let mut page: Vec<Row> = all.into_iter().skip(offset).take(limit).collect();
    if let (Some(k), "incident") = (s.cfg.acl_hidden_every, table.as_str()) {
        page.retain(|r| r["number"][3..].parse::<u64>().unwrap() % k != 0);
    }
    let fields: Option<Vec<String>> = q
        .get("sysparm_fields")
        .map(|f| f.split(',').map(String::from).collect());
    let dv = q
        .get("sysparm_display_value")
        .map(String::as_str)
        .unwrap_or("false");
    let exclude_links = q.get("sysparm_exclude_reference_link").map(String::as_str) == Some("true");
    // Links (reference links, `Link` header) are absolute URLs on the instance's own host.
    let base_url = format!(
        "http://{}",
        super::header(&headers, "host").unwrap_or("instance")
    );
    let result: Vec<Value> = page
        .iter()
        .map(|r| {
            let mut o = Map::new();
            let keys: Vec<String> = match &fields {
                Some(fs) => fs.iter().filter(|f| r.contains_key(*f)).cloned().collect(),
                None => r.keys().filter(|k| !k.contains('.')).cloned().collect(),
            };
            for k in keys {
                let v = r[&k].clone();
                let ty = col_type(&k).unwrap_or_else(|| "string".into());
                let link = (ty == "reference" && !exclude_links && !v.is_empty())
                    .then(|| format!("{base_url}/api/now/table/sys_user/{v}"));
                let val = match dv {
                    "true" => json!(display_of(&table, &k, &ty, &v)),
                    "all" => json!({"display_value": display_of(&table, &k, &ty, &v), "value": v}),
                    _ => match &link {
                        Some(l) => json!({"link": l, "value": v}),
                        None => json!(v),
                    },
                };
                let val = match (dv, &link, val) {
                    ("true" | "all", Some(l), Value::String(d)) => {
                        json!({"display_value": d, "link": l})
                    }
                    ("all", Some(l), Value::Object(mut m)) => {
                        m.insert("link".into(), json!(l));
                        Value::Object(m)
                    }
                    (_, _, v) => v,
                };
                o.insert(k, val);
            }
            Value::Object(o)
        })
        .collect();
    let mut resp = axum::Json(json!({ "result": result })).into_response();
    let h = resp.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total as u64));
    let link_at = |off: usize, rel: &str| {
        let mut pairs: Vec<(String, String)> =
            q.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        pairs.retain(|(k, _)| k != "sysparm_offset");
        pairs.push(("sysparm_offset".into(), off.to_string()));
        pairs.sort();
        // A real instance echoes the request's parameters with raw commas
        // (`sysparm_fields=number,short_description`) inside the `<…>` of each link value.
        let query: Vec<String> = pairs
            .into_iter()
            .map(|(k, v)| {
                let kv = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair(&k, &v)
                    .finish();
                // As an instance writes it: the field list with raw commas, the encoded
                // query percent-encoded (commas as %2C).
                if k == "sysparm_fields" {
                    kv.replace("%2C", ",")
                } else {
                    kv
                }
            })
            .collect();
        format!(
            "<{base_url}/api/now/table/{table}?{}>;rel=\"{rel}\"",
            query.join("&")
        )
    };
    let mut links = vec![link_at(0, "first")];
    if offset > 0 {
        links.push(link_at(offset.saturating_sub(limit), "prev"));
    }
    if offset + limit < total {
        links.push(link_at(offset + limit, "next"));
    }
    links.push(link_at(
        total.saturating_sub(1) / limit.max(1) * limit,
        "last",
    ));
    h.insert("link", HeaderValue::from_str(&links.join(",")).unwrap());
    resp
}

async fn token(State(s): State<S>, _headers: HeaderMap, body: String) -> Response {
    let SnAuth::OAuth {
        client_id,
        client_secret,
        ..
    } = &s.cfg.auth
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    // oauth_token.do takes client_id and client_secret as form fields (OAuth API request
    // parameters docs).
    let body_ok = form.get("client_id") == Some(client_id)
        && form.get("client_secret") == Some(client_secret);
    if !body_ok {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error_description": "access_denied", "error": "server_error"})),
        )
            .into_response();
    }
    if form.get("grant_type").map(String::as_str) == Some("authorization_code") {
        // Authorization code grant: code, redirect_uri, client_id and client_secret (private
        // client) or code_verifier (public client), form-encoded.
        // https://www.servicenow.com/docs/r/zurich/platform-security/authentication/authorization-workflow.html
        if let Err((e, d)) = s.codes.redeem(&form) {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error_description": d, "error": e})),
            )
                .into_response();
        }
        let mut tk = s.tokens.lock().unwrap();
        tk.2 += 1;
        let at = format!("sn-at-{}", tk.2);
        tk.0.insert(at.clone());
        return axum::Json(json!({"access_token": at, "refresh_token": tk.1, "scope": "useraccount", "token_type": "Bearer", "expires_in": 1799})).into_response();
    }
    let mut tk = s.tokens.lock().unwrap();
    if form.get("grant_type").map(String::as_str) != Some("refresh_token")
        || form.get("refresh_token") != Some(&tk.1)
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error_description": "access_denied", "error": "server_error"})),
        )
            .into_response();
    }
    tk.2 += 1;
    let at = format!("sn-at-{}", tk.2);
    tk.0.insert(at.clone());
    axum::Json(json!({"access_token": at, "refresh_token": tk.1, "scope": "useraccount", "token_type": "Bearer", "expires_in": 1799})).into_response()
}

/// `oauth_auth.do`: `response_type=code`, `client_id`, `redirect_uri`, `scope`, and `state`,
/// which new instances require (`glide.oauth.state.parameter.required`); PKCE S256 for public
/// clients.
/// https://www.servicenow.com/docs/r/zurich/platform-security/authentication/authorization-workflow.html
async fn authorize(State(s): State<S>, RawQuery(q): RawQuery) -> Response {
    let SnAuth::OAuth { client_id, .. } = &s.cfg.auth else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let d = super::oauth::Dialect {
        client_id: client_id.clone(),
        scope_param: "scope",
        require_state: true,
        pkce: super::oauth::Pkce::Optional,
    };
    s.codes.authorize(&d, q.as_deref().unwrap_or(""))
}

fn authorized(s: &S, headers: &HeaderMap) -> bool {
    let h = headers.get("authorization").and_then(|v| v.to_str().ok());
    match &s.cfg.auth {
        SnAuth::Basic { user, password } => {
            h == Some(format!("Basic {}", crate::b64(&format!("{user}:{password}"))).as_str())
        }
        SnAuth::OAuth { .. } => h
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| s.tokens.lock().unwrap().0.contains(t)),
    }
}

async fn gate(State(s): State<S>, req: Request<Body>, next: axum::middleware::Next) -> Response {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let resp = if path == "/oauth_token.do" || path == "/oauth_auth.do" {
        next.run(req).await
    } else if !authorized(&s, req.headers()) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "User Not Authenticated",
            json!("Required to provide Auth information"),
        );
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("BASIC realm=\"Service-now\""),
        );
        r
    } else {
        let answered = s
            .common
            .data_requests
            .load(std::sync::atomic::Ordering::SeqCst);
        let due: Vec<u64> = {
            let mut sch = s.scheduled.lock().unwrap();
            let (due, later): (Vec<_>, Vec<_>) = sch.drain(..).partition(|(n, _)| *n <= answered);
            *sch = later;
            due.into_iter().flat_map(|(_, is)| is).collect()
        };
        if !due.is_empty() {
            let now = Utc::now();
            let mut t = s.tables.lock().unwrap();
            for r in t.rows.get_mut("incident").unwrap() {
                let i: u64 = r["number"][3..].parse().unwrap();
                if due.contains(&i) {
                    r.insert("sys_updated_on".into(), sn_time(now));
                }
            }
        }
        match s.common.next_fault() {
            Some(Fault::Status {
                status: 429,
                retry_after,
            }) => {
                let mut r = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Rate limit exceeded",
                    json!("The request rate limit for user ferry.integration has been exceeded"),
                );
                let h = r.headers_mut();
                h.insert("x-ratelimit-limit", HeaderValue::from_static("1000"));
                h.insert("x-ratelimit-rule", HeaderValue::from_static("a1b2c3"));
                if let Some(ra) = retry_after {
                    h.insert("retry-after", HeaderValue::from_str(&ra).unwrap());
                }
                r
            }
            Some(Fault::Status { status, .. }) => error(
                StatusCode::from_u16(status).unwrap(),
                "Injected failure",
                Value::Null,
            ),
            Some(Fault::Slow(d)) => {
                tokio::time::sleep(d).await;
                next.run(req).await
            }
            Some(Fault::Truncated) | Some(Fault::Malformed) => (
                StatusCode::OK,
                "<html><body>Instance hibernating</body></html>",
            )
                .into_response(),
            None => next.run(req).await,
        }
    };
    s.common
        .record(at, &method, &path, &query, resp.status().as_u16());
    resp
}
