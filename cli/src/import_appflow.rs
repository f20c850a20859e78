//! `ferry flows import-appflow FILE`: an Amazon AppFlow flow definition -> a ferry flow.
//!
//! Accepts a CreateFlow request (or DescribeFlow output) as JSON, a CloudFormation template
//! holding one `AWS::AppFlow::Flow` resource, or that resource's `Properties`, in JSON or YAML.
//! Everything that has a ferry equivalent is translated; everything else is listed, with the
//! AppFlow path, as a [`Problem`]. Tasks are reordered into ferry's top-to-bottom order:
//! row filters, validations, masks/truncations (on the source values), computed fields
//! (arithmetic, merge), then the field selection (map_all, map): so a masked field is masked in
//! every mapped copy, as in AppFlow.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Something in the AppFlow definition ferry cannot express.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the AppFlow definition, e.g. `tasks[3].connectorOperator`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The translated flow (as JSON, the shape of `ferry::flow::Flow`) and what could not be.
#[derive(Debug)]
pub struct Imported {
    pub flow: Value,
    pub problems: Vec<Problem>,
    pub notes: Vec<String>,
}

/// Top-level keys of a CreateFlow request, DescribeFlow output or `AWS::AppFlow::Flow`
/// `Properties` that the importer reads or knowingly ignores (DescribeFlow's read-only fields).
const KNOWN_TOP_LEVEL: &[&str] = &[
    "flowName",
    "description",
    "kmsArn",
    "kMSArn",
    "triggerConfig",
    "sourceFlowConfig",
    "destinationFlowConfigList",
    "tasks",
    "tags",
    "metadataCatalogConfig",
    "flowStatus",
    "clientToken",
    "flowArn",
    "flowStatusMessage",
    "createdAt",
    "lastUpdatedAt",
    "createdBy",
    "lastUpdatedBy",
    "lastRunExecutionDetails",
    "lastRunMetadataCatalogDetails",
    "schemaVersion",
];

/// The field an AppFlow incremental pull uses when the flow names none: each connector's own
/// last-modified field in ferry (its registry entry).
fn default_incremental_field(connector: &str, entity: &str) -> Option<String> {
    ferry::connector::REGISTRY
        .get(connector)?
        .last_modified_field(entity)
        .map(str::to_string)
}

/// Lower-case the first letter of CamelCase keys (CloudFormation spells `FlowName`, the API
/// `flowName`); ALL_CAPS keys (task properties) and keys without lower-case letters (`S3`) stay.
fn normalize(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let k = if k.chars().any(|c| c.is_ascii_lowercase()) {
                        let mut c = k.chars();
                        match c.next() {
                            Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
                            None => k,
                        }
                    } else {
                        k
                    };
                    (k, normalize(v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        other => other,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The single value of a one-key object such as `{"Salesforce": "NO_OP"}`.
fn only_value(v: &Value) -> Option<&Value> {
    v.as_object()
        .and_then(|m| m.values().find(|v| !v.is_null()))
}

/// Task properties: a map (API) or a list of `{Key, Value}` (CloudFormation).
fn task_properties(v: Option<&Value>) -> Map<String, Value> {
    match v {
        Some(Value::Object(m)) => m.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|kv| {
                Some((
                    kv.get("key")?.as_str()?.to_string(),
                    kv.get("value")?.clone(),
                ))
            })
            .collect(),
        _ => Map::new(),
    }
}

/// A list property: a JSON array in a string (`"[\"a\",\"b\"]"`), or comma-separated text.
fn list_property(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(text).collect(),
        Value::String(s) => {
            let s = s.trim();
            if s.starts_with('[') {
                serde_json::from_str::<Vec<Value>>(s)
                    .map(|a| a.iter().filter_map(text).collect())
                    .unwrap_or_default()
            } else if s.is_empty() {
                vec![]
            } else {
                s.split(',').map(|x| x.trim().to_string()).collect()
            }
        }
        _ => vec![],
    }
}

/// AppFlow's `rate(5minutes)` as EventBridge writes it: `rate(5 minutes)` (`1 minute`).
pub fn schedule_expression(e: &str) -> String {
    let e = e.trim();
    let Some(inner) = e.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) else {
        return e.to_string();
    };
    let inner = inner.trim();
    let digits: String = inner.chars().take_while(|c| c.is_ascii_digit()).collect();
    let unit = inner[digits.len()..]
        .trim()
        .trim_end_matches('s')
        .to_lowercase();
    if digits.is_empty() || unit.is_empty() {
        return e.to_string();
    }
    let n: u64 = digits.parse().unwrap_or(0);
    format!("rate({n} {unit}{})", if n == 1 { "" } else { "s" })
}

/// AppFlow times: epoch seconds (API numbers), epoch millis (filter values) or RFC 3339.
fn time_value(v: &Value) -> Option<String> {
    let t = text(v)?;
    if let Ok(n) = t.parse::<i64>() {
        let dt = if n > 100_000_000_000 {
            chrono::DateTime::from_timestamp_millis(n)
        } else {
            chrono::DateTime::from_timestamp(n, 0)
        }?;
        return Some(dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    }
    if let Ok(f) = t.parse::<f64>() {
        return chrono::DateTime::from_timestamp(f as i64, 0)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    }
    chrono::DateTime::parse_from_rfc3339(&t).ok().map(|d| {
        d.to_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    })
}

/// A ferry cast type for an AppFlow data type name.
fn cast_type(t: &str) -> Option<&'static str> {
    Some(match t.to_lowercase().as_str() {
        "string" | "id" | "reference" | "textarea" | "picklist" | "multipicklist" | "email"
        | "phone" | "url" | "text" | "combobox" | "encryptedstring" => "string",
        "int" | "integer" | "long" | "short" | "byte" => "integer",
        "double" | "float" | "percent" | "currency" | "number" => "float",
        "decimal" => "decimal",
        "boolean" | "bool" => "boolean",
        "date" => "date",
        "datetime" | "timestamp" | "time" => "timestamp",
        _ => return None,
    })
}

/// A filter value in the field's data type (datetime filters carry epoch millis).
fn filter_value(v: &Value, data_type: Option<&str>) -> Value {
    let is_time = data_type.is_some_and(|t| matches!(cast_type(t), Some("timestamp" | "date")));
    if is_time {
        if let Some(t) = time_value(v) {
            return Value::String(t);
        }
    }
    match text(v) {
        Some(s) => match data_type.and_then(cast_type) {
            Some("integer") => s
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or(Value::String(s)),
            Some("float" | "decimal") => serde_json::from_str::<serde_json::Number>(&s)
                .map(Value::Number)
                .unwrap_or(Value::String(s)),
            Some("boolean") => s
                .parse::<bool>()
                .map(Value::from)
                .unwrap_or(Value::String(s)),
            _ => Value::String(s),
        },
        None => v.clone(),
    }
}

/// YAML as JSON, with CloudFormation's short-form tags as their long form (`!Ref X` ->
/// `{"Ref": "X"}`, `!Sub s` -> `{"Fn::Sub": s}`, `!GetAtt a.b` -> `{"Fn::GetAtt": ["a", "b"]}`).
fn yaml_to_json(v: serde_yaml::Value) -> Result<Value, String> {
    use serde_yaml::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).map_err(|e| e.to_string())?,
        Y::String(s) => Value::String(s),
        Y::Sequence(a) => Value::Array(a.into_iter().map(yaml_to_json).collect::<Result<_, _>>()?),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let k = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => return Err(format!("a mapping key that is not text: {other:?}")),
                };
                out.insert(k, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = yaml_to_json(t.value)?;
            let key = match name {
                "Ref" | "Condition" => name.to_string(),
                _ => format!("Fn::{name}"),
            };
            let inner = match (name, inner) {
                ("GetAtt", Value::String(s)) => match s.split_once('.') {
                    Some((a, b)) => json!([a, b]),
                    None => Value::String(s),
                },
                (_, v) => v,
            };
            json!({ key: inner })
        }
    })
}

/// Resolves CloudFormation intrinsic functions: `--set` values first, then parameter defaults,
/// literal resource names and `Mappings`. What cannot be known becomes a problem (and a visible
/// `<unresolved ...>` placeholder), never an empty string.
struct Resolver<'a> {
    set: &'a BTreeMap<String, String>,
    parameters: Map<String, Value>,
    resources: Map<String, Value>,
    mappings: Map<String, Value>,
    problems: Vec<Problem>,
    notes: Vec<String>,
}

impl Resolver<'_> {
    fn unresolved(&mut self, at: &str, what: &str, key: &str) -> Value {
        self.problems.push(Problem {
            path: at.to_string(),
            message: format!("{what} cannot be resolved from the template; pass --set {key}=VALUE"),
        });
        Value::String(format!("<unresolved {what}>"))
    }

    /// The value a `Ref` stands for.
    fn reference(&mut self, name: &str, at: &str) -> Value {
        if let Some(v) = self.set.get(name) {
            return Value::String(v.clone());
        }
        if let Some(p) = self.parameters.get(name).cloned() {
            if let Some(d) = p.get("Default") {
                let d = self.resolve(d.clone(), at);
                self.notes.push(format!(
                    "{at}: parameter {name} taken at its default {d} (--set {name}=VALUE to change)"
                ));
                return d;
            }
            return self.unresolved(at, &format!("parameter {name} (no Default)"), name);
        }
        if let Some(r) = self.resources.get(name).cloned() {
            let ty = r.get("Type").and_then(Value::as_str).unwrap_or_default();
            let name_prop = match ty {
                "AWS::S3::Bucket" => Some("BucketName"),
                "AWS::AppFlow::ConnectorProfile" => Some("ConnectorProfileName"),
                "AWS::Glue::Database" => None,
                _ => None,
            };
            if let Some(v) = name_prop.and_then(|p| r.pointer(&format!("/Properties/{p}"))) {
                return self.resolve(v.clone(), at);
            }
            return self.unresolved(
                at,
                &format!("Ref {name} ({ty}; its name is generated by CloudFormation)"),
                name,
            );
        }
        match name {
            "AWS::Partition" => Value::String("aws".into()),
            "AWS::URLSuffix" => Value::String("amazonaws.com".into()),
            "AWS::NoValue" => Value::Null,
            _ => self.unresolved(at, &format!("Ref {name}"), name),
        }
    }

    fn text_of(&mut self, v: Value, at: &str) -> String {
        match self.resolve(v, at) {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => text(&other).unwrap_or_else(|| other.to_string()),
        }
    }

    /// `${Name}`, `${Res.Attr}` and `${!Literal}` in a `Fn::Sub` string.
    fn sub(&mut self, template: &str, vars: &Map<String, Value>, at: &str) -> String {
        let mut out = String::new();
        let mut rest = template;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[i..]);
                return out;
            };
            let name = &after[..end];
            if let Some(lit) = name.strip_prefix('!') {
                out.push_str(&format!("${{{lit}}}"));
            } else if let Some(v) = vars.get(name) {
                let t = self.text_of(v.clone(), at);
                out.push_str(&t);
            } else if name.contains('.') {
                let v = match self.set.get(name) {
                    Some(v) => v.clone(),
                    None => {
                        let u = self.unresolved(at, &format!("${{{name}}}"), name);
                        self.text_of(u, at)
                    }
                };
                out.push_str(&v);
            } else {
                let t = self.reference(name, at);
                let t = self.text_of(t, at);
                out.push_str(&t);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn resolve(&mut self, v: Value, at: &str) -> Value {
        match v {
            Value::Array(a) => Value::Array(
                a.into_iter()
                    .enumerate()
                    .map(|(i, x)| self.resolve(x, &format!("{at}[{i}]")))
                    .collect(),
            ),
            Value::Object(m) if m.len() == 1 => {
                let Some((k, arg)) = m.into_iter().next() else {
                    return Value::Object(Map::new());
                };
                match k.as_str() {
                    "Ref" => match arg {
                        Value::String(n) => self.reference(&n, at),
                        other => self.unresolved(at, &format!("Ref {other}"), "NAME"),
                    },
                    "Fn::Sub" => {
                        let (tpl, vars) = match arg {
                            Value::String(s) => (s, Map::new()),
                            Value::Array(a) if a.len() == 2 => (
                                text(&a[0]).unwrap_or_default(),
                                a[1].as_object().cloned().unwrap_or_default(),
                            ),
                            other => {
                                return self.unresolved(at, &format!("Fn::Sub {other}"), "NAME")
                            }
                        };
                        Value::String(self.sub(&tpl, &vars, at))
                    }
                    "Fn::Join" => match arg {
                        Value::Array(a) if a.len() == 2 => {
                            let sep = text(&a[0]).unwrap_or_default();
                            let parts = match self.resolve(a[1].clone(), at) {
                                Value::Array(p) => p,
                                other => vec![other],
                            };
                            let parts: Vec<String> =
                                parts.into_iter().map(|p| self.text_of(p, at)).collect();
                            Value::String(parts.join(&sep))
                        }
                        other => self.unresolved(at, &format!("Fn::Join {other}"), "NAME"),
                    },
                    "Fn::Select" => match arg {
                        Value::Array(a) if a.len() == 2 => {
                            let i = self.text_of(a[0].clone(), at).parse::<usize>().unwrap_or(0);
                            match self.resolve(a[1].clone(), at) {
                                Value::Array(list) if i < list.len() => list[i].clone(),
                                other => {
                                    self.unresolved(at, &format!("Fn::Select {other}"), "NAME")
                                }
                            }
                        }
                        other => self.unresolved(at, &format!("Fn::Select {other}"), "NAME"),
                    },
                    "Fn::GetAtt" => {
                        let key = match &arg {
                            Value::Array(a) => {
                                a.iter().filter_map(text).collect::<Vec<_>>().join(".")
                            }
                            other => text(other).unwrap_or_default(),
                        };
                        match self.set.get(&key) {
                            Some(v) => Value::String(v.clone()),
                            None => self.unresolved(at, &format!("Fn::GetAtt {key}"), &key),
                        }
                    }
                    "Fn::FindInMap" => match arg {
                        Value::Array(a) if a.len() == 3 => {
                            let keys: Vec<String> =
                                a.into_iter().map(|x| self.text_of(x, at)).collect();
                            match self
                                .mappings
                                .get(&keys[0])
                                .and_then(|m| m.get(&keys[1]))
                                .and_then(|m| m.get(&keys[2]))
                                .cloned()
                            {
                                Some(v) => self.resolve(v, at),
                                None => self.unresolved(
                                    at,
                                    &format!("Fn::FindInMap {}", keys.join(".")),
                                    &keys.join("."),
                                ),
                            }
                        }
                        other => self.unresolved(at, &format!("Fn::FindInMap {other}"), "NAME"),
                    },
                    f if f.starts_with("Fn::") => {
                        self.unresolved(at, &format!("{f} (not evaluated by the importer)"), "NAME")
                    }
                    _ => {
                        let child = format!("{at}.{}", lower_first(&k));
                        let mut out = Map::new();
                        out.insert(k, self.resolve(arg, &child));
                        Value::Object(out)
                    }
                }
            }
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| {
                        let child = if at.is_empty() {
                            lower_first(&k)
                        } else {
                            format!("{at}.{}", lower_first(&k))
                        };
                        let v = self.resolve(v, &child);
                        (k, v)
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}

fn lower_first(k: &str) -> String {
    if k.chars().any(|c| c.is_ascii_lowercase()) {
        let mut c = k.chars();
        match c.next() {
            Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
            None => String::new(),
        }
    } else {
        k.to_string()
    }
}

/// Translate an AppFlow definition (text: JSON or YAML). `set` gives values CloudFormation
/// intrinsic functions stand for, and (`properties.NAME`) connector properties the AppFlow
/// connector profile held.
pub fn import(text_in: &str, set: &BTreeMap<String, String>) -> Result<Imported, String> {
    let raw: Value = match serde_json::from_str(text_in) {
        Ok(v) => v,
        Err(_) => yaml_to_json(
            serde_yaml::from_str::<serde_yaml::Value>(text_in)
                .map_err(|e| format!("not JSON or YAML: {e}"))?,
        )?,
    };
    let mut resolver = Resolver {
        set,
        parameters: Map::new(),
        resources: Map::new(),
        mappings: Map::new(),
        problems: vec![],
        notes: vec![],
    };
    // A CloudFormation template: pick the AWS::AppFlow::Flow resource.
    let props =
        match raw.get("Resources").and_then(Value::as_object) {
            Some(res) => {
                resolver.resources = res.clone();
                resolver.parameters = raw
                    .get("Parameters")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                resolver.mappings = raw
                    .get("Mappings")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let flows: Vec<&Value> = res
                    .values()
                    .filter(|r| r.get("Type").and_then(Value::as_str) == Some("AWS::AppFlow::Flow"))
                    .collect();
                match flows.as_slice() {
                    [one] => one.get("Properties").cloned().unwrap_or(Value::Null),
                    [] => return Err("the template has no AWS::AppFlow::Flow resource".into()),
                    _ => return Err(
                        "the template has several AWS::AppFlow::Flow resources; keep one per file"
                            .into(),
                    ),
                }
            }
            None => raw,
        };
    let resolved = resolver.resolve(props, "");
    let v = normalize(resolved);
    if v.get("flowName").is_none() && v.get("sourceFlowConfig").is_none() {
        return Err(
            "this is not an AppFlow flow: expected a CreateFlow request (flowName, sourceFlowConfig, ...) \
             or a CloudFormation template with an AWS::AppFlow::Flow resource"
                .into(),
        );
    }
    let mut t = Translator {
        problems: resolver.problems,
        notes: resolver.notes,
        set: set.clone(),
    };
    let flow = t.flow(&v);
    Ok(Imported {
        flow,
        problems: t.problems,
        notes: t.notes,
    })
}

#[derive(Default)]
struct Translator {
    problems: Vec<Problem>,
    /// What the import assumed (a parameter's default, an AppFlow default made explicit).
    notes: Vec<String>,
    set: BTreeMap<String, String>,
}

impl Translator {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }

    fn flow(&mut self, v: &Value) -> Value {
        let mut flow = Map::new();
        let name = v.get("flowName").and_then(text).unwrap_or_default();
        let ok_name = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .collect::<String>();
        if ok_name != name {
            self.note(format!(
                "flowName '{name}' has characters ferry flow names do not allow (object keys use it); renamed to '{ok_name}'"
            ));
        }
        flow.insert("name".into(), json!(ok_name));
        if let Some(d) = v.get("description").and_then(text) {
            flow.insert("description".into(), json!(d));
        }
        let src = v.get("sourceFlowConfig").cloned().unwrap_or(Value::Null);
        let (mut trigger, incremental_extra, pull_mode) = self.trigger(v.get("triggerConfig"));
        let mut source = self.source(&src, pull_mode.as_deref());
        // A schedule without an incremental field can only reread everything.
        if source.get("incremental").is_none() {
            if let Some(s) = trigger.get_mut("scheduled").and_then(Value::as_object_mut) {
                if s.get("mode").and_then(Value::as_str) == Some("incremental") {
                    if pull_mode.is_some() {
                        self.problem(
                            "triggerConfig.triggerProperties.dataPullMode",
                            "is Incremental but the source names no datetimeTypeFieldName and the connector has no default one; imported as complete (set source.incremental.field)",
                        );
                    }
                    s.insert("mode".into(), json!("complete"));
                }
            }
        }
        if let Some(extra) = incremental_extra {
            match source.get_mut("incremental").and_then(Value::as_object_mut) {
                Some(inc) => inc.extend(extra),
                None if !extra.is_empty() => self.problem(
                    "triggerConfig.triggerProperties",
                    "firstExecutionFrom/scheduleOffset need an incremental field \
                     (sourceFlowConfig.incrementalPullConfig.datetimeTypeFieldName); they were dropped",
                ),
                None => {}
            }
        }
        flow.insert("source".into(), Value::Object(source));
        let mut destination = self.destination(v.get("destinationFlowConfigList"));
        if let Some(k) = v.get("kmsArn").or_else(|| v.get("kMSArn")).and_then(text) {
            if let Some(s3) = destination.get_mut("s3").and_then(Value::as_object_mut) {
                s3.insert("kms_key_id".into(), json!(k));
            }
        }
        let (tasks, partition) = self.tasks(v.get("tasks"));
        if !partition.is_empty() {
            if let Some(layout) = destination
                .entry("layout")
                .or_insert_with(|| json!({}))
                .as_object_mut()
            {
                layout.insert("partition_by".into(), json!(partition));
            }
        }
        flow.insert("destination".into(), Value::Object(destination));
        if !tasks.is_empty() {
            flow.insert("tasks".into(), Value::Array(tasks));
        }
        flow.insert("trigger".into(), trigger);
        let tags = match v.get("tags") {
            Some(Value::Object(m)) => m
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), json!(text(v)?))))
                .collect::<Map<_, _>>(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|kv| Some((text(kv.get("key")?)?, json!(text(kv.get("value")?)?))))
                .collect(),
            _ => Map::new(),
        };
        if !tags.is_empty() {
            flow.insert("tags".into(), Value::Object(tags));
        }
        if let Some(glue) = v
            .get("metadataCatalogConfig")
            .and_then(|m| m.get("glueDataCatalog"))
            .filter(|g| !g.is_null())
        {
            if let Some(catalog) = self.catalog(glue, &ok_name) {
                if let Some(d) = flow.get_mut("destination").and_then(Value::as_object_mut) {
                    d.insert("catalog".into(), catalog);
                }
            }
        }
        match v.get("flowStatus").and_then(text).as_deref() {
            None | Some("Active") | Some("Draft") => {}
            Some(other) => self.problem(
                "flowStatus",
                format!("is {other}: ferry flows are active once registered; suspend the schedule after `ferry flows put` if you need it paused"),
            ),
        }
        for (k, _) in v.as_object().into_iter().flatten() {
            if !KNOWN_TOP_LEVEL.contains(&k.as_str()) {
                self.problem(
                    k.clone(),
                    "is not an AppFlow flow setting ferry knows; it was ignored",
                );
            }
        }
        Value::Object(flow)
    }

    /// AppFlow's `metadataCatalogConfig.glueDataCatalog` as `destination.catalog`: the database,
    /// the table prefix (AppFlow puts it before each table name). The role is not needed: the
    /// finalize function's own role registers the table.
    fn catalog(&mut self, g: &Value, flow: &str) -> Option<Value> {
        let at = "metadataCatalogConfig.glueDataCatalog";
        let glue_name = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        let Some(db) = g.get("databaseName").and_then(text) else {
            self.problem(
                format!("{at}.databaseName"),
                "is missing; set destination.catalog.database to the Glue database",
            );
            return None;
        };
        let database = glue_name(&db);
        if database != db {
            self.note(format!(
                "{at}.databaseName '{db}' has characters Athena does not allow in names; imported as '{database}'"
            ));
        }
        let mut c = Map::new();
        c.insert("database".into(), json!(database));
        if let Some(p) = g
            .get("tablePrefix")
            .and_then(text)
            .filter(|p| !p.is_empty())
        {
            let mut prefix = glue_name(&p);
            if !prefix.ends_with('_') {
                prefix.push('_');
            }
            self.note(format!(
                "{at}.tablePrefix '{p}': the table is '{prefix}{}'",
                ferry::flow::catalog::default_table(flow)
            ));
            c.insert("table_prefix".into(), json!(prefix));
        }
        if g.get("roleArn").and_then(text).is_some() {
            self.note(format!(
                "{at}.roleArn is not used: ferry's finalize function registers the table with its own role (docs/deploy.md, Glue permissions)"
            ));
        }
        Some(Value::Object(c))
    }

    fn source(&mut self, s: &Value, pull_mode: Option<&str>) -> Map<String, Value> {
        let mut out = Map::new();
        let ct = s.get("connectorType").and_then(text).unwrap_or_default();
        let forced = self.set.get("connector").cloned();
        let connector = forced.clone().or_else(|| {
            ferry::connector::REGISTRY
                .by_appflow_type(&ct)
                .map(|c| c.name.to_string())
        });
        let connector = match connector {
            Some(c) => c,
            None => {
                self.problem(
                    "sourceFlowConfig.connectorType",
                    format!(
                        "ferry has no {ct} connector (it has {}); \
                         the flow keeps '{}' so you can swap in another connector (or --set connector=NAME)",
                        ferry::connector::REGISTRY.names().join(", "),
                        ct.to_lowercase()
                    ),
                );
                ct.to_lowercase()
            }
        };
        out.insert("connector".into(), json!(connector));
        if connector == "ga4" && forced.is_none() {
            self.problem(
                "sourceFlowConfig.connectorType",
                "AppFlow's GoogleAnalytics connector reads Universal Analytics (the v3 Reporting API, retired by Google); \
                 ferry's ga4 reads GA4 properties: set source.properties.property_id and a report under source.properties.reports \
                 named like source.entity (dimensions, metrics; docs/connectors/ga4.md)",
            );
        }
        if let Some(p) = s.get("connectorProfileName").and_then(text) {
            out.insert("profile".into(), json!(p));
        }
        let props_at = format!("sourceFlowConfig.sourceConnectorProperties.{ct}");
        let props = s.get("sourceConnectorProperties").and_then(only_value);
        let mut entity = props
            .and_then(|p| p.get("object").or_else(|| p.get("entityName")))
            .and_then(text)
            .unwrap_or_default();
        if entity.is_empty() {
            self.problem(
                "sourceFlowConfig.sourceConnectorProperties",
                "names no object; set source.entity",
            );
        }
        let mut properties = Map::new();
        // Slack's object for a channel's messages is `conversations/<channel ID>`.
        if connector == "slack" {
            if let Some(ch) = entity.strip_prefix("conversations/") {
                properties.insert("channels".into(), json!([ch]));
                entity = "messages".into();
            }
        }
        out.insert("entity".into(), json!(entity));
        if let Some(m) = props.and_then(Value::as_object) {
            for (k, v) in m {
                let at = format!("{props_at}.{k}");
                match (connector.as_str(), k.as_str(), v) {
                    (_, "object" | "entityName", _) => {}
                    ("salesforce", "includeDeletedRecords", Value::Bool(b)) => {
                        if *b {
                            properties.insert("include_deleted".into(), json!(true));
                        }
                    }
                    ("salesforce", "enableDynamicFieldUpdate", Value::Bool(_)) => {
                        // ferry describes the object at every run: new fields are picked up
                        // either way, and Map tasks fix the output fields as AppFlow's do.
                    }
                    ("salesforce", "dataTransferApi", v) => {
                        match text(v).unwrap_or_default().to_uppercase().as_str() {
                            "AUTOMATIC" | "" => {}
                            "BULKV2" => {
                                properties.insert("api".into(), json!("bulk"));
                            }
                            "REST_SYNC" => {
                                properties.insert("api".into(), json!("rest"));
                            }
                            other => self.problem(at, format!("'{other}' is not AUTOMATIC, BULKV2 or REST_SYNC")),
                        }
                    }
                    (_, "customProperties", Value::Object(cp)) if cp.is_empty() => {}
                    _ => self.problem(
                        at,
                        format!("({v}) has no ferry equivalent here; set the connector's `source.properties` by hand if it has one (see docs/connectors.md)"),
                    ),
                }
            }
        }
        // Settings that live in the AppFlow connector profile, not in the flow.
        for (key, value) in &self.set {
            if let Some(p) = key.strip_prefix("properties.") {
                let v = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
                properties.insert(p.to_string(), v);
            }
        }
        // Settings AppFlow keeps in its connector profile (a Zendesk subdomain, a ServiceNow
        // instance): the connector's registry entry names them and says how to pass them.
        if let Some((any, hint)) = ferry::connector::REGISTRY
            .get(&connector)
            .and_then(|c| c.account_properties)
        {
            if !any.iter().any(|k| properties.contains_key(*k)) {
                self.problem("sourceFlowConfig.connectorProfileName", hint);
            }
        }
        if !properties.is_empty() {
            out.insert("properties".into(), Value::Object(properties));
        }
        let explicit = s
            .get("incrementalPullConfig")
            .and_then(|i| i.get("datetimeTypeFieldName"))
            .and_then(text)
            .filter(|f| !f.is_empty());
        let incremental_wanted = pull_mode.is_some_and(|m| m.eq_ignore_ascii_case("incremental"));
        let field = match explicit {
            Some(f) => Some(f),
            None if incremental_wanted => {
                let d = default_incremental_field(&connector, &entity);
                if let Some(f) = &d {
                    self.note(format!(
                        "sourceFlowConfig.incrementalPullConfig: no datetimeTypeFieldName; the {connector} connector's incremental field `{f}` is used, as AppFlow does"
                    ));
                }
                d
            }
            None => None,
        };
        if let Some(f) = field {
            out.insert("incremental".into(), json!({ "field": f }));
        }
        out
    }

    /// The trigger, settings ferry keeps under `source.incremental`, and the data pull mode the
    /// schedule names.
    fn trigger(
        &mut self,
        t: Option<&Value>,
    ) -> (Value, Option<Map<String, Value>>, Option<String>) {
        let Some(t) = t else {
            return (json!({ "on_demand": {} }), None, None);
        };
        let kind = t.get("triggerType").and_then(text).unwrap_or_default();
        // API: triggerProperties.Scheduled{...}; CloudFormation: TriggerProperties{...}.
        let props = t.get("triggerProperties").map(|p| {
            p.get("scheduled")
                .or_else(|| p.get("scheduledTriggerProperties"))
                .unwrap_or(p)
        });
        let at = "triggerConfig.triggerProperties";
        match kind.to_lowercase().as_str() {
            "scheduled" => {
                let p = props.cloned().unwrap_or(Value::Null);
                let mut s = Map::new();
                let expr = p
                    .get("scheduleExpression")
                    .and_then(text)
                    .unwrap_or_default();
                if expr.is_empty() {
                    self.problem(format!("{at}.scheduleExpression"), "is missing");
                }
                s.insert("expression".into(), json!(schedule_expression(&expr)));
                let mode = p.get("dataPullMode").and_then(text);
                s.insert(
                    "mode".into(),
                    json!(mode.clone().unwrap_or("Incremental".into()).to_lowercase()),
                );
                for (k, f) in [
                    ("scheduleStartTime", "start_time"),
                    ("scheduleEndTime", "end_time"),
                ] {
                    if let Some(x) = p.get(k) {
                        match time_value(x) {
                            Some(ts) => {
                                s.insert(f.into(), json!(ts));
                            }
                            None => self.problem(format!("{at}.{k}"), format!("{x} is not a time")),
                        }
                    }
                }
                if let Some(tz) = p
                    .get("timezone")
                    .or_else(|| p.get("timeZone"))
                    .and_then(text)
                {
                    s.insert("timezone".into(), json!(tz));
                }
                if let Some(n) = p
                    .get("flowErrorDeactivationThreshold")
                    .and_then(Value::as_u64)
                {
                    s.insert("deactivate_after_failures".into(), json!(n));
                }
                let mut inc = Map::new();
                if let Some(x) = p.get("firstExecutionFrom").and_then(time_value) {
                    inc.insert("first_execution_from".into(), json!(x));
                }
                if let Some(o) = p.get("scheduleOffset").and_then(Value::as_u64) {
                    if o > 0 {
                        inc.insert("offset".into(), json!(format!("{o}s")));
                    }
                }
                (json!({ "scheduled": s }), Some(inc), mode)
            }
            "event" => {
                self.problem(
                    "triggerConfig.triggerType",
                    "Event: an AppFlow event flow runs when the SaaS application sends a change event; \
                     ferry cannot subscribe to the application, so the flow was imported on demand. \
                     Start it from an EventBridge rule (`trigger.event.pattern`) or a schedule",
                );
                (json!({ "on_demand": {} }), None, None)
            }
            "ondemand" | "" => (json!({ "on_demand": {} }), None, None),
            other => {
                self.problem(
                    "triggerConfig.triggerType",
                    format!("unknown trigger type '{other}'"),
                );
                (json!({ "on_demand": {} }), None, None)
            }
        }
    }

    fn destination(&mut self, list: Option<&Value>) -> Map<String, Value> {
        let mut out = Map::new();
        let list = list.and_then(Value::as_array).cloned().unwrap_or_default();
        if list.len() != 1 {
            self.problem(
                "destinationFlowConfigList",
                format!(
                    "has {} destinations; ferry flows have exactly one (S3 or a local directory)",
                    list.len()
                ),
            );
        }
        let Some(d) = list.first() else {
            out.insert("local".into(), json!("ferry-out"));
            return out;
        };
        let ct = d.get("connectorType").and_then(text).unwrap_or_default();
        if !ct.eq_ignore_ascii_case("s3") {
            self.problem(
                "destinationFlowConfigList[0].connectorType",
                format!("{ct}: ferry writes to S3 (or a local directory) only"),
            );
        }
        let s3 = d
            .get("destinationConnectorProperties")
            .and_then(only_value)
            .cloned()
            .unwrap_or(Value::Null);
        let at = "destinationFlowConfigList[0].destinationConnectorProperties.S3";
        let bucket = s3.get("bucketName").and_then(text).unwrap_or_default();
        let prefix = s3.get("bucketPrefix").and_then(text).unwrap_or_default();
        out.insert("s3".into(), json!({ "bucket": bucket, "prefix": prefix }));
        if s3.get("bucketKey").is_some() {
            self.problem(
                format!("{at}.bucketKey"),
                "is not an S3 destination property; use bucketPrefix",
            );
        }
        let fmt = s3
            .get("s3OutputFormatConfig")
            .cloned()
            .unwrap_or(Value::Null);
        // AppFlow writes JSON lines unless told otherwise.
        let format = match fmt
            .get("fileType")
            .and_then(text)
            .unwrap_or("JSON".into())
            .to_uppercase()
            .as_str()
        {
            "CSV" => "csv",
            "PARQUET" => "parquet",
            _ => "jsonl",
        };
        out.insert("format".into(), json!(format));
        let mut layout = Map::new();
        if let Some(p) = fmt.get("prefixConfig") {
            if let Some(pt) = p.get("prefixType").and_then(text) {
                layout.insert("prefix_type".into(), json!(pt.to_lowercase()));
            }
            if let Some(pf) = p.get("prefixFormat").and_then(text) {
                layout.insert("date".into(), json!(pf.to_lowercase()));
            }
            if let Some(h) = p.get("pathPrefixHierarchy").and_then(Value::as_array) {
                layout.insert(
                    "hierarchy".into(),
                    Value::Array(
                        h.iter()
                            .filter_map(text)
                            .map(|x| json!(x.to_lowercase()))
                            .collect(),
                    ),
                );
            }
        }
        if !layout.is_empty() {
            out.insert("layout".into(), Value::Object(layout));
        }
        if let Some(a) = fmt.get("aggregationConfig") {
            if a.get("aggregationType")
                .and_then(text)
                .is_some_and(|t| t.eq_ignore_ascii_case("SingleFile"))
            {
                out.insert("single_file".into(), json!(true));
            } else {
                // 0 or absent: AppFlow's (and ferry's) default size.
                match a.get("targetFileSize").and_then(Value::as_u64) {
                    Some(n) if n > 0 => {
                        out.insert("file_size_mb".into(), json!(n));
                    }
                    _ => {}
                }
            }
        }
        if format == "parquet" {
            // Without preserveSourceDataTyping, AppFlow writes every Parquet column as a string.
            let keep = fmt
                .get("preserveSourceDataTyping")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            out.insert("preserve_source_types".into(), json!(keep));
        }
        if let Some(e) = s3
            .get("errorHandlingConfig")
            .or_else(|| d.get("errorHandlingConfig"))
        {
            if let Some(b) = e.get("bucketName").and_then(text) {
                let p = e.get("bucketPrefix").and_then(text).unwrap_or_default();
                out.insert(
                    "error_location".into(),
                    json!(if p.is_empty() {
                        format!("s3://{b}")
                    } else {
                        format!("s3://{b}/{p}")
                    }),
                );
            }
            // failOnFirstDestinationError: ferry fails the run on a write error either way.
        }
        out
    }

    /// ferry tasks (in ferry order) and the partition keys.
    fn tasks(&mut self, list: Option<&Value>) -> (Vec<Value>, Vec<String>) {
        let list = list.and_then(Value::as_array).cloned().unwrap_or_default();
        let has_map = has_map_task(&list);
        let mut out = TaskOut::default();
        for (i, t) in list.iter().enumerate() {
            let t = TaskIn::read(i, t);
            self.task(&t, &mut out);
        }
        out.finish(has_map)
    }

    /// Translates one AppFlow task into the group of `out` that its type belongs to.
    fn task(&mut self, t: &TaskIn, out: &mut TaskOut) {
        match t.kind.to_lowercase().as_str() {
            "filter" if t.op == "PROJECTION" => out.projection = Some(t.src.clone()),
            "filter" => out.filters.extend(self.filter_task(t)),
            "map" | "passthrough" => out.selects.extend(self.map_task(t)),
            "map_all" => out.selects.push(map_all_task(t)),
            "mask" => out.masks.extend(self.mask_task(t)),
            "truncate" => out.masks.extend(self.truncate_task(t)),
            "arithmetic" => out.computed.extend(self.arithmetic_task(t)),
            "merge" => out.computed.extend(self.merge_task(t)),
            "validate" => out.validates.extend(self.validate_task(t)),
            "partition" => out.partition.extend(partition_keys(t)),
            other => self.problem(
                format!("{}.taskType", t.at),
                format!("'{other}' is not an AppFlow task type ferry knows"),
            ),
        }
    }

    /// Whether the task has exactly one source field; records a problem when not.
    fn need_one(&mut self, t: &TaskIn) -> bool {
        if t.src.len() != 1 {
            self.problem(
                format!("{}.sourceFields", t.at),
                format!("{} takes one source field, found {}", t.kind, t.src.len()),
            );
            false
        } else {
            true
        }
    }

    /// A `Filter` task (other than `PROJECTION`) as a ferry `filter` task.
    fn filter_task(&mut self, t: &TaskIn) -> Option<Value> {
        if !self.need_one(t) {
            return None;
        }
        match filter_condition(t) {
            Ok(Some(f)) => Some(json!({ "filter": f })),
            Ok(None) => {
                self.problem(
                    format!("{}.taskProperties", t.at),
                    format!(
                        "{} needs VALUE/VALUES (or LOWER_BOUND and UPPER_BOUND for BETWEEN)",
                        t.op
                    ),
                );
                None
            }
            Err(()) => {
                self.problem(
                    format!("{}.connectorOperator", t.at),
                    format!("{} is not a filter operator", t.op),
                );
                None
            }
        }
    }

    /// A `Map` or `Passthrough` task as a ferry `map` selection.
    fn map_task(&mut self, t: &TaskIn) -> Option<Value> {
        if !self.need_one(t) {
            return None;
        }
        let mut m = Map::new();
        m.insert("from".into(), json!(t.first));
        if let Some(d) = &t.dest {
            if *d != t.first {
                m.insert("to".into(), json!(d));
            }
        }
        if let Some(c) = self.map_cast(t) {
            m.insert("type".into(), json!(c));
        }
        Some(json!({ "map": m }))
    }

    /// The ferry cast a `Map` task's DESTINATION_DATA_TYPE asks for, if any; records a
    /// problem when that type has no ferry equivalent.
    fn map_cast(&mut self, t: &TaskIn) -> Option<&'static str> {
        let to_t = t.prop("DESTINATION_DATA_TYPE");
        let from_t = t.prop("SOURCE_DATA_TYPE");
        let dt = to_t.as_deref()?;
        match cast_type(dt) {
            Some(c) if from_t.as_deref().and_then(cast_type) != Some(c) && c != "string" => Some(c),
            Some("string")
                if from_t
                    .as_deref()
                    .and_then(cast_type)
                    .is_some_and(|f| f != "string") =>
            {
                Some("string")
            }
            Some(_) => None,
            None => {
                self.problem(
                    format!("{}.taskProperties.DESTINATION_DATA_TYPE", t.at),
                    format!("'{dt}' has no ferry type (string, integer, float, decimal, boolean, date, timestamp); the field is mapped without a cast"),
                );
                None
            }
        }
    }

    /// A `Mask` task as a ferry `mask` task.
    fn mask_task(&mut self, t: &TaskIn) -> Option<Value> {
        if !self.need_one(t) {
            return None;
        }
        let mut m = Map::new();
        m.insert("field".into(), json!(t.first));
        let n = t.prop("MASK_LENGTH").and_then(|n| n.parse::<u64>().ok());
        match (t.op.as_str(), n) {
            ("MASK_ALL", _) => {}
            ("MASK_FIRST_N", Some(n)) => {
                m.insert("first".into(), json!(n));
            }
            ("MASK_LAST_N", Some(n)) => {
                m.insert("last".into(), json!(n));
            }
            (o, _) => {
                self.problem(
                    t.at.to_string(),
                    format!("mask operator {o} needs MASK_LENGTH (a number)"),
                );
                return None;
            }
        }
        if let Some(c) = t.prop("MASK_VALUE").and_then(|c| c.chars().next()) {
            m.insert("char".into(), json!(c.to_string()));
        }
        Some(json!({ "mask": m }))
    }

    /// A `Truncate` task as a ferry `truncate` task.
    fn truncate_task(&mut self, t: &TaskIn) -> Option<Value> {
        if !self.need_one(t) {
            return None;
        }
        match t
            .prop("TRUNCATE_LENGTH")
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(n) => Some(json!({ "truncate": { "field": t.first, "length": n } })),
            None => {
                self.problem(
                    format!("{}.taskProperties.TRUNCATE_LENGTH", t.at),
                    "is missing or not a number",
                );
                None
            }
        }
    }

    /// An `Arithmetic` task as a ferry `arithmetic` task writing a new field.
    fn arithmetic_task(&mut self, t: &TaskIn) -> Option<Value> {
        let at = &t.at;
        let ord = t
            .prop("MATH_OPERATION_FIELDS_ORDER")
            .map(|o| list_property(&json!(o)))
            .filter(|o| o.len() == 2);
        let fields = ord.unwrap_or(t.src.clone());
        if fields.is_empty() {
            self.problem(
                format!("{at}.sourceFields"),
                "arithmetic needs two source fields (or one and a VALUE)",
            );
            return None;
        }
        let aop = match t.op.as_str() {
            "ADDITION" => "add",
            "SUBTRACTION" => "subtract",
            "MULTIPLICATION" => "multiply",
            "DIVISION" => "divide",
            o => {
                self.problem(
                    format!("{at}.connectorOperator"),
                    format!("{o} is not an arithmetic operator"),
                );
                return None;
            }
        };
        let Some(to) = t.dest.clone() else {
            self.problem(
                format!("{at}.destinationField"),
                "is missing; arithmetic writes a new field",
            );
            return None;
        };
        let right = match (fields.get(1), t.prop("VALUE")) {
            (Some(f), _) => json!(f),
            (None, Some(v)) => serde_json::from_str::<serde_json::Number>(&v)
                .map(Value::Number)
                .unwrap_or(json!(v)),
            _ => {
                self.problem(
                    format!("{at}.sourceFields"),
                    "arithmetic needs two source fields (or one and a VALUE)",
                );
                return None;
            }
        };
        Some(json!({ "arithmetic": { "to": to, "left": fields[0], "op": aop, "right": right } }))
    }

    /// A `Merge` task as a ferry `merge` task writing a new field.
    fn merge_task(&mut self, t: &TaskIn) -> Option<Value> {
        let Some(to) = t.dest.clone() else {
            self.problem(
                format!("{}.destinationField", t.at),
                "is missing; merge writes a new field",
            );
            return None;
        };
        let fmt = t.prop("CONCAT_FORMAT").unwrap_or_default();
        if fmt.contains('{') {
            self.problem(
                format!("{}.taskProperties.CONCAT_FORMAT", t.at),
                format!(
                    "'{fmt}' is not translated; write a ferry format such as \"{{{}}}\"",
                    t.src.join("} {")
                ),
            );
            return None;
        }
        // CONCAT_FORMAT without placeholders is the separator between the fields.
        let esc = |s: &str| s.replace('{', "{{").replace('}', "}}");
        let format = t
            .src
            .iter()
            .map(|f| format!("{{{f}}}"))
            .collect::<Vec<_>>()
            .join(&esc(&fmt));
        Some(json!({ "merge": { "to": to, "format": format } }))
    }

    /// A `Validate` task as a ferry `validate` task.
    fn validate_task(&mut self, t: &TaskIn) -> Option<Value> {
        if !self.need_one(t) {
            return None;
        }
        let check = match t.op.as_str() {
            "VALIDATE_NON_NULL" => "non_null",
            "VALIDATE_NON_ZERO" => "non_zero",
            "VALIDATE_NON_NEGATIVE" => "non_negative",
            "VALIDATE_NUMERIC" => "numeric",
            o => {
                self.problem(
                    format!("{}.connectorOperator", t.at),
                    format!("{o} is not a validation"),
                );
                return None;
            }
        };
        let action = match t
            .prop("VALIDATION_ACTION")
            .unwrap_or("DropRecord".into())
            .to_lowercase()
            .as_str()
        {
            "droprecord" | "drop_record" | "no_op" => "drop_record",
            _ => "terminate_run",
        };
        Some(json!({ "validate": { "field": t.first, "check": check, "action": action } }))
    }
}

/// The fields of one AppFlow task that every task type reads.
struct TaskIn {
    /// Where the task is, for problems: `tasks[i]`.
    at: String,
    /// taskType as written.
    kind: String,
    /// connectorOperator, upper-cased (`NO_OP` when absent).
    op: String,
    /// sourceFields.
    src: Vec<String>,
    /// destinationField, when present and not empty.
    dest: Option<String>,
    /// taskProperties.
    props: Map<String, Value>,
    /// The first source field (empty when there is none).
    first: String,
}

impl TaskIn {
    /// Reads task `t`, the `i`th of the list.
    fn read(i: usize, t: &Value) -> Self {
        let src: Vec<String> = t
            .get("sourceFields")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(text).collect())
            .unwrap_or_default();
        TaskIn {
            at: format!("tasks[{i}]"),
            kind: t.get("taskType").and_then(text).unwrap_or_default(),
            op: t
                .get("connectorOperator")
                .and_then(only_value)
                .and_then(text)
                .unwrap_or_else(|| "NO_OP".into())
                .to_uppercase(),
            dest: t
                .get("destinationField")
                .and_then(text)
                .filter(|d| !d.is_empty()),
            props: task_properties(t.get("taskProperties")),
            first: src.first().cloned().unwrap_or_default(),
            src,
        }
    }

    /// A task property as text.
    fn prop(&self, k: &str) -> Option<String> {
        self.props.get(k).and_then(text)
    }
}

/// ferry tasks gathered by kind, in the order ferry runs them, plus what shapes them.
#[derive(Default)]
struct TaskOut {
    filters: Vec<Value>,
    validates: Vec<Value>,
    masks: Vec<Value>,
    computed: Vec<Value>,
    selects: Vec<Value>,
    /// The fields of the last `PROJECTION` filter.
    projection: Option<Vec<String>>,
    partition: Vec<String>,
}

impl TaskOut {
    /// The ferry tasks in ferry order and the partition keys; the projection becomes a
    /// leading `project` selection unless the flow has maps.
    fn finish(mut self, has_map: bool) -> (Vec<Value>, Vec<String>) {
        if let Some(p) = self.projection {
            // AppFlow's projection says what is pulled; with maps, the maps choose the output.
            if !has_map && !p.is_empty() {
                self.selects.insert(0, json!({ "project": p }));
            }
        }
        let mut out = self.filters;
        out.extend(self.validates);
        out.extend(self.masks);
        out.extend(self.computed);
        out.extend(self.selects);
        (out, self.partition)
    }
}

/// Whether any task is a `Map`, `Map_all` or `Passthrough`.
fn has_map_task(list: &[Value]) -> bool {
    list.iter().any(|t| {
        matches!(
            t.get("taskType")
                .and_then(Value::as_str)
                .map(str::to_lowercase)
                .as_deref(),
            Some("map" | "map_all" | "passthrough")
        )
    })
}

/// The condition of a `Filter` task: `Ok(None)` when the operator lacks its values,
/// `Err(())` when the operator is not a filter operator.
fn filter_condition(t: &TaskIn) -> Result<Option<Value>, ()> {
    let first = &t.first;
    let dt = t.prop("DATA_TYPE");
    let val = |k: &str| t.props.get(k).map(|v| filter_value(v, dt.as_deref()));
    let values = t.props.get("VALUES").map(|v| {
        list_property(v)
            .into_iter()
            .map(|x| filter_value(&json!(x), dt.as_deref()))
            .collect::<Vec<_>>()
    });
    let simple = |o: &str| match (&values, val("VALUE")) {
        (_, Some(v)) => Some(json!({ "field": first, "op": o, "value": v })),
        (Some(vs), None) if vs.len() == 1 => {
            Some(json!({ "field": first, "op": o, "value": vs[0] }))
        }
        _ => None,
    };
    Ok(match t.op.as_str() {
        "EQUAL_TO" => match &values {
            Some(vs) if vs.len() > 1 => Some(json!({ "field": first, "op": "in", "values": vs })),
            _ => simple("equal"),
        },
        "NOT_EQUAL_TO" => match &values {
            Some(vs) if vs.len() > 1 => Some(
                json!({ "all": vs.iter().map(|v| json!({ "field": first, "op": "not_equal", "value": v })).collect::<Vec<_>>() }),
            ),
            _ => simple("not_equal"),
        },
        "LESS_THAN" => simple("less"),
        "LESS_THAN_OR_EQUAL_TO" => simple("less_or_equal"),
        "GREATER_THAN" => simple("greater"),
        "GREATER_THAN_OR_EQUAL_TO" => simple("greater_or_equal"),
        "CONTAINS" => match &values {
            Some(vs) if vs.len() > 1 => Some(
                json!({ "any": vs.iter().map(|v| json!({ "field": first, "op": "contains", "value": text(v).unwrap_or_default() })).collect::<Vec<_>>() }),
            ),
            _ => simple("contains").map(|mut f| {
                f["value"] = json!(text(&f["value"]).unwrap_or_default());
                f
            }),
        },
        "BETWEEN" => match (val("LOWER_BOUND"), val("UPPER_BOUND")) {
            (Some(lo), Some(hi)) => {
                Some(json!({ "field": first, "op": "between", "min": lo, "max": hi }))
            }
            _ => None,
        },
        _ => return Err(()),
    })
}

/// The fields a `Map_all` task leaves out, as a ferry `map_all` selection.
fn map_all_task(t: &TaskIn) -> Value {
    let exclude = t
        .props
        .get("EXCLUDE_SOURCE_FIELDS_LIST")
        .map(list_property)
        .unwrap_or_default();
    json!({ "map_all": { "exclude": exclude } })
}

/// A `Partition` task's keys: ORDERED_PARTITION_KEYS_LIST, else the source fields.
fn partition_keys(t: &TaskIn) -> Vec<String> {
    t.props
        .get("ORDERED_PARTITION_KEYS_LIST")
        .map(list_property)
        .filter(|k| !k.is_empty())
        .unwrap_or(t.src.clone())
}

/// `--set KEY=VALUE` pairs.
pub fn parse_sets(set: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    set.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(crate::out::invalid_argument(format!(
                "--set '{kv}' is not KEY=VALUE (e.g. --set Env=prod)"
            ))),
        })
        .collect()
}

/// The CLI command: print or write the YAML; list what could not be translated.
pub fn run(
    file: &std::path::Path,
    out: Option<&std::path::Path>,
    partial: bool,
    set: &[String],
    json_out: bool,
) -> anyhow::Result<i32> {
    let set = parse_sets(set)?;
    let text = std::fs::read_to_string(file).map_err(|e| {
        crate::out::invalid_argument(format!("cannot read {}: {e}", file.display()))
    })?;
    let imported = import(&text, &set)
        .map_err(|e| crate::out::invalid_argument(format!("{}: {e}", file.display())))?;
    let mut problems: Vec<String> = imported
        .problems
        .iter()
        .map(|p| format!("AppFlow {p}"))
        .collect();
    let origin = format!("{} (imported)", file.display());
    if let Err(e) = ferry::flow::Flow::from_value(imported.flow.clone(), &origin) {
        problems.extend(e.errors().iter().map(|e| format!("ferry {e}")));
    }
    let mut yaml = String::new();
    yaml.push_str(&format!(
        "# Imported from AppFlow definition {}\n",
        file.display()
    ));
    for n in &imported.notes {
        yaml.push_str(&format!("# note: {n}\n"));
    }
    for p in &problems {
        yaml.push_str(&format!("# TODO {p}\n"));
    }
    yaml.push_str(&serde_yaml::to_string(&imported.flow)?);
    let write = problems.is_empty() || partial;
    if json_out {
        crate::out::json(&json!({
            "file": file.display().to_string(),
            "flow": imported.flow,
            "problems": problems,
            "notes": imported.notes,
            "written": if write { out.map(|o| o.display().to_string()) } else { None },
        }));
    } else {
        for n in &imported.notes {
            eprintln!("note: {n}");
        }
        if !problems.is_empty() {
            eprintln!(
                "{}: {} thing(s) could not be translated:",
                file.display(),
                problems.len()
            );
            for p in &problems {
                eprintln!("  - {p}");
            }
            if !partial {
                eprintln!("nothing written; fix the definition (or --set what a Ref stands for), or pass --partial to write the flow with these notes");
            }
        }
    }
    if write {
        match out {
            Some(o) => {
                std::fs::write(o, &yaml)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", o.display()))?;
                if !json_out {
                    eprintln!("wrote {}", o.display());
                }
            }
            None if !json_out => print!("{yaml}"),
            None => {}
        }
    }
    Ok(if problems.is_empty() { 0 } else { 2 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry::local::{asl::NoopObserver, embedded_deps, Engine};
    use ferry::model::{PullMode, TriggerType};
    use ferry::steps::start_run::RunRequest;

    fn fixture(name: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/appflow")
            .join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn import_(text: &str) -> Result<Imported, String> {
        import(text, &BTreeMap::new())
    }

    fn paths(i: &Imported) -> Vec<&str> {
        i.problems.iter().map(|p| p.path.as_str()).collect()
    }

    #[test]
    fn cloudformation_fixture_imports() {
        let i = import_(&fixture("cfn-salesforce-account-to-s3.json")).unwrap();
        assert!(i.problems.is_empty(), "{:?}", i.problems);
        let f = &i.flow;
        assert_eq!(f["name"], "MySalesforceToS3Flow");
        assert_eq!(f["source"]["connector"], "salesforce");
        assert_eq!(f["source"]["profile"], "MySalesforceConnection");
        assert_eq!(f["source"]["entity"], "Account");
        assert_eq!(f["destination"]["s3"]["bucket"], "my-appflow-bucket");
        assert_eq!(f["destination"]["format"], "csv");
        assert_eq!(f["tasks"], json!([{ "map_all": { "exclude": [] } }]));
        assert_eq!(f["trigger"], json!({ "on_demand": {} }));
    }

    #[test]
    fn api_projection_fixture_imports() {
        let i = import_(&fixture("api-salesforce-projection-map.json")).unwrap();
        assert!(i.problems.is_empty(), "{:?}", i.problems);
        // The maps choose the output, so the projection is not repeated.
        assert_eq!(
            i.flow["tasks"],
            json!([{ "map": { "from": "Id" } }, { "map": { "from": "Id", "to": "AccountId" } }])
        );
        assert_eq!(i.flow["destination"]["s3"]["prefix"], "testPrefix");
        assert_eq!(i.flow["destination"]["format"], "jsonl");
    }

    #[test]
    fn marketo_fixture_lists_what_it_cannot_translate() {
        let i = import_(&fixture("api-marketo-between.json")).unwrap();
        assert_eq!(
            paths(&i),
            ["destinationFlowConfigList[0].destinationConnectorProperties.S3.bucketKey"]
        );
        // AppFlow's Marketo is ferry's marketo (bulk extract); its munchkin_id is set by hand.
        assert_eq!(i.flow["source"]["connector"], json!("marketo"));
        assert_eq!(i.flow["source"]["entity"], json!("leads"));
        assert_eq!(
            i.flow["trigger"],
            json!({ "scheduled": { "expression": "rate(1 minute)", "mode": "complete" } })
        );
        assert_eq!(
            i.flow["tasks"],
            json!([
                { "filter": { "field": "updatedAt", "op": "between", "min": "2025-12-01T00:00:00Z", "max": "2025-12-15T00:00:00Z" } },
                { "map": { "from": "company" } }
            ])
        );
    }

    #[test]
    fn google_analytics_maps_to_ga4_with_a_problem_saying_it_read_universal_analytics() {
        let def = json!({
            "flowName": "ga", "triggerConfig": { "triggerType": "OnDemand" },
            "sourceFlowConfig": { "connectorType": "GoogleAnalytics", "connectorProfileName": "ga",
                "sourceConnectorProperties": { "GoogleAnalytics": { "object": "traffic" } } },
            "destinationFlowConfigList": [{ "connectorType": "S3", "destinationConnectorProperties": { "S3": { "bucketName": "lake" } } }],
            "tasks": [{ "taskType": "Map_all", "sourceFields": [], "taskProperties": {} }]
        });
        let i = import_(&def.to_string()).unwrap();
        assert_eq!(i.flow["source"]["connector"], json!("ga4"));
        let p = i
            .problems
            .iter()
            .find(|p| p.path == "sourceFlowConfig.connectorType")
            .expect("a problem on the connector type");
        assert!(p.message.contains("Universal Analytics"), "{}", p.message);
    }

    #[test]
    fn every_task_type_translates() {
        let def = json!({
            "flowName": "all-tasks",
            "triggerConfig": { "triggerType": "Scheduled", "triggerProperties": { "Scheduled": {
                "scheduleExpression": "rate(5minutes)", "dataPullMode": "Incremental",
                "firstExecutionFrom": 1735689600, "scheduleOffset": 300 } } },
            "sourceFlowConfig": { "connectorType": "Zendesk", "connectorProfileName": "zd",
                "sourceConnectorProperties": { "Zendesk": { "object": "tickets" } },
                "incrementalPullConfig": { "datetimeTypeFieldName": "updated_at" } },
            "destinationFlowConfigList": [{ "connectorType": "S3", "destinationConnectorProperties": { "S3": {
                "bucketName": "lake", "bucketPrefix": "zd", "s3OutputFormatConfig": { "fileType": "PARQUET",
                "prefixConfig": { "prefixType": "PATH", "prefixFormat": "DAY", "pathPrefixHierarchy": ["EXECUTION_ID"] },
                "aggregationConfig": { "aggregationType": "None", "targetFileSize": 64 } } } } }],
            "tasks": [
                { "taskType": "Map_all", "sourceFields": [], "taskProperties": { "EXCLUDE_SOURCE_FIELDS_LIST": "[\"raw\"]" } },
                { "taskType": "Filter", "connectorOperator": { "Zendesk": "GREATER_THAN" }, "sourceFields": ["priority_n"], "taskProperties": { "DATA_TYPE": "integer", "VALUE": "2" } },
                { "taskType": "Filter", "connectorOperator": { "Zendesk": "EQUAL_TO" }, "sourceFields": ["status"], "taskProperties": { "DATA_TYPE": "string", "VALUES": "[\"open\",\"new\"]" } },
                { "taskType": "Mask", "connectorOperator": { "Zendesk": "MASK_LAST_N" }, "sourceFields": ["email"], "destinationField": "email", "taskProperties": { "MASK_LENGTH": "5", "MASK_VALUE": "#" } },
                { "taskType": "Truncate", "connectorOperator": { "Zendesk": "NO_OP" }, "sourceFields": ["subject"], "taskProperties": { "TRUNCATE_LENGTH": "40" } },
                { "taskType": "Arithmetic", "connectorOperator": { "Zendesk": "DIVISION" }, "sourceFields": ["a", "b"], "destinationField": "ratio" },
                { "taskType": "Merge", "connectorOperator": { "Zendesk": "NO_OP" }, "sourceFields": ["first", "last"], "destinationField": "name", "taskProperties": { "CONCAT_FORMAT": " " } },
                { "taskType": "Validate", "connectorOperator": { "Zendesk": "VALIDATE_NON_NULL" }, "sourceFields": ["id"], "taskProperties": { "VALIDATION_ACTION": "TerminateFlow" } },
                { "taskType": "Partition", "sourceFields": [], "taskProperties": { "ORDERED_PARTITION_KEYS_LIST": "[\"status\"]" } },
                { "taskType": "Map", "connectorOperator": { "Zendesk": "NO_OP" }, "sourceFields": ["n"], "destinationField": "n2", "taskProperties": { "SOURCE_DATA_TYPE": "string", "DESTINATION_DATA_TYPE": "integer" } },
                { "taskType": "Sort", "sourceFields": [] }
            ]
        });
        let i = import_(&def.to_string()).unwrap();
        // The Zendesk subdomain is in the AppFlow connector profile: asked for with --set.
        assert_eq!(
            paths(&i),
            [
                "sourceFlowConfig.connectorProfileName",
                "tasks[10].taskType"
            ]
        );
        let f = &i.flow;
        assert_eq!(
            f["tasks"],
            json!([
                { "filter": { "field": "priority_n", "op": "greater", "value": 2 } },
                { "filter": { "field": "status", "op": "in", "values": ["open", "new"] } },
                { "validate": { "field": "id", "check": "non_null", "action": "terminate_run" } },
                { "mask": { "field": "email", "last": 5, "char": "#" } },
                { "truncate": { "field": "subject", "length": 40 } },
                { "arithmetic": { "to": "ratio", "left": "a", "op": "divide", "right": "b" } },
                { "merge": { "to": "name", "format": "{first} {last}" } },
                { "map_all": { "exclude": ["raw"] } },
                { "map": { "from": "n", "to": "n2", "type": "integer" } }
            ])
        );
        assert_eq!(
            f["destination"]["layout"]["partition_by"],
            json!(["status"])
        );
        assert_eq!(f["destination"]["layout"]["date"], "day");
        assert_eq!(f["destination"]["file_size_mb"], 64);
        assert_eq!(f["destination"]["format"], "parquet");
        assert_eq!(f["trigger"]["scheduled"]["expression"], "rate(5 minutes)");
        assert_eq!(f["trigger"]["scheduled"]["mode"], "incremental");
        assert_eq!(
            f["source"]["incremental"]["first_execution_from"],
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(f["source"]["incremental"]["offset"], "300s");
        // The result is a valid ferry flow (with a connector this build has).
        let mut f = f.clone();
        f["source"]["connector"] = json!("sample");
        f["source"].as_object_mut().unwrap().remove("profile");
        ferry::flow::Flow::from_value(f, "imported").unwrap();
    }

    #[test]
    fn rate_expressions_are_normalized() {
        assert_eq!(schedule_expression("rate(1minutes)"), "rate(1 minute)");
        assert_eq!(schedule_expression("rate(2 hours)"), "rate(2 hours)");
        assert_eq!(
            schedule_expression("cron(0 6 * * ? *)"),
            "cron(0 6 * * ? *)"
        );
    }

    /// The imported flow with the source swapped to the sample connector and a local destination.
    fn on_sample(
        mut f: Value,
        entity: &str,
        names: &[(&str, &str)],
        out: &str,
    ) -> ferry::flow::Flow {
        let mut tasks = f["tasks"].to_string();
        for (a, b) in names {
            tasks = tasks.replace(&format!("\"{a}\""), &format!("\"{b}\""));
        }
        f["tasks"] = serde_json::from_str(&tasks).unwrap();
        f["source"] = json!({ "connector": "sample", "entity": entity,
            "properties": { "records": 400, "as_of": "2026-01-01T00:00:00Z" } });
        let format = f["destination"]["format"].clone();
        f["destination"] = json!({ "local": out, "format": format });
        f["trigger"] = json!({ "on_demand": {} });
        ferry::flow::Flow::from_value(f, "fixture").unwrap()
    }

    async fn run(flow: &ferry::flow::Flow) -> (tempfile_dir::Dir, Vec<String>) {
        let d = tempfile_dir::Dir::new();
        std::fs::create_dir_all(d.0.join("home")).unwrap();
        let deps = embedded_deps(&d.0.join("home"), &d.0, None).unwrap();
        deps.flows.put_flow(flow, deps.clock.now()).await.unwrap();
        let engine = Engine::new(deps).unwrap();
        let outcome = engine
            .run(
                RunRequest {
                    flow: flow.name.clone(),
                    trigger: Some(TriggerType::OnDemand),
                    mode: Some(PullMode::Complete),
                    window: None,
                },
                &NoopObserver,
            )
            .await;
        assert!(outcome.succeeded(), "{:?}", outcome.failure);
        let mut lines = vec![];
        let mut stack = vec![d.0.join("out")];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    if !p.ends_with("_manifests") {
                        stack.push(p);
                    }
                } else if p.extension().is_some_and(|x| x == "csv" || x == "jsonl") {
                    lines.extend(
                        std::fs::read_to_string(&p)
                            .unwrap()
                            .lines()
                            .map(String::from),
                    );
                }
            }
        }
        (d, lines)
    }

    /// A scratch directory removed on drop (the CLI crate has no tempfile dependency).
    mod tempfile_dir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "ferry-import-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos()
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[tokio::test]
    async fn fixtures_run_on_the_sample_connector() {
        // 1. Map_all to CSV (contacts: the CSV encoder takes flat records).
        let i = import_(&fixture("cfn-salesforce-account-to-s3.json")).unwrap();
        let (_d, lines) = run(&on_sample(i.flow, "contacts", &[], "out")).await;
        assert_eq!(lines.len(), 401, "a header and 400 records");
        assert!(
            lines[0].starts_with("id,account_id,first_name"),
            "{}",
            lines[0]
        );

        // 2. Id and Id -> AccountId.
        let i = import_(&fixture("api-salesforce-projection-map.json")).unwrap();
        let (_d, lines) = run(&on_sample(i.flow, "accounts", &[("Id", "id")], "out")).await;
        assert_eq!(lines.len(), 400);
        let r: Value = serde_json::from_str(&lines[0]).unwrap();
        let keys: Vec<_> = r.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["id", "AccountId"]);
        assert_eq!(r["id"], r["AccountId"]);

        // 3. BETWEEN on a datetime, then one field.
        let i = import_(&fixture("api-marketo-between.json")).unwrap();
        let flow = on_sample(
            i.flow,
            "contacts",
            &[("updatedAt", "updated_at"), ("company", "account_id")],
            "out",
        );
        let (_d, lines) = run(&flow).await;
        let mut props = serde_json::Map::new();
        props.insert("records".into(), json!(400));
        let src = ferry::connector::sample::SampleSource::from_properties(&props).unwrap();
        let as_of = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let lo = chrono::DateTime::parse_from_rfc3339("2025-12-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let hi = chrono::DateTime::parse_from_rfc3339("2025-12-15T00:00:00Z")
            .unwrap()
            .to_utc();
        let expected = (0..400)
            .filter(|j| {
                let t = src.updated_at(*j, as_of);
                t >= lo && t <= hi
            })
            .count();
        assert!(expected > 0);
        assert_eq!(lines.len(), expected);
        let r: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(r.as_object().unwrap().len(), 1);
        assert!(r["account_id"].as_str().unwrap().starts_with("ACC-"));
    }
}
