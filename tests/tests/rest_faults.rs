//! Throttling, bad bodies, looping cursors, missing cursor fields and APIs that ignore the
//! window filter: each ends the way a user can act on, and the watermark moves only on success.

use ferry::connector::auth::Authenticator;
use ferry::connector::rest::RestSource;
use ferry::connector::{ReadRequest, Source, SourceError};
use ferry_tests::harness::{rest_flow, Local};
use ferry_tests::{updated_at, Fault, Mock, MockConfig};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

fn cursor_props(mock: &Mock, http: Value) -> Value {
    json!({
        "base_url": mock.url(),
        "http": http,
        "endpoints": {"tickets": {"path": "/cursor/tickets", "records": "$.data[*]", "params": {"limit": "10"},
            "paginator": {"type": "cursor", "token_path": "$.meta.next_cursor", "param": "cursor", "has_more_path": "$.meta.has_more"}}}
    })
}

fn src(props: &Value, inc: Option<&str>) -> RestSource {
    RestSource::new(props.as_object().unwrap(), inc, Authenticator::none()).unwrap()
}

fn req() -> ReadRequest {
    ferry_tests::all_tickets()
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let mock = Mock::start(MockConfig {
        tickets: 10,
        ..Default::default()
    })
    .await;
    mock.push_faults([Fault::throttle("1")]);
    let s = src(
        &cursor_props(&mock, json!({"backoff_initial_ms": 1, "backoff_max_ms": 5})),
        None,
    );
    let page = s.read_page(&req(), None).await.unwrap();
    assert_eq!(page.records.len(), 10);
    let r = mock.requests();
    assert_eq!((r[0].status, r[1].status), (429, 200));
    let gap = r[1].at.duration_since(r[0].at);
    assert!(
        gap >= Duration::from_millis(950),
        "waited only {gap:?} after Retry-After: 1"
    );

    // An HTTP date two seconds ahead.
    let at = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
    mock.push_faults([Fault::throttle(&at)]);
    s.read_page(&req(), None).await.unwrap();
    let r = mock.requests();
    let gap = r[3].at.duration_since(r[2].at);
    assert!(
        gap >= Duration::from_millis(900),
        "waited only {gap:?} for an HTTP-date Retry-After"
    );
}

#[tokio::test]
async fn retry_after_zero_backs_off_instead_of_spinning() {
    let mock = Mock::start(MockConfig {
        tickets: 10,
        ..Default::default()
    })
    .await;
    mock.push_faults([
        Fault::throttle("0"),
        Fault::throttle("0"),
        Fault::throttle("0"),
    ]);
    let s = src(
        &cursor_props(
            &mock,
            json!({"backoff_initial_ms": 100, "backoff_max_ms": 400, "max_retries": 5}),
        ),
        None,
    );
    s.read_page(&req(), None).await.unwrap();
    assert_eq!(mock.requests().len(), 4);
    let ten = src(
        &cursor_props(&mock, json!({"backoff_initial_ms": 100, "max_retries": 2})),
        None,
    );
    mock.push_faults([
        Fault::throttle("0"),
        Fault::throttle("0"),
        Fault::throttle("0"),
    ]);
    let e = ten.read_page(&req(), None).await.unwrap_err();
    assert!(matches!(e, SourceError::Throttled { .. }), "{e}");
}

#[tokio::test]
async fn retry_after_beyond_the_cap_ends_the_chunk_throttled() {
    let mock = Mock::start(MockConfig {
        tickets: 10,
        ..Default::default()
    })
    .await;
    mock.push_faults([Fault::throttle("3600")]);
    let s = src(
        &cursor_props(&mock, json!({"max_retry_after_seconds": 5})),
        None,
    );
    let t0 = std::time::Instant::now();
    let e = s.read_page(&req(), None).await.unwrap_err();
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "it waited instead of handing back"
    );
    assert_eq!(e.kind(), ferry::error::ErrorKind::Throttled);
    assert!(
        e.to_string().contains("3600") && e.to_string().contains("max_retry_after_seconds"),
        "{e}"
    );
}

/// The real state machine with the Throttled retry interval shortened from 30 s to 1 s.
#[tokio::test]
async fn a_throttled_chunk_is_retried_by_the_state_machine_without_loss_or_duplicates() {
    let mock = Mock::start(MockConfig {
        tickets: 95,
        ..Default::default()
    })
    .await;
    let local = Local::new();
    let engine = local.fast_retry_engine();
    let props = cursor_props(&mock, json!({"max_retry_after_seconds": 1}));
    let flow = ferry::flow::Flow::parse(
        &rest_flow(
            "throttled",
            "tickets",
            None,
            &props,
            "  chunk: { records: 30 }\n",
        ),
        "t.yaml",
    )
    .unwrap();
    // Pages 1-4 pass; the 5th request (inside chunk 2) is told to come back in an hour.
    mock.fault_every(5, vec![Fault::throttle("3600")]);
    let out = local.run_flow_on(&engine, &flow).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert!(mock.requests().iter().any(|r| r.status == 429));
    let ids: Vec<u64> = local
        .output("out/throttled")
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    let set: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), set.len(), "duplicates after the retried chunk");
    assert_eq!(set, mock.ids_in(None, None));
}

async fn failing_run(
    local: &Local,
    name: &str,
    props: &Value,
    extra: &str,
) -> ferry::local::asl::ExecutionFailure {
    let out = local
        .run(&rest_flow(name, "tickets", None, props, extra))
        .await;
    let f = out
        .failure
        .unwrap_or_else(|| panic!("{name}: the run should fail"));
    assert_eq!(
        local.watermark(name).await,
        None,
        "{name}: the watermark moved"
    );
    assert!(
        local.output(&format!("out/{name}")).is_empty(),
        "{name}: output was committed"
    );
    f
}

const INCREMENTAL: &str =
    "  incremental:\n    field: updated_at\n    first_execution_from: 2026-01-01T00:00:00Z\n";

#[tokio::test]
async fn malformed_json_fails_the_run_naming_url_and_status() {
    let mock = Mock::start(MockConfig {
        tickets: 40,
        ..Default::default()
    })
    .await;
    let local = Local::new();
    mock.fault_every(2, vec![Fault::Malformed]);
    let f = failing_run(
        &local,
        "malformed",
        &cursor_props(&mock, json!({})),
        INCREMENTAL,
    )
    .await;
    assert_eq!(f.error, "SourceRejected", "{f:?}");
    assert!(
        f.cause.contains("not valid JSON")
            && f.cause.contains("/cursor/tickets")
            && f.cause.contains("200"),
        "{}",
        f.cause
    );
}

#[tokio::test]
async fn an_endless_cursor_fails_the_run() {
    let mock = Mock::start(MockConfig {
        tickets: 40,
        ..Default::default()
    })
    .await;
    mock.set_endless_cursor(true);
    let local = Local::new();
    let f = failing_run(
        &local,
        "endless",
        &cursor_props(&mock, json!({})),
        INCREMENTAL,
    )
    .await;
    assert_eq!(f.error, "SourceRejected", "{f:?}");
    assert!(
        f.cause.contains("already given") && f.cause.contains("looping"),
        "{}",
        f.cause
    );
    assert!(
        mock.requests().len() < 10,
        "stopped early: {} requests",
        mock.requests().len()
    );
}

#[tokio::test]
async fn a_missing_cursor_field_fails_the_run() {
    let mock = Mock::start(MockConfig {
        tickets: 40,
        ..Default::default()
    })
    .await;
    let local = Local::new();
    let mut props = cursor_props(&mock, json!({}));
    props["endpoints"]["tickets"]["primary_key"] = json!("id");
    props["endpoints"]["tickets"]["incremental"] =
        json!({"set": {"updated_since": "{start}"}, "cursor_path": "$.modified_at"});
    let f = failing_run(&local, "no-cursor-field", &props, INCREMENTAL).await;
    assert_eq!(f.error, "SourceRejected", "{f:?}");
    assert!(
        f.cause.contains("$.modified_at")
            && f.cause.contains("cursor_path")
            && f.cause.contains("record 1 of the page"),
        "{}",
        f.cause
    );
    // The position, never the record's values (docs/security.md): the cause reaches logs, the
    // execution history, the run record and events.
    assert!(!f.cause.contains("id=1"), "{}", f.cause);
}

#[tokio::test]
async fn records_outside_the_window_are_dropped_when_the_api_ignores_the_filter() {
    for ignore_filter in [false, true] {
        let mock = Mock::start(MockConfig {
            tickets: 150,
            ignore_filter,
            ..Default::default()
        })
        .await;
        let local = Local::new();
        let mut props = cursor_props(&mock, json!({}));
        props["endpoints"]["tickets"]["incremental"] = json!({"set": {"q": "updated_at>={start}"}});
        let from = updated_at(100); // 2026-01-01T01:40:00Z
        let extra = format!(
            "  incremental:\n    field: updated_at\n    first_execution_from: {}\n",
            from.to_rfc3339()
        );
        let out = local
            .run(&rest_flow("window", "tickets", None, &props, &extra))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let ids: BTreeSet<u64> = local
            .output("out/window")
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect();
        assert_eq!(
            ids,
            mock.ids_in(Some(from), None),
            "ignore_filter={ignore_filter}"
        );
        assert_eq!(ids, (101..=150).collect());
        assert!(local.watermark("window").await.is_some());
        // The first request is start-run's describe sample (no window, fields inferred from it);
        // every data request carries the filter as the templated expression.
        let reqs = mock.requests();
        assert!(!reqs[0].query.contains("q="), "{}", reqs[0].query);
        assert!(reqs.len() > 1);
        for r in &reqs[1..] {
            assert!(
                r.query
                    .contains("q=updated_at%3E%3D2026-01-01T01%3A40%3A00Z"),
                "{}",
                r.query
            );
        }
    }
}

/// A source that keeps answering 5xx gets the connector's retries and no more: the chunk fails
/// `SourceUnavailable`, which the state machine does not retry on top (docs/connectors.md, "One
/// retry budget"). With `max_retries: 2` that is exactly three requests — before, the state
/// machine's six attempts multiplied them to eighteen.
#[tokio::test]
async fn a_persistent_5xx_spends_the_connectors_retries_and_no_more() {
    let mock = Mock::start(MockConfig {
        tickets: 40,
        ..Default::default()
    })
    .await;
    let local = Local::new();
    mock.fault_every(1, vec![Fault::status(503)]);
    let f = failing_run(
        &local,
        "unavailable",
        &cursor_props(
            &mock,
            json!({"max_retries": 2, "backoff_initial_ms": 1, "backoff_max_ms": 5}),
        ),
        INCREMENTAL,
    )
    .await;
    assert_eq!(f.error, "SourceUnavailable", "{f:?}");
    assert!(
        f.cause.contains("503") && f.cause.contains("max_retries"),
        "{}",
        f.cause
    );
    let tried = mock
        .requests()
        .iter()
        .filter(|r| r.path == "/cursor/tickets")
        .count();
    assert_eq!(tried, 3, "1 attempt + 2 retries: {:?}", mock.requests());
}
