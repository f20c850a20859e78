//! The built-in declarative sources (`stripe`, `shopify`, `github`: `rest` definitions shipped
//! in `shared/src/connector/declarative/`) against mocks speaking each vendor's dialect: first
//! runs with typed values, incremental windows and their boundaries, records changed while a run
//! pages, faults, refused credentials, the vendors' rate-limit headers, and the example flows.
//! One binary for the three, to keep link time down.

use ferry_tests::harness::Local;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// HTTP settings that keep retries quick.
fn quick_http() -> Value {
    json!({"timeout_ms": 5000, "max_retries": 4, "backoff_initial_ms": 5, "backoff_max_ms": 40})
}

fn flow(name: &str, connector: &str, entity: &str, properties: &Value, extra: &str) -> String {
    format!(
        "name: {name}\nsource:\n  connector: {connector}\n  profile: {connector}\n  entity: {entity}\n  properties: {}\n{extra}destination:\n  local: out\n  format: jsonl\n  compression: none\ntasks:\n  - map_all: {{}}\ntrigger:\n  on_demand: {{}}\n",
        serde_json::to_string(properties).unwrap()
    )
}

fn incremental(field: &str, from: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "  incremental:\n    field: {field}\n    first_execution_from: {}\n    offset: 1s\n",
        from.to_rfc3339()
    )
}

async fn local_with(profile: &str, secret: Value) -> Local {
    let local = Local::new();
    local.put_secret(profile, secret).await;
    local
}

/// Merge `extra` over `base` (objects key by key).
fn with(mut base: Value, extra: Value) -> Value {
    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }
    merge(&mut base, extra);
    base
}

fn failure(out: &ferry::local::RunOutcome) -> (String, String) {
    let f = out.failure.as_ref().expect("the run fails");
    (f.error.clone(), f.cause.clone())
}

mod stripe {
    use super::*;
    use ferry_tests::saas::stripe::{StripeConfig, StripeMock};
    use ferry_tests::Fault;

    const KEY: &str = "sk_test_51Ferry";

    fn props(mock: &StripeMock, extra: Value) -> Value {
        with(json!({"base_url": mock.url(), "http": quick_http()}), extra)
    }

    async fn local() -> Local {
        local_with(
            "stripe",
            json!({"type": "bearer", "token": KEY, "hosts": ["127.0.0.1"]}),
        )
        .await
    }

    fn ids(rows: &[Value]) -> (usize, BTreeSet<String>) {
        let v: Vec<String> = rows
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        (v.len(), v.into_iter().collect())
    }

    #[tokio::test]
    async fn a_first_run_pages_by_starting_after_with_typed_values() {
        let mock = StripeMock::start(StripeConfig::default()).await;
        let local = local().await;
        let out = local
            .run(&flow(
                "st-full",
                "stripe",
                "charges",
                &props(&mock, json!({})),
                "",
            ))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let rows = local.output("out/st-full");
        let (n, set) = ids(&rows);
        assert_eq!(n, set.len(), "duplicates");
        assert_eq!(set, mock.ids_in("charges", None, None));
        let r = rows
            .iter()
            .find(|r| r["id"].as_str().unwrap().ends_with("000010"))
            .unwrap();
        // Money in minor units as integers; `created` (Unix seconds) as a timestamp.
        assert_eq!(r["amount"], json!(1070));
        assert_eq!(r["currency"], json!("jpy"));
        let created = r["created"].as_str().unwrap();
        assert!(created.starts_with("2026-03-01T12:00:03"), "{created}");
        assert_eq!(r["metadata"], json!("{\"order_id\":\"10\"}"));
        assert_eq!(r["description"], json!("Order #10"));
        assert!(r.get("outcome").is_none(), "only the declared fields");
        let reqs: Vec<_> = mock
            .requests()
            .into_iter()
            .filter(|r| r.path == "/v1/charges")
            .collect();
        assert_eq!(reqs.len(), 3, "250 charges in pages of 100");
        assert!(reqs
            .iter()
            .all(|r| r.status == 200 && r.query.contains("limit=100")));
        assert!(!reqs[0].query.contains("starting_after"));
        assert!(reqs[1].query.contains("starting_after=ch_"));
        assert!(
            !reqs[0].query.contains("created"),
            "a complete run has no window"
        );
    }

    #[tokio::test]
    async fn incremental_windows_are_created_gt_start_and_lte_end() {
        let mock = StripeMock::start(StripeConfig::default()).await;
        let local = local().await;
        // Objects 90, 91 and 92 share this second: the window's start excludes them all.
        let from = mock.created(90);
        let yaml = flow(
            "st-inc",
            "stripe",
            "invoices",
            &props(&mock, json!({})),
            &incremental("created", from),
        );
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let (n, set) = ids(&local.output("out/st-inc"));
        assert_eq!(n, set.len(), "duplicates");
        assert_eq!(set, mock.ids_in("invoices", Some(from), None));
        assert_eq!(set.len(), 250 - 92);
        let reqs = mock.requests();
        let first = &reqs[0];
        assert!(
            first
                .query
                .contains(&format!("created%5Bgt%5D={}", from.timestamp())),
            "{}",
            first.query
        );
        assert!(first.query.contains("created%5Blte%5D="), "{}", first.query);

        // Nothing new: the next run reads nothing. New invoices: the run after reads them.
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        assert_eq!(local.output("out/st-inc").len(), n);
        mock.create("invoices", 3);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let (n2, set) = ids(&local.output("out/st-inc"));
        assert_eq!(n2, n + 3);
        assert_eq!(set, mock.ids_in("invoices", Some(from), None));
    }

    /// Objects created while a run pages are newer than its window's end: the next run reads
    /// them, and `starting_after` paging neither repeats nor skips anything meanwhile.
    #[tokio::test]
    async fn objects_created_while_a_run_pages_are_read_by_the_next_run() {
        let mock = StripeMock::start(StripeConfig {
            records: 320,
            ..Default::default()
        })
        .await;
        let local = local().await;
        let from = mock.created(0) - chrono::Duration::seconds(1);
        let yaml = flow(
            "st-moving",
            "stripe",
            "customers",
            &props(&mock, json!({})),
            &format!(
                "{}  chunk: {{ records: 100 }}\n",
                incremental("created", from)
            ),
        );
        mock.create_after(2, "customers", 4);
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        assert_eq!(mock.ids_in("customers", None, None).len(), 324);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let (n, set) = ids(&local.output("out/st-moving"));
        assert_eq!(n, set.len(), "duplicates");
        assert_eq!(set, mock.ids_in("customers", Some(from), None));
    }

    #[tokio::test]
    async fn faults_and_429s_are_retried_without_loss_or_duplicates() {
        let mock = StripeMock::start(StripeConfig {
            records: 700,
            ..Default::default()
        })
        .await;
        let local = local().await;
        mock.fault_every(
            2,
            vec![Fault::status(500), Fault::Truncated, Fault::status(429)],
        );
        let out = local
            .run(&flow(
                "st-faults",
                "stripe",
                "events",
                &props(&mock, json!({})),
                "",
            ))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let (n, set) = ids(&local.output("out/st-faults"));
        assert_eq!(n, set.len(), "duplicates");
        assert_eq!(set, mock.ids_in("events", None, None));
        let statuses: BTreeSet<u16> = mock.requests().iter().map(|r| r.status).collect();
        assert!(
            statuses.contains(&429) && statuses.contains(&500),
            "{statuses:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_key_ends_the_run_auth_failed_without_the_key() {
        let mock = StripeMock::start(StripeConfig::default()).await;
        let local = local_with(
            "stripe",
            json!({"type": "bearer", "token": "sk_live_revoked_9999", "hosts": ["127.0.0.1"]}),
        )
        .await;
        let out = local
            .run(&flow(
                "st-auth",
                "stripe",
                "charges",
                &props(&mock, json!({})),
                "",
            ))
            .await;
        let (error, cause) = failure(&out);
        assert_eq!(error, "AuthFailed", "{cause}");
        assert!(
            cause.contains("'stripe'") && cause.contains("401"),
            "{cause}"
        );
        assert!(!cause.contains("sk_live_revoked_9999"), "{cause}");
    }

    /// A profile that does not name its hosts is refused before any request: the key cannot be
    /// sent wherever a flow's `base_url` points.
    #[tokio::test]
    async fn a_profile_without_hosts_is_refused_before_any_request() {
        let mock = StripeMock::start(StripeConfig::default()).await;
        let local = local_with("stripe", json!({"type": "bearer", "token": KEY})).await;
        let out = local
            .run(&flow(
                "st-hosts",
                "stripe",
                "charges",
                &props(&mock, json!({})),
                "",
            ))
            .await;
        let (error, cause) = failure(&out);
        assert_eq!(error, "AuthFailed", "{cause}");
        assert!(cause.contains("\"hosts\": [\"127.0.0.1\"]"), "{cause}");
        assert!(mock.requests().is_empty());
    }

    #[tokio::test]
    async fn flow_mistakes_are_named_with_the_fix() {
        let mock = StripeMock::start(StripeConfig::default()).await;
        let local = local().await;
        // An entity the definition does not have: refused when the flow is parsed.
        let e = ferry::flow::Flow::parse(
            &flow("st-bad", "stripe", "refunds", &props(&mock, json!({})), ""),
            "f.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("source.entity") && e.contains("charges"), "{e}");
        // A property the rest connector does not know.
        let e = ferry::flow::Flow::parse(
            &flow(
                "st-bad",
                "stripe",
                "charges",
                &props(&mock, json!({"pagesize": 5})),
                "",
            ),
            "f.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("pagesize"), "{e}");
        // Stripe filters on `created` only.
        let from = mock.created(10);
        let out = local
            .run(&flow(
                "st-field",
                "stripe",
                "charges",
                &props(&mock, json!({})),
                &incremental("updated", from),
            ))
            .await;
        let (error, cause) = failure(&out);
        assert_eq!(error, "InvalidFlow", "{cause}");
        assert!(
            cause.contains("source.incremental.field")
                && cause.contains("incremental.field: created"),
            "{cause}"
        );
        // Whole-second timestamps need an offset.
        let out = local
            .run(&flow(
                "st-offset",
                "stripe",
                "charges",
                &props(&mock, json!({})),
                &incremental("created", from).replace("    offset: 1s\n", ""),
            ))
            .await;
        let (error, cause) = failure(&out);
        assert_eq!(error, "InvalidFlow", "{cause}");
        assert!(cause.contains("source.incremental.offset"), "{cause}");
        assert!(mock.requests().is_empty());
    }

    #[tokio::test]
    async fn the_example_flow_validates_and_runs_against_the_mock() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/flows/stripe-charges.yaml"
        ))
        .unwrap();
        ferry::flow::Flow::parse(&text, "stripe-charges.yaml").expect("the example is valid");
        let mock = StripeMock::start(StripeConfig::default()).await;
        let local = local().await;
        let text = text
            .replace(
                "  properties: {}",
                &format!("  properties: {{ base_url: \"{}\" }}", mock.url()),
            )
            .replace("format: parquet", "format: jsonl")
            .replace("compression: zstd", "compression: none");
        assert!(text.contains(&mock.url()), "{text}");
        let out = local.run(&text).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let rows = local.output("ferry-out/stripe-charges");
        let (n, set) = ids(&rows);
        assert_eq!(n, set.len());
        assert_eq!(
            set,
            mock.ids_in(
                "charges",
                Some(mock.created(0) - chrono::Duration::days(1)),
                None
            )
        );
    }
}

mod shopify {
    use super::*;
    use ferry_tests::saas::shopify::{ShopifyConfig, ShopifyMock};
    use ferry_tests::Fault;

    const TOKEN: &str = "shpat_ferry_test";

    fn props(mock: &ShopifyMock, extra: Value) -> Value {
        with(
            json!({"shop": "acme-store", "base_url": mock.url(), "http": quick_http()}),
            extra,
        )
    }

    async fn local() -> Local {
        local_with(
            "shopify",
            json!({"type": "api_key", "key": TOKEN, "header": "X-Shopify-Access-Token", "hosts": ["127.0.0.1"]}),
        )
        .await
    }

    fn ids(rows: &[Value]) -> (usize, BTreeSet<u64>) {
        let v: Vec<u64> = rows.iter().map(|r| r["id"].as_u64().unwrap()).collect();
        (v.len(), v.into_iter().collect())
    }

    #[tokio::test]
    async fn a_first_run_follows_the_link_header_and_reads_money_as_decimal() {
        let mock = ShopifyMock::start(ShopifyConfig::default()).await;
        let local = local().await;
        let out = local
            .run(&flow(
                "sh-full",
                "shopify",
                "orders",
                &props(&mock, json!({})),
                "",
            ))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let rows = local.output("out/sh-full");
        let (n, set) = ids(&rows);
        assert_eq!(n, set.len(), "duplicates");
        // status=any: closed and cancelled orders too.
        assert_eq!(set, mock.ids_in("orders", None, None));
        assert_eq!(set.len(), 230);
        let r = rows
            .iter()
            .find(|r| r["order_number"] == json!(1003))
            .unwrap();
        // Decimal(20, 3) columns (the definition's unit test checks the types); JSON lines write
        // them as numbers.
        assert_eq!(r["total_price"], json!(199.3), "{r}");
        assert_eq!(r["line_items"][0]["price"], json!(199.0), "{r}");
        assert_eq!(r["line_items"][0]["quantity"], json!(1));
        let updated = r["updated_at"].as_str().unwrap();
        assert!(
            updated.starts_with("2026-04-01T08:00:01"),
            "shop offset read: {updated}"
        );
        let r = rows
            .iter()
            .find(|r| r["order_number"] == json!(1010))
            .unwrap();
        assert_eq!(
            r["total_price"],
            json!(20000.0),
            "JPY has no minor unit: {r}"
        );
        let reqs: Vec<_> = mock.requests();
        assert_eq!(reqs.len(), 1, "230 orders fit one page of 250");
        assert!(reqs[0].query.contains("status=any") && reqs[0].query.contains("limit=250"));
    }

    #[tokio::test]
    async fn incremental_windows_use_updated_at_min_and_max_and_the_next_link_as_given() {
        let mock = ShopifyMock::start(ShopifyConfig::default()).await;
        let local = local().await;
        // Records 40 and 41 share this second: excluded (the window's start is exclusive).
        let from = mock.updated(40);
        let yaml = flow(
            "sh-inc",
            "shopify",
            "products",
            &props(
                &mock,
                json!({"endpoints": {"products": {"params": {"limit": "25"}}}}),
            ),
            &incremental("updated_at", from),
        );
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let (n, set) = ids(&local.output("out/sh-inc"));
        assert_eq!(n, set.len(), "duplicates");
        assert_eq!(set, mock.ids_in("products", Some(from), None));
        assert_eq!(set.len(), 230 - 41);
        let reqs = mock.requests();
        assert!(reqs.iter().all(|r| r.status == 200), "{reqs:?}");
        assert!(
            reqs[0].query.contains("updated_at_min=") && reqs[0].query.contains("updated_at_max=")
        );
        // Later pages carry page_info (percent-encoded as the Link gave it) and limit only.
        assert!(reqs.len() >= 8);
        for r in &reqs[1..] {
            assert!(
                r.query.contains("page_info=") && !r.query.contains("updated_at"),
                "{}",
                r.query
            );
        }
        assert!(reqs.iter().any(|r| r.query.contains("%3D")
            || r.query.contains("%2B")
            || r.query.contains("%2F")));
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        assert_eq!(local.output("out/sh-inc").len(), n, "nothing changed");
    }

    /// Records updated while a run pages leave its result set (the page token keeps the first
    /// request's `updated_at_max`); the next run reads them.
    #[tokio::test]
    async fn records_updated_while_a_run_pages_are_not_lost_at_the_next_run() {
        let mock = ShopifyMock::start(ShopifyConfig::default()).await;
        let local = local().await;
        let from = mock.updated(0) - chrono::Duration::seconds(1);
        let yaml = flow(
            "sh-moving",
            "shopify",
            "customers",
            &props(
                &mock,
                json!({"endpoints": {"customers": {"params": {"limit": "30"}}}}),
            ),
            &format!(
                "{}  chunk: {{ records: 60 }}\n",
                incremental("updated_at", from)
            ),
        );
        mock.touch_after(2, "customers", &[5, 6, 150, 151, 152]);
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let got: BTreeSet<(u64, String)> = local
            .output("out/sh-moving")
            .iter()
            .map(|r| {
                (
                    r["id"].as_u64().unwrap(),
                    r["updated_at"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let got_ids: BTreeSet<u64> = got.iter().map(|(i, _)| *i).collect();
        for (id, t) in mock.versions("customers") {
            assert!(got_ids.contains(&id), "record {id} was never delivered");
            assert!(
                got.iter().any(|(i, s)| *i == id
                    && chrono::DateTime::parse_from_rfc3339(s).unwrap() == t),
                "record {id} as of {t} was never delivered"
            );
        }
    }

    /// ferry reads `X-Shopify-Shop-Api-Call-Limit` and waits before the bucket is full, so a
    /// long read never runs into a 429.
    #[tokio::test]
    async fn the_leaky_bucket_header_keeps_reads_under_the_limit() {
        let mock = ShopifyMock::start(ShopifyConfig {
            bucket_size: 8.0,
            leak_per_second: 20.0,
            ..Default::default()
        })
        .await;
        let local = local().await;
        let p = props(
            &mock,
            json!({"http": {"rate_limit": {"leak_per_second": 20}},
                   "endpoints": {"orders": {"params": {"limit": "10"}}}}),
        );
        let out = local
            .run(&flow("sh-bucket", "shopify", "orders", &p, ""))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let reqs = mock.requests();
        assert_eq!(reqs.len(), 23);
        assert!(
            reqs.iter().all(|r| r.status == 200),
            "no 429: {:?}",
            reqs.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        let (n, set) = ids(&local.output("out/sh-bucket"));
        assert_eq!((n, set.len()), (230, 230));

        // Without the rule the same read fills the bucket: 429 + Retry-After, retried.
        let mock = ShopifyMock::start(ShopifyConfig {
            bucket_size: 8.0,
            leak_per_second: 20.0,
            ..Default::default()
        })
        .await;
        let p = props(
            &mock,
            json!({"http": {"rate_limit": null, "max_retries": 8},
                   "endpoints": {"orders": {"params": {"limit": "10"}}}}),
        );
        let out = local
            .run(&flow("sh-bucket2", "shopify", "orders", &p, ""))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        assert!(
            mock.requests().iter().any(|r| r.status == 429),
            "the mock's bucket is real"
        );
        assert_eq!(local.output("out/sh-bucket2").len(), 230);
    }

    #[tokio::test]
    async fn faults_are_retried_without_loss_or_duplicates() {
        let mock = ShopifyMock::start(ShopifyConfig::default()).await;
        let local = local().await;
        mock.fault_every(
            2,
            vec![Fault::status(503), Fault::Truncated, Fault::throttle("0.2")],
        );
        let p = props(
            &mock,
            json!({"endpoints": {"orders": {"params": {"limit": "20"}}}}),
        );
        let out = local
            .run(&flow("sh-faults", "shopify", "orders", &p, ""))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let (n, set) = ids(&local.output("out/sh-faults"));
        assert_eq!(n, set.len(), "duplicates");
        assert_eq!(set, mock.ids_in("orders", None, None));
    }

    #[tokio::test]
    async fn a_refused_token_ends_the_run_auth_failed() {
        let mock = ShopifyMock::start(ShopifyConfig::default()).await;
        let local = local_with(
            "shopify",
            json!({"type": "api_key", "key": "shpat_wrong_1234", "header": "X-Shopify-Access-Token", "hosts": ["127.0.0.1"]}),
        )
        .await;
        let out = local
            .run(&flow(
                "sh-auth",
                "shopify",
                "orders",
                &props(&mock, json!({})),
                "",
            ))
            .await;
        let (error, cause) = failure(&out);
        assert_eq!(error, "AuthFailed", "{cause}");
        assert!(
            cause.contains("'shopify'") && cause.contains("401"),
            "{cause}"
        );
        assert!(!cause.contains("shpat_wrong_1234"), "{cause}");
    }

    #[tokio::test]
    async fn the_example_flow_validates_and_runs_against_the_mock() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/flows/shopify-orders.yaml"
        ))
        .unwrap();
        ferry::flow::Flow::parse(&text, "shopify-orders.yaml").expect("the example is valid");
        let mock = ShopifyMock::start(ShopifyConfig::default()).await;
        let local = local().await;
        let text = text
            .replace(
                "    shop: acme-store\n",
                &format!("    shop: acme-store\n    base_url: \"{}\"\n", mock.url()),
            )
            .replace("format: parquet", "format: jsonl")
            .replace("compression: zstd", "compression: none");
        assert!(text.contains(&mock.url()), "{text}");
        let out = local.run(&text).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let (n, set) = ids(&local.output("ferry-out/shopify-orders"));
        assert_eq!(n, set.len());
        assert_eq!(set, mock.ids_in("orders", None, None));
    }
}

mod github {
    use super::*;
    use ferry_tests::saas::github::{GitHubConfig, GitHubMock, OWNER, REPO};
    use ferry_tests::Fault;

    const TOKEN: &str = "github_pat_11FERRY";

    fn props(mock: &GitHubMock, extra: Value) -> Value {
        with(
            json!({"owner": OWNER, "repo": REPO, "base_url": mock.url(), "http": quick_http()}),
            extra,
        )
    }

    async fn local() -> Local {
        local_with(
            "github",
            json!({"type": "bearer", "token": TOKEN, "hosts": ["127.0.0.1"]}),
        )
        .await
    }

    fn ids(rows: &[Value]) -> (usize, BTreeSet<u64>) {
        let v: Vec<u64> = rows.iter().map(|r| r["id"].as_u64().unwrap()).collect();
        (v.len(), v.into_iter().collect())
    }

    fn per_page(entity: &str, n: u32) -> Value {
        json!({"endpoints": {entity: {"params": {"per_page": n.to_string()}}}})
    }

    #[tokio::test]
    async fn a_first_run_reads_issues_without_pull_requests_with_typed_values() {
        let mock = GitHubMock::start(GitHubConfig::default()).await;
        let local = local().await;
        let out = local
            .run(&flow(
                "gh-full",
                "github",
                "issues",
                &props(&mock, json!({})),
                "",
            ))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let rows = local.output("out/gh-full");
        let (n, set) = ids(&rows);
        assert_eq!(n, set.len(), "duplicates");
        assert_eq!(set, mock.ids_in(false, None));
        assert_eq!(set.len(), 260 - 65, "pull requests are not issues");
        let r = rows.iter().find(|r| r["number"] == json!(10)).unwrap();
        assert_eq!(r["user"]["login"], json!("octocat"));
        assert_eq!(r["labels"][0]["name"], json!("bug"));
        assert_eq!(r["body"], Value::Null);
        assert_eq!(r["comments"], json!(3));
        let reqs = mock.requests();
        assert_eq!(reqs.len(), 3, "260 issues in pages of 100");
        for q in [
            "state=all",
            "sort=updated",
            "direction=desc",
            "per_page=100",
        ] {
            assert!(reqs.iter().all(|r| r.query.contains(q)), "{q}: {reqs:?}");
        }
    }

    #[tokio::test]
    async fn incremental_issues_use_since_and_the_window_boundary_holds() {
        let mock = GitHubMock::start(GitHubConfig::default()).await;
        let local = local().await;
        // Issues 42 and 43 share this second: excluded, the window's start is exclusive.
        let from = mock.updated(42);
        let yaml = flow(
            "gh-inc",
            "github",
            "issues",
            &props(&mock, per_page("issues", 30)),
            &incremental("updated_at", from),
        );
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let (n, set) = ids(&local.output("out/gh-inc"));
        assert_eq!(n, set.len(), "duplicates");
        assert_eq!(set, mock.ids_in(false, Some(from)));
        assert!(!set.contains(&(1_296_269_000 + 43)) && set.contains(&(1_296_269_000 + 45)));
        let reqs = mock.requests();
        assert!(
            reqs[0].query.contains("since=2026-05-01T09%3A00%3A21Z"),
            "{}",
            reqs[0].query
        );
        // The Link URLs echo since percent-encoded; they are followed as given.
        assert!(
            reqs.len() > 2
                && reqs[1..]
                    .iter()
                    .all(|r| r.query.contains("since=") && r.query.contains("page="))
        );
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        assert_eq!(local.output("out/gh-inc").len(), n);
    }

    /// Pull requests have no time filter: newest first by `updated`, paging stops at the first
    /// page that reaches the window's start.
    #[tokio::test]
    async fn incremental_pulls_stop_paging_at_the_windows_start() {
        let mock = GitHubMock::start(GitHubConfig::default()).await;
        let local = local().await;
        let from = mock.updated(200);
        let out = local
            .run(&flow(
                "gh-pulls",
                "github",
                "pulls",
                &props(&mock, per_page("pulls", 10)),
                &incremental("updated_at", from),
            ))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let (n, set) = ids(&local.output("out/gh-pulls"));
        assert_eq!(n, set.len());
        assert_eq!(set, mock.ids_in(true, Some(from)));
        assert_eq!(set.len(), 15);
        let pulls = mock
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/pulls"))
            .count();
        assert_eq!(
            pulls, 2,
            "65 pull requests in 7 pages; the second reaches the start"
        );
        // A complete run reads them all.
        let out = local
            .run(&flow(
                "gh-pulls-all",
                "github",
                "pulls",
                &props(&mock, per_page("pulls", 10)),
                "",
            ))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        assert_eq!(
            ids(&local.output("out/gh-pulls-all")).1,
            mock.ids_in(true, None)
        );
    }

    #[tokio::test]
    async fn incremental_commits_by_their_committer_date() {
        let mock = GitHubMock::start(GitHubConfig::default()).await;
        let local = local().await;
        let from = mock.updated(100);
        let out = local
            .run(&flow(
                "gh-commits",
                "github",
                "commits",
                &props(&mock, json!({})),
                &incremental("committed_at", from),
            ))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let rows = local.output("out/gh-commits");
        let shas: BTreeSet<String> = rows
            .iter()
            .map(|r| r["sha"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(rows.len(), shas.len());
        assert_eq!(shas, mock.shas_in(Some(from)));
        let r = &rows[0];
        assert_eq!(r["committed_at"], r["commit"]["committer"]["date"]);
        assert!(r["commit"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Fix all the bugs"));
    }

    /// Issues edited while a run pages move to the first page (newest first): the pages behind
    /// shift towards the end, so nothing is skipped, and the edited issues are read next run.
    #[tokio::test]
    async fn issues_edited_while_a_run_pages_are_not_lost_at_the_next_run() {
        let mock = GitHubMock::start(GitHubConfig::default()).await;
        let local = local().await;
        let from = mock.updated(0) - chrono::Duration::seconds(1);
        let yaml = flow(
            "gh-moving",
            "github",
            "issues",
            &props(&mock, per_page("issues", 20)),
            &format!(
                "{}  chunk: {{ records: 30 }}\n",
                incremental("updated_at", from)
            ),
        );
        mock.touch_after(3, &[5, 6, 250, 251, 150]);
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let got: BTreeSet<(u64, String)> = local
            .output("out/gh-moving")
            .iter()
            .map(|r| {
                (
                    r["id"].as_u64().unwrap(),
                    r["updated_at"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for (id, t) in mock.issue_versions() {
            assert!(
                got.iter().any(|(i, s)| *i == id
                    && chrono::DateTime::parse_from_rfc3339(s).unwrap() == t),
                "issue {id} as of {t} was never delivered"
            );
        }
    }

    /// `x-ratelimit-remaining: 0` holds requests back until `x-ratelimit-reset`; a secondary
    /// limit (403 with its message) waits `retry-after` and is retried; a 403 that is not a
    /// rate limit is a permission error.
    #[tokio::test]
    async fn rate_limit_headers_and_secondary_limits_are_honoured() {
        let mock = GitHubMock::start(GitHubConfig::default()).await;
        let local = local().await;
        mock.set_remaining(2, 2);
        let out = local
            .run(&flow(
                "gh-rl",
                "github",
                "issues",
                &props(&mock, per_page("issues", 50)),
                "",
            ))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let reqs = mock.requests();
        assert!(
            reqs.iter().all(|r| r.status == 200),
            "waited instead of a 403: {reqs:?}"
        );
        assert!(
            reqs[2].at.duration_since(reqs[1].at) >= Duration::from_millis(900),
            "the third request waited for the reset"
        );
        assert_eq!(ids(&local.output("out/gh-rl")).1, mock.ids_in(false, None));

        let mock = GitHubMock::start(GitHubConfig::default()).await;
        mock.secondary_limit(Some("1"));
        let out = local
            .run(&flow(
                "gh-rl2",
                "github",
                "commits",
                &props(&mock, json!({})),
                "",
            ))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let reqs = mock.requests();
        assert_eq!(reqs[0].status, 403);
        assert!(reqs[1].at.duration_since(reqs[0].at) >= Duration::from_millis(950));
        // Without retry-after: "wait at least one minute" (here the flow says one second).
        let mock = GitHubMock::start(GitHubConfig::default()).await;
        mock.secondary_limit(None);
        let p = props(
            &mock,
            json!({"http": {"rate_limit": {"default_wait_seconds": 1}}}),
        );
        let out = local
            .run(&flow("gh-rl3", "github", "commits", &p, ""))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let reqs = mock.requests();
        assert!(reqs[1].at.duration_since(reqs[0].at) >= Duration::from_millis(950));

        // A plain 403 (no rate-limit words, requests remaining): the token lacks permission.
        let mock = GitHubMock::start(GitHubConfig::default()).await;
        mock.push_faults([Fault::status(403)]);
        let out = local
            .run(&flow(
                "gh-403",
                "github",
                "issues",
                &props(&mock, json!({})),
                "",
            ))
            .await;
        let (error, cause) = failure(&out);
        assert_eq!(error, "AuthFailed", "{cause}");
        assert!(cause.contains("403"), "{cause}");
    }

    #[tokio::test]
    async fn faults_are_retried_without_loss_or_duplicates() {
        let mock = GitHubMock::start(GitHubConfig::default()).await;
        let local = local().await;
        mock.fault_every(
            2,
            vec![Fault::status(502), Fault::Truncated, Fault::throttle("0")],
        );
        let out = local
            .run(&flow(
                "gh-faults",
                "github",
                "issues",
                &props(&mock, per_page("issues", 25)),
                "",
            ))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let (n, set) = ids(&local.output("out/gh-faults"));
        assert_eq!(n, set.len(), "duplicates");
        assert_eq!(set, mock.ids_in(false, None));
    }

    #[tokio::test]
    async fn a_refused_token_ends_the_run_auth_failed_and_a_bad_repo_is_named() {
        let mock = GitHubMock::start(GitHubConfig::default()).await;
        let local = local_with(
            "github",
            json!({"type": "bearer", "token": "ghp_revoked_5678", "hosts": ["127.0.0.1"]}),
        )
        .await;
        let out = local
            .run(&flow(
                "gh-auth",
                "github",
                "issues",
                &props(&mock, json!({})),
                "",
            ))
            .await;
        let (error, cause) = failure(&out);
        assert_eq!(error, "AuthFailed", "{cause}");
        assert!(
            cause.contains("'github'") && cause.contains("401"),
            "{cause}"
        );
        assert!(!cause.contains("ghp_revoked_5678"), "{cause}");
        // A repository name with a slash would change the path: refused with the rule.
        let e = ferry::flow::Flow::parse(
            &flow(
                "gh-bad",
                "github",
                "issues",
                &props(&mock, json!({"repo": "a/../b"})),
                "",
            ),
            "f.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("source.properties.repo"), "{e}");
    }

    #[tokio::test]
    async fn the_example_flow_validates_and_runs_against_the_mock() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/flows/github-issues.yaml"
        ))
        .unwrap();
        ferry::flow::Flow::parse(&text, "github-issues.yaml").expect("the example is valid");
        let mock = GitHubMock::start(GitHubConfig::default()).await;
        let local = local().await;
        let text = text
            .replace("owner: octocat", &format!("owner: {OWNER}"))
            .replace(
                "repo: hello-world",
                &format!("repo: {REPO}\n    base_url: \"{}\"", mock.url()),
            )
            .replace("format: parquet", "format: jsonl")
            .replace("compression: zstd", "compression: none");
        assert!(text.contains(&mock.url()), "{text}");
        let out = local.run(&text).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let (n, set) = ids(&local.output("ferry-out/github-issues"));
        assert_eq!(n, set.len());
        assert_eq!(
            set,
            mock.ids_in(false, Some(mock.updated(0) - chrono::Duration::days(1)))
        );
    }
}
