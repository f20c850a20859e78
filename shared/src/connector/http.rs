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
    /// A response body (after gzip) larger than this fails the page instead of filling memory:
    /// lower the page size. Bounded by what fetch-page's memory holds.
    #[serde(default = "d::max_response_mb")]
    pub max_response_mb: u64,
    /// The vendor's rate-limit headers, read from every response (see [`RateLimitRule`]).
    #[serde(default)]
    pub rate_limit: Option<RateLimitRule>,
}

/// How an API tells its clients to slow down, besides `429` + `Retry-After` (which every
/// connector honours): a remaining-requests header with a reset time (GitHub's
/// `X-RateLimit-Remaining` / `X-RateLimit-Reset`), a leaky bucket's `used/size` header (Shopify's
/// `X-Shopify-Shop-Api-Call-Limit: 32/40`), and statuses other than 429 that mean "rate limited"
/// when the response says so (GitHub answers 403 to a spent primary limit or a secondary limit).
///
/// Requests wait before they are sent while the API's allowance is spent; a wait longer than
/// `max_retry_after_seconds` ends the chunk `Throttled` (the state machine retries it later).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRule {
    /// Header with the requests left in the current window.
    #[serde(default)]
    pub remaining_header: Option<String>,
    /// Header with the instant the window resets, in UTC epoch seconds.
    #[serde(default)]
    pub reset_header: Option<String>,
    /// Header `used/size` of a leaky bucket.
    #[serde(default)]
    pub bucket_header: Option<String>,
    /// Requests the bucket drains per second (with `bucket_header`).
    #[serde(default)]
    pub leak_per_second: Option<f64>,
    /// Requests kept free: requests wait once the window has no more than this many left, or
    /// the bucket no more than this many free places.
    #[serde(default)]
    pub reserve: u32,
    /// Statuses besides 429 that are a rate limit when the response has a `Retry-After`, says
    /// no requests remain, or its body contains `throttle_body`; otherwise they keep their
    /// usual meaning (403: the credentials lack permission).
    #[serde(default)]
    pub throttle_statuses: Vec<u16>,
    /// Text (case-insensitive) in a throttle status's body that marks it as a rate limit.
    #[serde(default)]
    pub throttle_body: Option<String>,
    /// The wait when a rate-limited response names no time.
    #[serde(default)]
    pub default_wait_seconds: Option<f64>,
}

impl RateLimitRule {
    fn validate(&self, field: &str) -> Result<(), SourceError> {
        if self.remaining_header.is_some() != self.reset_header.is_some() {
            return Err(SourceError::config(
                field,
                "remaining_header and reset_header go together, e.g. {remaining_header: X-RateLimit-Remaining, reset_header: X-RateLimit-Reset}",
            ));
        }
        match (&self.bucket_header, self.leak_per_second) {
            (Some(_), None) => {
                return Err(SourceError::config(
                    format!("{field}.leak_per_second"),
                    "a bucket_header needs the bucket's leak rate in requests per second, e.g. leak_per_second: 2",
                ))
            }
            (_, Some(l)) if !(l > 0.0 && l <= 1e6) => {
                return Err(SourceError::config(
                    format!("{field}.leak_per_second"),
                    "must be a number of requests per second > 0",
                ))
            }
            _ => {}
        }
        if let Some(w) = self.default_wait_seconds {
            if !(0.0..=MAX_WAIT_SECONDS).contains(&w) {
                return Err(SourceError::config(
                    format!("{field}.default_wait_seconds"),
                    format!("must be between 0 and {MAX_WAIT_SECONDS} seconds"),
                ));
            }
        }
        if let Some(s) = self
            .throttle_statuses
            .iter()
            .find(|s| !(400..600).contains(*s) || **s == 401)
        {
            return Err(SourceError::config(
                format!("{field}.throttle_statuses"),
                format!("{s} cannot mean rate limited (use 4xx/5xx statuses other than 401, e.g. [403])"),
            ));
        }
        Ok(())
    }

    /// What a response's headers say: requests left and when the window resets, and how long
    /// a full bucket needs to drain to the reserve.
    fn read(&self, h: &reqwest::header::HeaderMap, now: SystemTime) -> RateState {
        let get = |name: &Option<String>| {
            name.as_deref()
                .and_then(|n| h.get(n))
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let remaining = get(&self.remaining_header).and_then(|v| v.parse::<u64>().ok());
        let reset = get(&self.reset_header)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|epoch| {
                (SystemTime::UNIX_EPOCH + Duration::from_secs(epoch))
                    .duration_since(now)
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_RETRY_AFTER)
            });
        let spent = remaining.is_some_and(|r| r <= u64::from(self.reserve));
        let bucket_wait = get(&self.bucket_header)
            .and_then(|v| v.split_once('/'))
            .and_then(|(u, s)| Some((u.trim().parse::<f64>().ok()?, s.trim().parse::<f64>().ok()?)))
            .and_then(|(used, size)| {
                let free = size - used;
                let want = f64::from(self.reserve) + 1.0;
                (free < want).then(|| {
                    secs(
                        (want - free) / self.leak_per_second.unwrap_or(1.0),
                        MAX_RETRY_AFTER,
                    )
                })
            });
        RateState {
            spent,
            reset,
            bucket_wait,
        }
    }
}

/// A response's rate-limit headers, read.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RateState {
    /// No more requests than the reserve remain in the window.
    spent: bool,
    /// Time until the window resets.
    reset: Option<Duration>,
    /// Time the bucket needs to drain down to the reserve.
    bucket_wait: Option<Duration>,
}

impl RateState {
    /// How long the next request should wait.
    fn pause(&self) -> Option<Duration> {
        let window = if self.spent { self.reset } else { None };
        match (window, self.bucket_wait) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
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
    pub fn max_response_mb() -> u64 {
        64
    }
}

/// The largest `http.max_response_mb` (fetch-page's memory holds the page and its records).
pub const MAX_RESPONSE_MB: u64 = 512;

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            timeout_ms: d::timeout_ms(),
            connect_timeout_ms: d::connect_timeout_ms(),
            max_retries: d::max_retries(),
            backoff_initial_ms: d::backoff_initial_ms(),
            backoff_max_ms: d::backoff_max_ms(),
            max_retry_after_seconds: d::max_retry_after_seconds(),
            budget: None,
            max_response_mb: d::max_response_mb(),
            rate_limit: None,
        }
    }
}

impl HttpSettings {
    pub fn validate(&self, field: &str) -> Result<(), SourceError> {
        if self.max_response_mb == 0 || self.max_response_mb > MAX_RESPONSE_MB {
            return Err(SourceError::config(
                format!("{field}.max_response_mb"),
                format!("must be between 1 and {MAX_RESPONSE_MB} (MB of one response body)"),
            ));
        }
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
        if !(0.0..=MAX_WAIT_SECONDS).contains(&self.max_retry_after_seconds) {
            return Err(SourceError::config(
                format!("{field}.max_retry_after_seconds"),
                format!("must be between 0 and {MAX_WAIT_SECONDS} seconds (one day)"),
            ));
        }
        if let Some(r) = &self.rate_limit {
            r.validate(&format!("{field}.rate_limit"))?;
        }
        if let Some(b) = &self.budget {
            if b.requests == 0 || !(b.per_seconds > 0.0 && b.per_seconds <= MAX_WAIT_SECONDS) {
                return Err(SourceError::config(
                    format!("{field}.budget"),
                    "needs requests ≥ 1 and per_seconds > 0, e.g. {requests: 10, per_seconds: 1}",
                ));
            }
        }
        Ok(())
    }
}

/// The longest wait a setting may name (one day).
const MAX_WAIT_SECONDS: f64 = 86_400.0;
/// A `Retry-After` longer than this (a year) is read as this: a server may send any number,
/// and a wait that large ends the chunk `Throttled` anyway.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(365 * 86_400);

enum BodyError {
    Read(reqwest::Error),
    TooLarge(u64),
}

fn too_large(shown: &str, mb: u64) -> SourceError {
    SourceError::Rejected {
        message: format!(
            "{shown}: the response body is larger than http.max_response_mb ({mb} MB); lower the page size (source.chunk.page_size or the endpoint's limit) or raise http.max_response_mb"
        ),
    }
}

/// Seconds as a `Duration`, never panicking: negative or NaN is zero, too large is `max`.
fn secs(s: f64, max: Duration) -> Duration {
    if s.is_nan() || s <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(s).map_or(max, |d| d.min(max))
}

/// How many slices of a run read at once, each in a process of its own (Lambda): see
/// [`set_budget_share`].
static BUDGET_SHARE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// This process reads one of `n` slices that run at the same time in separate processes (the
/// deployed stack's Lambdas): request budgets built from now on allow `1/n` of their requests
/// (at least one), so that the slices together keep to the budget. `1`: the whole budget — the
/// embedded engine's slices share one process and so one limiter per profile.
pub fn set_budget_share(n: u32) {
    BUDGET_SHARE.store(n.max(1), std::sync::atomic::Ordering::SeqCst);
}

impl RequestBudget {
    /// What one of `n` processes reading at once may use.
    pub fn share(&self, n: u32) -> RequestBudget {
        RequestBudget {
            requests: (self.requests / n.max(1)).max(1),
            per_seconds: self.per_seconds,
        }
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
            per: secs(
                budget.per_seconds,
                Duration::from_secs_f64(MAX_WAIT_SECONDS),
            ),
            starts: tokio::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// One limiter per (profile or base URL, budget) in this process, for this process's share
    /// of the budget ([`set_budget_share`]).
    pub fn shared(key: &str, budget: &RequestBudget) -> Arc<RateLimiter> {
        static REG: OnceLock<Mutex<HashMap<String, Arc<RateLimiter>>>> = OnceLock::new();
        let budget = &budget.share(BUDGET_SHARE.load(std::sync::atomic::Ordering::SeqCst));
        let key = format!("{key}|{}|{}", budget.requests, budget.per_seconds);
        REG.get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
            if let Some(oldest) = q.front() {
                let wait = self.per.saturating_sub(now.duration_since(*oldest));
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// One request to send (retries rebuild it from this).
#[derive(Debug, Clone, PartialEq)]
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
    /// Whether the API has answered any request of this client: a refused connection before
    /// that is a wrong host or port (fail at once), after it a restarting server (retry).
    answered: Arc<std::sync::atomic::AtomicBool>,
    /// No request before this instant: the API's rate-limit headers said its allowance is
    /// spent ([`RateLimitRule`]).
    pause_until: Arc<Mutex<Option<tokio::time::Instant>>>,
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
            answered: Default::default(),
            pause_until: Default::default(),
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

    /// A response body, streamed, refused once it passes `http.max_response_mb`.
    async fn read_body(&self, mut resp: reqwest::Response) -> Result<bytes::Bytes, BodyError> {
        let cap = self.settings.max_response_mb.saturating_mul(1024 * 1024);
        if resp.content_length().is_some_and(|n| n > cap) {
            return Err(BodyError::TooLarge(self.settings.max_response_mb));
        }
        // Sized once from Content-Length where the server sends it: a page read in parts does
        // not grow (and copy) its buffer again and again.
        let hint = resp.content_length().unwrap_or(0).min(cap);
        let mut buf = bytes::BytesMut::with_capacity(usize::try_from(hint).unwrap_or(0));
        while let Some(part) = resp.chunk().await.map_err(BodyError::Read)? {
            if (buf.len() + part.len()) as u64 > cap {
                return Err(BodyError::TooLarge(self.settings.max_response_mb));
            }
            buf.extend_from_slice(&part);
        }
        Ok(buf.freeze())
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
        let cap = secs(s.max_retry_after_seconds, MAX_RETRY_AFTER);
        let reauthed = std::sync::atomic::AtomicBool::new(false);
        // Retries are summed up in one log line per request, not one line per attempt.
        let retries = std::sync::atomic::AtomicUsize::new(0);
        let waited = Mutex::new((Duration::ZERO, String::new()));
        let started = std::time::Instant::now();
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
                    retries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let mut w = waited
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    w.0 += wait;
                    w.1 = message.clone();
                    tracing::debug!(wait_ms = wait.as_millis() as u64, "{message}; retrying");
                }
            })
            .await;
        let n = retries.load(std::sync::atomic::Ordering::SeqCst);
        if n > 0 {
            let (wait, last) = waited
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let took = started.elapsed();
            match &result {
                Ok(_) => tracing::info!(
                    retries = n,
                    waited_ms = wait.as_millis() as u64,
                    took_ms = took.as_millis() as u64,
                    "{} {}: answered after {n} retries (last failure: {last})",
                    req.method,
                    self.redact(&req.url)
                ),
                Err(_) => tracing::warn!(
                    retries = n,
                    waited_ms = wait.as_millis() as u64,
                    took_ms = took.as_millis() as u64,
                    "{} {}: giving up after {n} retries in {:.1} s (last failure: {last})",
                    req.method,
                    self.redact(&req.url),
                    took.as_secs_f64()
                ),
            }
        }
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
                _ => SourceError::Unavailable {
                    message: format!(
                        "{message} (after {} retries; raise source.properties.http.max_retries to wait longer)",
                        s.max_retries
                    ),
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
        self.wait_for_allowance().await.map_err(Attempt::Fail)?;
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
        // Credentials are added to the builder first (an OAuth token fetch binds the host its
        // endpoint names), and the request is refused before it is sent if the profile may not
        // go to its host.
        let (rb, applied) = self.auth.apply(rb).await.map_err(Attempt::Fail)?;
        self.auth
            .check_destination(&req.url)
            .map_err(Attempt::Fail)?;
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
                let host = request_host(&shown);
                let what = if e.is_timeout() {
                    format!(
                        "timed out after {} ms (http.timeout_ms)",
                        self.settings.timeout_ms
                    )
                } else if e.is_connect() {
                    // Retrying cannot fix a name that does not resolve, a TLS handshake that
                    // fails, or a wrong host/port that refused the very first connection.
                    let cause = connect_cause(&e);
                    let first = !self.answered.load(std::sync::atomic::Ordering::SeqCst);
                    let fix = match cause {
                        ConnectCause::Dns => Some(format!(
                            "the host name {host} does not resolve (DNS): check the connector's base URL / instance / subdomain setting"
                        )),
                        ConnectCause::Tls => Some(format!(
                            "the TLS handshake with {host} failed: check that the URL's scheme and port are right (https on a plain-HTTP port fails this way) and that the server's certificate is valid"
                        )),
                        ConnectCause::Refused if first => Some(format!(
                            "{host} refused the connection: nothing listens there; check the host and port of the connector's URL"
                        )),
                        _ => None,
                    };
                    if let Some(fix) = fix {
                        return Err(Attempt::Fail(SourceError::Rejected {
                            message: format!(
                                "{method} {shown}: cannot connect ({}): {fix}",
                                root_cause(&e)
                            ),
                        }));
                    }
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
        self.answered
            .store(true, std::sync::atomic::Ordering::SeqCst);
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
        let rate = self
            .settings
            .rate_limit
            .as_ref()
            .map(|r| r.read(&headers, SystemTime::now()));
        if let Some(p) = rate.and_then(|r| r.pause()) {
            self.pause_for(p);
        }
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
            // The vendor's words (capped, the profile's own values masked): what `ferry profiles
            // test` and a failed run show the user.
            let said = match self.read_body(resp).await {
                Ok(b) if !b.is_empty() => {
                    format!(" (the API said: {})", self.auth.mask(&snippet(&b)))
                }
                _ => String::new(),
            };
            return Err(Attempt::Fail(self.auth.auth_error(format!(
                "{method} {shown} answered 401 Unauthorized{said}: the credentials ({}) were refused; update the profile's secret",
                self.auth.kind()
            ))));
        }
        // The body: read here when an error hook must look at it (`Ok`), else still unread.
        let pending = match self.error_hook.filter(|_| !status.is_success()) {
            None => Err(resp),
            Some(hook) => {
                let b = match self.read_body(resp).await {
                Ok(b) => b,
                Err(BodyError::TooLarge(m)) => return Err(Attempt::Fail(too_large(&shown, m))),
                Err(BodyError::Read(e)) => {
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
                Ok(b)
            }
        };
        let mut pending = pending;
        if let (Some(rule), Some(rate)) = (&self.settings.rate_limit, rate) {
            if code == 429 || rule.throttle_statuses.contains(&code) {
                let mut said = code == 429 || rate.spent || retry_after.is_some();
                if !said {
                    if let Some(text) = &rule.throttle_body {
                        let b = match pending {
                            Ok(b) => b,
                            Err(resp) => match self.read_body(resp).await {
                                Ok(b) => b,
                                Err(BodyError::TooLarge(m)) => {
                                    return Err(Attempt::Fail(too_large(&shown, m)))
                                }
                                Err(BodyError::Read(_)) => bytes::Bytes::new(),
                            },
                        };
                        said = String::from_utf8_lossy(&b)
                            .to_lowercase()
                            .contains(&text.to_lowercase());
                        pending = Ok(b);
                    }
                }
                if said {
                    let wait = retry_after
                        .or(if rate.spent { rate.reset } else { None })
                        .or(rule.default_wait_seconds.map(|w| secs(w, MAX_RETRY_AFTER)));
                    return Err(Attempt::Retry {
                        message: format!("{method} {shown} answered {status} (rate limited)"),
                        retry_after: wait,
                        throttled: true,
                    });
                }
            }
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
        let body = match pending {
            Ok(b) => Ok(b),
            Err(resp) => self.read_body(resp).await,
        };
        let body = match body {
            Ok(b) => b,
            Err(BodyError::TooLarge(m)) => return Err(Attempt::Fail(too_large(&shown, m))),
            Err(BodyError::Read(e)) => {
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
            // The buffer becomes the text without a copy when it is UTF-8 (it always is for
            // JSON, RFC 8259 §8.1); only other text is copied, lossily.
            serde_json::Value::String(match String::from_utf8(Vec::from(body)) {
                Ok(text) => text,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            })
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

    /// Hold every request of this client back for `d` (a later, longer pause wins).
    fn pause_for(&self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        let mut p = self
            .pause_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if p.is_none_or(|cur| cur < until) {
            *p = Some(until);
        }
    }

    /// Wait while the API's rate-limit headers said its allowance is spent; a wait longer than
    /// `max_retry_after_seconds` ends the chunk `Throttled` instead.
    async fn wait_for_allowance(&self) -> Result<(), SourceError> {
        let until = *self
            .pause_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(until) = until else { return Ok(()) };
        let now = tokio::time::Instant::now();
        if until <= now {
            return Ok(());
        }
        let wait = until - now;
        let cap = secs(self.settings.max_retry_after_seconds, MAX_RETRY_AFTER);
        if wait > cap {
            return Err(SourceError::Throttled {
                message: format!(
                    "the API's rate-limit headers say its allowance is spent for {:.0}s, longer than http.max_retry_after_seconds ({:.0}s); the chunk ends here and is retried later",
                    wait.as_secs_f64(),
                    cap.as_secs_f64()
                ),
                retry_after: Some(wait),
            });
        }
        tracing::debug!(
            wait_ms = wait.as_millis() as u64,
            "waiting for the API's rate-limit allowance"
        );
        tokio::time::sleep(wait).await;
        Ok(())
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

/// `host:port` of a URL, for messages.
fn request_host(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            let h = u.host_str()?.to_string();
            Some(match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h,
            })
        })
        .unwrap_or_else(|| "the host".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnectCause {
    Dns,
    Tls,
    Refused,
    Other,
}

/// Why a connection could not be made, from the error's source chain: hyper-util names DNS
/// failures `dns error`, rustls handshake failures surface as `InvalidData` I/O errors, a closed
/// port as `ConnectionRefused`.
fn connect_cause(e: &(dyn std::error::Error + 'static)) -> ConnectCause {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        let text = c.to_string();
        if text.starts_with("dns error") || text.contains("failed to lookup address") {
            return ConnectCause::Dns;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return ConnectCause::Refused,
                std::io::ErrorKind::InvalidData => return ConnectCause::Tls,
                _ => {}
            }
        }
        // rustls's own messages ("received corrupt message of type InvalidContentType",
        // "invalid peer certificate: UnknownIssuer", "received fatal alert: …").
        let lower = text.to_ascii_lowercase();
        if [
            "certificate",
            "tls",
            "handshake",
            "corrupt message",
            "fatal alert",
            "peer is incompatible",
            "peer misbehaved",
        ]
        .iter()
        .any(|k| lower.contains(k))
        {
            return ConnectCause::Tls;
        }
        cur = c.source();
    }
    ConnectCause::Other
}

fn full_jitter(d: Duration) -> Duration {
    use rand::Rng;
    let ms = d.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3). Dates in the past are 0.
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(n) = v.parse::<u64>() {
        return Some(Duration::from_secs(n).min(MAX_RETRY_AFTER));
    }
    if let Ok(n) = v.parse::<f64>() {
        // `1e20` does not fit a Duration: capped, not a panic.
        if n >= 0.0 {
            return Some(secs(n, MAX_RETRY_AFTER));
        }
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
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
    use serde_json::json;

    #[test]
    fn a_slice_in_a_process_of_its_own_takes_its_share_of_the_budget() {
        let b = RequestBudget {
            requests: 10,
            per_seconds: 1.0,
        };
        assert_eq!(b.share(1), b);
        assert_eq!(b.share(4).requests, 2);
        assert_eq!(b.share(4).per_seconds, 1.0);
        assert_eq!(b.share(30).requests, 1, "never less than one request");
        assert_eq!(b.share(0).requests, 10);
    }

    #[test]
    fn rate_limit_headers_are_read() {
        let rule: RateLimitRule = serde_json::from_value(serde_json::json!({
            "remaining_header": "X-RateLimit-Remaining", "reset_header": "X-RateLimit-Reset",
            "bucket_header": "X-Shopify-Shop-Api-Call-Limit", "leak_per_second": 2, "reserve": 1
        }))
        .unwrap();
        rule.validate("http.rate_limit").unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let h = |pairs: &[(&'static str, &str)]| {
            let mut m = reqwest::header::HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().unwrap());
            }
            m
        };
        // Plenty left, bucket with room: no pause.
        let r = rule.read(
            &h(&[
                ("x-ratelimit-remaining", "4999"),
                ("x-ratelimit-reset", "4600"),
                ("x-shopify-shop-api-call-limit", "10/40"),
            ]),
            now,
        );
        assert_eq!(r.pause(), None);
        // One left (the reserve): wait for the reset, 30 s away.
        let r = rule.read(
            &h(&[
                ("x-ratelimit-remaining", "1"),
                ("x-ratelimit-reset", "1030"),
            ]),
            now,
        );
        assert_eq!(r.pause(), Some(Duration::from_secs(30)));
        // A reset in the past: no wait.
        let r = rule.read(
            &h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "900")]),
            now,
        );
        assert_eq!(r.pause(), Some(Duration::ZERO));
        // 40/40 with reserve 1: two places to free at 2/s.
        let r = rule.read(&h(&[("x-shopify-shop-api-call-limit", "40/40")]), now);
        assert_eq!(r.pause(), Some(Duration::from_secs(1)));
        let r = rule.read(&h(&[("x-shopify-shop-api-call-limit", "38/40")]), now);
        assert_eq!(r.pause(), None);
        // Garbage is ignored, never a panic.
        let r = rule.read(&h(&[("x-shopify-shop-api-call-limit", "lots")]), now);
        assert_eq!(r.pause(), None);

        for (bad, field) in [
            (
                serde_json::json!({"remaining_header": "X"}),
                "http.rate_limit",
            ),
            (
                serde_json::json!({"bucket_header": "X"}),
                "http.rate_limit.leak_per_second",
            ),
            (
                serde_json::json!({"throttle_statuses": [401]}),
                "http.rate_limit.throttle_statuses",
            ),
        ] {
            let rule: RateLimitRule = serde_json::from_value(bad).unwrap();
            let e = rule.validate("http.rate_limit").unwrap_err().to_string();
            assert!(e.starts_with(&format!("{field}:")), "{e}");
        }
    }

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
    fn the_default_settings_are_what_an_empty_http_block_means() {
        let empty: HttpSettings = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(HttpSettings::default(), empty);
    }

    #[test]
    fn settings_are_checked() {
        let s: HttpSettings =
            serde_json::from_value(serde_json::json!({"budget": {"requests": 0}})).unwrap();
        assert!(s.validate("source.properties.http").is_err());
        assert!(HttpSettings::default().validate("x").is_ok());
        assert!(serde_json::from_value::<HttpSettings>(serde_json::json!({"retries": 1})).is_err());
    }

    #[test]
    fn a_huge_retry_after_is_capped_not_a_panic() {
        // Duration::from_secs_f64(1e20) panicked (issue #13).
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("1e20", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("inf", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("18446744073709551615", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after("NaN", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
        // Settings that would not fit a Duration are refused up front, and never panic.
        for bad in [
            json!({"max_retry_after_seconds": 1e300}),
            json!({"budget": {"requests": 1, "per_seconds": 1e300}}),
        ] {
            let s: HttpSettings = serde_json::from_value(bad).unwrap();
            assert!(s.validate("source.properties.http").is_err());
        }
        assert_eq!(secs(1e300, Duration::from_secs(5)), Duration::from_secs(5));
    }

    fn quick() -> HttpSettings {
        // The defaults: 5 retries, backoff from 500 ms.
        HttpSettings::default()
    }

    async fn send(url: &str) -> (Result<Option<HttpResponse>, SourceError>, Duration) {
        let c = HttpClient::new(quick(), Arc::new(Authenticator::none()), "t").unwrap();
        let t0 = std::time::Instant::now();
        let r = c.send(&HttpRequest::get(url)).await;
        (r, t0.elapsed())
    }

    #[tokio::test]
    async fn a_response_larger_than_the_cap_fails_the_page_without_reading_it_all() {
        use crate::connector::testing::{serve, Canned};
        let big = serde_json::json!({"data": "x".repeat(2 * 1024 * 1024)});
        let srv = serve(vec![Canned::json(200, big)]).await;
        let mut settings = quick();
        settings.max_response_mb = 1;
        let c = HttpClient::new(settings, Arc::new(Authenticator::none()), "t").unwrap();
        let e = c
            .send(&HttpRequest::get(format!("{}/big", srv.url)))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::SourceRejected, "{e}");
        assert!(e.to_string().contains("http.max_response_mb (1 MB)"), "{e}");
        assert_eq!(srv.count(), 1, "not retried");
        let mut bad = quick();
        bad.max_response_mb = 0;
        assert!(bad
            .validate("source.properties.http")
            .unwrap_err()
            .to_string()
            .contains("max_response_mb"));
    }

    #[tokio::test]
    async fn a_refused_first_connection_fails_at_once_naming_the_host() {
        let port = crate::connector::testing::closed_port().await;
        let (r, took) = send(&format!("http://127.0.0.1:{port}/api/x?api_key=s3cret")).await;
        let e = r.unwrap_err();
        assert!(took < Duration::from_millis(500), "{took:?}: {e}");
        assert_eq!(e.kind(), crate::error::ErrorKind::SourceRejected, "{e}");
        let m = e.to_string();
        assert!(
            m.contains(&format!("127.0.0.1:{port}")) && m.contains("refused"),
            "{m}"
        );
        assert!(!m.contains("s3cret"), "{m}");
    }

    #[tokio::test]
    async fn dns_and_tls_failures_fail_at_once() {
        let (r, took) = send("http://ferry-test-host.invalid/api").await;
        let e = r.unwrap_err();
        assert!(took < Duration::from_secs(2), "{took:?}: {e}");
        assert!(e.to_string().contains("does not resolve"), "{e}");
        // https against a plain-HTTP server: the handshake fails.
        let srv = crate::connector::testing::serve(vec![crate::connector::testing::Canned::json(
            200,
            json!({}),
        )])
        .await;
        let (r, took) = send(&srv.url.replace("http://", "https://")).await;
        let e = r.unwrap_err();
        assert!(took < Duration::from_millis(500), "{took:?}: {e}");
        assert!(e.to_string().contains("TLS handshake"), "{e}");
        assert_eq!(srv.count(), 1, "no retries");
    }

    #[tokio::test]
    async fn not_found_and_forbidden_on_the_first_call_are_not_retried() {
        use crate::connector::testing::{serve, Canned};
        for status in [404u16, 403, 401] {
            let srv = serve(vec![Canned::json(status, json!({"error": "nope"}))]).await;
            let (r, took) = send(&format!("{}/api/v2/tickets", srv.url)).await;
            let e = r.unwrap_err();
            assert!(took < Duration::from_millis(500), "{status}: {took:?}");
            assert_eq!(srv.count(), 1, "{status} retried");
            assert!(e.to_string().contains("/api/v2/tickets"), "{e}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_after_the_api_answered_is_retried() {
        use crate::connector::testing::{serve, Canned};
        let srv = serve(vec![Canned::json(200, json!({"ok": true}))]).await;
        let mut s = quick();
        s.max_retries = 2;
        s.backoff_initial_ms = 1;
        s.backoff_max_ms = 2;
        let c = HttpClient::new(s, Arc::new(Authenticator::none()), "t").unwrap();
        c.send(&HttpRequest::get(&srv.url)).await.unwrap();
        let url = srv.url.clone();
        drop(srv);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let e = c.send(&HttpRequest::get(url)).await.unwrap_err();
        // Retried by the connector; once its retries are spent, not again by the state machine.
        assert_eq!(e.kind(), crate::error::ErrorKind::SourceUnavailable, "{e}");
        assert!(e.to_string().contains("after 2 retries"), "{e}");
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
