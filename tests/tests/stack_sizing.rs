//! Lambda sizing from measurement: one chunk at the largest default chunk budget (250,000
//! records, under 128 MB of JSON) through the deployed stack, with each function's peak resident
//! memory per invocation (VmHWM). Every peak must fit the function's `MemorySize` in
//! template.yaml with headroom; `scripts/bench.sh lambda-memory` prints the figures (release
//! binaries) that docs/deploy.md quotes.

use ferry::flow::Flow;
use ferry_tests::stack::Stack;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_function_fits_its_memory_at_the_default_chunk_budget() {
    let records: u64 = std::env::var("FERRY_SIZING_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250_000);
    let stack = Stack::deploy().await;
    let b = &stack.output_bucket;
    let flow = Flow::parse(
        &format!(
            r#"
name: sizing
source:
  connector: sample
  entity: accounts
  properties: {{ records: {records}, page_size: 5000, as_of: "2026-01-01T00:00:00Z" }}
destination:
  s3: {{ bucket: {b}, prefix: sizing }}
  format: parquet
  compression: zstd
tasks:
  - map_all: {{ exclude: [internal_notes] }}
  - mask: {{ field: phone, keep_last: 4 }}
trigger: {{ on_demand: {{}} }}
"#
        ),
        "sizing.yaml",
    )
    .unwrap();
    assert_eq!(
        flow.source.chunk.records, 250_000,
        "the default chunk budget moved; update this test and docs/deploy.md"
    );
    stack
        .deps()
        .flows
        .put_flow(&flow, chrono::Utc::now())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let e = stack
        .run(&json!({"flow": "sizing", "trigger": "on_demand", "mode": "complete"}))
        .await;
    let c = stack
        .assert_committed(&e, "sizing/sizing/", "parquet", None)
        .await;
    assert_eq!(c.record.records_processed, records);
    println!(
        "sizing run: {records} records in {} chunk(s), {:.1} s",
        c.record.chunks,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<24} {:>10} {:>12} {:>9}",
        "function", "MemorySize", "peak RSS", "share"
    );
    let peaks = stack.peak_rss_kb();
    for (id, spec) in &stack.functions {
        let peak_mb = peaks.get(id).copied().unwrap_or(0) as f64 / 1024.0;
        let share = peak_mb / spec.memory_mb as f64;
        println!(
            "{id:<24} {:>7} MB {peak_mb:>9.1} MB {:>8.0}%",
            spec.memory_mb,
            share * 100.0
        );
        // Headroom: the measured peak stays under 80% of what the template gives the function.
        assert!(
            share < 0.8,
            "{id} peaked at {peak_mb:.0} MB of its {} MB at the default chunk budget: raise MemorySize in template.yaml (and docs/deploy.md)",
            spec.memory_mb
        );
    }
    for i in stack.invocations() {
        println!(
            "  {:<24} {:>8} ms {:>9.1} MB{}",
            i.function,
            i.millis,
            i.peak_rss_kb as f64 / 1024.0,
            i.error.map(|e| format!("  {e}")).unwrap_or_default()
        );
    }
}
