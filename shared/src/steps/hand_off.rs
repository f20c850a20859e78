//! The embedded engine's hand-off of staged Arrow chunks: in one process, a chunk fetch-page
//! decoded (or transform-batch produced) is handed to the next step as the batches themselves,
//! kept here under its staging key, instead of being encoded to Arrow IPC, written to disk and
//! read and decompressed back (a quarter of a run's CPU, docs/performance.md).
//!
//! Why it is safe only there: a run of the embedded engine lives and dies with its process. If
//! the process dies, the next one reaps the run (`LocalEngine::reap_dead_holder`) rather than
//! resuming it, so nothing staged in memory is ever needed by another process. On AWS every step
//! is a Lambda of its own and staging is S3: no hand-off (`Settings::hand_off` is `None`).
//!
//! Memory has a ceiling: past `budget` bytes (`FERRY_HAND_OFF_MB`, default
//! [`DEFAULT_BUDGET_MB`]; `0` turns the hand-off off), the oldest chunks are *spilled*: written
//! to staging as the steps would have written them, and read from there. A chunk leaves when
//! the step that needs it last is done with it ([`super::staging::release_written`]) or when
//! its run's staging is cleaned up.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use std::collections::HashMap;
use std::sync::Mutex;

/// The hand-off's default ceiling: two chunks of the default size (250,000 records of a
/// few hundred bytes) and the next one being fetched.
pub const DEFAULT_BUDGET_MB: usize = 320;

/// A staged chunk kept in memory: what its Arrow IPC file would hold.
#[derive(Debug, Clone)]
pub struct Held {
    pub schema: SchemaRef,
    /// One batch per source page, as decoded (never concatenated).
    pub batches: Vec<RecordBatch>,
    /// Records that did not decode (staged beside it, on disk: they are few).
    pub rejected: u64,
}

impl Held {
    pub fn rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }

    fn bytes(&self) -> usize {
        self.batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum()
    }
}

struct Entry {
    held: Held,
    /// The run's staging folder and the chunk number, for release.
    folder: String,
    chunk: u32,
    bytes: usize,
    seq: u64,
    /// Being written to staging: still readable here until written.
    spilling: bool,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    bytes: usize,
    seq: u64,
}

pub struct HandOff {
    budget: usize,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for HandOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.lock();
        f.debug_struct("HandOff")
            .field("budget", &self.budget)
            .field("chunks", &i.entries.len())
            .field("bytes", &i.bytes)
            .finish()
    }
}

impl HandOff {
    pub fn new(budget_bytes: usize) -> Self {
        HandOff {
            budget: budget_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The embedded engine's hand-off, sized by `FERRY_HAND_OFF_MB` (`0`: none, every chunk
    /// goes through staging files).
    pub fn from_env() -> Result<Option<std::sync::Arc<Self>>, String> {
        let mb = match std::env::var("FERRY_HAND_OFF_MB") {
            Err(_) => DEFAULT_BUDGET_MB,
            Ok(v) => v.trim().parse::<usize>().map_err(|_| {
                format!("FERRY_HAND_OFF_MB={v:?} is not a number of MiB: set it to a whole number (0 turns the in-memory hand-off off)")
            })?,
        };
        Ok((mb > 0).then(|| std::sync::Arc::new(HandOff::new(mb * 1024 * 1024))))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent maps (every change is one insert or
        // remove): keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `held` under `key`. Returns the chunks to spill to keep under the budget, oldest
    /// first (possibly this one): the caller writes each to staging, then [`HandOff::forget`]s
    /// it. Until then they are still read from here.
    pub fn put(&self, key: &str, folder: &str, chunk: u32, held: Held) -> Vec<(String, Held)> {
        let bytes = held.bytes();
        let mut i = self.lock();
        i.seq += 1;
        let seq = i.seq;
        if let Some(old) = i.entries.insert(
            key.to_string(),
            Entry {
                held,
                folder: folder.to_string(),
                chunk,
                bytes,
                seq,
                spilling: false,
            },
        ) {
            i.bytes -= old.bytes;
        }
        i.bytes += bytes;
        let mut over = i.bytes.saturating_sub(self.budget) as i64;
        let mut order: Vec<(u64, String)> = i
            .entries
            .iter()
            .filter(|(_, e)| !e.spilling)
            .map(|(k, e)| (e.seq, k.clone()))
            .collect();
        order.sort();
        // Chunks already being spilled will leave: they count towards the excess.
        over -= i
            .entries
            .values()
            .filter(|e| e.spilling)
            .map(|e| e.bytes as i64)
            .sum::<i64>();
        let mut spill = vec![];
        for (_, k) in order {
            if over <= 0 {
                break;
            }
            if let Some(e) = i.entries.get_mut(&k) {
                e.spilling = true;
                over -= e.bytes as i64;
                spill.push((k, e.held.clone()));
            }
        }
        spill
    }

    pub fn get(&self, key: &str) -> Option<Held> {
        self.lock().entries.get(key).map(|e| e.held.clone())
    }

    pub fn forget(&self, key: &str) {
        let mut i = self.lock();
        if let Some(e) = i.entries.remove(key) {
            i.bytes -= e.bytes;
        }
    }

    /// Drop the chunks of the run staged under `folder` for which `done(chunk)` holds.
    pub fn release(&self, folder: &str, done: impl Fn(u32) -> bool) {
        let mut i = self.lock();
        let gone: Vec<String> = i
            .entries
            .iter()
            .filter(|(_, e)| e.folder == folder && done(e.chunk))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some(e) = i.entries.remove(&k) {
                i.bytes -= e.bytes;
            }
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Chunks held now, by key.
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.lock().entries.keys().cloned().collect();
        k.sort();
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array};
    use std::sync::Arc;

    fn held(n: i64) -> Held {
        let col: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n));
        let b = RecordBatch::try_from_iter([("n", col)]).unwrap();
        Held {
            schema: b.schema(),
            batches: vec![b],
            rejected: 0,
        }
    }

    #[test]
    fn past_its_budget_the_oldest_chunks_are_spilled_and_readable_until_forgotten() {
        let one = held(1000).bytes();
        let h = HandOff::new(one * 2 + one / 2);
        assert!(h.put("a", "f/", 0, held(1000)).is_empty());
        assert!(h.put("b", "f/", 1, held(1000)).is_empty());
        let spill = h.put("c", "f/", 2, held(1000));
        assert_eq!(
            spill.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        // Still readable while it is written; a fourth chunk spills the next oldest, not it.
        assert!(h.get("a").is_some());
        let spill = h.put("d", "f/", 3, held(1000));
        assert_eq!(
            spill.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        h.forget("a");
        h.forget("b");
        assert_eq!(h.keys(), ["c", "d"]);
        assert_eq!(h.bytes(), one * 2);
        // Released by run and chunk.
        h.put("x", "g/", 0, held(10));
        h.release("f/", |c| c < 3);
        assert_eq!(h.keys(), ["d", "x"]);
        h.release("g/", |_| true);
        assert_eq!(h.keys(), ["d"]);
    }

    #[test]
    fn a_chunk_larger_than_the_budget_is_spilled_at_once() {
        let h = HandOff::new(10);
        let spill = h.put("a", "f/", 0, held(1000));
        assert_eq!(spill.len(), 1);
        assert_eq!(spill[0].1.rows(), 1000);
    }
}
