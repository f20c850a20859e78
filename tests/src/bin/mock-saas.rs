//! The mock SaaS server as a standalone process, for benchmarks and manual runs.
//!
//! `mock-saas [--port 8099] [--tickets 10000] [--latency-ms 0] [--ignore-filter]`
//! prints its base URL and serves until killed.

use anyhow::{bail, Context};
use ferry_tests::{Mock, MockConfig};
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cfg = MockConfig::default();
    let mut port = 0u16;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--port" => port = val("--port")?.parse().context("--port")?,
            "--tickets" => cfg.tickets = val("--tickets")?.parse().context("--tickets")?,
            "--latency-ms" => {
                cfg.latency =
                    Duration::from_millis(val("--latency-ms")?.parse().context("--latency-ms")?)
            }
            "--page" => cfg.default_page = val("--page")?.parse().context("--page")?,
            "--ignore-filter" => cfg.ignore_filter = true,
            "-h" | "--help" => {
                println!("mock-saas [--port N] [--tickets N] [--latency-ms N] [--page N] [--ignore-filter]");
                return Ok(());
            }
            other => bail!("unknown argument {other}; try --help"),
        }
    }
    let mock = Mock::start_on(&format!("127.0.0.1:{port}"), cfg).await;
    println!("{}", mock.url());
    mock.wait().await;
    Ok(())
}
