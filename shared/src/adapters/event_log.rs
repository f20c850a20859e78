//! Run reports as JSON lines in a local file (`$FERRY_HOME/events.jsonl`).

use crate::error::StoreError;
use crate::ports::{Event, EventSink};
use async_trait::async_trait;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

pub struct EventLog {
    path: PathBuf,
    lock: Mutex<()>,
}

impl EventLog {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        EventLog {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    /// Every event logged so far.
    pub async fn read_all(&self) -> Result<Vec<Event>, StoreError> {
        let text = match tokio::fs::read_to_string(&self.path).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(StoreError::backend("read event log", e)),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| StoreError::backend("parse event log", e)))
            .collect()
    }
}

#[async_trait]
impl EventSink for EventLog {
    async fn publish(&self, event: &Event) -> Result<(), StoreError> {
        let _g = self.lock.lock().await;
        if let Some(dir) = self.path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError::backend("create event log dir", e))?;
        }
        let mut line =
            serde_json::to_vec(event).map_err(|e| StoreError::backend("encode event", e))?;
        line.push(b'\n');
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(|e| StoreError::backend("open event log", e))?;
        f.write_all(&line)
            .await
            .map_err(|e| StoreError::backend("write event log", e))?;
        Ok(())
    }
}
