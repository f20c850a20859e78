//! Canaries (docs/security.md): a canary credential goes through a run of every connector — the
//! credential refused, and for `rest` also a successful run whose API echoes a query-string key
//! into its next links — and nothing ferry emits may hold it: the CLI's output with debug logs,
//! `ferry runs list/get`, and every file of the embedded engine's state (SQLite store with flows,
//! state, cursors and run records; the event log; staging) and of the output (manifests) except
//! the secrets file itself.

use ferry_tests::saas::hubspot::{HsConfig, HubSpotMock};
use ferry_tests::saas::salesforce::{SalesforceMock, SfConfig};
use ferry_tests::saas::servicenow::{ServiceNowMock, SnConfig};
use ferry_tests::saas::slack::SlackMock;
use ferry_tests::saas::zendesk::ZendeskMock;
use ferry_tests::{Mock, MockAuth, MockConfig};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Output;

use crate::support;
use support::text;

async fn ferry(dir: &Path, args: &[&str]) -> Output {
    support::ferry_logging(dir, args, Some("debug")).await
}

/// Every file under `dir` but the secrets file, as (path, bytes).
fn files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.file_name().is_some_and(|n| n != "secrets.json") {
            out.push((
                p.display().to_string(),
                std::fs::read(&p).unwrap_or_default(),
            ));
        }
    }
}

/// Register `secret` as profile `canary`, run `flow` (expecting `ok`), and look everywhere.
async fn run_and_look(name: &str, secret: Value, flow: String, ok: bool, canary: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("secret.json"), secret.to_string()).unwrap();
    std::fs::write(d.join("flow.yaml"), flow).unwrap();
    let mut said = String::new();
    let o = ferry(d, &["profiles", "put", "canary", "--file", "secret.json"]).await;
    assert!(o.status.success(), "{name}: {}", text(&o));
    said.push_str(&text(&o));
    let o = ferry(d, &["run", "flow.yaml", "--json"]).await;
    assert_eq!(o.status.success(), ok, "{name}: {}", text(&o));
    said.push_str(&text(&o));
    let record: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    if !ok {
        assert!(
            text(&o).contains("canary"),
            "{name}: the failure names the profile: {}",
            text(&o)
        );
    }
    for args in [
        vec!["runs", "list", "canary-flow", "--json"],
        vec!["flows", "get", "canary-flow"],
    ] {
        let o = ferry(d, &args).await;
        said.push_str(&text(&o));
    }
    assert!(
        !said.contains(canary),
        "{name}: the canary is in the CLI output:\n{said}"
    );
    let mut all = vec![];
    files(d, &mut all);
    for (path, bytes) in all {
        if path.ends_with("secret.json") {
            continue;
        }
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains(canary), "{name}: the canary is in {path}");
    }
    record
}

fn flow(connector: &str, entity: &str, props: Value) -> String {
    format!(
        "name: canary-flow\nsource:\n  connector: {connector}\n  profile: canary\n  entity: {entity}\n  properties: {props}\ndestination:\n  local: out\n  format: jsonl\n"
    )
}

fn http() -> Value {
    json!({"timeout_ms": 3000, "max_retries": 0})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_canary_credential_appears_nowhere_for_any_connector() {
    let zd = ZendeskMock::start(Default::default()).await;
    let hs = HubSpotMock::start(HsConfig::default()).await;
    let sn = ServiceNowMock::start(SnConfig::default()).await;
    let sl = SlackMock::start(Default::default()).await;
    let sf = SalesforceMock::start(SfConfig::default()).await;
    let api = Mock::start(MockConfig {
        auth: MockAuth::ApiKeyHeader {
            header: "X-Key".into(),
            key: "the-right-key".into(),
        },
        ..Default::default()
    })
    .await;
    let canary = "CANARY-7f3c9a";
    let mut sf_secret = sf.secret();
    sf_secret["client_secret"] = json!(canary);
    let cases: Vec<(&str, Value, String)> = vec![
        (
            "rest",
            json!({"type": "api_key", "hosts": ["127.0.0.1"], "key": canary, "header": "X-Key"}),
            flow(
                "rest",
                "tickets",
                json!({"base_url": api.url(), "http": http(), "endpoints": {"tickets": {"path": "/next/tickets", "records": "$.data[*]", "paginator": {"type": "next_url", "path": "$.next"}}}}),
            ),
        ),
        (
            "zendesk",
            json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "agent@acme.test/token", "password": canary}),
            flow(
                "zendesk",
                "tickets",
                json!({"base_url": zd.url(), "http": http()}),
            ),
        ),
        (
            "hubspot",
            json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": canary}),
            flow(
                "hubspot",
                "contacts",
                json!({"base_url": hs.url(), "http": http()}),
            ),
        ),
        (
            "servicenow",
            json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "ferry.integration", "password": canary}),
            flow(
                "servicenow",
                "incident",
                json!({"instance_url": sn.url(), "http": http()}),
            ),
        ),
        (
            "slack",
            json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": canary}),
            flow(
                "slack",
                "conversations",
                json!({"base_url": sl.url(), "http": http()}),
            ),
        ),
        (
            "salesforce",
            sf_secret,
            flow(
                "salesforce",
                "Account",
                json!({"api": "rest", "http": http()}),
            ),
        ),
    ];
    for (name, secret, f) in cases {
        run_and_look(name, secret, f, false, canary).await;
    }
}

/// The same for the newer sources: a refused canary credential of each (a key, a password, a
/// client secret at a token endpoint, a refresh token) appears nowhere ferry writes or prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_canary_credential_appears_nowhere_for_the_newer_connectors() {
    use ferry_tests::saas::ga4::{Ga4Config, Ga4Mock};
    use ferry_tests::saas::github::{GitHubConfig, GitHubMock, OWNER, REPO};
    use ferry_tests::saas::jira::{JiraConfig, JiraMock};
    use ferry_tests::saas::marketo::{MarketoConfig, MarketoMock};
    use ferry_tests::saas::shopify::{ShopifyConfig, ShopifyMock};
    use ferry_tests::saas::stripe::{StripeConfig, StripeMock};
    let canary = "CANARY-8e1d44";
    let st = StripeMock::start(StripeConfig::default()).await;
    let sh = ShopifyMock::start(ShopifyConfig::default()).await;
    let gh = GitHubMock::start(GitHubConfig::default()).await;
    let ji = JiraMock::start(JiraConfig::default()).await;
    let mk = MarketoMock::start(MarketoConfig::default()).await;
    let ga = Ga4Mock::start(Ga4Config::default()).await;
    let cases: Vec<(&str, Value, String)> = vec![
        (
            "stripe",
            json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": canary}),
            flow(
                "stripe",
                "charges",
                json!({"base_url": st.url(), "http": http()}),
            ),
        ),
        (
            "shopify",
            json!({"type": "api_key", "hosts": ["127.0.0.1"], "key": canary, "header": "X-Shopify-Access-Token"}),
            flow(
                "shopify",
                "orders",
                json!({"shop": "acme-store", "base_url": sh.url(), "http": http()}),
            ),
        ),
        (
            "github",
            json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": canary}),
            flow(
                "github",
                "issues",
                json!({"owner": OWNER, "repo": REPO, "base_url": gh.url(), "http": http()}),
            ),
        ),
        (
            "jira",
            json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "me@acme.example", "password": canary}),
            flow(
                "jira",
                "issues",
                json!({"base_url": ji.url(), "http": http()}),
            ),
        ),
        (
            "marketo",
            json!({"type": "oauth2_client_credentials", "hosts": ["127.0.0.1"],
                   "token_url": format!("{}/identity/oauth/token", mk.url()),
                   "client_id": "mkto-client", "client_secret": canary}),
            flow(
                "marketo",
                "leads",
                json!({"base_url": mk.url(), "poll_seconds": 0.01, "http": http()}),
            ),
        ),
        (
            "ga4",
            json!({"type": "oauth2_refresh_token", "hosts": ["127.0.0.1"],
                   "token_url": format!("{}/token", ga.url()),
                   "client_id": "ga-client.apps.googleusercontent.com", "client_secret": "ga-secret",
                   "refresh_token": canary}),
            flow(
                "ga4",
                "traffic",
                json!({"property_id": "123456789", "base_url": ga.url(), "http": http(),
                       "reports": {"traffic": {"dimensions": ["date", "country"], "metrics": ["sessions"]}}}),
            ),
        ),
    ];
    for (name, secret, f) in cases {
        run_and_look(name, secret, f, false, canary).await;
    }
}

/// A successful run whose API echoes the query-string key into every next link: the key is in
/// no cursor, state, run record, event, manifest or log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_canary_key_appears_nowhere_after_a_successful_run() {
    let canary = "CANARY-echoed-5150";
    let api = Mock::start(MockConfig {
        tickets: 120,
        auth: MockAuth::ApiKeyQuery {
            param: "api_key".into(),
            key: canary.into(),
        },
        ..Default::default()
    })
    .await;
    run_and_look(
        "rest (success)",
        json!({"type": "api_key", "hosts": ["127.0.0.1"], "key": canary, "query": "api_key"}),
        flow(
            "rest",
            "tickets",
            json!({"base_url": api.url(), "http": http(), "endpoints": {"tickets": {"path": "/next/tickets", "records": "$.data[*]", "paginator": {"type": "next_url", "path": "$.next"}}}}),
        ),
        true,
        canary,
    )
    .await;
    // Every request carried the key (so the echo really happened in the next links).
    let seen = api.requests();
    assert!(seen.len() >= 5, "{seen:?}");
    assert!(seen.iter().all(|r| r.query.contains(canary)), "{seen:?}");
}

/// A canary *record value* (not a credential) in records the flow refuses — a value of the
/// wrong type for a declared field, and a value a `validate` task drops — appears nowhere:
/// rejection reasons name the field, the record's position and the expected type, never the
/// value (docs/security.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_record_value_in_refused_records_appears_nowhere() {
    let canary = "CANARY-record-8086";
    let api = Mock::start(MockConfig {
        tickets: 60,
        ..Default::default()
    })
    .await;
    // Ticket 7: a text where the flow declares an integer. Ticket 11: a subject the validate
    // task refuses.
    api.override_field(7, "priority", json!(canary));
    api.override_field(11, "subject", json!(canary));
    let props = json!({"base_url": api.url(), "http": http(), "endpoints": {"tickets": {
        "path": "/next/tickets", "records": "$.data[*]",
        "paginator": {"type": "next_url", "path": "$.next"},
        "fields": [{"name": "id", "type": "integer"}, {"name": "subject"},
                   {"name": "priority", "type": "integer"}, {"name": "updated_at", "type": "timestamp"}]}}});
    let flow = format!(
        "{}tasks:\n  - validate: {{ field: subject, matches: \"^Ticket [0-9]+$\" }}\n",
        flow("rest", "tickets", props)
    );
    let rec = run_and_look(
        "rest (refused record values)",
        json!({"type": "none"}),
        flow,
        true,
        canary,
    )
    .await;
    // Both records were served and refused; the other 58 written.
    assert_eq!(rec["records_written"], 58, "{rec}");
    assert_eq!(rec["records_rejected"], 2, "{rec}");
}
