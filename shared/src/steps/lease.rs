//! How long a run's lease lasts, derived from the state machine it runs on.
//!
//! Every step renews the lease when it starts, so between two renewals there is at most one
//! Task attempt (bounded by the state's `TimeoutSeconds`) and one retry wait (bounded by the
//! retrier's `MaxDelaySeconds`, or `IntervalSeconds × BackoffRate^(MaxAttempts-1)`). The lease
//! lasts longer than the longest such gap in `flow-run.asl.json`, so a run that is only slow or
//! throttled never loses it, while a crashed run's lease still expires (the reapers end such
//! runs sooner: docs/architecture.md).

use serde_json::Value;
use std::sync::OnceLock;
use std::time::Duration;

/// The production state machine (`statemachines/flow-run.asl.json`), compiled in.
pub const FLOW_RUN_ASL: &str = include_str!("../../../statemachines/flow-run.asl.json");

/// Added to the longest gap between two renewals.
pub const MARGIN: Duration = Duration::from_secs(60);

/// The longest wait one retrier of a state can make before an attempt.
fn longest_wait(retrier: &Value) -> f64 {
    let interval = retrier["IntervalSeconds"].as_f64().unwrap_or(1.0);
    let attempts = retrier["MaxAttempts"].as_f64().unwrap_or(3.0);
    let backoff = retrier["BackoffRate"].as_f64().unwrap_or(2.0);
    if attempts < 1.0 {
        return 0.0;
    }
    let wait = interval * backoff.powf(attempts - 1.0);
    match retrier["MaxDelaySeconds"].as_f64() {
        Some(max) => wait.min(max),
        None => wait,
    }
}

/// For each Task state, those of Map processors included: (name, TimeoutSeconds, longest
/// retry wait) — the gap a lease must span.
pub fn gaps(asl: &str) -> Result<Vec<(String, f64, f64)>, String> {
    let def: Value = serde_json::from_str(asl).map_err(|e| format!("state machine JSON: {e}"))?;
    let mut out = vec![];
    task_gaps(&def, &mut out)?;
    Ok(out)
}

fn task_gaps(machine: &Value, out: &mut Vec<(String, f64, f64)>) -> Result<(), String> {
    let states = machine["States"]
        .as_object()
        .ok_or("state machine has no States")?;
    for (name, st) in states {
        if st["Type"] == "Map" {
            task_gaps(&st["ItemProcessor"], out)?;
            continue;
        }
        if st["Type"] != "Task" {
            continue;
        }
        let timeout = st["TimeoutSeconds"].as_f64().ok_or_else(|| {
            format!("Task state {name:?} has no TimeoutSeconds: its lease could not be bounded")
        })?;
        let wait = st["Retry"]
            .as_array()
            .map(|rs| rs.iter().map(longest_wait).fold(0.0, f64::max))
            .unwrap_or(0.0);
        out.push((name.clone(), timeout, wait));
    }
    Ok(())
}

/// The lease a run on `asl` needs: the longest renewal gap plus [`MARGIN`].
pub fn ttl_for(asl: &str) -> Result<Duration, String> {
    let longest = gaps(asl)?
        .into_iter()
        .map(|(_, t, w)| t + w)
        .fold(0.0, f64::max);
    Ok(Duration::from_secs_f64(longest) + MARGIN)
}

/// The lease of a run on the production state machine.
pub fn default_ttl() -> Duration {
    static TTL: OnceLock<Duration> = OnceLock::new();
    // The definition is compiled in and checked by the tests below; 31 minutes if it ever
    // could not be read.
    *TTL.get_or_init(|| ttl_for(FLOW_RUN_ASL).unwrap_or(Duration::from_secs(31 * 60)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_outlives_every_gap_between_renewals() {
        let ttl = ttl_for(FLOW_RUN_ASL).unwrap();
        let gaps = gaps(FLOW_RUN_ASL).unwrap();
        assert_eq!(gaps.len(), 10, "every Task state: {gaps:?}");
        for (name, timeout, wait) in &gaps {
            assert!(
                ttl.as_secs_f64() >= timeout + wait + MARGIN.as_secs_f64(),
                "{name}: an attempt of {timeout}s after a wait of {wait}s outlives a {ttl:?} lease"
            );
        }
        // Fetch Chunk: 900 s attempts, Throttled waits capped at 900 s.
        assert_eq!(ttl, Duration::from_secs(900 + 900 + 60));
        assert_eq!(default_ttl(), ttl);
    }

    #[test]
    fn a_longer_retry_wait_lengthens_the_lease() {
        let asl = FLOW_RUN_ASL.replace("\"MaxDelaySeconds\": 900", "\"MaxDelaySeconds\": 1800");
        assert_ne!(asl, FLOW_RUN_ASL);
        assert_eq!(ttl_for(&asl).unwrap(), Duration::from_secs(900 + 1800 + 60));
        let untimed = FLOW_RUN_ASL.replacen("\"TimeoutSeconds\": 900,", "", 1);
        assert!(ttl_for(&untimed).unwrap_err().contains("TimeoutSeconds"));
    }
}
