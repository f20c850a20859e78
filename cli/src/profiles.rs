//! `ferry profiles put|list|test|delete|migrate`: connector credentials of the embedded engine.
//!
//! A profile names the hosts its credentials may go to (`"hosts"` in the secret, `--host` to
//! `put` and `migrate`); a request to any other host is refused (docs/security.md).
//!
//! Secrets live in `<FERRY_HOME>/secrets.json` (mode 0600). What is not secret — which
//! connector a profile is for, and connector properties `profiles test` needs (a Zendesk
//! subdomain, a ServiceNow instance) — lives beside it in `<FERRY_HOME>/profiles.json`. No
//! command prints a secret value.

use crate::out::{invalid_argument, not_found, CliError};
use anyhow::{Context, Result};
use ferry::adapters::secrets_file::SecretsFile;
use ferry::connector::auth::{Authenticator, ClientAuth};
use ferry::connector::registry::REGISTRY;
use ferry::connector::{ConnectorContext, ReadRequest, SourceError};
use ferry::flow::SourceConfig;
use ferry::ports::{Secret, SecretStore};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What `profiles.json` keeps about a profile.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ProfileMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
}

fn meta_path(home: &Path) -> PathBuf {
    home.join("profiles.json")
}

pub fn load_meta(home: &Path) -> Result<BTreeMap<String, ProfileMeta>> {
    match std::fs::read(meta_path(home)) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| {
            format!(
                "{} is not valid; fix or remove it",
                meta_path(home).display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", meta_path(home).display())),
    }
}

fn save_meta(home: &Path, meta: &BTreeMap<String, ProfileMeta>) -> Result<()> {
    std::fs::create_dir_all(home)?;
    std::fs::write(meta_path(home), serde_json::to_vec_pretty(meta)?)
        .with_context(|| format!("cannot write {}", meta_path(home).display()))
}

/// Record what is not secret about a profile: its connector and the properties `profiles
/// test` (and flows) need.
fn remember_meta(
    home: &Path,
    name: &str,
    connector: Option<&str>,
    properties: Vec<(String, Value)>,
) -> Result<ProfileMeta> {
    let mut meta = load_meta(home)?;
    let entry = meta.entry(name.to_string()).or_default();
    if let Some(c) = connector {
        entry.connector = Some(c.to_string());
    }
    entry.properties.extend(properties);
    let entry = entry.clone();
    save_meta(home, &meta)?;
    Ok(entry)
}

/// [`remember_meta`] for a connected profile.
pub fn remember(
    home: &Path,
    name: &str,
    connector: &str,
    properties: Vec<(String, Value)>,
) -> Result<()> {
    remember_meta(home, name, Some(connector), properties).map(|_| ())
}

/// The auth kinds a connector takes (docs/connectors/<name>.md); `None`: not a connector that
/// takes a profile.
fn auth_kinds(connector: &str) -> Option<&'static [&'static str]> {
    REGISTRY
        .get(connector)
        .map(|c| c.auth_kinds)
        .filter(|k| !k.is_empty())
}

/// Check a secret's shape for a connector (or, without one, for any connector). Messages name
/// fields, never values.
pub fn check_secret(connector: Option<&str>, v: &Value) -> Result<(), String> {
    let Some(obj) = v.as_object() else {
        return Err("the secret must be a JSON object, e.g. {\"type\": \"basic\", \"username\": \"...\", \"password\": \"...\"}".into());
    };
    let mut spec = obj.clone();
    let kind = match spec.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err("`type` must be text, e.g. \"basic\"".into()),
        None if salesforce_secret(connector, obj) => {
            // The Salesforce connector fills these in (docs/connectors/salesforce.md).
            spec.insert("type".into(), json!("oauth2_refresh_token"));
            "oauth2_refresh_token".into()
        }
        None => {
            return Err(format!(
                "the secret has no `type`; add one of {}",
                auth_kinds(connector.unwrap_or("rest"))
                    .unwrap_or(&[])
                    .join(", ")
            ))
        }
    };
    if let Some(c) = connector {
        let kinds = auth_kinds(c).ok_or_else(|| match REGISTRY.get(c) {
            Some(_) => format!("the {c} connector takes no profile"),
            None => format!(
                "unknown connector '{c}'; use one of {}",
                REGISTRY
                    .iter()
                    .filter(|k| !k.auth_kinds.is_empty())
                    .map(|k| k.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
        if !kinds.contains(&kind.as_str()) {
            return Err(format!(
                "`type: {kind}` is not a credential the {c} connector takes; use one of {} (see docs/connectors/{c}.md)",
                kinds.join(", ")
            ));
        }
    }
    if c_is_salesforce_default(connector, &kind, &spec) {
        spec.insert(
            "token_url".into(),
            json!("https://login.salesforce.com/services/oauth2/token"),
        );
    }
    let store: Arc<dyn SecretStore> = Arc::new(ferry::adapters::memory::MemorySecrets::default());
    Authenticator::from_secret_with(
        "new",
        &Secret::new(Value::Object(spec)),
        store,
        ClientAuth::Basic,
    )
    .map(|_| ())
    .map_err(|e| match e {
        SourceError::Auth { message, .. } => message,
        other => other.to_string(),
    })
}

/// A Salesforce refresh-token secret may leave `token_url` to the connector.
fn c_is_salesforce_default(connector: Option<&str>, kind: &str, spec: &Map<String, Value>) -> bool {
    kind == "oauth2_refresh_token"
        && !spec.contains_key("token_url")
        && (connector == Some("salesforce") || connector.is_none())
}

/// `KEY=VALUE` -> a property (JSON values as JSON: `page_size=100`, `sandbox=true`).
pub fn parse_property(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))?;
    let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
    Ok((k.trim().to_string(), v))
}

/// Add `hosts` to a secret's `"hosts"` (lower case, each once).
fn add_hosts(v: &mut Value, hosts: &[String]) {
    if hosts.is_empty() {
        return;
    }
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    let Some(arr) = obj
        .entry("hosts")
        .or_insert_with(|| json!([]))
        .as_array_mut()
    else {
        return; // not a list: check_secret names the field
    };
    for h in hosts {
        let h = json!(h.trim().to_ascii_lowercase());
        if !arr.contains(&h) {
            arr.push(h);
        }
    }
}

/// The hosts a secret names (empty: none).
fn hosts_of(v: &Value) -> Vec<String> {
    v.get("hosts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// A secret for the Salesforce connector, which completes it (`type`, `token_url`): the
/// connector is named, or, without one, the secret has no `type` but a client id and a refresh
/// token.
fn salesforce_secret(connector: Option<&str>, obj: &Map<String, Value>) -> bool {
    connector == Some("salesforce")
        || (connector.is_none()
            && !obj.contains_key("type")
            && ["client_id", "refresh_token"]
                .iter()
                .all(|k| obj.contains_key(*k)))
}

/// A secret with credentials must name the hosts they may go to. Salesforce's is the
/// exception: its token endpoint (in the secret or the connector's default login host) names
/// the instance.
fn require_hosts(connector: Option<&str>, v: &Value) -> Result<(), String> {
    let kind = v.get("type").and_then(Value::as_str);
    let salesforce = v
        .as_object()
        .is_some_and(|o| salesforce_secret(connector, o));
    if kind == Some("none") || salesforce || !hosts_of(v).is_empty() {
        return Ok(());
    }
    let example = connector
        .and_then(|c| ferry::connector::REGISTRY.get(c))
        .map(|c| c.example_host)
        .filter(|h| !h.is_empty())
        .unwrap_or("api.acme.com");
    Err(format!(
        "the secret names no hosts its credentials may go to; pass --host (e.g. --host {example}) or add \"hosts\": [\"{example}\"] to it (docs/security.md)"
    ))
}

#[allow(clippy::too_many_arguments)]
pub async fn put(
    home: &Path,
    name: &str,
    file: &Path,
    connector: Option<&str>,
    hosts: &[String],
    properties: Vec<(String, Value)>,
    json_out: bool,
) -> Result<i32> {
    ferry::flow::validate_profile_name(name).map_err(invalid_argument)?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| invalid_argument(format!("cannot read {}: {e}", file.display())))?;
    let mut v: Value = serde_json::from_str(&text).map_err(|e| {
        invalid_argument(format!(
            "{} is not JSON ({}); write the secret as a JSON object",
            file.display(),
            // serde_json's message has a position, not a value.
            e
        ))
    })?;
    add_hosts(&mut v, hosts);
    check_secret(connector, &v)
        .and_then(|()| require_hosts(connector, &v))
        .map_err(|m| {
            CliError::new(
                "InvalidArgument",
                format!(
                    "{}: not a valid secret for profile '{name}': {m}",
                    file.display()
                ),
            )
        })?;
    let secrets = SecretsFile::new(home.join("secrets.json"));
    secrets.put_secret(name, &Secret::new(v)).await?;
    let entry = remember_meta(home, name, connector, properties)?;
    if json_out {
        crate::out::json(&json!({ "name": name, "connector": entry.connector, "stored": true }));
    } else {
        outln!(
            "stored profile '{name}'{} in {}",
            entry
                .connector
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            home.join("secrets.json").display()
        );
    }
    Ok(0)
}

/// Bind a stored profile to hosts: what a profile from before hosts were required needs
/// (the refusal names this command and the host).
pub async fn migrate(home: &Path, name: &str, hosts: &[String], json_out: bool) -> Result<i32> {
    let secrets = SecretsFile::new(home.join("secrets.json"));
    let Some(secret) = secrets.get_secret(name).await? else {
        return Err(not_found(format!(
            "no profile '{name}'; `ferry profiles list` shows the stored ones"
        )));
    };
    let mut v = secret.expose().clone();
    add_hosts(&mut v, hosts);
    let connector = load_meta(home)?.get(name).and_then(|m| m.connector.clone());
    check_secret(connector.as_deref(), &v).map_err(|m| {
        CliError::new(
            "InvalidArgument",
            format!("profile '{name}' with these hosts is not valid: {m}"),
        )
    })?;
    secrets.put_secret(name, &Secret::new(v.clone())).await?;
    let hosts = hosts_of(&v);
    if json_out {
        crate::out::json(&json!({ "name": name, "hosts": hosts }));
    } else {
        outln!(
            "profile '{name}' now sends its credentials only to: {}",
            hosts.join(", ")
        );
    }
    Ok(0)
}

pub async fn list(home: &Path, json_out: bool) -> Result<i32> {
    let secrets = SecretsFile::new(home.join("secrets.json"));
    let meta = load_meta(home)?;
    let mut rows = vec![];
    for name in secrets.list().await? {
        let secret = secrets.get_secret(&name).await?;
        let kind = secret.as_ref().and_then(|s| {
            s.expose()
                .get("type")
                .and_then(Value::as_str)
                .map(String::from)
        });
        let hosts = secret.map(|s| hosts_of(s.expose())).unwrap_or_default();
        let m = meta.get(&name).cloned().unwrap_or_default();
        rows.push(
            json!({ "name": name, "connector": m.connector, "auth_type": kind, "hosts": hosts }),
        );
    }
    if json_out {
        crate::out::json(&Value::Array(rows));
        return Ok(0);
    }
    if rows.is_empty() {
        outln!("no profiles; store one with `ferry profiles put NAME --file creds.json --connector CONNECTOR`");
    }
    for r in rows {
        let hosts: Vec<&str> = r["hosts"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        outln!(
            "{:<32} {:<12} {:<24} {}",
            r["name"].as_str().unwrap_or_default(),
            r["connector"].as_str().unwrap_or("-"),
            r["auth_type"].as_str().unwrap_or("-"),
            if hosts.is_empty() {
                "(no hosts: `ferry profiles migrate` binds it)".to_string()
            } else {
                hosts.join(",")
            }
        );
    }
    Ok(0)
}

pub async fn delete(home: &Path, name: &str, json_out: bool) -> Result<i32> {
    let secrets = SecretsFile::new(home.join("secrets.json"));
    if !secrets.delete(name).await? {
        return Err(not_found(format!(
            "no profile '{name}'; `ferry profiles list` shows the stored ones"
        )));
    }
    let mut meta = load_meta(home)?;
    if meta.remove(name).is_some() {
        save_meta(home, &meta)?;
    }
    if json_out {
        crate::out::json(&json!({ "name": name, "deleted": true }));
    } else {
        outln!("deleted profile '{name}'");
    }
    Ok(0)
}

/// The entity a profile test reads one record of (or describes): the connector's registry
/// entry names it.
fn probe_entity(connector: &str) -> Option<&'static str> {
    ferry::connector::REGISTRY.get(connector)?.probe_entity
}

/// One cheap authenticated call through the connector.
pub async fn test(
    home: &Path,
    name: &str,
    connector: Option<String>,
    flow: Option<ferry::flow::Flow>,
    properties: Vec<(String, Value)>,
    json_out: bool,
) -> Result<i32> {
    let secrets: Arc<dyn SecretStore> = Arc::new(SecretsFile::new(home.join("secrets.json")));
    if secrets.get_secret(name).await?.is_none() {
        return Err(not_found(format!(
            "no profile '{name}'; store it with `ferry profiles put {name} --file creds.json --connector CONNECTOR`"
        )));
    }
    let meta = load_meta(home)?.remove(name).unwrap_or_default();
    let (connector, entity, mut props) = match &flow {
        Some(f) => (
            f.source.connector.clone(),
            f.source.entity.clone(),
            f.source.properties.clone(),
        ),
        None => {
            let c = connector.or(meta.connector.clone()).ok_or_else(|| {
                invalid_argument(format!(
                    "which connector is profile '{name}' for? pass --connector (or --flow FLOW), or store it with `profiles put --connector`"
                ))
            })?;
            let e = probe_entity(&c).ok_or_else(|| {
                invalid_argument(format!(
                    "the {c} connector's test needs a flow: pass --flow FLOW (its entity and properties are used)"
                ))
            })?;
            (c, e.to_string(), meta.properties.clone())
        }
    };
    props.extend(properties);
    let source = SourceConfig {
        connector: connector.clone(),
        profile: Some(name.to_string()),
        entity: entity.clone(),
        properties: props,
        incremental: None,
        chunk: Default::default(),
        parallelism: None,
        slice: None,
    };
    let ctx = ConnectorContext { secrets };
    let result: Result<String, SourceError> = async {
        let src = ferry::connector::build(&source, &ctx).await?;
        match connector.as_str() {
            // Its describe and entity list are requests to the org.
            "salesforce" => src
                .list_entities()
                .await
                .map(|l| format!("listed {} queryable objects", l.len())),
            "servicenow" | "hubspot" => src
                .describe(&entity)
                .await
                .map(|d| format!("described {entity} ({} fields)", d.fields.len())),
            _ => {
                let page = src
                    .read_page(
                        &ReadRequest {
                            entity: entity.clone(),
                            window: None,
                            incremental_field: None,
                            page_size: Some(1),
                            filters: vec![],
                        },
                        None,
                    )
                    .await?;
                Ok(format!("read {} record(s) of {entity}", page.records.len()))
            }
        }
    }
    .await;
    match result {
        Ok(what) => {
            if json_out {
                crate::out::json(
                    &json!({ "name": name, "connector": connector, "ok": true, "message": what }),
                );
            } else {
                outln!("profile '{name}' works: the {connector} source answered ({what})");
            }
            Ok(0)
        }
        Err(e) => Err(CliError::new(
            match e {
                SourceError::Auth { .. } => "AuthFailed",
                SourceError::Config { .. } => "InvalidArgument",
                _ => "SourceError",
            },
            format!("profile '{name}' does not work with {connector}: {e}"),
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_shapes_per_connector() {
        let ok = |c: Option<&str>, v: Value| check_secret(c, &v);
        assert!(ok(
            Some("zendesk"),
            json!({"type": "basic", "username": "u/token", "password": "p"})
        )
        .is_ok());
        assert!(ok(Some("slack"), json!({"type": "bearer", "token": "xoxb-1"})).is_ok());
        assert!(ok(
            Some("salesforce"),
            json!({"client_id": "c", "client_secret": "s", "refresh_token": "r"})
        )
        .is_ok());
        assert!(ok(
            None,
            json!({"client_id": "c", "client_secret": "s", "refresh_token": "r"})
        )
        .is_ok());
        let e = ok(
            Some("slack"),
            json!({"type": "basic", "username": "u", "password": "hunter2"}),
        )
        .unwrap_err();
        assert!(
            e.contains("not a credential the slack connector takes") && e.contains("bearer"),
            "{e}"
        );
        assert!(!e.contains("hunter2"));
        let e = ok(None, json!([1, 2])).unwrap_err();
        assert!(e.contains("JSON object"), "{e}");
        let e = ok(None, json!({"type": "bogus"})).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = ok(
            Some("zendesk"),
            json!({"type": "basic", "username": "u", "pasword": "hunter2"}),
        )
        .unwrap_err();
        assert!(e.contains("pasword") && !e.contains("hunter2"), "{e}");
        let e = ok(Some("zendesk"), json!({"username": "u", "password": "p"})).unwrap_err();
        assert!(e.contains("no `type`"), "{e}");
        assert!(ok(Some("sample"), json!({"type": "none"}))
            .unwrap_err()
            .contains("no profile"));
    }

    #[test]
    fn properties_parse_as_json_or_text() {
        assert_eq!(
            parse_property("page_size=10").unwrap(),
            ("page_size".into(), json!(10))
        );
        assert_eq!(
            parse_property("subdomain=acme").unwrap(),
            ("subdomain".into(), json!("acme"))
        );
        assert!(parse_property("nope").is_err());
    }
}
