//! Decoding response pages to Arrow: `schema::scan` (the one-pass scanner) against arrow-json's
//! tape decoder alone (`FERRY_JSON_SCAN=0`), on a flat page like `bench-api`'s (1,000 records of
//! ~410 bytes: ids, timestamps, text, numbers, a boolean) and on a nested one like Shopify's
//! orders (decimals as strings, a list of line-item structs, JSON text). Prints CPU time per page
//! and MB/s; `scripts/bench.sh decode` (PAGES=... to change the count).

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use ferry::schema::PageShape;
use std::sync::Arc;
use std::time::Instant;

fn flat() -> (String, Schema) {
    let statuses = ["open", "pending", "solved", "closed"];
    let countries = ["FR", "DE", "US", "JP", "BR"];
    let records: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                r#"{{"id":{i},"updated_at":"2026-01-01T00:{:02}:{:02}Z","created_at":"2025-12-31T00:00:{:02}Z","name":"Account {i:07}","email":"user{i}@example.com","status":"{}","priority":{},"country":"{}","amount":{}.{:02},"quantity":{},"active":{},"score":0.{:03},"description":"Synthetic record {i:07} for the ferry decode bench: a flat object with typical SaaS fields and some free text to reach a realistic size."}}"#,
                i / 60 % 60,
                i % 60,
                i % 60,
                statuses[i % 4],
                i % 5,
                countries[i % 5],
                i,
                i % 100,
                i % 1000,
                i % 2 == 0,
                i * 143 % 1000
            )
        })
        .collect();
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let f = |n: &str, t: DataType| Field::new(n, t, true);
    let schema = Schema::new(vec![
        f("id", DataType::Int64),
        f("updated_at", ts.clone()),
        f("created_at", ts),
        f("name", DataType::Utf8),
        f("email", DataType::Utf8),
        f("status", DataType::Utf8),
        f("priority", DataType::Int64),
        f("country", DataType::Utf8),
        f("amount", DataType::Float64),
        f("quantity", DataType::Int64),
        f("active", DataType::Boolean),
        f("score", DataType::Float64),
        f("description", DataType::Utf8),
    ]);
    let body = format!(
        r#"{{"data":[{}],"next_cursor":"1000","total":1000000}}"#,
        records.join(",")
    );
    (body, schema)
}

fn nested() -> (String, Schema) {
    let records: Vec<String> = (0..250)
        .map(|i| {
            let items: Vec<String> = (0..4)
                .map(|j| {
                    format!(
                        r#"{{"id":{},"title":"Item {j} of order {i}","quantity":{},"price":"{}.{:02}","sku":"SKU-{j:04}"}}"#,
                        i * 10 + j,
                        j + 1,
                        j * 7 + 1,
                        j * 13 % 100
                    )
                })
                .collect();
            format!(
                r##"{{"id":{i},"name":"#{}","updated_at":"2026-01-02T03:04:{:02}-05:00","total_price":"{}.{:02}","currency":"USD","line_items":[{}],"customer":{{"id":{},"email":"c{i}@example.com","tags":["vip","repeat"]}},"note":null}}"##,
                1000 + i,
                i % 60,
                i * 3,
                i % 100,
                items.join(","),
                i * 7
            )
        })
        .collect();
    let dec = DataType::Decimal128(20, 3);
    let f = |n: &str, t: DataType| Field::new(n, t, true);
    let item = DataType::Struct(
        vec![
            f("id", DataType::Int64),
            f("title", DataType::Utf8),
            f("quantity", DataType::Int64),
            f("price", dec.clone()),
        ]
        .into(),
    );
    let schema = Schema::new(vec![
        f("id", DataType::Int64),
        f("name", DataType::Utf8),
        f(
            "updated_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
        f("total_price", dec),
        f("currency", DataType::Utf8),
        f(
            "line_items",
            DataType::List(Arc::new(Field::new("item", item, true))),
        ),
        f("customer", DataType::Utf8),
        f("note", DataType::Utf8),
    ]);
    (format!(r#"{{"orders":[{}]}}"#, records.join(",")), schema)
}

fn main() {
    let pages: usize = std::env::var("PAGES")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(1000);
    for (name, records, (body, schema)) in [
        ("flat (bench-api's page)", "data", flat()),
        ("nested (Shopify-like orders)", "orders", nested()),
    ] {
        let schema = Arc::new(schema);
        let shape = |scan: bool| {
            // The switch is read when a shape is built.
            std::env::set_var("FERRY_JSON_SCAN", if scan { "1" } else { "0" });
            PageShape::new(vec![records.into()], vec![], schema.clone()).unwrap()
        };
        let (fast, slow) = (shape(true), shape(false));
        let (a, b) = (fast.decode(&body).unwrap(), slow.decode(&body).unwrap());
        assert_eq!(a.batch, b.batch, "{name}: the two decoders disagree");
        println!(
            "{name}: {} records, {:.0} KB per page",
            a.batch.num_rows(),
            body.len() as f64 / 1e3
        );
        for (label, s) in [("schema::scan", &fast), ("arrow-json", &slow)] {
            let t = Instant::now();
            for _ in 0..pages {
                std::hint::black_box(s.decode(&body).unwrap());
            }
            let e = t.elapsed().as_secs_f64();
            println!(
                "  {label:<13} {:.3} ms/page  {:>5.0} MB/s  {:>9.0} records/s",
                e * 1e3 / pages as f64,
                (body.len() * pages) as f64 / e / 1e6,
                (a.batch.num_rows() * pages) as f64 / e
            );
        }
    }
}
