//! Two runs sharing one OAuth profile whose provider rotates refresh tokens (the mock, like
//! ServiceNow and Salesforce with rotation on, invalidates a refresh token when it is used) both
//! refresh at once — 100 times in a row on each embedded store, 20 times on Secrets Manager
//! (moto): both end with an access token the API accepts, and the stored refresh token is always
//! the one the provider honours (the next round would fail otherwise). Without the conditional
//! write-back the second run either fails with `invalid_grant` or overwrites the rotated token.

use ferry::connector::auth::Authenticator;
use ferry::ports::{Secret, SecretStore};
use ferry_tests::{Mock, MockAuth, MockConfig};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const PROFILE: &str = "shared-crm";

async fn rounds(store: Arc<dyn SecretStore>, n: usize) {
    let mock = Mock::start(MockConfig {
        tickets: 10,
        auth: MockAuth::OAuth {
            client_id: "cid".into(),
            client_secret: "csecret".into(),
            refresh_token: "rt-0".into(),
            token_ttl: Duration::from_secs(3600),
        },
        ..Default::default()
    })
    .await;
    store
        .put_secret(
            PROFILE,
            &Secret::new(
                json!({"type": "oauth2_refresh_token", "hosts": ["127.0.0.1"],
                "token_url": format!("{}/oauth/token", mock.url()),
                "client_id": "cid", "client_secret": "csecret", "refresh_token": "rt-0"}),
            ),
        )
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let data = format!("{}/offset/tickets?offset=0&limit=5", mock.url());
    for round in 0..n {
        // The access token expired: both runs start from a secret without a usable one.
        let mut stored = store
            .get_secret(PROFILE)
            .await
            .unwrap()
            .unwrap()
            .expose()
            .clone();
        stored.as_object_mut().unwrap().remove("access_token");
        stored.as_object_mut().unwrap().remove("expires_at");
        store
            .put_secret(PROFILE, &Secret::new(stored.clone()))
            .await
            .unwrap();
        let a = Authenticator::from_secret(PROFILE, &Secret::new(stored.clone()), store.clone())
            .unwrap();
        let b = Authenticator::from_secret(PROFILE, &Secret::new(stored), store.clone()).unwrap();
        let (ra, rb) = tokio::join!(a.apply(http.get(&data)), b.apply(http.get(&data)));
        let (ra, _) = ra.unwrap_or_else(|e| panic!("round {round}: run A: {e}"));
        let (rb, _) = rb.unwrap_or_else(|e| panic!("round {round}: run B: {e}"));
        for (run, req) in [("A", ra), ("B", rb)] {
            let status = req.send().await.unwrap().status();
            assert_eq!(status, 200, "round {round}: run {run}'s token was refused");
        }
    }
    // The refresh token left in the store still works.
    let mut stored = store
        .get_secret(PROFILE)
        .await
        .unwrap()
        .unwrap()
        .expose()
        .clone();
    stored.as_object_mut().unwrap().remove("access_token");
    let c = Authenticator::from_secret(PROFILE, &Secret::new(stored), store.clone()).unwrap();
    let (req, _) = c
        .apply(http.get(&data))
        .await
        .expect("the stored refresh token is the one the provider honours");
    assert_eq!(req.send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_sharing_a_rotating_profile_in_memory() {
    rounds(
        Arc::new(ferry::adapters::memory::MemorySecrets::default()),
        100,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_sharing_a_rotating_profile_in_the_secrets_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.json");
    rounds(
        Arc::new(ferry::adapters::secrets_file::SecretsFile::new(&file)),
        100,
    )
    .await;
}

/// Two `ferry` processes have a `SecretsFile` each on the same file: the lock is the file's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_secrets_file_handles_on_one_file_do_not_overwrite_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.json");
    let one = ferry::adapters::secrets_file::SecretsFile::new(&file);
    let two = ferry::adapters::secrets_file::SecretsFile::new(&file);
    one.put_secret("p", &Secret::new(json!({"n": 0})))
        .await
        .unwrap();
    let (_, v0) = one.get_secret_versioned("p").await.unwrap().unwrap();
    let (s1, s2) = (Secret::new(json!({"n": 1})), Secret::new(json!({"n": 2})));
    let (w1, w2) = tokio::join!(
        one.put_secret_if("p", &s1, &v0),
        two.put_secret_if("p", &s2, &v0)
    );
    assert!(
        w1.unwrap() ^ w2.unwrap(),
        "exactly one conditional write wins"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_sharing_a_rotating_profile_in_secrets_manager() {
    let env = ferry_tests::aws::AwsEnv::new().await;
    let store = ferry::adapters::secretsmanager::SecretsManagerStore::new(
        env.clients.secrets.clone(),
        env.settings.secret_prefix.clone(),
    );
    // Version stages do the compare-and-swap: a write from a stale version loses.
    store
        .put_secret("cas", &Secret::new(json!({"n": 0})))
        .await
        .unwrap();
    let (_, v0) = store.get_secret_versioned("cas").await.unwrap().unwrap();
    assert!(store
        .put_secret_if("cas", &Secret::new(json!({"n": 1})), &v0)
        .await
        .unwrap());
    assert!(!store
        .put_secret_if("cas", &Secret::new(json!({"n": 2})), &v0)
        .await
        .unwrap());
    assert_eq!(
        store.get_secret("cas").await.unwrap().unwrap().expose(),
        &json!({"n": 1})
    );
    rounds(Arc::new(store), 20).await;
}
