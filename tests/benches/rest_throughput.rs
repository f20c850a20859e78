//! `scripts/bench.sh rest_throughput`: pages/s and records/s of the `rest`
//! connector against the mock server (in-process, with per-response latency standing in for a
//! real API's round trip), with 1, 4 and 16 requests in flight.
//!
//! Environment: `BENCH_TICKETS` (default 20000), `BENCH_PAGE` (default 100),
//! `BENCH_LATENCY_MS` (default 20).

use ferry::connector::auth::Authenticator;
use ferry::connector::rest::RestSource;
use ferry::connector::{ReadRequest, Source};
use ferry_tests::{Mock, MockConfig};
use serde_json::json;
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let tickets = env("BENCH_TICKETS", 20_000);
    let page = env("BENCH_PAGE", 100);
    let latency = env("BENCH_LATENCY_MS", 20);
    let mock = Mock::start(MockConfig {
        tickets,
        latency: Duration::from_millis(latency),
        ..Default::default()
    })
    .await;
    println!(
        "rest connector vs mock-saas: {tickets} records, {page}/page, {latency} ms per response"
    );
    println!(
        "{:<28} {:>8} {:>10} {:>12} {:>14}",
        "paging", "in-flight", "seconds", "pages/s", "records/s"
    );
    let styles = [
        (
            "offset+total",
            json!({"path": "/offset/tickets", "records": "$.data[*]",
            "paginator": {"type": "offset", "limit": page, "total_path": "$.total"}}),
        ),
        (
            "page_number+total_pages",
            json!({"path": "/page/tickets", "records": "$.items[*]",
            "paginator": {"type": "page_number", "size_param": "per_page", "size": page, "total_pages_path": "$.total_pages"}}),
        ),
        (
            "cursor (sequential)",
            json!({"path": "/cursor/tickets", "records": "$.data[*]", "params": {"limit": page.to_string()},
            "paginator": {"type": "cursor", "token_path": "$.meta.next_cursor", "param": "cursor"}}),
        ),
    ];
    for (name, ep) in styles {
        for inflight in [1usize, 4, 16] {
            let props = json!({"base_url": mock.url(), "concurrency": inflight, "endpoints": {"t": ep.clone()}});
            let src =
                RestSource::new(props.as_object().unwrap(), None, Authenticator::none()).unwrap();
            let req = ReadRequest {
                entity: "t".into(),
                window: None,
                incremental_field: None,
                page_size: None,
                filters: vec![],
            };
            let t0 = Instant::now();
            let (mut records, mut cursor) = (0usize, None);
            loop {
                let p = src.read_page(&req, cursor.as_ref()).await.expect("read");
                records += p.records.len();
                match p.next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            let secs = t0.elapsed().as_secs_f64();
            assert_eq!(records as u64, tickets, "{name}: every record once");
            let pages = tickets.div_ceil(page) as f64;
            println!(
                "{name:<28} {inflight:>8} {secs:>10.2} {:>12.1} {:>14.0}",
                pages / secs,
                records as f64 / secs
            );
        }
    }
}
