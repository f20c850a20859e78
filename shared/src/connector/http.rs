//! HTTP machinery every HTTP connector shares: a reqwest (rustls) client with timeouts and gzip,
//! retries on 429/5xx/connection errors with exponential backoff and full jitter (`backon`),
//! `Retry-After` in seconds or as an HTTP date, a cap past which the chunk ends with `Throttled`
//! (the state machine retries it later instead of burning Lambda time), a per-profile request
//! budget, 401 handling through the [`Authenticator`], and clear errors for bodies that are not
//! JSON, naming the URL (secrets redacted) and the status.

use super::auth::Authenticator;
use super::SourceError;
use backon::{ExponentialBuilder, Retryable};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// Retry and timeout knobs (`source.properties.http` for the `rest` connector).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Whole-request timeout.
    #[serde(default = "d::timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "d::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Retries after the first attempt, for 429, 5xx, timeouts and truncated bodies.
    #[serde(default = "d::max_retries")]
    pub max_retries: usize,
    /// First backoff delay; doubles each retry, up to `backoff_max_ms`, with full jitter.
    #[serde(default = "d::backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    #[serde(default = "d::backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// A `Retry-After` longer than this ends the chunk with `Throttled` instead of waiting.
    #[serde(default = "d::max_retry_after_seconds")]
    pub max_retry_after_seconds: f64,
    /// At most `requests` requests per `per_seconds`, across the connector's requests in this
    /// process (shared by every source using the same profile).
    #[serde(default)]
    pub budget: Option<RequestBudget>,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestBudget {
    pub requests: u32,
    #[serde(default = "d::per_seconds")]
    pub per_seconds: f64,
}

mod d {
    pub fn timeout_ms() -> u64 {
        30_000
    }
    pub fn connect_timeout_ms() -> u64 {
        10_000
    }
    pub fn max_retries() -> usize {
        5
    }
    pub fn backoff_initial_ms() -> u64 {
        500
    }
    pub fn backoff_max_ms() -> u64 {
        30_000
    }
    pub fn max_retry_after_seconds() -> f64 {
        60.0
    }
    pub fn per_seconds() -> f64 {
        1.0
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("defaults deserialize")
    }
}

impl HttpSettings {
    pub fn validate(&self, field: &str) -> Result<(), SourceError> {
        if self.timeout_ms == 0 {
            return Err(SourceError::config(
                format!("{field}.timeout_ms"),
                "must be > 0 (milliseconds)",
            ));
        }
        if self.backoff_initial_ms > self.backoff_max_ms {
            return Err(SourceError::config(
                format!("{field}.backoff_initial_ms"),
                "must not exceed backoff_max_ms",
            ));
        }
        if self.max_retry_after_seconds.is_nan() || self.max_retry_after_seconds < 0.0 {
            return Err(SourceError::config(
                format!("{field}.max_retry_after_seconds"),
                "must be ≥ 0 seconds",
            ));
        }
        if let Some(b) = &self.budget {
            if b.requests == 0 || b.per_seconds.is_nan() || b.per_seconds <= 0.0 {
                return Err(SourceError::config(
                    format!("{field}.budget"),
                    "needs requests ≥ 1 and per_seconds > 0, e.g. {requests: 10, per_seconds: 1}",
                ));
            }
        }
        Ok(())
    }
}

/// A sliding-window limiter: at most `n` request starts in any `per` interval.
#[derive(Debug)]
pub struct RateLimiter {
    n: usize,
    per: Duration,
    starts: tokio::sync::Mutex<VecDeque<tokio::time::Instant>>,
}

impl RateLimiter {
    pub fn new(budget: &RequestBudget) -> Self {
        RateLimiter {
            n: budget.requests as usize,
            per: Duration::from_secs_f64(budget.per_seconds),
            starts: tokio::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// One limiter per (profile or base URL, budget) in this process.
    pub fn shared(key: &str, budget: &RequestBudget) -> Arc<RateLimiter> {
        static REG: OnceLock<Mutex<HashMap<String, Arc<RateLimiter>>>> = OnceLock::new();
        let key = format!("{key}|{}|{}", budget.requests, budget.per_seconds);
        REG.get_or_init(Default::default)
            .lock()
            .expect("limiter registry lock")
            .entry(key)
            .or_insert_with(|| Arc::new(RateLimiter::new(budget)))
            .clone()
    }

    pub async fn acquire(&self) {
        // The lock is held while waiting, so waiters are served in order.
        let mut q = self.starts.lock().await;
        loop {
            let now = tokio::time::Instant::now();
            while q
                .front()
                .is_some_and(|t| now.duration_since(*t) >= self.per)
            {
                q.pop_front();
            }
            if q.len() < self.n {
                q.push_back(now);
                return;
            }
            let wait = self.per - now.duration_since(*q.front().expect("non-empty"));
            tokio::time::sleep(wait).await;
        }
    }
}

/// One request to send (retries rebuild it from this).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: reqwest::Method,
    pub url: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<serde_json::Value>,
    /// Statuses answered with "no data" (`Ok(None)`), e.g. 404 for a deleted parent.
    pub ignore_status: Vec<u16>,
}

impl HttpRequest {
    pub fn get(url: impl Into<String>) -> Self {
        HttpRequest {
            method: reqwest::Method::GET,
            url: url.into(),
            query: vec![],
            headers: vec![],
            body: None,
            ignore_status: vec![],
        }
    }
}

/// A JSON response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
    pub bytes: u64,
    /// The final URL, secrets redacted: for messages.
    pub url: String,
}

/// Why one attempt failed, before mapping to [`SourceError`].
#[derive(Debug)]
enum Attempt {
    /// Retry: 429 / 5xx / connection / timeout / truncated body.
    Retry {
        message: String,
        retry_after: Option<Duration>,
        throttled: bool,
    },
    /// 401 with credentials that could be refreshed: send again at once.
    Reauth,
    /// Give up now.
    Fail(SourceError),
}

/// A vendor's reading of an error response (status, body) before the generic handling: `Some`
/// ends the request with that error (e.g. Salesforce's `REQUEST_LIMIT_EXCEEDED` on a 403 is
/// `Throttled`, not an auth failure). Not consulted for 401, which goes through the refresh.
pub type ErrorHook = fn(u16, &[u8]) -> Option<SourceError>;

/// The shared client of an HTTP connector.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    settings: HttpSettings,
    limiter: Option<Arc<RateLimiter>>,
    pub auth: Arc<Authenticator>,
    error_hook: Option<ErrorHook>,
}

impl HttpClient {
    pub fn new(
        settings: HttpSettings,
        auth: Arc<Authenticator>,
        budget_key: &str,
    ) -> Result<Self, SourceError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .gzip(true)
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SourceError::Fatal {
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        let limiter = settings
            .budget
            .as_ref()
            .map(|b| RateLimiter::shared(auth.profile().unwrap_or(budget_key), b));
        Ok(HttpClient {
            client,
            settings,
            limiter,
            auth,
            error_hook: None,
        })
    }

    /// Let the connector classify error responses first (see [`ErrorHook`]).
    pub fn with_error_hook(mut self, hook: ErrorHook) -> Self {
        self.error_hook = Some(hook);
        self
    }

    /// Like [`send`](Self::send), for bodies that are not JSON (e.g. CSV): the body comes back
    /// as `Value::String` (lossy UTF-8).
    pub async fn send_raw(&self, req: &HttpRequest) -> Result<Option<HttpResponse>, SourceError> {
        self.send_inner(req, true).await
    }

    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// Send with retries. `Ok(None)`: the status is in `req.ignore_status`.
    pub async fn send(&self, req: &HttpRequest) -> Result<Option<HttpResponse>, SourceError> {
        self.send_inner(req, false).await
    }

    async fn send_inner(
        &self,
        req: &HttpRequest,
        raw: bool,
    ) -> Result<Option<HttpResponse>, SourceError> {
        let s = &self.settings;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(s.backoff_initial_ms))
            .with_max_delay(Duration::from_millis(s.backoff_max_ms))
            .with_max_times(s.max_retries);
        let cap = Duration::from_secs_f64(s.max_retry_after_seconds);
        let reauthed = std::sync::atomic::AtomicBool::new(false);
        let result = (|| self.attempt(req, &reauthed, raw))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|e| match e {
                Attempt::Fail(_) => false,
                Attempt::Reauth => true,
                Attempt::Retry { retry_after, .. } => retry_after.is_none_or(|r| r <= cap),
            })
            .adjust(|e, next| match e {
                // A refreshed token is retried at once and does not use up a retry.
                Attempt::Reauth => Some(Duration::ZERO),
                Attempt::Retry {
                    retry_after: Some(ra),
                    ..
                } if !ra.is_zero() => next.map(|_| *ra),
                // Full jitter: uniform in [0, backoff]. `Retry-After: 0` lands here too, so a
                // server that says "now" still gets spaced-out retries, not a tight loop.
                _ => next.map(full_jitter),
            })
            .notify(|e, wait| {
                if let Attempt::Retry { message, .. } = e {
                    tracing::warn!(wait_ms = wait.as_millis() as u64, "{message}; retrying");
                }
            })
            .await;
        result.map_err(|e| match e {
            Attempt::Fail(e) => e,
            Attempt::Reauth => self.auth.auth_error(
                "the API kept answering 401 Unauthorized after a token refresh: check the profile's credentials and scopes",
            ),
            Attempt::Retry {
                message,
                retry_after,
                throttled,
            } => match retry_after {
                Some(ra) if ra > cap => SourceError::Throttled {
                    message: format!(
                        "{message}: the API asked to wait {:.0}s (Retry-After), longer than http.max_retry_after_seconds ({:.0}s); the chunk ends here and is retried later",
                        ra.as_secs_f64(),
                        cap.as_secs_f64()
                    ),
                    retry_after: Some(ra),
                },
                _ if throttled => SourceError::Throttled {
                    message: format!("{message} (still throttled after {} retries)", s.max_retries),
                    retry_after,
                },
                _ => SourceError::Transient {
                    message: format!("{message} (after {} retries)", s.max_retries),
                },
            },
        })
    }

    async fn attempt(
        &self,
        req: &HttpRequest,
        reauthed: &std::sync::atomic::AtomicBool,
        raw: bool,
    ) -> Result<Option<HttpResponse>, Attempt> {
        if let Some(l) = &self.limiter {
            l.acquire().await;
        }
        let mut rb = self.client.request(req.method.clone(), &req.url);
        if !req.query.is_empty() {
            rb = rb.query(&req.query);
        }
        for (k, v) in &req.headers {
            rb = rb.header(k, v);
        }
        if let Some(b) = &req.body {
            rb = rb.json(b);
        }
        let (rb, applied) = self.auth.apply(rb).await.map_err(Attempt::Fail)?;
        let request = rb.build().map_err(|e| {
            Attempt::Fail(SourceError::config(
                "source.properties",
                format!(
                    "cannot build a request to {}: {}",
                    self.redact(&req.url),
                    e.without_url()
                ),
            ))
        })?;
        let shown = self.redact(request.url().as_str());
        let method = request.method().clone();
        let resp = match self.client.execute(request).await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    format!(
                        "timed out after {} ms (http.timeout_ms)",
                        self.settings.timeout_ms
                    )
                } else if e.is_connect() {
                    "cannot connect".into()
                } else {
                    "request failed".into()
                };
                return Err(Attempt::Retry {
                    message: format!("{method} {shown}: {what}: {}", root_cause(&e)),
                    retry_after: None,
                    throttled: false,
                });
            }
        };
        let status = resp.status();
        let code = status.as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        if req.ignore_status.contains(&code) {
            return Ok(None);
        }
        let headers = resp.headers().clone();
        if code == 401 {
            if !reauthed.swap(true, std::sync::atomic::Ordering::SeqCst)
                && self
                    .auth
                    .on_unauthorized(applied)
                    .await
                    .map_err(Attempt::Fail)?
            {
                return Err(Attempt::Reauth);
            }
            return Err(Attempt::Fail(self.auth.auth_error(format!(
                "{method} {shown} answered 401 Unauthorized: the credentials ({}) were refused; update the profile's secret",
                self.auth.kind()
            ))));
        }
        let mut resp = Some(resp);
        let mut early: Option<bytes::Bytes> = None;
        if let Some(hook) = self.error_hook.filter(|_| !status.is_success()) {
            let b = match resp.take().expect("response").bytes().await {
                Ok(b) => b,
                Err(e) => {
                    return Err(Attempt::Retry {
                        message: format!(
                            "{method} {shown} answered {status} but the body could not be read (truncated?): {}",
                            root_cause(&e)
                        ),
                        retry_after: None,
                        throttled: false,
                    })
                }
            };
            if let Some(e) = hook(code, &b) {
                return Err(Attempt::Fail(e));
            }
            early = Some(b);
        }
        if code == 403 {
            return Err(Attempt::Fail(self.auth.auth_error(format!(
                "{method} {shown} answered 403 Forbidden: the credentials lack permission for this endpoint"
            ))));
        }
        if code == 429 || status.is_server_error() || code == 408 {
            return Err(Attempt::Retry {
                message: format!("{method} {shown} answered {status}"),
                retry_after,
                throttled: code == 429,
            });
        }
        let body = match early {
            Some(b) => Ok(b),
            None => resp.take().expect("response").bytes().await,
        };
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                return Err(Attempt::Retry {
                    message: format!(
                        "{method} {shown} answered {status} but the body could not be read (truncated?): {}",
                        root_cause(&e)
                    ),
                    retry_after: None,
                    throttled: false,
                })
            }
        };
        if !status.is_success() {
            return Err(Attempt::Fail(SourceError::Rejected {
                message: format!("{method} {shown} answered {status}: {}", snippet(&body)),
            }));
        }
        let bytes = body.len() as u64;
        let json: serde_json::Value = if raw {
            serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
        } else if body.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Null
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) if e.is_eof() => {
                    return Err(Attempt::Retry {
                        message: format!(
                            "{method} {shown} answered {status} with a truncated JSON body ({bytes} bytes): {e}"
                        ),
                        retry_after: None,
                        throttled: false,
                    })
                }
                Err(e) => {
                    return Err(Attempt::Fail(SourceError::Rejected {
                        message: format!(
                            "{method} {shown} answered {status} with a body that is not valid JSON ({e}); it starts with: {}",
                            snippet(&body)
                        ),
                    }))
                }
            }
        };
        Ok(Some(HttpResponse {
            status: code,
            headers,
            body: json,
            bytes,
            url: shown,
        }))
    }

    /// A URL as shown to users: secret query values and user info replaced.
    pub fn redact(&self, url: &str) -> String {
        redact_url_str(url, self.auth.secret_query_param())
    }
}

/// Redact user info and the value of `secret_param` (and any `access_token`) from a URL.
pub fn redact_url_str(url: &str, secret_param: Option<&str>) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return "<unparseable URL>".into();
    };
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_username("");
        let _ = u.set_password(None);
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let secret = Some(k.as_ref()) == secret_param
                    || matches!(
                        k.as_ref(),
                        "access_token" | "api_key" | "apikey" | "token" | "client_secret"
                    );
                (
                    k.into_owned(),
                    if secret {
                        "<redacted>".into()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

fn full_jitter(d: Duration) -> Duration {
    use rand::Rng;
    let ms = d.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3). Dates in the past are 0.
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs));
        }
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(s) = cur.source() {
        cur = s;
    }
    cur.to_string()
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let s = s.replace(['\n', '\r'], " ");
    if body.len() > 200 {
        format!("{s}…")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn urls_are_redacted() {
        let u = redact_url_str(
            "https://user:pw@api.example.com/x?api_key=abc&page=2&sig=zzz",
            Some("sig"),
        );
        assert!(
            !u.contains("abc") && !u.contains("zzz") && !u.contains("pw"),
            "{u}"
        );
        assert!(u.contains("page=2"), "{u}");
    }

    #[test]
    fn settings_are_checked() {
        let s: HttpSettings =
            serde_json::from_value(serde_json::json!({"budget": {"requests": 0}})).unwrap();
        assert!(s.validate("source.properties.http").is_err());
        assert!(HttpSettings::default().validate("x").is_ok());
        assert!(serde_json::from_value::<HttpSettings>(serde_json::json!({"retries": 1})).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_spaces_requests() {
        let l = RateLimiter::new(&RequestBudget {
            requests: 2,
            per_seconds: 1.0,
        });
        let t0 = tokio::time::Instant::now();
        for _ in 0..5 {
            l.acquire().await;
        }
        // 5 starts at 2/s: the 5th waits for two full intervals.
        assert!(t0.elapsed() >= Duration::from_secs(2), "{:?}", t0.elapsed());
    }
}
