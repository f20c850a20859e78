//! Throughput of the task pipeline: a 10-task plan on 1,000,000 sample accounts, beside the
//! no-task baseline. `scripts/bench.sh transform` (RECORDS=... to change the size).
//! Times only `Plan::apply` on Arrow batches (decoding JSON is the fetch/transform step's cost,
//! measured elsewhere).

use ferry::connector::{sample::SampleSource, ReadRequest, Source};
use ferry::flow::TaskSpec;
use ferry::transform::Plan;
use std::time::Instant;

const TASKS: &str = r#"
- map_all: { exclude: [internal_notes, address] }
- filter: { field: status, op: not_equal, value: deleted }
- filter: { field: employees, op: greater, value: 10 }
- filter: { field: country, op: in, values: [US, DE, FR, GB, JP, BR] }
- mask: { field: phone, keep_last: 4 }
- truncate: { field: name, length: 8 }
- arithmetic: { to: rating_x2, left: rating, op: multiply, right: 2 }
- merge: { to: label, format: "{name} ({country})" }
- validate: { field: rating, check: non_negative }
- map: { from: annual_revenue, to: revenue, type: float }
"#;

fn main() {
    let records: u64 = std::env::var("RECORDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut props = serde_json::Map::new();
    props.insert("records".into(), records.into());
    props.insert("as_of".into(), "2026-01-01T00:00:00Z".into());
    let src = SampleSource::from_properties(&props).unwrap();
    let desc = rt.block_on(src.describe("accounts")).unwrap();
    let schema = ferry::schema::arrow_schema(&desc.fields);
    eprintln!("generating {records} sample accounts ...");
    let req = ReadRequest {
        entity: "accounts".into(),
        window: None,
        incremental_field: None,
        page_size: Some(100_000),
        filters: vec![],
    };
    let mut batches = vec![];
    let mut cursor = None;
    loop {
        let page = rt.block_on(src.read_page(&req, cursor.as_ref())).unwrap();
        let mut body = Vec::new();
        for r in &page.records {
            serde_json::to_writer(&mut body, r).unwrap();
            body.push(b'\n');
        }
        batches.push(ferry::schema::decode_json_lines(&body, schema.clone()).unwrap());
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    // YAML -> JSON value -> tasks: serde_yaml cannot read externally tagged enums from maps.
    let tasks: serde_json::Value = serde_yaml::from_str(TASKS).unwrap();
    let tasks: Vec<TaskSpec> = serde_json::from_value(tasks).unwrap();
    assert_eq!(tasks.len(), 10);
    let arrow_bytes: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
    println!(
        "input: {records} records, {:.1} MB as Arrow arrays",
        arrow_bytes as f64 / 1e6
    );
    for (name, tasks) in [("no tasks (baseline)", vec![]), ("10-task plan", tasks)] {
        let plan = Plan::compile(&tasks, schema.clone()).unwrap();
        let mut best = f64::MAX;
        let mut kept = 0;
        for _ in 0..3 {
            let t = Instant::now();
            kept = 0;
            for b in &batches {
                kept += plan.apply(b).unwrap().batch.num_rows();
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        if best < 1e-3 {
            // A plan without tasks hands the batches through without copying.
            println!("{name:<22} {records} records in {best:>8.6} s  (zero-copy pass-through, {kept} kept)");
            continue;
        }
        println!(
            "{name:<22} {records} records in {:>8.3} s  {:>12.0} records/s  {:>8.1} MB/s of Arrow input  ({kept} kept)",
            best,
            records as f64 / best,
            arrow_bytes as f64 / 1e6 / best
        );
    }
}
