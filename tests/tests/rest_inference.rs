//! Schema inference never loses a run: a `rest` source without declared fields writes nested
//! objects as structs, arrays as lists and fields whose shape changes between records as JSON
//! text (with a warning); declared `object` and `array` fields work the same way; a run in
//! which every record was rejected fails instead of ending Successful with 0 rows.

use axum::routing::get;
use axum::Router;
use ferry_tests::harness::{rest_flow, Local};
use serde_json::{json, Value};

/// Serve `records` as one page at `/items` (`{"data": [...]}`).
async fn serve(records: Vec<Value>) -> String {
    let body = json!({ "data": records }).to_string();
    serve_app(Router::new().route(
        "/items",
        get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    ))
    .await
}

/// Serve `app` on a free local port; its base URL.
async fn serve_app(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn records() -> Vec<Value> {
    (0..40)
        .map(|i| {
            json!({
                "id": i,
                // A nested object, with a nested array of objects inside.
                "customer": {"name": format!("c{i}"), "address": {"city": "Lyon", "zip": 69000 + i}},
                "tags": ["a", format!("t{i}")],
                "lines": [{"sku": format!("s{i}"), "qty": i % 3}],
                // Mixed shapes: an object in some records, text or a number in others.
                "meta": match i % 3 {
                    0 => json!({"source": "web", "n": i}),
                    1 => json!("none"),
                    _ => json!(i),
                },
                "note": if i % 2 == 0 { Value::Null } else { json!({"k": [i]}) },
            })
        })
        .collect()
}

fn props(url: &str, fields: Option<Value>) -> Value {
    let mut ep = json!({"path": "/items", "records": "$.data[*]", "primary_key": "id"});
    if let Some(f) = fields {
        ep["fields"] = f;
    }
    json!({"base_url": url, "endpoints": {"items": ep}})
}

fn by_id(out: Vec<Value>) -> Vec<Value> {
    let mut out = out;
    out.sort_by_key(|r| r["id"].as_u64());
    out
}

#[tokio::test]
async fn inferred_nested_objects_arrays_and_mixed_shapes_are_all_written() {
    let url = serve(records()).await;
    let local = Local::new();
    let out = local
        .run(&rest_flow("infer", "items", None, &props(&url, None), ""))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let rec = out.record.unwrap();
    assert_eq!(rec.records_written, 40, "{rec:?}");
    assert_eq!(rec.records_rejected, 0, "{rec:?}");
    assert!(
        rec.warnings
            .iter()
            .any(|w| w.contains("'meta'") && w.contains("JSON text")),
        "the widened field is named in a warning: {:?}",
        rec.warnings
    );
    let rows = by_id(local.output("out"));
    assert_eq!(rows.len(), 40);
    // Structs and lists come out as objects and arrays.
    assert_eq!(rows[7]["customer"]["address"]["zip"], 69007);
    assert_eq!(rows[7]["customer"]["name"], "c7");
    assert_eq!(rows[7]["tags"], json!(["a", "t7"]));
    assert_eq!(rows[7]["lines"][0]["sku"], "s7");
    // Mixed shapes are JSON text, every one of them kept.
    assert_eq!(rows[0]["meta"], r#"{"source":"web","n":0}"#);
    assert_eq!(rows[1]["meta"], "none");
    assert_eq!(rows[2]["meta"], "2");
    // Null in some records, an object in others: a struct, nulls kept.
    assert_eq!(rows[3]["note"], json!({"k": [3]}));
    assert!(rows[2]["note"].is_null());
}

#[tokio::test]
async fn declared_object_and_array_fields_are_written_as_structs_and_lists() {
    let url = serve(records()).await;
    let local = Local::new();
    let fields = json!([
        {"name": "id", "type": "integer"},
        {"name": "customer", "type": "object", "fields": [
            {"name": "name"},
            {"name": "address", "type": "object", "fields": [{"name": "zip", "type": "integer"}]}
        ]},
        {"name": "tags", "type": "array", "items": "string"},
        {"name": "lines", "type": "array", "items": {"type": "object", "fields": [
            {"name": "sku"}, {"name": "qty", "type": "integer"}
        ]}},
        {"name": "meta", "type": "json"}
    ]);
    let out = local
        .run(&rest_flow(
            "declared",
            "items",
            None,
            &props(&url, Some(fields)),
            "",
        ))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert_eq!(out.record.unwrap().records_written, 40);
    let rows = by_id(local.output("out"));
    assert_eq!(rows[5]["customer"]["address"], json!({"zip": 69005}));
    assert_eq!(rows[5]["lines"], json!([{"sku": "s5", "qty": 2}]));
    assert_eq!(rows[5]["tags"], json!(["a", "t5"]));
    assert_eq!(rows[3]["meta"], r#"{"source":"web","n":3}"#);
    assert!(
        rows[5].get("note").is_none(),
        "undeclared fields are left out"
    );
}

#[tokio::test]
async fn a_bad_declared_type_is_refused_naming_the_field() {
    let local = Local::new();
    let fields = json!([{"name": "customer", "type": "object"}]);
    let flow = rest_flow(
        "bad",
        "items",
        None,
        &props("http://127.0.0.1:9", Some(fields)),
        "",
    );
    let err = ferry::flow::Flow::parse(&flow, "bad.yaml").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("source.properties.endpoints.items.fields[0].fields")
            && msg.contains("type: json"),
        "{msg}"
    );
    drop(local);
}

#[tokio::test]
async fn a_run_whose_every_record_is_rejected_does_not_end_successful() {
    let url = serve(records()).await;
    let local = Local::new();
    // `customer` is an object in every record, declared an integer: every record is rejected.
    let fields =
        json!([{"name": "id", "type": "integer"}, {"name": "customer", "type": "integer"}]);
    let out = local
        .run(&rest_flow(
            "allbad",
            "items",
            None,
            &props(&url, Some(fields)),
            "",
        ))
        .await;
    assert!(!out.succeeded(), "a run that wrote nothing must fail");
    let rec = out.record.unwrap();
    assert_ne!(rec.status, ferry::model::RunStatus::Successful, "{rec:?}");
    let err = rec.error.expect("the run record says why");
    assert!(
        err.message.contains("all 40 records were rejected"),
        "{}",
        err.message
    );
    assert!(local.output("out").is_empty());
    assert_eq!(local.watermark("allbad").await, None);
}

#[tokio::test]
async fn records_that_do_not_decode_are_rejected_alone_with_their_line_and_text() {
    let mut recs: Vec<Value> = (0..20).map(|i| json!({"id": i, "n": i * 10})).collect();
    recs[7] = json!({"id": 7, "n": "seventy"});
    let url = serve(recs).await;
    let local = Local::new();
    let fields = json!([{"name": "id", "type": "integer"}, {"name": "n", "type": "integer"}]);
    let props = serde_json::to_string(&props(&url, Some(fields))).unwrap();
    let flow = format!(
        "name: rej\nsource:\n  connector: rest\n  entity: items\n  properties: {props}\ndestination:\n  local: out\n  format: jsonl\n  compression: none\n  error_location: errors\ntrigger:\n  on_demand: {{}}\n"
    );
    let out = local.run(&flow).await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let rec = out.record.unwrap();
    assert_eq!(
        (rec.records_written, rec.records_rejected),
        (19, 1),
        "{rec:?}"
    );
    assert_eq!(local.output("out").len(), 19);
    let mut rejected = vec![];
    let mut stack = vec![local.base.path().join("errors")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                for l in std::fs::read_to_string(e.path()).unwrap().lines() {
                    rejected.push(serde_json::from_str::<Value>(l).unwrap());
                }
            }
        }
    }
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["line"], 7);
    assert_eq!(rejected[0]["record"], json!({"id": 7, "n": "seventy"}));
    assert!(
        rejected[0]["reason"].as_str().unwrap().contains("schema"),
        "{}",
        rejected[0]
    );
}

/// A field that first appears after the page the schema was inferred from is not written, and
/// the run says so, naming the field and the fix (declare it) — never silently.
#[tokio::test(flavor = "multi_thread")]
async fn a_field_first_seen_after_inference_is_reported_not_silently_dropped() {
    // 10 pages of 10 records by offset; the field `late` appears from record 60 on.
    late_field_is_reported(60..100, "  chunk: { records: 10 }\n").await;
}

/// Every page's keys are looked at, not a sample: a field on one page only, in the middle of
/// a chunk of many pages, is named too.
#[tokio::test(flavor = "multi_thread")]
async fn a_field_on_one_page_of_a_long_chunk_is_reported() {
    late_field_is_reported(50..60, "").await;
}

async fn late_field_is_reported(late: std::ops::Range<usize>, chunk: &str) {
    let records: Vec<Value> = (0..100)
        .map(|i| {
            if !late.contains(&i) {
                json!({"id": i, "name": format!("n{i}")})
            } else {
                json!({"id": i, "name": format!("n{i}"), "late": i * 2})
            }
        })
        .collect();
    let url = serve_app(Router::new().route(
        "/items",
        get(
            move |q: axum::extract::Query<std::collections::HashMap<String, String>>| {
                let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
                let page: Vec<Value> = records.iter().skip(offset).take(10).cloned().collect();
                async move { axum::Json(json!({ "data": page, "total": 100 })) }
            },
        ),
    ))
    .await;
    let props = json!({"base_url": url, "concurrency": 1, "endpoints": {"items": {
        "path": "/items", "records": "$.data[*]", "primary_key": "id",
        "paginator": {"type": "offset", "limit": 10, "total_path": "$.total"}}}});
    let local = Local::new();
    let out = local
        .run(&rest_flow("late", "items", None, &props, chunk))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    let rec = out.record.unwrap();
    assert_eq!(rec.records_written, 100, "{rec:?}");
    assert!(
        rec.warnings.iter().any(|w| w.contains("(late)")
            && w.contains("not written")
            && w.contains("endpoints.items.fields")),
        "{:?}",
        rec.warnings
    );
}
