//! Nothing secret and nothing from a record reaches what other people read, on the deployed
//! stack (docs/security.md): a run whose API echoes the profile's query-string key into its next
//! links and serves a canary value in a field the flow declares as an integer. The key and the
//! value must appear in none of: the execution's history (every state's input and output, as
//! `GetExecutionHistory` returns it), the functions' logs at debug level, the run record, the
//! table's items, the events on the bus and the output bucket (but the rejected records' file,
//! which is the data); nor the key in what is left in staging.

use ferry::flow::Flow;
use ferry_tests::stack::{Execution, Stack, StackOptions};
use ferry_tests::{Mock, MockAuth, MockConfig};
use serde_json::json;

const KEY: &str = "CANARY-key-31337";
const VALUE: &str = "CANARY-value-27182";

/// The template deployed with its functions logging at debug level.
async fn debug_stack() -> Stack {
    Stack::deploy_with(StackOptions {
        parameters: [("LogLevel".to_string(), "debug".to_string())].into(),
        ..Default::default()
    })
    .await
}

/// Register `flow` and run it on demand to its end.
async fn register_and_run(stack: &Stack, flow: &Flow) -> (String, Execution) {
    stack
        .deps()
        .flows
        .put_flow(flow, chrono::Utc::now())
        .await
        .unwrap();
    let arn = stack
        .start(&json!({"flow": flow.name, "trigger": "on_demand"}), None)
        .await;
    let e = stack.wait(&arn, std::time::Duration::from_secs(300)).await;
    (arn, e)
}

/// Every item of the stack's table, as text.
/// Store `secret` as `profile`, then register and run flow `name`: `connector`'s `entity` with
/// `props` (and the `source` lines in `more`), JSON lines under the output bucket's
/// `<connector>/` prefix.
#[allow(clippy::too_many_arguments)]
async fn run_with_profile(
    stack: &Stack,
    name: &str,
    profile: &str,
    secret: serde_json::Value,
    connector: &str,
    entity: &str,
    more: &str,
    props: &serde_json::Value,
) -> (String, Execution) {
    stack
        .deps()
        .secrets
        .put_secret(profile, &ferry::ports::Secret::new(secret))
        .await
        .unwrap();
    let b = &stack.output_bucket;
    let flow = Flow::parse(
        &format!(
            "name: {name}\nsource:\n  connector: {connector}\n  profile: {profile}\n  entity: {entity}\n{more}  properties: {props}\ndestination:\n  s3: {{ bucket: {b}, prefix: {connector} }}\n  format: jsonl\ntrigger: {{ on_demand: {{}} }}\n"
        ),
        "flow.yaml",
    )
    .unwrap();
    register_and_run(stack, &flow).await
}

async fn table_text(stack: &Stack) -> String {
    let table = aws_sdk_dynamodb::Client::new(&stack.conf)
        .scan()
        .table_name(&stack.outputs["TableName"])
        .send()
        .await
        .unwrap();
    format!("{:?}", table.items())
}

/// Every object of `bucket` with its text (the harness's own listing and reads).
async fn bodies(stack: &Stack, bucket: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    for key in stack.keys(bucket, "").await {
        let body = stack.get(bucket, &key).await;
        out.push((key, String::from_utf8_lossy(&body).into_owned()));
    }
    out
}

/// An execution's history, every event, as the wire carries it (the harness answers
/// GetExecutionHistory with its interpreter's events and their inputs and outputs).
async fn history(stack: &Stack, arn: &str) -> String {
    let v: serde_json::Value = reqwest::Client::new()
        .post(&stack.sfn_endpoint)
        .header("x-amz-target", "AWSStepFunctions.GetExecutionHistory")
        .json(&json!({"executionArn": arn, "maxResults": 1000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.to_string()
}

fn assert_clean(place: &str, text: &str) {
    for canary in [KEY, VALUE] {
        assert!(
            !text.contains(canary),
            "{canary} is in {place}:\n{}",
            &text[text.find(canary).unwrap().saturating_sub(300)..]
                .chars()
                .take(800)
                .collect::<String>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn canaries_appear_nowhere_on_the_deployed_stack() {
    let stack = debug_stack().await;
    let api = Mock::start(MockConfig {
        tickets: 100,
        auth: MockAuth::ApiKeyQuery {
            param: "api_key".into(),
            key: KEY.into(),
        },
        ..Default::default()
    })
    .await;
    api.override_field(7, "priority", json!(VALUE));
    // Every event on the stack's bus, as a user's alerting would see them.
    let sqs = aws_sdk_sqs::Client::new(&stack.conf);
    let queue =
        ferry_tests::aws::subscribe_events(&stack.conf, &stack.outputs["EventBusName"]).await;

    let deps = stack.deps();
    deps.secrets
        .put_secret(
            "canary",
            &ferry::ports::Secret::new(
                json!({"type": "api_key", "key": KEY, "query": "api_key", "hosts": ["127.0.0.1"]}),
            ),
        )
        .await
        .unwrap();
    let props = json!({"base_url": api.url(), "http": {"timeout_ms": 5000, "max_retries": 1},
        "endpoints": {"tickets": {"path": "/next/tickets", "records": "$.data[*]",
            "paginator": {"type": "next_url", "path": "$.next"},
            "fields": [{"name": "id", "type": "integer"}, {"name": "subject"},
                       {"name": "priority", "type": "integer"}, {"name": "updated_at", "type": "timestamp"}]}}});
    let b = &stack.output_bucket;
    let flow = Flow::parse(
        &format!(
            "name: canary\nsource:\n  connector: rest\n  profile: canary\n  entity: tickets\n  chunk: {{ records: 25 }}\n  properties: {props}\ndestination:\n  s3: {{ bucket: {b}, prefix: raw }}\n  format: jsonl\n  error_location: s3://{b}/rejected\ntrigger: {{ on_demand: {{}} }}\n"
        ),
        "canary.yaml",
    )
    .unwrap();
    let (arn, e) = register_and_run(&stack, &flow).await;
    assert_eq!(e.status, "SUCCEEDED", "{e:?}\n{}", stack.logs());
    let runs = deps.runs.list_runs("canary", 10).await.unwrap();
    let run = &runs[0];
    assert_eq!(run.records_written, 99, "{run:?}");
    assert_eq!(run.records_rejected, 1, "{run:?}");
    assert!(run.chunks >= 4, "a multi-chunk run: {run:?}");

    let text = history(&stack, &arn).await;
    assert!(
        text.contains("after="),
        "the history holds the cursors between chunks: {}",
        &text[..text.len().min(2000)]
    );
    assert_clean("the execution history", &text);
    assert_clean("the execution's output", &format!("{e:?}"));
    let logs = stack.logs();
    assert!(
        logs.contains("DEBUG"),
        "the functions logged at debug level"
    );
    assert_clean("the functions' logs", &logs);
    assert_clean("the run record", &format!("{runs:?}"));
    assert_clean("the table", &table_text(&stack).await);
    let mut seen = String::new();
    for _ in 0..5 {
        let m = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for msg in m.messages() {
            seen.push_str(msg.body().unwrap_or_default());
        }
    }
    assert!(seen.contains("ferry"), "the run's events arrived: {seen}");
    assert_clean("the events", &seen);
    let mut rejected = false;
    for (key, body) in bodies(&stack, b).await {
        if key.starts_with("rejected/") {
            // The refused record itself, for the user to fix: the one place it belongs.
            rejected |= body.contains(VALUE);
            continue;
        }
        assert_clean(&format!("s3://{b}/{key}"), &body);
    }
    assert!(rejected, "the refused record is kept in the error location");
    // Staging holds records by design (private, expiring); never the key.
    for (key, body) in bodies(&stack, &stack.staging_bucket).await {
        assert!(!body.contains(KEY), "the key is in staging {key}");
    }
}

/// A refused canary credential of each connector, run on the deployed stack: every run fails
/// `AuthFailed` naming its profile, and the credential is in no execution's history, no
/// function log (debug level), no run record (where the run got that far) and no item of the
/// table.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_canary_credentials_appear_nowhere_on_the_deployed_stack() {
    use ferry_tests::saas::ga4::{Ga4Config, Ga4Mock};
    use ferry_tests::saas::github::{GitHubConfig, GitHubMock, OWNER, REPO};
    use ferry_tests::saas::hubspot::{HsConfig, HubSpotMock};
    use ferry_tests::saas::jira::{JiraConfig, JiraMock};
    use ferry_tests::saas::marketo::{MarketoConfig, MarketoMock};
    use ferry_tests::saas::salesforce::{SalesforceMock, SfConfig};
    use ferry_tests::saas::servicenow::{ServiceNowMock, SnConfig};
    use ferry_tests::saas::shopify::{ShopifyConfig, ShopifyMock};
    use ferry_tests::saas::slack::SlackMock;
    use ferry_tests::saas::stripe::{StripeConfig, StripeMock};
    use ferry_tests::saas::zendesk::ZendeskMock;
    const CRED: &str = "CANARY-cred-60221";
    let stack = debug_stack().await;
    let zd = ZendeskMock::start(Default::default()).await;
    let sn = ServiceNowMock::start(SnConfig::default()).await;
    let hs = HubSpotMock::start(HsConfig::default()).await;
    let sl = SlackMock::start(Default::default()).await;
    let ji = JiraMock::start(JiraConfig::default()).await;
    let st = StripeMock::start(StripeConfig::default()).await;
    let sf = SalesforceMock::start(SfConfig::default()).await;
    let sh = ShopifyMock::start(ShopifyConfig::default()).await;
    let gh = GitHubMock::start(GitHubConfig::default()).await;
    let mk = MarketoMock::start(MarketoConfig::default()).await;
    let ga = Ga4Mock::start(Ga4Config::default()).await;
    let mut sf_secret = sf.secret();
    sf_secret["client_secret"] = json!(CRED);
    sf_secret["hosts"] = json!(["127.0.0.1"]);
    let http = json!({"timeout_ms": 3000, "max_retries": 0});
    let cases = vec![
        (
            "zendesk",
            "tickets",
            json!({"base_url": zd.url(), "http": http}),
            json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "agent@acme.test/token", "password": CRED}),
        ),
        (
            "servicenow",
            "incident",
            json!({"instance_url": sn.url(), "http": http}),
            json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "ferry.integration", "password": CRED}),
        ),
        (
            "hubspot",
            "contacts",
            json!({"base_url": hs.url(), "http": http}),
            json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": CRED}),
        ),
        (
            "slack",
            "conversations",
            json!({"base_url": sl.url(), "http": http}),
            json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": CRED}),
        ),
        (
            "jira",
            "issues",
            json!({"base_url": ji.url(), "http": http}),
            json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "me@acme.example", "password": CRED}),
        ),
        (
            "stripe",
            "charges",
            json!({"base_url": st.url(), "http": http}),
            json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": CRED}),
        ),
        (
            "salesforce",
            "Account",
            json!({"api": "rest", "http": http}),
            sf_secret,
        ),
        (
            "shopify",
            "orders",
            json!({"shop": "acme-store", "base_url": sh.url(), "http": http}),
            json!({"type": "api_key", "hosts": ["127.0.0.1"], "key": CRED, "header": "X-Shopify-Access-Token"}),
        ),
        (
            "github",
            "issues",
            json!({"owner": OWNER, "repo": REPO, "base_url": gh.url(), "http": http}),
            json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": CRED}),
        ),
        (
            "marketo",
            "leads",
            json!({"base_url": mk.url(), "poll_seconds": 0.01, "http": http}),
            json!({"type": "oauth2_client_credentials", "hosts": ["127.0.0.1"],
                   "token_url": format!("{}/identity/oauth/token", mk.url()),
                   "client_id": "mkto-client", "client_secret": CRED}),
        ),
        (
            "ga4",
            "traffic",
            json!({"property_id": "123456789", "base_url": ga.url(), "http": http,
                   "reports": {"traffic": {"dimensions": ["date", "country"], "metrics": ["sessions"]}}}),
            json!({"type": "oauth2_refresh_token", "hosts": ["127.0.0.1"],
                   "token_url": format!("{}/token", ga.url()),
                   "client_id": "ga-client.apps.googleusercontent.com", "client_secret": "ga-secret",
                   "refresh_token": CRED}),
        ),
    ];
    let deps = stack.deps();
    let mut histories = String::new();
    for (connector, entity, props, secret) in cases {
        let (profile, name) = (format!("cred-{connector}"), format!("refused-{connector}"));
        let (arn, e) = run_with_profile(
            &stack, &name, &profile, secret, connector, entity, "", &props,
        )
        .await;
        assert_eq!(e.status, "FAILED", "{connector}: {e:?}");
        let cause = e.cause.clone().unwrap_or_default();
        assert!(
            cause.contains(&profile) && e.error.as_deref() == Some("AuthFailed"),
            "{connector}: the failure names the profile: {e:?}"
        );
        assert!(!format!("{e:?}").contains(CRED), "{connector}: {e:?}");
        let runs = deps.runs.list_runs(&name, 5).await.unwrap();
        // (A source refused while start-run describes it fails before any run record.)
        assert!(!format!("{runs:?}").contains(CRED), "{connector}: {runs:?}");
        histories.push_str(&history(&stack, &arn).await);
    }
    assert!(
        !histories.contains(CRED),
        "a credential is in an execution history"
    );
    let logs = stack.logs();
    assert!(logs.contains("DEBUG"));
    assert!(
        !logs.contains(CRED),
        "a credential is in the functions' logs"
    );
    assert!(!table_text(&stack).await.contains(CRED));
}

/// A canary record value where a vendor connector's own typing refuses it (Zendesk's ticket
/// `updated_at`, Slack's channel `created`, Jira's story points, Salesforce's
/// `NumberOfEmployees`, a Marketo lead's `annualRevenue`, a GA4 report's `sessions`), run on
/// the deployed stack: the page is refused,
/// the run fails `SourceRejected` naming the field, and the value is in no execution history,
/// function log (debug level), run record, table item, event or object.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_value_refused_by_a_vendor_connector_appears_nowhere_on_the_deployed_stack() {
    use ferry_tests::saas::ga4::{Ga4Config, Ga4Mock};
    use ferry_tests::saas::jira::{JiraConfig, JiraMock};
    use ferry_tests::saas::marketo::{MarketoConfig, MarketoMock};
    use ferry_tests::saas::salesforce::{SalesforceMock, SfConfig};
    use ferry_tests::saas::slack::SlackMock;
    use ferry_tests::saas::zendesk::ZendeskMock;
    const VAL: &str = "CANARY-vendor-value-16180";
    let stack = debug_stack().await;
    let sqs = aws_sdk_sqs::Client::new(&stack.conf);
    let queue =
        ferry_tests::aws::subscribe_events(&stack.conf, &stack.outputs["EventBusName"]).await;
    let zd = ZendeskMock::start(Default::default()).await;
    zd.override_field(7, "updated_at", json!(VAL));
    let sl = SlackMock::start(Default::default()).await;
    sl.override_channel_field("C0000000002", "created", json!(VAL));
    let ji = JiraMock::start(JiraConfig::default()).await;
    ji.override_field(4, "customfield_10016", json!(VAL));
    let sf = SalesforceMock::start(SfConfig::default()).await;
    sf.override_field(5, "NumberOfEmployees", VAL);
    let mut sf_secret = sf.secret();
    sf_secret["hosts"] = json!(["127.0.0.1"]);
    let mk = MarketoMock::start(MarketoConfig::default()).await;
    mk.override_field(3, "annualRevenue", VAL);
    let ga = Ga4Mock::start(Ga4Config::default()).await;
    ga.override_metric("sessions", VAL);
    // Days 2026-01-01 to 2026-01-03 of the mock's data: the window ends there.
    let ga_offset = format!(
        ", offset: {}h",
        (chrono::Utc::now().date_naive() - chrono::NaiveDate::from_ymd_opt(2026, 1, 3).unwrap())
            .num_days()
            * 24
    );
    let mk_from =
        (ferry_tests::saas::marketo::base_time() - chrono::Duration::seconds(1)).to_rfc3339();
    let http = json!({"timeout_ms": 3000, "max_retries": 0});
    // (incremental field, the field holding the canary, first_execution_from, more incremental
    // settings)
    let since_2000 = |inc: &'static str, field: &'static str| {
        (
            inc,
            field,
            "2000-01-01T00:00:00Z".to_string(),
            String::new(),
        )
    };
    // (connector, entity, (incremental field, the field holding the canary), props, secret)
    let cases = vec![
        (
            "zendesk",
            "tickets",
            since_2000("updated_at", "updated_at"),
            json!({"base_url": zd.url(), "http": http}),
            json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "agent@acme.test/token", "password": "zd-token-1"}),
        ),
        (
            "slack",
            "conversations",
            since_2000("created", "created"),
            json!({"base_url": sl.url(), "http": http}),
            json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": "xoxb-test-1"}),
        ),
        (
            "jira",
            "issues",
            since_2000("updated", "customfield_10016"),
            json!({"base_url": ji.url(), "http": http}),
            json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "me@acme.example", "password": "ATATT-jira-token"}),
        ),
        (
            "salesforce",
            "Account",
            since_2000("SystemModstamp", "NumberOfEmployees"),
            json!({"api": "rest", "http": http}),
            sf_secret,
        ),
        (
            "marketo",
            "leads",
            ("updatedAt", "annualRevenue", mk_from, String::new()),
            json!({"base_url": mk.url(), "poll_seconds": 0.01, "fields": ["email", "annualRevenue"], "http": http}),
            json!({"type": "oauth2_client_credentials", "hosts": ["127.0.0.1"], "token_url": format!("{}/identity/oauth/token", mk.url()),
                   "client_id": "mkto-client", "client_secret": "mkto-secret"}),
        ),
        (
            "ga4",
            "traffic",
            (
                "date",
                "sessions",
                "2026-01-01T00:00:00Z".to_string(),
                ga_offset,
            ),
            json!({"property_id": "123456789", "base_url": ga.url(), "http": http,
                   "reports": {"traffic": {"dimensions": ["date", "country"], "metrics": ["sessions", "purchaseRevenue"]}}}),
            json!({"type": "oauth2_refresh_token", "hosts": ["127.0.0.1"], "token_url": format!("{}/token", ga.url()),
                   "client_id": "ga-client.apps.googleusercontent.com", "client_secret": "ga-secret",
                   "refresh_token": "1//ga-refresh"}),
        ),
    ];
    let deps = stack.deps();
    let b = &stack.output_bucket;
    let mut seen_everywhere = String::new();
    for (connector, entity, (inc, field, from, offset), props, secret) in cases {
        let name = format!("value-{connector}");
        let incremental = format!(
            "  incremental: {{ field: {inc}, first_execution_from: \"{from}\"{offset} }}\n"
        );
        let (arn, e) = run_with_profile(
            &stack,
            &name,
            &name,
            secret,
            connector,
            entity,
            &incremental,
            &props,
        )
        .await;
        assert_eq!(e.status, "FAILED", "{connector}: {e:?}\n{}", stack.logs());
        assert_eq!(
            e.error.as_deref(),
            Some("SourceRejected"),
            "{connector}: {e:?}"
        );
        let cause = e.cause.clone().unwrap_or_default();
        assert!(
            cause.contains(field),
            "{connector}: the failure names the field: {cause}"
        );
        let runs = deps.runs.list_runs(&name, 5).await.unwrap();
        assert_eq!(runs.len(), 1, "{connector}: {runs:?}");
        seen_everywhere.push_str(&format!("{e:?}{runs:?}"));
        seen_everywhere.push_str(&history(&stack, &arn).await);
    }
    let logs = stack.logs();
    assert!(
        logs.contains("DEBUG"),
        "the functions logged at debug level"
    );
    seen_everywhere.push_str(&logs);
    seen_everywhere.push_str(&table_text(&stack).await);
    for _ in 0..5 {
        let m = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for msg in m.messages() {
            seen_everywhere.push_str(msg.body().unwrap_or_default());
        }
    }
    assert!(
        seen_everywhere.contains("ferry End Flow Run Report"),
        "the runs' events arrived"
    );
    for (key, body) in bodies(&stack, b).await {
        seen_everywhere.push_str(&key);
        seen_everywhere.push_str(&body);
    }
    assert!(
        !seen_everywhere.contains(VAL),
        "the refused record value reached what others read"
    );
}
