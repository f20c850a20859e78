//! The connectors this build has: one static list. Adding a connector is a folder (its config,
//! source and types), one line in the `connectors!` list of `connector/mod.rs` (which declares
//! its module and puts its `CONNECTOR` in [`REGISTRY`]), its docs and its tests.
//!
//! The registry is what flow validation consults ([`crate::flow::SourceRules`]): the flow module
//! never imports a connector; `Flow::parse`, `Flow::from_value` and `Flow::validate` below bind
//! the built-in registry for callers that do not pass one.

use super::auth::{Authenticator, ClientAuth};
use super::{Source, SourceError};
use crate::flow::{FieldError, Flow, FlowError, SourceConfig, SourceRules};
use crate::ports::{Secret, SecretStore};
use serde_json::{Map, Value};
use std::sync::Arc;

/// A flow's connector profile, loaded: its name, its secret, and the store refreshed OAuth
/// tokens are written back to.
pub struct Profile<'a> {
    pub name: &'a str,
    pub secret: &'a Secret,
    pub secrets: Arc<dyn SecretStore>,
    /// The connector's OAuth client-auth default ([`Connector::oauth_client_auth`]).
    pub client_auth: ClientAuth,
}

impl Profile<'_> {
    /// The authenticator the profile's secret describes.
    pub fn authenticator(&self) -> Result<Authenticator, SourceError> {
        Authenticator::from_secret_with(
            self.name,
            self.secret,
            self.secrets.clone(),
            self.client_auth,
        )
    }
}

/// The flow's profile, or the error for a connector that needs one and was given none.
pub fn require<'a>(
    profile: Option<Profile<'a>>,
    connector: &str,
    what: &str,
) -> Result<Profile<'a>, SourceError> {
    profile.ok_or_else(|| {
        SourceError::config(
            "source.profile",
            format!(
                "the {connector} connector needs a connector profile ({what}); set source.profile"
            ),
        )
    })
}

/// One kind of source, described as data: what flow validation, `ferry flows import-appflow`
/// and the steps need to know about it, and how to build it for a flow. Each connector module
/// declares one `pub static CONNECTOR: Connector`.
pub struct Connector {
    /// The name flows use in `source.connector`.
    pub name: &'static str,
    /// AppFlow's `connectorType` this connector stands in for (`ferry flows import-appflow`).
    pub appflow_type: Option<&'static str>,
    /// Whether a flow must name a connector profile (credentials) for it.
    pub needs_profile: bool,
    /// How OAuth client credentials go to the token endpoint when the profile does not say
    /// (`client_auth: basic|body`): the vendor's documented default.
    pub oauth_client_auth: ClientAuth,
    /// The profile secret `type`s the connector takes (docs/connectors/<name>.md); empty for a
    /// connector that takes no profile.
    pub auth_kinds: &'static [&'static str],
    /// How `ferry profiles connect` runs the vendor's OAuth consent, where it has one.
    pub consent: Option<&'static super::consent::Consent>,
    /// Whether `describe` answers without a request (so `ferry validate` tries the credentials
    /// with one page instead).
    pub static_description: bool,
    /// The field an incremental flow reads by when it names none (`ferry flows import-appflow`
    /// fills it in): `(entity, field)` pairs, `"*"` for every other entity.
    pub last_modified: &'static [(&'static str, &'static str)],
    /// An API host of this vendor, for messages (`--host acme.zendesk.com`).
    pub example_host: &'static str,
    /// The entity `ferry profiles test` reads one record of (or describes).
    pub probe_entity: Option<&'static str>,
    /// Flow properties that name the account's API host where AppFlow keeps it in its
    /// connector profile (not the flow): an imported flow must set one of them
    /// (`--set properties.NAME=...`); the text says how.
    pub account_properties: Option<(&'static [&'static str], &'static str)>,
    /// Which flow properties `ferry profiles connect` sets from the host the user connected.
    pub api_host_property: ApiHostProperty,
    /// Checks of `source.entity` and `source.properties` without the network.
    pub validate: fn(&str, &Map<String, Value>) -> Vec<FieldError>,
    /// The source for one flow; the profile is the flow's loaded profile, if it names one.
    pub build: fn(&SourceConfig, Option<Profile<'_>>) -> Result<Box<dyn Source>, SourceError>,
}

/// The flow properties that point a connector at the connected account's API host, where the
/// connector cannot find it alone (`ferry profiles connect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiHostProperty {
    /// The connector finds its host alone (a fixed host, or the token's `instance_url`).
    None,
    /// `subdomain` when the host is `<subdomain><suffix>`, else `base_url` (a stand-in server).
    Subdomain(&'static str),
    /// `instance_url`: the host's origin.
    InstanceUrl,
    /// `base_url`: the host's origin followed by this path, unless the host is the vendor's
    /// fixed API host.
    BaseUrl(&'static str),
    /// The site comes from the token (Jira's cloud id), looked up by the CLI.
    TokenSite,
}

impl Connector {
    /// The field an incremental flow of `entity` reads by when it names none.
    pub fn last_modified_field(&self, entity: &str) -> Option<&'static str> {
        let find = |e: &str| {
            self.last_modified
                .iter()
                .find(|(k, _)| *k == e)
                .map(|(_, f)| *f)
        };
        find(entity).or_else(|| find("*"))
    }
}

/// A set of connectors, looked up by name.
pub struct Registry {
    connectors: &'static [&'static Connector],
}

/// Every connector this build can run.
pub static REGISTRY: Registry = Registry {
    connectors: super::CONNECTORS,
};

impl Registry {
    pub fn get(&self, name: &str) -> Option<&'static Connector> {
        self.connectors.iter().copied().find(|c| c.name == name)
    }
    pub fn names(&self) -> Vec<&'static str> {
        self.connectors.iter().map(|c| c.name).collect()
    }
    /// The connector standing in for AppFlow's `connectorType` (case-insensitive).
    pub fn by_appflow_type(&self, connector_type: &str) -> Option<&'static Connector> {
        self.connectors.iter().copied().find(|c| {
            c.appflow_type
                .is_some_and(|t| t.eq_ignore_ascii_case(connector_type))
        })
    }
    pub fn iter(&self) -> impl Iterator<Item = &'static Connector> + '_ {
        self.connectors.iter().copied()
    }
}

impl SourceRules for Registry {
    fn connector_names(&self) -> Vec<&'static str> {
        self.names()
    }
    fn needs_profile(&self, connector: &str) -> Option<bool> {
        self.get(connector).map(|c| c.needs_profile)
    }
    fn validate_properties(
        &self,
        connector: &str,
        entity: &str,
        props: &Map<String, Value>,
    ) -> Vec<FieldError> {
        self.get(connector)
            .map(|c| (c.validate)(entity, props))
            .unwrap_or_default()
    }
}

/// Parsing and validation with the built-in connectors.
impl Flow {
    /// Parse YAML or JSON and validate against the built-in connectors (see
    /// [`Flow::parse_with`]).
    pub fn parse(text: &str, origin: &str) -> Result<Flow, FlowError> {
        Flow::parse_with(text, origin, &REGISTRY)
    }
    /// Deserialize and validate against the built-in connectors, every problem at once.
    pub fn from_value(value: Value, origin: &str) -> Result<Flow, FlowError> {
        Flow::from_value_with(value, origin, &REGISTRY)
    }
    /// Every problem in the flow (empty means valid), with the built-in connectors' checks.
    pub fn validate(&self) -> Vec<FieldError> {
        self.validate_with(&REGISTRY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_appflow_types_map_back() {
        let names = REGISTRY.names();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            names.len(),
            "duplicate connector name in {names:?}"
        );
        for c in REGISTRY.iter() {
            if let Some(t) = c.appflow_type {
                assert_eq!(REGISTRY.by_appflow_type(t).unwrap().name, c.name);
            }
        }
        assert_eq!(
            REGISTRY.by_appflow_type("SALESFORCE").unwrap().name,
            "salesforce"
        );
        assert_eq!(
            REGISTRY.by_appflow_type("CustomConnector").unwrap().name,
            "rest"
        );
        assert!(REGISTRY.get("nope").is_none());
    }

    #[test]
    fn connector_data_is_complete() {
        for c in REGISTRY.iter() {
            if c.needs_profile {
                assert!(!c.example_host.is_empty(), "{}: example_host", c.name);
                assert!(
                    !c.example_host.contains('/'),
                    "{}: a host, not a URL",
                    c.name
                );
            }
            if c.appflow_type.is_some() && c.name != "rest" {
                assert!(
                    c.last_modified_field("any").is_some(),
                    "{}: an AppFlow connector needs a default incremental field",
                    c.name
                );
            }
        }
        let hubspot = REGISTRY.get("hubspot").unwrap();
        assert_eq!(
            hubspot.last_modified_field("contacts"),
            Some("lastmodifieddate")
        );
        assert_eq!(
            hubspot.last_modified_field("deals"),
            Some("hs_lastmodifieddate")
        );
        assert_eq!(REGISTRY.get("rest").unwrap().last_modified_field("x"), None);
    }

    #[test]
    fn unknown_connector_is_named_with_the_choices() {
        let errs = Flow::parse(
            "name: f\nsource:\n  connector: marketoo\n  entity: leads\ndestination:\n  local: out\n",
            "f.yaml",
        )
        .unwrap_err()
        .errors();
        let e = errs.iter().find(|e| e.path == "source.connector").unwrap();
        assert!(e.message.contains("unknown connector 'marketoo'"), "{e}");
        assert!(
            e.message.contains("salesforce") && e.message.contains("rest"),
            "{e}"
        );
    }
}
