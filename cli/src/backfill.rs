//! `ferry run FLOW --from T1 [--to T2]`: a backfill window, checked before anything starts.
//!
//! `--from` alone reads up to now; `--to` needs `--from` (a `--to` alone would otherwise be an
//! incremental run that moves the watermark). Times are RFC 3339, a date (`2026-11-01`,
//! midnight) or `2026-11-01T10:00`; without an offset they are in the flow's time zone (its
//! schedule's `timezone`, else UTC). The window must be in the past and not empty, and the flow
//! must have `source.incremental` (the field the window applies to). A backfill never moves the
//! watermark (start-run marks it `backfill`; finalize leaves the watermark alone).

use crate::out::invalid_argument;
use chrono::{DateTime, Utc};
use ferry::flow::Flow;
use ferry::model::Window;

/// The window of `--from`/`--to`, or `None` without them.
pub fn window(
    from: Option<&str>,
    to: Option<&str>,
    flow: &Flow,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<Window>> {
    let (from, to) = match (from, to) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(invalid_argument(
                "--to needs --from: a backfill reads (--from, --to]; give both, or --from alone to read up to now",
            ))
        }
        (Some(f), t) => (f, t),
    };
    if flow.source.incremental.is_none() {
        return Err(invalid_argument(format!(
            "--from/--to backfill a window of the incremental field, but flow '{}' has no `source.incremental`; add one, or run it without --from/--to",
            flow.name
        )));
    }
    let tz = flow.time_zone();
    let parse = |s: &str, flag: &str| {
        ferry::flow::time::parse_in(s, tz).map_err(|e| {
            invalid_argument(format!("{flag}: {e} (times without an offset are in {tz})"))
        })
    };
    let start = parse(from, "--from")?;
    let end = match to {
        Some(t) => parse(t, "--to")?,
        None => now,
    };
    if start > now {
        return Err(invalid_argument(format!(
            "--from {} is in the future (now is {}); a backfill reads records that already exist",
            start.to_rfc3339(),
            now.to_rfc3339()
        )));
    }
    if end > now {
        return Err(invalid_argument(format!(
            "--to {} is in the future (now is {}); leave --to out to read up to now",
            end.to_rfc3339(),
            now.to_rfc3339()
        )));
    }
    if start >= end {
        return Err(invalid_argument(format!(
            "--from {} is not before --to {}; the window (--from, --to] would be empty",
            start.to_rfc3339(),
            end.to_rfc3339()
        )));
    }
    Ok(Some(Window {
        start: Some(start),
        end,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(tz: Option<&str>, incremental: bool) -> Flow {
        let trigger = match tz {
            Some(tz) => format!(
                "trigger:\n  scheduled: {{ expression: \"rate(1 hour)\", timezone: {tz} }}\n"
            ),
            None => String::new(),
        };
        let inc = if incremental {
            "  incremental: { field: updated_at }\n"
        } else {
            ""
        };
        let mode = if incremental || tz.is_none() {
            trigger
        } else {
            trigger.replace("timezone", "mode: complete, timezone")
        };
        Flow::parse(
            &format!("name: ff\nsource:\n  connector: sample\n  entity: accounts\n{inc}destination:\n  local: out\n{mode}"),
            "f.yaml",
        )
        .unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn forms_zones_and_refusals() {
        let now = t("2026-12-01T00:00:00Z");
        let f = flow(None, true);
        let w = window(Some("2026-11-01"), Some("2026-11-02T10:00"), &f, now)
            .unwrap()
            .unwrap();
        assert_eq!(w.start, Some(t("2026-11-01T00:00:00Z")));
        assert_eq!(w.end, t("2026-11-02T10:00:00Z"));
        // --from alone: up to now.
        let w = window(Some("2026-11-01"), None, &f, now).unwrap().unwrap();
        assert_eq!(w.end, now);
        // In the flow's time zone.
        let w = window(
            Some("2026-11-01T10:00"),
            None,
            &flow(Some("Europe/Paris"), true),
            now,
        )
        .unwrap()
        .unwrap();
        assert_eq!(w.start, Some(t("2026-11-01T09:00:00Z")));
        assert_eq!(window(None, None, &f, now).unwrap(), None);

        let err = |from, to| window(from, to, &f, now).unwrap_err().to_string();
        assert!(err(None, Some("2026-11-01")).contains("--to needs --from"));
        assert!(err(Some("2026-11-02"), Some("2026-11-01"))
            .contains("--from 2026-11-02T00:00:00+00:00 is not before --to"));
        assert!(err(Some("2026-11-01"), Some("2027-01-01"))
            .contains("--to 2027-01-01T00:00:00+00:00 is in the future"));
        assert!(err(Some("2027-01-01"), None)
            .contains("--from 2027-01-01T00:00:00+00:00 is in the future"));
        assert!(err(Some("last week"), None).contains("--from: 'last week' is not a time"));
        let e = window(Some("2026-11-01"), None, &flow(Some("UTC"), false), now).unwrap_err();
        assert!(e.to_string().contains("no `source.incremental`"), "{e}");
    }
}
