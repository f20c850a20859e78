//! Transform + encode throughput per format on 1,000,000 sample records, and peak memory.
//!
//! `scripts/bench.sh output`. `FERRY_BENCH_RECORDS`
//! changes the record count. Prints MB/s of JSON input and records/s for JSON -> Arrow (with
//! the declared schema) -> tasks -> Parquet (zstd, snappy), CSV, JSON lines (plain and gzip),
//! files rolled over at 64 MB as write-s3 does, and the process's peak RSS (VmHWM).

use ferry::connector::{sample::SampleSource, ReadRequest, Source};
use ferry::flow::DestinationConfig;
use ferry::output::{prepare, slices, FileWriter};
use std::time::Instant;

fn vm_hwm_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: u64 = std::env::var("FERRY_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let chunk_records = 100_000u64;
    let mut props = serde_json::Map::new();
    props.insert("records".into(), n.into());
    props.insert("page_size".into(), 10_000.into());
    let src = SampleSource::from_properties(&props).unwrap();
    let desc = src.describe("accounts").await.unwrap();
    let schema = ferry::schema::arrow_schema(&desc.fields);
    let tasks: Vec<ferry::flow::tasks::TaskSpec> = serde_json::from_value(serde_json::json!([
        {"map_all": {"exclude": ["internal_notes"]}},
        {"filter": {"field": "status", "op": "not_equal", "value": "deleted"}},
        {"mask": {"field": "phone", "keep_last": 4}},
    ]))
    .unwrap();
    let plan = ferry::transform::Plan::compile(&tasks, schema.clone()).unwrap();

    // The source, as fetch-page stages it: JSON lines, in chunks.
    let t = Instant::now();
    let req = ReadRequest {
        entity: "accounts".into(),
        window: None,
        incremental_field: None,
        page_size: Some(10_000),
        filters: vec![],
    };
    let mut chunks: Vec<Vec<u8>> = vec![];
    let (mut cur, mut count, mut cursor) = (Vec::new(), 0u64, None);
    loop {
        let page = src.read_page(&req, cursor.as_ref()).await.unwrap();
        for r in &page.records {
            serde_json::to_writer(&mut cur, r).unwrap();
            cur.push(b'\n');
            count += 1;
            if count % chunk_records == 0 {
                chunks.push(std::mem::take(&mut cur));
            }
        }
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    if !cur.is_empty() {
        chunks.push(cur);
    }
    let input_bytes: usize = chunks.iter().map(Vec::len).sum();
    println!(
        "source: {count} records, {:.1} MB of JSON lines in {} chunks (generated in {:.1}s)",
        input_bytes as f64 / 1e6,
        chunks.len(),
        t.elapsed().as_secs_f64()
    );

    // Decode + tasks alone.
    let t = Instant::now();
    let mut rows = 0;
    for c in &chunks {
        let b = ferry::schema::decode_json_lines(c, schema.clone()).unwrap();
        rows += plan.apply(&b).unwrap().batch.num_rows();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:<22} {:>8.1} MB/s {:>11.0} records/s   ({rows} rows out, peak RSS {:.0} MB)",
        "transform (decode+tasks)",
        input_bytes as f64 / 1e6 / secs,
        count as f64 / secs,
        vm_hwm_mb()
    );

    for (label, dest) in [
        (
            "parquet zstd",
            r#"{"local":"o","format":"parquet","compression":"zstd"}"#,
        ),
        (
            "parquet snappy",
            r#"{"local":"o","format":"parquet","compression":"snappy"}"#,
        ),
        ("csv", r#"{"local":"o","format":"csv"}"#),
        (
            "csv gzip",
            r#"{"local":"o","format":"csv","compression":"gzip"}"#,
        ),
        ("jsonl", r#"{"local":"o","format":"jsonl"}"#),
        (
            "jsonl gzip",
            r#"{"local":"o","format":"jsonl","compression":"gzip"}"#,
        ),
    ] {
        let dest: DestinationConfig = serde_json::from_str(dest).unwrap();
        let target = 64 << 20;
        let t = Instant::now();
        let (mut files, mut out_bytes) = (0, 0usize);
        let mut w: Option<FileWriter> = None;
        for c in &chunks {
            let b = ferry::schema::decode_json_lines(c, schema.clone()).unwrap();
            let b = plan.apply(&b).unwrap().batch;
            for s in slices(&b, 4096) {
                let s = prepare(&s, &dest).unwrap();
                let fw = w.get_or_insert_with(|| FileWriter::new(s.schema(), &dest).unwrap());
                fw.write(&s, &dest).unwrap();
                if fw.reached(target).unwrap() {
                    out_bytes += w.take().unwrap().finish().unwrap().body.len();
                    files += 1;
                }
            }
        }
        if let Some(fw) = w {
            out_bytes += fw.finish().unwrap().body.len();
            files += 1;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{:<22} {:>8.1} MB/s {:>11.0} records/s   {files} files, {:.1} MB out, peak RSS {:.0} MB",
            format!("transform+{label}"),
            input_bytes as f64 / 1e6 / secs,
            count as f64 / secs,
            out_bytes as f64 / 1e6,
            vm_hwm_mb()
        );
    }
}
