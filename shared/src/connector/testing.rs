//! A canned-response HTTP/1.1 server on 127.0.0.1 for the connector unit tests: answers each
//! request with the next response of its list (the last one repeats) and counts requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One canned answer.
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Canned {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Canned {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string(),
        }
    }
}

pub struct Server {
    pub url: String,
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

pub async fn serve(answers: Vec<Canned>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let n = requests.clone();
    let answers = Arc::new(answers);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let i = n.fetch_add(1, Ordering::SeqCst);
            let a = &answers[i.min(answers.len() - 1)];
            // Read the head and the body (Content-Length), then answer and close.
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(k) = sock.read(&mut chunk).await {
                if k == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..k]);
                // Not HTTP (e.g. a TLS ClientHello, 0x16): answer at once, as a plain-HTTP
                // server does, instead of waiting for a header end that never comes.
                if !buf[0].is_ascii_uppercase() {
                    break;
                }
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let mut out = format!("HTTP/1.1 {} X\r\nconnection: close\r\n", a.status);
            for (k, v) in &a.headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str(&format!(
                "content-length: {}\r\n\r\n{}",
                a.body.len(),
                a.body
            ));
            let _ = sock.write_all(out.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    Server {
        url,
        requests,
        task,
    }
}

/// A port on 127.0.0.1 where nothing listens.
pub async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}
