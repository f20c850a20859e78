//! Profiles own their hosts (docs/security.md): for every connector, a flow that points a
//! profile at a host the profile is not bound to, or at a plain-http host, is refused before any
//! request carries the credentials, with a message naming the profile and the host; and a next
//! link to another host is not followed with the credentials (see also the unit tests in
//! `shared/src/connector/auth.rs`).

use ferry::connector::{ConnectorContext, ReadRequest, SourceError};
use ferry::flow::Flow;
use ferry::ports::{Secret, SecretStore};
use ferry_tests::saas::salesforce::{SalesforceMock, SfConfig};
use serde_json::{json, Value};
use std::sync::Arc;

const FAST_HTTP: &str = r#"{"timeout_ms": 3000, "max_retries": 0}"#;

/// (connector, entity, properties pointing at `base`, a secret of the connector's kind).
fn cases(base: &str) -> Vec<(&'static str, &'static str, Value, Value)> {
    let http: Value = serde_json::from_str(FAST_HTTP).unwrap();
    vec![
        (
            "rest",
            "items",
            json!({"base_url": base, "http": http, "endpoints": {"items": {"path": "/items", "records": "$.data[*]"}}}),
            json!({"type": "api_key", "key": "canary-key", "header": "X-Key"}),
        ),
        (
            "zendesk",
            "tickets",
            json!({"base_url": base, "http": http}),
            json!({"type": "basic", "username": "agent@acme.test/token", "password": "canary-pw"}),
        ),
        (
            "servicenow",
            "incident",
            json!({"instance_url": base, "http": http}),
            json!({"type": "basic", "username": "svc", "password": "canary-pw"}),
        ),
        (
            "hubspot",
            "contacts",
            json!({"base_url": base, "http": http}),
            json!({"type": "bearer", "token": "canary-token"}),
        ),
        (
            "jira",
            "issues",
            json!({"base_url": base, "http": http}),
            json!({"type": "basic", "username": "me@acme.example", "password": "canary-pw"}),
        ),
        (
            "slack",
            "conversations",
            json!({"base_url": base, "http": http}),
            json!({"type": "bearer", "token": "xoxb-canary"}),
        ),
    ]
}

/// The `connector` source of a flow on `entity` with `props`, its profile `crm` holding
/// `secret`, and the request for its first pages.
async fn source_for(
    connector: &str,
    entity: &str,
    props: &Value,
    secret: Value,
) -> Result<(Box<dyn ferry::connector::Source>, ReadRequest), SourceError> {
    let secrets = Arc::new(ferry::adapters::memory::MemorySecrets::default());
    secrets
        .put_secret("crm", &Secret::new(secret))
        .await
        .unwrap();
    let flow = Flow::parse(
        &format!(
            "name: hosts\nsource:\n  connector: {connector}\n  profile: crm\n  entity: {entity}\n  properties: {}\ndestination:\n  local: out\n",
            serde_json::to_string(props).unwrap()
        ),
        "hosts.yaml",
    )
    .unwrap_or_else(|e| panic!("{connector}: {e}"));
    let source = ferry::connector::build(&flow.source, &ConnectorContext { secrets }).await?;
    let req = ReadRequest {
        entity: entity.into(),
        window: None,
        incremental_field: None,
        page_size: Some(10),
        filters: vec![],
    };
    Ok((source, req))
}

async fn read_first_page(
    connector: &str,
    entity: &str,
    props: &Value,
    secret: Value,
) -> Result<(), SourceError> {
    let (source, req) = source_for(connector, entity, props, secret).await?;
    source.read_page(&req, None).await.map(|_| ())
}

fn assert_refused(connector: &str, r: Result<(), SourceError>, host: &str, why: &str) {
    let e = r.expect_err(&format!("{connector}: the request must be refused"));
    let m = e.to_string();
    assert!(
        matches!(e, SourceError::Auth { .. }),
        "{connector}: an auth refusal, got {e:?}"
    );
    assert!(
        m.contains("'crm'") && m.contains(&format!("'{host}'")) && m.contains(why),
        "{connector}: the message names the profile, the host '{host}' and '{why}': {m}"
    );
    assert!(!m.contains("canary"), "{connector}: no credential in {m}");
}

/// The profile names its hosts; the flow points it at another one. Nothing listens there: the
/// refusal comes before any connection.
#[tokio::test]
async fn a_flow_cannot_point_a_profile_at_another_host() {
    for (connector, entity, props, mut secret) in cases("http://127.0.0.1:9") {
        secret["hosts"] = json!(["api.vendor.example"]);
        let r = read_first_page(connector, entity, &props, secret).await;
        assert_refused(connector, r, "127.0.0.1", "bound to api.vendor.example");
    }
}

/// A profile that names no hosts (one stored before profiles had to) sends its credentials
/// nowhere: the first request is refused, naming the host and the command that binds it.
#[tokio::test]
async fn a_profile_without_hosts_is_refused_with_the_command_that_binds_it() {
    for (connector, entity, props, secret) in cases("http://127.0.0.1:9") {
        let r = read_first_page(connector, entity, &props, secret).await;
        assert_refused(
            connector,
            r,
            "127.0.0.1",
            "ferry profiles migrate crm --host 127.0.0.1",
        );
    }
}

/// A Salesforce flow's `login_url` receives the refresh token: it must be a profile host.
#[tokio::test]
async fn a_salesforce_login_url_must_be_a_profile_host() {
    let secret = json!({"client_id": "c", "client_secret": "canary-s", "refresh_token": "canary-r",
        "hosts": ["login.salesforce.com"]});
    let props = json!({"api": "rest", "login_url": "https://login.evil.example"});
    let r = read_first_page("salesforce", "Account", &props, secret).await;
    assert_refused(
        "salesforce",
        r,
        "login.evil.example",
        "ferry profiles migrate crm --host login.evil.example",
    );
}

/// Credentials never travel over plain http to a real host.
#[tokio::test]
async fn plain_http_is_refused_except_on_loopback() {
    for (connector, entity, props, secret) in cases("http://api.vendor.example") {
        let r = read_first_page(connector, entity, &props, secret).await;
        assert_refused(connector, r, "api.vendor.example", "use https");
    }
}

/// Salesforce: the token endpoint (the profile's own) names the instance; a flow's
/// `instance_url` on another host is refused.
#[tokio::test]
async fn salesforce_keeps_to_the_instance_its_token_endpoint_names() {
    let mock = SalesforceMock::start(SfConfig::default()).await;
    let http: Value = serde_json::from_str(FAST_HTTP).unwrap();
    let elsewhere = mock.url().replace("127.0.0.1", "localhost");
    let mut secret = mock.secret();
    secret["hosts"] = json!(["login.salesforce.com"]);
    let r = read_first_page(
        "salesforce",
        "Account",
        &json!({"api": "rest", "instance_url": elsewhere, "http": http}),
        secret,
    )
    .await;
    assert_refused("salesforce", r, "localhost", "bound to");
    // Without the flow's override the instance from the token response is used and allowed.
    let mut secret = mock.secret();
    secret["hosts"] = json!(["login.salesforce.com"]);
    read_first_page(
        "salesforce",
        "Account",
        &json!({"api": "rest", "http": http}),
        secret,
    )
    .await
    .expect("the token endpoint's instance is the profile's");
}

fn next_url_flow(mock: &ferry_tests::Mock) -> Value {
    json!({
        "base_url": mock.url(),
        "http": serde_json::from_str::<Value>(FAST_HTTP).unwrap(),
        "endpoints": {"tickets": {"path": "/next/tickets", "records": "$.data[*]",
            "paginator": {"type": "next_url", "path": "$.next"}}}
    })
}

async fn pages(
    props: &Value,
    secret: Value,
) -> (
    Result<ferry::connector::Page, SourceError>,
    Option<Result<ferry::connector::Page, SourceError>>,
) {
    let (source, req) = source_for("rest", "tickets", props, secret).await.unwrap();
    let first = source.read_page(&req, None).await;
    let second = match &first {
        Ok(p) => match &p.next {
            Some(c) => Some(source.read_page(&req, Some(c)).await),
            None => None,
        },
        Err(_) => None,
    };
    (first, second)
}

/// An API (or anything between) that hands out a next link on another host does not get the
/// profile's credentials: the second request is refused, naming the profile and the host.
#[tokio::test]
async fn a_next_link_to_another_host_is_not_followed() {
    let mock = ferry_tests::Mock::start(Default::default()).await;
    mock.set_next_host(Some("localhost"));
    let (first, second) = pages(
        &next_url_flow(&mock),
        json!({"type": "api_key", "key": "canary-key", "header": "X-Key", "hosts": ["127.0.0.1"]}),
    )
    .await;
    assert_eq!(first.unwrap().records.len(), 25);
    assert_refused(
        "rest",
        second.expect("a second page was asked for").map(|_| ()),
        "localhost",
        "bound to 127.0.0.1",
    );
    // The other host never saw a request (it is the same server: one data request only).
    assert_eq!(mock.requests().len(), 1, "{:?}", mock.requests());
}

/// An API that echoes a query-string key into its next links does not put the key into the
/// cursor (which lands in the execution state and history); the next request still carries it.
#[tokio::test]
async fn a_query_string_key_never_reaches_the_cursor() {
    let mock = ferry_tests::Mock::start(Default::default()).await;
    let (first, second) = pages(
        &next_url_flow(&mock),
        json!({"type": "api_key", "key": "canary-key-5150", "query": "api_key", "hosts": ["127.0.0.1"]}),
    )
    .await;
    let first = first.unwrap();
    let cursor = serde_json::to_string(first.next.as_ref().unwrap()).unwrap();
    assert!(cursor.contains("after="), "{cursor}");
    assert!(
        !cursor.contains("canary-key-5150"),
        "the cursor holds the key: {cursor}"
    );
    assert_eq!(second.unwrap().unwrap().records.len(), 25);
    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(
            r.query.matches("api_key=canary-key-5150").count(),
            1,
            "every request carries the key once: {r:?}"
        );
    }
}

/// The embedded engine's execution history (every state's input and output, as Step Functions
/// keeps them) of a multi-chunk run whose API echoes a query-string key into its next links:
/// the key is in none of it — the cursor between chunks is stored without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_key_is_not_in_the_execution_history() {
    use ferry::local::asl::Observer;
    use ferry::steps::start_run::RunRequest;
    #[derive(Default)]
    struct History(std::sync::Mutex<Vec<String>>);
    impl Observer for History {
        fn state_entered(&self, name: &str, input: &Value) {
            self.0.lock().unwrap().push(format!("{name} in {input}"));
        }
        fn state_exited(&self, name: &str, output: &Value) {
            self.0.lock().unwrap().push(format!("{name} out {output}"));
        }
    }
    let canary = "CANARY-history-4242";
    let mock = ferry_tests::Mock::start(ferry_tests::MockConfig {
        tickets: 100,
        auth: ferry_tests::MockAuth::ApiKeyQuery {
            param: "api_key".into(),
            key: canary.into(),
        },
        ..Default::default()
    })
    .await;
    let local = ferry_tests::harness::Local::new();
    local
        .put_secret(
            "crm",
            json!({"type": "api_key", "key": canary, "query": "api_key", "hosts": ["127.0.0.1"]}),
        )
        .await;
    let flow = Flow::parse(
        &format!(
            "name: echo\nsource:\n  connector: rest\n  profile: crm\n  entity: tickets\n  chunk: {{ records: 25 }}\n  properties: {}\ndestination:\n  local: out\n  format: jsonl\n",
            serde_json::to_string(&next_url_flow(&mock)).unwrap()
        ),
        "echo.yaml",
    )
    .unwrap();
    local
        .engine
        .deps
        .flows
        .put_flow(&flow, chrono::Utc::now())
        .await
        .unwrap();
    let history = History::default();
    let out = local
        .engine
        .run(
            RunRequest {
                flow: "echo".into(),
                trigger: None,
                mode: None,
                window: None,
            },
            &history,
        )
        .await;
    let run = out.record.expect("a run record");
    assert_eq!(run.status, ferry::model::RunStatus::Successful, "{run:?}");
    assert_eq!(run.records_written, 100);
    let h = history.0.lock().unwrap();
    assert!(
        h.iter().any(|s| s.contains("after=")),
        "the history holds the cursors between chunks: {h:#?}"
    );
    for s in h.iter() {
        assert!(
            !s.contains(canary),
            "the key is in the execution history: {s}"
        );
    }
}
