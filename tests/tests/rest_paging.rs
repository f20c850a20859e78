//! Every paginator of the `rest` connector reads every record exactly once, with and without
//! faults, at the connector level and through a flow on the embedded engine.

use ferry::connector::auth::Authenticator;
use ferry::connector::rest::RestSource;
use ferry::connector::{ReadRequest, Source};
use ferry_tests::harness::{rest_flow, Local};
use ferry_tests::{all_tickets, assert_once};
use ferry_tests::{Fault, Mock, MockConfig};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// (name, endpoint config) for every paging style the mock serves.
fn paginators() -> Vec<(&'static str, Value)> {
    vec![
        (
            "offset",
            json!({"path": "/offset/tickets", "records": "$.data[*]",
            "paginator": {"type": "offset", "limit": 20, "total_path": "$.total"}}),
        ),
        (
            "offset_no_total",
            json!({"path": "/offset/tickets", "records": "$.data[*]",
            "paginator": {"type": "offset", "limit": 20}}),
        ),
        (
            "page_number",
            json!({"path": "/page/tickets", "records": "$.items[*]",
            "paginator": {"type": "page_number", "size_param": "per_page", "size": 15, "total_pages_path": "$.total_pages"}}),
        ),
        (
            "cursor_body",
            json!({"path": "/cursor/tickets", "records": "$.data[*]", "params": {"limit": "30"},
            "paginator": {"type": "cursor", "token_path": "$.meta.next_cursor", "param": "cursor", "has_more_path": "$.meta.has_more"}}),
        ),
        (
            "cursor_header",
            json!({"path": "/cursor-header/tickets", "records": "$[*]", "params": {"limit": "40"},
            "paginator": {"type": "cursor", "token_header": "X-Next-Cursor", "param": "cursor"}}),
        ),
        (
            "cursor_in_post_body",
            json!({"path": "/search/tickets", "method": "POST", "body": {"limit": 35}, "records": "$.results[*]",
            "paginator": {"type": "cursor", "token_path": "$.next", "param": "cursor", "in": "body"}}),
        ),
        (
            "link_header",
            json!({"path": "/link/tickets", "records": "$[*]", "params": {"per_page": "25"},
            "paginator": {"type": "link_header"}}),
        ),
        (
            "next_url",
            json!({"path": "/next/tickets", "records": "$.data[*]", "params": {"limit": "22"},
            "paginator": {"type": "next_url", "path": "$.next"}}),
        ),
        (
            "single",
            json!({"path": "/single/tickets", "records": "$.data[*]"}),
        ),
    ]
}

/// The endpoint config of paging style `name` in [`paginators`].
fn endpoint(name: &str) -> Value {
    paginators()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, ep)| ep)
        .unwrap_or_else(|| panic!("no paging style {name}"))
}

fn props(mock: &Mock, endpoint: Value, extra: Value) -> serde_json::Map<String, Value> {
    let mut p = json!({
        "base_url": mock.url(),
        "concurrency": 4,
        "http": {"timeout_ms": 2000, "max_retries": 6, "backoff_initial_ms": 5, "backoff_max_ms": 40},
        "endpoints": {"tickets": endpoint}
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p.as_object().unwrap().clone()
}

async fn read_ids(src: &RestSource, entity: &str) -> Vec<u64> {
    let req = ReadRequest {
        entity: entity.into(),
        window: None,
        incremental_field: None,
        page_size: None,
        filters: vec![],
    };
    let mut cursor = None;
    let mut ids = vec![];
    for _ in 0..10_000 {
        let page = src
            .read_page(&req, cursor.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{entity}: {e}"));
        ids.extend(page.records.iter().map(|r| r["id"].as_u64().unwrap()));
        match page.next {
            // The cursor survives a JSON round trip (it travels in the state machine's state).
            Some(c) => cursor = Some(serde_json::from_str(&c.to_string()).unwrap()),
            None => return ids,
        }
    }
    panic!("paging never ended");
}

#[tokio::test]
async fn every_paginator_reads_every_record_once() {
    let mock = Mock::start(MockConfig {
        tickets: 257,
        ..Default::default()
    })
    .await;
    let expected = mock.ids_in(None, None);
    for (name, ep) in paginators() {
        let src =
            RestSource::new(&props(&mock, ep, json!({})), None, Authenticator::none()).unwrap();
        let ids = read_ids(&src, "tickets").await;
        assert_once(name, &ids, &expected);
    }
}

#[tokio::test]
async fn every_paginator_reads_every_record_once_under_faults() {
    let mock = Mock::start(MockConfig {
        tickets: 203,
        ..Default::default()
    })
    .await;
    // Every third request fails in turn with a 429 (Retry-After: 0), a 503, a 500, a truncated
    // body, a 429 with an HTTP-date Retry-After in the past, and a response slower than the
    // client's timeout.
    let past = httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(5));
    mock.fault_every(
        3,
        vec![
            Fault::throttle("0"),
            Fault::status(503),
            Fault::status(500),
            Fault::Truncated,
            Fault::throttle(&past),
            Fault::Slow(Duration::from_millis(400)),
        ],
    );
    let expected = mock.ids_in(None, None);
    for (name, ep) in paginators() {
        let p = props(
            &mock,
            ep,
            json!({"http": {"timeout_ms": 250, "max_retries": 6, "backoff_initial_ms": 5, "backoff_max_ms": 40}}),
        );
        let src = RestSource::new(&p, None, Authenticator::none()).unwrap();
        let ids = read_ids(&src, "tickets").await;
        assert_once(name, &ids, &expected);
    }
    let statuses: BTreeSet<u16> = mock.requests().iter().map(|r| r.status).collect();
    assert!(
        statuses.contains(&429) && statuses.contains(&503),
        "faults were injected: {statuses:?}"
    );
}

#[tokio::test]
async fn offset_with_total_keeps_requests_in_flight() {
    let mock = Mock::start(MockConfig {
        tickets: 400,
        latency: Duration::from_millis(40),
        ..Default::default()
    })
    .await;
    let ep = paginators().remove(0).1;
    let src = RestSource::new(
        &props(&mock, ep, json!({"concurrency": 8})),
        None,
        Authenticator::none(),
    )
    .unwrap();
    let ids = read_ids(&src, "tickets").await;
    assert_once("offset x8", &ids, &mock.ids_in(None, None));
    // 20 pages of 20: with 8 in flight, some requests started before the previous answered.
    let reqs = mock.requests();
    let overlapping = reqs
        .windows(2)
        .filter(|w| w[1].at.duration_since(w[0].at) < Duration::from_millis(20))
        .count();
    assert!(
        overlapping >= 5,
        "requests were sequential: {overlapping} overlaps"
    );
}

#[tokio::test]
async fn max_pages_stops_paging() {
    let mock = Mock::start(MockConfig {
        tickets: 100,
        ..Default::default()
    })
    .await;
    let ep = json!({"path": "/cursor/tickets", "records": "$.data[*]", "params": {"limit": "10"},
        "paginator": {"type": "cursor", "token_path": "$.meta.next_cursor", "param": "cursor", "max_pages": 3}});
    let src = RestSource::new(&props(&mock, ep, json!({})), None, Authenticator::none()).unwrap();
    assert_eq!(
        read_ids(&src, "tickets").await,
        (1..=30).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn child_endpoints_carry_parent_fields_and_skip_404() {
    let mock = Mock::start(MockConfig {
        tickets: 60,
        ..Default::default()
    })
    .await;
    let mut p = props(&mock, paginators().remove(0).1, json!({}));
    p["endpoints"]["comments"] = json!({
        "path": "/tickets/{id}/comments", "records": "$.comments[*]",
        "parent": {"endpoint": "tickets", "fields": {"id": "ticket_id", "status": "ticket_status"}},
        "ignore_status": [404]
    });
    let src = RestSource::new(&p, None, Authenticator::none()).unwrap();
    let req = ReadRequest {
        entity: "comments".into(),
        window: None,
        incremental_field: None,
        page_size: None,
        filters: vec![],
    };
    let mut cursor = None;
    let mut got = BTreeSet::new();
    let mut n = 0;
    loop {
        let page = src.read_page(&req, cursor.as_ref()).await.unwrap();
        for r in &page.records {
            let id = r["id"].as_str().unwrap();
            assert!(id.starts_with(&format!("{}-", r["ticket_id"])), "{r}");
            assert!(r["ticket_status"].is_string(), "{r}");
            got.insert(id.to_string());
            n += 1;
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(n, got.len());
    assert_eq!(got, mock.comment_ids(&mock.ids_in(None, None)));
    // Without the rule, a deleted ticket's 404 fails the read.
    p["endpoints"]["comments"]["ignore_status"] = json!([]);
    let src = RestSource::new(&p, None, Authenticator::none()).unwrap();
    let e = src.read_page(&req, None).await.unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
}

#[tokio::test]
async fn describe_infers_or_declares_fields() {
    let mock = Mock::start(MockConfig {
        tickets: 5,
        ..Default::default()
    })
    .await;
    let mut ep = paginators().remove(0).1;
    ep["primary_key"] = json!("id");
    let src = RestSource::new(
        &props(&mock, ep.clone(), json!({})),
        None,
        Authenticator::none(),
    )
    .unwrap();
    let d = src.describe("tickets").await.unwrap();
    let f = |n: &str| d.fields.iter().find(|f| f.name == n).unwrap().clone();
    assert!(f("id").primary_key);
    assert_eq!(
        f("updated_at").data_type,
        ferry::connector::FieldType::Timestamp
    );
    assert_eq!(
        f("priority").data_type,
        ferry::connector::FieldType::Integer
    );
    ep["fields"] = json!([{"name": "id", "type": "integer"}, {"name": "subject"}]);
    let src = RestSource::new(&props(&mock, ep, json!({})), None, Authenticator::none()).unwrap();
    let d = src.describe("tickets").await.unwrap();
    assert_eq!(d.fields.len(), 2);
    assert_eq!(src.list_entities().await.unwrap()[0].name, "tickets");
}

/// Through the embedded engine: small chunks, so the cursor crosses many fetch-page calls.
#[tokio::test]
async fn flows_read_every_record_once_across_chunks() {
    let mock = Mock::start(MockConfig {
        tickets: 180,
        ..Default::default()
    })
    .await;
    mock.fault_every(4, vec![Fault::throttle("0"), Fault::status(502)]);
    let local = Local::new();
    for (name, ep) in paginators() {
        let p = Value::Object(props(&mock, ep, json!({})));
        let flow = rest_flow(
            &format!("paging-{}", name.replace('_', "-")),
            "tickets",
            None,
            &p,
            "  chunk: { records: 50 }\n",
        );
        let out = local.run(&flow).await;
        assert!(out.succeeded(), "{name}: {:?}", out.failure);
        let dir = format!("out/paging-{}", name.replace('_', "-"));
        let ids: Vec<u64> = local
            .output(&dir)
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect();
        assert_once(name, &ids, &mock.ids_in(None, None));
        assert_eq!(out.record.unwrap().records_written, 180, "{name}");
    }
}

#[tokio::test]
async fn the_example_flow_runs_against_the_mock() {
    let mock = Mock::start(MockConfig {
        tickets: 120,
        ..Default::default()
    })
    .await;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/flows/rest-tickets.yaml"
    ))
    .unwrap();
    assert!(text.contains("http://127.0.0.1:8099"));
    let local = Local::new();
    let out = local
        .run(&text.replace("http://127.0.0.1:8099", &mock.url()))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let ids: Vec<u64> = local
        .output("ferry-out/rest-tickets")
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_once("example", &ids, &mock.ids_in(None, None));
    // The window reached the API on every data request (the first request is start-run's
    // describe sample, which reads one unwindowed page to infer the field types).
    let reqs = mock.requests();
    assert!(reqs.len() > 1);
    assert!(
        reqs[1..]
            .iter()
            .all(|r| r.query.contains("updated_since=") && r.query.contains("updated_before=")),
        "{reqs:?}"
    );
}

/// Link values whose URLs hold raw commas (echoed `fields=id,subject`) and whose quoted titles
/// hold commas and semicolons are read as RFC 8288 says, not split on every `,` (which ended
/// the read after the first page).
#[tokio::test]
async fn link_header_paging_survives_commas_inside_urls_and_quoted_strings() {
    let mock = Mock::start(MockConfig {
        tickets: 120,
        ..Default::default()
    })
    .await;
    let ep = json!({"path": "/link/tickets", "records": "$[*]",
        "params": {"per_page": "25", "fields": "id,subject,updated_at"},
        "paginator": {"type": "link_header"}});
    let src = RestSource::new(&props(&mock, ep, json!({})), None, Authenticator::none()).unwrap();
    let ids = read_ids(&src, "tickets").await;
    assert_once("link_header with commas", &ids, &mock.ids_in(None, None));
    let next_pages = mock
        .requests()
        .iter()
        .filter(|r| {
            r.path == "/link/tickets"
                && url::form_urlencoded::parse(r.query.as_bytes()).any(|(k, _)| k == "page")
        })
        .count();
    assert_eq!(next_pages, 4, "pages 2..=5 followed from the Link header");
}

/// A Link header that is not RFC 8288 (here: a link without `rel`) ends the read with an
/// error instead of being taken for "no next page".
#[tokio::test]
async fn a_link_header_without_rel_is_an_error_not_the_last_page() {
    let mock = Mock::start(MockConfig {
        tickets: 60,
        ..Default::default()
    })
    .await;
    let ep = json!({"path": "/link/tickets", "records": "$[*]",
        "params": {"per_page": "25"},
        "paginator": {"type": "link_header"}});
    mock.set_link_without_rel(true);
    let src = RestSource::new(&props(&mock, ep, json!({})), None, Authenticator::none()).unwrap();
    let req = ReadRequest {
        entity: "tickets".into(),
        window: None,
        incremental_field: None,
        page_size: None,
        filters: vec![],
    };
    let e = src.read_page(&req, None).await.unwrap_err();
    assert_eq!(e.kind(), ferry::error::ErrorKind::SourceRejected, "{e}");
    assert!(e.to_string().contains("rel"), "{e}");
}

/// Records updated while a run pages (some already read, some not yet) are all delivered in
/// their latest version once the next incremental run has run: the updated ones leave this
/// run's window (their `updated_at` is past its end) and fall in the next one's; keyset paging
/// (`after` the last id) does not shift by the records that left, so none is skipped.
#[tokio::test]
async fn records_updated_while_a_run_pages_are_not_lost_at_the_next_run() {
    let mock = Mock::start(MockConfig {
        tickets: 90,
        ..Default::default()
    })
    .await;
    let local = Local::new();
    let ep = json!({"path": "/next/tickets", "records": "$.data[*]", "params": {"limit": "10"},
        "paginator": {"type": "next_url", "path": "$.next"},
        "incremental": {"set": {"updated_since": "{start}", "updated_before": "{end}"}}});
    let p = Value::Object(props(&mock, ep, json!({})));
    let from = ferry_tests::updated_at(1) - chrono::Duration::minutes(1);
    let yaml = rest_flow(
        "rest-moving",
        "tickets",
        None,
        &p,
        &format!(
            "  incremental:\n    field: updated_at\n    first_execution_from: {}\n  chunk: {{ records: 20 }}\n",
            from.to_rfc3339()
        ),
    );
    // After three pages (tickets 1-30 read): two read tickets and two unread ones change.
    mock.touch_after(3, &[2, 5, 70, 71]);
    let out = local.run(&yaml).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = local.run(&yaml).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let got: BTreeSet<(u64, i64)> = local
        .output("out/rest-moving")
        .iter()
        .map(|r| {
            let t = chrono::DateTime::parse_from_rfc3339(r["updated_at"].as_str().unwrap())
                .unwrap()
                .timestamp();
            (r["id"].as_u64().unwrap(), t)
        })
        .collect();
    let now = mock.versions();
    assert_eq!(
        now.iter()
            .filter(|(i, t)| *t != ferry_tests::updated_at(*i))
            .count(),
        4,
        "the updates happened"
    );
    for (id, t) in &now {
        assert!(
            got.contains(&(*id, t.timestamp())),
            "ticket {id} as of {t} was never delivered"
        );
    }
}

/// A source on endpoint `name` of [`paginators`] (with `extra` properties), and the run schema
/// describing it gives: what `read_page_arrow` decodes pages with.
async fn arrow_source(
    mock: &Mock,
    name: &str,
    extra: Value,
) -> (RestSource, arrow::datatypes::SchemaRef) {
    let src = RestSource::new(
        &props(mock, endpoint(name), extra),
        None,
        Authenticator::none(),
    )
    .unwrap();
    let desc = src.describe("tickets").await.unwrap();
    (src, ferry::schema::arrow_schema(&desc.fields))
}

/// Requests the mock has answered on `path`.
fn asked(mock: &Mock, path: &str) -> usize {
    mock.requests().iter().filter(|r| r.path == path).count()
}

/// Wait until the mock has seen `n` requests on `path` (a request asked for ahead arrives on a
/// task of its own), then check no more come.
async fn asked_reaches(mock: &Mock, path: &str, n: usize) {
    let t = std::time::Instant::now();
    while asked(mock, path) < n {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{} requests, not {n}",
            asked(mock, path)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(asked(mock, path), n, "more requests than pages");
}

/// The ids of a page read straight to Arrow.
fn arrow_ids(page: &ferry::connector::ArrowPage) -> Vec<u64> {
    let mut ids = vec![];
    for part in &page.parts {
        let ferry::connector::PageRecords::Arrow(b) = part else {
            panic!("a page read as values");
        };
        let col = arrow::compute::cast(
            b.column_by_name("id").unwrap(),
            &arrow::datatypes::DataType::UInt64,
        )
        .unwrap();
        let col = col
            .as_any()
            .downcast_ref::<arrow::array::UInt64Array>()
            .unwrap();
        ids.extend(col.iter().flatten());
    }
    ids
}

/// A cursor page is asked for while the previous one decodes (its cursor read off the end of
/// the page, `connector::rest::tail`), only when the caller says it will want it, and used only
/// by the read that sends exactly that request: every page is asked for once, a chunk's last
/// page asks for nothing more, and a read of another cursor gets what it asked for.
#[tokio::test(flavor = "multi_thread")]
async fn cursor_pages_are_asked_for_ahead_once_each() {
    let mock = Mock::start(MockConfig {
        tickets: 100,
        ..Default::default()
    })
    .await;
    let expected = mock.ids_in(None, None);
    let (src, schema) = arrow_source(&mock, "cursor_body", json!({})).await;
    let req = all_tickets();
    const PATH: &str = "/cursor/tickets";
    let read = |cursor: Option<Value>| {
        let (src, req, schema) = (&src, &req, &schema);
        async move {
            src.read_page_arrow(req, cursor.as_ref(), schema)
                .await
                .unwrap()
                .expect("the page decodes to Arrow")
        }
    };
    let before = asked(&mock, PATH);
    // Page 1, the next one wanted: page 2 is asked for at once.
    src.records_wanted(u64::MAX);
    let p1 = read(None).await;
    asked_reaches(&mock, PATH, before + 2).await;
    // Page 2 comes from that request; the caller wants only its 30 records: nothing is asked
    // ahead.
    src.records_wanted(30);
    let p2 = read(p1.next.clone()).await;
    asked_reaches(&mock, PATH, before + 2).await;
    // Page 3 asked for now, page 4 ahead; then a read of page 1 again drops page 4's answer
    // and gets page 1.
    src.records_wanted(u64::MAX);
    let p3 = read(p2.next.clone()).await;
    asked_reaches(&mock, PATH, before + 4).await;
    let again = read(None).await;
    assert_eq!(arrow_ids(&again), arrow_ids(&p1));
    asked_reaches(&mock, PATH, before + 6).await;
    // The whole entity with read-ahead: every record once, every page asked for once (the
    // last page has no cursor: nothing after it).
    let start = asked(&mock, PATH);
    let (mut cursor, mut ids, mut pages) = (None, vec![], 0);
    loop {
        let p = read(cursor).await;
        ids.extend(arrow_ids(&p));
        pages += 1;
        match p.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_once("cursor read ahead", &ids, &expected);
    assert_eq!(pages, 4);
    // (The page-2 request asked ahead before the loop is not the loop's first request: it was
    // dropped, and counted in `start`.)
    asked_reaches(&mock, PATH, start + pages).await;
    let _ = p3;
}

/// Through fetch-page on the embedded engine, reading pages ahead (the next cursor page; with
/// offset paging and a known total, the next step's first page) asks for no page more than
/// reading them one by one: a chunk's last page asks for nothing ahead (the next chunk's
/// fetch-page asks for it). (nextest runs each test in a process of its own, so the variable
/// is this test's.)
#[tokio::test(flavor = "multi_thread")]
async fn reading_ahead_asks_for_no_extra_page_across_chunks() {
    let mock = Mock::start(MockConfig {
        tickets: 180,
        ..Default::default()
    })
    .await;
    for name in ["cursor_body", "offset"] {
        let p = Value::Object(props(&mock, endpoint(name), json!({})));
        let mut asked = vec![];
        for ahead in ["0", "1"] {
            std::env::set_var("FERRY_READ_AHEAD", ahead);
            let local = Local::new();
            let flow = rest_flow("ahead", "tickets", None, &p, "  chunk: { records: 60 }\n");
            let before = mock.requests().len();
            let out = local.run(&flow).await;
            assert!(out.succeeded(), "{name}: {:?}", out.failure);
            assert!(out.record.as_ref().unwrap().chunks >= 2, "{name}");
            let ids: Vec<u64> = local
                .output("out/ahead")
                .iter()
                .map(|r| r["id"].as_u64().unwrap())
                .collect();
            assert_once(name, &ids, &mock.ids_in(None, None));
            asked.push(mock.requests().len() - before);
        }
        std::env::remove_var("FERRY_READ_AHEAD");
        assert_eq!(
            asked[0], asked[1],
            "{name}: requests one by one, and reading ahead"
        );
    }
}

/// Offset paging with a known total asks for the next step's first page while the last page of
/// a step decodes: after a step is read, that request has been sent.
#[tokio::test(flavor = "multi_thread")]
async fn offset_paging_asks_for_the_next_step_ahead() {
    let mock = Mock::start(MockConfig {
        tickets: 100,
        ..Default::default()
    })
    .await;
    // One page per step: every read but the last asks for the next page ahead.
    let (src, schema) = arrow_source(&mock, "offset", json!({"concurrency": 1})).await;
    let req = all_tickets();
    const PATH: &str = "/offset/tickets";
    let before = asked(&mock, PATH);
    // The first page says the total: the second step is known, but only from the page.
    let p1 = src
        .read_page_arrow(&req, None, &schema)
        .await
        .unwrap()
        .unwrap();
    asked_reaches(&mock, PATH, before + 1).await;
    // From the second step on the total is known: the third page is asked for ahead.
    let p2 = src
        .read_page_arrow(&req, p1.next.as_ref(), &schema)
        .await
        .unwrap()
        .unwrap();
    asked_reaches(&mock, PATH, before + 3).await;
    let mut ids = [arrow_ids(&p1), arrow_ids(&p2)].concat();
    let mut cursor = p2.next;
    while let Some(c) = cursor {
        let p = src
            .read_page_arrow(&req, Some(&c), &schema)
            .await
            .unwrap()
            .unwrap();
        ids.extend(arrow_ids(&p));
        cursor = p.next;
    }
    assert_once("offset read ahead", &ids, &mock.ids_in(None, None));
    // 100 tickets, 20 a page: five pages, each asked for once.
    asked_reaches(&mock, PATH, before + 5).await;
}
