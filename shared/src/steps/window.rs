//! The incremental window rule (AppFlow's), as pure functions: which records a run reads, and
//! where the watermark goes when it commits. start-run and finalize share it through here.
//!
//! - The first incremental run reads `(first_execution_from, now - offset]` (default: 30 days
//!   back); every later one `(watermark - lookback, now - offset]`.
//! - `complete` reads everything up to `now - offset`.
//! - A backfill reads exactly the window it is given.
//! - Only an incremental run moves the watermark, to its window's end.

use crate::error::StepError;
use crate::flow::Flow;
use crate::model::{FlowState, PullMode, Window};
use chrono::{DateTime, Duration, Utc};

/// The mode a run request resolves to.
pub fn mode(
    flow: &Flow,
    requested: Option<PullMode>,
    window: Option<&Window>,
) -> Result<PullMode, StepError> {
    let mode = match (window, requested) {
        (Some(_), _) => PullMode::Backfill,
        (None, Some(PullMode::Backfill)) => {
            return Err(StepError::invalid_flow(
                "mode backfill needs a window { start, end }",
            ))
        }
        (None, Some(m)) => m,
        (None, None) => flow.default_mode(),
    };
    if mode != PullMode::Complete && flow.source.incremental.is_none() {
        return Err(StepError::invalid_flow(format!(
            "flow '{}' has no `source.incremental` section, so it cannot run {mode:?} (set source.incremental.field)",
            flow.name
        )));
    }
    if let Some(w) = window {
        if w.start.is_some_and(|s| s >= w.end) {
            return Err(StepError::invalid_flow(
                "window.start must be before window.end",
            ));
        }
    }
    Ok(mode)
}

/// The window a run reads, at `now`.
pub fn window(
    mode: PullMode,
    state: &FlowState,
    flow: &Flow,
    now: DateTime<Utc>,
    requested: Option<&Window>,
) -> Window {
    let inc = flow.source.incremental.as_ref();
    let offset = inc.and_then(|i| i.offset).unwrap_or_default();
    let end = now - Duration::from_std(offset).unwrap_or_default();
    match (mode, requested) {
        (PullMode::Backfill, Some(w)) => *w,
        (PullMode::Complete, _) | (PullMode::Backfill, None) => Window { start: None, end },
        (PullMode::Incremental, _) => {
            let lookback = inc
                .and_then(|i| i.lookback)
                .and_then(|l| Duration::from_std(l).ok())
                .unwrap_or_default();
            let start = match state.watermark {
                Some(wm) => wm - lookback,
                None => inc
                    .and_then(|i| i.first_execution_from)
                    .unwrap_or(now - Duration::days(30)),
            };
            Window {
                start: Some(start),
                end,
            }
        }
    }
}

/// Where the watermark goes when a run in `mode` over `window` commits: only an incremental run
/// moves it, to the end of what it read.
pub fn next_watermark(mode: PullMode, window: &Window) -> Option<DateTime<Utc>> {
    (mode == PullMode::Incremental).then_some(window.end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn flow(extra: &str) -> Flow {
        Flow::parse(
            &format!("name: win\nsource:\n  connector: sample\n  entity: accounts\n{extra}destination:\n  local: out\n"),
            "w.yaml",
        )
        .unwrap()
    }

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, h, 0, 0).unwrap()
    }

    #[test]
    fn the_first_incremental_run_starts_at_first_execution_from_then_at_the_watermark_less_lookback(
    ) {
        let f = flow("  incremental: { field: updated_at, lookback: 10m, offset: 5m, first_execution_from: \"2026-01-01T00:00:00Z\" }\n");
        let now = t(12);
        let first = window(PullMode::Incremental, &FlowState::default(), &f, now, None);
        assert_eq!(
            first.start,
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(first.end, now - Duration::minutes(5));
        let state = FlowState {
            watermark: next_watermark(PullMode::Incremental, &first),
            ..Default::default()
        };
        let second = window(PullMode::Incremental, &state, &f, t(13), None);
        assert_eq!(second.start, Some(first.end - Duration::minutes(10)));
        assert_eq!(second.end, t(13) - Duration::minutes(5));
    }

    #[test]
    fn without_first_execution_from_the_first_run_reads_thirty_days() {
        let f = flow("  incremental: { field: updated_at }\n");
        let w = window(
            PullMode::Incremental,
            &FlowState::default(),
            &f,
            t(12),
            None,
        );
        assert_eq!(w.start, Some(t(12) - Duration::days(30)));
    }

    #[test]
    fn complete_and_backfill_runs_never_move_the_watermark() {
        let f = flow("  incremental: { field: updated_at }\n");
        let c = window(PullMode::Complete, &FlowState::default(), &f, t(12), None);
        assert_eq!(c.start, None);
        assert_eq!(next_watermark(PullMode::Complete, &c), None);
        let asked = Window {
            start: Some(t(1)),
            end: t(2),
        };
        let b = window(
            PullMode::Backfill,
            &FlowState::default(),
            &f,
            t(12),
            Some(&asked),
        );
        assert_eq!(b, asked);
        assert_eq!(next_watermark(PullMode::Backfill, &b), None);
    }

    #[test]
    fn modes_are_checked() {
        let plain = flow("");
        assert!(mode(&plain, Some(PullMode::Incremental), None)
            .unwrap_err()
            .message
            .contains("source.incremental"));
        assert_eq!(
            mode(&plain, Some(PullMode::Complete), None).unwrap(),
            PullMode::Complete
        );
        let inc = flow("  incremental: { field: updated_at }\n");
        let backwards = Window {
            start: Some(t(3)),
            end: t(2),
        };
        assert!(mode(&inc, None, Some(&backwards))
            .unwrap_err()
            .message
            .contains("window.start"));
        assert!(mode(&inc, Some(PullMode::Backfill), None).is_err());
        assert_eq!(
            mode(
                &inc,
                None,
                Some(&Window {
                    start: None,
                    end: t(2)
                })
            )
            .unwrap(),
            PullMode::Backfill
        );
    }
}
