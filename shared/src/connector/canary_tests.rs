//! Record values never reach messages (docs/security.md): each vendor connector's own
//! shape-error path, fed a page whose typed field holds a canary text, fails the page with a
//! message that names the field, the record and the expected type — never the value. Messages
//! reach logs, the execution's failure cause, the run record and events, which have other
//! readers than the data. (The `rest` connector and the Arrow decoder's rejected records are
//! covered end to end by `cli/tests/canary.rs`.)

#![cfg(test)]

use super::auth::Authenticator;
use super::testing::{serve, Canned};
use super::{ReadRequest, Source, SourceError};
use crate::adapters::memory::MemorySecrets;
use crate::ports::Secret;
use serde_json::{json, Value};
use std::sync::Arc;

const CANARY: &str = "CANARY-record-value-5150";

fn auth(secret: Value) -> Authenticator {
    Authenticator::from_secret(
        "crm",
        &Secret::new(secret),
        Arc::new(MemorySecrets::default()),
    )
    .unwrap()
}

fn props(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn req(entity: &str, field: &str) -> ReadRequest {
    ReadRequest {
        entity: entity.into(),
        window: Some(crate::model::Window {
            start: Some("2020-01-01T00:00:00Z".parse().unwrap()),
            end: "2030-01-01T00:00:00Z".parse().unwrap(),
        }),
        incremental_field: Some(field.into()),
        page_size: None,
        filters: vec![],
    }
}

fn assert_refused_without_value(connector: &str, field: &str, r: Result<super::Page, SourceError>) {
    let e = r.expect_err(&format!(
        "{connector}: a page with a mistyped {field} is refused"
    ));
    let m = e.to_string();
    assert!(
        matches!(e, SourceError::Rejected { .. }),
        "{connector}: {e:?}"
    );
    assert!(
        m.contains(field),
        "{connector}: the message names the field: {m}"
    );
    assert!(
        !m.contains(CANARY),
        "{connector}: the record value is in: {m}"
    );
    assert!(m.len() < 1000, "{connector}: a bounded message: {m}");
}

#[tokio::test]
async fn zendesk_names_the_field_not_the_value() {
    let srv = serve(vec![Canned::json(
        200,
        json!({"tickets": [{"id": 1, "subject": "x", "updated_at": CANARY, "created_at": "2026-01-01T00:00:00Z"}],
               "end_of_stream": true, "after_cursor": null}),
    )])
    .await;
    let s = super::zendesk::ZendeskSource::new(
        &props(json!({"base_url": srv.url, "http": {"max_retries": 0}})),
        auth(json!({"type": "bearer", "token": "t-1", "hosts": ["127.0.0.1"]})),
    )
    .unwrap();
    let r = s.read_page(&req("tickets", "updated_at"), None).await;
    assert_refused_without_value("zendesk", "updated_at", r);
}

#[tokio::test]
async fn slack_names_the_field_not_the_value() {
    let srv = serve(vec![Canned::json(
        200,
        json!({"ok": true, "channels": [{"id": "C1", "name": "general", "created": CANARY, "num_members": 3}],
               "response_metadata": {"next_cursor": ""}}),
    )])
    .await;
    let s = super::slack::SlackSource::new(
        &props(json!({"base_url": srv.url, "http": {"max_retries": 0}})),
        "conversations",
        auth(json!({"type": "bearer", "token": "xoxb-1", "hosts": ["127.0.0.1"]})),
    )
    .unwrap();
    let r = s.read_page(&req("conversations", "created"), None).await;
    assert_refused_without_value("slack", "created", r);
}

/// Every typed-value path of the connectors (the shared `normalize::value`, and the vendor
/// coercions of Salesforce, Marketo, Jira and GA4), fed a canary where another type is due —
/// as JSON text, as a JSON object, as a CSV cell — refuses it with a message that does not
/// carry the value. These messages become the page's `Rejected` error.
#[test]
fn no_typed_value_path_puts_the_value_in_its_message() {
    use crate::schema::FieldType;
    use serde_json::json;
    let types = [
        FieldType::Integer,
        FieldType::Float,
        FieldType::Decimal {
            precision: 18,
            scale: 2,
        },
        FieldType::Boolean,
        FieldType::Timestamp,
        FieldType::Date,
    ];
    let values = [
        json!(CANARY),
        json!({ "nested": CANARY }),
        json!([CANARY]),
        json!(format!("{CANARY} 12")),
    ];
    let mut refused = 0;
    let mut check = |path: &str, r: Result<Value, String>| {
        if let Err(m) = r {
            refused += 1;
            assert!(!m.contains(CANARY), "{path}: the value is in: {m}");
            assert!(m.len() < 300, "{path}: a bounded message: {m}");
        }
    };
    for t in &types {
        for v in &values {
            check(&format!("normalize {t:?}"), super::normalize::value(v, t));
            check(&format!("jira {t:?}"), super::jira::shape_value(v, t));
        }
        check(
            &format!("marketo {t:?}"),
            super::marketo::MarketoSource::typed(CANARY, t),
        );
    }
    use super::salesforce::{typed, Cell, Kind};
    let kinds = [
        Kind::Integer,
        Kind::Float,
        Kind::Decimal {
            precision: 18,
            scale: 2,
        },
        Kind::Boolean,
        Kind::Timestamp,
        Kind::Date,
    ];
    let csv = CANARY.to_string();
    for k in kinds {
        check(
            &format!("salesforce csv {k:?}"),
            typed(k, "Field__c", Cell::Csv(&csv)),
        );
        for v in &values {
            check(
                &format!("salesforce json {k:?}"),
                typed(k, "Field__c", Cell::Json(v)),
            );
        }
    }
    for ty in [
        "TYPE_INTEGER",
        "TYPE_FLOAT",
        "TYPE_CURRENCY",
        "TYPE_SECONDS",
    ] {
        check(&format!("ga4 {ty}"), super::ga4::metric_value(CANARY, ty));
    }
    // Every path refused (a path that accepted a canary as a number would make this vacuous).
    assert!(refused >= 80, "only {refused} refusals");
}
