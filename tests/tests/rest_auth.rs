//! Connector profiles against the mock server: every auth kind, OAuth2 refresh shared by
//! concurrent requests and written back, revoked refresh tokens, refused credentials.

use ferry::adapters::memory::MemorySecrets;
use ferry::connector::auth::Authenticator;
use ferry::connector::rest::RestSource;
use ferry::connector::{ReadRequest, Source, SourceError};
use ferry::ports::{Secret, SecretStore};
use ferry_tests::harness::{rest_flow, Local};
use ferry_tests::{Mock, MockAuth, MockConfig};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn offset_props(mock: &Mock, concurrency: usize) -> serde_json::Map<String, Value> {
    json!({
        "base_url": mock.url(),
        "concurrency": concurrency,
        "http": {"timeout_ms": 2000, "max_retries": 2, "backoff_initial_ms": 5, "backoff_max_ms": 20},
        "endpoints": {"tickets": {"path": "/offset/tickets", "records": "$.data[*]",
            "paginator": {"type": "offset", "limit": 10, "total_path": "$.total"}}}
    })
    .as_object()
    .unwrap()
    .clone()
}

async fn read_all(src: &RestSource) -> Result<usize, SourceError> {
    let req = ReadRequest {
        entity: "tickets".into(),
        window: None,
        incremental_field: None,
        page_size: None,
        filters: vec![],
    };
    let (mut n, mut cursor) = (0, None);
    loop {
        let p = src.read_page(&req, cursor.as_ref()).await?;
        n += p.records.len();
        match p.next {
            Some(c) => cursor = Some(c),
            None => return Ok(n),
        }
    }
}

fn source(mock: &Mock, secret: Value, store: Arc<MemorySecrets>, concurrency: usize) -> RestSource {
    let auth = Authenticator::from_secret("helpdesk", &Secret::new(secret), store).unwrap();
    RestSource::new(&offset_props(mock, concurrency), None, auth).unwrap()
}

#[tokio::test]
async fn static_credentials_are_sent_and_refusals_name_the_profile() {
    let cases = [
        (
            MockAuth::ApiKeyHeader {
                header: "X-API-Key".into(),
                key: "k-123".into(),
            },
            json!({"type": "api_key", "hosts": ["127.0.0.1"], "header": "X-API-Key", "key": "k-123"}),
            json!({"type": "api_key", "hosts": ["127.0.0.1"], "header": "X-API-Key", "key": "wrong-key"}),
        ),
        (
            MockAuth::ApiKeyQuery {
                param: "api_key".into(),
                key: "q-456".into(),
            },
            json!({"type": "api_key", "hosts": ["127.0.0.1"], "query": "api_key", "key": "q-456"}),
            json!({"type": "api_key", "hosts": ["127.0.0.1"], "query": "api_key", "key": "wrong-key"}),
        ),
        (
            MockAuth::Basic {
                user: "ann".into(),
                password: "pw-789".into(),
            },
            json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "ann", "password": "pw-789"}),
            json!({"type": "basic", "hosts": ["127.0.0.1"], "username": "ann", "password": "wrong-key"}),
        ),
        (
            MockAuth::Bearer("tok-000".into()),
            json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": "tok-000", "headers": {"X-Tenant": "t1"}}),
            json!({"type": "bearer", "hosts": ["127.0.0.1"], "token": "wrong-key"}),
        ),
    ];
    for (auth, good, bad) in cases {
        let mock = Mock::start(MockConfig {
            tickets: 35,
            auth: auth.clone(),
            ..Default::default()
        })
        .await;
        let store = Arc::new(MemorySecrets::default());
        assert_eq!(
            read_all(&source(&mock, good, store.clone(), 2))
                .await
                .unwrap(),
            35,
            "{auth:?}"
        );
        let e = read_all(&source(&mock, bad, store, 2)).await.unwrap_err();
        assert_eq!(
            e.kind(),
            ferry::error::ErrorKind::AuthFailed,
            "{auth:?}: {e}"
        );
        let m = e.to_string();
        assert!(m.contains("'helpdesk'") && m.contains("401"), "{m}");
        assert!(!m.contains("wrong-key"), "secret in message: {m}");
    }
}

fn oauth_mock_auth(ttl: Duration) -> MockAuth {
    MockAuth::OAuth {
        client_id: "cid".into(),
        client_secret: "csecret".into(),
        refresh_token: "rt-0".into(),
        token_ttl: ttl,
    }
}

#[tokio::test]
async fn expired_access_token_is_refreshed_once_under_concurrency_and_written_back() {
    let mock = Mock::start(MockConfig {
        tickets: 200,
        auth: oauth_mock_auth(Duration::from_secs(3600)),
        ..Default::default()
    })
    .await;
    let store = Arc::new(MemorySecrets::default());
    // A stored access token the server does not know (it expired): the first requests get 401.
    let secret = json!({"type": "oauth2_refresh_token", "hosts": ["127.0.0.1"], "token_url": format!("{}/oauth/token", mock.url()),
        "client_id": "cid", "client_secret": "csecret", "refresh_token": "rt-0",
        "access_token": "stale", "expires_at": "2099-01-01T00:00:00Z"});
    store
        .put_secret("helpdesk", &Secret::new(secret.clone()))
        .await
        .unwrap();
    let src = Arc::new(source(&mock, secret, store.clone(), 16));
    // 16 first-page requests at once, all with the stale token.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let src = src.clone();
        set.spawn(async move {
            let req = ReadRequest {
                entity: "tickets".into(),
                window: None,
                incremental_field: None,
                page_size: None,
                filters: vec![],
            };
            src.read_page(&req, None).await.map(|p| p.records.len())
        });
    }
    while let Some(r) = set.join_next().await {
        assert_eq!(r.unwrap().unwrap(), 10);
    }
    assert!(
        mock.requests().iter().filter(|r| r.status == 401).count() >= 2,
        "several requests met the expired token"
    );
    assert_eq!(
        mock.token_requests(),
        1,
        "one refresh shared by the requests in flight"
    );
    assert_eq!(read_all(&src).await.unwrap(), 200);
    assert_eq!(mock.token_requests(), 1);
    assert_eq!(src.auth().refresh_count(), 1);
    let saved = store.get_secret("helpdesk").await.unwrap().unwrap();
    let saved = saved.expose();
    assert_eq!(
        saved["refresh_token"],
        json!(mock.current_refresh_token()),
        "rotated refresh token written back"
    );
    assert_ne!(saved["access_token"], json!("stale"));
    assert!(saved["expires_at"].is_string());

    // Tokens about to expire are refreshed before use, without a 401 first.
    mock.expire_access_tokens();
    let before_401s = mock.requests().iter().filter(|r| r.status == 401).count();
    let src = source(&mock, saved.clone(), store.clone(), 16);
    assert_eq!(read_all(&src).await.unwrap(), 200);
    assert_eq!(mock.token_requests(), 2);
    let after_401s = mock.requests().iter().filter(|r| r.status == 401).count();
    // The written-back expiry is an hour away, so this run first uses it, gets 401 (the server
    // expired it early), and refreshes once.
    assert!(after_401s - before_401s >= 1);
}

#[tokio::test]
async fn token_near_expiry_is_refreshed_before_use() {
    let mock = Mock::start(MockConfig {
        tickets: 20,
        auth: oauth_mock_auth(Duration::from_secs(30)),
        ..Default::default()
    })
    .await;
    let store = Arc::new(MemorySecrets::default());
    // Client credentials: the first request fetches a token; its 30 s lifetime is inside the
    // refresh margin, so every page refreshes ahead of time instead of meeting a 401.
    let secret = json!({"type": "oauth2_client_credentials", "hosts": ["127.0.0.1"], "token_url": format!("{}/oauth/token", mock.url()),
        "client_id": "cid", "client_secret": "csecret"});
    let src = source(&mock, secret, store, 1);
    assert_eq!(read_all(&src).await.unwrap(), 20);
    assert!(
        mock.requests().iter().all(|r| r.status != 401),
        "no request went out with an expired token"
    );
    assert_eq!(mock.token_requests(), src.auth().refresh_count());
    assert!(mock.token_requests() >= 2);
}

#[tokio::test]
async fn revoked_refresh_token_fails_the_run_auth_failed_naming_the_profile() {
    let mock = Mock::start(MockConfig {
        tickets: 20,
        auth: oauth_mock_auth(Duration::from_secs(3600)),
        ..Default::default()
    })
    .await;
    mock.revoke_refresh_token();
    let local = Local::new();
    local
        .put_secret("helpdesk", json!({"type": "oauth2_refresh_token", "hosts": ["127.0.0.1"], "token_url": format!("{}/oauth/token", mock.url()),
            "client_id": "cid", "client_secret": "csecret", "refresh_token": "rt-0"}))
        .await;
    let props = Value::Object(offset_props(&mock, 4));
    let out = local
        .run(&rest_flow(
            "oauth-revoked",
            "tickets",
            Some("helpdesk"),
            &props,
            "",
        ))
        .await;
    let f = out.failure.expect("the run fails");
    assert_eq!(f.error, "AuthFailed", "{f:?}");
    assert!(
        f.cause.contains("helpdesk") && f.cause.contains("refresh token"),
        "{}",
        f.cause
    );
    assert!(
        !f.cause.contains("rt-0") && !f.cause.contains("csecret"),
        "{}",
        f.cause
    );
    assert_eq!(local.watermark("oauth-revoked").await, None);
}

#[tokio::test]
async fn a_flow_with_a_profile_reads_through_the_engine_and_writes_tokens_back() {
    let mock = Mock::start(MockConfig {
        tickets: 64,
        auth: oauth_mock_auth(Duration::from_secs(3600)),
        ..Default::default()
    })
    .await;
    let local = Local::new();
    local
        .put_secret("helpdesk", json!({"type": "oauth2_refresh_token", "hosts": ["127.0.0.1"], "token_url": format!("{}/oauth/token", mock.url()),
            "client_id": "cid", "client_secret": "csecret", "refresh_token": "rt-0"}))
        .await;
    let props = Value::Object(offset_props(&mock, 4));
    let out = local
        .run(&rest_flow(
            "oauth-ok",
            "tickets",
            Some("helpdesk"),
            &props,
            "  chunk: { records: 20 }\n",
        ))
        .await;
    assert!(out.succeeded(), "{:?}", out.failure);
    assert_eq!(local.output("out/oauth-ok").len(), 64);
    assert_eq!(
        local.secret("helpdesk")["refresh_token"],
        json!(mock.current_refresh_token())
    );
}
