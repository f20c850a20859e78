//! A mock GitHub REST API in GitHub's dialect, for the built-in `github` definition.
//!
//! - `GET /repos/{owner}/{repo}/issues` (<https://docs.github.com/rest/issues/issues#list-repository-issues>):
//!   `state` (`open` by default, `closed`, `all`), `sort` (`created` by default, `updated`,
//!   `comments`), `direction` (`desc` by default), `since` (issues updated at or after it). The
//!   list holds pull requests too, each with a `pull_request` key ("GitHub's REST API considers
//!   every pull request an issue").
//! - `GET /repos/{owner}/{repo}/pulls` (<https://docs.github.com/rest/pulls/pulls#list-pull-requests>):
//!   `state`, `sort` (`created`, `updated`, `popularity`, `long-running`), `direction`; no time
//!   filter (a `since` is ignored like every parameter GitHub does not know).
//! - `GET /repos/{owner}/{repo}/commits` (<https://docs.github.com/rest/commits/commits#list-commits>):
//!   newest first by committer date, `since` / `until` on it (both inclusive here).
//! - Paging (<https://docs.github.com/rest/using-the-rest-api/using-pagination-in-the-rest-api>):
//!   `per_page` default 30, at most 100 (more is capped), `page` from 1; the `Link` header names
//!   `prev`, `next`, `last`, `first` with every parameter echoed percent-encoded (`since=…%3A…`).
//!   Pages are positions in the current order: a record that changes while a read pages moves.
//! - Auth (<https://docs.github.com/rest/authentication/authenticating-to-the-rest-api>):
//!   `Authorization: Bearer <token>` (or `token <token>`); otherwise `401 {"message": "Bad
//!   credentials", "documentation_url": …, "status": "401"}`. An unknown repository is 404.
//! - Rate limits (<https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api>):
//!   every response carries `x-ratelimit-limit`, `-remaining`, `-used`, `-reset` (UTC epoch
//!   seconds) and `-resource: core`. A request with none remaining answers `403 {"message": "API
//!   rate limit exceeded for user ID 1. …"}` with remaining 0. [`GitHubMock::secondary_limit`]
//!   answers the next request `403 {"message": "You have exceeded a secondary rate limit. …"}`
//!   with `retry-after` (or without it: "wait at least one minute").

use super::{header, status_response, with_body_fault, Common};
use crate::{Fault, Seen};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, TimeZone, Utc};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub const OWNER: &str = "octo-org";
pub const REPO: &str = "hello.world";

pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 9, 0, 0).unwrap()
}

#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// Issues (every `pr_every`-th of them a pull request).
    pub issues: u64,
    pub pr_every: u64,
    pub commits: u64,
    /// Records sharing each `updated_at` second.
    pub same_time: u64,
    pub token: String,
    /// Requests allowed before the primary limit is spent, and the seconds until it resets.
    pub rate_limit: u64,
    pub reset_after_seconds: i64,
}

impl Default for GitHubConfig {
    fn default() -> Self {
        GitHubConfig {
            issues: 260,
            pr_every: 4,
            commits: 230,
            same_time: 2,
            token: "github_pat_11FERRY".into(),
            rate_limit: 5000,
            reset_after_seconds: 3600,
        }
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[derive(Debug, Clone)]
struct Issue {
    number: u64,
    updated: DateTime<Utc>,
    pr: bool,
}

impl Issue {
    fn id(&self) -> u64 {
        1_296_269_000 + self.number
    }

    fn as_issue(&self) -> Value {
        let n = self.number;
        let mut v = json!({
            "id": self.id(), "node_id": format!("MDU6SXNzdWUx{n}"), "number": n,
            "url": format!("https://api.github.com/repos/{OWNER}/{REPO}/issues/{n}"),
            "html_url": format!("https://github.com/{OWNER}/{REPO}/issues/{n}"),
            "title": format!("Found a bug #{n}"),
            "body": if n.is_multiple_of(5) { Value::Null } else { json!(format!("I'm having a problem with this ({n}).")) },
            "state": if n.is_multiple_of(3) { "closed" } else { "open" },
            "state_reason": if n.is_multiple_of(3) { json!("completed") } else { Value::Null },
            "locked": false, "comments": n % 7,
            "author_association": "CONTRIBUTOR",
            "user": {"login": "octocat", "id": 1, "type": "User", "site_admin": false},
            "labels": [{"id": 208_045_946, "name": "bug", "color": "f29513", "default": true}],
            "assignees": [], "milestone": null,
            "created_at": iso(base_time() - ChronoDuration::days(30)),
            "updated_at": iso(self.updated),
            "closed_at": if n.is_multiple_of(3) { json!(iso(self.updated)) } else { Value::Null },
        });
        if self.pr {
            v["pull_request"] = json!({
                "url": format!("https://api.github.com/repos/{OWNER}/{REPO}/pulls/{n}"),
                "merged_at": null,
            });
        }
        v
    }

    fn as_pull(&self) -> Value {
        let n = self.number;
        json!({
            "id": 1_000_000 + n, "number": n, "title": format!("Amazing new feature #{n}"),
            "body": "Please pull these awesome changes in!", "state": if n.is_multiple_of(3) { "closed" } else { "open" },
            "locked": false, "draft": n.is_multiple_of(8), "author_association": "OWNER",
            "html_url": format!("https://github.com/{OWNER}/{REPO}/pull/{n}"),
            "merge_commit_sha": format!("e5bd3914e2e596debea16f433f57875b5b90bc{:02x}", n % 256),
            "user": {"login": "octocat", "id": 1},
            "head": {"ref": format!("feature-{n}"), "sha": format!("6dcb09b5b57875f334f61aebed695e2e4193db{:02x}", n % 256), "label": "octocat:new-topic"},
            "base": {"ref": "main", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e"},
            "created_at": iso(base_time() - ChronoDuration::days(30)),
            "updated_at": iso(self.updated),
            "closed_at": if n.is_multiple_of(3) { json!(iso(self.updated)) } else { Value::Null },
            "merged_at": if n.is_multiple_of(6) { json!(iso(self.updated)) } else { Value::Null },
        })
    }
}

#[derive(Debug, Clone)]
struct Commit {
    sha: String,
    date: DateTime<Utc>,
}

impl Commit {
    fn json(&self, parent: Option<&str>) -> Value {
        json!({
            "sha": self.sha, "node_id": "MDY6Q29tbWl0",
            "html_url": format!("https://github.com/{OWNER}/{REPO}/commit/{}", self.sha),
            "commit": {
                "message": format!("Fix all the bugs ({})", &self.sha[..7]),
                "author": {"name": "Monalisa Octocat", "email": "support@github.com", "date": iso(self.date - ChronoDuration::hours(2))},
                "committer": {"name": "GitHub", "email": "noreply@github.com", "date": iso(self.date)},
                "comment_count": 0,
            },
            "author": {"login": "octocat", "id": 1},
            "committer": null,
            "parents": parent.map(|p| json!([{"sha": p}])).unwrap_or(json!([])),
        })
    }
}

struct Inner {
    cfg: GitHubConfig,
    issues: Mutex<Vec<Issue>>,
    commits: Mutex<Vec<Commit>>,
    scheduled: Mutex<Vec<(u64, Vec<u64>)>>,
    /// Requests left in the primary window and when it resets.
    remaining: Mutex<(u64, i64)>,
    /// The next request hits a secondary limit: `Some(retry-after)` (`Some(None)`: no header).
    secondary: Mutex<Option<Option<String>>>,
    common: Common,
}

type S = Arc<Inner>;

pub struct GitHubMock {
    pub addr: SocketAddr,
    inner: S,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GitHubMock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GitHubMock {
    pub async fn start(cfg: GitHubConfig) -> GitHubMock {
        let issues = (1..=cfg.issues)
            .map(|n| Issue {
                number: n,
                updated: updated_of(&cfg, n),
                pr: cfg.pr_every > 0 && n.is_multiple_of(cfg.pr_every),
            })
            .collect();
        let commits = (1..=cfg.commits)
            .map(|i| Commit {
                sha: format!("{:040x}", 0x7fad_8c1e_u64 * i),
                date: updated_of(&cfg, i),
            })
            .collect();
        let reset = Utc::now().timestamp() + cfg.reset_after_seconds;
        let inner = Arc::new(Inner {
            remaining: Mutex::new((cfg.rate_limit, reset)),
            cfg,
            issues: Mutex::new(issues),
            commits: Mutex::new(commits),
            scheduled: Mutex::new(vec![]),
            secondary: Mutex::new(None),
            common: Default::default(),
        });
        let app = Router::new()
            .route("/repos/{owner}/{repo}/{what}", get(list))
            .layer(axum::middleware::from_fn_with_state(inner.clone(), gate))
            .with_state(inner.clone());
        let (addr, task) = super::serve(app, "github").await;
        GitHubMock { addr, inner, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.inner.common.faults.lock().unwrap().extend(faults);
    }

    pub fn fault_every(&self, every: u64, faults: Vec<Fault>) {
        *self.inner.common.periodic.lock().unwrap() = Some((every, faults));
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.inner.common.log.lock().unwrap().clone()
    }

    pub fn updated(&self, n: u64) -> DateTime<Utc> {
        updated_of(&self.inner.cfg, n)
    }

    /// The primary limit: `n` requests left, resetting `reset_in` seconds from now.
    pub fn set_remaining(&self, n: u64, reset_in: i64) {
        *self.inner.remaining.lock().unwrap() = (n, Utc::now().timestamp() + reset_in);
    }

    /// The next data request hits a secondary rate limit.
    pub fn secondary_limit(&self, retry_after: Option<&str>) {
        *self.inner.secondary.lock().unwrap() = Some(retry_after.map(String::from));
    }

    /// Update issues `ns` once `after` data requests were answered.
    pub fn touch_after(&self, after: u64, ns: &[u64]) {
        self.inner
            .scheduled
            .lock()
            .unwrap()
            .push((after, ns.to_vec()));
    }

    /// (id, updated_at) of every issue that is not a pull request.
    pub fn issue_versions(&self) -> BTreeSet<(u64, DateTime<Utc>)> {
        self.inner
            .issues
            .lock()
            .unwrap()
            .iter()
            .filter(|i| !i.pr)
            .map(|i| (i.id(), i.updated))
            .collect()
    }

    /// Ids of issues (not pull requests; `pulls`: only pull requests, by their pull id) updated
    /// in `(start, end]`.
    pub fn ids_in(&self, pulls: bool, start: Option<DateTime<Utc>>) -> BTreeSet<u64> {
        self.inner
            .issues
            .lock()
            .unwrap()
            .iter()
            .filter(|i| i.pr == pulls && start.is_none_or(|s| i.updated > s))
            .map(|i| if pulls { 1_000_000 + i.number } else { i.id() })
            .collect()
    }

    /// Shas of commits dated in `(start, ∞)`.
    pub fn shas_in(&self, start: Option<DateTime<Utc>>) -> BTreeSet<String> {
        self.inner
            .commits
            .lock()
            .unwrap()
            .iter()
            .filter(|c| start.is_none_or(|s| c.date > s))
            .map(|c| c.sha.clone())
            .collect()
    }
}

fn updated_of(cfg: &GitHubConfig, n: u64) -> DateTime<Utc> {
    base_time() + ChronoDuration::seconds((n / cfg.same_time.max(1)) as i64)
}

fn touch(s: &Inner, ns: &[u64]) {
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    for i in s.issues.lock().unwrap().iter_mut() {
        if ns.contains(&i.number) {
            i.updated = now;
        }
    }
}

fn message(status: StatusCode, msg: &str, doc: &str) -> Response {
    (
        status,
        axum::Json(json!({"message": msg, "documentation_url": doc, "status": status.as_u16().to_string()})),
    )
        .into_response()
}

fn parse_time(v: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

async fn list(
    State(s): State<S>,
    Path((owner, repo, what)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if owner != OWNER || repo != REPO || !matches!(what.as_str(), "issues" | "pulls" | "commits") {
        return message(
            StatusCode::NOT_FOUND,
            "Not Found",
            "https://docs.github.com/rest",
        );
    }
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let per_page = get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let since = match get("since") {
        Some(v) if what != "pulls" => match parse_time(&v) {
            Some(t) => Some(t),
            None => {
                return message(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation Failed",
                    "https://docs.github.com/rest/issues/issues#list-repository-issues",
                )
            }
        },
        _ => None,
    };
    let until = get("until").and_then(|v| parse_time(&v));
    let desc = get("direction").as_deref() != Some("asc");
    let state = get("state").unwrap_or_else(|| "open".into());
    let items: Vec<Value> = match what.as_str() {
        "commits" => {
            let mut cs = s.commits.lock().unwrap().clone();
            cs.sort_by(|a, b| b.date.cmp(&a.date).then(b.sha.cmp(&a.sha)));
            cs.iter()
                .enumerate()
                .filter(|(_, c)| {
                    since.is_none_or(|t| c.date >= t) && until.is_none_or(|t| c.date <= t)
                })
                .map(|(i, c)| c.json(cs.get(i + 1).map(|p| p.sha.as_str())))
                .collect()
        }
        _ => {
            let mut is = s.issues.lock().unwrap().clone();
            if what == "pulls" {
                is.retain(|i| i.pr);
            }
            is.retain(|i| match state.as_str() {
                "all" => true,
                "closed" => i.number.is_multiple_of(3),
                _ => !i.number.is_multiple_of(3),
            });
            is.retain(|i| since.is_none_or(|t| i.updated >= t));
            let by_updated = get("sort").as_deref() == Some("updated");
            is.sort_by(|a, b| {
                let o = if by_updated {
                    a.updated.cmp(&b.updated).then(a.number.cmp(&b.number))
                } else {
                    a.number.cmp(&b.number)
                };
                if desc {
                    o.reverse()
                } else {
                    o
                }
            });
            is.iter()
                .map(|i| {
                    if what == "pulls" {
                        i.as_pull()
                    } else {
                        i.as_issue()
                    }
                })
                .collect()
        }
    };
    let last = items.len().div_ceil(per_page).max(1);
    let body: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut resp = axum::Json(Value::Array(body)).into_response();
    // Link: every parameter echoed (percent-encoded), `page` replaced.
    let host = header(&headers, "host").unwrap_or("localhost");
    let url_for = |p: usize| {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params.iter().filter(|(k, _)| k != "page") {
            ser.append_pair(k, v);
        }
        ser.append_pair("page", &p.to_string());
        format!(
            "<http://{host}/repos/{owner}/{repo}/{what}?{}>",
            ser.finish()
        )
    };
    let mut links = vec![];
    if page > 1 {
        links.push(format!("{}; rel=\"prev\"", url_for(page - 1)));
    }
    if page < last {
        links.push(format!("{}; rel=\"next\"", url_for(page + 1)));
        links.push(format!("{}; rel=\"last\"", url_for(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", url_for(1)));
    }
    if !links.is_empty() {
        resp.headers_mut()
            .insert("link", HeaderValue::from_str(&links.join(", ")).unwrap());
    }
    resp
}

fn authorized(s: &S, headers: &HeaderMap) -> bool {
    header(headers, "authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        })
        .is_some_and(|t| t == s.cfg.token)
}

fn rate_headers(r: &mut Response, limit: u64, remaining: u64, reset: i64) {
    let h = r.headers_mut();
    h.insert("x-ratelimit-limit", limit.into());
    h.insert("x-ratelimit-remaining", remaining.into());
    h.insert("x-ratelimit-used", (limit - remaining.min(limit)).into());
    h.insert("x-ratelimit-reset", reset.into());
    h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
}

async fn gate(State(s): State<S>, req: Request<Body>, next: axum::middleware::Next) -> Response {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let resp = if !authorized(&s, req.headers()) {
        message(
            StatusCode::UNAUTHORIZED,
            "Bad credentials",
            "https://docs.github.com/rest",
        )
    } else {
        let limit = s.cfg.rate_limit;
        // The window resets at its reset time.
        let (left, reset) = {
            let mut r = s.remaining.lock().unwrap();
            if Utc::now().timestamp() >= r.1 {
                *r = (limit, Utc::now().timestamp() + s.cfg.reset_after_seconds);
            }
            if r.0 > 0 {
                r.0 -= 1;
                (Some(r.0), r.1)
            } else {
                (None, r.1)
            }
        };
        match left {
            None => {
                let mut r = message(
                    StatusCode::FORBIDDEN,
                    "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID.",
                    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                );
                rate_headers(&mut r, limit, 0, reset);
                r
            }
            Some(left) => {
                let secondary = s.secondary.lock().unwrap().take();
                let mut r = if let Some(ra) = secondary {
                    let mut r = message(
                        StatusCode::FORBIDDEN,
                        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.",
                        "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
                    );
                    if let Some(ra) = ra {
                        r.headers_mut()
                            .insert("retry-after", HeaderValue::from_str(&ra).unwrap());
                    }
                    r
                } else {
                    let answered = s
                        .common
                        .data_requests
                        .load(std::sync::atomic::Ordering::SeqCst);
                    let due: Vec<(u64, Vec<u64>)> = {
                        let mut sch = s.scheduled.lock().unwrap();
                        let (due, later) = sch.drain(..).partition(|(n, _)| *n <= answered);
                        *sch = later;
                        due
                    };
                    for (_, ns) in due {
                        touch(&s, &ns);
                    }
                    match s.common.next_fault() {
                        Some(Fault::Status {
                            status,
                            retry_after,
                        }) => status_response(
                            status,
                            retry_after.as_deref(),
                            json!({"message": "Server Error"}),
                        ),
                        Some(Fault::Slow(d)) => {
                            tokio::time::sleep(d).await;
                            next.run(req).await
                        }
                        Some(f) => with_body_fault(&f, next.run(req).await).await,
                        None => next.run(req).await,
                    }
                };
                rate_headers(&mut r, limit, left, reset);
                r
            }
        }
    };
    s.common
        .record(at, &method, &path, &query, resp.status().as_u16());
    resp
}
