//! The IAM gate: every AWS call a function makes goes through here on its way to moto. The
//! caller is known by its access key (each function runs with credentials of its own role);
//! the request is turned into the IAM action(s), resource ARN(s) and condition keys AWS
//! documents for that API ("Actions, resources, and condition keys" in the Service
//! Authorization Reference), and each is decided by a published IAM policy simulator
//! (`@cloud-copilot/iam-simulate`, in the harness's node process) against the role's identity
//! policies and the resource's policy (S3 bucket policies). A denied call gets the error AWS
//! returns — 403 `AccessDenied` for S3, `AccessDeniedException` for JSON APIs — with AWS's
//! message naming the principal, the action and the resource. Allowed calls are forwarded
//! byte for byte.
//!
//! Calls by keys the gate does not know (the test itself, the CLI with the user's keys) are
//! forwarded unchecked: only the deployed functions are held to their roles.

use super::template::{ACCOUNT, REGION};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use regex::Regex;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

/// Who a function is to IAM.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION` (the session is the function's name).
    pub arn: String,
    /// The function's logical id in the template (`WriteS3Function`), for messages.
    pub logical_id: String,
    /// Identity policies of the role: (name, document).
    pub policies: Vec<(String, Value)>,
}

/// One IAM decision the gate made.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Decision {
    pub function: String,
    pub action: String,
    pub resource: String,
    pub allowed: bool,
}

/// One authorization a request needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub action: String,
    pub resource: String,
    pub context: Map<String, Value>,
    /// A resource-based policy that applies (an S3 bucket policy).
    pub resource_policy: Option<Value>,
}

/// How the evaluator is reached.
#[derive(Clone)]
pub struct Evaluator {
    pub url: String,
    pub http: reqwest::Client,
}

impl Evaluator {
    /// "Allowed", "ImplicitlyDenied" or "ExplicitlyDenied".
    pub async fn decide(
        &self,
        principal: &str,
        policies: &[(String, Value)],
        check: &Check,
    ) -> String {
        let body = json!({
            "principal": principal,
            "action": check.action,
            "resource": check.resource,
            "context": check.context,
            "identityPolicies": policies.iter().map(|(n, p)| json!({"name": n, "policy": p})).collect::<Vec<_>>(),
            "resourcePolicy": check.resource_policy,
        });
        let res = self
            .http
            .post(&self.url)
            .header("x-amz-target", "Harness.Authorize")
            .json(&body)
            .send()
            .await
            .expect("the harness's IAM evaluator answers");
        let v: Value = res.json().await.expect("evaluator JSON");
        match v["decision"].as_str() {
            Some(d) if d != "Error" => d.to_string(),
            _ => panic!("IAM evaluator refused the simulation of {body}: {v}"),
        }
    }
}

/// The gate's state.
pub struct Gate {
    pub moto: String,
    pub evaluator: Evaluator,
    /// Access key id -> principal.
    pub principals: HashMap<String, Principal>,
    /// Bucket -> its bucket policy.
    pub bucket_policies: HashMap<String, Value>,
    /// Table name -> its partition key attribute.
    pub table_hash_keys: HashMap<String, String>,
    pub forward: reqwest::Client,
    pub admin_secrets: aws_sdk_secretsmanager::Client,
    /// Secrets by the id a caller used: their ARN and tags, as first seen.
    pub secrets: Mutex<HashMap<String, (String, Vec<(String, String)>)>>,
    pub decisions: Mutex<Vec<Decision>>,
    /// Fault injection for the deployed campaign (off unless set).
    pub faults: Mutex<Option<GateFaults>>,
    /// Kills the running instances of a function (by logical id): a crash.
    pub killer: std::sync::OnceLock<Killer>,
}

/// `Credential=AKID/date/region/service/aws4_request` of a SigV4 `Authorization` header.
fn credential(headers: &HeaderMap) -> Option<(String, String)> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let cred = auth.split("Credential=").nth(1)?;
    let cred = cred.split([',', ' ']).next()?;
    let parts: Vec<&str> = cred.split('/').collect();
    (parts.len() >= 5).then(|| (parts[0].to_string(), parts[3].to_string()))
}

fn query_map(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn s3_checks(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    policies: &HashMap<String, Value>,
) -> Result<Vec<Check>, String> {
    let path = uri.path().trim_start_matches('/');
    let (bucket, key) = match path.split_once('/') {
        Some((b, k)) => (b.to_string(), percent_decode(k)),
        None => (path.to_string(), String::new()),
    };
    let q = query_map(uri);
    let has = |k: &str| q.iter().any(|(n, _)| n == k);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let object_arn = format!("arn:aws:s3:::{bucket}/{key}");
    let policy = policies.get(&bucket).cloned();
    let mut base = Map::new();
    // The functions reach S3 over HTTPS on AWS; the loopback moto endpoint is plain HTTP.
    base.insert("aws:SecureTransport".into(), json!("true"));
    let check = |action: &str, resource: &str, extra: &[(&str, String)]| {
        let mut context = base.clone();
        for (k, v) in extra {
            context.insert(k.to_string(), json!(v));
        }
        Check {
            action: action.to_string(),
            resource: resource.to_string(),
            context,
            resource_policy: policy.clone(),
        }
    };
    let mut out = vec![];
    if key.is_empty() {
        match *method {
            Method::GET | Method::HEAD if has("location") => {
                out.push(check("s3:GetBucketLocation", &bucket_arn, &[]))
            }
            Method::GET if has("versions") => {
                out.push(check("s3:ListBucketVersions", &bucket_arn, &[]))
            }
            Method::GET if has("uploads") => {
                out.push(check("s3:ListBucketMultipartUploads", &bucket_arn, &[]))
            }
            Method::GET | Method::HEAD => {
                let mut extra = vec![("s3:prefix", get("prefix").unwrap_or_default())];
                if let Some(d) = get("delimiter") {
                    extra.push(("s3:delimiter", d));
                }
                out.push(check("s3:ListBucket", &bucket_arn, &extra))
            }
            Method::POST if has("delete") => {
                static KEY: OnceLock<Regex> = OnceLock::new();
                let re = KEY.get_or_init(|| Regex::new(r"<Key>([^<]*)</Key>").expect("regex"));
                for c in re.captures_iter(&String::from_utf8_lossy(body)) {
                    let k = xml_unescape(&c[1]);
                    out.push(check(
                        "s3:DeleteObject",
                        &format!("arn:aws:s3:::{bucket}/{k}"),
                        &[],
                    ));
                }
            }
            _ => return Err(format!("{method} on bucket {bucket} with {q:?}")),
        }
        return Ok(out);
    }
    match *method {
        Method::GET | Method::HEAD if has("uploadId") => {
            out.push(check("s3:ListMultipartUploadParts", &object_arn, &[]))
        }
        Method::GET | Method::HEAD if has("versionId") => {
            out.push(check("s3:GetObjectVersion", &object_arn, &[]))
        }
        Method::GET | Method::HEAD => out.push(check("s3:GetObject", &object_arn, &[])),
        Method::PUT | Method::POST if has("tagging") => {
            out.push(check("s3:PutObjectTagging", &object_arn, &[]))
        }
        Method::PUT | Method::POST => {
            let mut extra = vec![];
            if let Some(sse) = headers
                .get("x-amz-server-side-encryption")
                .and_then(|v| v.to_str().ok())
            {
                extra.push(("s3:x-amz-server-side-encryption", sse.to_string()));
            }
            out.push(check("s3:PutObject", &object_arn, &extra));
            if let Some(src) = headers
                .get("x-amz-copy-source")
                .and_then(|v| v.to_str().ok())
            {
                let src = percent_decode(src.trim_start_matches('/'));
                let src = src.split('?').next().unwrap_or_default();
                out.push(check("s3:GetObject", &format!("arn:aws:s3:::{src}"), &[]));
            }
        }
        Method::DELETE if has("uploadId") => {
            out.push(check("s3:AbortMultipartUpload", &object_arn, &[]))
        }
        Method::DELETE if has("versionId") => {
            out.push(check("s3:DeleteObjectVersion", &object_arn, &[]))
        }
        Method::DELETE => out.push(check("s3:DeleteObject", &object_arn, &[])),
        _ => return Err(format!("{method} on object {bucket}/{key}")),
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("k={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn table_arn(t: &str) -> String {
    format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{t}")
}

/// The partition key value of a key or item (`{"pk": {"S": "..."}}`).
fn leading_key(item: &Value, hash: &str) -> Option<String> {
    let a = &item[hash];
    a["S"]
        .as_str()
        .map(str::to_string)
        .or_else(|| a["N"].as_str().map(str::to_string))
}

/// The partition key value a Query's key condition names.
fn query_leading_key(req: &Value, hash: &str) -> Option<String> {
    static EQ: OnceLock<Regex> = OnceLock::new();
    let re =
        EQ.get_or_init(|| Regex::new(r"(#?[A-Za-z0-9_]+)\s*=\s*(:[A-Za-z0-9_]+)").expect("regex"));
    let expr = req["KeyConditionExpression"].as_str()?;
    for c in re.captures_iter(expr) {
        let name = &c[1];
        let name = if name.starts_with('#') {
            req["ExpressionAttributeNames"][name].as_str()?.to_string()
        } else {
            name.to_string()
        };
        if name == hash {
            let v = &req["ExpressionAttributeValues"][&c[2]];
            return v["S"].as_str().map(str::to_string);
        }
    }
    None
}

/// The attribute names a request names (`dynamodb:Attributes`): the key attributes, an item's
/// attributes, and every name in its update, condition and projection expressions (with
/// `ExpressionAttributeNames` resolved).
fn attribute_names(req: &Value, item_or_key: &Value) -> Vec<String> {
    static NAME: OnceLock<Regex> = OnceLock::new();
    let re = NAME.get_or_init(|| Regex::new(r"#?[A-Za-z_][A-Za-z0-9_]*").expect("regex"));
    let keywords = [
        "SET",
        "REMOVE",
        "ADD",
        "DELETE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "BETWEEN",
        "attribute_exists",
        "attribute_not_exists",
        "attribute_type",
        "begins_with",
        "contains",
        "size",
        "if_not_exists",
        "list_append",
    ];
    let mut out: BTreeSet<String> = item_or_key
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    for field in [
        "UpdateExpression",
        "ConditionExpression",
        "ProjectionExpression",
    ] {
        let Some(expr) = req[field].as_str() else {
            continue;
        };
        // Values (`:v`) are not names.
        let cleaned: Vec<&str> = expr
            .split(|c: char| c.is_whitespace() || "(),=<>+-".contains(c))
            .filter(|t| !t.is_empty() && !t.starts_with(':'))
            .collect();
        for t in cleaned {
            let Some(m) = re.find(t) else { continue };
            let t = m.as_str();
            if keywords.contains(&t) {
                continue;
            }
            let name = if t.starts_with('#') {
                req["ExpressionAttributeNames"][t]
                    .as_str()
                    .unwrap_or(t)
                    .to_string()
            } else {
                t.to_string()
            };
            out.insert(name);
        }
    }
    out.into_iter().collect()
}

fn dynamodb_checks(
    op: &str,
    req: &Value,
    hash_keys: &HashMap<String, String>,
) -> Result<Vec<Check>, String> {
    let check =
        |action: &str, table: &str, index: Option<&str>, keys: Vec<String>, attrs: Vec<String>| {
            let mut context = Map::new();
            context.insert("aws:SecureTransport".into(), json!("true"));
            if !keys.is_empty() {
                context.insert("dynamodb:LeadingKeys".into(), json!(keys));
            }
            if !attrs.is_empty() {
                context.insert("dynamodb:Attributes".into(), json!(attrs));
            }
            let resource = match index {
                Some(i) => format!("{}/index/{i}", table_arn(table)),
                None => table_arn(table),
            };
            Check {
                action: format!("dynamodb:{action}"),
                resource,
                context,
                resource_policy: None,
            }
        };
    let hash = |t: &str| hash_keys.get(t).cloned().unwrap_or_else(|| "pk".into());
    let table = req["TableName"].as_str().unwrap_or_default().to_string();
    let mut out = vec![];
    match op {
        "GetItem" | "DeleteItem" | "UpdateItem" => {
            let k = leading_key(&req["Key"], &hash(&table))
                .into_iter()
                .collect();
            out.push(check(
                op,
                &table,
                None,
                k,
                attribute_names(req, &req["Key"]),
            ));
        }
        "PutItem" => {
            let k = leading_key(&req["Item"], &hash(&table))
                .into_iter()
                .collect();
            out.push(check(
                op,
                &table,
                None,
                k,
                attribute_names(req, &req["Item"]),
            ));
        }
        "Query" => {
            let k = query_leading_key(req, &hash(&table)).into_iter().collect();
            out.push(check(op, &table, req["IndexName"].as_str(), k, vec![]));
        }
        "Scan" => out.push(check(op, &table, req["IndexName"].as_str(), vec![], vec![])),
        "BatchWriteItem" | "BatchGetItem" => {
            for (t, items) in req["RequestItems"].as_object().into_iter().flatten() {
                let h = hash(t);
                let keys: Vec<String> = match items {
                    Value::Array(ws) => ws
                        .iter()
                        .filter_map(|w| {
                            leading_key(&w["PutRequest"]["Item"], &h)
                                .or_else(|| leading_key(&w["DeleteRequest"]["Key"], &h))
                        })
                        .collect(),
                    other => other["Keys"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|k| leading_key(k, &h))
                        .collect(),
                };
                out.push(check(op, t, None, keys, vec![]));
            }
        }
        "TransactWriteItems" | "TransactGetItems" => {
            for item in req["TransactItems"].as_array().into_iter().flatten() {
                let (kind, body) = item
                    .as_object()
                    .and_then(|m| m.iter().next())
                    .ok_or("empty transact item")?;
                let t = body["TableName"].as_str().unwrap_or_default();
                let action = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    "Get" => "GetItem",
                    other => return Err(format!("transact item {other}")),
                };
                let k = leading_key(&body["Key"], &hash(t))
                    .or_else(|| leading_key(&body["Item"], &hash(t)));
                let target = if body.get("Item").is_some() {
                    &body["Item"]
                } else {
                    &body["Key"]
                };
                out.push(check(
                    action,
                    t,
                    None,
                    k.into_iter().collect(),
                    attribute_names(body, target),
                ));
            }
        }
        other => out.push(check(other, &table, None, vec![], vec![])),
    }
    Ok(out)
}

impl Gate {
    /// A secret's ARN and its tags (the `aws:ResourceTag/...` condition keys IAM
    /// evaluates), as the admin sees them.
    async fn secret_info(&self, id: &str) -> (String, Vec<(String, String)>) {
        if let Some(known) = self.secrets.lock().unwrap().get(id) {
            return known.clone();
        }
        match self
            .admin_secrets
            .describe_secret()
            .secret_id(id)
            .send()
            .await
        {
            Ok(d) => {
                let arn = d.arn().unwrap_or_default().to_string();
                let tags: Vec<(String, String)> = d
                    .tags()
                    .iter()
                    .map(|t| {
                        (
                            t.key().unwrap_or_default().to_string(),
                            t.value().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                self.secrets
                    .lock()
                    .unwrap()
                    .insert(id.to_string(), (arn.clone(), tags.clone()));
                (arn, tags)
            }
            // A secret that does not exist is authorized against its would-be ARN.
            Err(_) if id.starts_with("arn:") => (id.to_string(), vec![]),
            Err(_) => (
                format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{id}-xxxxxx"),
                vec![],
            ),
        }
    }

    async fn checks(
        &self,
        service: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Vec<Check>, String> {
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let op = target.rsplit('.').next().unwrap_or_default();
        let req: Value = if body.is_empty() || service == "s3" {
            Value::Null
        } else {
            serde_json::from_slice(body).unwrap_or(Value::Null)
        };
        let mut tls = Map::new();
        tls.insert("aws:SecureTransport".into(), json!("true"));
        let simple = |action: String, resource: String| Check {
            action,
            resource,
            context: tls.clone(),
            resource_policy: None,
        };
        match service {
            "s3" => s3_checks(method, uri, headers, body, &self.bucket_policies),
            "dynamodb" => dynamodb_checks(op, &req, &self.table_hash_keys),
            "secretsmanager" => {
                let id = req["SecretId"]
                    .as_str()
                    .or(req["Name"].as_str())
                    .unwrap_or_default();
                let (arn, tags) = self.secret_info(id).await;
                let mut context = tls.clone();
                for (k, v) in tags {
                    context.insert(format!("aws:ResourceTag/{k}"), json!(v));
                }
                Ok(vec![Check {
                    action: format!("secretsmanager:{op}"),
                    resource: arn,
                    context,
                    resource_policy: None,
                }])
            }
            "events" => {
                let mut out = vec![];
                for e in req["Entries"].as_array().into_iter().flatten() {
                    let bus = e["EventBusName"].as_str().unwrap_or("default");
                    let arn = if bus.starts_with("arn:") {
                        bus.to_string()
                    } else {
                        format!("arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus}")
                    };
                    let mut c = simple(format!("events:{op}"), arn);
                    if let Some(s) = e["Source"].as_str() {
                        c.context.insert("events:source".into(), json!(s));
                    }
                    if let Some(d) = e["DetailType"].as_str() {
                        c.context.insert("events:detail-type".into(), json!(d));
                    }
                    out.push(c);
                }
                if out.is_empty() {
                    out.push(simple(
                        format!("events:{op}"),
                        format!("arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"),
                    ));
                }
                Ok(out)
            }
            "kms" => {
                let key = req["KeyId"].as_str().unwrap_or("*");
                Ok(vec![simple(format!("kms:{op}"), key.to_string())])
            }
            "sts" => Ok(vec![]),
            other => Err(format!("service {other} ({target})")),
        }
    }
}

fn denied_response(service: &str, message: &str) -> Response {
    if service == "s3" {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>{}</Message><RequestId>HARNESS</RequestId><HostId>harness</HostId></Error>",
            message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
        );
        return (
            StatusCode::FORBIDDEN,
            [("content-type", "application/xml")],
            body,
        )
            .into_response();
    }
    let body = json!({"__type": "AccessDeniedException", "message": message, "Message": message});
    (
        StatusCode::BAD_REQUEST,
        [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amzn-errortype", "AccessDeniedException"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// The AWS message of a refused call.
pub fn denial_message(principal: &str, action: &str, resource: &str, decision: &str) -> String {
    let why = if decision == "ExplicitlyDenied" {
        "with an explicit deny in a resource-based policy".to_string()
    } else {
        format!("because no identity-based policy allows the {action} action")
    };
    format!(
        "User: {principal} is not authorized to perform: {action} on resource: {resource} {why}"
    )
}

pub async fn handle(
    State(gate): State<Arc<Gate>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some((akid, service)) = credential(&headers) {
        if let Some(p) = gate.principals.get(&akid) {
            let checks = match gate.checks(&service, &method, &uri, &headers, &body).await {
                Ok(c) => c,
                Err(what) => {
                    let msg = format!(
                        "the deployed-stack harness cannot map this request to IAM actions ({what}); teach tests/src/stack/gate.rs the API's actions"
                    );
                    return denied_response(&service, &msg);
                }
            };
            for c in &checks {
                let d = gate.evaluator.decide(&p.arn, &p.policies, c).await;
                let allowed = d == "Allowed";
                gate.decisions.lock().unwrap().push(Decision {
                    function: p.logical_id.clone(),
                    action: c.action.clone(),
                    resource: c.resource.clone(),
                    allowed,
                });
                if !allowed {
                    return denied_response(
                        &service,
                        &denial_message(&p.arn, &c.action, &c.resource, &d),
                    );
                }
            }
            let target = headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let injected = gate.roll(is_write(&service, &method, &target));
            let kill = || {
                if let Some(k) = gate.killer.get() {
                    k(&p.logical_id);
                }
            };
            match injected {
                Some(Injected::CrashBefore) => {
                    kill();
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the caller crashed (injected)",
                    )
                        .into_response();
                }
                Some(Injected::CrashAfter) => {
                    let r = forward(&gate, method, uri, headers, body).await;
                    kill();
                    return r;
                }
                Some(Injected::LostResponse) => {
                    let _ = forward(&gate, method, uri, headers, body).await;
                    return injected_error(
                        &service,
                        500,
                        "InternalError",
                        "response lost (injected): the call happened",
                    );
                }
                Some(Injected::Transient) => {
                    return injected_error(
                        &service,
                        503,
                        "ServiceUnavailable",
                        "transient failure (injected)",
                    );
                }
                None => {}
            }
        }
    }
    forward(&gate, method, uri, headers, body).await
}

/// Kills the running instances of a function, by logical id.
pub type Killer = Arc<dyn Fn(&str) + Send + Sync>;

/// Faults the gate injects into the functions' AWS calls (the deployed fault campaign): a
/// crash of the calling function before or after the call (its process is killed: the state
/// machine sees `Runtime.ExitError`), a lost response (the call happened; the function sees a
/// 500), a transient failure of a read (503).
pub struct GateFaults {
    pub rng: rand::rngs::StdRng,
    pub p: f64,
    pub counts: std::collections::BTreeMap<&'static str, u64>,
}

enum Injected {
    CrashBefore,
    CrashAfter,
    LostResponse,
    Transient,
}

fn is_write(service: &str, method: &Method, target: &str) -> bool {
    match service {
        "s3" => *method != Method::GET && *method != Method::HEAD,
        _ => {
            let op = target.rsplit('.').next().unwrap_or_default();
            !["Get", "Query", "Scan", "Describe", "List", "BatchGet"]
                .iter()
                .any(|p| op.starts_with(p))
        }
    }
}

impl Gate {
    fn roll(&self, write: bool) -> Option<Injected> {
        use rand::Rng;
        let mut f = self.faults.lock().unwrap();
        let f = f.as_mut()?;
        let p = f.p;
        if !f.rng.random_bool(p) {
            return None;
        }
        let (kind, name) = match (write, f.rng.random_range(0..3)) {
            (_, 0) => (Injected::CrashBefore, "crash before"),
            (true, 1) => (Injected::CrashAfter, "crash after"),
            (true, _) => (Injected::LostResponse, "lost response"),
            (false, _) => (Injected::Transient, "transient read"),
        };
        *f.counts.entry(name).or_default() += 1;
        Some(kind)
    }
}

fn injected_error(service: &str, status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if service == "s3" {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        );
        return (status, [("content-type", "application/xml")], body).into_response();
    }
    (
        status,
        [("content-type", "application/x-amz-json-1.0")],
        json!({"__type": code, "message": message}).to_string(),
    )
        .into_response()
}

async fn forward(
    gate: &Gate,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let url = format!(
        "{}{}",
        gate.moto,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut req = gate.forward.request(method, &url);
    for (k, v) in &headers {
        if matches!(
            k.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding"
        ) {
            continue;
        }
        req = req.header(k, v);
    }
    let res = match req.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("harness gate: moto unreachable: {e}"),
            )
                .into_response();
        }
    };
    let status = res.status();
    let mut out_headers = HeaderMap::new();
    for (k, v) in res.headers() {
        if matches!(
            k.as_str(),
            "connection" | "content-length" | "transfer-encoding"
        ) {
            continue;
        }
        out_headers.append(k.clone(), v.clone());
    }
    let bytes = res.bytes().await.unwrap_or_default();
    if status.as_u16() >= 400 && std::env::var_os("FERRY_HARNESS_DEBUG").is_some() {
        eprintln!(
            "harness gate: {url} -> {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    let mut r = Response::new(axum::body::Body::from(bytes));
    *r.status_mut() = status;
    *r.headers_mut() = out_headers;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_requests_map_to_their_actions_and_object_arns() {
        let none = HashMap::new();
        let h = HeaderMap::new();
        let uri: Uri = "/b/staging/f/r/carry/chunk-000001.json?x-id=PutObject"
            .parse()
            .unwrap();
        let c = s3_checks(&Method::PUT, &uri, &h, b"", &none).unwrap();
        assert_eq!(c[0].action, "s3:PutObject");
        assert_eq!(
            c[0].resource,
            "arn:aws:s3:::b/staging/f/r/carry/chunk-000001.json"
        );
        let uri: Uri = "/b/k%20x?uploadId=1".parse().unwrap();
        assert_eq!(
            s3_checks(&Method::DELETE, &uri, &h, b"", &none).unwrap()[0].action,
            "s3:AbortMultipartUpload"
        );
        let uri: Uri = "/b?list-type=2&prefix=staging%2Ff%2F".parse().unwrap();
        let c = s3_checks(&Method::GET, &uri, &h, b"", &none).unwrap();
        assert_eq!(
            (c[0].action.as_str(), c[0].resource.as_str()),
            ("s3:ListBucket", "arn:aws:s3:::b")
        );
        assert_eq!(c[0].context["s3:prefix"], json!("staging/f/"));
        let uri: Uri = "/b?delete".parse().unwrap();
        let body =
            b"<Delete><Object><Key>a/1</Key></Object><Object><Key>a/&amp;2</Key></Object></Delete>";
        let c = s3_checks(&Method::POST, &uri, &h, body, &none).unwrap();
        assert_eq!(
            c.iter().map(|c| c.resource.as_str()).collect::<Vec<_>>(),
            ["arn:aws:s3:::b/a/1", "arn:aws:s3:::b/a/&2"]
        );
    }

    #[test]
    fn dynamodb_requests_name_tables_indexes_and_leading_keys() {
        let keys: HashMap<String, String> = [("t".to_string(), "pk".to_string())].into();
        let q = json!({"TableName": "t", "IndexName": "gsi1", "KeyConditionExpression": "gsi1pk = :p AND begins_with(gsi1sk, :s)",
                       "ExpressionAttributeValues": {":p": {"S": "RUNS#f"}, ":s": {"S": "x"}}});
        let c = dynamodb_checks("Query", &q, &keys).unwrap();
        assert_eq!(c[0].resource, format!("{}/index/gsi1", table_arn("t")));
        let q = json!({"TableName": "t", "KeyConditionExpression": "#k = :p", "ExpressionAttributeNames": {"#k": "pk"},
                       "ExpressionAttributeValues": {":p": {"S": "FLOW#f"}}});
        assert_eq!(
            dynamodb_checks("Query", &q, &keys).unwrap()[0].context["dynamodb:LeadingKeys"],
            json!(["FLOW#f"])
        );
        let t = json!({"TransactItems": [{"Put": {"TableName": "t", "Item": {"pk": {"S": "A"}}}}, {"ConditionCheck": {"TableName": "t", "Key": {"pk": {"S": "B"}}}}]});
        let c = dynamodb_checks("TransactWriteItems", &t, &keys).unwrap();
        assert_eq!(
            c.iter().map(|c| c.action.as_str()).collect::<Vec<_>>(),
            ["dynamodb:PutItem", "dynamodb:ConditionCheckItem"]
        );
    }

    #[test]
    fn dynamodb_attributes_are_the_names_a_request_touches() {
        let req = json!({"TableName": "t", "Key": {"pk": {"S": "FLOW#f"}, "sk": {"S": "STATE"}},
            "UpdateExpression": "SET lease_expires_at = :e, #x = :em REMOVE lease_holder",
            "ConditionExpression": "lease_run_id = :r AND attribute_exists(pk)",
            "ExpressionAttributeNames": {"#x": "lease_expires_ms"}});
        assert_eq!(
            attribute_names(&req, &req["Key"]),
            [
                "lease_expires_at",
                "lease_expires_ms",
                "lease_holder",
                "lease_run_id",
                "pk",
                "sk"
            ]
        );
    }

    #[test]
    fn the_credential_scope_names_the_key_and_service() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "AWS4-HMAC-SHA256 Credential=ASIAX/20261202/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x".parse().unwrap());
        assert_eq!(credential(&h), Some(("ASIAX".into(), "dynamodb".into())));
    }
}
