//! The OAuth 2.0 authorization-code grant (RFC 6749 §4.1) with PKCE (RFC 7636) as the vendor
//! mocks serve it for `ferry profiles connect`: an authorize endpoint that stands for the
//! user's consent (it redirects straight back with a code, or with `error=access_denied` when
//! the test refuses), and the checks every vendor's token endpoint makes when it redeems a
//! code. Each vendor mock wires these into its own endpoints, in its own dialect.
//!
//! - RFC 6749 §4.1.2: the redirect carries `code` and the request's `state`; §4.1.2.1: a refusal
//!   carries `error=access_denied` (and `error_description`) and the `state`.
//! - RFC 6749 §4.1.3: the token request repeats `redirect_uri` exactly; a code is single-use
//!   and short-lived; a bad code is `invalid_grant`.
//! - RFC 7636 §4.6: `code_verifier` must hash (S256) to the stored `code_challenge`.

use axum::http::{header::LOCATION, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::Digest;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Whether a vendor's authorize endpoint takes a PKCE challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pkce {
    /// Taken when sent, and then its verifier is required.
    Optional,
    /// Not part of the vendor's documented authorize request (ignored when sent, as unknown
    /// parameters are).
    Unsupported,
}

/// A vendor's authorize-request rules.
#[derive(Debug, Clone)]
pub struct Dialect {
    pub client_id: String,
    /// The parameter the scopes come in (`scope`; Slack user tokens: `user_scope`).
    pub scope_param: &'static str,
    /// ServiceNow refuses a request without `state` by default
    /// (`glide.oauth.state.parameter.required`).
    pub require_state: bool,
    pub pkce: Pkce,
}

#[derive(Debug, Clone)]
pub struct Grant {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    challenge: Option<String>,
    used: bool,
}

/// Codes handed out by the authorize endpoint, and the test's switches.
#[derive(Debug, Default)]
pub struct AuthCodes {
    codes: Mutex<HashMap<String, Grant>>,
    serial: AtomicU64,
    /// The next consent is refused by the "user".
    pub deny: AtomicBool,
    /// What the last authorize request asked for (for the tests' assertions).
    pub last_request: Mutex<HashMap<String, String>>,
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, message.to_string()).into_response()
}

impl AuthCodes {
    /// The authorize endpoint: checks the request, then "the user consents" and is redirected.
    pub fn authorize(&self, d: &Dialect, query: &str) -> Response {
        let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        *self.last_request.lock().unwrap() = q.clone();
        // An unknown client or a missing redirect is shown to the user, never redirected
        // (RFC 6749 §4.1.2.1).
        if q.get("client_id") != Some(&d.client_id) {
            return bad_request("invalid client_id");
        }
        let Some(redirect) = q.get("redirect_uri").cloned() else {
            return bad_request("missing redirect_uri");
        };
        let Ok(mut back) = url::Url::parse(&redirect) else {
            return bad_request("redirect_uri is not a URL");
        };
        let state = q.get("state").cloned();
        {
            let mut pairs = back.query_pairs_mut();
            if let Some(s) = &state {
                pairs.append_pair("state", s);
            }
            if d.require_state && state.is_none() {
                pairs
                    .append_pair("error", "invalid_request")
                    .append_pair("error_description", "Missing State parameter in request");
            } else if q.get("response_type").map(String::as_str) != Some("code") {
                pairs.append_pair("error", "unsupported_response_type");
            } else if self.deny.swap(false, Ordering::SeqCst) {
                pairs
                    .append_pair("error", "access_denied")
                    .append_pair("error_description", "end-user denied authorization");
            } else {
                let challenge = match d.pkce {
                    Pkce::Optional => q.get("code_challenge").cloned(),
                    Pkce::Unsupported => None,
                };
                if challenge.is_some()
                    && q.get("code_challenge_method").map(String::as_str) != Some("S256")
                {
                    pairs.append_pair("error", "invalid_request");
                } else {
                    let code = format!(
                        "code-{}-{}",
                        self.serial.fetch_add(1, Ordering::SeqCst),
                        uuid::Uuid::new_v4().simple()
                    );
                    self.codes.lock().unwrap().insert(
                        code.clone(),
                        Grant {
                            client_id: d.client_id.clone(),
                            redirect_uri: redirect.clone(),
                            scope: q.get(d.scope_param).cloned().unwrap_or_default(),
                            challenge,
                            used: false,
                        },
                    );
                    pairs.append_pair("code", &code);
                }
            }
        }
        (StatusCode::FOUND, [(LOCATION, back.to_string())]).into_response()
    }

    /// Redeem a code as a token endpoint does. `Err((error, description))` in RFC 6749 §5.2
    /// terms; the vendor mock renders it in its own dialect. Client authentication (the
    /// secret) is the vendor mock's own check.
    pub fn redeem(&self, p: &HashMap<String, String>) -> Result<Grant, (&'static str, String)> {
        let code = p.get("code").cloned().unwrap_or_default();
        let mut codes = self.codes.lock().unwrap();
        let Some(g) = codes.get_mut(&code) else {
            return Err(("invalid_grant", "invalid authorization code".into()));
        };
        if g.used {
            return Err(("invalid_grant", "authorization code already used".into()));
        }
        g.used = true;
        if p.get("client_id") != Some(&g.client_id) {
            return Err(("invalid_client", "client_id does not match the code".into()));
        }
        if p.get("redirect_uri") != Some(&g.redirect_uri) {
            return Err(("invalid_grant", "redirect_uri mismatch".into()));
        }
        if let Some(ch) = &g.challenge {
            let ok = p.get("code_verifier").is_some_and(|v| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(v))
                    == *ch
            });
            if !ok {
                return Err(("invalid_grant", "invalid code verifier".into()));
            }
        }
        Ok(g.clone())
    }
}

/// A token request body: form fields, or a JSON object (Zendesk documents JSON).
pub fn params(content_type: Option<&str>, body: &str) -> HashMap<String, String> {
    if content_type.is_some_and(|c| c.starts_with("application/json")) {
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(body)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect()
    } else {
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect()
    }
}
