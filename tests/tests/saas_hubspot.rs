//! The hubspot connector against a mock speaking CRM v3: objects and properties, complete runs
//! through the list endpoint, incremental runs through the search API on the object's
//! last-modified property, a window of more than 10,000 changes read completely (the search cap
//! re-sliced), archived records, typed property values, auth failures and throttling.

use ferry::connector::auth::Authenticator;
use ferry::connector::hubspot::HubSpotSource;
use ferry::connector::{FieldType, ReadRequest, Source};
use ferry::ports::Secret;
use ferry_tests::harness::Local;
use ferry_tests::saas::hubspot::{HsAuth, HsConfig, HubSpotMock};
use ferry_tests::Fault;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "pat-na1-test";

fn props(mock: &HubSpotMock, extra: Value) -> Value {
    let mut p = json!({
        "base_url": mock.url(),
        "http": {"timeout_ms": 5000, "max_retries": 2, "backoff_initial_ms": 5, "backoff_max_ms": 20}
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn flow(name: &str, entity: &str, properties: &Value, extra: &str) -> String {
    format!(
        "name: {name}\nsource:\n  connector: hubspot\n  profile: hubspot\n  entity: {entity}\n  properties: {}\n{extra}destination:\n  local: out\n  format: jsonl\n  compression: none\ntasks:\n  - map_all: {{}}\ntrigger:\n  on_demand: {{}}\n",
        serde_json::to_string(properties).unwrap()
    )
}

fn incremental(field: &str, from: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "  incremental:\n    field: {field}\n    first_execution_from: {}\n",
        from.to_rfc3339()
    )
}

async fn local_with_token() -> Local {
    let local = Local::new();
    local
        .put_secret(
            "hubspot",
            json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": TOKEN}),
        )
        .await;
    local
}

fn source(mock: &HubSpotMock, extra: Value) -> HubSpotSource {
    let auth = Authenticator::from_secret(
        "hubspot",
        &Secret::new(json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": TOKEN})),
        Arc::new(ferry::adapters::memory::MemorySecrets::default()),
    )
    .unwrap();
    HubSpotSource::new(props(mock, extra).as_object().unwrap(), auth).unwrap()
}

fn ids(rows: &[Value]) -> (usize, BTreeSet<String>) {
    let v: Vec<String> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    (v.len(), v.into_iter().collect())
}

#[tokio::test]
async fn objects_and_their_properties_are_described() {
    let mock = HubSpotMock::start(HsConfig::default()).await;
    let src = source(&mock, json!({}));
    let names: Vec<String> = src
        .list_entities()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["contacts", "companies", "deals", "tickets"]);
    let d = src.describe("contacts").await.unwrap();
    let f = |n: &str| {
        d.fields
            .iter()
            .find(|f| f.name == n)
            .unwrap_or_else(|| panic!("no {n}: {:?}", d.fields))
            .clone()
    };
    assert!(f("id").primary_key);
    assert_eq!(f("lastmodifieddate").data_type, FieldType::Timestamp);
    assert!(f("lastmodifieddate").incremental);
    assert_eq!(f("num_notes").data_type, FieldType::Float);
    assert_eq!(f("hs_email_optout").data_type, FieldType::Boolean);
    assert_eq!(f("date_of_birth").data_type, FieldType::Date);
    assert_eq!(f("lifecyclestage").data_type, FieldType::String);
    assert_eq!(f("archived").data_type, FieldType::Boolean);
    assert_eq!(f("archivedAt").data_type, FieldType::Timestamp);
    assert!(mock
        .requests()
        .iter()
        .any(|r| r.path == "/crm/v3/properties/contacts"));
    // Deals: the last-modified property is hs_lastmodifieddate.
    let d = src.describe("deals").await.unwrap();
    assert!(d
        .fields
        .iter()
        .any(|f| f.name == "hs_lastmodifieddate" && f.incremental));
    assert!(d
        .fields
        .iter()
        .any(|f| f.name == "amount" && f.data_type == FieldType::Float));
    // HubSpot ignores unknown property names; ferry names them.
    let src = source(&mock, json!({"properties": ["email", "fristname"]}));
    let e = src.describe("contacts").await.unwrap_err();
    assert_eq!(e.kind(), ferry::error::ErrorKind::InvalidFlow);
    assert!(
        e.to_string().contains("source.properties.properties[1]")
            && e.to_string().contains("fristname"),
        "{e}"
    );
    let src = source(&mock, json!({"properties": ["email"]}));
    let names: Vec<String> = src
        .describe("contacts")
        .await
        .unwrap()
        .fields
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        names,
        [
            "id",
            "email",
            "lastmodifieddate",
            "createdAt",
            "updatedAt",
            "archived",
            "archivedAt"
        ]
    );
}

#[tokio::test]
async fn a_full_run_lists_every_active_record_once_with_typed_values() {
    let mock = HubSpotMock::start(HsConfig {
        records: 430,
        ..Default::default()
    })
    .await;
    let local = local_with_token().await;
    let out = local
        .run(&flow(
            "hs-full",
            "contacts",
            &props(&mock, json!({})),
            "  chunk: { records: 150 }\n",
        ))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let rows = local.output("out/hs-full");
    let (n, set) = ids(&rows);
    assert_eq!(n, set.len(), "duplicates");
    assert_eq!(set, mock.ids_in("contacts", None, None, false));
    assert_eq!(
        set.len(),
        430 - 430 / 25,
        "archived records are not listed by default"
    );
    let r = rows.iter().find(|r| r["id"] == json!("1008")).unwrap();
    assert_eq!(r["num_notes"], Value::Null, "\"\" is null");
    assert_eq!(r["hs_email_optout"], json!(true));
    assert_eq!(r["hs_object_id"], json!(1008.0));
    assert_eq!(r["date_of_birth"], json!("1990-01-09"));
    assert_eq!(r["archived"], json!(false));
    let r = rows.iter().find(|r| r["id"] == json!("1007")).unwrap();
    assert_eq!(r["num_notes"], json!(7.0));
    assert_eq!(r["lastname"], Value::Null);
    let lists: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/crm/v3/objects/contacts")
        .collect();
    assert!(lists.len() >= 5, "pages of at most 100");
    assert!(lists.iter().all(|r| r.query.contains("limit=100")
        && r.query.contains("properties=")
        && r.query.contains("archived=false")));
    assert!(
        mock.search_bodies().is_empty(),
        "a complete read does not use search"
    );
}

#[tokio::test]
async fn archived_records_are_read_when_asked_for() {
    let mock = HubSpotMock::start(HsConfig {
        records: 260,
        ..Default::default()
    })
    .await;
    let local = local_with_token().await;
    let out = local
        .run(&flow(
            "hs-arch",
            "deals",
            &props(&mock, json!({"include_archived": true})),
            "",
        ))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let rows = local.output("out/hs-arch");
    let (n, set) = ids(&rows);
    assert_eq!(n, set.len());
    let active = mock.ids_in("deals", None, None, false);
    let archived = mock.ids_in("deals", None, None, true);
    assert_eq!(archived.len(), 10);
    assert_eq!(set, active.union(&archived).cloned().collect());
    for r in &rows {
        let is_archived = archived.contains(r["id"].as_str().unwrap());
        assert_eq!(r["archived"], json!(is_archived));
        assert_eq!(r["archivedAt"].is_string(), is_archived);
    }

    // In a window: archived records whose archivedAt is inside it (search never shows them).
    let from = mock.modified(100);
    let out = local
        .run(&flow(
            "hs-arch-inc",
            "deals",
            &props(&mock, json!({"include_archived": true})),
            &incremental("hs_lastmodifieddate", from),
        ))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let (n, set) = ids(&local.output("out/hs-arch-inc"));
    assert_eq!(n, set.len());
    let want: BTreeSet<String> = mock
        .ids_in("deals", Some(from), None, false)
        .union(&mock.ids_in("deals", Some(from), None, true))
        .cloned()
        .collect();
    assert_eq!(set, want);
}

#[tokio::test]
async fn incremental_runs_search_on_the_objects_last_modified_property() {
    let mock = HubSpotMock::start(HsConfig {
        records: 500,
        ..Default::default()
    })
    .await;
    let local = local_with_token().await;
    let from = mock.modified(90); // 90, 91, 92 share this time: excluded, the start is exclusive
    let out = local
        .run(&flow(
            "hs-inc",
            "contacts",
            &props(&mock, json!({})),
            &incremental("lastmodifieddate", from),
        ))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let (n, set) = ids(&local.output("out/hs-inc"));
    assert_eq!(n, set.len(), "duplicates");
    assert_eq!(set, mock.ids_in("contacts", Some(from), None, false));
    assert!(!set.contains("1092") && set.contains("1093"));
    let bodies = mock.search_bodies();
    assert!(bodies.len() >= 2);
    let f = &bodies[0]["filterGroups"][0]["filters"];
    assert_eq!(
        f[0],
        json!({"propertyName": "lastmodifieddate", "operator": "GT", "value": from.timestamp_millis().to_string()})
    );
    assert_eq!(f[1]["operator"], json!("LTE"));
    assert_eq!(
        bodies[0]["sorts"],
        json!([{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}])
    );
    assert_eq!(bodies[0]["limit"], json!(200));
    assert!(bodies[0]["properties"]
        .as_array()
        .unwrap()
        .contains(&json!("email")));
    // The next run's window starts at the watermark: nothing changed, nothing read.
    let out = local
        .run(&flow(
            "hs-inc",
            "contacts",
            &props(&mock, json!({})),
            &incremental("lastmodifieddate", from),
        ))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert_eq!(local.output("out/hs-inc").len(), n);

    // Tickets search on hs_lastmodifieddate; `updatedAt` maps to it.
    let out = local
        .run(&flow(
            "hs-tickets",
            "tickets",
            &props(&mock, json!({})),
            &incremental("updatedAt", from),
        ))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let (_, set) = ids(&local.output("out/hs-tickets"));
    assert_eq!(set, mock.ids_in("tickets", Some(from), None, false));
    assert_eq!(
        mock.search_bodies().last().unwrap()["sorts"][0]["propertyName"],
        json!("hs_lastmodifieddate")
    );
}

#[tokio::test]
async fn a_window_with_more_than_10000_changes_is_read_completely() {
    let mock = HubSpotMock::start(HsConfig {
        records: 23_456,
        same_time: 3,
        ..Default::default()
    })
    .await;
    let local = local_with_token().await;
    let from = mock.modified(0) - chrono::Duration::seconds(1);
    let out = local
        .run(&flow(
            "hs-big",
            "contacts",
            &props(&mock, json!({"properties": ["email"]})),
            &format!(
                "{}  chunk: {{ records: 5000 }}\n",
                incremental("lastmodifieddate", from)
            ),
        ))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let (n, set) = ids(&local.output("out/hs-big"));
    let want = mock.ids_in("contacts", Some(from), None, false);
    assert!(want.len() > 2 * 10_000, "{}", want.len());
    assert_eq!(n, set.len(), "duplicates at a slice boundary");
    assert_eq!(set, want);
    assert!(
        mock.requests().iter().all(|r| r.status == 200),
        "no request ran into the 10,000-result cap"
    );
    let bodies = mock.search_bodies();
    let slices: Vec<&Value> = bodies
        .iter()
        .filter(|b| b["filterGroups"][0]["filters"][0]["operator"] == json!("GTE"))
        .collect();
    assert!(slices.len() >= 2, "the window was re-sliced at least twice");
    assert!(bodies.iter().all(|b| b
        .get("after")
        .and_then(Value::as_str)
        .map_or(0, |a| a.parse::<u64>().unwrap())
        + 200
        <= 10_000));
}

#[tokio::test]
async fn refused_credentials_end_the_run_auth_failed_naming_the_profile() {
    let mock = HubSpotMock::start(HsConfig {
        records: 5,
        ..Default::default()
    })
    .await;
    let local = Local::new();
    local
        .put_secret(
            "hubspot",
            json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": "pat-revoked-123"}),
        )
        .await;
    let out = local
        .run(&flow("hs-auth", "contacts", &props(&mock, json!({})), ""))
        .await;
    let f = out.failure.expect("the run fails");
    assert_eq!(f.error, "AuthFailed", "{f:?}");
    assert!(
        f.cause.contains("'hubspot'") && f.cause.contains("401"),
        "{}",
        f.cause
    );
    assert!(!f.cause.contains("pat-revoked-123"), "{}", f.cause);
}

#[tokio::test]
async fn an_oauth_profile_refreshes_its_token_and_reads() {
    let auth = HsAuth::OAuth {
        client_id: "hs-cid".into(),
        client_secret: "hs-csec".into(),
        refresh_token: "hs-rt".into(),
    };
    let mock = HubSpotMock::start(HsConfig {
        records: 120,
        auth,
        ..Default::default()
    })
    .await;
    let local = Local::new();
    local
        .put_secret("hubspot", json!({"type": "oauth2_refresh_token", "hosts": ["127.0.0.1"], "token_url": format!("{}/oauth/v1/token", mock.url()),
            "client_id": "hs-cid", "client_secret": "hs-csec", "refresh_token": "hs-rt"}))
        .await;
    let out = local
        .run(&flow("hs-oauth", "companies", &props(&mock, json!({})), ""))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let (_, set) = ids(&local.output("out/hs-oauth"));
    assert_eq!(set, mock.ids_in("companies", None, None, false));
    assert!(local.secret("hubspot")["access_token"]
        .as_str()
        .unwrap()
        .starts_with("hs-at-"));
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_long_one_ends_the_chunk_throttled() {
    let mock = HubSpotMock::start(HsConfig {
        records: 30,
        ..Default::default()
    })
    .await;
    let src = source(&mock, json!({}));
    let req = ReadRequest {
        entity: "contacts".into(),
        window: None,
        incremental_field: None,
        page_size: None,
        filters: vec![],
    };
    src.describe("contacts").await.unwrap();
    mock.push_faults([Fault::throttle("1")]);
    let p = src.read_page(&req, None).await.unwrap();
    assert!(!p.records.is_empty());
    let r: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/crm/v3/objects/contacts")
        .collect();
    assert_eq!((r[0].status, r[1].status), (429, 200));
    assert!(r[1].at.duration_since(r[0].at) >= Duration::from_millis(950));

    let src = source(&mock, json!({"http": {"max_retry_after_seconds": 5}}));
    src.describe("contacts").await.unwrap();
    mock.push_faults([Fault::throttle("3600")]);
    let e = src.read_page(&req, None).await.unwrap_err();
    assert_eq!(e.kind(), ferry::error::ErrorKind::Throttled, "{e}");
    // Secondly limits without Retry-After: backed off and retried.
    mock.push_faults([Fault::status(429), Fault::status(429)]);
    assert!(source(&mock, json!({})).read_page(&req, None).await.is_ok());
}

#[tokio::test]
async fn a_throttled_chunk_is_retried_by_the_state_machine_without_loss_or_duplicates() {
    let mock = HubSpotMock::start(HsConfig {
        records: 1_500,
        ..Default::default()
    })
    .await;
    let local = local_with_token().await;
    let engine = local.fast_retry_engine();
    let from = mock.modified(0) - chrono::Duration::seconds(1);
    let p = props(
        &mock,
        json!({"page_size": 100, "http": {"max_retry_after_seconds": 1}}),
    );
    let yaml = flow(
        "hs-throttled",
        "contacts",
        &p,
        &format!(
            "{}  chunk: {{ records: 400 }}\n",
            incremental("lastmodifieddate", from)
        ),
    );
    let flow = ferry::flow::Flow::parse(&yaml, "t.yaml").unwrap();
    mock.fault_every(7, vec![Fault::throttle("3600")]);
    let out = local.run_flow_on(&engine, &flow).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert!(mock.requests().iter().any(|r| r.status == 429));
    let (n, set) = ids(&local.output("out/hs-throttled"));
    assert_eq!(n, set.len(), "duplicates after the retried chunk");
    assert_eq!(set, mock.ids_in("contacts", Some(from), None, false));
}

#[tokio::test]
async fn the_example_flow_validates_and_runs_against_the_mock() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/flows/hubspot-contacts.yaml"
    ))
    .unwrap();
    ferry::flow::Flow::parse(&text, "hubspot-contacts.yaml").expect("the example is valid");
    let mock = HubSpotMock::start(HsConfig {
        records: 640,
        ..Default::default()
    })
    .await;
    let local = local_with_token().await;
    let text = text
        .replace(
            "  properties:\n    properties:",
            &format!(
                "  properties:\n    base_url: {}\n    properties:",
                mock.url()
            ),
        )
        .replace("format: parquet", "format: jsonl")
        .replace("compression: zstd", "compression: none");
    assert!(text.contains(&mock.url()));
    let out = local.run(&text).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let rows = local.output("ferry-out/hubspot-contacts");
    let (n, set) = ids(&rows);
    assert_eq!(n, set.len());
    let want: BTreeSet<String> = mock
        .ids_in("contacts", None, None, false)
        .union(&mock.ids_in("contacts", None, None, true))
        .cloned()
        .collect();
    assert_eq!(set, want);
    assert!(
        rows.iter()
            .all(|r| r.get("email").is_some() && r.get("num_notes").is_none()),
        "only the selected properties"
    );
}

/// Records edited while a run pages (some already read, some not yet) are all delivered: the
/// edited ones by the next incremental run, the others by this one. Search paging by `after`
/// offsets lost records here: an edited record leaves the window's sorted results, the offsets
/// shift, and the next page skipped a record that was never read again.
#[tokio::test]
async fn records_edited_while_a_run_pages_are_not_lost_at_the_next_run() {
    let mock = HubSpotMock::start(HsConfig {
        records: 120,
        archived_every: 0,
        ..Default::default()
    })
    .await;
    let local = local_with_token().await;
    let from = ferry_tests::saas::hubspot::base_time() - chrono::Duration::seconds(1);
    let yaml = flow(
        "hs-moving",
        "contacts",
        &props(&mock, json!({"page_size": 10})),
        &format!(
            "{}  chunk: {{ records: 20 }}\n",
            incremental("lastmodifieddate", from)
        ),
    );
    // After two search pages (records 1-20 read): two read records and two unread ones change.
    mock.touch_after(4, "contacts", &[3, 4, 90, 91]);
    let out = local.run(&yaml).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert!(
        mock.versions("contacts")
            .iter()
            .filter(|(_, t)| *t > from + chrono::Duration::days(1))
            .count()
            == 4,
        "the edits happened during the run"
    );
    let out = local.run(&yaml).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let got: BTreeSet<(String, String)> = local
        .output("out/hs-moving")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["lastmodifieddate"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (id, t) in mock.versions("contacts") {
        let t = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        assert!(
            got.contains(&(id.clone(), t.clone())),
            "record {id} as of {t} was never delivered"
        );
    }
}

/// `ferry entities` authenticates: a refused token is `AuthFailed`, not a static list; an
/// object the token has no scope for is listed as such.
#[tokio::test]
async fn entity_listing_authenticates() {
    let mock = HubSpotMock::start(HsConfig::default()).await;
    let auth = Authenticator::from_secret(
        "hubspot",
        &Secret::new(json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": "pat-na1-wrong"})),
        Arc::new(ferry::adapters::memory::MemorySecrets::default()),
    )
    .unwrap();
    let src = HubSpotSource::new(props(&mock, json!({})).as_object().unwrap(), auth).unwrap();
    let e = src.list_entities().await.unwrap_err();
    assert_eq!(e.kind(), ferry::error::ErrorKind::AuthFailed, "{e}");
    assert!(e.to_string().contains("'hubspot'"), "{e}");
    assert!(!e.to_string().contains("pat-na1-wrong"), "{e}");
    let list = source(&mock, json!({})).list_entities().await.unwrap();
    assert_eq!(list.len(), 4);
    assert!(mock
        .requests()
        .iter()
        .any(|r| r.path == "/crm/v3/properties/deals" && r.status == 200));
}

/// The properties list is read once per run (start-run stages it), not on every fetch-page:
/// a run of 9 chunks asks for it as often as a run of one.
#[tokio::test]
async fn properties_are_read_once_per_run_whatever_the_chunks() {
    let mut reads = vec![];
    for (name, chunk) in [("hs-one-chunk", 1000), ("hs-nine-chunks", 50)] {
        let mock = HubSpotMock::start(HsConfig {
            records: 430,
            ..Default::default()
        })
        .await;
        let local = local_with_token().await;
        let out = local
            .run(&flow(
                name,
                "contacts",
                &props(&mock, json!({})),
                &format!("  chunk: {{ records: {chunk} }}\n"),
            ))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        assert_eq!(local.output(&format!("out/{name}")).len(), 430 - 430 / 25);
        reads.push(
            mock.requests()
                .iter()
                .filter(|r| r.path == "/crm/v3/properties/contacts")
                .count(),
        );
    }
    assert_eq!(
        reads[0], reads[1],
        "property reads grow with chunks: {reads:?}"
    );
    assert_eq!(reads[0], 1, "one read per run: {reads:?}");
}

/// A first run cut into time slices — two, each halved while the search's `total` says it
/// holds more than 100 records — writes exactly the records of the unsliced run, value for
/// value, each once.
#[tokio::test]
async fn a_sliced_first_run_cut_by_search_totals_writes_exactly_the_unsliced_records() {
    let mock = HubSpotMock::start(HsConfig {
        records: 500,
        ..Default::default()
    })
    .await;
    let from = mock.modified(0) - chrono::Duration::minutes(1);
    let unsliced = local_with_token().await;
    let out = unsliced
        .run(&flow(
            "hs-sl",
            "contacts",
            &props(&mock, json!({})),
            &incremental("lastmodifieddate", from),
        ))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let mut expected = unsliced.output("out/hs-sl");
    let (n, set) = ids(&expected);
    assert_eq!(n, set.len());
    assert_eq!(set, mock.ids_in("contacts", Some(from), None, false));

    let sliced = local_with_token().await;
    let extra = format!(
        "{}  slice: {{ count: 2, records: 100 }}\n  parallelism: 2\n",
        incremental("lastmodifieddate", from)
    );
    let out = sliced
        .run(&flow("hs-sl", "contacts", &props(&mock, json!({})), &extra))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let slices = sliced.slices_of(&out.run_id).await;
    assert!(
        slices.len() >= 5,
        "2 slices of ~240 records, halved to at most 100 each: {slices:?}"
    );
    let mut got = sliced.output("out/hs-sl");
    let (n2, set2) = ids(&got);
    assert_eq!(n2, set2.len(), "duplicates across slices");
    let key = |r: &Value| r["id"].as_str().unwrap_or_default().to_string();
    expected.sort_by_key(key);
    got.sort_by_key(key);
    assert_eq!(got, expected, "the same records, value for value");
}
