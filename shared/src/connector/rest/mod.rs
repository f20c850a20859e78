//! The `rest` connector: any paginated JSON API, configured in the flow's `source.properties`.
//!
//! ```yaml
//! source:
//!   connector: rest
//!   profile: helpdesk            # optional: the secret holding credentials (see auth.rs)
//!   entity: tickets              # one of the endpoints below
//!   properties:
//!     base_url: https://api.example.com/v2
//!     headers: { Accept: application/json }
//!     params: { include: tags }
//!     concurrency: 4             # requests in flight where the paging style allows it
//!     http: { timeout_ms: 30000, max_retries: 5, max_retry_after_seconds: 60,
//!             budget: { requests: 10, per_seconds: 1 } }
//!     endpoints:
//!       tickets:
//!         path: /tickets
//!         records: $.data[*]
//!         primary_key: id
//!         paginator: { type: cursor, token_path: $.meta.next_cursor, param: cursor,
//!                      has_more_path: $.meta.has_more }
//!         incremental: { in: query, set: { updated_since: "{start}" }, cursor_path: $.updated_at }
//!       comments:
//!         path: /tickets/{id}/comments
//!         records: $.comments[*]
//!         parent: { endpoint: tickets, fields: { id: ticket_id } }
//!         ignore_status: [404]
//! ```
//!
//! The cursor handed between chunks is a small JSON object (`{"pages": n, "next": …,
//! "seen": [...]}`): where to resume, how many pages were read (for `max_pages`) and hashes of
//! the page tokens seen, so an API that hands out the same token twice fails instead of looping.

use super::auth::Authenticator;
use super::http::{HttpClient, HttpRequest, HttpResponse, HttpSettings};
use super::*;
use arrow::array::Array as _;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{json, Map, Value};
use serde_json_path::JsonPath;
use std::collections::BTreeMap;

mod config;
mod source;
mod tail;
mod types;
pub use config::*;
pub use source::*;
use types::*;

/// The `rest` connector in the [registry](super::registry).
pub static CONNECTOR: super::registry::Connector = super::registry::Connector {
    name: "rest",
    appflow_type: Some("CustomConnector"),
    needs_profile: false,
    oauth_client_auth: super::auth::ClientAuth::Basic,
    auth_kinds: &[
        "none",
        "api_key",
        "basic",
        "bearer",
        "oauth2_client_credentials",
        "oauth2_refresh_token",
    ],
    consent: None,
    static_description: true,
    last_modified: &[],
    example_host: "api.acme.com",
    probe_entity: None,
    account_properties: None,
    api_host_property: super::registry::ApiHostProperty::None,
    validate,
    build: |source, profile| {
        let auth = match profile {
            Some(p) => p.authenticator()?,
            None => super::auth::Authenticator::none(),
        };
        Ok(Box::new(RestSource::new(
            &source.properties,
            source.incremental.as_ref().map(|i| i.field.as_str()),
            auth,
        )?))
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    fn props(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// Every endpoint of the built-in declarative connectors that decodes pages straight to Arrow
    /// does it with the one-pass scanner: their declared schemas (decimals, JSON text, objects,
    /// arrays of objects) are all of kinds it reads.
    #[tokio::test]
    async fn declared_schemas_of_the_builtin_connectors_are_scanned() {
        use crate::connector::declarative::BUILTINS;
        let mut scanned = 0;
        for b in BUILTINS {
            let def = b.definition().unwrap();
            let mut p = Map::new();
            for (k, v) in &def.variables {
                if v.default.is_none() {
                    p.insert(k.clone(), json!(v.example.clone().unwrap()));
                }
            }
            let source =
                RestSource::new(&b.resolve(&p).unwrap(), None, Authenticator::none()).unwrap();
            for name in source.endpoints.keys() {
                let d = source.describe(name).await.unwrap();
                let schema = crate::schema::arrow_schema(&d.fields);
                let ep = source.endpoint(name).unwrap();
                if ep.cfg.parent.is_some() {
                    continue;
                }
                // Endpoints whose records are looked at one by one take the values path, with no
                // page shape at all: Stripe's (paged by the last record's id), GitHub's (pull
                // requests left out of issues, records sorted or derived).
                let Some((shape, _)) = ep.page_shape(&schema, None) else {
                    continue;
                };
                assert!(shape.scans(), "{}: {name} is not scanned: {schema:?}", b.name);
                scanned += 1;
            }
        }
        // Shopify's orders (line items: a list of structs with decimals), customers, products.
        assert!(scanned >= 3, "{scanned}");
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = RestConfig::parse(&props(json!({"base_url": "x", "endpoints": {"t": {"path": "/t", "records": "$[*]", "paginater": {}}}}))).unwrap_err();
        assert!(
            e.to_string().contains("source.properties.endpoints.t"),
            "{e}"
        );
        let c = RestConfig::parse(&props(
            json!({"base_url": "http://h", "endpoints": {"t": {"path": "/t", "records": "$[*"}}}),
        ))
        .unwrap();
        let e = c.check("t", None).unwrap_err();
        assert!(e.to_string().contains("endpoints.t.records"), "{e}");
        let c = RestConfig::parse(&props(
            json!({"base_url": "http://h", "endpoints": {"t": {"path": "/t", "records": "$[*]"}}}),
        ))
        .unwrap();
        assert!(c
            .check("users", None)
            .unwrap_err()
            .to_string()
            .contains("source.entity"));
        let c = RestConfig::parse(&props(json!({"base_url": "http://h", "endpoints": {"t": {"path": "/t", "records": "$[*]", "paginator": {"type": "cursor", "param": "c"}}}}))).unwrap();
        assert!(c
            .check("t", None)
            .unwrap_err()
            .to_string()
            .contains("token_path"));
        let c = RestConfig::parse(&props(json!({"base_url": "http://h", "endpoints": {"c": {"path": "/t/{id}/c", "records": "$[*]", "parent": {"endpoint": "nope"}}}}))).unwrap();
        assert!(c
            .check("c", None)
            .unwrap_err()
            .to_string()
            .contains("parent.endpoint"));
    }

    #[test]
    fn window_values_are_formatted_and_placed() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_time(t, None), "2026-01-02T03:04:05Z");
        assert_eq!(format_time(t, Some("epoch_seconds")), "1767323045");
        assert_eq!(format_time(t, Some("%Y-%m-%d")), "2026-01-02");
        let mut r = HttpRequest::get("http://h");
        place(&mut r, Placement::Body, "cursor", json!("abc"));
        assert_eq!(r.body, Some(json!({"cursor": "abc"})));
        assert_eq!(r.method, reqwest::Method::POST);
    }

    #[test]
    fn inference() {
        let mut w = vec![];
        let f = infer_fields(
            &[
                json!({"t": "2026-01-01T00:00:00Z", "n": 3, "x": [1.5], "a": {"b": 1, "c": null}, "z": null, "m": 1}),
                json!({"n": 2.5, "a": {"b": 2, "d": ["x"]}, "lines": [{"q": 1}, {"q": 2, "r": true}], "m": {"k": 1}, "e": {}}),
            ],
            &mut w,
        );
        let t = |n: &str| f.iter().find(|x| x.name == n).unwrap().data_type.clone();
        assert_eq!(t("t"), FieldType::Timestamp);
        assert_eq!(t("n"), FieldType::Float);
        assert_eq!(
            t("x"),
            FieldType::Array {
                item: Box::new(FieldType::Float)
            }
        );
        assert_eq!(
            t("a"),
            FieldType::Object {
                fields: vec![
                    FieldInfo::new("b", FieldType::Integer),
                    FieldInfo::new("c", FieldType::Json),
                    FieldInfo::new(
                        "d",
                        FieldType::Array {
                            item: Box::new(FieldType::String)
                        }
                    ),
                ]
            }
        );
        assert_eq!(
            t("lines"),
            FieldType::Array {
                item: Box::new(FieldType::Object {
                    fields: vec![
                        FieldInfo::new("q", FieldType::Integer),
                        FieldInfo::new("r", FieldType::Boolean)
                    ]
                })
            }
        );
        // Only nulls, an empty object, conflicting shapes: JSON text; only the conflict warns.
        assert_eq!(t("z"), FieldType::Json);
        assert_eq!(t("e"), FieldType::Json);
        assert_eq!(t("m"), FieldType::Json);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("'m'") && w[0].contains("JSON text"), "{w:?}");
    }

    #[test]
    fn declared_decimals_and_record_shaping() {
        let decl: Vec<FieldDecl> = serde_json::from_value(json!([
            {"name": "id", "type": "integer"},
            {"name": "price", "type": "decimal", "precision": 20, "scale": 3},
            {"name": "created", "type": "timestamp"},
            {"name": "meta", "type": "json"},
            {"name": "lines", "type": "array", "items": {"type": "object", "fields": [{"name": "qty", "type": "integer"}]}},
        ]))
        .unwrap();
        let f = declared_fields("f", &decl).unwrap();
        assert_eq!(
            f[1].data_type,
            FieldType::Decimal {
                precision: 20,
                scale: 3
            }
        );
        let shaped = shape_declared(
            &json!({"id": "7", "price": "0.10", "created": 1405641735, "meta": {"a": 1},
                    "lines": [{"qty": "2", "extra": true}], "undeclared": 1}),
            &f,
        )
        .unwrap();
        assert_eq!(
            shaped,
            json!({"id": 7, "price": "0.100", "created": "2014-07-18T00:02:15Z", "meta": {"a": 1},
                   "lines": [{"qty": 2}]})
        );
        assert!(shape_declared(&json!({"price": "ten"}), &f).is_err());
        for (bad, says) in [
            (json!([{"name": "a", "type": "decimal"}]), "scale: 2"),
            (
                json!([{"name": "a", "type": "decimal", "precision": 50, "scale": 2}]),
                "1-38",
            ),
            (
                json!([{"name": "a", "type": "string", "scale": 2}]),
                "only a `decimal`",
            ),
        ] {
            let decl: Vec<FieldDecl> = serde_json::from_value(bad).unwrap();
            let e = declared_fields("f", &decl).unwrap_err().to_string();
            assert!(e.starts_with("f[0].scale:") && e.contains(says), "{e}");
        }
    }

    #[test]
    fn sorted_needs_a_token_paginator() {
        let c = RestConfig::parse(&props(json!({"base_url": "http://h", "endpoints": {"t": {
            "path": "/t", "records": "$[*]",
            "paginator": {"type": "page_number"},
            "incremental": {"set": {}, "sorted": "descending", "cursor_path": "$.u"}}}})))
        .unwrap();
        let e = c.check("t", None).unwrap_err().to_string();
        assert!(e.contains("incremental.sorted"), "{e}");
        let c = RestConfig::parse(&props(json!({"base_url": "http://h", "endpoints": {"t": {
            "path": "/t", "records": "$[*]", "paginator": {"type": "link_header"},
            "incremental": {"set": {}, "cursor_path": "$.u"}}}})))
        .unwrap();
        let e = c.check("t", None).unwrap_err().to_string();
        assert!(e.contains("sorted: descending"), "{e}");
    }

    #[test]
    fn declared_objects_and_arrays() {
        let decl: Vec<FieldDecl> = serde_json::from_value(json!([
            {"name": "id", "type": "integer"},
            {"name": "address", "type": "object", "fields": [{"name": "city"}, {"name": "zip", "type": "integer"}]},
            {"name": "tags", "type": "array", "items": "string"},
            {"name": "lines", "type": "array", "items": {"type": "object", "fields": [{"name": "sku"}]}},
        ]))
        .unwrap();
        let f = declared_fields("f", &decl).unwrap();
        assert_eq!(
            f[1].data_type,
            FieldType::Object {
                fields: vec![
                    FieldInfo::new("city", FieldType::String),
                    FieldInfo::new("zip", FieldType::Integer)
                ]
            }
        );
        assert_eq!(
            f[3].data_type,
            FieldType::Array {
                item: Box::new(FieldType::Object {
                    fields: vec![FieldInfo::new("sku", FieldType::String)]
                })
            }
        );
        for (bad, field, says) in [
            (
                json!([{"name": "a", "type": "object"}]),
                "f[0].fields",
                "lists its fields",
            ),
            (
                json!([{"name": "a", "type": "array"}]),
                "f[0].items",
                "items: string",
            ),
            (
                json!([{"name": "a", "fields": []}]),
                "f[0].fields",
                "type: object",
            ),
            (
                json!([{"name": "a", "type": "array", "items": "nope"}]),
                "f[0].items.type",
                "unknown type 'nope'",
            ),
            (json!([{"name": "a"}, {"name": "a"}]), "f[1].name", "twice"),
        ] {
            let decl: Vec<FieldDecl> = serde_json::from_value(bad).unwrap();
            let e = declared_fields("f", &decl).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{field}:")) && e.contains(says),
                "{e}"
            );
        }
    }
}
