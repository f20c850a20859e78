//! The servicenow connector against a mock instance speaking the Table API: tables and columns
//! from sys_db_object/sys_dictionary (with inheritance), full and incremental runs through the
//! embedded engine reading every row exactly once, ties at page boundaries, rows updated during
//! the read, ACL-shortened pages, display values, typed values, auth failures and throttling.

use ferry::connector::auth::Authenticator;
use ferry::connector::servicenow::ServiceNowSource;
use ferry::connector::{FieldType, ReadRequest, Source, SourceError};
use ferry::model::Window;
use ferry::ports::Secret;
use ferry_tests::harness::Local;
use ferry_tests::saas::servicenow::{sys_id, updated_on, ServiceNowMock, SnAuth, SnConfig};
use ferry_tests::Fault;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

const PASSWORD: &str = "sn-pass-1";

fn props(mock: &ServiceNowMock, extra: Value) -> Value {
    let mut p = json!({
        "instance_url": mock.url(),
        "page_size": 10,
        "http": {"timeout_ms": 5000, "max_retries": 2, "backoff_initial_ms": 5, "backoff_max_ms": 20}
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn flow(name: &str, entity: &str, properties: &Value, extra: &str) -> String {
    format!(
        "name: {name}\nsource:\n  connector: servicenow\n  profile: snow\n  entity: {entity}\n  properties: {}\n{extra}destination:\n  local: out\n  format: jsonl\n  compression: none\ntasks:\n  - map_all: {{}}\ntrigger:\n  on_demand: {{}}\n",
        serde_json::to_string(properties).unwrap()
    )
}

fn incremental(from: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "  incremental:\n    field: sys_updated_on\n    first_execution_from: {}\n",
        from.to_rfc3339()
    )
}

async fn local_with_profile() -> Local {
    let local = Local::new();
    local
        .put_secret(
            "snow",
            json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "ferry.integration", "password": PASSWORD}),
        )
        .await;
    local
}

fn source(mock: &ServiceNowMock, extra: Value) -> ServiceNowSource {
    let auth = Authenticator::from_secret(
        "snow",
        &Secret::new(
            json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "ferry.integration", "password": PASSWORD}),
        ),
        Arc::new(ferry::adapters::memory::MemorySecrets::default()),
    )
    .unwrap();
    ServiceNowSource::new(props(mock, extra).as_object().unwrap(), auth).unwrap()
}

fn number(r: &Value) -> u64 {
    r["number"].as_str().unwrap()[3..].parse().unwrap()
}

/// Every record of a read, and the numbers seen (duplicates kept).
async fn read_all(
    src: &ServiceNowSource,
    req: &ReadRequest,
) -> Result<(Vec<Value>, Vec<u64>), SourceError> {
    let out = ferry_tests::read_all(src, req).await?;
    let nums = out.iter().map(number).collect();
    Ok((out, nums))
}

fn window_req(
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> ReadRequest {
    ReadRequest {
        entity: "incident".into(),
        window: Some(Window {
            start: Some(start),
            end,
        }),
        incremental_field: Some("sys_updated_on".into()),
        page_size: None,
        filters: vec![],
    }
}

#[tokio::test]
async fn tables_come_from_sys_db_object_and_columns_from_sys_dictionary_with_inheritance() {
    let mock = ServiceNowMock::start(SnConfig::default()).await;
    let src = source(&mock, json!({}));
    let tables = src.list_entities().await.unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["incident", "sys_user", "task"]);
    assert_eq!(tables[0].label, "Incident");
    assert_eq!(tables[0].description.as_deref(), Some("extends task"));

    let d = src.describe("incident").await.unwrap();
    let f = |n: &str| {
        d.fields
            .iter()
            .find(|f| f.name == n)
            .unwrap_or_else(|| panic!("no field {n}: {:?}", d.fields))
    };
    assert_eq!(d.fields[0].name, "sys_id");
    assert!(f("sys_id").primary_key);
    // Columns defined on task, inherited by incident, and incident's own.
    assert_eq!(f("number").data_type, FieldType::String);
    assert_eq!(f("priority").data_type, FieldType::Integer);
    assert_eq!(f("active").data_type, FieldType::Boolean);
    assert_eq!(f("caller_id").data_type, FieldType::String);
    assert_eq!(f("reopen_count").data_type, FieldType::Integer);
    assert_eq!(f("sys_updated_on").data_type, FieldType::Timestamp);
    assert!(f("sys_updated_on").incremental);
    assert_eq!(f("due_date").data_type, FieldType::Timestamp);
    assert_eq!(
        d.fields.len(),
        12,
        "no collection rows, no sys_user columns: {:?}",
        d.fields
    );
    let q = &mock.table_requests("sys_dictionary")[0].query;
    assert!(q.contains("nameINincident%2Ctask"), "{q}");

    // Unknown tables and columns are named, not silently ignored.
    let e = src.describe("incidnet").await.unwrap_err();
    assert_eq!(e.kind(), ferry::error::ErrorKind::InvalidFlow);
    assert!(
        e.to_string().contains("source.entity") && e.to_string().contains("incidnet"),
        "{e}"
    );
    let src = source(&mock, json!({"fields": ["number", "short_descrption"]}));
    let e = src.describe("incident").await.unwrap_err();
    assert!(
        e.to_string().contains("source.properties.fields[1]")
            && e.to_string().contains("short_descrption"),
        "{e}"
    );
    let src = source(&mock, json!({"fields": ["number", "priority"]}));
    let names: Vec<String> = src
        .describe("incident")
        .await
        .unwrap()
        .fields
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["sys_id", "number", "priority", "sys_updated_on"]);
}

#[tokio::test]
async fn a_full_run_reads_every_row_once_with_typed_values() {
    let mock = ServiceNowMock::start(SnConfig {
        incidents: 137,
        ..Default::default()
    })
    .await;
    let local = local_with_profile().await;
    let out = local
        .run(&flow(
            "snow-full",
            "incident",
            &props(&mock, json!({"page_size": 25})),
            "  chunk: { records: 40 }\n",
        ))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let rows = local.output("out/snow-full");
    let nums: Vec<u64> = rows.iter().map(number).collect();
    let set: BTreeSet<u64> = nums.iter().copied().collect();
    assert_eq!(nums.len(), set.len(), "duplicates");
    assert_eq!(set, mock.incidents_in(None, None));
    assert_eq!(set.len(), 137);
    let r = rows.iter().find(|r| number(r) == 10).unwrap();
    assert_eq!(r["sys_id"], json!(sys_id(10)));
    assert_eq!(r["priority"], json!(1), "strings typed from internal_type");
    assert_eq!(r["active"], json!(true));
    assert_eq!(
        r["assigned_to"],
        Value::Null,
        "an empty reference is null, not \"\""
    );
    assert_eq!(
        r["sys_updated_on"],
        json!(updated_on(10).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    );
    let r = rows.iter().find(|r| number(r) == 11).unwrap();
    assert_eq!(
        r["caller_id"],
        json!(format!("{:032x}", 1000 + 11 % 3)),
        "reference as its sys_id, not a {{link, value}} object"
    );
    assert_eq!(r["reopen_count"], json!(2));
    // Every data request asks for sys_id order, without reference links.
    let reqs = mock.table_requests("incident");
    assert!(reqs.len() >= 137 / 25);
    for r in &reqs {
        assert!(
            r.query.contains("sysparm_exclude_reference_link=true"),
            "{}",
            r.query
        );
        assert!(r.query.contains("ORDERBYsys_id"), "{}", r.query);
        assert!(
            !r.query.contains("sysparm_offset"),
            "keyset paging, not offsets: {}",
            r.query
        );
    }
}

#[tokio::test]
async fn incremental_runs_read_the_window_then_only_what_changed() {
    let mock = ServiceNowMock::start(SnConfig {
        incidents: 150,
        ..Default::default()
    })
    .await;
    let local = local_with_profile().await;
    let from = updated_on(60); // rows 60-62 share this second: excluded ((start, end])
    let yaml = flow(
        "snow-inc",
        "incident",
        &props(&mock, json!({})),
        &incremental(from),
    );
    let out = local.run(&yaml).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let nums: Vec<u64> = local.output("out/snow-inc").iter().map(number).collect();
    let set: BTreeSet<u64> = nums.iter().copied().collect();
    assert_eq!(
        nums.len(),
        set.len(),
        "duplicates at page boundaries (3 rows share each second, pages of 10)"
    );
    assert_eq!(set, mock.incidents_in(Some(from), None));
    assert_eq!(set, (63..=150).collect());
    let last = mock
        .table_requests("incident")
        .last()
        .unwrap()
        .query
        .clone();
    let q: String = url::form_urlencoded::parse(last.as_bytes())
        .find(|(k, _)| k == "sysparm_query")
        .unwrap()
        .1
        .into_owned();
    assert!(
        q.contains("sys_updated_on>2026-01-01 00:06:40^sys_updated_on<="),
        "UTC instance format, start exclusive: {q}"
    );
    assert!(
        q.contains("^NQ") && q.ends_with("^ORDERBYsys_updated_on^ORDERBYsys_id"),
        "{q}"
    );
    let wm = local.watermark("snow-inc").await.expect("watermark moved");

    // Two rows change after the first run: the next run reads exactly them.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let at = chrono::Utc::now() - chrono::Duration::milliseconds(100);
    assert!(at > wm);
    mock.touch(5, at);
    mock.touch(99, at);
    let out = local.run(&yaml).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let all: Vec<u64> = local.output("out/snow-inc").iter().map(number).collect();
    assert_eq!(all.len(), set.len() + 2, "{all:?}");
    let second: BTreeSet<u64> = all[..]
        .iter()
        .copied()
        .filter(|n| *n == 5 || *n == 99)
        .collect();
    assert_eq!(second, BTreeSet::from([5, 99]));
}

#[tokio::test]
async fn a_row_updated_during_the_read_does_not_shift_the_others_out() {
    let mock = ServiceNowMock::start(SnConfig {
        incidents: 90,
        ..Default::default()
    })
    .await;
    let src = source(&mock, json!({"page_size": 10}));
    let end = updated_on(90);
    let req = window_req(updated_on(0) - chrono::Duration::seconds(1), end);
    let first = src.read_page(&req, None).await.unwrap();
    let read: Vec<u64> = first.records.iter().map(number).collect();
    // A row already read is edited: it leaves the window. With offsets, the row at position
    // 11 would slide to position 10 and never be read.
    mock.touch(read[0], end + chrono::Duration::hours(1));
    let (_, rest) = {
        let (mut out, mut cursor) = (vec![], first.next.clone());
        while let Some(c) = cursor {
            let p = src.read_page(&req, Some(&c)).await.unwrap();
            out.extend(p.records);
            cursor = p.next;
        }
        let nums: Vec<u64> = out.iter().map(number).collect();
        (out, nums)
    };
    let mut all = read.clone();
    all.extend(&rest);
    let set: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(all.len(), set.len());
    assert_eq!(set, (1..=90).collect::<BTreeSet<u64>>());
}

#[tokio::test]
async fn pages_shortened_or_emptied_by_acls_do_not_end_the_read() {
    let mock = ServiceNowMock::start(SnConfig {
        incidents: 40,
        acl_hidden_every: Some(3),
        ..Default::default()
    })
    .await;
    let src = source(&mock, json!({"page_size": 1}));
    let req = ReadRequest {
        entity: "incident".into(),
        window: None,
        incremental_field: None,
        page_size: None,
        filters: vec![],
    };
    let (_, nums) = read_all(&src, &req).await.unwrap();
    let set: BTreeSet<u64> = nums.iter().copied().collect();
    assert_eq!(nums.len(), set.len());
    assert_eq!(set, mock.incidents_in(None, None));
    assert_eq!(set.len(), 27);
    assert!(
        mock.table_requests("incident")
            .iter()
            .any(|r| r.query.contains("sysparm_offset=")),
        "empty pages stepped over with sysparm_offset"
    );
}

#[tokio::test]
async fn display_values_keep_keys_and_times_as_actual_utc_values() {
    let mock = ServiceNowMock::start(SnConfig {
        incidents: 12,
        ..Default::default()
    })
    .await;
    let req = window_req(updated_on(0) - chrono::Duration::seconds(1), updated_on(12));
    let (rows, _) = read_all(&source(&mock, json!({"display_value": true})), &req)
        .await
        .unwrap();
    let r = rows.iter().find(|r| number(r) == 4).unwrap();
    assert_eq!(r["priority"], json!("5 - Planning"));
    assert_eq!(r["state"], json!("Closed"));
    assert_eq!(r["caller_id"], json!("Agent 1"));
    assert_eq!(r["sys_id"], json!(sys_id(4)));
    assert_eq!(
        r["sys_updated_on"],
        json!(updated_on(4).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "not the user's time zone"
    );
    assert!(mock
        .table_requests("incident")
        .iter()
        .all(|q| q.query.contains("sysparm_display_value=all")));

    let src = source(&mock, json!({"display_value": "all"}));
    let d = src.describe("incident").await.unwrap();
    assert!(d
        .fields
        .iter()
        .any(|f| f.name == "priority_display" && f.data_type == FieldType::String));
    let (rows, _) = read_all(&src, &req).await.unwrap();
    let r = rows.iter().find(|r| number(r) == 4).unwrap();
    assert_eq!(
        (r["priority"].clone(), r["priority_display"].clone()),
        (json!(5), json!("5 - Planning"))
    );
}

#[tokio::test]
async fn an_incremental_field_the_table_lacks_is_refused_not_ignored() {
    let mock = ServiceNowMock::start(SnConfig {
        incidents: 12,
        ..Default::default()
    })
    .await;
    let src = source(&mock, json!({}));
    let mut req = window_req(updated_on(0), updated_on(12));
    req.incremental_field = Some("u_updated".into());
    let e = src.read_page(&req, None).await.unwrap_err();
    assert_eq!(e.kind(), ferry::error::ErrorKind::InvalidFlow);
    assert!(
        e.to_string().contains("source.incremental.field") && e.to_string().contains("ignore"),
        "{e}"
    );
    // Through the engine: the run fails before reading anything.
    let local = local_with_profile().await;
    let yaml = flow(
        "snow-badfield",
        "incident",
        &props(&mock, json!({})),
        "  incremental:\n    field: u_updated\n",
    );
    let out = local.run(&yaml).await;
    assert_eq!(out.failure.expect("fails").error, "InvalidFlow");
    assert!(mock.table_requests("incident").is_empty());
}

#[tokio::test]
async fn refused_credentials_end_the_run_auth_failed_naming_the_profile() {
    let mock = ServiceNowMock::start(SnConfig {
        incidents: 5,
        ..Default::default()
    })
    .await;
    let local = Local::new();
    local
        .put_secret(
            "snow",
            json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "ferry.integration", "password": "wrong-pass"}),
        )
        .await;
    let out = local
        .run(&flow("snow-auth", "incident", &props(&mock, json!({})), ""))
        .await;
    let f = out.failure.expect("the run fails");
    assert_eq!(f.error, "AuthFailed", "{f:?}");
    assert!(
        f.cause.contains("'snow'") && f.cause.contains("401"),
        "{}",
        f.cause
    );
    assert!(!f.cause.contains("wrong-pass"), "{}", f.cause);
    assert!(local.output("out/snow-auth").is_empty());
}

#[tokio::test]
async fn an_oauth_profile_refreshes_its_token_and_reads() {
    let auth = SnAuth::OAuth {
        client_id: "cid".into(),
        client_secret: "csec".into(),
        refresh_token: "sn-rt".into(),
    };
    let mock = ServiceNowMock::start(SnConfig {
        incidents: 33,
        auth,
        ..Default::default()
    })
    .await;
    let local = Local::new();
    local
        .put_secret("snow", json!({"type": "oauth2_refresh_token", "hosts": ["127.0.0.1"], "token_url": format!("{}/oauth_token.do", mock.url()),
            "client_id": "cid", "client_secret": "csec", "refresh_token": "sn-rt"}))
        .await;
    let out = local
        .run(&flow(
            "snow-oauth",
            "incident",
            &props(&mock, json!({})),
            "",
        ))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert_eq!(local.output("out/snow-oauth").len(), 33);
    assert!(local.secret("snow")["access_token"]
        .as_str()
        .unwrap()
        .starts_with("sn-at-"));
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_long_one_ends_the_chunk_throttled() {
    let mock = ServiceNowMock::start(SnConfig {
        incidents: 10,
        ..Default::default()
    })
    .await;
    let src = source(&mock, json!({}));
    let req = ReadRequest {
        entity: "incident".into(),
        window: None,
        incremental_field: None,
        page_size: None,
        filters: vec![],
    };
    src.describe("incident").await.unwrap();
    mock.push_faults([Fault::throttle("1")]);
    let (_, nums) = read_all(&src, &req).await.unwrap();
    assert_eq!(nums.len(), 10);
    let r = mock.table_requests("incident");
    assert_eq!((r[0].status, r[1].status), (429, 200));
    assert!(r[1].at.duration_since(r[0].at) >= Duration::from_millis(950));

    let src = source(&mock, json!({"http": {"max_retry_after_seconds": 5}}));
    src.describe("incident").await.unwrap();
    mock.push_faults([Fault::throttle("3600")]);
    let t0 = std::time::Instant::now();
    let e = src.read_page(&req, None).await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(e.kind(), ferry::error::ErrorKind::Throttled, "{e}");
    assert!(e.to_string().contains("3600"), "{e}");
}

#[tokio::test]
async fn a_throttled_chunk_is_retried_by_the_state_machine_without_loss_or_duplicates() {
    let mock = ServiceNowMock::start(SnConfig {
        incidents: 95,
        ..Default::default()
    })
    .await;
    let local = local_with_profile().await;
    let engine = local.fast_retry_engine();
    let p = props(&mock, json!({"http": {"max_retry_after_seconds": 1}}));
    let yaml = flow(
        "snow-throttled",
        "incident",
        &p,
        &format!(
            "{}  chunk: {{ records: 30 }}\n",
            incremental(updated_on(0) - chrono::Duration::seconds(1))
        ),
    );
    let flow = ferry::flow::Flow::parse(&yaml, "t.yaml").unwrap();
    mock.fault_every(9, vec![Fault::throttle("3600")]);
    let out = local.run_flow_on(&engine, &flow).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert!(mock.requests().iter().any(|r| r.status == 429));
    let nums: Vec<u64> = local
        .output("out/snow-throttled")
        .iter()
        .map(number)
        .collect();
    let set: BTreeSet<u64> = nums.iter().copied().collect();
    assert_eq!(nums.len(), set.len(), "duplicates after the retried chunk");
    assert_eq!(set, (1..=95).collect());
}

#[tokio::test]
async fn the_example_flow_validates_and_runs_against_the_mock() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/flows/servicenow-incident.yaml"
    ))
    .unwrap();
    ferry::flow::Flow::parse(&text, "servicenow-incident.yaml").expect("the example is valid");
    let mock = ServiceNowMock::start(SnConfig {
        incidents: 120,
        ..Default::default()
    })
    .await;
    let local = local_with_profile().await;
    let text = text
        .replace("https://acme.service-now.com", &mock.url())
        .replace("format: parquet", "format: jsonl")
        .replace("compression: zstd", "compression: none");
    let out = local.run(&text).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let nums: Vec<u64> = local
        .output("ferry-out/servicenow-incident")
        .iter()
        .map(number)
        .collect();
    let set: BTreeSet<u64> = nums.iter().copied().collect();
    assert_eq!(nums.len(), set.len());
    let first = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    // `query: active=true` is ANDed with the window; incident i is inactive when i % 4 == 0.
    let want: BTreeSet<u64> = mock
        .incidents_in(Some(first), None)
        .into_iter()
        .filter(|i| i % 4 != 0)
        .collect();
    assert_eq!(set, want);
}

/// Issue #20's headline: a real instance echoes `sysparm_fields=a,b,c` with raw commas inside
/// the `<…>` URLs of its `Link` header (RFC 8288 allows them). A `,` split of the header found
/// no `rel="next"`, and the run ended Successful after the first page.
#[tokio::test]
async fn a_flow_with_fields_reads_every_page_although_link_urls_hold_raw_commas() {
    let mock = ServiceNowMock::start(SnConfig {
        incidents: 57,
        ..Default::default()
    })
    .await;
    // The mock answers as an instance does: raw commas in the Link URLs.
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/api/now/table/incident?sysparm_fields=number,sys_id&sysparm_limit=10",
            mock.url()
        ))
        .basic_auth("ferry.integration", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    let link = resp.headers()["link"].to_str().unwrap().to_string();
    assert!(
        link.contains("sysparm_fields=number,sys_id") && link.contains("rel=\"next\""),
        "{link}"
    );
    let local = local_with_profile().await;
    let p = props(
        &mock,
        json!({"fields": ["number", "short_description", "priority"], "page_size": 10}),
    );
    let yaml = flow(
        "snow-fields",
        "incident",
        &p,
        &incremental(updated_on(0) - chrono::Duration::seconds(1)),
    );
    let out = local.run(&yaml).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let rows = local.output("out/snow-fields");
    let nums: Vec<u64> = rows.iter().map(number).collect();
    let set: BTreeSet<u64> = nums.iter().copied().collect();
    assert_eq!(nums.len(), set.len(), "duplicates");
    assert_eq!(set, (1..=57).collect(), "every page, not only the first");
    assert!(mock.table_requests("incident").len() >= 6);
    // The complete read pages through the same headers.
    let src = source(&mock, json!({"fields": ["number"], "page_size": 7}));
    let req = ReadRequest {
        entity: "incident".into(),
        window: None,
        incremental_field: None,
        page_size: None,
        filters: vec![],
    };
    let (_, nums) = read_all(&src, &req).await.unwrap();
    assert_eq!(nums.len(), 57);
}

/// A misspelt field in `query` is silently ignored by the instance (the run would return every
/// row): ferry checks every field the encoded query names against the table's dictionary.
#[tokio::test]
async fn a_misspelt_query_field_is_refused_naming_it_not_ignored() {
    let mock = ServiceNowMock::start(SnConfig {
        incidents: 20,
        ..Default::default()
    })
    .await;
    // The instance itself ignores the unknown condition: every row comes back.
    let resp: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/now/table/incident?sysparm_query=activ%3Dtrue",
            mock.url()
        ))
        .basic_auth("ferry.integration", Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["result"].as_array().unwrap().len(), 20);

    let req = window_req(updated_on(0) - chrono::Duration::seconds(1), updated_on(20));
    for q in [
        "activ=true",
        "active=true^ORpriorty<=2",
        "caller_idd.name=Agent 1",
    ] {
        let src = source(&mock, json!({"query": q}));
        let e = src.read_page(&req, None).await.unwrap_err();
        assert_eq!(e.kind(), ferry::error::ErrorKind::InvalidFlow, "{q}: {e}");
        let bad = q
            .split('^')
            .find_map(|t| {
                let t = t.trim_start_matches("OR");
                let f: String = t
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                (!["active"].contains(&f.as_str())).then_some(f)
            })
            .unwrap();
        assert!(
            e.to_string().contains("source.properties.query")
                && e.to_string().contains(&format!("'{bad}'")),
            "{q}: {e}"
        );
        let e = src.describe("incident").await.unwrap_err();
        assert!(e.to_string().contains(&format!("'{bad}'")), "{e}");
    }
    // Known fields, a dot-walk from a reference column and ^OR alternatives pass.
    let src = source(
        &mock,
        json!({"query": "active=true^priority<=2^ORstate=6^assigned_to.nameISNOTEMPTY"}),
    );
    src.read_page(&req, None).await.unwrap();
    // Through the engine the run fails before any row is read.
    let local = local_with_profile().await;
    let out = local
        .run(&flow(
            "snow-badquery",
            "incident",
            &props(&mock, json!({"query": "activ=true"})),
            "",
        ))
        .await;
    let f = out.failure.expect("fails");
    assert_eq!(f.error, "InvalidFlow", "{f:?}");
    assert!(local.output("out/snow-badquery").is_empty());
}

/// `include_deleted: true` reads the table's deleted records from `sys_audit_delete` after the
/// live rows, in the window, as `sys_deleted: true` rows keyed by the deleted sys_id.
#[tokio::test]
async fn deleted_records_come_from_sys_audit_delete_with_include_deleted() {
    let mock = ServiceNowMock::start(SnConfig {
        incidents: 40,
        ..Default::default()
    })
    .await;
    let local = local_with_profile().await;
    let yaml = flow(
        "snow-deleted",
        "incident",
        &props(&mock, json!({"include_deleted": true, "page_size": 4})),
        &incremental(updated_on(0) - chrono::Duration::seconds(1)),
    );
    // Deleted before the first run: in its window (deletion time before now).
    let before = chrono::Utc::now() - chrono::Duration::seconds(30);
    for i in [3, 11, 12, 13, 14, 15, 16] {
        mock.delete(i, before);
    }
    let out = local.run(&yaml).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let rows = local.output("out/snow-deleted");
    let live: BTreeSet<u64> = rows
        .iter()
        .filter(|r| r["sys_deleted"] == json!(false))
        .map(number)
        .collect();
    assert_eq!(live.len(), 33);
    let gone: Vec<&Value> = rows
        .iter()
        .filter(|r| r["sys_deleted"] == json!(true))
        .collect();
    let gone_ids: BTreeSet<String> = gone
        .iter()
        .map(|r| r["sys_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        gone.len(),
        7,
        "one row per deletion, no duplicates: {gone:?}"
    );
    assert_eq!(
        gone_ids,
        [3, 11, 12, 13, 14, 15, 16]
            .map(sys_id)
            .into_iter()
            .collect()
    );
    assert!(gone.iter().all(|r| r["sys_updated_on"].is_string()));
    assert!(
        mock.table_requests("sys_audit_delete")
            .iter()
            .all(|r| r.query.contains("tablenameincident")
                || r.query.contains("tablename%3Dincident"))
    );
    // A later deletion is read by the next run, the earlier ones are not read again.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    mock.delete(30, chrono::Utc::now() - chrono::Duration::milliseconds(100));
    let out = local.run(&yaml).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let rows = local.output("out/snow-deleted");
    let gone: Vec<String> = rows
        .iter()
        .filter(|r| r["sys_deleted"] == json!(true))
        .map(|r| r["sys_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(gone.len(), 8, "{gone:?}");
    assert!(gone.contains(&sys_id(30)));
}

/// Incidents edited while a run pages (some already read, some not yet) are all delivered:
/// every incident's latest version is in the output after the next incremental run.
#[tokio::test]
async fn rows_edited_while_a_run_pages_are_not_lost_at_the_next_run() {
    let mock = ServiceNowMock::start(SnConfig {
        incidents: 80,
        ..Default::default()
    })
    .await;
    let local = local_with_profile().await;
    let yaml = flow(
        "snow-moving",
        "incident",
        &props(
            &mock,
            json!({"page_size": 10, "fields": ["number", "short_description"]}),
        ),
        &format!(
            "{}  chunk: {{ records: 20 }}\n",
            incremental(updated_on(0) - chrono::Duration::seconds(1))
        ),
    );
    // Requests: describe's sys_db_object/sys_dictionary reads, then pages. After a few pages,
    // two rows already read and two not yet read are edited.
    mock.touch_after(9, &[2, 5, 61, 70]);
    let out = local.run(&yaml).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = local.run(&yaml).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let got: BTreeSet<(u64, String)> = local
        .output("out/snow-moving")
        .iter()
        .map(|r| (number(r), r["sys_updated_on"].as_str().unwrap().to_string()))
        .collect();
    let now = mock.versions();
    assert_eq!(
        now.iter()
            .filter(|(_, t)| !t.starts_with("2026-01-01"))
            .count(),
        4,
        "the edits happened: {now:?}"
    );
    for v in &now {
        assert!(
            got.contains(v),
            "incident {} as of {} was never delivered",
            v.0,
            v.1
        );
    }
}

/// The table's dictionary (`sys_db_object`, `sys_dictionary`) is read once per run (start-run
/// stages it), not on every fetch-page: a run of 14 chunks asks for it as often as a run of one.
#[tokio::test]
async fn table_metadata_is_read_once_per_run_whatever_the_chunks() {
    let mut reads = vec![];
    for (name, chunk) in [("snow-one-chunk", 1000), ("snow-many-chunks", 10)] {
        let mock = ServiceNowMock::start(SnConfig {
            incidents: 137,
            ..Default::default()
        })
        .await;
        let local = local_with_profile().await;
        let out = local
            .run(&flow(
                name,
                "incident",
                &props(&mock, json!({"page_size": 10})),
                &format!("  chunk: {{ records: {chunk} }}\n"),
            ))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        assert_eq!(local.output(&format!("out/{name}")).len(), 137);
        let dict = mock.table_requests("sys_dictionary").len();
        let tables = mock.table_requests("sys_db_object").len();
        reads.push((dict, tables));
    }
    assert_eq!(
        reads[0], reads[1],
        "metadata reads grow with chunks: {reads:?}"
    );
    assert_eq!(reads[0].0, 1, "one dictionary read per run: {reads:?}");
}

/// A first run cut into four time slices (run three at once) writes exactly the rows of the
/// unsliced run, value for value, each once; every slice's query bounds its own window on both
/// ends.
#[tokio::test]
async fn a_sliced_first_run_writes_exactly_the_rows_of_the_unsliced_run() {
    let mock = ServiceNowMock::start(SnConfig {
        incidents: 230,
        ..Default::default()
    })
    .await;
    let from = updated_on(0) - chrono::Duration::minutes(1);
    let unsliced = local_with_profile().await;
    let out = unsliced
        .run(&flow(
            "snow-sl",
            "incident",
            &props(&mock, json!({"page_size": 25})),
            &incremental(from),
        ))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let mut expected = unsliced.output("out/snow-sl");
    assert_eq!(expected.len(), 230);
    let before = mock.table_requests("incident").len();

    let sliced = local_with_profile().await;
    let extra = format!(
        "{}  slice: {{ count: 4 }}\n  parallelism: 3\n",
        incremental(from)
    );
    let out = sliced
        .run(&flow(
            "snow-sl",
            "incident",
            &props(&mock, json!({"page_size": 25})),
            &extra,
        ))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert_eq!(
        sliced.slices_of(&out.run_id).await,
        (0..4).collect::<BTreeSet<u32>>()
    );
    let ends: BTreeSet<String> = mock.table_requests("incident")[before..]
        .iter()
        .filter_map(|r| {
            let q: String = url::form_urlencoded::parse(r.query.as_bytes())
                .find(|(k, _)| k == "sysparm_query")?
                .1
                .into_owned();
            q.split("sys_updated_on<=")
                .nth(1)
                .and_then(|s| s.get(..19))
                .map(str::to_string)
        })
        .collect();
    assert!(ends.len() >= 4, "each slice bounds its own end: {ends:?}");
    let mut got = sliced.output("out/snow-sl");
    let key = |r: &Value| number(r);
    expected.sort_by_key(key);
    got.sort_by_key(key);
    let nums: BTreeSet<u64> = got.iter().map(number).collect();
    assert_eq!(nums.len(), got.len(), "duplicates across slices");
    assert_eq!(got, expected, "the same rows, value for value");
}
