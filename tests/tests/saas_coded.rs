//! The coded connectors of issue #20 against mocks speaking each vendor's dialect, in one test
//! binary (link time): Jira Cloud (JQL minute windows in the user's time zone, enhanced search
//! paging, changelogs), Marketo (bulk extract jobs, 31-day ranges, errors in HTTP 200 bodies,
//! CSV files in Range parts) and Google Analytics 4 (runReport by day, typed metrics, quotas).

use ferry::connector::auth::Authenticator;
use ferry::connector::{ReadRequest, Source};
use ferry::model::Window;
use ferry::ports::Secret;
use ferry_tests::harness::Local;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

fn http() -> Value {
    json!({"timeout_ms": 5000, "max_retries": 2, "backoff_initial_ms": 5, "backoff_max_ms": 20})
}

fn merge(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn flow(name: &str, connector: &str, entity: &str, properties: &Value, extra: &str) -> String {
    format!(
        "name: {name}\nsource:\n  connector: {connector}\n  profile: {connector}\n  entity: {entity}\n  properties: {}\n{extra}destination:\n  local: out\n  format: jsonl\n  compression: none\ntasks:\n  - map_all: {{}}\ntrigger:\n  on_demand: {{}}\n",
        serde_json::to_string(properties).unwrap()
    )
}

fn incremental(field: &str, from: chrono::DateTime<chrono::Utc>, more: &str) -> String {
    format!(
        "  incremental:\n    field: {field}\n    first_execution_from: {}\n{more}",
        from.to_rfc3339()
    )
}

/// The authenticator a flow's profile gets (the profile is named like its connector, whose
/// OAuth client-auth default applies).
fn auth(profile: &str, secret: Value) -> Authenticator {
    Authenticator::from_secret_with(
        profile,
        &Secret::new(secret),
        Arc::new(ferry::adapters::memory::MemorySecrets::default()),
        ferry::connector::REGISTRY
            .get(profile)
            .unwrap()
            .oauth_client_auth,
    )
    .unwrap()
}

fn strings(rows: &[Value], k: &str) -> (usize, BTreeSet<String>) {
    let v: Vec<String> = rows
        .iter()
        .map(|r| match &r[k] {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        })
        .collect();
    (v.len(), v.into_iter().collect())
}

/// Every page of one read, from the first.
async fn read_all(src: &dyn Source, req: &ReadRequest) -> Vec<Value> {
    let mut out = vec![];
    let mut cursor: Option<Value> = None;
    for _ in 0..10_000 {
        let p = src.read_page(req, cursor.as_ref()).await.unwrap();
        out.extend(p.records);
        match p.next {
            None => return out,
            Some(n) => cursor = Some(n),
        }
    }
    panic!("the read did not end");
}

mod jira {
    use super::*;
    use ferry::connector::jira::JiraSource;
    use ferry::connector::FieldType;
    use ferry_tests::saas::jira::{JiraConfig, JiraMock};
    use ferry_tests::Fault;

    fn secret() -> Value {
        json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "me@acme.example", "password": "ATATT-jira-token"})
    }

    fn props(mock: &JiraMock, extra: Value) -> Value {
        merge(json!({"base_url": mock.url(), "http": http()}), extra)
    }

    fn source(mock: &JiraMock, extra: Value) -> JiraSource {
        JiraSource::new(
            props(mock, extra).as_object().unwrap(),
            auth("jira", secret()),
        )
        .unwrap()
    }

    async fn local() -> Local {
        let l = Local::new();
        l.put_secret("jira", secret()).await;
        l
    }

    /// A backfill of `window` (what `ferry run --from/--to` asks for).
    async fn run_window(local: &Local, yaml: &str, window: Window) -> ferry::local::RunOutcome {
        let flow = ferry::flow::Flow::parse(yaml, "test.yaml").unwrap();
        let deps = &local.engine.deps;
        deps.flows
            .put_flow(&flow, chrono::Utc::now())
            .await
            .unwrap();
        local
            .engine
            .run(
                ferry::steps::start_run::RunRequest {
                    flow: flow.name.clone(),
                    trigger: None,
                    mode: None,
                    window: Some(window),
                },
                &ferry::local::asl::NoopObserver,
            )
            .await
    }

    #[tokio::test]
    async fn a_sliced_backfill_of_issues_writes_exactly_the_issues_of_the_unsliced_one() {
        let mock = JiraMock::start(JiraConfig {
            issues: 230,
            ..Default::default()
        })
        .await;
        let window = Window {
            start: Some(mock.updated(0) - chrono::Duration::minutes(1)),
            end: mock.updated(229),
        };
        let inc = "  incremental:\n    field: updated\n";
        let unsliced = local().await;
        let yaml = flow("jira-bf", "jira", "issues", &props(&mock, json!({})), inc);
        let out = run_window(&unsliced, &yaml, window).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let expected = unsliced.output("out/jira-bf");
        let (n, set) = strings(&expected, "id");
        assert_eq!(n, set.len(), "duplicates");
        assert_eq!(set, mock.ids_in(window.start, Some(window.end)));
        let before = mock.jqls().len();

        let sliced = local().await;
        let extra = format!("{inc}  slice: {{ count: 4 }}\n  parallelism: 3\n");
        let yaml = flow(
            "jira-bf",
            "jira",
            "issues",
            &props(&mock, json!({})),
            &extra,
        );
        let out = run_window(&sliced, &yaml, window).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let slices = sliced.slices_of(&out.run_id).await;
        assert_eq!(slices, (0..4).collect::<BTreeSet<u32>>());
        // Each slice's search is bounded by its own window on both ends.
        let starts: BTreeSet<String> = mock.jqls()[before..]
            .iter()
            .filter_map(|q| {
                q.split("updated >= ")
                    .nth(1)
                    .and_then(|s| s.get(..18))
                    .map(str::to_string)
            })
            .collect();
        assert!(starts.len() >= 4, "{starts:?}");
        let got = sliced.output("out/jira-bf");
        let (n2, set2) = strings(&got, "id");
        assert_eq!(n2, set2.len(), "duplicates across slices");
        assert_eq!(set2, set);
        let key = |r: &Value| r["id"].as_str().unwrap_or_default().to_string();
        let mut a: Vec<Value> = expected.clone();
        let mut b: Vec<Value> = got.clone();
        a.sort_by_key(key);
        b.sort_by_key(key);
        assert_eq!(a, b, "the same rows, value for value");
    }

    #[tokio::test]
    async fn issues_are_described_from_the_field_api_and_unknown_fields_are_named() {
        let mock = JiraMock::start(JiraConfig::default()).await;
        let d = source(&mock, json!({})).describe("issues").await.unwrap();
        let f = |n: &str| d.fields.iter().find(|f| f.name == n).unwrap().clone();
        assert!(f("id").primary_key);
        assert_eq!(f("updated").data_type, FieldType::Timestamp);
        assert!(f("updated").incremental);
        assert_eq!(f("customfield_10016").data_type, FieldType::Float);
        assert_eq!(f("duedate").data_type, FieldType::Date);
        assert_eq!(f("status").data_type, FieldType::Json);
        assert_eq!(
            f("labels").data_type,
            FieldType::Array {
                item: Box::new(FieldType::String)
            }
        );
        assert!(
            !d.fields.iter().any(|f| f.name == "thumbnail"),
            "not navigable"
        );
        let e = source(&mock, json!({"fields": ["summary", "sumary"]}))
            .describe("issues")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ferry::error::ErrorKind::InvalidFlow);
        assert!(e.to_string().contains("source.properties.fields[1]"), "{e}");
    }

    #[tokio::test]
    async fn a_complete_run_reads_every_issue_once_with_typed_values() {
        let mock = JiraMock::start(JiraConfig {
            issues: 230,
            ..Default::default()
        })
        .await;
        let local = local().await;
        let out = local
            .run(&flow(
                "jira-all",
                "jira",
                "issues",
                &props(&mock, json!({})),
                "",
            ))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let rows = local.output("out/jira-all");
        let (n, set) = strings(&rows, "id");
        assert_eq!(n, set.len(), "duplicates");
        assert_eq!(set, mock.ids_in(None, None));
        let r = rows.iter().find(|r| r["key"] == json!("OPS-8")).unwrap();
        // +0530 datetimes staged as UTC instants.
        assert_eq!(
            r["updated"].as_str().unwrap().trim_end_matches('Z'),
            mock.updated(8)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .trim_end_matches('Z')
        );
        assert_eq!(r["labels"], json!(["backend", "p1"]));
        assert_eq!(r["summary"], json!("Issue 8 \"quoted\", with, commas"));
        assert_eq!(r["assignee"], Value::Null);
        assert_eq!(r["customfield_10016"], json!(0.5));
        assert!(r["status"].as_str().unwrap().contains("\"name\""));
        // Pages came smaller than asked (many fields), and every query was bounded.
        assert!(mock.jqls().len() >= 230 / 37);
        assert!(mock.jqls().iter().all(|q| q.contains("updated >= ")));
    }

    #[tokio::test]
    async fn windows_are_minute_jql_in_the_users_time_zone_and_exact_on_milliseconds() {
        let mock = JiraMock::start(JiraConfig::default()).await;
        let local = local().await;
        let from = mock.updated(90); // 90, 91, 92 share it: excluded, the start is exclusive
        let yaml = flow(
            "jira-inc",
            "jira",
            "issues",
            &props(&mock, json!({"fields": ["summary"]})),
            &incremental("updated", from, ""),
        );
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let (n, set) = strings(&local.output("out/jira-inc"), "id");
        assert_eq!(n, set.len());
        assert_eq!(set, mock.ids_in(Some(from), None));
        assert!(!set.contains("10092") && set.contains("10093"));
        // The start, floored to the minute, in Asia/Kolkata (+05:30), not UTC.
        let local_start = from
            .with_timezone(&chrono::FixedOffset::east_opt(19_800).unwrap())
            .format("%Y/%m/%d %H:%M")
            .to_string();
        let first = &mock.jqls()[0];
        assert!(
            first.contains(&format!("updated >= \"{local_start}\"")),
            "{first}"
        );
        assert!(first.contains("updated < \"") && first.ends_with("ORDER BY updated ASC, id ASC"));
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        assert_eq!(local.output("out/jira-inc").len(), n, "nothing new");
    }

    #[tokio::test]
    async fn neighbouring_windows_split_a_minute_without_loss_or_overlap() {
        let mock = JiraMock::start(JiraConfig::default()).await;
        let src = source(&mock, json!({"page_size": 7, "fields": ["summary"]}));
        let (a, b, c) = (mock.updated(31), mock.updated(60), mock.updated(100));
        let mut all = vec![];
        for (s, e) in [(a, b), (b, c)] {
            let req = ReadRequest {
                entity: "issues".into(),
                window: Some(Window {
                    start: Some(s),
                    end: e,
                }),
                incremental_field: Some("updated".into()),
                page_size: None,
                filters: vec![],
            };
            let rows = read_all(&src, &req).await;
            let (n, set) = strings(&rows, "id");
            assert_eq!(n, set.len(), "duplicates in ({s}, {e}]");
            assert_eq!(set, mock.ids_in(Some(s), Some(e)), "({s}, {e}]");
            all.extend(set);
        }
        let (n, set): (usize, BTreeSet<String>) = (all.len(), all.into_iter().collect());
        assert_eq!(n, set.len(), "an issue in both windows");
        assert_eq!(set, mock.ids_in(Some(a), Some(c)));
    }

    /// Issues edited while a run pages (read ones and unread ones) are all delivered at their
    /// latest version by this run or the next; following `nextPageToken` offsets skipped here.
    #[tokio::test]
    async fn issues_edited_while_a_run_pages_are_not_lost_at_the_next_run() {
        let mock = JiraMock::start(JiraConfig {
            issues: 150,
            ..Default::default()
        })
        .await;
        let local = local().await;
        let from = ferry_tests::saas::jira::base_time() - chrono::Duration::seconds(1);
        let yaml = flow(
            "jira-moving",
            "jira",
            "issues",
            &props(&mock, json!({"page_size": 10, "fields": ["summary"]})),
            &format!(
                "{}  chunk: {{ records: 30 }}\n",
                incremental("updated", from, "")
            ),
        );
        mock.touch_after(4, &[3, 4, 120, 121]);
        for _ in 0..2 {
            let out = local.run(&yaml).await;
            assert!(out.succeeded(), "{:?}", out.failure);
        }
        let got: BTreeSet<(String, String)> = local
            .output("out/jira-moving")
            .iter()
            .map(|r| {
                let t = chrono::DateTime::parse_from_rfc3339(r["updated"].as_str().unwrap())
                    .unwrap()
                    .timestamp_millis();
                (r["id"].as_str().unwrap().to_string(), t.to_string())
            })
            .collect();
        let edited = mock
            .versions()
            .iter()
            .filter(|(_, t)| *t > from + chrono::Duration::days(30))
            .count();
        assert_eq!(edited, 4, "the edits happened during the run");
        for (id, t) in mock.versions() {
            assert!(
                got.contains(&(id.clone(), t.timestamp_millis().to_string())),
                "issue {id} as of {t} was never delivered"
            );
        }
    }

    #[tokio::test]
    async fn changelog_histories_in_the_window_are_delivered() {
        let mock = JiraMock::start(JiraConfig::default()).await;
        let local = local().await;
        let from = mock.updated(60);
        let out = local
            .run(&flow(
                "jira-cl",
                "jira",
                "issue_changelogs",
                &props(&mock, json!({})),
                &incremental("created", from, ""),
            ))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let rows = local.output("out/jira-cl");
        let (n, set) = strings(&rows, "id");
        assert_eq!(n, set.len());
        assert_eq!(set, mock.history_ids_in(from, chrono::Utc::now()));
        assert!(rows
            .iter()
            .all(|r| r["issue_key"].as_str().unwrap().starts_with("OPS-")
                && r["items"].as_str().unwrap().contains("toString")));
        assert!(mock
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/changelog") && r.query.contains("maxResults=100")));
    }

    #[tokio::test]
    async fn refused_credentials_fail_auth_and_a_3lo_bearer_token_reads() {
        let mock = JiraMock::start(JiraConfig {
            issues: 20,
            ..Default::default()
        })
        .await;
        let local = Local::new();
        local
            .put_secret(
                "jira",
                json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "me@acme.example", "password": "ATATT-revoked-999"}),
            )
            .await;
        let p = props(&mock, json!({}));
        let out = local.run(&flow("jira-bad", "jira", "issues", &p, "")).await;
        let f = out.failure.expect("the run fails");
        assert_eq!(f.error, "AuthFailed", "{f:?}");
        assert!(
            f.cause.contains("'jira'") && f.cause.contains("401"),
            "{}",
            f.cause
        );
        assert!(!f.cause.contains("ATATT-revoked-999"), "{}", f.cause);
        let e = JiraSource::new(
            p.as_object().unwrap(),
            auth(
                "jira",
                json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": "nope"}),
            ),
        )
        .unwrap()
        .list_entities()
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ferry::error::ErrorKind::AuthFailed, "{e}");

        local
            .put_secret(
                "jira",
                json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": "jira-3lo-access"}),
            )
            .await;
        let out = local.run(&flow("jira-3lo", "jira", "issues", &p, "")).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        assert_eq!(local.output("out/jira-3lo").len(), 20);

        // OAuth 2.0 (3LO): the refresh token rotates and is written back to the profile.
        local
            .put_secret("jira", json!({"type": "oauth2_refresh_token", "hosts": ["127.0.0.1"], "token_url": format!("{}/oauth/token", mock.url()),
                "client_id": "jira-3lo-client", "client_secret": "jira-3lo-secret", "refresh_token": "jira-rt-0"}))
            .await;
        let out = local
            .run(&flow("jira-oauth", "jira", "issues", &p, ""))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        assert_eq!(local.output("out/jira-oauth").len(), 20);
        assert_ne!(mock.refresh_token(), "jira-rt-0");
        assert_eq!(
            local.secret("jira")["refresh_token"],
            json!(mock.refresh_token())
        );
    }

    /// A profile bound to its site (`hosts`) is not sent to another host, whatever the flow's
    /// base_url says (docs/security.md).
    #[tokio::test]
    async fn a_profile_bound_to_its_site_is_not_sent_elsewhere() {
        let mock = JiraMock::start(JiraConfig {
            issues: 5,
            ..Default::default()
        })
        .await;
        let mut s = secret();
        s["hosts"] = json!(["acme.atlassian.net"]);
        let e = JiraSource::new(
            props(&mock, json!({})).as_object().unwrap(),
            auth("jira", s),
        )
        .unwrap()
        .list_entities()
        .await
        .unwrap_err();
        assert!(e.to_string().contains("127.0.0.1"), "{e}");
        assert!(mock.requests().is_empty(), "nothing was sent");
    }

    #[tokio::test]
    async fn retry_after_is_honoured_and_a_long_one_ends_the_chunk_throttled() {
        let mock = JiraMock::start(JiraConfig {
            issues: 30,
            ..Default::default()
        })
        .await;
        let req = ReadRequest {
            entity: "issues".into(),
            window: None,
            incremental_field: None,
            page_size: None,
            filters: vec![],
        };
        let src = source(&mock, json!({}));
        src.describe("issues").await.unwrap();
        src.read_page(&req, None).await.unwrap(); // time zone read
        mock.push_faults([Fault::throttle("1")]);
        let p = src.read_page(&req, None).await.unwrap();
        assert!(!p.records.is_empty());
        let r: Vec<_> = mock
            .requests()
            .into_iter()
            .filter(|r| r.path == "/rest/api/3/search/jql")
            .collect();
        let n = r.len();
        assert_eq!((r[n - 2].status, r[n - 1].status), (429, 200));
        assert!(r[n - 1].at.duration_since(r[n - 2].at) >= std::time::Duration::from_millis(950));
        mock.push_faults([Fault::throttle("3600")]);
        let e = src.read_page(&req, None).await.unwrap_err();
        assert_eq!(e.kind(), ferry::error::ErrorKind::Throttled, "{e}");
    }

    /// 5xx answers (Jira's `errorMessages` body) and truncated bodies every few requests: a
    /// full run retries them and writes every issue exactly once.
    #[tokio::test]
    async fn faults_and_5xx_are_retried_without_loss_or_duplicates() {
        let mock = JiraMock::start(JiraConfig {
            issues: 230,
            ..Default::default()
        })
        .await;
        mock.fault_every(
            3,
            vec![Fault::status(503), Fault::Truncated, Fault::status(500)],
        );
        let local = local().await;
        let out = local
            .run(&flow(
                "jira-faults",
                "jira",
                "issues",
                &props(&mock, json!({"page_size": 20, "fields": ["summary"]})),
                "  chunk: { records: 60 }\n",
            ))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let r = mock.requests();
        assert!(r.iter().any(|r| r.status >= 500), "no 5xx was served");
        assert!(
            r.iter()
                .filter(|r| r.path == "/rest/api/3/search/jql" && r.status == 200)
                .count()
                > 230 / 20,
            "truncated search pages were not asked again"
        );
        let (n, set) = strings(&local.output("out/jira-faults"), "id");
        assert_eq!(n, set.len(), "duplicates");
        assert_eq!(set, mock.ids_in(None, None));
    }

    /// A 429 whose `Retry-After` is past `max_retry_after_seconds` ends the chunk `Throttled`;
    /// the state machine (its retry interval shortened from 30 s to 1 s) runs it again.
    #[tokio::test]
    async fn a_throttled_chunk_is_retried_by_the_state_machine_without_loss_or_duplicates() {
        let mock = JiraMock::start(JiraConfig {
            issues: 150,
            ..Default::default()
        })
        .await;
        let local = local().await;
        let engine = local.fast_retry_engine();
        let p = props(
            &mock,
            json!({"page_size": 10, "fields": ["summary"],
                   "http": merge(http(), json!({"max_retry_after_seconds": 1}))}),
        );
        let f = ferry::flow::Flow::parse(
            &flow(
                "jira-throttled",
                "jira",
                "issues",
                &p,
                "  chunk: { records: 30 }\n",
            ),
            "t.yaml",
        )
        .unwrap();
        mock.fault_every(7, vec![Fault::throttle("3600")]);
        let out = local.run_flow_on(&engine, &f).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        assert!(mock.requests().iter().any(|r| r.status == 429));
        let (n, set) = strings(&local.output("out/jira-throttled"), "id");
        assert_eq!(n, set.len(), "duplicates after the retried chunk");
        assert_eq!(set, mock.ids_in(None, None));
    }

    #[tokio::test]
    async fn the_example_flow_validates_and_runs_against_the_mock() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/flows/jira-issues.yaml"
        ))
        .unwrap();
        ferry::flow::Flow::parse(&text, "jira-issues.yaml").expect("the example is valid");
        let mock = JiraMock::start(JiraConfig::default()).await;
        let local = local().await;
        let text = text
            .replace(
                "    site: acme\n",
                &format!("    base_url: {}\n", mock.url()),
            )
            .replace("format: parquet", "format: jsonl")
            .replace("compression: zstd", "compression: none");
        assert!(text.contains(&mock.url()));
        let out = local.run(&text).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let (n, set) = strings(&local.output("ferry-out/jira-issues"), "id");
        assert_eq!(n, set.len());
        assert!(!set.is_empty());
    }
}

mod marketo {
    use super::*;
    use ferry::connector::marketo::MarketoSource;
    use ferry::connector::FieldType;
    use ferry_tests::saas::marketo::{MarketoConfig, MarketoMock};
    use ferry_tests::Fault;

    fn secret(mock: &MarketoMock) -> Value {
        json!({"type": "oauth2_client_credentials", "hosts": ["127.0.0.1"], "token_url": format!("{}/identity/oauth/token", mock.url()),
               "client_id": "mkto-client", "client_secret": "mkto-secret"})
    }

    fn props(mock: &MarketoMock, extra: Value) -> Value {
        merge(
            json!({"base_url": mock.url(), "poll_seconds": 0.01, "http": http()}),
            extra,
        )
    }

    fn source(mock: &MarketoMock, extra: Value) -> MarketoSource {
        MarketoSource::new(
            props(mock, extra).as_object().unwrap(),
            auth("marketo", secret(mock)),
        )
        .unwrap()
    }

    async fn local(mock: &MarketoMock) -> Local {
        let l = Local::new();
        l.put_secret("marketo", secret(mock)).await;
        l
    }

    fn window(
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
    ) -> Option<Window> {
        Some(Window {
            start: Some(start),
            end,
        })
    }

    fn req(entity: &str, field: &str, w: Option<Window>) -> ReadRequest {
        ReadRequest {
            entity: entity.into(),
            window: w,
            incremental_field: Some(field.into()),
            page_size: None,
            filters: vec![],
        }
    }

    #[tokio::test]
    async fn lead_fields_are_typed_from_describe2_and_unknown_ones_named() {
        let mock = MarketoMock::start(MarketoConfig::default()).await;
        let d = source(&mock, json!({})).describe("leads").await.unwrap();
        let f = |n: &str| d.fields.iter().find(|f| f.name == n).unwrap().clone();
        assert!(f("id").primary_key);
        assert_eq!(f("leadScore").data_type, FieldType::Integer);
        assert!(matches!(
            f("annualRevenue").data_type,
            FieldType::Decimal { .. }
        ));
        assert_eq!(f("unsubscribed").data_type, FieldType::Boolean);
        assert!(f("updatedAt").incremental);
        let e = source(&mock, json!({"fields": ["email", "emial"]}))
            .describe("leads")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ferry::error::ErrorKind::InvalidFlow);
        assert!(e.to_string().contains("source.properties.fields[1]"), "{e}");
    }

    #[tokio::test]
    async fn a_long_window_is_read_in_31_day_jobs_with_typed_values() {
        let mock = MarketoMock::start(MarketoConfig::default()).await;
        let src = source(&mock, json!({}));
        let (s, e) = (mock.updated(10), mock.updated(110));
        assert!(e - s > chrono::Duration::days(62));
        let rows = read_all(&src, &req("leads", "updatedAt", window(s, e))).await;
        let (n, set) = strings(&rows, "id");
        assert_eq!(n, set.len(), "duplicates at a job boundary");
        let want: BTreeSet<String> = mock.ids_in(s, e).iter().map(u64::to_string).collect();
        assert_eq!(set, want);
        assert!(!set.contains("10") && !set.contains("11") && set.contains("12"));
        let jobs = mock.jobs();
        assert!(jobs.len() >= 3, "{jobs:?}");
        for (_, field, from, to) in &jobs {
            assert_eq!(field, "updatedAt");
            assert!(*to - *from <= chrono::Duration::days(31));
        }
        for w in jobs.windows(2) {
            assert_eq!(w[1].2, w[0].3 + chrono::Duration::seconds(1));
        }
        let r = rows.iter().find(|r| r["id"] == json!(16)).unwrap();
        assert_eq!(r["company"], json!("Acme, Inc. \"Branch 16\"\nWest"));
        assert_eq!(r["annualRevenue"], json!("16000.16"));
        assert_eq!(r["unsubscribed"], json!(false));
        let r = rows.iter().find(|r| r["id"] == json!(15)).unwrap();
        assert_eq!(r["lastName"], Value::Null, "`null` in the CSV");
        assert_eq!(r["unsubscribed"], json!(true));
    }

    #[tokio::test]
    async fn the_file_is_read_in_range_parts_and_whole_when_range_is_ignored() {
        for ignore_range in [false, true] {
            let mock = MarketoMock::start(MarketoConfig {
                ignore_range,
                ..Default::default()
            })
            .await;
            let src = source(&mock, json!({"file_part_bytes": 1024}));
            let (s, e) = (
                mock.updated(0) - chrono::Duration::seconds(1),
                mock.updated(60),
            );
            let rows = read_all(&src, &req("leads", "updatedAt", window(s, e))).await;
            let (n, set) = strings(&rows, "id");
            assert_eq!(n, set.len());
            assert_eq!(set.len(), mock.ids_in(s, e).len());
            let parts = mock
                .requests()
                .iter()
                .filter(|r| r.path.ends_with("/file.json"))
                .count();
            if ignore_range {
                assert!(parts >= 1);
            } else {
                assert!(parts > 3, "{parts} parts");
                assert!(mock.requests().iter().any(|r| r.status == 206));
            }
            assert!(rows
                .iter()
                .filter(|r| r["id"].as_u64().unwrap() % 4 == 0)
                .all(|r| r["company"].as_str().unwrap().contains("\nWest")));
        }
    }

    #[tokio::test]
    async fn errors_in_200_bodies_refresh_retry_or_throttle() {
        let mock = MarketoMock::start(MarketoConfig::default()).await;
        let src = source(&mock, json!({}));
        let (s, e) = (
            mock.updated(0) - chrono::Duration::seconds(1),
            mock.updated(20),
        );
        src.describe("leads").await.unwrap();
        assert_eq!(mock.tokens_issued(), 1);
        // An expired token (602 in a 200 body) is refreshed once and the call sent again; a
        // rate limit (606) is backed off and retried.
        mock.expire_token();
        mock.push_error("606", "Max rate limit '100' exceeded with in '20' secs");
        let rows = read_all(&src, &req("leads", "updatedAt", window(s, e))).await;
        assert_eq!(rows.len(), mock.ids_in(s, e).len());
        assert_eq!(mock.tokens_issued(), 2);
        // The daily export quota (1029) ends the chunk Throttled until midnight US Central.
        mock.push_error("1029", "Export daily quota 500MB exceeded");
        let e1 = src
            .read_page(&req("leads", "updatedAt", window(s, e)), None)
            .await
            .unwrap_err();
        assert_eq!(e1.kind(), ferry::error::ErrorKind::Throttled, "{e1}");
        assert!(e1.to_string().contains("quota"), "{e1}");
        // No updatedAt filter on this subscription (1035): the flow's field is named.
        mock.push_error(
            "1035",
            "Unsupported filter type for target subscription: updatedAt",
        );
        let e2 = src
            .read_page(&req("leads", "updatedAt", window(s, e)), None)
            .await
            .unwrap_err();
        assert_eq!(e2.kind(), ferry::error::ErrorKind::InvalidFlow, "{e2}");
        assert!(e2.to_string().contains("source.incremental.field"), "{e2}");
    }

    #[tokio::test]
    async fn bad_client_credentials_end_the_run_auth_failed() {
        let mock = MarketoMock::start(MarketoConfig::default()).await;
        let local = Local::new();
        let mut s = secret(&mock);
        s["client_secret"] = json!("wrong-secret-123");
        local.put_secret("marketo", s).await;
        let out = local
            .run(&flow(
                "mk-bad",
                "marketo",
                "leads",
                &props(&mock, json!({})),
                "",
            ))
            .await;
        let f = out.failure.expect("the run fails");
        assert_eq!(f.error, "AuthFailed", "{f:?}");
        assert!(f.cause.contains("'marketo'"), "{}", f.cause);
        assert!(!f.cause.contains("wrong-secret-123"), "{}", f.cause);
    }

    #[tokio::test]
    async fn activities_of_the_window_are_delivered_once() {
        let mock = MarketoMock::start(MarketoConfig::default()).await;
        let local = local(&mock).await;
        let from = mock.updated(30) - chrono::Duration::days(30);
        let out = local
            .run(&flow(
                "mk-act",
                "marketo",
                "activities",
                &props(&mock, json!({"activity_type_ids": [1, 6, 12]})),
                &incremental("activityDate", from, ""),
            ))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let rows = local.output("out/mk-act");
        let (n, set) = strings(&rows, "marketoGUID");
        assert_eq!(n, set.len());
        assert_eq!(set, mock.activity_ids_in(from, chrono::Utc::now()));
        assert!(rows
            .iter()
            .all(|r| r["attributes"].as_str().unwrap().contains("direct")));
    }

    /// Leads edited while the export job runs are in the file as they were when it was written
    /// (or not at all, their new `updatedAt` being past the window): the next run delivers
    /// their new version; nothing is lost.
    #[tokio::test]
    async fn leads_edited_during_a_run_are_not_lost_at_the_next_run() {
        let mock = MarketoMock::start(MarketoConfig {
            spacing: 3600,
            ..Default::default()
        })
        .await;
        let local = local(&mock).await;
        let from = ferry_tests::saas::marketo::base_time() - chrono::Duration::seconds(1);
        let yaml = flow(
            "mk-moving",
            "marketo",
            "leads",
            &props(&mock, json!({"fields": ["email"]})),
            &incremental("updatedAt", from, ""),
        );
        mock.touch_after(3, &[5, 6, 90]);
        for _ in 0..2 {
            let out = local.run(&yaml).await;
            assert!(out.succeeded(), "{:?}", out.failure);
        }
        let got: BTreeSet<(u64, String)> = local
            .output("out/mk-moving")
            .iter()
            .map(|r| {
                (
                    r["id"].as_u64().unwrap(),
                    r["updatedAt"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for (id, t) in mock.versions() {
            let t = t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            assert!(
                got.iter()
                    .any(|(i, g)| *i == id && g.starts_with(t.trim_end_matches('Z'))),
                "lead {id} as of {t} was never delivered"
            );
        }
    }

    /// A full incremental run of every lead while the mock injects `faults` every few
    /// requests (JSON calls, status polls and CSV file parts alike): every lead once.
    async fn leads_once_under(faults: Vec<Fault>, name: &str) {
        let mock = MarketoMock::start(MarketoConfig::default()).await;
        mock.fault_every(4, faults);
        let local = local(&mock).await;
        let from = ferry_tests::saas::marketo::base_time() - chrono::Duration::seconds(1);
        let out = local
            .run(&flow(
                name,
                "marketo",
                "leads",
                &props(&mock, json!({"fields": ["email"], "file_part_bytes": 1024})),
                &incremental("updatedAt", from, ""),
            ))
            .await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let (n, set) = strings(&local.output(&format!("out/{name}")), "id");
        assert_eq!(n, set.len(), "duplicates");
        let want: BTreeSet<String> = mock
            .ids_in(from, chrono::Utc::now())
            .iter()
            .map(u64::to_string)
            .collect();
        assert_eq!(want.len(), 120);
        assert_eq!(set, want, "leads lost");
    }

    /// HTTP-level 502/503 answers (job create, enqueue, status, file parts) are retried.
    #[tokio::test]
    async fn faults_and_5xx_are_retried_without_loss_or_duplicates() {
        leads_once_under(vec![Fault::status(502), Fault::status(503)], "mk-faults").await;
    }

    /// A file part cut short (the connection drops, no Content-Length) is asked again, not
    /// parsed: the connector compares the part's length with the Range it asked for (the whole
    /// file's `fileSize` when the server ignores Range). Before, it took the short part as the
    /// file's end: the partial row failed typing, or rows went missing (114 of 120 leads).
    #[tokio::test]
    async fn truncated_file_parts_are_asked_again_without_loss() {
        leads_once_under(
            vec![Fault::status(502), Fault::Truncated, Fault::status(503)],
            "mk-truncated",
        )
        .await;
    }

    /// The daily export quota (1029) answered in the middle of a run ends the chunk `Throttled`;
    /// the state machine (its retry interval shortened from 30 s to 1 s) runs it again.
    #[tokio::test]
    async fn a_throttled_chunk_is_retried_by_the_state_machine_without_loss_or_duplicates() {
        let mock = MarketoMock::start(MarketoConfig::default()).await;
        let local = local(&mock).await;
        let engine = local.fast_retry_engine();
        let from = ferry_tests::saas::marketo::base_time() - chrono::Duration::seconds(1);
        let f = ferry::flow::Flow::parse(
            &flow(
                "mk-throttled",
                "marketo",
                "leads",
                &props(&mock, json!({"fields": ["email"], "file_part_bytes": 1024})),
                &format!(
                    "{}  chunk: {{ records: 30 }}\n",
                    incremental("updatedAt", from, "")
                ),
            ),
            "t.yaml",
        )
        .unwrap();
        // Inside the first job's file.
        mock.error_after(8, "1029", "Export daily quota 500MB exceeded");
        let out = local.run_flow_on(&engine, &f).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        assert_eq!(mock.pending_errors(), 0, "the quota error was answered");
        let (n, set) = strings(&local.output("out/mk-throttled"), "id");
        assert_eq!(n, set.len(), "duplicates after the retried chunk");
        let want: BTreeSet<String> = mock
            .ids_in(from, chrono::Utc::now())
            .iter()
            .map(u64::to_string)
            .collect();
        assert_eq!(set.len(), 120);
        assert_eq!(set, want);
    }

    #[tokio::test]
    async fn the_example_flow_validates_and_runs_against_the_mock() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/flows/marketo-leads.yaml"
        ))
        .unwrap();
        ferry::flow::Flow::parse(&text, "marketo-leads.yaml").expect("the example is valid");
        let mock = MarketoMock::start(MarketoConfig::default()).await;
        let local = local(&mock).await;
        let text = text
            .replace(
                "    munchkin_id: 123-ABC-456\n",
                &format!("    base_url: {}\n    poll_seconds: 0.01\n", mock.url()),
            )
            .replace("format: parquet", "format: jsonl")
            .replace("compression: zstd", "compression: none");
        assert!(text.contains(&mock.url()));
        let out = local.run(&text).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let (n, set) = strings(&local.output("ferry-out/marketo-leads"), "id");
        assert_eq!(n, set.len());
        assert!(!set.is_empty());
    }
}

mod ga4 {
    use super::*;
    use chrono::NaiveDate;
    use ferry::connector::ga4::Ga4Source;
    use ferry::connector::FieldType;
    use ferry_tests::saas::ga4::{Ga4Config, Ga4Mock};
    use ferry_tests::Fault;

    fn secret(mock: &Ga4Mock) -> Value {
        json!({"type": "oauth2_refresh_token", "hosts": ["127.0.0.1"], "token_url": format!("{}/token", mock.url()),
               "client_id": "ga-client.apps.googleusercontent.com", "client_secret": "ga-secret",
               "refresh_token": "1//ga-refresh"})
    }

    fn report() -> Value {
        json!({"traffic": {"dimensions": ["date", "country"], "metrics": ["sessions", "engagementRate", "purchaseRevenue"]},
               "detail": {"dimensions": ["date", "country", "deviceCategory", "sessionDefaultChannelGroup"], "metrics": ["sessions"]}})
    }

    fn props(mock: &Ga4Mock, extra: Value) -> Value {
        merge(
            json!({"property_id": "123456789", "base_url": mock.url(), "reports": report(), "http": http()}),
            extra,
        )
    }

    fn source(mock: &Ga4Mock, extra: Value) -> Ga4Source {
        Ga4Source::new(
            props(mock, extra).as_object().unwrap(),
            auth("ga4", secret(mock)),
        )
        .unwrap()
    }

    async fn local(mock: &Ga4Mock) -> Local {
        let l = Local::new();
        l.put_secret("ga4", secret(mock)).await;
        l
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// `offset` so that windows end inside the mock's data.
    fn offset_to(end: NaiveDate) -> String {
        let days = (chrono::Utc::now().date_naive() - end).num_days();
        format!("    offset: {}h\n", days * 24)
    }

    #[tokio::test]
    async fn reports_are_typed_from_the_metadata_and_unknown_names_refused() {
        let mock = Ga4Mock::start(Ga4Config::default()).await;
        let d = source(&mock, json!({})).describe("traffic").await.unwrap();
        let f = |n: &str| d.fields.iter().find(|f| f.name == n).unwrap().clone();
        assert_eq!(f("date").data_type, FieldType::Date);
        assert!(f("date").incremental);
        assert_eq!(f("country").data_type, FieldType::String);
        assert_eq!(f("sessions").data_type, FieldType::Integer);
        assert_eq!(f("engagementRate").data_type, FieldType::Float);
        assert!(matches!(
            f("purchaseRevenue").data_type,
            FieldType::Decimal { scale: 6, .. }
        ));
        let bad = json!({"reports": {"traffic": {"dimensions": ["date"], "metrics": ["sessions", "bounces"]}}});
        let e = source(&mock, bad).describe("traffic").await.unwrap_err();
        assert_eq!(e.kind(), ferry::error::ErrorKind::InvalidFlow);
        assert!(
            e.to_string()
                .contains("source.properties.reports.traffic.metrics[1]"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn incremental_runs_read_each_day_of_the_window_once() {
        let mock = Ga4Mock::start(Ga4Config::default()).await;
        let local = local(&mock).await;
        let from = day("2026-01-05").and_hms_opt(0, 0, 0).unwrap().and_utc();
        let end = day("2026-01-20");
        let yaml = flow(
            "ga-inc",
            "ga4",
            "traffic",
            &props(&mock, json!({})),
            &incremental("date", from, &offset_to(end)),
        );
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let rows = local.output("out/ga-inc");
        let days: BTreeSet<String> = rows
            .iter()
            .map(|r| r["date"].as_str().unwrap().to_string())
            .collect();
        // 2026-01-05's midnight is the window's (exclusive) start.
        assert_eq!(days.first().unwrap(), "2026-01-06");
        assert!(days.last().unwrap().as_str() <= "2026-01-20");
        assert_eq!(rows.len(), days.len() * 5, "one row per day and country");
        let want = mock.sessions_by_day_country();
        for r in &rows {
            let d = day(r["date"].as_str().unwrap());
            assert_eq!(
                r["sessions"],
                json!(want[&(d, r["country"].as_str().unwrap().to_string())])
            );
            assert!(r["engagementRate"].is_f64());
        }
        // Currency as a decimal, not a float.
        let cents: i64 = mock.revenue_cents(day("2026-01-06"));
        let total: f64 = rows
            .iter()
            .filter(|r| r["date"] == json!("2026-01-06"))
            .map(|r| match &r["purchaseRevenue"] {
                Value::String(s) => s.parse::<f64>().unwrap(),
                v => v.as_f64().unwrap(),
            })
            .sum();
        assert!(
            (total * 100.0 - cents as f64).abs() < 0.5,
            "{total} vs {cents}"
        );
        let bodies = mock.bodies();
        assert_eq!(
            bodies[0]["dateRanges"],
            json!([{"startDate": "2026-01-06", "endDate": "2026-01-06"}])
        );
        assert!(bodies
            .iter()
            .all(|b| b["orderBys"][0]["dimension"]["dimensionName"] == json!("date")));
        let n = rows.len();
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let again = local.output("out/ga-inc").len() - n;
        assert!(
            again <= 5,
            "a day is read by one run only ({again} more rows)"
        );
    }

    #[tokio::test]
    async fn a_complete_read_pages_with_limit_and_offset() {
        let mock = Ga4Mock::start(Ga4Config {
            days: 3,
            ..Default::default()
        })
        .await;
        let src = source(&mock, json!({"page_size": 50}));
        let req = ReadRequest {
            entity: "detail".into(),
            window: None,
            incremental_field: None,
            page_size: None,
            filters: vec![],
        };
        let rows = read_all(&src, &req).await;
        assert_eq!(rows.len(), 3 * 60);
        let (n, keys) = detail_keys(&rows);
        assert_eq!(keys.len(), n, "a row twice");
        let offsets: Vec<Value> = mock.bodies().iter().map(|b| b["offset"].clone()).collect();
        assert_eq!(
            offsets,
            [json!("0"), json!("50"), json!("100"), json!("150")]
        );
        assert_eq!(mock.bodies()[0]["dateRanges"][0]["endDate"], json!("today"));
    }

    #[tokio::test]
    async fn exhausted_hourly_quota_ends_the_chunk_throttled_and_concurrency_is_retried() {
        let mock = Ga4Mock::start(Ga4Config::default()).await;
        let src = source(&mock, json!({}));
        let req = ReadRequest {
            entity: "traffic".into(),
            window: None,
            incremental_field: None,
            page_size: None,
            filters: vec![],
        };
        mock.exhaust("Exhausted property tokens per hour. This property has used all its tokens.");
        let e = src.read_page(&req, None).await.unwrap_err();
        assert_eq!(e.kind(), ferry::error::ErrorKind::Throttled, "{e}");
        assert!(e.to_string().contains("RESOURCE_EXHAUSTED"), "{e}");
        assert_eq!(mock.bodies().len(), 1, "not retried at once");
        mock.exhaust("Exhausted concurrent requests quota.");
        assert!(src.read_page(&req, None).await.is_ok());
        assert_eq!(mock.bodies().len(), 3);
    }

    /// A day still being processed (its rowCount changes between pages) fails the run naming
    /// the day instead of delivering skipped or repeated rows; the next run reads it whole.
    #[tokio::test]
    async fn a_day_that_changes_while_it_pages_is_read_whole_by_the_next_run() {
        let mock = Ga4Mock::start(Ga4Config::default()).await;
        let local = local(&mock).await;
        let from = day("2026-01-09").and_hms_opt(0, 0, 0).unwrap().and_utc();
        let yaml = flow(
            "ga-late",
            "ga4",
            "detail",
            &props(&mock, json!({"page_size": 25})),
            &incremental("date", from, &offset_to(day("2026-01-11"))),
        );
        // Day 01-10 pages at offsets 0, 25, 50: a row arrives before the second.
        mock.late_row_after(1, day("2026-01-10"));
        let out = local.run(&yaml).await;
        let f = out.failure.expect("the run fails");
        assert_eq!(f.error, "SourceRejected", "{f:?}");
        assert!(f.cause.contains("2026-01-10"), "{}", f.cause);
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let rows = local.output("out/ga-late");
        let day10: Vec<&Value> = rows
            .iter()
            .filter(|r| r["date"] == json!("2026-01-10"))
            .collect();
        assert_eq!(day10.len(), 61, "the day with its late row, once");
    }

    /// A service account's JSON key, put into the secret as Google's console downloads it:
    /// ferry signs the JWT bearer assertion with it (the mock checks the signature and the
    /// claims against the account's public key), and a run reads the reports with the token.
    #[tokio::test]
    async fn a_service_account_key_file_reads_reports() {
        let mock = Ga4Mock::start(Ga4Config::default()).await;
        let local = Local::new();
        local.put_secret("ga4", mock.service_account_secret()).await;
        let from = day("2026-01-05").and_hms_opt(0, 0, 0).unwrap().and_utc();
        let yaml = flow(
            "ga-sa",
            "ga4",
            "traffic",
            &props(&mock, json!({})),
            &incremental("date", from, &offset_to(day("2026-01-12"))),
        );
        let out = local.run(&yaml).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        assert!(!local.output("out/ga-sa").is_empty());
        let tokens = mock
            .requests()
            .iter()
            .filter(|r| r.path == "/token")
            .count();
        assert_eq!(
            tokens, 1,
            "one assertion per run, the token reused by every chunk"
        );

        // Another account's key (here: the same email, a key Google does not hold): refused,
        // naming the profile and Google's reason, never the key.
        let mut other = mock.service_account_secret();
        other["client_email"] = json!("someone-else@acme-analytics.iam.gserviceaccount.com");
        let bad = Local::new();
        bad.put_secret("ga4", other).await;
        let out = bad
            .run(&flow(
                "ga-sa-bad",
                "ga4",
                "traffic",
                &props(&mock, json!({})),
                "",
            ))
            .await;
        let f = out.failure.expect("the run fails");
        assert_eq!(f.error, "AuthFailed", "{f:?}");
        assert!(
            f.cause.contains("'ga4'")
                && f.cause.contains("invalid_grant")
                && f.cause.contains("Invalid JWT Signature"),
            "{}",
            f.cause
        );
        assert!(!f.cause.contains("PRIVATE KEY"), "{}", f.cause);
    }

    /// A key file whose private key is not a PEM RSA key is refused when the profile is read,
    /// naming the field, without echoing it.
    #[tokio::test]
    async fn a_service_account_key_that_is_not_pem_is_refused_naming_the_field() {
        let mock = Ga4Mock::start(Ga4Config::default()).await;
        let mut s = mock.service_account_secret();
        s["private_key"] = json!("canary-not-a-key-1234");
        let e = ferry::connector::auth::Authenticator::from_secret(
            "ga4",
            &ferry::ports::Secret::new(s),
            std::sync::Arc::new(ferry::adapters::memory::MemorySecrets::default()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("private_key") && e.contains("'ga4'"), "{e}");
        assert!(!e.contains("canary-not-a-key"), "{e}");
    }

    #[tokio::test]
    async fn a_revoked_refresh_token_fails_auth() {
        let mock = Ga4Mock::start(Ga4Config::default()).await;
        let local = Local::new();
        let mut s = secret(&mock);
        s["refresh_token"] = json!("1//revoked-token-42");
        local.put_secret("ga4", s).await;
        let out = local
            .run(&flow(
                "ga-bad",
                "ga4",
                "traffic",
                &props(&mock, json!({})),
                "",
            ))
            .await;
        let f = out.failure.expect("the run fails");
        assert_eq!(f.error, "AuthFailed", "{f:?}");
        assert!(
            f.cause.contains("'ga4'") && f.cause.contains("invalid_grant"),
            "{}",
            f.cause
        );
        assert!(!f.cause.contains("revoked-token-42"), "{}", f.cause);
    }

    /// (date, country, device, channel) of every row, and how many rows there were.
    fn detail_keys(rows: &[Value]) -> (usize, BTreeSet<String>) {
        let keys: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{}|{}|{}|{}",
                    r["date"], r["country"], r["deviceCategory"], r["sessionDefaultChannelGroup"]
                )
            })
            .collect();
        (keys.len(), keys.into_iter().collect())
    }

    /// 503 `UNAVAILABLE`, 500 and truncated bodies every few requests: a full incremental run
    /// retries them and writes exactly the rows of a run without faults, each once.
    #[tokio::test]
    async fn faults_and_5xx_are_retried_without_loss_or_duplicates() {
        let mock = Ga4Mock::start(Ga4Config::default()).await;
        let from = day("2026-01-05").and_hms_opt(0, 0, 0).unwrap().and_utc();
        let yaml = |name: &str| {
            flow(
                name,
                "ga4",
                "detail",
                &props(&mock, json!({"page_size": 25})),
                &incremental("date", from, &offset_to(day("2026-01-12"))),
            )
        };
        let clean = local(&mock).await;
        let out = clean.run(&yaml("ga-clean")).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        let (n0, want) = detail_keys(&clean.output("out/ga-clean"));
        assert_eq!(n0, want.len());
        assert!(n0 >= 5 * 60, "{n0} rows");
        assert_eq!(n0 % 60, 0, "whole days");

        mock.fault_every(
            3,
            vec![Fault::status(503), Fault::Truncated, Fault::status(500)],
        );
        let faulty = local(&mock).await;
        let out = faulty.run(&yaml("ga-faults")).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        assert!(mock.requests().iter().any(|r| r.status >= 500));
        let (n, set) = detail_keys(&faulty.output("out/ga-faults"));
        assert_eq!(n, set.len(), "duplicates");
        assert_eq!(set, want);
    }

    /// The hourly property quota running out in the middle of a run ends the chunk `Throttled`;
    /// the state machine (its retry interval shortened from 30 s to 1 s) runs it again.
    #[tokio::test]
    async fn a_throttled_chunk_is_retried_by_the_state_machine_without_loss_or_duplicates() {
        let mock = Ga4Mock::start(Ga4Config::default()).await;
        let local = local(&mock).await;
        let engine = local.fast_retry_engine();
        let from = day("2026-01-05").and_hms_opt(0, 0, 0).unwrap().and_utc();
        let f = ferry::flow::Flow::parse(
            &flow(
                "ga-throttled",
                "ga4",
                "detail",
                &props(&mock, json!({"page_size": 25})),
                &format!(
                    "{}  chunk: {{ records: 60 }}\n",
                    incremental("date", from, &offset_to(day("2026-01-10")))
                ),
            ),
            "t.yaml",
        )
        .unwrap();
        // Day 01-06 pages at offsets 0, 25, 50 (one chunk): the quota runs out before the third.
        mock.exhaust_after(
            2,
            "Exhausted property tokens per hour. This property has used all its tokens.",
        );
        let out = local.run_flow_on(&engine, &f).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        assert!(mock.requests().iter().any(|r| r.status == 429));
        let (n, set) = detail_keys(&local.output("out/ga-throttled"));
        assert_eq!(n, set.len(), "duplicates after the retried chunk");
        assert_eq!(n % 60, 0, "whole days: {n} rows");
        let days: BTreeSet<String> = set
            .iter()
            .map(|k| k.split('|').next().unwrap().to_string())
            .collect();
        assert_eq!(days.len() * 60, n, "every row of every day read");
        assert_eq!(days.first().unwrap(), "\"2026-01-06\"");
    }

    #[tokio::test]
    async fn the_example_flow_validates_and_runs_against_the_mock() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/flows/ga4-traffic.yaml"
        ))
        .unwrap();
        ferry::flow::Flow::parse(&text, "ga4-traffic.yaml").expect("the example is valid");
        let mock = Ga4Mock::start(Ga4Config::default()).await;
        let local = local(&mock).await;
        let text = text
            .replace(
                "    property_id: \"123456789\"\n",
                &format!(
                    "    property_id: \"123456789\"\n    base_url: {}\n",
                    mock.url()
                ),
            )
            .replace(
                "first_execution_from: 2026-01-01",
                "first_execution_from: 2026-01-01T00:00:00Z",
            )
            .replace("    offset: 2d\n", &offset_to(day("2026-01-15")))
            .replace("format: parquet", "format: jsonl")
            .replace("compression: zstd", "compression: none");
        assert!(text.contains(&mock.url()));
        let out = local.run(&text).await;
        assert!(out.succeeded(), "{:?}", out.failure);
        assert!(!local.output("ferry-out/ga4-traffic").is_empty());
    }
}
