//! The slack connector against the mock Slack Web API (tests/src/saas/slack.rs): entities and
//! fields, conversations/users/messages read exactly once, `oldest`/`latest` window bounds,
//! short and empty pages, ignored arguments, `ok: false` errors, 429 throttling, and full and
//! incremental runs through the embedded engine.

use ferry::adapters::memory::MemorySecrets;
use ferry::connector::auth::Authenticator;
use ferry::connector::slack::SlackSource;
use ferry::connector::{FieldType, ReadRequest, Source};
use ferry::error::ErrorKind;
use ferry::model::Window;
use ferry::ports::Secret;
use ferry_tests::harness::Local;
use ferry_tests::saas::slack::{message_micros, SlackMock, SlackMockConfig};
use ferry_tests::Fault;
use ferry_tests::{assert_once, read_all};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

const PROFILE: &str = "slack-acme";
const MEMBER: [&str; 4] = ["C0000000001", "C0000000002", "G0000000003", "C0000000004"];

fn secret(token: &str) -> Value {
    json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": token})
}

fn props(mock: &SlackMock, extra: Value) -> Value {
    let mut p = json!({
        "base_url": mock.url(),
        "channels": MEMBER,
        "http": {"timeout_ms": 3000, "max_retries": 4, "backoff_initial_ms": 5, "backoff_max_ms": 40}
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn source(mock: &SlackMock, entity: &str, extra: Value, token: &str) -> SlackSource {
    let auth = Authenticator::from_secret(
        PROFILE,
        &Secret::new(secret(token)),
        Arc::new(MemorySecrets::default()),
    )
    .unwrap();
    SlackSource::new(props(mock, extra).as_object().unwrap(), entity, auth).unwrap()
}

fn req(entity: &str, window: Option<Window>) -> ReadRequest {
    ReadRequest {
        entity: entity.into(),
        incremental_field: None,
        window,
        page_size: None,
        filters: vec![],
    }
}

fn keys(records: &[Value]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|r| {
            (
                r["channel"].as_str().unwrap().to_string(),
                r["ts"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn at(micros: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(micros).unwrap()
}

fn flow(name: &str, entity: &str, props: &Value, extra: &str) -> String {
    format!(
        "name: {name}\nsource:\n  connector: slack\n  profile: {PROFILE}\n  entity: {entity}\n  properties: {}\n{extra}destination:\n  local: out\n  format: jsonl\n  compression: none\ntasks:\n  - map_all: {{}}\ntrigger:\n  on_demand: {{}}\n",
        serde_json::to_string(props).unwrap()
    )
}

#[tokio::test]
async fn entities_and_fields_are_described() {
    let mock = SlackMock::start(Default::default()).await;
    let src = source(&mock, "messages", json!({}), "xoxb-test-1");
    let names: Vec<String> = src
        .list_entities()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["conversations", "users", "messages", "replies"]);
    let d = src.describe("messages").await.unwrap();
    let f = |n: &str| d.fields.iter().find(|f| f.name == n).unwrap().clone();
    assert!(f("channel").primary_key && f("ts").primary_key);
    assert!(f("posted_at").incremental && f("posted_at").data_type == FieldType::Timestamp);
    let d = src.describe("users").await.unwrap();
    assert!(d
        .fields
        .iter()
        .any(|f| f.name == "updated" && f.incremental));
    // Listing the entities made one authenticated call (auth.test), describing none.
    let paths: Vec<String> = mock.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/api/auth.test"]);
}

/// `ferry entities` with a profile authenticates: a wrong token is `AuthFailed` (it used to
/// list static entities), and the methods shown are on the configured `base_url`, not
/// `https://slack.com/api`.
#[tokio::test]
async fn entity_listing_authenticates_and_names_the_configured_base_url() {
    let mock = SlackMock::start(Default::default()).await;
    let e = source(&mock, "messages", json!({}), "xoxb-wrong-secret")
        .list_entities()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed, "{e}");
    assert!(e.to_string().contains("invalid_auth"), "{e}");
    assert!(!e.to_string().contains("xoxb-wrong-secret"), "{e}");
    let list = source(&mock, "messages", json!({}), "xoxb-test-1")
        .list_entities()
        .await
        .unwrap();
    for e in &list {
        let d = e.description.as_deref().unwrap();
        assert!(d.starts_with(&format!("GET {}/", mock.url())), "{d}");
        assert!(!d.contains("slack.com"), "{d}");
    }
}

/// A channel the token cannot read (not a member, or gone) is skipped with a warning by
/// default — the other channels are read — or fails the run with `on_channel_error: fail`.
#[tokio::test]
async fn a_channel_the_token_cannot_read_is_skipped_with_a_warning() {
    let mock = SlackMock::start(SlackMockConfig {
        messages: 25,
        ..Default::default()
    })
    .await;
    let chans = json!({"channels": ["C0000000001", "C0000000009", "C0000000077", "C0000000002"], "page_size": 10});
    let src = source(&mock, "messages", chans.clone(), "xoxb-test-1");
    let got = read_all(&src, &req("messages", None)).await.unwrap();
    assert_once(
        "readable channels",
        &keys(&got),
        &mock.message_keys(&["C0000000001", "C0000000002"], None, None),
    );
    let w = src.take_warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("C0000000009") && w[0].contains("not_in_channel"),
        "{w:?}"
    );
    assert!(
        w[1].contains("C0000000077") && w[1].contains("channel_not_found"),
        "{w:?}"
    );
    assert!(w.iter().all(|x| x.contains("on_channel_error")), "{w:?}");
    // Replies skip the same way.
    let src = source(&mock, "replies", chans.clone(), "xoxb-test-1");
    read_all(&src, &req("replies", None)).await.unwrap();
    assert_eq!(src.take_warnings().len(), 2);
    // Through the engine the run succeeds with the readable channels.
    let local = Local::new();
    local.put_secret(PROFILE, secret("xoxb-test-1")).await;
    let mut p = props(&mock, chans.clone());
    p["page_size"] = json!(10);
    let out = local.run(&flow("slack-skip", "messages", &p, "")).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert_eq!(local.output("out/slack-skip").len(), 50);
    // The skipped channels reach the run record (and so `ferry runs get` and the end report).
    let warnings = out.record.as_ref().unwrap().warnings.join("\n");
    for skipped in ["C0000000009", "C0000000077"] {
        assert!(
            warnings.contains(skipped),
            "{skipped} not in the run's warnings: {warnings}"
        );
    }
    // `fail` keeps the old behaviour.
    let mut strict = chans;
    strict["on_channel_error"] = json!("fail");
    let e = read_all(
        &source(&mock, "messages", strict, "xoxb-test-1"),
        &req("messages", None),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SourceRejected, "{e}");
    assert!(e.to_string().contains("C0000000009"), "{e}");
}

/// Thread replies (`conversations.replies`) are the `replies` entity: every reply once, not
/// the parent each answer repeats, and for a window exactly the replies posted in it —
/// including replies to threads whose parent was posted before the window.
#[tokio::test]
async fn thread_replies_are_read_as_an_entity() {
    let mock = SlackMock::start(SlackMockConfig {
        messages: 40,
        ..Default::default()
    })
    .await;
    let chans = ["C0000000001", "G0000000003"];
    let src = source(
        &mock,
        "replies",
        json!({"channels": chans, "page_size": 4}),
        "xoxb-test-1",
    );
    let all = read_all(&src, &req("replies", None)).await.unwrap();
    let want = mock.reply_keys(&chans, None, None);
    assert_eq!(want.len(), 2 * 6 * 2);
    assert_once("all replies", &keys(&all), &want);
    assert!(all
        .iter()
        .all(|r| r["thread_ts"].is_string() && r["thread_ts"] != r["ts"]));
    assert!(mock
        .requests()
        .iter()
        .any(|r| r.path == "/api/conversations.replies"));
    // A window that starts between a parent and its replies: the replies in it are read.
    let k1 = 1;
    let parent = message_micros(12, k1);
    let start = at(parent + 1_000_000); // after the parent, before its first reply
    let end = at(message_micros(30, k1));
    let w = Window {
        start: Some(start),
        end,
    };
    let got = read_all(&src, &req("replies", Some(w))).await.unwrap();
    assert_once(
        "replies in the window",
        &keys(&got),
        &mock.reply_keys(&chans, Some(start), Some(end)),
    );
    assert!(keys(&got).contains(&(
        "C0000000001".to_string(),
        ferry_tests::saas::slack::ts_text(ferry_tests::saas::slack::reply_micros(12, k1, 1))
    )));
}

#[tokio::test]
async fn every_entity_is_read_exactly_once() {
    let mock = SlackMock::start(SlackMockConfig {
        messages: 45,
        users: 31,
        ..Default::default()
    })
    .await;
    let src = source(&mock, "messages", json!({"page_size": 7}), "xoxb-test-1");
    let m = read_all(&src, &req("messages", None)).await.unwrap();
    assert_once(
        "messages",
        &keys(&m),
        &mock.message_keys(&MEMBER, None, None),
    );
    // Slack's text ts keeps its microseconds in posted_at; nested values become JSON text.
    let r = m
        .iter()
        .find(|r| r["channel"] == "C0000000001" && r["edited"].is_string())
        .expect("an edited message");
    let micros = r["ts"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_string();
    assert!(
        r["posted_at"]
            .as_str()
            .unwrap()
            .contains(&format!(".{micros}")),
        "{r}"
    );
    assert!(r["reactions"].is_string() && r["blocks"].is_string(), "{r}");
    // Messages of the archived channel are readable.
    assert!(m.iter().any(|r| r["channel"] == "C0000000004"));

    let u = read_all(
        &source(&mock, "users", json!({"page_size": 5}), "xoxb-test-1"),
        &req("users", None),
    )
    .await
    .unwrap();
    let uids: Vec<String> = u
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_once("users", &uids, &mock.user_ids());
    assert!(
        u.iter().any(|r| r["deleted"] == true),
        "deleted users are listed"
    );
    assert!(
        u[0]["updated"].as_str().unwrap().ends_with('Z'),
        "epoch seconds became a timestamp: {}",
        u[0]
    );

    let c = read_all(
        &source(
            &mock,
            "conversations",
            json!({"page_size": 2}),
            "xoxb-test-1",
        ),
        &req("conversations", None),
    )
    .await
    .unwrap();
    let cids: Vec<String> = c
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_once("conversations", &cids, &mock.channel_ids(false));
    // `updated` is epoch milliseconds, `created` epoch seconds.
    assert!(
        c[0]["updated"].as_str().unwrap().ends_with(".123Z"),
        "{}",
        c[0]
    );
    let c = read_all(
        &source(
            &mock,
            "conversations",
            json!({"exclude_archived": true}),
            "xoxb-test-1",
        ),
        &req("conversations", None),
    )
    .await
    .unwrap();
    let cids: Vec<String> = c
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_once("without archived", &cids, &mock.channel_ids(true));

    let reqs = mock.requests();
    let hist: Vec<_> = reqs
        .iter()
        .filter(|r| r.path == "/api/conversations.history")
        .collect();
    assert!(hist.iter().all(|r| r.query.contains("limit=7")));
    assert!(hist.iter().filter(|r| r.query.contains("cursor=")).count() >= 20);
}

#[tokio::test]
async fn short_and_empty_pages_do_not_end_paging() {
    let mock = SlackMock::start(SlackMockConfig {
        messages: 30,
        ..Default::default()
    })
    .await;
    mock.set_short_pages(true);
    let src = source(&mock, "messages", json!({"page_size": 9}), "xoxb-test-1");
    let m = read_all(&src, &req("messages", None)).await.unwrap();
    assert_once(
        "short pages",
        &keys(&m),
        &mock.message_keys(&MEMBER, None, None),
    );
}

#[tokio::test]
async fn windows_include_their_end_and_exclude_their_start() {
    let mock = SlackMock::start(Default::default()).await;
    let src = source(
        &mock,
        "messages",
        json!({"channels": ["C0000000001"], "page_size": 6}),
        "xoxb-test-1",
    );
    // Bounds exactly on messages 10, 25 and 40 of channel 1.
    let (a, b, c) = (
        at(message_micros(10, 1)),
        at(message_micros(25, 1)),
        at(message_micros(40, 1)),
    );
    let first = keys(
        &read_all(
            &src,
            &req(
                "messages",
                Some(Window {
                    start: Some(a),
                    end: b,
                }),
            ),
        )
        .await
        .unwrap(),
    );
    let second = keys(
        &read_all(
            &src,
            &req(
                "messages",
                Some(Window {
                    start: Some(b),
                    end: c,
                }),
            ),
        )
        .await
        .unwrap(),
    );
    assert_once(
        "(a, b]",
        &first,
        &mock.message_keys(&["C0000000001"], Some(a), Some(b)),
    );
    assert_eq!(first.len(), 15, "messages 11..=25");
    let mut both = first.clone();
    both.extend(second);
    assert_once(
        "(a, b] + (b, c]",
        &both,
        &mock.message_keys(&["C0000000001"], Some(a), Some(c)),
    );
    let q = &mock.requests()[0].query;
    assert!(
        q.contains("inclusive=true")
            && q.contains(&format!("oldest={}", ts(a)))
            && q.contains(&format!("latest={}", ts(b))),
        "{q}"
    );

    // Slack ignores arguments it does not know: a window that did not reach it is still applied.
    mock.set_ignore_window(true);
    let got = keys(
        &read_all(
            &src,
            &req(
                "messages",
                Some(Window {
                    start: Some(a),
                    end: b,
                }),
            ),
        )
        .await
        .unwrap(),
    );
    assert_once(
        "ignored window",
        &got,
        &mock.message_keys(&["C0000000001"], Some(a), Some(b)),
    );
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    format!("{}.{:06}", t.timestamp(), t.timestamp_subsec_micros())
}

#[tokio::test]
async fn ok_false_errors_map_to_the_framework_kinds() {
    let mock = SlackMock::start(Default::default()).await;
    let e = read_all(
        &source(&mock, "users", json!({}), "xoxb-wrong-secret"),
        &req("users", None),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed, "{e}");
    assert!(
        e.to_string().contains(PROFILE) && e.to_string().contains("invalid_auth"),
        "{e}"
    );
    assert!(!e.to_string().contains("xoxb-wrong-secret"), "{e}");

    mock.set_missing_scope(Some("channels:history"));
    let src = source(&mock, "messages", json!({}), "xoxb-test-1");
    let e = read_all(&src, &req("messages", None)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed, "{e}");
    assert!(e.to_string().contains("channels:history"), "{e}");
    mock.set_missing_scope(None);

    let outside = source(
        &mock,
        "messages",
        json!({"channels": ["C0000000009"], "on_channel_error": "fail"}),
        "xoxb-test-1",
    );
    let e = read_all(&outside, &req("messages", None))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SourceRejected, "{e}");
    assert!(
        e.to_string().contains("not_in_channel")
            && e.to_string().contains("source.properties.channels")
            && e.to_string().contains("/invite"),
        "{e}"
    );

    mock.push_api_errors(["ratelimited"]);
    let e = read_all(&src, &req("messages", None)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Throttled, "{e}");
    mock.push_api_errors(["internal_error"]);
    let e = read_all(&src, &req("messages", None)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retryable, "{e}");
}

#[tokio::test]
async fn retry_after_is_honoured_and_long_waits_end_the_chunk_throttled() {
    let mock = SlackMock::start(Default::default()).await;
    mock.push_faults([Fault::throttle("1")]);
    let src = source(&mock, "users", json!({}), "xoxb-test-1");
    assert_eq!(
        src.read_page(&req("users", None), None)
            .await
            .unwrap()
            .records
            .len(),
        23
    );
    let r = mock.requests();
    assert_eq!((r[0].status, r[1].status), (429, 200));
    assert!(r[1].at.duration_since(r[0].at) >= Duration::from_millis(950));

    mock.push_faults([Fault::throttle("120")]);
    let capped = source(
        &mock,
        "users",
        json!({"http": {"max_retry_after_seconds": 5}}),
        "xoxb-test-1",
    );
    let e = capped
        .read_page(&req("users", None), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Throttled, "{e}");
}

#[tokio::test]
async fn full_then_incremental_runs_read_every_message_once() {
    let mock = SlackMock::start(Default::default()).await;
    let local = Local::new();
    local.put_secret(PROFILE, secret("xoxb-test-1")).await;
    let p = props(&mock, json!({}));
    let out = local
        .run(&flow(
            "sl-full",
            "messages",
            &p,
            "  chunk: { records: 25, page_size: 10 }\n",
        ))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert_once(
        "full",
        &keys(&local.output("out/sl-full")),
        &mock.message_keys(&MEMBER, None, None),
    );
    assert_eq!(out.record.unwrap().records_written, 240);

    let from = at(message_micros(30, 2));
    let inc = format!("  incremental:\n    field: posted_at\n    first_execution_from: {}\n  chunk: {{ records: 20, page_size: 8 }}\n", from.to_rfc3339());
    let out = local.run(&flow("sl-inc", "messages", &p, &inc)).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert_once(
        "incremental",
        &keys(&local.output("out/sl-inc")),
        &mock.message_keys(&MEMBER, Some(from), None),
    );
    let out = local.run(&flow("sl-inc", "messages", &p, &inc)).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert_eq!(
        out.record.unwrap().records_written,
        0,
        "the second run finds nothing new"
    );

    for (entity, n) in [("users", 23usize), ("conversations", 5)] {
        let name = format!("sl-{entity}");
        let out = local
            .run(&flow(
                &name,
                entity,
                &p,
                "  chunk: { records: 4, page_size: 3 }\n",
            ))
            .await;
        assert!(out.succeeded(), "{entity}: {:?}", out.failure);
        let ids: Vec<String> = local
            .output(&format!("out/{name}"))
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), n, "{entity}");
        assert_eq!(ids.len(), n, "{entity}");
    }
}

#[tokio::test]
async fn refused_token_ends_the_run_auth_failed_naming_the_profile() {
    let mock = SlackMock::start(Default::default()).await;
    let local = Local::new();
    local.put_secret(PROFILE, secret("xoxb-revoked-123")).await;
    let out = local
        .run(&flow("sl-auth", "messages", &props(&mock, json!({})), ""))
        .await;
    let f = out.failure.expect("the run fails");
    assert_eq!(f.error, "AuthFailed", "{f:?}");
    assert!(
        f.cause.contains(PROFILE) && f.cause.contains("invalid_auth"),
        "{}",
        f.cause
    );
    assert!(!f.cause.contains("xoxb-revoked-123"), "{}", f.cause);
    assert_eq!(local.watermark("sl-auth").await, None);
}

#[tokio::test]
async fn a_throttled_chunk_is_retried_without_loss_or_duplicates() {
    let mock = SlackMock::start(SlackMockConfig {
        messages: 25,
        ..Default::default()
    })
    .await;
    let local = Local::new();
    local.put_secret(PROFILE, secret("xoxb-test-1")).await;
    let engine = local.fast_retry_engine();
    let p = props(
        &mock,
        json!({"http": {"max_retry_after_seconds": 1, "backoff_initial_ms": 5}}),
    );
    let f = ferry::flow::Flow::parse(
        &flow(
            "sl-throttled",
            "messages",
            &p,
            "  chunk: { records: 20, page_size: 10 }\n",
        ),
        "t.yaml",
    )
    .unwrap();
    mock.fault_every(4, vec![Fault::throttle("3600")]);
    let out = local.run_flow_on(&engine, &f).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert!(mock.requests().iter().any(|r| r.status == 429));
    assert_once(
        "throttled",
        &keys(&local.output("out/sl-throttled")),
        &mock.message_keys(&MEMBER, None, None),
    );
}

#[tokio::test]
async fn the_example_flow_runs_against_the_mock() {
    let mock = SlackMock::start(Default::default()).await;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/flows/slack-messages.yaml"
    ))
    .unwrap();
    assert!(text.contains("# base_url: https://slack.com/api"));
    let local = Local::new();
    local.put_secret(PROFILE, secret("xoxb-test-1")).await;
    let text = text.replace(
        "# base_url: https://slack.com/api",
        &format!("base_url: {}", mock.url()),
    );
    let out = local.run(&text).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let got = keys(&local.output("ferry-out/slack-messages"));
    assert_once(
        "example",
        &got,
        &mock.message_keys(&["C0000000001", "C0000000002"], None, None),
    );
}

/// Messages posted while a run pages are read by the next incremental run, and nothing posted
/// before is lost or repeated: `conversations.history` pages by a cursor that names the last
/// message served, so new messages at the head of the history do not shift the pages after it.
#[tokio::test]
async fn messages_posted_while_a_run_pages_are_read_by_the_next_run() {
    let mock = SlackMock::start(SlackMockConfig {
        messages: 40,
        ..Default::default()
    })
    .await;
    let local = Local::new();
    local.put_secret(PROFILE, secret("xoxb-test-1")).await;
    let chans = ["C0000000001", "C0000000002"];
    let p = props(&mock, json!({"channels": chans, "page_size": 7}));
    let yaml = flow(
        "slack-moving",
        "messages",
        &p,
        &format!(
            "  incremental:\n    field: posted_at\n    first_execution_from: {}\n  chunk: {{ records: 14 }}\n",
            at(message_micros(1, 1) - 1_000_000).to_rfc3339()
        ),
    );
    mock.post_after(3, &chans);
    mock.post_after(6, &chans);
    let out = local.run(&yaml).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let out = local.run(&yaml).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let got = keys(&local.output("out/slack-moving"));
    let want = mock.all_message_keys(&chans);
    assert_eq!(want.len(), 2 * 40 + 4, "the posts happened");
    assert_once("every message once over both runs", &got, &want);
}
