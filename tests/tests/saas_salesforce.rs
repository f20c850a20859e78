//! The salesforce connector against the Salesforce mock: entities and fields, full and
//! incremental runs through the embedded engine (every record exactly once), deleted records via
//! queryAll, REST and Bulk API 2.0 writing byte-identical Parquet, auth failures and throttling.

use ferry::adapters::memory::MemorySecrets;
use ferry::connector::salesforce::SalesforceSource;
use ferry::connector::{FieldType, ReadRequest, Source, SourceError};
use ferry::ports::{Secret, SecretStore};
use ferry_tests::harness::Local;
use ferry_tests::saas::salesforce::{
    account_id, ids_of, is_deleted, modstamp, SalesforceMock, SfConfig, SfFault,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const FAST_HTTP: &str =
    r#"{"timeout_ms": 5000, "max_retries": 3, "backoff_initial_ms": 5, "backoff_max_ms": 20}"#;

fn props(extra: Value) -> Value {
    let mut p = json!({"api": "rest", "bulk_poll_ms": 10, "http": serde_json::from_str::<Value>(FAST_HTTP).unwrap()});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

/// A salesforce flow on `Account` writing `format` under `out/<name>`.
fn flow(name: &str, props: &Value, source_extra: &str, format: &str) -> String {
    format!(
        "name: {name}\nsource:\n  connector: salesforce\n  profile: sfdc\n  entity: Account\n  properties: {}\n  chunk: {{ records: 150, page_size: 200 }}\n{source_extra}destination:\n  local: out\n  format: {format}\n  compression: none\ntasks:\n  - map_all: {{}}\ntrigger:\n  on_demand: {{}}\n",
        serde_json::to_string(props).unwrap()
    )
}

async fn local(mock: &SalesforceMock) -> Local {
    let l = Local::new();
    l.put_secret("sfdc", mock.secret()).await;
    l
}

fn source(
    mock: &SalesforceMock,
    props: &Value,
    inc: Option<&str>,
    store: Arc<MemorySecrets>,
) -> SalesforceSource {
    SalesforceSource::new(
        props.as_object().unwrap(),
        inc,
        "sfdc",
        &Secret::new(mock.secret()),
        store,
    )
    .unwrap()
}

fn req() -> ReadRequest {
    ReadRequest {
        entity: "Account".into(),
        window: None,
        incremental_field: None,
        page_size: Some(200),
        filters: vec![],
    }
}

fn assert_once(name: &str, records: &[Value], expected: &BTreeSet<String>) {
    let (n, ids) = ids_of(records);
    assert_eq!(n, ids.len(), "{name}: duplicates");
    assert_eq!(&ids, expected, "{name}: id set differs");
}

fn soql_of(r: &ferry_tests::saas::salesforce::SfSeen) -> Option<String> {
    url::form_urlencoded::parse(r.query.as_bytes())
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn entities_and_fields_are_described() {
    let mock = SalesforceMock::start(SfConfig::default()).await;
    let store = Arc::new(MemorySecrets::default());
    store
        .put_secret("sfdc", &Secret::new(mock.secret()))
        .await
        .unwrap();
    let src = source(
        &mock,
        &props(json!({})),
        Some("SystemModstamp"),
        store.clone(),
    );

    let names: Vec<String> = src
        .list_entities()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        ["Account", "Contact", "Invoice__c"],
        "queryable sObjects only"
    );

    let d = src.describe("Account").await.unwrap();
    let f = |n: &str| {
        d.fields
            .iter()
            .find(|f| f.name == n)
            .unwrap_or_else(|| panic!("no field {n}"))
    };
    assert!(f("Id").primary_key);
    assert!(
        f("SystemModstamp").incremental && f("SystemModstamp").data_type == FieldType::Timestamp
    );
    assert_eq!(
        f("AnnualRevenue").data_type,
        FieldType::Decimal {
            precision: 18,
            scale: 2
        },
        "currency is money: an exact decimal with the describe's precision and scale"
    );
    assert_eq!(f("NumberOfEmployees").data_type, FieldType::Integer);
    assert_eq!(f("IsPartner").data_type, FieldType::Boolean);
    assert_eq!(f("SLAExpirationDate__c").data_type, FieldType::Date);
    assert_eq!(f("Name").label.as_deref(), Some("Account Name"));
    let FieldType::Object { fields } = &f("BillingAddress").data_type else {
        panic!("BillingAddress is not a struct")
    };
    let subs: Vec<(&str, &FieldType)> = fields
        .iter()
        .map(|s| (s.name.as_str(), &s.data_type))
        .collect();
    assert!(
        subs.contains(&("street", &FieldType::String))
            && subs.contains(&("latitude", &FieldType::Float)),
        "{subs:?}"
    );
    for gone in ["BillingCity", "Logo__c"] {
        assert!(
            d.fields.iter().all(|x| x.name != gone),
            "{gone} is read as part of a compound or not at all"
        );
    }

    // The token response's instance_url is the API host, kept in the profile.
    let saved = store.get_secret("sfdc").await.unwrap().unwrap();
    assert_eq!(saved.expose()["instance_url"], json!(mock.url()));
    assert_eq!(mock.token_requests(), 1);

    let e = src.describe("Nope__c").await.unwrap_err();
    assert!(
        matches!(&e, SourceError::Config { field, .. } if field == "source.entity"),
        "{e}"
    );

    let src = source(
        &mock,
        &props(json!({"fields": ["Id", "BillingCity"]})),
        None,
        store.clone(),
    );
    let e = src.describe("Account").await.unwrap_err();
    assert!(
        e.to_string().contains("source.properties.fields[1]")
            && e.to_string().contains("BillingAddress"),
        "{e}"
    );
    let src = source(
        &mock,
        &props(json!({"fields": ["Name", "Nmae"]})),
        None,
        store,
    );
    let e = src.describe("Account").await.unwrap_err();
    assert!(e.to_string().contains("'Nmae'"), "{e}");
    assert!(
        !mock
            .requests()
            .iter()
            .filter_map(soql_of)
            .any(|q| q.contains("Nmae")),
        "an unknown field never reaches SOQL"
    );
}

#[tokio::test]
async fn a_full_run_reads_every_live_record_once_and_include_deleted_adds_the_deleted() {
    let mock = SalesforceMock::start(SfConfig::default()).await;
    let local = local(&mock).await;
    let out = local
        .run(&flow("sf-full", &props(json!({})), "", "jsonl"))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let recs = local.output("out/sf-full");
    assert_once("full", &recs, &mock.ids_in(None, None, false));
    // REST pages of at most 200 (Sforce-Query-Options) followed through nextRecordsUrl.
    let reqs = mock.requests();
    assert!(
        reqs.iter().any(|r| r.path.contains("/query/01gMk")),
        "nextRecordsUrl was followed"
    );
    assert!(reqs
        .iter()
        .filter(|r| r.path.ends_with("/query"))
        .all(|r| r.headers["sforce-query-options"] == "batchSize=200"));

    let by_id = |i: u64| {
        recs.iter()
            .find(|r| r["Id"] == json!(account_id(i)))
            .unwrap()
            .clone()
    };
    let r10 = by_id(10);
    assert_eq!(r10["Name"], json!("Acme, \"Big\" Co\nunit 10"));
    assert_eq!(
        r10["BillingAddress"]["street"],
        json!("10 Main St\nSuite 5")
    );
    assert_eq!(r10["BillingAddress"]["latitude"], json!(37.01));
    assert_eq!(
        r10["SystemModstamp"],
        json!("2026-01-01T00:10:00.370Z"),
        "REST +0000 datetimes become RFC 3339"
    );
    assert_eq!(r10["AnnualRevenue"], Value::Null);
    assert_eq!(
        by_id(7)["BillingAddress"],
        Value::Null,
        "an address without components is null"
    );
    assert!(by_id(1)["IsDeleted"] == json!(false));

    let out = local
        .run(&flow(
            "sf-deleted",
            &props(json!({"include_deleted": true})),
            "",
            "jsonl",
        ))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let recs = local.output("out/sf-deleted");
    assert_once("include_deleted", &recs, &mock.ids_in(None, None, true));
    for r in &recs {
        let i: u64 = r["Id"].as_str().unwrap()[5..].parse().unwrap();
        assert_eq!(r["IsDeleted"], json!(is_deleted(i)));
    }
    assert!(mock
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/queryAll")));
}

#[tokio::test]
async fn incremental_runs_read_each_window_once_with_whole_second_soql_bounds() {
    let mock = SalesforceMock::start(SfConfig::default()).await;
    let local = local(&mock).await;
    // A start with milliseconds: SOQL takes whole seconds, so the clause is widened and the
    // connector drops what lies outside the exact window (record 200 is at 03:20:00.400).
    let from = chrono::DateTime::parse_from_rfc3339("2026-01-01T03:20:00.500Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert!(modstamp(200) < from && modstamp(201) > from);
    let inc = format!(
        "  incremental:\n    field: SystemModstamp\n    first_execution_from: {}\n",
        from.to_rfc3339()
    );
    let f = flow("sf-inc", &props(json!({})), &inc, "jsonl");
    let out = local.run(&f).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let first = local.output("out/sf-inc");
    assert_once(
        "first window",
        &first,
        &mock.ids_in(Some(from), None, false),
    );
    assert!(!first.iter().any(|r| r["Id"] == json!(account_id(200))));
    let soqls: Vec<String> = mock.requests().iter().filter_map(soql_of).collect();
    assert!(
        soqls
            .iter()
            .any(|q| q
                .contains("WHERE SystemModstamp >= 2026-01-01T03:20:00Z AND SystemModstamp < ")),
        "{soqls:?}"
    );
    let wm = local
        .watermark("sf-inc")
        .await
        .expect("watermark after the first run");

    // Three records change; one of them is deleted, which `query` hides.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    mock.touch([5, 300, 17], chrono::Utc::now());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = local.run(&f).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let all = local.output("out/sf-inc");
    let second: Vec<Value> = all.into_iter().filter(|r| !first.contains(r)).collect();
    assert_once(
        "second window",
        &second,
        &[account_id(5), account_id(300)].into_iter().collect(),
    );
    assert!(local.watermark("sf-inc").await.unwrap() > wm);
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut es: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    es.sort();
    for p in es {
        if p.is_dir() {
            out.extend(parquet_files(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn rest_and_bulk_write_byte_identical_parquet() {
    let mock = SalesforceMock::start(SfConfig {
        accounts: 430,
        ..Default::default()
    })
    .await;
    let local = local(&mock).await;
    let mut outputs = vec![];
    for (name, p, jobs_after) in [
        ("sf-rest", props(json!({"api": "rest"})), 0),
        ("sf-bulk", props(json!({"api": "bulk"})), 1),
        // auto: 404 live records > 300 -> Bulk; the choice is made by a COUNT() query.
        (
            "sf-auto",
            props(json!({"api": "auto", "bulk_threshold": 300})),
            2,
        ),
        (
            "sf-auto-rest",
            props(json!({"api": "auto", "bulk_threshold": 1000})),
            2,
        ),
    ] {
        let out = local.run(&flow(name, &p, "", "parquet")).await;
        assert!(out.succeeded(), "{name}: {:?}", out.failure);
        assert_eq!(mock.jobs_created(), jobs_after, "{name}: Bulk jobs");
        let files = parquet_files(&local.base.path().join("out").join(name));
        assert!(!files.is_empty(), "{name}: no parquet written");
        outputs.push((
            name,
            files
                .iter()
                .map(|f| std::fs::read(f).unwrap())
                .collect::<Vec<_>>(),
        ));
    }
    let reqs = mock.requests();
    assert!(reqs
        .iter()
        .filter_map(soql_of)
        .any(|q| q.starts_with("SELECT COUNT() FROM Account")));
    let results: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.ends_with("/results"))
        .collect();
    assert!(
        results.iter().any(|r| r.query.contains("locator=")),
        "Bulk results paged by Sforce-Locator"
    );
    assert!(results.iter().all(|r| r.query.contains("maxRecords=200")));
    for (name, files) in &outputs[1..] {
        assert_eq!(files.len(), outputs[0].1.len(), "{name}: file count");
        for (a, b) in outputs[0].1.iter().zip(files) {
            assert!(a == b, "{name}: Parquet differs from the REST run's");
        }
    }
    // And the content is what the mock holds: read the REST file back.
    let mut ids = BTreeSet::new();
    for f in parquet_files(&local.base.path().join("out/sf-rest")) {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(f).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for b in reader {
            let b = b.unwrap();
            let col = b.column_by_name("Id").unwrap();
            let col = col
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            ids.extend(col.iter().map(|v| v.unwrap().to_string()));
        }
    }
    assert_eq!(ids, mock.ids_in(None, None, false));
}

#[tokio::test]
async fn bulk_job_failure_fails_the_run_with_the_job_error() {
    let mock = SalesforceMock::start(SfConfig {
        accounts: 20,
        fail_jobs: true,
        ..Default::default()
    })
    .await;
    let local = local(&mock).await;
    let out = local
        .run(&flow(
            "sf-bulk-fail",
            &props(json!({"api": "bulk"})),
            "",
            "jsonl",
        ))
        .await;
    let f = out.failure.expect("the run fails");
    assert_eq!(f.error, "SourceRejected", "{f:?}");
    assert!(
        f.cause.contains("Failed") && f.cause.contains("Query timed out"),
        "{}",
        f.cause
    );
}

#[tokio::test]
async fn auth_failure_ends_the_run_auth_failed_naming_the_profile() {
    let mock = SalesforceMock::start(SfConfig {
        accounts: 20,
        ..Default::default()
    })
    .await;
    mock.revoke_refresh_token();
    let local = local(&mock).await;
    let out = local
        .run(&flow("sf-revoked", &props(json!({})), "", "jsonl"))
        .await;
    let f = out.failure.expect("the run fails");
    assert_eq!(f.error, "AuthFailed", "{f:?}");
    assert!(
        f.cause.contains("'sfdc'") && f.cause.contains("invalid_grant"),
        "{}",
        f.cause
    );
    for secret in ["mock-client-secret", "5Aep861mock-refresh"] {
        assert!(!f.cause.contains(secret), "{}", f.cause);
    }
    assert_eq!(local.watermark("sf-revoked").await, None);
}

#[tokio::test]
async fn an_expired_session_is_refreshed_once_and_the_read_goes_on() {
    let mock = SalesforceMock::start(SfConfig {
        accounts: 450,
        ..Default::default()
    })
    .await;
    let store = Arc::new(MemorySecrets::default());
    let src = source(&mock, &props(json!({})), None, store);
    let first = src.read_page(&req(), None).await.unwrap();
    assert_eq!(first.records.len(), 200);
    mock.expire_sessions();
    let second = src.read_page(&req(), first.next.as_ref()).await.unwrap();
    assert_eq!(second.records.len(), 200);
    assert_eq!(mock.token_requests(), 2);
    assert!(mock.requests().iter().any(|r| r.status == 401));
    assert_eq!(src.auth().refresh_count(), 2);
}

#[tokio::test]
async fn retry_after_is_honoured_and_beyond_the_cap_the_chunk_ends_throttled() {
    let mock = SalesforceMock::start(SfConfig {
        accounts: 50,
        ..Default::default()
    })
    .await;
    let store = Arc::new(MemorySecrets::default());
    let src = source(&mock, &props(json!({})), None, store.clone());
    src.describe("Account").await.unwrap();
    let before = mock.requests().len();
    mock.push_faults([SfFault::Status {
        status: 503,
        retry_after: Some("1".into()),
    }]);
    let page = src.read_page(&req(), None).await.unwrap();
    assert_eq!(page.records.len(), 48, "50 accounts, 17 and 34 deleted");
    let r = &mock.requests()[before..];
    assert_eq!((r[0].status, r[1].status), (503, 200));
    let gap = r[1].at.duration_since(r[0].at);
    assert!(
        gap >= Duration::from_millis(950),
        "waited only {gap:?} after Retry-After: 1"
    );

    let p = props(
        json!({"http": {"max_retry_after_seconds": 5, "backoff_initial_ms": 5, "backoff_max_ms": 20}}),
    );
    let src = source(&mock, &p, None, store);
    src.describe("Account").await.unwrap();
    mock.push_faults([SfFault::Status {
        status: 429,
        retry_after: Some("3600".into()),
    }]);
    let t0 = std::time::Instant::now();
    let e = src.read_page(&req(), None).await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(e.kind(), ferry::error::ErrorKind::Throttled, "{e}");

    // The org's API limit: a 403 that is not an auth failure, and not retried in place.
    let n = mock.requests().len();
    mock.push_faults([SfFault::RequestLimit]);
    let e = src.read_page(&req(), None).await.unwrap_err();
    assert_eq!(e.kind(), ferry::error::ErrorKind::Throttled, "{e}");
    assert!(e.to_string().contains("REQUEST_LIMIT_EXCEEDED"), "{e}");
    assert_eq!(mock.requests().len(), n + 1, "no retries inside the chunk");
}

/// The real state machine with the Throttled retry interval shortened from 30 s to 1 s.
#[tokio::test]
async fn a_request_limit_chunk_is_retried_by_the_state_machine_without_loss_or_duplicates() {
    for api in ["rest", "bulk"] {
        let mock = SalesforceMock::start(SfConfig {
            accounts: 450,
            ..Default::default()
        })
        .await;
        let local = local(&mock).await;
        let engine = local.fast_retry_engine();
        let name = format!("sf-limit-{api}");
        let f = ferry::flow::Flow::parse(
            &flow(&name, &props(json!({"api": api})), "", "jsonl"),
            "t.yaml",
        )
        .unwrap();
        // Start-run describes (1); chunk 1 describes and reads (2, 3, …); a later request of the
        // run hits the org's API limit.
        mock.fault_on_request(if api == "rest" { 5 } else { 7 }, SfFault::RequestLimit);
        let out = local.run_flow_on(&engine, &f).await;
        assert!(out.succeeded(), "{api}: {:?}", out.failure);
        assert!(
            mock.requests().iter().any(|r| r.status == 403),
            "{api}: the limit was hit"
        );
        assert_once(
            api,
            &local.output(&format!("out/{name}")),
            &mock.ids_in(None, None, false),
        );
    }
}

#[tokio::test]
async fn the_example_flow_runs_against_the_mock() {
    let mock = SalesforceMock::start(SfConfig {
        accounts: 120,
        ..Default::default()
    })
    .await;
    let local = local(&mock).await;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/flows/salesforce-account.yaml"
    ))
    .unwrap();
    let out = local.run(&text).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert!(!parquet_files(&local.base.path().join("ferry-out")).is_empty());
    let soqls: Vec<String> = mock.requests().iter().filter_map(soql_of).collect();
    assert!(
        soqls
            .iter()
            .any(|q| q.starts_with(
                "SELECT Id, Name, Industry, AnnualRevenue, NumberOfEmployees, BillingStreet,"
            ) && q.contains("FROM Account WHERE SystemModstamp > 2026-01-01T00:00:00Z")),
        "{soqls:?}"
    );
    assert!(mock
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/queryAll")));
}

/// A Bulk job still running when `bulk_wait_seconds` is spent: the page call hands back an empty
/// page with a cursor on the same job, the next call polls on, and the read ends with every
/// record once and one job created — through the source and through a whole run.
#[tokio::test]
async fn a_long_bulk_job_is_polled_across_page_calls() {
    let mock = SalesforceMock::start(SfConfig {
        accounts: 250,
        bulk_polls: 4,
        ..Default::default()
    })
    .await;
    let store = Arc::new(MemorySecrets::default());
    let p = props(json!({"api": "bulk", "bulk_wait_seconds": 0}));
    let src = source(&mock, &p, None, store);
    let (mut records, mut cursor, mut handbacks) = (vec![], None, 0);
    loop {
        let page = src.read_page(&req(), cursor.as_ref()).await.unwrap();
        if page.records.is_empty() && page.next.is_some() {
            handbacks += 1;
        }
        records.extend(page.records);
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(handbacks < 50, "the job never completed");
    }
    // Each call polls once before handing back (the wait is 0 s); four InProgress answers.
    assert_eq!(
        handbacks, 4,
        "page calls that handed back while the job ran"
    );
    assert_eq!(mock.jobs_created(), 1);
    assert_once("bulk, long job", &records, &mock.ids_in(None, None, false));

    let local = local(&mock).await;
    let out = local.run(&flow("sf-long-bulk", &p, "", "jsonl")).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert_eq!(mock.jobs_created(), 2);
    assert_eq!(
        out.record.unwrap().records_written as usize,
        mock.ids_in(None, None, false).len()
    );
}

/// Issue #20: currency and percent fields are exact decimals (Arrow Decimal128 with the
/// describe's scale), not float64 — on the REST path (JSON numbers with more digits than a
/// float holds) and the Bulk path (CSV text) alike; relationship fields (`Owner.Name`) are
/// accepted in `fields`, queried by SOQL relationship paths and written as flat, typed columns.
#[tokio::test]
async fn money_is_decimal_and_relationship_fields_are_flat_typed_columns() {
    use arrow::array::{Array, BooleanArray, Decimal128Array, StringArray};
    let mock = SalesforceMock::start(SfConfig {
        accounts: 60,
        ..Default::default()
    })
    .await;
    let fields = json!([
        "Id",
        "Name",
        "AnnualRevenue",
        "Discount__c",
        "owner.name",
        "Owner.IsActive",
        "Parent.Name",
        "Parent.Owner.Email"
    ]);
    let store = Arc::new(MemorySecrets::default());
    let src = source(&mock, &props(json!({"fields": fields})), None, store);
    let d = src.describe("Account").await.unwrap();
    let ty = |n: &str| {
        d.fields
            .iter()
            .find(|f| f.name == n)
            .unwrap_or_else(|| panic!("no {n}: {:?}", d.fields))
            .data_type
            .clone()
    };
    assert_eq!(
        ty("AnnualRevenue"),
        FieldType::Decimal {
            precision: 18,
            scale: 2
        }
    );
    assert_eq!(
        ty("Discount__c"),
        FieldType::Decimal {
            precision: 5,
            scale: 2
        }
    );
    assert_eq!(
        ty("Owner.Name"),
        FieldType::String,
        "named in the API's casing"
    );
    assert_eq!(ty("Owner.IsActive"), FieldType::Boolean);
    assert_eq!(ty("Parent.Owner.Email"), FieldType::String);
    // An unknown relationship or field is refused naming it, before any query.
    for (bad, why) in [
        ("Ownr.Name", "no relationship named Ownr"),
        ("Owner.Nmae", "User has no field Nmae"),
    ] {
        let src = source(
            &mock,
            &props(json!({"fields": ["Id", bad]})),
            None,
            Arc::new(MemorySecrets::default()),
        );
        let e = src.describe("Account").await.unwrap_err();
        assert!(
            e.to_string().contains("source.properties.fields[1]") && e.to_string().contains(why),
            "{e}"
        );
    }

    let local = local(&mock).await;
    let mut files = vec![];
    for (name, api) in [("sf-money-rest", "rest"), ("sf-money-bulk", "bulk")] {
        let out = local
            .run(&flow(
                name,
                &props(json!({"api": api, "fields": fields})),
                "",
                "parquet",
            ))
            .await;
        assert!(out.succeeded(), "{name}: {:?}", out.failure);
        files.push(parquet_files(&local.base.path().join("out").join(name)));
    }
    let soql: Vec<String> = mock.requests().iter().filter_map(soql_of).collect();
    assert!(
        soql.iter()
            .any(|q| q.contains("Owner.Name, Owner.IsActive, Parent.Name, Parent.Owner.Email")),
        "{soql:?}"
    );
    for (a, b) in files[0].iter().zip(&files[1]) {
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "REST and Bulk Parquet differ"
        );
    }
    let mut seen = 0;
    for f in &files[0] {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(f).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for b in reader {
            let b = b.unwrap();
            let col = |n: &str| {
                b.column_by_name(n)
                    .unwrap_or_else(|| panic!("no column {n}"))
                    .clone()
            };
            let ids = col("Id");
            let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
            let rev = col("AnnualRevenue");
            assert_eq!(
                rev.data_type(),
                &arrow::datatypes::DataType::Decimal128(18, 2)
            );
            let rev = rev.as_any().downcast_ref::<Decimal128Array>().unwrap();
            let pct = col("Discount__c");
            let pct = pct.as_any().downcast_ref::<Decimal128Array>().unwrap();
            let owner = col("Owner.Name");
            let owner = owner.as_any().downcast_ref::<StringArray>().unwrap();
            let active = col("Owner.IsActive");
            let active = active.as_any().downcast_ref::<BooleanArray>().unwrap();
            let parent = col("Parent.Name");
            let parent = parent.as_any().downcast_ref::<StringArray>().unwrap();
            let email = col("Parent.Owner.Email");
            let email = email.as_any().downcast_ref::<StringArray>().unwrap();
            for r in 0..b.num_rows() {
                let i: u64 = ids.value(r)[5..].parse().unwrap();
                let want_rev: Option<i128> = if i.is_multiple_of(5) {
                    None
                } else if i.is_multiple_of(13) {
                    Some(format!("98765432109{i:03}57").parse().unwrap())
                } else if i.is_multiple_of(9) {
                    Some(i as i128 * 1_000_000_000 * 100)
                } else {
                    Some(i as i128 * 100_050)
                };
                assert_eq!(
                    rev.is_null(r)
                        .then_some(())
                        .map_or(Some(rev.value(r)), |_| None),
                    want_rev,
                    "AnnualRevenue of {i}"
                );
                if !i.is_multiple_of(3) {
                    assert_eq!(
                        pct.value(r),
                        ((i % 100) * 100 + i % 97) as i128,
                        "Discount__c of {i}"
                    );
                }
                assert_eq!(owner.value(r), format!("User {}", 1 + i % 4));
                assert_eq!(active.value(r), 1 + i % 4 != 4);
                if i.is_multiple_of(8) {
                    assert_eq!(parent.value(r), format!("Account {}", i - 1));
                    let u = 1 + (i - 1) % 4;
                    assert_eq!(email.is_null(r), u == 2, "{i}");
                } else {
                    assert!(
                        parent.is_null(r) && email.is_null(r),
                        "no parent: null, {i}"
                    );
                }
                seen += 1;
            }
        }
    }
    assert_eq!(seen, mock.ids_in(None, None, false).len());
}

/// Records edited while a run pages through `nextRecordsUrl` (some already read, some not yet)
/// are all delivered, in their latest version, once the next incremental run has run.
#[tokio::test]
async fn records_edited_while_a_run_pages_are_not_lost_at_the_next_run() {
    let mock = SalesforceMock::start(SfConfig {
        accounts: 900,
        ..Default::default()
    })
    .await;
    let local = local(&mock).await;
    let inc = format!(
        "  incremental:\n    field: SystemModstamp\n    first_execution_from: {}\n",
        (modstamp(1) - chrono::Duration::seconds(1)).to_rfc3339()
    );
    let yaml = flow("sf-moving", &props(json!({"api": "rest"})), &inc, "jsonl");
    // Request 4 is a query-more page: by then the first pages are read.
    mock.touch_on_request(4, &[2, 3, 800, 801]);
    let out = local.run(&yaml).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let out = local.run(&yaml).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let got: BTreeSet<(String, String)> = local
        .output("out/sf-moving")
        .iter()
        .map(|r| {
            (
                r["Id"].as_str().unwrap().to_string(),
                r["SystemModstamp"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let now = mock.versions();
    assert_eq!(
        now.iter()
            .filter(|(_, t)| !t.starts_with("2026-01-01"))
            .count(),
        4,
        "the edits happened"
    );
    for v in &now {
        assert!(got.contains(v), "{} as of {} was never delivered", v.0, v.1);
    }
}

/// A first run over a long window cut by `COUNT()`: slices holding more than `records` are
/// halved (the accounts sit in a few hours of a months-long window), every slice reads its own
/// `WHERE` window, and the output is exactly the unsliced run's.
#[tokio::test]
async fn a_sliced_first_run_cut_by_count_writes_exactly_the_records_of_the_unsliced_run() {
    let mock = SalesforceMock::start(SfConfig::default()).await;
    let from = modstamp(0) - chrono::Duration::minutes(1);
    let inc = format!(
        "  incremental:\n    field: SystemModstamp\n    first_execution_from: {}\n",
        from.to_rfc3339()
    );
    let unsliced = local(&mock).await;
    let out = unsliced
        .run(&flow("sf-sl", &props(json!({})), &inc, "jsonl"))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let mut expected = unsliced.output("out/sf-sl");
    assert_once("unsliced", &expected, &mock.ids_in(Some(from), None, false));
    let before = mock.requests().len();

    let sliced = local(&mock).await;
    let extra = format!("{inc}  slice: {{ count: 2, records: 120 }}\n  parallelism: 3\n");
    let out = sliced
        .run(&flow("sf-sl", &props(json!({})), &extra, "jsonl"))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let slices = sliced.slices_of(&out.run_id).await;
    // 450 accounts, at most 120 a slice: at least four slices read records.
    assert!(slices.len() >= 4, "{slices:?}");
    let soqls: Vec<String> = mock.requests()[before..]
        .iter()
        .filter_map(soql_of)
        .collect();
    assert!(
        soqls
            .iter()
            .any(|q| q.starts_with("SELECT COUNT() FROM Account WHERE ")),
        "start-run counted the windows: {soqls:?}"
    );
    let lower_bounds: BTreeSet<&str> = soqls
        .iter()
        .filter(|q| !q.starts_with("SELECT COUNT()"))
        .filter_map(|q| q.split("SystemModstamp >= ").nth(1))
        .filter_map(|s| s.split(' ').next())
        .collect();
    assert!(lower_bounds.len() >= 4, "{lower_bounds:?}");
    let mut got = sliced.output("out/sf-sl");
    assert_once("sliced", &got, &mock.ids_in(Some(from), None, false));
    let key = |r: &Value| r["Id"].as_str().unwrap_or_default().to_string();
    expected.sort_by_key(key);
    got.sort_by_key(key);
    assert_eq!(got, expected, "the same rows, value for value");
}
