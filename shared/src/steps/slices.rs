//! Slices: a run's window cut into parts the source can read independently, run in parallel by
//! the state machine's Distributed Map ("Run Slices"), each part a child execution looping over
//! its chunks. start-run plans them, fetch-page reads one, write-s3 keeps one carry chain per
//! slice, finalize commits them all at once. What those steps share lives here.
//!
//! - **Chunk numbers.** Slice `s` numbers its chunks from `s × STRIDE` ([`first_chunk`]), so
//!   every staged object, chunk result and output key stays unique per run and a retried step
//!   still overwrites its own. Slice 0 of an unsliced run numbers them 0, 1, 2 … as before.
//! - **Bounded children.** A child execution fetches at most [`CHUNKS_PER_CHILD`] chunks, then
//!   pauses ("Slice Paused") after staging its progress; start-run ("Plan Next Round") puts the
//!   slices that have more into the next round's list and the Map runs them again as new child
//!   executions, from their cursor. A child's history is therefore at most
//!   `17 × CHUNKS_PER_CHILD + 12` events (8,512), a third of the 25,000 limit, and the parent's
//!   grows by 13 events per round, whatever the run's size.
//! - **Pointers only.** The slice list of a round is staged as a JSON array
//!   (`slices/round-NNNN.json`, what the Map's ItemReader reads); the state holds its key and
//!   count ([`SlicePlan`]).

use super::RunContext;
use crate::error::StepError;
use crate::model::Window;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Chunk numbers reserved per slice.
pub const STRIDE: u32 = 100_000;

/// Chunks one child execution fetches before it pauses and its slice continues in the next
/// round (a new child execution).
pub const CHUNKS_PER_CHILD: u32 = 500;

/// At most this many slices per run (the chunk numbers of [`STRIDE`] each fit a `u32`).
pub const MAX_SLICES: u32 = 10_000;

/// The first chunk number of slice `index`.
pub fn first_chunk(index: u32) -> u32 {
    index * STRIDE
}

/// Whether `chunk` is the first of its slice (no carry before it).
pub fn is_first_chunk(chunk: u32) -> bool {
    chunk % STRIDE == 0
}

/// One slice, as a round's list holds it and a child execution gets it (`$.slice`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceItem {
    pub index: u32,
    /// The part of the run's window this slice reads; `None`: the run's own (an unsliced run).
    #[serde(default)]
    pub window: Option<Window>,
    /// Where the slice's next fetch starts (`null`: its beginning).
    #[serde(default)]
    pub cursor: serde_json::Value,
    pub next_chunk: u32,
    /// The child pauses after fetching this chunk if the slice has more.
    pub pause_at: u32,
    /// How many slices run at once (the Map's MaxConcurrency): on the deployed stack each
    /// slice's fetch-page takes this share of the flow's request budget
    /// (`connector::http::set_budget_share`), so the run as a whole keeps to it.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub parallelism: u32,
    /// The slice commits on its own when it ends ("Commit Slice": `source.slice.commit: slice`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub commit: bool,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

impl SliceItem {
    pub fn new(index: u32, window: Option<Window>) -> SliceItem {
        let next_chunk = first_chunk(index);
        SliceItem {
            index,
            window,
            cursor: serde_json::Value::Null,
            next_chunk,
            pause_at: next_chunk + CHUNKS_PER_CHILD - 1,
            parallelism: 1,
            commit: false,
        }
    }
}

/// Which slice a chunk number belongs to.
pub fn slice_of_chunk(chunk: u32) -> u32 {
    chunk / STRIDE
}

/// What is left of `(start, end]` once the committed windows are taken out, in order.
pub fn subtract(window: Window, committed: &[(DateTime<Utc>, DateTime<Utc>)]) -> Vec<Window> {
    let Some(start) = window.start else {
        return vec![window];
    };
    let mut taken: Vec<(DateTime<Utc>, DateTime<Utc>)> = committed
        .iter()
        .copied()
        .filter(|(s, e)| s < e && *e > start && *s < window.end)
        .collect();
    taken.sort();
    let mut out = vec![];
    let mut at = start;
    for (s, e) in taken {
        if s > at {
            out.push(Window {
                start: Some(at),
                end: s.min(window.end),
            });
        }
        at = at.max(e);
        if at >= window.end {
            return out;
        }
    }
    if at < window.end {
        out.push(Window {
            start: Some(at),
            end: window.end,
        });
    }
    out
}

/// The low watermark: from `from`, how far the committed windows reach without a gap (`from`
/// itself when the first part is not committed).
pub fn low_watermark(
    from: DateTime<Utc>,
    committed: &[(DateTime<Utc>, DateTime<Utc>)],
) -> DateTime<Utc> {
    let mut parts = committed.to_vec();
    parts.sort();
    let mut at = from;
    for (s, e) in parts {
        if s <= at && e > at {
            at = e;
        }
    }
    at
}

/// Where a round's slice list is (`$.slices`): a pointer, never the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlicePlan {
    /// Staging key of the JSON array of [`SliceItem`]s (the Map's ItemReader reads it).
    pub key: String,
    /// Slices in this round (0: all done).
    pub count: u32,
    pub round: u32,
    /// How many slices run at once (the Map's MaxConcurrency).
    pub parallelism: u32,
    /// Slices of the run, all rounds.
    pub total: u32,
}

/// What a child stages when it pauses or finishes its slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceProgress {
    pub index: u32,
    pub cursor: serde_json::Value,
    pub next_chunk: u32,
    pub done: bool,
}

pub fn round_key(run: &RunContext, round: u32) -> String {
    format!("{}/slices/round-{round:04}.json", run.staging_prefix)
}

pub fn progress_key(run: &RunContext, index: u32) -> String {
    format!(
        "{}/slices/progress/slice-{index:06}.json",
        run.staging_prefix
    )
}

/// Where a slice's failure is recorded for the run's failure path (its error name and cause).
pub fn failure_key(run: &RunContext, index: u32) -> String {
    format!("{}/slices/failed/slice-{index:06}.json", run.staging_prefix)
}

pub fn failures_prefix(run: &RunContext) -> String {
    format!("{}/slices/failed/", run.staging_prefix)
}

/// Cut `(start, end]` into `n` windows of equal length (the last one takes the rounding).
pub fn split_even(start: DateTime<Utc>, end: DateTime<Utc>, n: u32) -> Vec<Window> {
    let n = n.max(1);
    let total = (end - start).num_microseconds().unwrap_or(i64::MAX).max(0);
    let n = n.min(u32::try_from(total.max(1)).unwrap_or(u32::MAX));
    let step = total / i64::from(n);
    (0..n)
        .map(|i| {
            let s = start + Duration::microseconds(step * i64::from(i));
            let e = if i + 1 == n {
                end
            } else {
                start + Duration::microseconds(step * i64::from(i + 1))
            };
            Window {
                start: Some(s),
                end: e,
            }
        })
        .collect()
}

/// Check that a slice can take one more chunk within its chunk numbers.
pub fn check_chunk(index: u32, chunk: u32) -> Result<(), StepError> {
    // The last number of a slice's range is kept for its final flush.
    if chunk + 1 >= first_chunk(index) + STRIDE {
        return Err(StepError::fatal(format!(
            "slice {index} reached {} chunks, the most one slice can hold; cut the window into more slices (source.slice.count or source.slice.records)",
            STRIDE - 1
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_split_covers_the_window_without_gaps() {
        let s: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
        let e: DateTime<Utc> = "2024-01-02T00:00:01Z".parse().unwrap();
        let parts = split_even(s, e, 7);
        assert_eq!(parts.len(), 7);
        assert_eq!(parts[0].start, Some(s));
        assert_eq!(parts.last().unwrap().end, e);
        for w in parts.windows(2) {
            assert_eq!(w[0].end, w[1].start.unwrap(), "contiguous: {parts:?}");
            assert!(w[0].start.unwrap() < w[0].end);
        }
        // A window shorter than the count gets fewer, non-empty slices.
        let tiny = split_even(s, s + Duration::microseconds(3), 8);
        assert_eq!(tiny.len(), 3);
    }

    fn ts(h: i64) -> DateTime<Utc> {
        "2024-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::hours(h)
    }

    #[test]
    fn subtracting_committed_windows_leaves_exactly_the_gaps() {
        let w = Window {
            start: Some(ts(0)),
            end: ts(10),
        };
        let got = subtract(w, &[(ts(2), ts(4)), (ts(6), ts(7)), (ts(9), ts(12))]);
        let want: Vec<Window> = [(0, 2), (4, 6), (7, 9)]
            .iter()
            .map(|(a, b)| Window {
                start: Some(ts(*a)),
                end: ts(*b),
            })
            .collect();
        assert_eq!(got, want);
        // Nothing committed: the window itself; everything committed: nothing.
        assert_eq!(subtract(w, &[]), vec![w]);
        assert!(subtract(w, &[(ts(-1), ts(3)), (ts(3), ts(11))]).is_empty());
        // Overlapping committed windows (two runs' slices) are taken out once.
        assert_eq!(
            subtract(w, &[(ts(1), ts(5)), (ts(3), ts(8))]),
            vec![
                Window {
                    start: Some(ts(0)),
                    end: ts(1)
                },
                Window {
                    start: Some(ts(8)),
                    end: ts(10)
                }
            ]
        );
    }

    #[test]
    fn the_low_watermark_stops_at_the_first_gap() {
        // Slices 0 and 1 committed, 2 not, 3 committed: the watermark may pass 0 and 1 only.
        let committed = [(ts(3), ts(4)), (ts(0), ts(1)), (ts(1), ts(2))];
        assert_eq!(low_watermark(ts(0), &committed), ts(2));
        // The first slice not committed: the watermark stays.
        assert_eq!(low_watermark(ts(0), &[(ts(1), ts(2))]), ts(0));
        // A committed window reaching back before the start (an earlier run's) counts.
        assert_eq!(
            low_watermark(ts(1), &[(ts(0), ts(3)), (ts(3), ts(5))]),
            ts(5)
        );
    }

    #[test]
    fn a_slice_item_carries_its_share_of_the_parallelism() {
        // Lists staged before the field existed read as one slice at a time.
        let old: SliceItem = serde_json::from_value(serde_json::json!(
            {"index": 1, "window": null, "cursor": null, "next_chunk": 100000, "pause_at": 100499}
        ))
        .unwrap();
        assert_eq!(old.parallelism, 1);
        let item = SliceItem {
            parallelism: 4,
            ..SliceItem::new(1, None)
        };
        let back: SliceItem = serde_json::from_value(serde_json::to_value(&item).unwrap()).unwrap();
        assert_eq!(back, item);
    }

    #[test]
    fn chunk_numbers_are_per_slice() {
        assert_eq!(first_chunk(0), 0);
        assert_eq!(first_chunk(3), 300_000);
        assert!(is_first_chunk(300_000));
        assert!(!is_first_chunk(300_001));
        let item = SliceItem::new(2, None);
        assert_eq!(item.next_chunk, 200_000);
        assert_eq!(item.pause_at, 200_000 + CHUNKS_PER_CHILD - 1);
        assert!(check_chunk(2, 200_000 + STRIDE - 3).is_ok());
        assert!(check_chunk(2, 200_000 + STRIDE - 1).is_err());
        // u32 holds every chunk of the last slice.
        assert!(u64::from(first_chunk(MAX_SLICES - 1)) + u64::from(STRIDE) < u64::from(u32::MAX));
    }
}
