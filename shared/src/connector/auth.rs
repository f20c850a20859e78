//! Connector profile credentials: how a request is authenticated.
//!
//! A profile's secret is a JSON object whose `type` names the auth kind; every kind also takes
//! `headers` (custom static headers sent with every request):
//!
//! ```json
//! {"type": "api_key", "key": "…", "header": "X-API-Key"}          // or "query": "api_key"
//! {"type": "basic", "username": "…", "password": "…"}
//! {"type": "bearer", "token": "…"}
//! {"type": "oauth2_client_credentials", "token_url": "…", "client_id": "…", "client_secret": "…", "scope": "…"}
//! {"type": "oauth2_refresh_token", "token_url": "…", "client_id": "…", "client_secret": "…",
//!  "refresh_token": "…", "access_token": "…", "expires_at": "2026-01-01T00:00:00Z"}
//! {"type": "service_account", "client_email": "…@….iam.gserviceaccount.com", "private_key": "-----BEGIN PRIVATE KEY-----…",
//!  "token_uri": "https://oauth2.googleapis.com/token", "scope": "…"}   // a Google key file as downloaded
//! {"type": "none", "headers": {"X-Org": "42"}}
//! ```
//!
//! Every kind also takes `hosts`: the hosts the profile's credentials may be sent to
//! (`["api.acme.com", "*.zendesk.com"]`). A profile is bound to its hosts: a request to any
//! other host — a flow pointing the profile elsewhere, or an API's next link to another host —
//! is refused before credentials are attached, naming the profile and the host. A profile without
//! `hosts` goes nowhere but the host its own OAuth token endpoint names as `instance_url`; the
//! refusal names the command that binds it (`ferry profiles migrate NAME --host HOST`).
//! Credentials go over https only, except to loopback hosts.
//!
//! OAuth2 access tokens are refreshed shortly before they expire and when the API answers 401.
//! One refresh is shared by every request in flight (they wait on the same lock and see the new
//! token), and the refreshed tokens are written back to the profile's secret so the next run —
//! possibly in another Lambda — starts from them. Secret values never reach a log or an error.

use super::SourceError;
use crate::ports::{Secret, SecretStore};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Refresh an access token this long before it expires.
const REFRESH_MARGIN_SECONDS: i64 = 60;

/// Google's token endpoint, where a service account key names no other.
fn google_token_uri() -> String {
    "https://oauth2.googleapis.com/token".into()
}

/// Fields of a Google service-account key file that ferry does not use.
const GOOGLE_KEY_FILE_EXTRAS: &[&str] = &[
    "project_id",
    "client_id",
    "auth_uri",
    "auth_provider_x509_cert_url",
    "client_x509_cert_url",
    "universe_domain",
];

/// What a service account asks for unless its secret says `scope`.
const GOOGLE_DEFAULT_SCOPE: &str = "https://www.googleapis.com/auth/analytics.readonly";

/// The JWT bearer grant's assertion (RFC 7523 §3; Google's claim set).
#[derive(serde::Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum AuthSpec {
    None,
    ApiKey {
        key: String,
        #[serde(default)]
        header: Option<String>,
        #[serde(default)]
        query: Option<String>,
        /// Put before the key in a header, e.g. `Token ` (the space is yours to include).
        #[serde(default)]
        prefix: Option<String>,
    },
    Basic {
        username: String,
        password: String,
    },
    Bearer {
        token: String,
    },
    Oauth2ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: String,
        #[serde(default)]
        scope: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_at: Option<DateTime<Utc>>,
        /// The API host a token is good for, as the token endpoint last said (Salesforce).
        #[serde(default)]
        instance_url: Option<String>,
        #[serde(default)]
        client_auth: ClientAuth,
    },
    /// A Google Cloud service account's JSON key as the console downloads it (its `type` is
    /// `service_account`): access tokens by the JWT bearer grant (RFC 7523), an assertion
    /// signed RS256 with `private_key` (<https://developers.google.com/identity/protocols/oauth2/service-account>).
    /// The key file's other fields ([`GOOGLE_KEY_FILE_EXTRAS`]) are accepted and not read.
    ServiceAccount {
        client_email: String,
        private_key: String,
        #[serde(default)]
        private_key_id: Option<String>,
        #[serde(default = "google_token_uri")]
        token_uri: String,
        /// Space-separated scopes (default: Google Analytics read-only, what `ga4` reads).
        #[serde(default)]
        scope: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_at: Option<DateTime<Utc>>,
    },
    Oauth2RefreshToken {
        token_url: String,
        client_id: String,
        #[serde(default)]
        client_secret: Option<String>,
        refresh_token: String,
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_at: Option<DateTime<Utc>>,
        /// The API host a token is good for, as the token endpoint last said (Salesforce).
        #[serde(default)]
        instance_url: Option<String>,
        #[serde(default)]
        client_auth: ClientAuth,
    },
}

/// How the OAuth2 client authenticates to the token endpoint: HTTP Basic (default) or
/// `client_id`/`client_secret` form fields (`"client_auth": "body"`, as Salesforce documents).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    Basic,
    Body,
}

#[derive(Debug, Clone, Default)]
struct TokenState {
    access: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    refresh: Option<String>,
    instance_url: Option<String>,
    /// Bumped by every refresh, so a request that got 401 with an old token does not trigger a
    /// second refresh when another request already did one.
    generation: u64,
}

/// Applies a profile's credentials to requests.
pub struct Authenticator {
    profile: Option<String>,
    spec: AuthSpec,
    headers: BTreeMap<String, String>,
    /// The secret as stored, to write refreshed tokens back into.
    raw: serde_json::Map<String, serde_json::Value>,
    state: tokio::sync::Mutex<TokenState>,
    secrets: Option<Arc<dyn SecretStore>>,
    client: reqwest::Client,
    refreshes: AtomicU64,
    /// The hosts the profile names (`hosts`), if it does.
    hosts: Option<Vec<String>>,
    /// A service account's private key, parsed once when the secret is read.
    signing_key: Option<jsonwebtoken::EncodingKey>,
    /// Hosts learnt in this run: the host of the `instance_url` the profile's own token endpoint
    /// named (or the secret stores).
    bound: std::sync::Mutex<Vec<String>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("profile", &self.profile)
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

/// What [`Authenticator::apply`] added, remembered to handle a 401.
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    generation: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    instance_url: Option<String>,
}

impl Authenticator {
    /// No credentials.
    pub fn none() -> Self {
        Self::build(
            None,
            AuthSpec::None,
            BTreeMap::new(),
            Default::default(),
            None,
        )
    }

    /// Parse a profile's secret. Errors name the profile and the field, never a value.
    pub fn from_secret(
        profile: &str,
        secret: &Secret,
        secrets: Arc<dyn SecretStore>,
    ) -> Result<Self, SourceError> {
        Self::from_secret_with(profile, secret, secrets, ClientAuth::Basic)
    }

    /// [`from_secret`](Self::from_secret) for a connector whose OAuth2 token endpoint expects
    /// `client_auth` (the vendor's documented way) when the secret does not say.
    pub fn from_secret_with(
        profile: &str,
        secret: &Secret,
        secrets: Arc<dyn SecretStore>,
        client_auth: ClientAuth,
    ) -> Result<Self, SourceError> {
        let auth_err = |message: String| SourceError::Auth {
            profile: profile.into(),
            message,
        };
        let raw = secret
            .expose()
            .as_object()
            .cloned()
            .ok_or_else(|| auth_err("the secret must be a JSON object with a `type` field (api_key, basic, bearer, oauth2_client_credentials, oauth2_refresh_token, service_account, none)".into()))?;
        let headers: BTreeMap<String, String> = match raw.get("headers") {
            None => BTreeMap::new(),
            Some(h) => serde_json::from_value(h.clone())
                .map_err(|_| auth_err("`headers` must map header names to text values".into()))?,
        };
        let hosts: Option<Vec<String>> = match raw.get("hosts") {
            None => None,
            Some(h) => {
                let list: Vec<String> = serde_json::from_value(h.clone()).map_err(|_| {
                    auth_err("`hosts` must be a list of host names such as [\"api.acme.com\", \"*.zendesk.com\"]".into())
                })?;
                for h in &list {
                    let bare = h.strip_prefix("*.").unwrap_or(h);
                    if bare.is_empty()
                        || bare.contains(['/', ':', '*', ' '])
                        || url::Host::parse(bare).is_err()
                    {
                        return Err(auth_err(format!(
                            "`hosts` entry '{h}' is not a host name; write it without scheme, port or path, e.g. \"api.acme.com\" or \"*.zendesk.com\""
                        )));
                    }
                }
                Some(list.into_iter().map(|h| h.to_ascii_lowercase()).collect())
            }
        };
        let mut spec_obj = raw.clone();
        spec_obj.remove("headers");
        spec_obj.remove("hosts");
        if spec_obj.get("type").and_then(|t| t.as_str()) == Some("service_account") {
            // A Google key file as downloaded: fields ferry does not use.
            for k in GOOGLE_KEY_FILE_EXTRAS {
                spec_obj.remove(*k);
            }
        }
        if !spec_obj.contains_key("type") {
            spec_obj.insert("type".into(), "none".into());
        }
        let oauth = spec_obj
            .get("type")
            .and_then(|t| t.as_str())
            .is_some_and(|t| t.starts_with("oauth2"));
        if oauth && !spec_obj.contains_key("client_auth") {
            let v = match client_auth {
                ClientAuth::Basic => "basic",
                ClientAuth::Body => "body",
            };
            spec_obj.insert("client_auth".into(), v.into());
        }
        let spec: AuthSpec =
            serde_json::from_value(serde_json::Value::Object(spec_obj)).map_err(|e| {
                // serde's message names fields and variants, not values.
                auth_err(format!("the secret is not a valid credential: {e}"))
            })?;
        if let AuthSpec::Oauth2ClientCredentials { token_url, .. }
        | AuthSpec::Oauth2RefreshToken { token_url, .. } = &spec
        {
            if let Err(m) = transport_ok(token_url) {
                return Err(auth_err(format!("token_url: {m}")));
            }
        }
        let mut signing_key = None;
        if let AuthSpec::ServiceAccount {
            token_uri,
            private_key,
            ..
        } = &spec
        {
            if let Err(m) = transport_ok(token_uri) {
                return Err(auth_err(format!("token_uri: {m}")));
            }
            signing_key = Some(
                jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes()).map_err(|_| {
                    auth_err(
                        "private_key is not an RSA private key in PEM form (\"-----BEGIN PRIVATE KEY-----\n…\"); put the service account's JSON key file into the secret as it was downloaded".into(),
                    )
                })?,
            );
        }
        if let AuthSpec::ApiKey { header, query, .. } = &spec {
            if header.is_some() == query.is_some() {
                return Err(auth_err(
                    "api_key needs exactly one of `header` (e.g. \"X-API-Key\") or `query` (e.g. \"api_key\")"
                        .into(),
                ));
            }
        }
        let mut a = Self::build(Some(profile.to_string()), spec, headers, raw, Some(secrets));
        a.hosts = hosts;
        a.signing_key = signing_key;
        if let Some(u) = a.state.get_mut().instance_url.clone() {
            a.bind_instance(&u);
        }
        Ok(a)
    }

    fn build(
        profile: Option<String>,
        spec: AuthSpec,
        headers: BTreeMap<String, String>,
        raw: serde_json::Map<String, serde_json::Value>,
        secrets: Option<Arc<dyn SecretStore>>,
    ) -> Self {
        let state = match &spec {
            AuthSpec::Oauth2ClientCredentials {
                access_token,
                expires_at,
                instance_url,
                ..
            } => TokenState {
                access: access_token.clone(),
                expires_at: *expires_at,
                instance_url: instance_url.clone(),
                ..Default::default()
            },
            AuthSpec::ServiceAccount {
                access_token,
                expires_at,
                ..
            } => TokenState {
                access: access_token.clone(),
                expires_at: *expires_at,
                ..Default::default()
            },
            AuthSpec::Oauth2RefreshToken {
                access_token,
                expires_at,
                refresh_token,
                instance_url,
                ..
            } => TokenState {
                access: access_token.clone(),
                expires_at: *expires_at,
                refresh: Some(refresh_token.clone()),
                instance_url: instance_url.clone(),
                generation: 0,
            },
            _ => TokenState::default(),
        };
        Authenticator {
            profile,
            spec,
            headers,
            raw,
            state: tokio::sync::Mutex::new(state),
            secrets,
            #[allow(
                clippy::expect_used,
                reason = "a builder with only a timeout fails only when rustls cannot start, which no request could survive"
            )]
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a plain reqwest client builds"),
            refreshes: AtomicU64::new(0),
            hosts: None,
            signing_key: None,
            bound: std::sync::Mutex::new(vec![]),
        }
    }

    /// Vendor text for a message: at most 200 characters, and any string value of the profile's
    /// secret (a token the vendor echoed) replaced by `<redacted>`.
    pub(crate) fn mask(&self, text: &str) -> String {
        let mut out: String = text.chars().take(200).collect();
        for v in self.raw.values().filter_map(|v| v.as_str()) {
            if v.len() >= 6 && out.contains(v) {
                out = out.replace(v, "<redacted>");
            }
        }
        if text.chars().count() > 200 {
            out.push('…');
        }
        out
    }

    /// Whether requests carry anything from the profile.
    fn has_credentials(&self) -> bool {
        !matches!(self.spec, AuthSpec::None) || !self.headers.is_empty()
    }

    /// May the profile's credentials go to `url`? Refuses plain http to a non-loopback host and
    /// any host the profile is not bound to (see the module docs), naming the profile and the
    /// host. Requests without credentials (no profile) are not restricted.
    pub fn check_destination(&self, url: &str) -> Result<(), SourceError> {
        if !self.has_credentials() {
            return Ok(());
        }
        transport_ok(url).map_err(|m| self.auth_error(m))?;
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.to_ascii_lowercase()))
            .unwrap_or_default();
        let bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        // Entries of `hosts` are lower-cased when the secret is read.
        let matches = |pattern: &str| match pattern.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => pattern == host,
        };
        let profile = self.profile.as_deref().unwrap_or("NAME");
        if bound.iter().any(|b| matches(b)) {
            return Ok(());
        }
        match &self.hosts {
            Some(declared) if declared.iter().any(|h| matches(h)) => Ok(()),
            Some(declared) => Err(self.auth_error(format!(
                "refused to send its credentials to host '{host}': the profile is bound to {}; \
                 a flow may not point a profile at another host and a next link to another host is not followed \
                 (if '{host}' is the vendor's, add it: `ferry profiles migrate {profile} --host {host}` \
                 or \"hosts\" in its secret)",
                declared.join(", ")
            ))),
            None => Err(self.auth_error(format!(
                    "refused to send its credentials to host '{host}': the profile names no \"hosts\" \
                     its credentials may go to{}; if '{host}' is the vendor's host for this profile, \
                     bind it: `ferry profiles migrate {profile} --host {host}` (a local profile) or \
                     add \"hosts\": [\"{host}\"] to its secret (docs/security.md)",
                    if bound.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (only {}, named by its own token endpoint)",
                            bound.join(", ")
                        )
                    }
                ))),
        }
    }

    /// Bind the host the token endpoint named (`instance_url`): it came from the profile's own
    /// token endpoint.
    fn bind_instance(&self, instance_url: &str) {
        if let Some(h) = url::Url::parse(instance_url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.to_ascii_lowercase()))
        {
            let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
            if !bound.contains(&h) {
                bound.push(h);
            }
        }
    }

    pub fn profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }

    /// The auth kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self.spec {
            AuthSpec::None => "none",
            AuthSpec::ApiKey { .. } => "api_key",
            AuthSpec::Basic { .. } => "basic",
            AuthSpec::Bearer { .. } => "bearer",
            AuthSpec::Oauth2ClientCredentials { .. } => "oauth2_client_credentials",
            AuthSpec::Oauth2RefreshToken { .. } => "oauth2_refresh_token",
            AuthSpec::ServiceAccount { .. } => "service_account",
        }
    }

    /// Token refreshes done by this instance (for tests and logs).
    pub fn refresh_count(&self) -> u64 {
        self.refreshes.load(Ordering::SeqCst)
    }

    /// The API host the token endpoint named (`instance_url`, Salesforce), or the one stored in
    /// the secret; `None` before the first token when the secret has none.
    pub async fn instance_url(&self) -> Option<String> {
        self.state.lock().await.instance_url.clone()
    }

    /// The query parameter holding a secret, to redact from URLs shown to users.
    pub fn secret_query_param(&self) -> Option<&str> {
        match &self.spec {
            AuthSpec::ApiKey { query, .. } => query.as_deref(),
            _ => None,
        }
    }

    /// `url` without the profile's query-string credential (`api_key` with `query`). An API that
    /// echoes the key into its next links would otherwise carry it into the page cursor, and so
    /// into the execution state and history; [`apply`](Self::apply) adds it back to the request.
    pub fn strip_credentials(&self, url: &str) -> String {
        let Some(param) = self.secret_query_param() else {
            return url.to_string();
        };
        let Ok(mut u) = url::Url::parse(url) else {
            return url.to_string();
        };
        if !u.query_pairs().any(|(k, _)| k == param) {
            return url.to_string();
        }
        let kept: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| k != param)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if kept.is_empty() {
            u.set_query(None);
        } else {
            u.query_pairs_mut().clear().extend_pairs(kept);
        }
        u.to_string()
    }

    fn is_oauth(&self) -> bool {
        matches!(
            self.spec,
            AuthSpec::Oauth2ClientCredentials { .. }
                | AuthSpec::Oauth2RefreshToken { .. }
                | AuthSpec::ServiceAccount { .. }
        )
    }

    pub(crate) fn auth_error(&self, message: impl Into<String>) -> SourceError {
        SourceError::Auth {
            profile: self.profile.clone().unwrap_or_else(|| "(none)".into()),
            message: message.into(),
        }
    }

    /// Add credentials to a request, refreshing an OAuth2 token that is missing or about to expire.
    pub async fn apply(
        &self,
        mut rb: reqwest::RequestBuilder,
    ) -> Result<(reqwest::RequestBuilder, Applied), SourceError> {
        for (k, v) in &self.headers {
            rb = rb.header(k, v);
        }
        let mut generation = 0;
        match &self.spec {
            AuthSpec::None => {}
            AuthSpec::ApiKey {
                key,
                header,
                query,
                prefix,
            } => {
                if let Some(h) = header {
                    rb = rb.header(h, format!("{}{key}", prefix.as_deref().unwrap_or("")));
                }
                if let Some(q) = query {
                    rb = rb.query(&[(q, key)]);
                }
            }
            AuthSpec::Basic { username, password } => {
                rb = rb.basic_auth(username, Some(password));
            }
            AuthSpec::Bearer { token } => rb = rb.bearer_auth(token),
            AuthSpec::Oauth2ClientCredentials { .. }
            | AuthSpec::Oauth2RefreshToken { .. }
            | AuthSpec::ServiceAccount { .. } => {
                let mut st = self.state.lock().await;
                if st.access.is_none() || !fresh(st.expires_at) {
                    self.refresh(&mut st).await?;
                }
                generation = st.generation;
                rb = rb.bearer_auth(st.access.as_deref().unwrap_or_default());
            }
        }
        Ok((rb, Applied { generation }))
    }

    /// The API answered 401 to a request sent with `applied`. `Ok(true)`: credentials were
    /// refreshed (by this call or a concurrent one), send again. `Ok(false)`: nothing to refresh.
    pub async fn on_unauthorized(&self, applied: Applied) -> Result<bool, SourceError> {
        if !self.is_oauth() {
            return Ok(false);
        }
        let mut st = self.state.lock().await;
        if st.generation == applied.generation {
            self.refresh(&mut st).await?;
        }
        Ok(true)
    }

    /// The API refused the access token in its own way instead of with a 401 (Marketo answers
    /// HTTP 200 with error 601/602 in the body): refresh it as a 401 would. `Ok(false)`: the
    /// profile has no token to refresh.
    pub async fn token_refused(&self) -> Result<bool, SourceError> {
        let generation = self.state.lock().await.generation;
        self.on_unauthorized(Applied { generation }).await
    }

    /// Get a fresh access token. Runs sharing a profile coordinate through its secret: a token
    /// another run already refreshed (and wrote back) is taken instead of refreshing again; a
    /// refresh token refused because another run rotated it is replaced by the one that run
    /// writes back; and the write-back is conditional on the secret version this refresh
    /// started from, so a run that lost the race takes the winner's tokens instead of
    /// overwriting them.
    async fn refresh(&self, st: &mut TokenState) -> Result<(), SourceError> {
        let started_from = self.read_stored().await?;
        if let Some((raw, _)) = &started_from {
            if self.adopt(st, raw) {
                return Ok(());
            }
        }
        if let Err((e, refused)) = self.token_request(st).await {
            if !refused || started_from.is_none() {
                return Err(e);
            }
            // Another run may have rotated the refresh token: wait for its write-back (a
            // version other than the one this refresh started from).
            let started_version = started_from.as_ref().map(|(_, v)| v.as_str());
            for wait_ms in [50u64, 100, 200, 400, 800, 1600] {
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                if let Some((raw, version)) = self.read_stored().await? {
                    if started_version != Some(version.as_str()) {
                        if self.adopt(st, &raw) {
                            return Ok(());
                        }
                        // A newer refresh token but no usable access token: use it.
                        return Box::pin(self.refresh(st)).await;
                    }
                }
            }
            return Err(e);
        }
        self.write_back(st, started_from).await
    }

    /// The profile's secret as stored now, with its version.
    async fn read_stored(
        &self,
    ) -> Result<Option<(serde_json::Map<String, serde_json::Value>, String)>, SourceError> {
        let (Some(profile), Some(store)) = (&self.profile, &self.secrets) else {
            return Ok(None);
        };
        let got = store
            .get_secret_versioned(profile)
            .await
            .map_err(|e| self.auth_error(format!("cannot read its secret: {e}")))?;
        Ok(got.and_then(|(s, v)| s.expose().as_object().cloned().map(|m| (m, v))))
    }

    /// Take tokens another run stored: its (rotated) refresh token always, its access token when
    /// it differs from ours and is not about to expire (`true`: nothing left to refresh).
    fn adopt(&self, st: &mut TokenState, raw: &serde_json::Map<String, serde_json::Value>) -> bool {
        let text = |k: &str| raw.get(k).and_then(|v| v.as_str()).map(str::to_string);
        if let (Some(r), AuthSpec::Oauth2RefreshToken { .. }) = (text("refresh_token"), &self.spec)
        {
            st.refresh = Some(r);
        }
        let access = text("access_token");
        let expires_at = text("expires_at")
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc));
        if access.is_none() || access == st.access || !fresh(expires_at) {
            return false;
        }
        st.access = access;
        st.expires_at = expires_at;
        if let Some(u) = text("instance_url") {
            self.bind_instance(&u);
            st.instance_url = Some(u);
        }
        st.generation += 1;
        tracing::info!(profile = ?self.profile, "took the access token another run refreshed");
        true
    }

    /// Ask the token endpoint for a new access token. `Err((e, true))`: the refresh token was
    /// refused (`invalid_grant`), which is what a run sees when another run sharing the profile
    /// rotated it first.
    async fn token_request(&self, st: &mut TokenState) -> Result<(), (SourceError, bool)> {
        let (token_url, mut form, client, client_auth) = match &self.spec {
            AuthSpec::Oauth2ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
                client_auth,
                ..
            } => {
                let mut form = vec![("grant_type", "client_credentials".to_string())];
                if let Some(s) = scope {
                    form.push(("scope", s.clone()));
                }
                (
                    token_url,
                    form,
                    Some((client_id.clone(), Some(client_secret.clone()))),
                    *client_auth,
                )
            }
            AuthSpec::Oauth2RefreshToken {
                token_url,
                client_id,
                client_secret,
                client_auth,
                ..
            } => (
                token_url,
                vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", st.refresh.clone().unwrap_or_default()),
                ],
                Some((client_id.clone(), client_secret.clone())),
                *client_auth,
            ),
            AuthSpec::ServiceAccount {
                client_email,
                private_key_id,
                token_uri,
                scope,
                ..
            } => {
                // The assertion is the client's authentication: no client id or secret.
                let now = Utc::now().timestamp();
                let claims = Assertion {
                    iss: client_email,
                    scope: scope.as_deref().unwrap_or(GOOGLE_DEFAULT_SCOPE),
                    aud: token_uri,
                    iat: now,
                    exp: now + 3600,
                };
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                header.kid = private_key_id.clone();
                let unsigned = || {
                    (
                        self.auth_error(
                            "cannot sign the token request with private_key; put the service account's JSON key file into the secret as it was downloaded",
                        ),
                        false,
                    )
                };
                // Parsed when the secret was read (`from_secret_with` refuses a bad key).
                let key = self.signing_key.as_ref().ok_or_else(unsigned)?;
                let jwt = jsonwebtoken::encode(&header, &claims, key).map_err(|_| unsigned())?;
                (
                    token_uri,
                    vec![
                        (
                            "grant_type",
                            "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string(),
                        ),
                        ("assertion", jwt),
                    ],
                    None,
                    ClientAuth::Body,
                )
            }
            _ => return Ok(()),
        };
        let grant_refused = matches!(self.spec, AuthSpec::Oauth2RefreshToken { .. });
        let mut post = self.client.post(token_url);
        match (client_auth, &client) {
            (_, None) => {}
            (ClientAuth::Basic, Some(c)) => post = post.basic_auth(&c.0, c.1.as_ref()),
            (ClientAuth::Body, Some(c)) => {
                form.push(("client_id", c.0.clone()));
                if let Some(s) = &c.1 {
                    form.push(("client_secret", s.clone()));
                }
            }
        }
        let resp = post.form(&form).send().await.map_err(|e| {
            (
                SourceError::Transient {
                    message: format!(
                        "connector profile '{}': the token endpoint {} is unreachable: {}",
                        self.profile.as_deref().unwrap_or("(none)"),
                        super::http::redact_url_str(token_url, None),
                        e.without_url()
                    ),
                },
                false,
            )
        })?;
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err((
                SourceError::Transient {
                    message: format!(
                        "connector profile '{}': the token endpoint answered {status}",
                        self.profile.as_deref().unwrap_or("(none)")
                    ),
                },
                false,
            ));
        }
        if !status.is_success() {
            // OAuth2 error bodies (RFC 6749 §5.2) carry an `error` code (invalid_grant,
            // invalid_client) and may carry the vendor's `error_description`, shown capped and
            // with any of the profile's own values masked.
            let err_body = serde_json::from_slice::<serde_json::Value>(&body).ok();
            let field = |k: &str| {
                err_body
                    .as_ref()
                    .and_then(|v| v.get(k).and_then(|e| e.as_str()).map(String::from))
            };
            let code = field("error").unwrap_or_else(|| "no error code".into());
            let refused = grant_refused && code == "invalid_grant";
            let code = match field("error_description") {
                Some(d) => format!("{code}: \"{}\"", self.mask(&d)),
                None => code,
            };
            let hint = match self.spec {
                AuthSpec::Oauth2RefreshToken { .. } => "the refresh token was refused (revoked or expired): authorize again and put the new refresh token into the profile's secret",
                AuthSpec::ServiceAccount { .. } => "the service account's assertion was refused: check that the key is current (not deleted in IAM) and that client_email is the key's account",
                _ => "the client credentials were refused: check client_id and client_secret in the profile's secret",
            };
            return Err((
                self.auth_error(format!(
                    "token refresh failed with {status} ({code}): {hint}"
                )),
                refused,
            ));
        }
        let tok: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            (
                self.auth_error(format!(
                    "the token endpoint answered {status} without an `access_token` in a JSON body"
                )),
                false,
            )
        })?;
        st.access = Some(tok.access_token);
        st.expires_at = tok.expires_in.and_then(|s| expiry(Utc::now(), s));
        if let Some(r) = tok.refresh_token {
            st.refresh = Some(r);
        }
        if let Some(u) = tok.instance_url {
            self.bind_instance(&u);
            st.instance_url = Some(u);
        }
        st.generation += 1;
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        tracing::info!(profile = ?self.profile, kind = self.kind(), "access token refreshed");
        Ok(())
    }

    async fn write_back(
        &self,
        st: &mut TokenState,
        started_from: Option<(serde_json::Map<String, serde_json::Value>, String)>,
    ) -> Result<(), SourceError> {
        let (Some(profile), Some(store)) = (&self.profile, &self.secrets) else {
            return Ok(());
        };
        // The stored secret, not ours from the start of the run: the owner may have changed
        // other fields since.
        let mut raw = started_from
            .as_ref()
            .map(|(r, _)| r.clone())
            .unwrap_or_else(|| self.raw.clone());
        if let Some(a) = &st.access {
            raw.insert("access_token".into(), a.clone().into());
        }
        match st.expires_at {
            Some(e) => raw.insert("expires_at".into(), e.to_rfc3339().into()),
            None => raw.remove("expires_at"),
        };
        if let (Some(r), AuthSpec::Oauth2RefreshToken { .. }) = (&st.refresh, &self.spec) {
            raw.insert("refresh_token".into(), r.clone().into());
        }
        if let Some(u) = &st.instance_url {
            raw.insert("instance_url".into(), u.clone().into());
        }
        let secret = Secret::new(serde_json::Value::Object(raw));
        let err = |e: crate::error::StoreError| {
            self.auth_error(format!(
                "the token was refreshed but could not be written back to the secret: {e}"
            ))
        };
        let Some((_, version)) = started_from else {
            return store.put_secret(profile, &secret).await.map_err(err);
        };
        if store
            .put_secret_if(profile, &secret, &version)
            .await
            .map_err(err)?
        {
            return Ok(());
        }
        // Another run wrote first: keep its tokens (its refresh token is the one the provider
        // now honours when it rotates them), do not overwrite them.
        tracing::info!(profile = ?self.profile, "another run wrote back its refreshed token first; using it");
        if let Some((raw, _)) = self.read_stored().await? {
            self.adopt(st, &raw);
        }
        Ok(())
    }
}

/// Whether a token expiring at `expires_at` is good for more than the refresh margin (no known
/// expiry: good until a 401).
fn fresh(expires_at: Option<DateTime<Utc>>) -> bool {
    expires_at.is_none_or(|exp| {
        exp.checked_sub_signed(chrono::Duration::seconds(REFRESH_MARGIN_SECONDS))
            .is_none_or(|t| t > Utc::now())
    })
}

/// When a token given `expires_in` seconds at `now` expires. A value too large for a date
/// (`expires_in: 9223372036854775807`) means "no known expiry" (the token is refreshed on a
/// 401), never an overflow panic.
fn expiry(now: DateTime<Utc>, expires_in: i64) -> Option<DateTime<Utc>> {
    chrono::TimeDelta::try_seconds(expires_in).and_then(|d| now.checked_add_signed(d))
}

/// Credentials travel over https, or plain http to a loopback host (tests, local proxies).
fn transport_ok(url: &str) -> Result<(), String> {
    let u = url::Url::parse(url)
        .map_err(|_| format!("'{}' is not a URL", super::http::redact_url_str(url, None)))?;
    match u.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&u) => Ok(()),
        scheme => Err(format!(
            "refused to send its credentials over {scheme}:// to host '{}'; use https (plain http is accepted only for loopback hosts)",
            u.host_str().unwrap_or_default()
        )),
    }
}

pub(crate) fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemorySecrets;
    use serde_json::json;

    fn auth(v: serde_json::Value) -> Result<Authenticator, SourceError> {
        Authenticator::from_secret("crm", &Secret::new(v), Arc::new(MemorySecrets::default()))
    }

    #[test]
    fn bad_secrets_name_the_profile_not_the_values() {
        let e = auth(json!({"type": "basic", "username": "u", "pasword": "hunter2"})).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("'crm'") && m.contains("pasword"), "{m}");
        assert!(!m.contains("hunter2"), "{m}");
        let e = auth(json!({"type": "api_key", "key": "k"})).unwrap_err();
        assert!(e.to_string().contains("exactly one of `header`"), "{e}");
        assert!(auth(json!({"type": "carrier_pigeon"})).is_err());
    }

    #[test]
    fn a_profile_with_hosts_goes_only_to_them_and_only_over_https() {
        let a = auth(
            json!({"type": "bearer", "token": "t-1", "hosts": ["api.acme.com", "*.zendesk.com"]}),
        )
        .unwrap();
        a.check_destination("https://api.acme.com/v1/x").unwrap();
        a.check_destination("https://acme.zendesk.com/api/v2")
            .unwrap();
        a.check_destination("https://API.ACME.COM/v1").unwrap();
        let e = a
            .check_destination("https://evil.example/v1/x")
            .unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("'crm'") && m.contains("'evil.example'") && m.contains("api.acme.com"),
            "{m}"
        );
        assert_eq!(e.kind(), crate::error::ErrorKind::AuthFailed);
        // `*.zendesk.com` is a subdomain, not a suffix of any text.
        assert!(a.check_destination("https://evilzendesk.com/").is_err());
        assert!(a
            .check_destination("https://zendesk.com.evil.example/")
            .is_err());
        let e = a.check_destination("http://api.acme.com/v1").unwrap_err();
        assert!(
            e.to_string().contains("use https") && e.to_string().contains("'crm'"),
            "{e}"
        );
        // Loopback hosts (tests, local proxies) may use plain http, but still must be named.
        let l = auth(json!({"type": "bearer", "token": "t", "hosts": ["127.0.0.1", "localhost"]}))
            .unwrap();
        l.check_destination("http://127.0.0.1:8080/x").unwrap();
        l.check_destination("http://localhost:1/x").unwrap();
        assert!(l.check_destination("http://10.0.0.1/x").is_err());
        // Hosts are host names.
        for bad in [
            json!(["https://api.acme.com"]),
            json!(["api.acme.com/v1"]),
            json!("api.acme.com"),
        ] {
            let e = auth(json!({"type": "bearer", "token": "t-secret", "hosts": bad})).unwrap_err();
            assert!(
                e.to_string().contains("hosts") && !e.to_string().contains("t-secret"),
                "{e}"
            );
        }
        // A token endpoint over plain http to a real host is refused when the profile is read.
        let e = auth(json!({"type": "oauth2_client_credentials", "token_url": "http://login.acme.com/token", "client_id": "c", "client_secret": "s"})).unwrap_err();
        assert!(
            e.to_string().contains("token_url") && e.to_string().contains("https"),
            "{e}"
        );
    }

    #[test]
    fn a_profile_without_hosts_sends_its_credentials_nowhere_and_says_how_to_bind_it() {
        let a = auth(json!({"type": "basic", "username": "u", "password": "p-secret"})).unwrap();
        let e = a
            .check_destination("https://acme.zendesk.com/api/v2/tickets")
            .unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("'acme.zendesk.com'")
                && m.contains("ferry profiles migrate crm --host acme.zendesk.com")
                && !m.contains("p-secret"),
            "{m}"
        );
        // The host its own token endpoint named is its own.
        a.bind_instance("https://acme.my.salesforce.com");
        a.check_destination("https://acme.my.salesforce.com/services/data")
            .unwrap();
        let m = a
            .check_destination("https://collector.evil.example/steal")
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("'collector.evil.example'") && m.contains("acme.my.salesforce.com"),
            "{m}"
        );
        // No credentials, no restriction.
        let none = Authenticator::none();
        none.check_destination("http://anything.example/").unwrap();
        none.check_destination("https://other.example/").unwrap();
    }

    #[test]
    fn cursors_lose_the_query_string_key() {
        let a =
            auth(json!({"type": "api_key", "key": "canary-key-77", "query": "api_key"})).unwrap();
        let u = a.strip_credentials("https://api.acme.com/items?page=2&api_key=canary-key-77&x=1");
        assert!(!u.contains("canary-key-77"), "{u}");
        assert!(u.contains("page=2") && u.contains("x=1"), "{u}");
        assert_eq!(
            a.strip_credentials("https://api.acme.com/items?api_key=canary-key-77"),
            "https://api.acme.com/items"
        );
        assert_eq!(
            a.strip_credentials("https://api.acme.com/items?page=3"),
            "https://api.acme.com/items?page=3"
        );
        let h = auth(json!({"type": "api_key", "key": "k", "header": "X-Key"})).unwrap();
        assert_eq!(
            h.strip_credentials("https://a.b/?api_key=k"),
            "https://a.b/?api_key=k"
        );
    }

    #[tokio::test]
    async fn a_refused_refresh_names_the_vendors_description_but_no_secret() {
        use crate::connector::testing::{serve, Canned};
        let srv = serve(vec![Canned::json(
            400,
            json!({"error": "invalid_grant", "error_description": "expired access/refresh token rt-canary-9"}),
        )])
        .await;
        let a = auth(
            json!({"type": "oauth2_refresh_token", "token_url": format!("{}/token", srv.url),
            "client_id": "cid", "client_secret": "cs-canary-1", "refresh_token": "rt-canary-9"}),
        )
        .unwrap();
        let e = a
            .apply(reqwest::Client::new().get("http://127.0.0.1:1/"))
            .await
            .unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("'crm'")
                && m.contains("invalid_grant: \"expired access/refresh token <redacted>\""),
            "{m}"
        );
        assert!(
            !m.contains("rt-canary-9") && !m.contains("cs-canary-1"),
            "{m}"
        );
    }

    #[tokio::test]
    async fn a_huge_expires_in_is_no_known_expiry_not_a_panic() {
        use crate::connector::testing::{serve, Canned};
        // `Utc::now() + Duration::seconds(i64::MAX)` panicked (issue #13).
        for huge in [i64::MAX, i64::MAX / 1000, -i64::MAX] {
            let srv = serve(vec![Canned::json(
                200,
                json!({"access_token": "at-1", "expires_in": huge, "token_type": "Bearer"}),
            )])
            .await;
            let a = auth(json!({"type": "oauth2_client_credentials", "token_url": format!("{}/token", srv.url),
                "client_id": "c", "client_secret": "s"}))
            .unwrap();
            let (rb, _) = a
                .apply(reqwest::Client::new().get("http://h/x"))
                .await
                .unwrap();
            assert_eq!(
                rb.build().unwrap().headers()["authorization"],
                "Bearer at-1"
            );
            // A second request does not refresh again (no expiry known, or far away).
            let _ = a
                .apply(reqwest::Client::new().get("http://h/x"))
                .await
                .unwrap();
            if huge > 0 {
                assert_eq!(srv.count(), 1, "{huge}");
            }
        }
        let now = Utc::now();
        assert_eq!(expiry(now, i64::MAX), None);
        assert_eq!(expiry(now, 60), Some(now + chrono::Duration::seconds(60)));
    }

    #[tokio::test]
    async fn static_kinds_set_headers_and_query() {
        let client = reqwest::Client::new();
        let a = auth(json!({"type": "api_key", "key": "s3cret", "header": "X-API-Key", "headers": {"X-Org": "7"}})).unwrap();
        let (rb, _) = a.apply(client.get("http://h/x")).await.unwrap();
        let r = rb.build().unwrap();
        assert_eq!(r.headers()["x-api-key"], "s3cret");
        assert_eq!(r.headers()["x-org"], "7");
        let a = auth(json!({"type": "api_key", "key": "s3cret", "query": "api_key"})).unwrap();
        let (rb, _) = a.apply(client.get("http://h/x")).await.unwrap();
        assert_eq!(rb.build().unwrap().url().query(), Some("api_key=s3cret"));
        let a = auth(json!({"type": "bearer", "token": "t0k"})).unwrap();
        let (rb, _) = a.apply(client.get("http://h/x")).await.unwrap();
        assert_eq!(rb.build().unwrap().headers()["authorization"], "Bearer t0k");
        assert!(!format!("{a:?}").contains("t0k"));
    }
}
