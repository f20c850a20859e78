//! A SaaS connector as a user drives it from the command line: store a profile, list and describe
//! the entities, run a flow — against the Zendesk mock, with the secret never printed.

use ferry_tests::saas::zendesk::{ZendeskMock, ZendeskMockConfig};
use std::path::Path;
use std::process::Output;

use crate::support;
use support::text;

async fn ferry(dir: &Path, args: &[&str]) -> Output {
    support::ferry_logging(dir, args, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_entities_and_a_run_against_zendesk() {
    let mock = ZendeskMock::start(ZendeskMockConfig {
        tickets: 60,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("zendesk.json"),
        r#"{"type": "basic", "hosts": ["127.0.0.1"], "username": "agent@acme.test/token", "password": "zd-token-1"}"#,
    )
    .unwrap();
    std::fs::write(
        d.join("tickets.yaml"),
        format!(
            "name: zd-tickets\nsource:\n  connector: zendesk\n  profile: zendesk-acme\n  entity: tickets\n  properties: {{ base_url: \"{}\" }}\n  incremental: {{ field: updated_at, first_execution_from: 2020-01-01T00:00:00Z }}\ndestination:\n  local: out\n  format: parquet\n",
            mock.url()
        ),
    )
    .unwrap();

    let o = ferry(
        d,
        &["profiles", "put", "zendesk-acme", "--file", "zendesk.json"],
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));

    let o = ferry(d, &["entities", "tickets.yaml"]).await;
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for e in ["tickets", "users", "organizations", "groups"] {
        assert!(t.contains(e), "{e} not listed:\n{t}");
    }

    let o = ferry(d, &["entities", "tickets.yaml", "--describe", "tickets"]).await;
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("updated_at") && t.contains("subject"), "{t}");

    let o = ferry(d, &["run", "tickets.yaml", "--json"]).await;
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let rec: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rec["status"], "Successful", "{t}");
    assert_eq!(
        rec["records_written"].as_u64().unwrap() as usize,
        mock.ticket_ids(None, None, true).len(),
        "{t}"
    );

    // A refused token: the run fails AuthFailed naming the profile, and no command printed the
    // secret.
    std::fs::write(
        d.join("zendesk.json"),
        r#"{"type": "basic", "hosts": ["127.0.0.1"], "username": "agent@acme.test/token", "password": "wrong-token"}"#,
    )
    .unwrap();
    assert!(ferry(
        d,
        &["profiles", "put", "zendesk-acme", "--file", "zendesk.json"]
    )
    .await
    .status
    .success());
    let o = ferry(d, &["run", "zd-tickets", "--complete"]).await;
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    // Checked before the run starts: the profile's problem, named.
    assert!(
        t.contains("source.profile") && t.contains("zendesk-acme") && t.contains("401"),
        "{t}"
    );
    assert!(
        !t.contains("wrong-token") && !t.contains("zd-token-1"),
        "{t}"
    );
    // Zendesk's fields come from ferry's own tables, but `--describe` still tries the
    // credentials first: a refused profile is not met with a field list.
    let o = ferry(d, &["entities", "tickets.yaml", "--describe", "tickets"]).await;
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("zendesk-acme") && !t.contains("subject"), "{t}");
}

/// `profiles test`: one cheap authenticated call through the connector; a refused token gets
/// the vendor's message, never the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_test_against_zendesk() {
    let mock = ZendeskMock::start(ZendeskMockConfig {
        tickets: 5,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = format!("base_url={}", mock.url());
    std::fs::write(
        d.join("zendesk.json"),
        r#"{"type": "basic", "hosts": ["127.0.0.1"], "username": "agent@acme.test/token", "password": "zd-token-1"}"#,
    )
    .unwrap();
    let o = ferry(
        d,
        &[
            "profiles",
            "put",
            "zd",
            "--file",
            "zendesk.json",
            "--connector",
            "zendesk",
            "--property",
            &base,
        ],
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let o = ferry(d, &["profiles", "test", "zd"]).await;
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("profile 'zd' works"), "{t}");

    std::fs::write(
        d.join("zendesk.json"),
        r#"{"type": "basic", "hosts": ["127.0.0.1"], "username": "agent@acme.test/token", "password": "revoked-token"}"#,
    )
    .unwrap();
    assert!(ferry(
        d,
        &[
            "profiles",
            "put",
            "zd",
            "--file",
            "zendesk.json",
            "--connector",
            "zendesk"
        ]
    )
    .await
    .status
    .success());
    let o = ferry(d, &["profiles", "test", "zd", "--json"]).await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["name"], "AuthFailed", "{t}");
    // The status, the vendor's own words (Zendesk's 401 body) and the fix.
    assert!(
        t.contains("401 Unauthorized")
            && t.contains("Couldn't authenticate you")
            && t.contains("were refused"),
        "{t}"
    );
    assert!(
        !t.contains("revoked-token") && !t.contains("zd-token-1"),
        "{t}"
    );

    // validate checks the profile too: it works with the good token, not with the revoked one.
    std::fs::write(
        d.join("f.yaml"),
        format!(
            "name: zd\nsource:\n  connector: zendesk\n  profile: zd\n  entity: tickets\n  properties: {{ base_url: \"{}\" }}\ndestination:\n  local: out\n",
            mock.url()
        ),
    )
    .unwrap();
    let o = ferry(d, &["validate", "f.yaml"]).await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("source.profile") && t.contains("401 Unauthorized"),
        "{t}"
    );
    assert!(!t.contains("revoked-token"), "{t}");
    assert!(!d.join("out").exists());
}

// ---- `ferry profiles connect`: the OAuth consent against each vendor mock ----

/// What one `profiles connect` run did.
struct Connected {
    output: Output,
    /// The callback page the "browser" saw.
    page: String,
}

/// Run `ferry profiles connect CONNECTOR NAME ...` against a mock at `host`, playing the user's
/// browser: open the printed consent URL (the mock's authorize endpoint answers with a
/// redirect) and follow the redirect to ferry's loopback listener. `before` is requested on
/// the listener first (e.g. a forged callback), with its status returned in the page text.
async fn connect(
    dir: &Path,
    connector: &str,
    name: &str,
    client_id: &str,
    client_secret: Option<&str>,
    host: &str,
    forged_first: bool,
) -> Connected {
    use std::io::BufRead;
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.args([
        "profiles",
        "connect",
        connector,
        name,
        "--client-id",
        client_id,
        "--host",
        host,
        "--port",
        "0",
        "--no-browser",
        "--timeout",
        "60",
        "--json",
    ])
    .current_dir(dir)
    .env("FERRY_HOME", dir.join(".ferry"))
    .env_remove("FERRY_REMOTE")
    .env_remove("FERRY_CLIENT_ID")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    match client_secret {
        Some(s) => c.env("FERRY_CLIENT_SECRET", s),
        None => c.env_remove("FERRY_CLIENT_SECRET"),
    };
    let mut child = c.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut tx = Some(tx);
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if let (Some(url), Some(_)) = (line.trim().strip_prefix("http"), tx.as_ref()) {
                let _ = tx.take().unwrap().send(format!("http{url}"));
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut page = String::new();
    if let Ok(Ok(url)) = tokio::time::timeout(std::time::Duration::from_secs(30), rx).await {
        let r = browser.get(&url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 302, "the consent page should redirect");
        let back = r.headers()["location"].to_str().unwrap().to_string();
        if forged_first {
            let u = url::Url::parse(&back).unwrap();
            let forged = format!(
                "{}://{}/callback?code=stolen&state=not-ours",
                u.scheme(),
                u.authority()
            );
            let f = browser.get(&forged).send().await.unwrap();
            page.push_str(&format!("forged: {}\n", f.status().as_u16()));
        }
        let r = browser.get(&back).send().await.unwrap();
        page.push_str(&r.text().await.unwrap());
    }
    let output = tokio::task::spawn_blocking(move || {
        let mut out = child.wait_with_output().unwrap();
        out.stderr = reader.join().unwrap().into_bytes();
        out
    })
    .await
    .unwrap();
    Connected { output, page }
}

/// A consent that went through: the command's output and its `--json` answer.
fn connected(c: &Connected) -> (String, serde_json::Value) {
    let t = text(&c.output);
    assert!(c.output.status.success(), "{t}");
    assert!(c.page.contains("connected"), "{}", c.page);
    let v = serde_json::from_slice(&c.output.stdout).unwrap_or_else(|_| panic!("{t}"));
    (t, v)
}

fn host_of(url: &str) -> String {
    url::Url::parse(url).unwrap().authority().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_connect_runs_the_consent_for_every_oauth_connector() {
    use ferry_tests::saas::hubspot::{HsAuth, HsConfig, HubSpotMock};
    use ferry_tests::saas::salesforce::{SalesforceMock, SfConfig};
    use ferry_tests::saas::servicenow::{ServiceNowMock, SnAuth, SnConfig};
    use ferry_tests::saas::slack::{SlackMock, SlackMockConfig};
    use ferry_tests::saas::zendesk::{self, ZendeskMock};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let json = |o: &Output| -> serde_json::Value {
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(o)))
    };

    // Salesforce: web server flow with PKCE; the refresh token and the org's instance_url
    // land in the secret; `profiles test` then lists the org's objects with it.
    let sf = SalesforceMock::start(SfConfig::default()).await;
    let (id, secret) = SalesforceMock::client();
    let c = connect(
        d,
        "salesforce",
        "sf",
        id,
        Some(secret),
        &host_of(&sf.url()),
        false,
    )
    .await;
    let t = text(&c.output);
    assert!(c.output.status.success(), "{t}");
    assert!(c.page.contains("connected"), "{}", c.page);
    assert_eq!(json(&c.output)["type"], "oauth2_refresh_token", "{t}");
    let asked = sf.consent().last_request.lock().unwrap().clone();
    assert_eq!(asked["code_challenge_method"], "S256");
    assert_eq!(asked["scope"], "api refresh_token");
    assert!(!t.contains(secret), "the client secret was printed:\n{t}");
    let o = ferry(d, &["profiles", "test", "sf"]).await;
    assert!(o.status.success(), "{}", text(&o));

    // HubSpot: no PKCE on its documented authorize request; the secret is required.
    let hs = HubSpotMock::start(HsConfig {
        auth: HsAuth::OAuth {
            client_id: "hs-client".into(),
            client_secret: "hs-secret-1".into(),
            refresh_token: "hs-refresh-1".into(),
        },
        ..Default::default()
    })
    .await;
    let c = connect(
        d,
        "hubspot",
        "hs",
        "hs-client",
        None,
        &host_of(&hs.url()),
        false,
    )
    .await;
    assert!(!c.output.status.success());
    assert!(
        text(&c.output).contains("client secret"),
        "{}",
        text(&c.output)
    );
    let c = connect(
        d,
        "hubspot",
        "hs",
        "hs-client",
        Some("hs-secret-1"),
        &host_of(&hs.url()),
        false,
    )
    .await;
    assert!(c.output.status.success(), "{}", text(&c.output));
    assert!(!hs
        .consent()
        .last_request
        .lock()
        .unwrap()
        .contains_key("code_challenge"));
    let o = ferry(d, &["profiles", "test", "hs"]).await;
    assert!(o.status.success(), "{}", text(&o));

    // ServiceNow: state is required; PKCE; the instance URL is remembered for tests and flows.
    let sn = ServiceNowMock::start(SnConfig {
        auth: SnAuth::OAuth {
            client_id: "sn-client".into(),
            client_secret: "sn-secret-1".into(),
            refresh_token: "sn-refresh-1".into(),
        },
        ..Default::default()
    })
    .await;
    let c = connect(
        d,
        "servicenow",
        "sn",
        "sn-client",
        Some("sn-secret-1"),
        &host_of(&sn.url()),
        false,
    )
    .await;
    assert!(c.output.status.success(), "{}", text(&c.output));
    assert_eq!(
        json(&c.output)["properties"]["instance_url"],
        sn.url(),
        "{}",
        text(&c.output)
    );
    let o = ferry(d, &["profiles", "test", "sn"]).await;
    assert!(o.status.success(), "{}", text(&o));

    // Slack: a PKCE app's localhost redirect gets user scopes only; without token rotation the
    // profile is the user token itself.
    let sl = SlackMock::start(SlackMockConfig::default()).await;
    let c = connect(
        d,
        "slack",
        "sl",
        ferry_tests::saas::slack::OAUTH_CLIENT_ID,
        None,
        &host_of(&sl.url()),
        false,
    )
    .await;
    assert!(c.output.status.success(), "{}", text(&c.output));
    assert_eq!(json(&c.output)["type"], "bearer");
    let asked = sl.consent().last_request.lock().unwrap().clone();
    assert!(
        asked["user_scope"].contains("channels:history,"),
        "{asked:?}"
    );
    assert!(!asked.contains_key("scope"), "{asked:?}");
    let o = ferry(d, &["profiles", "test", "sl"]).await;
    assert!(o.status.success(), "{}", text(&o));

    // Zendesk: a forged callback (another state) is turned away while ferry keeps waiting for
    // the real one; the rotated refresh token works; a revoked grant makes `profiles test`
    // fail with Zendesk's own words and no secret.
    let zd = ZendeskMock::start(Default::default()).await;
    let c = connect(
        d,
        "zendesk",
        "zd",
        zendesk::OAUTH_CLIENT_ID,
        Some(zendesk::OAUTH_CLIENT_SECRET),
        &host_of(&zd.url()),
        true,
    )
    .await;
    assert!(c.output.status.success(), "{}", text(&c.output));
    assert!(c.page.starts_with("forged: 400"), "{}", c.page);
    let o = ferry(d, &["profiles", "test", "zd"]).await;
    assert!(o.status.success(), "{}", text(&o));
    zd.revoke_oauth();
    let o = ferry(d, &["profiles", "test", "zd"]).await;
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("invalid_grant"), "{t}");
    for s in [zendesk::OAUTH_CLIENT_SECRET, "zd-rt-1", "zd-at-1"] {
        assert!(!t.contains(s), "{s} printed:\n{t}");
    }

    // A refused consent stores nothing.
    zd.consent()
        .deny
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let c = connect(
        d,
        "zendesk",
        "zd-denied",
        zendesk::OAUTH_CLIENT_ID,
        Some(zendesk::OAUTH_CLIENT_SECRET),
        &host_of(&zd.url()),
        false,
    )
    .await;
    let t = text(&c.output);
    assert!(!c.output.status.success(), "{t}");
    assert!(
        t.contains("access_denied") && t.contains("nothing was stored"),
        "{t}"
    );
    let o = ferry(d, &["profiles", "list", "--json"]).await;
    assert!(!text(&o).contains("zd-denied"), "{}", text(&o));

    // A connector without a consent says what to do instead.
    let o = ferry(d, &["profiles", "connect", "rest", "r", "--client-id", "x"]).await;
    assert!(!o.status.success());
    assert!(text(&o).contains("profiles put"), "{}", text(&o));
}

/// A profile stored before profiles had to name their hosts is refused before anything is
/// sent, with the command that binds it; `profiles migrate` binds it and the same run works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_without_hosts_is_refused_until_migrated() {
    let mock = ZendeskMock::start(ZendeskMockConfig {
        tickets: 7,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The secrets file as an older ferry wrote it: no "hosts".
    std::fs::create_dir_all(d.join(".ferry")).unwrap();
    std::fs::write(
        d.join(".ferry/secrets.json"),
        r#"{"legacy": {"type": "basic", "username": "agent@acme.test/token", "password": "zd-token-1"}}"#,
    )
    .unwrap();
    std::fs::write(
        d.join("tickets.yaml"),
        format!(
            "name: zd-legacy\nsource:\n  connector: zendesk\n  profile: legacy\n  entity: tickets\n  properties: {{ base_url: \"{}\" }}\ndestination:\n  local: out\n  format: jsonl\n",
            mock.url()
        ),
    )
    .unwrap();
    let o = ferry(d, &["validate", "tickets.yaml"]).await;
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("source.profile")
            && t.contains("'127.0.0.1'")
            && t.contains("ferry profiles migrate legacy --host 127.0.0.1"),
        "{t}"
    );
    assert!(!t.contains("zd-token-1"), "{t}");
    assert!(mock.requests().is_empty(), "nothing was sent to the host");
    let o = ferry(d, &["profiles", "list"]).await;
    assert!(text(&o).contains("no hosts"), "{}", text(&o));

    let o = ferry(d, &["profiles", "migrate", "legacy", "--host", "127.0.0.1"]).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("127.0.0.1"), "{}", text(&o));
    let o = ferry(d, &["run", "tickets.yaml", "--json"]).await;
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let rec: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rec["records_written"], 7, "{t}");
    let o = ferry(d, &["profiles", "migrate", "nobody", "--host", "x.example"]).await;
    assert!(!o.status.success() && text(&o).contains("no profile 'nobody'"));
}

/// `profiles connect ga4`: Google's installed-app consent with PKCE and offline access, a
/// loopback redirect on 127.0.0.1; the stored profile (refresh token, bound to the hosts the
/// consent used) then checks a GA4 flow against the Data API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_connect_runs_googles_consent_for_ga4() {
    use ferry_tests::saas::ga4::{Ga4Config, Ga4Mock};
    let ga = Ga4Mock::start(Ga4Config::default()).await;
    let cfg = Ga4Config::default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = connect(
        d,
        "ga4",
        "ga",
        &cfg.client_id,
        Some(&cfg.client_secret),
        &host_of(&ga.url()),
        false,
    )
    .await;
    let (t, v) = connected(&c);
    assert_eq!(v["type"], "oauth2_refresh_token", "{t}");
    assert_eq!(v["properties"]["base_url"], ga.url(), "{t}");
    let asked = ga.consent().last_request.lock().unwrap().clone();
    assert_eq!(asked["code_challenge_method"], "S256");
    assert_eq!(asked["access_type"], "offline");
    assert_eq!(
        asked["scope"],
        "https://www.googleapis.com/auth/analytics.readonly"
    );
    assert!(asked["redirect_uri"].starts_with("http://127.0.0.1:"));
    assert!(
        !t.contains(&cfg.client_secret) && !t.contains(&cfg.refresh_token),
        "{t}"
    );
    let secrets = std::fs::read_to_string(d.join(".ferry/secrets.json")).unwrap();
    assert!(secrets.contains(&cfg.refresh_token) && secrets.contains("\"hosts\""));

    std::fs::write(
        d.join("ga.yaml"),
        format!(
            "name: ga-traffic\nsource:\n  connector: ga4\n  profile: ga\n  entity: traffic\n  properties:\n    property_id: \"123456789\"\n    base_url: \"{}\"\n    reports:\n      traffic: {{ dimensions: [date, country], metrics: [sessions] }}\ndestination:\n  local: out\n",
            ga.url()
        ),
    )
    .unwrap();
    let o = ferry(d, &["validate", "ga.yaml"]).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("checked against the ga4 source"),
        "{}",
        text(&o)
    );
}

/// `profiles connect jira`: Atlassian's 3LO consent (audience, offline access, a JSON code
/// exchange); the site the token reaches becomes the flow's `base_url`
/// (`…/ex/jira/<cloud id>`), and a flow with the stored profile reads its issues there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_connect_runs_atlassians_consent_for_jira() {
    use ferry_tests::saas::jira::{JiraConfig, JiraMock, CLOUD_ID};
    let cfg = JiraConfig::default();
    let ji = JiraMock::start(JiraConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = connect(
        d,
        "jira",
        "ji",
        &cfg.client_id,
        Some(&cfg.client_secret),
        &host_of(&ji.url()),
        false,
    )
    .await;
    let (t, v) = connected(&c);
    assert_eq!(v["type"], "oauth2_refresh_token", "{t}");
    let base = format!("{}/ex/jira/{CLOUD_ID}", ji.url());
    assert_eq!(v["properties"]["base_url"], base, "{t}");
    let asked = ji.consent().last_request.lock().unwrap().clone();
    assert_eq!(asked["audience"], "api.atlassian.com");
    assert_eq!(
        asked["scope"],
        "read:jira-work read:jira-user offline_access"
    );
    assert!(!t.contains(&cfg.client_secret), "{t}");
    std::fs::write(
        d.join("ji.yaml"),
        format!(
            "name: ji-issues\nsource:\n  connector: jira\n  profile: ji\n  entity: issues\n  properties: {{ base_url: \"{base}\" }}\ndestination:\n  local: out\n  format: jsonl\n"
        ),
    )
    .unwrap();
    let o = ferry(d, &["run", "ji.yaml", "--json"]).await;
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let rec: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rec["records_written"], cfg.issues, "{t}");
    assert!(ji
        .requests()
        .iter()
        .any(|r| r.path == format!("/ex/jira/{CLOUD_ID}/rest/api/3/search/jql")));
}
