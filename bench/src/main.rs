//! The bench's API server (`scripts/bench.sh e2e`): a paginated JSON API serving
//! pre-rendered pages, so that what the bench measures is the client, not the server.
//!
//! ```text
//! bench-api serve  [--records 1000000] [--page 1000] [--port 0]   prints "listening on http://…"
//! bench-api selftest [--records 1000000] [--page 1000]            serves and reads itself
//! ```
//!
//! `GET /items?limit=L&cursor=N` (cursor paging: the body's `next_cursor`, null on the last
//! page) and `GET /items?limit=L&offset=N` (offset paging: the body's `total`) answer
//! `{"data": [...], "next_cursor": "…", "total": N}`. Every page is rendered once at start-up
//! and served as a shared buffer: a response costs a lookup and a socket write. Records are
//! flat, ~460 bytes of JSON: `id` (unique, 0..N), timestamps, text, numbers and a boolean.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

struct Pages {
    page: u64,
    records: u64,
    bodies: Vec<axum::body::Bytes>,
}

fn record(out: &mut String, id: u64) {
    use std::fmt::Write;
    // Updated one second apart from 2026-01-01T00:00:00Z, created a day earlier.
    let base = 1_767_225_600i64;
    let t = |s: i64| {
        chrono::DateTime::from_timestamp(s, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    const STATUS: [&str; 4] = ["open", "pending", "solved", "closed"];
    const COUNTRY: [&str; 5] = ["FR", "DE", "US", "JP", "BR"];
    let _ = write!(
        out,
        r#"{{"id":{id},"updated_at":"{}","created_at":"{}","name":"Account {id:07}","email":"user{id}@example.com","status":"{}","priority":{},"country":"{}","amount":{}.{:02},"quantity":{},"active":{},"score":{:.3},"description":"Synthetic record {id:07} for the ferry end-to-end bench: a flat object with typical SaaS fields and some free text to reach a realistic size."}}"#,
        t(base + id as i64),
        t(base + id as i64 - 86_400),
        STATUS[(id % 4) as usize],
        id % 5,
        COUNTRY[(id % 5) as usize],
        id % 100_000,
        id % 100,
        id % 1000,
        id % 3 == 0,
        (id % 997) as f64 / 7.0,
    );
}

fn render(records: u64, page: u64) -> Pages {
    let n_pages = records.div_ceil(page).max(1);
    let mut bodies = Vec::with_capacity(n_pages as usize);
    let mut s = String::new();
    for p in 0..n_pages {
        s.clear();
        s.push_str(r#"{"data":["#);
        let (from, to) = (p * page, ((p + 1) * page).min(records));
        for id in from..to {
            if id > from {
                s.push(',');
            }
            record(&mut s, id);
        }
        s.push_str("],\"next_cursor\":");
        if to < records {
            s.push_str(&format!("\"{to}\""));
        } else {
            s.push_str("null");
        }
        s.push_str(&format!(",\"total\":{records}}}"));
        bodies.push(axum::body::Bytes::from(s.clone().into_bytes()));
    }
    Pages {
        page,
        records,
        bodies,
    }
}

async fn items(State(p): State<Arc<Pages>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let num = |k: &str| q.get(k).map(|v| v.parse::<u64>());
    let limit = match num("limit") {
        None => p.page,
        Some(Ok(l)) => l,
        Some(Err(_)) => return (StatusCode::BAD_REQUEST, "limit: not a number").into_response(),
    };
    if limit != p.page {
        return (
            StatusCode::BAD_REQUEST,
            format!("limit must be {} (the pre-rendered page size)", p.page),
        )
            .into_response();
    }
    let pos = match num("cursor").or_else(|| num("offset")) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return (StatusCode::BAD_REQUEST, "cursor/offset: not a number").into_response()
        }
    };
    if pos % p.page != 0 {
        return (
            StatusCode::BAD_REQUEST,
            "position must be a multiple of the page size",
        )
            .into_response();
    }
    let body = if pos >= p.records {
        // Past the end: an empty page.
        axum::body::Bytes::from(format!(
            r#"{{"data":[],"next_cursor":null,"total":{}}}"#,
            p.records
        ))
    } else {
        p.bodies[(pos / p.page) as usize].clone()
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: not a number")))
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().cloned().unwrap_or_else(|| "serve".into());
    let records = arg(&args, "--records", 1_000_000);
    let page = arg(&args, "--page", 1000);
    let port = arg(&args, "--port", 0);
    let t = Instant::now();
    let pages = Arc::new(render(records, page));
    let bytes: usize = pages.bodies.iter().map(|b| b.len()).sum();
    eprintln!(
        "rendered {records} records in {} pages ({:.1} MB, {:.0} bytes/record) in {:.1}s",
        pages.bodies.len(),
        bytes as f64 / 1e6,
        bytes as f64 / records.max(1) as f64,
        t.elapsed().as_secs_f64()
    );
    // The server gets one worker thread: the bench's client owns the other core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let app = Router::new()
            .route("/items", get(items))
            .with_state(pages.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port as u16)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        match mode.as_str() {
            "serve" => {
                println!("listening on {url}");
                use std::io::Write;
                std::io::stdout().flush()?;
                server.await??;
            }
            "selftest" => selftest(&url, records, page, bytes).await?,
            other => anyhow::bail!("unknown mode '{other}' (serve | selftest)"),
        }
        Ok(())
    })
}

/// Read every page over one connection, as fast as the server answers, and print the rate.
async fn selftest(url: &str, records: u64, page: u64, bytes: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    for style in ["cursor", "offset"] {
        let t = Instant::now();
        let (mut pos, mut got, mut read) = (0u64, 0u64, 0usize);
        loop {
            let body = client
                .get(format!("{url}/items?limit={page}&{style}={pos}"))
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            read += body.len();
            // Count records without parsing: records are flat, so one `{` each besides the
            // page's own.
            let n = (body.iter().filter(|&&b| b == b'{').count() as u64).saturating_sub(1);
            got += n;
            pos += page;
            if n == 0 || pos >= records {
                break;
            }
        }
        let s = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            got == records,
            "{style}: read {got} records, expected {records}"
        );
        println!(
            "bench-api alone ({style} paging, 1 connection): {records} records in {s:.2}s = {:.0} records/s, {:.0} MB/s",
            got as f64 / s,
            read as f64 / 1e6 / s
        );
    }
    let _ = bytes;
    Ok(())
}
