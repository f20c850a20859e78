//! OAuth 2.0 consent (`ferry profiles connect`): the authorization-code grant with PKCE
//! (RFC 7636) as each vendor documents it — where its authorize and token endpoints are, which
//! scopes a read-only extraction needs, how the code is exchanged — and the profile secret built
//! from the vendor's answer. The CLI owns the loopback listener and the browser; this module
//! owns the vendor knowledge and the token exchange, so both are tested against the mock
//! SaaS server.

use super::auth::ClientAuth;
use base64::Engine as _;
use chrono::{Duration, Utc};
use rand::RngCore;
use serde_json::{json, Map, Value};
use sha2::Digest;

/// How the token endpoint takes the authorization-code request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenBody {
    /// `application/x-www-form-urlencoded` (RFC 6749 §4.1.3).
    Form,
    /// A JSON object (Zendesk's documented form).
    Json,
}

/// Where a vendor's token lands in its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenShape {
    /// RFC 6749 §5.1 fields at the top level (plus Salesforce's `instance_url`).
    Standard,
    /// Slack's `oauth.v2.access`: `ok`, and the user token under `authed_user`.
    SlackUser,
}

/// A vendor's consent endpoints and rules, as its documentation gives them.
#[derive(Debug)]
pub struct Consent {
    /// The authorization endpoint; `{host}` is the account's login host.
    pub authorize: &'static str,
    /// The token endpoint; `{host}` as above.
    pub token: &'static str,
    /// The API host when the vendor's is fixed (`None`: the login host serves the API too).
    pub api_host: Option<&'static str>,
    /// The login host when the user names none (`None`: the user must, e.g. a Zendesk
    /// subdomain).
    pub default_host: Option<&'static str>,
    /// What `--host` means for this vendor, for the error when it is missing.
    pub host_hint: &'static str,
    /// The scopes a read-only extraction needs.
    pub scopes: &'static [&'static str],
    /// The authorize parameter the scopes go in (`scope`; Slack user tokens: `user_scope`).
    pub scope_param: &'static str,
    pub scope_separator: &'static str,
    /// Whether the authorize request carries a PKCE S256 challenge.
    pub pkce: bool,
    pub body: TokenBody,
    pub shape: TokenShape,
    /// The redirect host the vendor accepts for a loopback listener.
    pub redirect_host: &'static str,
    /// Further authorize parameters.
    pub extra: &'static [(&'static str, &'static str)],
    /// How client credentials go to the token endpoint on refresh (stored in the secret).
    pub client_auth: ClientAuth,
    /// Whether the vendor refuses a code exchange without the client secret.
    pub needs_client_secret: bool,
    /// The vendor page these rules follow.
    pub docs: &'static str,
}

/// The PKCE pair and CSRF state of one consent.
#[derive(Debug, Clone)]
pub struct Pending {
    pub state: String,
    pub verifier: String,
    pub redirect_uri: String,
    pub authorize_url: String,
    pub token_url: String,
    pub host: String,
    /// Where the connector's API requests go.
    pub api_host: String,
}

fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The S256 challenge of a verifier: BASE64URL(SHA256(verifier)) (RFC 7636 §4.2).
pub fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

/// `https://host` — or `http://` for a loopback host (a test server or a local proxy), by the
/// same rule the authenticator applies to credentials ([`super::auth::is_loopback`]).
fn origin(host: &str) -> String {
    let loopback =
        url::Url::parse(&format!("http://{host}")).is_ok_and(|u| super::auth::is_loopback(&u));
    if loopback {
        format!("http://{host}")
    } else {
        format!("https://{host}")
    }
}

/// A login host as the user wrote it: `acme.zendesk.com`, `https://acme.my.salesforce.com/`.
pub fn normalize_host(given: &str) -> Result<String, String> {
    let t = given.trim().trim_end_matches('/');
    let t = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"))
        .unwrap_or(t);
    if t.is_empty() || t.contains('/') || t.contains('?') || t.contains('@') || t.contains(' ') {
        return Err(format!(
            "'{given}' is not a host; write it like acme.zendesk.com (no path)"
        ));
    }
    Ok(t.to_ascii_lowercase())
}

impl Pending {
    /// `scheme://api_host`: the connected account's API origin (with the scheme its token
    /// endpoint uses: http for a loopback stand-in).
    pub fn api_origin(&self) -> String {
        let scheme = self.token_url.split_once("://").map_or("https", |(s, _)| s);
        format!("{scheme}://{}", self.api_host)
    }
}

impl Consent {
    /// Start a consent: the URL to open and what the exchange must send back.
    pub fn begin(
        &self,
        host: Option<&str>,
        client_id: &str,
        redirect_uri: &str,
        scopes: Option<&[String]>,
    ) -> Result<Pending, String> {
        let host = match (host, self.default_host) {
            (Some(h), _) => normalize_host(h)?,
            (None, Some(d)) => d.to_string(),
            (None, None) => return Err(format!("--host is required: {}", self.host_hint)),
        };
        let overridden = host.as_str() != self.default_host.unwrap_or_default();
        let at = |template: &str| -> Result<String, String> {
            if template.contains("{host}") {
                return Ok(template.replace("https://{host}", &origin(&host)));
            }
            // A fixed vendor host, replaced as a whole by an explicit --host (a proxy or a
            // test server standing in for the vendor).
            let mut u = url::Url::parse(template).map_err(|e| format!("{template}: {e}"))?;
            if overridden {
                let o = url::Url::parse(&origin(&host)).map_err(|e| format!("{host}: {e}"))?;
                u.set_scheme(o.scheme()).ok();
                u.set_host(o.host_str())
                    .map_err(|e| format!("{host}: {e}"))?;
                u.set_port(o.port()).ok();
            }
            Ok(u.to_string())
        };
        let authorize = at(self.authorize)?;
        let token_url = at(self.token)?;
        let state = random_token(24);
        let verifier = random_token(48);
        let scope = match scopes {
            Some(s) => s.join(self.scope_separator),
            None => self.scopes.join(self.scope_separator),
        };
        let mut u = url::Url::parse(&authorize).map_err(|e| format!("{authorize}: {e}"))?;
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("state", &state);
            if !scope.is_empty() {
                q.append_pair(self.scope_param, &scope);
            }
            if self.pkce {
                q.append_pair("code_challenge", &challenge(&verifier))
                    .append_pair("code_challenge_method", "S256");
            }
            for (k, v) in self.extra {
                q.append_pair(k, v);
            }
        }
        Ok(Pending {
            state,
            verifier,
            redirect_uri: redirect_uri.to_string(),
            authorize_url: u.to_string(),
            token_url,
            api_host: match (self.api_host, overridden) {
                (Some(api), false) => api.to_string(),
                _ => host.clone(),
            },
            host,
        })
    }

    /// Exchange the code for tokens and build the profile secret: an `oauth2_refresh_token`
    /// secret bound to the vendor's hosts, or a `bearer` one when the vendor issues no refresh
    /// token (a Slack app without token rotation). Vendor errors come back with their
    /// `error`/`error_description`; no token or secret is ever in a message.
    pub async fn exchange(
        &self,
        p: &Pending,
        code: &str,
        client_id: &str,
        client_secret: Option<&str>,
    ) -> Result<Value, String> {
        if self.needs_client_secret && client_secret.is_none() {
            return Err("this vendor needs the OAuth app's client secret for the code exchange; set FERRY_CLIENT_SECRET or pass --client-secret-file".into());
        }
        let mut fields: Vec<(&str, &str)> = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &p.redirect_uri),
            ("client_id", client_id),
        ];
        if let Some(s) = client_secret {
            fields.push(("client_secret", s));
        }
        if self.pkce {
            fields.push(("code_verifier", &p.verifier));
        }
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot start an HTTP client: {e}"))?;
        let req = client.post(&p.token_url);
        let req = match self.body {
            TokenBody::Form => req.form(&fields),
            TokenBody::Json => req.json(
                &fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect::<Map<_, _>>(),
            ),
        };
        let resp = req
            .send()
            .await
            .map_err(|e| format!("POST {}: {}", p.token_url, super::http::root_cause(&e)))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() || body.get("ok") == Some(&Value::Bool(false)) {
            let said = ["error", "error_description", "message"]
                .iter()
                .filter_map(|k| body.get(*k).and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(": ");
            return Err(format!(
                "the token endpoint {} refused the code ({status}){}",
                p.token_url,
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            ));
        }
        self.secret(p, &body, client_id, client_secret)
    }

    /// The profile secret from a token response.
    pub fn secret(
        &self,
        p: &Pending,
        body: &Value,
        client_id: &str,
        client_secret: Option<&str>,
    ) -> Result<Value, String> {
        let tokens = match self.shape {
            TokenShape::Standard => body,
            TokenShape::SlackUser => body.get("authed_user").unwrap_or(&Value::Null),
        };
        // HubSpot's reference shows camelCase too; accept both.
        let field = |snake: &str, camel: &str| {
            tokens
                .get(snake)
                .or_else(|| tokens.get(camel))
                .filter(|v| !v.is_null())
                .cloned()
        };
        let access = field("access_token", "accessToken")
            .and_then(|v| v.as_str().map(String::from))
            .ok_or("the token response has no access_token")?;
        let refresh =
            field("refresh_token", "refreshToken").and_then(|v| v.as_str().map(String::from));
        let expires_at = field("expires_in", "expiresIn")
            .and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .map(|s| Utc::now() + Duration::seconds(s));
        let instance_url = tokens.get("instance_url").and_then(Value::as_str);
        let mut hosts = vec![];
        let mut add_host = |u: &str| {
            // A profile's hosts are names, without port (docs/security.md).
            if let Some(h) = url::Url::parse(u)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
            {
                if !hosts.contains(&h) {
                    hosts.push(h);
                }
            }
        };
        add_host(&p.token_url);
        if let Some(i) = instance_url {
            add_host(i);
        }
        add_host(&format!("https://{}", p.api_host));
        let Some(refresh) = refresh else {
            return Ok(json!({"type": "bearer", "token": access, "hosts": hosts}));
        };
        let mut s = json!({
            "type": "oauth2_refresh_token",
            "token_url": p.token_url,
            "client_id": client_id,
            "refresh_token": refresh,
            "access_token": access,
            "client_auth": match self.client_auth { ClientAuth::Basic => "basic", ClientAuth::Body => "body" },
            "hosts": hosts,
        });
        if let Some(m) = s.as_object_mut() {
            if let Some(c) = client_secret {
                m.insert("client_secret".into(), json!(c));
            }
            if let Some(t) = expires_at {
                m.insert("expires_at".into(), json!(t));
            }
            if let Some(i) = instance_url {
                m.insert("instance_url".into(), json!(i));
            }
        }
        Ok(s)
    }
}

/// The Jira sites a 3LO access token reaches, as `(cloud id, site URL)`:
/// `GET https://api.atlassian.com/oauth/token/accessible-resources` (the consent's API host).
/// <https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/#3--make-calls-to-the-api-using-the-access-token>
pub async fn jira_sites(p: &Pending, access_token: &str) -> Result<Vec<(String, String)>, String> {
    let url = format!("{}/oauth/token/accessible-resources", p.api_origin());
    let resp = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot start an HTTP client: {e}"))?
        .get(&url)
        .bearer_auth(access_token)
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", super::http::root_cause(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("GET {url} answered {status}"));
    }
    let sites: Vec<Value> = resp
        .json()
        .await
        .map_err(|_| format!("GET {url}: not a JSON list of sites"))?;
    Ok(sites
        .iter()
        .filter_map(|s| {
            Some((
                s.get("id")?.as_str()?.to_string(),
                s.get("url")?.as_str()?.to_string(),
            ))
        })
        .collect())
}

/// The Jira REST base of a site reached by 3LO: `https://api.atlassian.com/ex/jira/<cloud id>`.
pub fn jira_api_base(p: &Pending, cloud_id: &str) -> String {
    format!("{}/ex/jira/{cloud_id}", p.api_origin())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_base64url_of_sha256_without_padding() {
        // Computed independently: base64.urlsafe_b64encode(hashlib.sha256(v).digest()) in
        // Python, '=' padding stripped (RFC 7636 §4.2).
        assert_eq!(
            challenge("dBjftJeZ4CVP-mJ92K1s6uXjAFbdGHLMpL8dgkhSdx4"),
            "7QIEsFGP8wik1idUcQXoISNfkXoZj5a_TuMB-Wm870I"
        );
    }

    #[test]
    fn the_authorize_url_carries_state_scopes_and_the_challenge() {
        let p = super::super::zendesk::CONSENT
            .begin(
                Some("https://Acme.zendesk.com/"),
                "ferry",
                "http://127.0.0.1:8765/callback",
                None,
            )
            .unwrap();
        let u = url::Url::parse(&p.authorize_url).unwrap();
        assert_eq!(u.host_str(), Some("acme.zendesk.com"));
        assert_eq!(u.path(), "/oauth/authorizations/new");
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["state"], p.state);
        assert_eq!(q["scope"], "read");
        assert_eq!(q["code_challenge"], challenge(&p.verifier));
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(p.token_url, "https://acme.zendesk.com/oauth/tokens");
        let slack = super::super::slack::CONSENT
            .begin(None, "c", "http://localhost:1/callback", None)
            .unwrap();
        assert!(slack
            .authorize_url
            .contains("user_scope=channels%3Aread%2Cchannels%3Ahistory"));
    }

    #[test]
    fn a_vendor_without_a_default_host_needs_one() {
        let e = super::super::servicenow::CONSENT
            .begin(None, "c", "http://127.0.0.1:1/callback", None)
            .unwrap_err();
        assert!(e.contains("--host"), "{e}");
        assert!(normalize_host("acme.zendesk.com/path").is_err());
    }

    #[test]
    fn secrets_are_bound_to_the_vendors_hosts() {
        let p = super::super::salesforce::CONSENT
            .begin(None, "c", "http://localhost:1/callback", None)
            .unwrap();
        let s = super::super::salesforce::CONSENT
            .secret(
                &p,
                &json!({"access_token": "a", "refresh_token": "r",
                        "instance_url": "https://acme.my.salesforce.com"}),
                "c",
                Some("s"),
            )
            .unwrap();
        assert_eq!(s["type"], "oauth2_refresh_token");
        assert_eq!(
            s["hosts"],
            json!(["login.salesforce.com", "acme.my.salesforce.com"])
        );
        assert_eq!(s["instance_url"], "https://acme.my.salesforce.com");
        let p = super::super::slack::CONSENT
            .begin(None, "c", "http://localhost:1/callback", None)
            .unwrap();
        let s = super::super::slack::CONSENT
            .secret(
                &p,
                &json!({"ok": true, "authed_user": {"access_token": "xoxp-1"}}),
                "c",
                None,
            )
            .unwrap();
        assert_eq!(
            s,
            json!({"type": "bearer", "token": "xoxp-1", "hosts": ["slack.com"]})
        );
        let p = super::super::hubspot::CONSENT
            .begin(None, "c", "http://localhost:1/callback", None)
            .unwrap();
        let s = super::super::hubspot::CONSENT
            .secret(
                &p,
                &json!({"accessToken": "a", "refreshToken": "r", "expiresIn": 1800}),
                "c",
                Some("s"),
            )
            .unwrap();
        assert_eq!(s["hosts"], json!(["api.hubapi.com"]));
        assert!(s["expires_at"].is_string());
    }
}
