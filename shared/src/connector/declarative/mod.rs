//! Built-in declarative sources: vendors the [`rest`](super::rest) connector can read, shipped as
//! definitions users can read and copy (`declarative/<name>.yaml`, embedded at build time) and
//! exposed as connectors of their own (`stripe`, `shopify`, `github`).
//!
//! A definition names its connector, the flow properties it takes (`variables`, substituted
//! into `${name}` placeholders: a shop's subdomain, a repository's owner) and the `rest`
//! configuration itself. A flow's `source.properties` holds the variables plus, optionally,
//! overrides merged into the definition's configuration key by key (`base_url` for a proxy or a
//! test server, `http.max_retries`, `endpoints.orders.params.limit`): objects merge, any other
//! value replaces. The result is checked exactly like a `rest` flow's properties, so an error
//! names the property's path.
//!
//! These connectors bind their profile to hosts: the profile's secret must list the hosts its
//! credentials may go to (`"hosts": ["api.stripe.com"]`, docs/security.md), so a flow that
//! points `base_url` elsewhere cannot send the key there. The vendors' timestamps are whole
//! seconds, so an incremental flow needs `offset` (or `lookback`) of at least one second: a
//! record changed later in the second a window ends carries that second and would otherwise
//! fall behind the watermark unread.

use super::registry::{Connector, Profile};
use super::rest::{RestConfig, RestSource};
use super::{Source, SourceError};
use crate::flow::{FieldError, SourceConfig};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One built-in definition: its connector name and its YAML text.
pub struct Builtin {
    pub name: &'static str,
    pub yaml: &'static str,
}

pub static STRIPE: Builtin = Builtin {
    name: "stripe",
    yaml: include_str!("stripe.yaml"),
};
pub static SHOPIFY: Builtin = Builtin {
    name: "shopify",
    yaml: include_str!("shopify.yaml"),
};
pub static GITHUB: Builtin = Builtin {
    name: "github",
    yaml: include_str!("github.yaml"),
};

/// Every built-in definition.
pub static BUILTINS: [&Builtin; 3] = [&STRIPE, &SHOPIFY, &GITHUB];

/// A definition file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    pub connector: String,
    pub label: String,
    /// Flow properties substituted into `${name}` placeholders of `rest`.
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    /// The `rest` connector's properties.
    pub rest: Map<String, Value>,
}

/// A flow property of a definition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// What it is, for error messages.
    pub description: String,
    /// A regular expression the whole value must match: values land in URLs.
    pub pattern: String,
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub example: Option<String>,
}

impl Builtin {
    /// The parsed definition. The files are part of the build and a unit test parses each, so
    /// an error here is a defect of ferry, not of the flow.
    pub fn definition(&self) -> Result<Definition, SourceError> {
        serde_yaml::from_str(self.yaml).map_err(|e| SourceError::Fatal {
            message: format!("the built-in {} definition does not parse: {e}", self.name),
        })
    }

    /// The `rest` properties for a flow: the definition's, with the flow's variables
    /// substituted and its other properties merged over them.
    pub fn resolve(&self, props: &Map<String, Value>) -> Result<Map<String, Value>, SourceError> {
        let def = self.definition()?;
        let mut values = BTreeMap::new();
        for (name, var) in &def.variables {
            let field = format!("source.properties.{name}");
            let example = var
                .example
                .as_deref()
                .map(|e| format!(", e.g. {name}: {e}"))
                .unwrap_or_default();
            let v = match props.get(name) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(_) => {
                    return Err(SourceError::config(
                        field,
                        format!("must be text: {}{example}", var.description),
                    ))
                }
                None => match &var.default {
                    Some(d) => d.clone(),
                    None => {
                        return Err(SourceError::config(
                            field,
                            format!(
                                "the {} connector needs `{name}`: {}{example}",
                                self.name, var.description
                            ),
                        ))
                    }
                },
            };
            let re = regex::Regex::new(&format!("^(?:{})$", var.pattern)).map_err(|e| {
                SourceError::Fatal {
                    message: format!(
                        "the built-in {} definition's pattern for {name} is not valid: {e}",
                        self.name
                    ),
                }
            })?;
            if !re.is_match(&v) {
                // The value is the user's own setting, not a secret: naming it helps.
                return Err(SourceError::config(
                    field,
                    format!(
                        "'{v}' is not a valid {name} ({}; it must match {}){example}",
                        var.description, var.pattern
                    ),
                ));
            }
            values.insert(name.clone(), v);
        }
        let mut config = Value::Object(def.rest);
        substitute(&mut config, &values);
        let mut config = match config {
            Value::Object(m) => m,
            _ => unreachable!("an object stays an object"),
        };
        for (k, v) in props {
            if def.variables.contains_key(k) {
                continue;
            }
            merge(&mut config, k, v.clone());
        }
        Ok(config)
    }

    /// `ferry validate`'s checks, without the network.
    pub fn validate(&self, entity: &str, props: &Map<String, Value>) -> Vec<FieldError> {
        match self.resolve(props) {
            Ok(config) => super::rest::validate(entity, &config),
            Err(SourceError::Config { field, message }) => vec![FieldError::new(field, message)],
            Err(e) => vec![FieldError::new("source.properties", e.to_string())],
        }
    }

    /// The source for one flow.
    pub fn build(
        &self,
        source: &SourceConfig,
        profile: Option<Profile<'_>>,
    ) -> Result<Box<dyn Source>, SourceError> {
        let config = self.resolve(&source.properties)?;
        let profile = super::registry::require(profile, self.name, "the API's credentials")?;
        let hosts_named = profile
            .secret
            .expose()
            .get("hosts")
            .and_then(Value::as_array)
            .is_some_and(|h| !h.is_empty());
        if !hosts_named {
            let host = config
                .get("base_url")
                .and_then(Value::as_str)
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| u.host_str().map(String::from))
                .unwrap_or_else(|| "the API's host".into());
            return Err(SourceError::Auth {
                profile: profile.name.to_string(),
                message: format!(
                    "the {} connector needs the profile to name the hosts its credentials may go to: add \"hosts\": [\"{host}\"] to the secret (docs/security.md)",
                    self.name
                ),
            });
        }
        if let Some(inc) = &source.incremental {
            self.check_incremental(&config, &source.entity, inc)?;
        }
        let auth = profile.authenticator()?;
        Ok(Box::new(RestSource::new(
            &config,
            source.incremental.as_ref().map(|i| i.field.as_str()),
            auth,
        )?))
    }

    /// The flow's incremental field is the one the endpoint filters on, and the window ends at
    /// least a second before now (the vendors' timestamps are whole seconds).
    fn check_incremental(
        &self,
        config: &Map<String, Value>,
        entity: &str,
        inc: &crate::flow::IncrementalConfig,
    ) -> Result<(), SourceError> {
        let cfg = RestConfig::parse(config)?;
        let Some(ep) = cfg.endpoints.get(entity) else {
            // The entity check names the choices.
            return Ok(());
        };
        let field = ep
            .incremental
            .as_ref()
            .and_then(|i| i.cursor_path.as_deref())
            .and_then(|p| p.strip_prefix("$."));
        match field {
            None => {
                return Err(SourceError::config(
                    "source.incremental",
                    format!(
                        "the {} connector reads {entity} whole (its API has no time filter); remove source.incremental and run in complete mode",
                        self.name
                    ),
                ))
            }
            Some(f) if f != inc.field => {
                return Err(SourceError::config(
                    "source.incremental.field",
                    format!(
                        "the {} connector reads {entity} incrementally by `{f}` (the field its API filters on), not `{}`; set incremental.field: {f}",
                        self.name, inc.field
                    ),
                ))
            }
            Some(_) => {}
        }
        let second = std::time::Duration::from_secs(1);
        if inc.offset.unwrap_or_default() < second && inc.lookback.unwrap_or_default() < second {
            return Err(SourceError::config(
                "source.incremental.offset",
                format!(
                    "{}'s timestamps are whole seconds: a record changed later in the second a window ends would carry that second and never be read; set offset: 1s (or more), or lookback: 1s",
                    self.name
                ),
            ));
        }
        Ok(())
    }
}

/// Replace `${name}` in every string of `v`.
fn substitute(v: &mut Value, values: &BTreeMap<String, String>) {
    match v {
        Value::String(s) if s.contains("${") => {
            for (k, x) in values {
                *s = s.replace(&format!("${{{k}}}"), x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, values)),
        Value::Object(o) => o.values_mut().for_each(|x| substitute(x, values)),
        _ => {}
    }
}

/// Merge `v` into `config[k]`: objects key by key, anything else replaces.
fn merge(config: &mut Map<String, Value>, k: &str, v: Value) {
    match (config.get_mut(k), v) {
        (Some(Value::Object(have)), Value::Object(new)) => {
            for (k2, v2) in new {
                merge(have, &k2, v2);
            }
        }
        (_, v) => {
            config.insert(k.to_string(), v);
        }
    }
}

macro_rules! builtin_connector {
    ($(#[$doc:meta])* $stat:ident, $name:literal, $builtin:ident, $kinds:expr, $host:literal, $probe:literal) => {
        $(#[$doc])*
        pub static $stat: Connector = Connector {
            name: $name,
            // AppFlow reaches these vendors through custom connectors, not a connectorType of
            // their own: `ferry flows import-appflow` maps those to `rest`.
            appflow_type: None,
            needs_profile: true,
            oauth_client_auth: super::auth::ClientAuth::Basic,
            auth_kinds: $kinds,
            consent: None,
            static_description: true,
            last_modified: &[],
            example_host: $host,
            probe_entity: Some($probe),
            account_properties: None,
            api_host_property: super::registry::ApiHostProperty::None,
            validate: |entity, props| $builtin.validate(entity, props),
            build: |source, profile| $builtin.build(source, profile),
        };
    };
}

builtin_connector!(
    /// Stripe: charges, customers, invoices, events (`declarative/stripe.yaml`).
    STRIPE_CONNECTOR,
    "stripe",
    STRIPE,
    // The key as a bearer token or as the basic-auth user name.
    &["bearer", "basic"],
    "api.stripe.com",
    "customers"
);
builtin_connector!(
    /// Shopify Admin REST API: orders, customers, products (`declarative/shopify.yaml`).
    SHOPIFY_CONNECTOR,
    "shopify",
    SHOPIFY,
    // The access token in `X-Shopify-Access-Token`.
    &["api_key"],
    "acme.myshopify.com",
    "products"
);
builtin_connector!(
    /// GitHub REST API: issues, pull requests, commits of one repository
    /// (`declarative/github.yaml`).
    GITHUB_CONNECTOR,
    "github",
    GITHUB,
    &["bearer"],
    "api.github.com",
    "issues"
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn every_definition_parses_and_is_a_valid_rest_config() {
        for b in BUILTINS {
            let def = b.definition().unwrap();
            assert_eq!(def.connector, b.name);
            let mut p = Map::new();
            for (k, v) in &def.variables {
                if v.default.is_none() {
                    p.insert(k.clone(), json!(v.example.clone().unwrap()));
                }
            }
            let config = b.resolve(&p).unwrap();
            assert!(
                !serde_json::to_string(&config).unwrap().contains("${"),
                "{}: a placeholder is left",
                b.name
            );
            let cfg = RestConfig::parse(&config).unwrap();
            for (name, ep) in &cfg.endpoints {
                assert!(b.validate(name, &p).is_empty(), "{}: {name}", b.name);
                assert!(
                    ep.fields.is_some(),
                    "{}: {name} declares its fields",
                    b.name
                );
                assert!(ep.primary_key.is_some(), "{}: {name} has a key", b.name);
            }
            assert!(
                url::Url::parse(cfg.base_url.as_str()).unwrap().scheme() == "https",
                "{}",
                b.name
            );
        }
    }

    /// Money is decimal (Shopify's text) or integer minor units (Stripe's), never float; times
    /// are timestamps; each entity's incremental field is marked.
    #[tokio::test]
    async fn declared_types_are_what_the_vendors_send() {
        use crate::connector::{FieldType, Source};
        let source = |b: &Builtin, p: Value| {
            RestSource::new(
                &b.resolve(&props(p)).unwrap(),
                None,
                super::super::auth::Authenticator::none(),
            )
            .unwrap()
        };
        let ty = |d: &crate::connector::EntityDescription, n: &str| {
            d.fields
                .iter()
                .find(|f| f.name == n)
                .unwrap_or_else(|| panic!("no {n}"))
                .clone()
        };
        let shop = source(&SHOPIFY, json!({"shop": "acme"}));
        let d = shop.describe("orders").await.unwrap();
        let dec = FieldType::Decimal {
            precision: 20,
            scale: 3,
        };
        assert_eq!(ty(&d, "total_price").data_type, dec);
        assert!(ty(&d, "updated_at").incremental);
        assert!(ty(&d, "id").primary_key);
        match &ty(&d, "line_items").data_type {
            FieldType::Array { item } => match item.as_ref() {
                FieldType::Object { fields } => {
                    assert!(fields
                        .iter()
                        .any(|f| f.name == "price" && f.data_type == dec))
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        let stripe = source(&STRIPE, json!({}));
        let d = stripe.describe("charges").await.unwrap();
        assert_eq!(ty(&d, "amount").data_type, FieldType::Integer);
        assert_eq!(ty(&d, "created").data_type, FieldType::Timestamp);
        assert!(ty(&d, "created").incremental);
        let gh = source(&GITHUB, json!({"owner": "o", "repo": "r"}));
        let d = gh.describe("commits").await.unwrap();
        assert!(ty(&d, "committed_at").incremental);
        assert!(ty(&d, "sha").primary_key);
    }

    #[test]
    fn variables_are_checked_and_overrides_merge() {
        let e = SHOPIFY.resolve(&props(json!({}))).unwrap_err();
        assert!(
            e.to_string().starts_with("source.properties.shop:") && e.to_string().contains("e.g."),
            "{e}"
        );
        let e = SHOPIFY
            .resolve(&props(json!({"shop": "evil.com/x?"})))
            .unwrap_err();
        assert!(e.to_string().contains("not a valid shop"), "{e}");
        let c = SHOPIFY
            .resolve(&props(
                json!({"shop": "acme-store", "http": {"max_retries": 1},
                                     "endpoints": {"orders": {"params": {"limit": "50"}}}}),
            ))
            .unwrap();
        assert_eq!(
            c["base_url"],
            json!("https://acme-store.myshopify.com/admin/api/2025-01")
        );
        assert_eq!(c["http"]["max_retries"], json!(1));
        // The merge kept the definition's other settings.
        assert!(c["http"]["rate_limit"].is_object());
        assert_eq!(c["endpoints"]["orders"]["params"]["limit"], json!("50"));
        assert_eq!(c["endpoints"]["orders"]["params"]["status"], json!("any"));
        // Unknown properties are refused by the rest checks, naming the path.
        let errs = SHOPIFY.validate("orders", &props(json!({"shop": "a", "colour": "red"})));
        assert!(errs.iter().any(|e| e.path.contains("colour")), "{errs:?}");
        let errs = GITHUB.validate("issues", &props(json!({"owner": "octocat"})));
        assert!(
            errs.iter().any(|e| e.path == "source.properties.repo"),
            "{errs:?}"
        );
        let errs = STRIPE.validate("refunds", &props(json!({})));
        assert!(
            errs.iter()
                .any(|e| e.path == "source.entity" && e.message.contains("charges")),
            "{errs:?}"
        );
    }
}
