//! A SaaS connector as a user drives it from the command line: store a profile, list and describe
//! the entities, run a flow — against the Zendesk mock, with the secret never printed.

use ferry_tests::saas::zendesk::{ZendeskMock, ZendeskMockConfig};
use std::path::Path;
use std::process::Output;

mod support;
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
        r#"{"type": "basic", "username": "agent@acme.test/token", "password": "zd-token-1"}"#,
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
        r#"{"type": "basic", "username": "agent@acme.test/token", "password": "wrong-token"}"#,
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
        r#"{"type": "basic", "username": "agent@acme.test/token", "password": "zd-token-1"}"#,
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
        r#"{"type": "basic", "username": "agent@acme.test/token", "password": "revoked-token"}"#,
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
