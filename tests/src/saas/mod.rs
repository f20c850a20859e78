//! Vendor-dialect mock servers: each module speaks one SaaS API's paths, parameters, paging,
//! auth headers, error bodies and rate-limit answers, over a deterministic data set, with a
//! request log and fault/auth toggles like [`crate::Mock`].

pub mod ga4;
pub mod github;
pub mod hubspot;
pub mod jira;
pub mod marketo;
pub mod oauth;
pub mod salesforce;
pub mod servicenow;
pub mod shopify;
pub mod slack;
pub mod stripe;
pub mod zendesk;

use crate::{Fault, Seen};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

pub use crate::b64;

/// Opaque page tokens: hex of a text, so clients cannot read or build them by accident.
pub fn token(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}
pub fn untoken(t: &str) -> Option<String> {
    if !t.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&t[i..i + 2], 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Serve `app` on a free port of 127.0.0.1 until the returned task is dropped or aborted.
pub async fn serve(
    app: axum::Router,
    vendor: &'static str,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind the {vendor} mock: {e}"));
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .unwrap_or_else(|e| panic!("{vendor} mock: {e}"));
    });
    (addr, task)
}

/// Faults, auth refusals and the request log every vendor mock shares.
#[derive(Default)]
pub struct Common {
    pub faults: Mutex<VecDeque<Fault>>,
    pub periodic: Mutex<Option<(u64, Vec<Fault>)>>,
    pub data_requests: std::sync::atomic::AtomicU64,
    pub log: Mutex<Vec<Seen>>,
}

impl Common {
    /// The fault for this data request, if any (queued first, then periodic).
    pub fn next_fault(&self) -> Option<Fault> {
        let n = self
            .data_requests
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        if let Some(f) = self.faults.lock().unwrap().pop_front() {
            return Some(f);
        }
        if let Some((every, fs)) = &*self.periodic.lock().unwrap() {
            if *every > 0 && n.is_multiple_of(*every) && !fs.is_empty() {
                return Some(fs[((n / every - 1) as usize) % fs.len()].clone());
            }
        }
        None
    }

    pub fn record(&self, at: Instant, method: &str, path: &str, query: &str, status: u16) {
        self.log.lock().unwrap().push(Seen {
            at,
            method: method.into(),
            path: path.into(),
            query: query.into(),
            status,
        });
    }
}

/// A status fault answered with `body` and the `Retry-After` header if given.
pub fn status_response(
    status: u16,
    retry_after: Option<&str>,
    body: serde_json::Value,
) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    if let Some(ra) = retry_after {
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_str(ra).unwrap());
    }
    r
}

pub fn header<'a>(h: &'a HeaderMap, k: &str) -> Option<&'a str> {
    h.get(k).and_then(|v| v.to_str().ok())
}

/// Apply a non-status fault (slow, truncated, malformed) around the real answer.
pub async fn with_body_fault(f: &Fault, resp: Response) -> Response {
    match f {
        Fault::Truncated | Fault::Malformed => {
            let (mut parts, body) = resp.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let new: Vec<u8> = match f {
                Fault::Truncated => bytes[..bytes.len() / 2].to_vec(),
                _ => b"<html><body>502 Bad Gateway (proxy)</body></html>".to_vec(),
            };
            parts.headers.remove("content-length");
            Response::from_parts(parts, axum::body::Body::from(new))
        }
        _ => resp,
    }
}
