//! The zendesk connector against the mock Zendesk (tests/src/saas/zendesk.rs): entity listing
//! and fields, every entity read exactly once (cursor export, time-based export, cursor lists),
//! full and incremental runs through the embedded engine, the export's quirks (inclusive and
//! too-recent start_time, system updates, deleted tickets, repeats at page boundaries, ignored
//! parameters), auth refusals and throttling.

use ferry::adapters::memory::MemorySecrets;
use ferry::connector::auth::Authenticator;
use ferry::connector::zendesk::ZendeskSource;
use ferry::connector::{FieldType, ReadRequest, Source};
use ferry::model::Window;
use ferry::ports::Secret;
use ferry_tests::harness::Local;
use ferry_tests::saas::zendesk::{ticket_updated_at, ZendeskAuth, ZendeskMock, ZendeskMockConfig};
use ferry_tests::Fault;
use ferry_tests::{assert_once, read_all};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const PROFILE: &str = "zendesk-acme";

fn token_secret() -> Value {
    json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "agent@acme.test/token", "password": "zd-token-1"})
}

fn props(mock: &ZendeskMock, extra: Value) -> Value {
    let mut p = json!({
        "base_url": mock.url(),
        "http": {"timeout_ms": 3000, "max_retries": 4, "backoff_initial_ms": 5, "backoff_max_ms": 40}
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn source(mock: &ZendeskMock, extra: Value, secret: Value) -> ZendeskSource {
    let auth = Authenticator::from_secret(
        PROFILE,
        &Secret::new(secret),
        Arc::new(MemorySecrets::default()),
    )
    .unwrap();
    ZendeskSource::new(props(mock, extra).as_object().unwrap(), auth).unwrap()
}

fn req(entity: &str, window: Option<Window>) -> ReadRequest {
    ReadRequest {
        entity: entity.into(),
        incremental_field: window.map(|_| "updated_at".into()),
        window,
        page_size: None,
        filters: vec![],
    }
}

fn ids(records: &[Value]) -> Vec<u64> {
    records.iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

fn flow(name: &str, entity: &str, props: &Value, extra: &str) -> String {
    format!(
        "name: {name}\nsource:\n  connector: zendesk\n  profile: {PROFILE}\n  entity: {entity}\n  properties: {}\n{extra}destination:\n  local: out\n  format: jsonl\n  compression: none\ntasks:\n  - map_all: {{}}\ntrigger:\n  on_demand: {{}}\n",
        serde_json::to_string(props).unwrap()
    )
}

#[tokio::test]
async fn entities_and_fields_are_described() {
    let mock = ZendeskMock::start(Default::default()).await;
    let src = source(&mock, json!({}), token_secret());
    let names: Vec<String> = src
        .list_entities()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        [
            "tickets",
            "users",
            "organizations",
            "groups",
            "ticket_fields"
        ]
    );
    let d = src.describe("tickets").await.unwrap();
    let f = |n: &str| {
        d.fields
            .iter()
            .find(|f| f.name == n)
            .unwrap_or_else(|| panic!("{n}"))
            .clone()
    };
    assert!(f("id").primary_key && f("id").data_type == FieldType::Integer);
    assert!(f("updated_at").incremental && f("generated_timestamp").incremental);
    assert_eq!(f("generated_timestamp").data_type, FieldType::Timestamp);
    assert_eq!(f("custom_fields").data_type, FieldType::Json);
    assert!(src
        .describe("macros")
        .await
        .unwrap_err()
        .to_string()
        .contains("source.entity"));
    // Listing made one authenticated call (Show Self); describing needs none.
    let paths: Vec<String> = mock.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/api/v2/users/me.json"]);
}

/// `ferry entities` with a profile authenticates: a wrong API token is `AuthFailed` naming the
/// profile (it used to list static entities and succeed).
#[tokio::test]
async fn entity_listing_authenticates() {
    let mock = ZendeskMock::start(Default::default()).await;
    let bad = json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "agent@acme.test/token", "password": "zd-wrong-9"});
    let e = source(&mock, json!({}), bad)
        .list_entities()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ferry::error::ErrorKind::AuthFailed, "{e}");
    assert!(
        e.to_string().contains(PROFILE) && e.to_string().contains("401"),
        "{e}"
    );
    assert!(!e.to_string().contains("zd-wrong-9"), "{e}");
    let list = source(&mock, json!({}), token_secret())
        .list_entities()
        .await
        .unwrap();
    assert!(list[0]
        .description
        .as_deref()
        .unwrap()
        .starts_with(&format!("GET {}/api/v2/incremental/tickets", mock.url())));
}

#[tokio::test]
async fn every_entity_is_read_exactly_once() {
    let mock = ZendeskMock::start(ZendeskMockConfig {
        tickets: 137,
        users: 45,
        organizations: 40,
        groups: 23,
        ..Default::default()
    })
    .await;
    let src = source(&mock, json!({"page_size": 7}), token_secret());
    let t = read_all(&src, &req("tickets", None)).await.unwrap();
    assert_once("tickets", &ids(&t), &mock.ticket_ids(None, None, true));
    // Deleted tickets come with the export, as status `deleted`.
    assert!(t.iter().any(|r| r["status"] == "deleted"));
    // Types are shaped to the declared fields: epoch seconds and JSON become timestamp / text.
    let r = t.iter().find(|r| r["id"] == 22).unwrap();
    assert!(
        r["generated_timestamp"].as_str().unwrap().ends_with('Z'),
        "{r}"
    );
    assert!(r["custom_fields"].is_string(), "{r}");
    assert!(
        r.get("sharing_agreement_ids").is_none(),
        "undeclared fields are left out: {r}"
    );
    let u = read_all(&src, &req("users", None)).await.unwrap();
    assert_once("users", &ids(&u), &mock.user_ids(None, None));
    assert!(
        u.iter().any(|r| r["active"] == false),
        "deleted users are kept (active: false)"
    );
    let o = read_all(&src, &req("organizations", None)).await.unwrap();
    assert_once("organizations", &ids(&o), &mock.org_ids(None, None));
    let g = read_all(&src, &req("groups", None)).await.unwrap();
    assert_once("groups", &ids(&g), &mock.group_ids());
    assert_eq!(
        read_all(&src, &req("ticket_fields", None))
            .await
            .unwrap()
            .len(),
        8
    );

    let reqs = mock.requests();
    let tix: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.ends_with("/incremental/tickets/cursor.json"))
        .collect();
    assert!(tix.len() >= 20);
    assert!(
        tix[0].query.contains("start_time=0") && tix[0].query.contains("per_page=7"),
        "{}",
        tix[0].query
    );
    assert!(
        tix[1..]
            .iter()
            .all(|r| r.query.contains("cursor=") && !r.query.contains("start_time")),
        "later pages carry only the cursor"
    );
    // Time-based pages start at the previous end_time: the same second is asked for again.
    let orgs: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.ends_with("organizations.json"))
        .collect();
    assert!(orgs.len() >= 6, "{}", orgs.len());
    // Lists use cursor pagination, capped at 100 per page.
    let grp: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.ends_with("groups.json"))
        .collect();
    assert!(
        grp[0].query.contains("page%5Bsize%5D=7"),
        "{}",
        grp[0].query
    );
    assert!(
        grp[1].query.contains("page%5Bafter%5D="),
        "{}",
        grp[1].query
    );
}

#[tokio::test]
async fn repeats_at_page_boundaries_are_emitted_once() {
    let mock = ZendeskMock::start(ZendeskMockConfig {
        tickets: 90,
        users: 50,
        ..Default::default()
    })
    .await;
    mock.set_repeat_boundary(true);
    let src = source(&mock, json!({"page_size": 10}), token_secret());
    let t = read_all(&src, &req("tickets", None)).await.unwrap();
    assert_once("tickets", &ids(&t), &mock.ticket_ids(None, None, true));
    let u = read_all(&src, &req("users", None)).await.unwrap();
    assert_once("users", &ids(&u), &mock.user_ids(None, None));
    // Organizations (three per second, pages of 4): every page boundary repeats items.
    let o = read_all(
        &source(&mock, json!({"page_size": 4}), token_secret()),
        &req("organizations", None),
    )
    .await
    .unwrap();
    assert_once("organizations", &ids(&o), &mock.org_ids(None, None));
}

#[tokio::test]
async fn windows_are_exclusive_at_start_and_system_updates_fall_outside() {
    let mock = ZendeskMock::start(Default::default()).await;
    let src = source(&mock, json!({"page_size": 25}), token_secret());
    // (t40, t90]: the ticket updated exactly at t40 belongs to the previous window; tickets 11,
    // 22, 33 had a system update later (generated_timestamp), so the export returns them, but
    // their updated_at is before the window.
    let w = Window {
        start: Some(ticket_updated_at(40)),
        end: ticket_updated_at(90),
    };
    let got = ids(&read_all(&src, &req("tickets", Some(w))).await.unwrap());
    assert_once("window", &got, &(41..=90).collect());
    let first = &mock.requests()[0];
    assert!(
        first
            .query
            .contains(&format!("start_time={}", ticket_updated_at(40).timestamp())),
        "{}",
        first.query
    );
    // A window starting now asks from a minute back instead (Zendesk refuses younger start times).
    let now = chrono::Utc::now();
    let w = Window {
        start: Some(now),
        end: now,
    };
    assert!(read_all(&src, &req("tickets", Some(w)))
        .await
        .unwrap()
        .is_empty());
    assert!(
        mock.requests().iter().all(|r| r.status == 200),
        "no 400 for a too recent start_time"
    );
}

#[tokio::test]
async fn an_ignored_start_time_still_yields_exactly_the_window() {
    let mock = ZendeskMock::start(Default::default()).await;
    mock.set_ignore_start_time(true);
    let src = source(&mock, json!({"page_size": 30}), token_secret());
    let w = Window {
        start: Some(ticket_updated_at(70)),
        end: ticket_updated_at(100),
    };
    let got = ids(&read_all(&src, &req("tickets", Some(w))).await.unwrap());
    assert_once("ignored filter", &got, &(71..=100).collect());
}

#[tokio::test]
async fn deleted_tickets_can_be_excluded() {
    let mock = ZendeskMock::start(Default::default()).await;
    let src = source(&mock, json!({"exclude_deleted": true}), token_secret());
    let t = read_all(&src, &req("tickets", None)).await.unwrap();
    assert_once(
        "without deleted",
        &ids(&t),
        &mock.ticket_ids(None, None, false),
    );
    assert!(t.iter().all(|r| r["status"] != "deleted"));
    assert!(mock.requests()[0].query.contains("exclude_deleted=true"));
}

#[tokio::test]
async fn full_then_incremental_runs_read_every_record_once() {
    let mock = ZendeskMock::start(Default::default()).await;
    let local = Local::new();
    local.put_secret(PROFILE, token_secret()).await;
    let p = props(&mock, json!({}));
    // Full: no incremental section, small chunks and pages so the cursor crosses fetch-page calls.
    let out = local
        .run(&flow(
            "zd-full",
            "tickets",
            &p,
            "  chunk: { records: 25, page_size: 20 }\n",
        ))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert_once(
        "full",
        &ids(&local.output("out/zd-full")),
        &mock.ticket_ids(None, None, true),
    );
    assert_eq!(out.record.unwrap().records_written, 120);

    // Incremental from t50: the window (t50, now].
    let from = ticket_updated_at(50);
    let inc = format!("  incremental:\n    field: updated_at\n    first_execution_from: {}\n  chunk: {{ records: 25, page_size: 20 }}\n", from.to_rfc3339());
    let out = local.run(&flow("zd-inc", "tickets", &p, &inc)).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert_once(
        "incremental",
        &ids(&local.output("out/zd-inc")),
        &mock.ticket_ids(Some(from), None, true),
    );
    let wm = local
        .watermark("zd-inc")
        .await
        .expect("the watermark moved");
    // The next run starts at the watermark (seconds ago): nothing new, and no refused start_time.
    let before = mock.requests().len();
    let out = local.run(&flow("zd-inc", "tickets", &p, &inc)).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert_eq!(out.record.unwrap().records_written, 0);
    let later = &mock.requests()[before..];
    assert!(!later.is_empty() && later.iter().all(|r| r.status == 200));
    let st: i64 = later[0]
        .query
        .split('&')
        .find_map(|kv| kv.strip_prefix("start_time="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        st <= wm.timestamp() - 60,
        "start_time {st} is at least a minute old"
    );

    // Users and organizations through the engine too.
    for (entity, expected) in [
        ("users", mock.user_ids(None, None)),
        ("organizations", mock.org_ids(None, None)),
    ] {
        let name = format!("zd-{entity}");
        let out = local
            .run(&flow(
                &name,
                entity,
                &p,
                "  chunk: { records: 10, page_size: 6 }\n",
            ))
            .await;
        assert!(out.succeeded(), "{entity}: {:?}", out.failure);
        assert_once(
            entity,
            &ids(&local.output(&format!("out/{name}"))),
            &expected,
        );
    }
}

#[tokio::test]
async fn refused_credentials_end_the_run_auth_failed_naming_the_profile() {
    let mock = ZendeskMock::start(Default::default()).await;
    let local = Local::new();
    local.put_secret(PROFILE, json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "agent@acme.test/token", "password": "wrong-token-xyz"})).await;
    let out = local
        .run(&flow("zd-auth", "tickets", &props(&mock, json!({})), ""))
        .await;
    let f = out.failure.expect("the run fails");
    assert_eq!(f.error, "AuthFailed", "{f:?}");
    assert!(
        f.cause.contains(PROFILE) && f.cause.contains("401"),
        "{}",
        f.cause
    );
    assert!(
        !f.cause.contains("wrong-token-xyz"),
        "secret in message: {}",
        f.cause
    );
    assert_eq!(local.watermark("zd-auth").await, None);
    assert!(mock.requests().iter().all(|r| r.status == 401));
}

#[tokio::test]
async fn oauth_bearer_tokens_work() {
    let mock = ZendeskMock::start(ZendeskMockConfig {
        auth: ZendeskAuth::Bearer("oauth-at-1".into()),
        ..Default::default()
    })
    .await;
    let src = source(
        &mock,
        json!({}),
        json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": "oauth-at-1"}),
    );
    assert_eq!(
        read_all(&src, &req("groups", None)).await.unwrap().len(),
        12
    );
    let bad = source(
        &mock,
        json!({}),
        json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": "nope"}),
    );
    let e = read_all(&bad, &req("groups", None)).await.unwrap_err();
    assert_eq!(e.kind(), ferry::error::ErrorKind::AuthFailed, "{e}");
}

#[tokio::test]
async fn retry_after_is_honoured_and_long_waits_end_the_chunk_throttled() {
    let mock = ZendeskMock::start(Default::default()).await;
    mock.push_faults([Fault::throttle("1")]);
    let src = source(&mock, json!({}), token_secret());
    let page = src.read_page(&req("groups", None), None).await.unwrap();
    assert_eq!(page.records.len(), 12);
    let r = mock.requests();
    assert_eq!((r[0].status, r[1].status), (429, 200));
    assert!(
        r[1].at.duration_since(r[0].at) >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured"
    );

    mock.push_faults([Fault::throttle("600")]);
    let capped = source(
        &mock,
        json!({"http": {"max_retry_after_seconds": 5}}),
        token_secret(),
    );
    let t0 = std::time::Instant::now();
    let e = capped
        .read_page(&req("tickets", None), None)
        .await
        .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(e.kind(), ferry::error::ErrorKind::Throttled, "{e}");
}

#[tokio::test]
async fn a_throttled_chunk_is_retried_without_loss_or_duplicates() {
    let mock = ZendeskMock::start(ZendeskMockConfig {
        tickets: 95,
        ..Default::default()
    })
    .await;
    let local = Local::new();
    local.put_secret(PROFILE, token_secret()).await;
    // The real state machine with the Throttled retry interval shortened from 30 s to 1 s.
    let engine = local.fast_retry_engine();
    let p = props(
        &mock,
        json!({"http": {"max_retry_after_seconds": 1, "backoff_initial_ms": 5}}),
    );
    let f = ferry::flow::Flow::parse(
        &flow(
            "zd-throttled",
            "tickets",
            &p,
            "  chunk: { records: 30, page_size: 10 }\n",
        ),
        "t.yaml",
    )
    .unwrap();
    mock.fault_every(5, vec![Fault::throttle("3600")]);
    let out = local.run_flow_on(&engine, &f).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert!(mock.requests().iter().any(|r| r.status == 429));
    assert_once(
        "throttled",
        &ids(&local.output("out/zd-throttled")),
        &mock.ticket_ids(None, None, true),
    );
}

#[tokio::test]
async fn looping_cursors_and_bad_properties_fail_clearly() {
    let mock = ZendeskMock::start(Default::default()).await;
    mock.set_endless_cursor(true);
    let src = source(&mock, json!({"page_size": 5}), token_secret());
    let e = read_all(&src, &req("tickets", None)).await.unwrap_err();
    assert_eq!(e.kind(), ferry::error::ErrorKind::SourceRejected);
    assert!(e.to_string().contains("looping"), "{e}");
    let e = read_all(&src, &req("groups", None)).await.unwrap_err();
    assert!(e.to_string().contains("looping"), "{e}");

    let bad = flow(
        "zd-bad",
        "tickets",
        &json!({"subdomain": "acme", "exclude_deleted": "yes"}),
        "",
    );
    let errs = ferry::flow::Flow::parse(&bad, "t.yaml")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(errs.contains("source.properties.exclude_deleted"), "{errs}");
}

#[tokio::test]
async fn the_example_flow_runs_against_the_mock() {
    let mock = ZendeskMock::start(Default::default()).await;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/flows/zendesk-tickets.yaml"
    ))
    .unwrap();
    assert!(text.contains("subdomain: acme"));
    let local = Local::new();
    local.put_secret(PROFILE, token_secret()).await;
    let text = text.replace("subdomain: acme", &format!("base_url: {}", mock.url()));
    let out = local.run(&text).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let got = ids(&local.output("ferry-out/zendesk-tickets"));
    assert_once("example", &got, &mock.ticket_ids(None, None, false));
}

/// Tickets updated while a run pages the export (some already read, some not yet) are all
/// delivered in their latest version once the next incremental run has run. (The mock's export
/// delay is 0 here instead of Zendesk's minute, to keep the test quick.)
#[tokio::test]
async fn tickets_updated_while_a_run_pages_are_not_lost_at_the_next_run() {
    let mock = ZendeskMock::start(ZendeskMockConfig {
        tickets: 90,
        ..Default::default()
    })
    .await;
    mock.set_export_delay(0);
    let local = Local::new();
    local.put_secret(PROFILE, token_secret()).await;
    let from = ferry_tests::saas::zendesk::ticket_updated_at(1) - chrono::Duration::minutes(1);
    let yaml = flow(
        "zd-moving",
        "tickets",
        &props(&mock, json!({"page_size": 10})),
        &format!(
            "  incremental:\n    field: updated_at\n    first_execution_from: {}\n  chunk: {{ records: 20 }}\n",
            from.to_rfc3339()
        ),
    );
    mock.touch_after(3, &[2, 5, 70, 71]);
    let out = local.run(&yaml).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let out = local.run(&yaml).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let got: std::collections::BTreeSet<(u64, String)> = local
        .output("out/zd-moving")
        .iter()
        .map(|r| {
            (
                r["id"].as_u64().unwrap(),
                r["updated_at"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let now = mock.ticket_versions();
    assert_eq!(
        now.iter()
            .filter(|(_, t)| !t.starts_with("2026-01-01"))
            .count(),
        4,
        "the updates happened"
    );
    for v in &now {
        assert!(
            got.contains(v),
            "ticket {} as of {} was never delivered",
            v.0,
            v.1
        );
    }
}
