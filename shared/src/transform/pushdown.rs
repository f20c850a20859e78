//! Filter pushdown: a connector says which filter operators its API can apply
//! ([`crate::connector::Source::pushdown`]); the plan hands it the filters it may run, and the
//! rest stay in transform-batch.
//!
//! A filter task is pushable when it tests fields as the source sends them (no task above it
//! changed them) and no `validate` task comes before it (a pushed filter must not hide a record
//! that would have been rejected or stopped the run). Transform-batch may still re-apply pushed
//! filters: they are idempotent on the records the source returns, so the output is identical
//! either way. With pushdown, records the source filtered never arrive, so they are not counted
//! in `records_processed` or `records_filtered`.

use super::Plan;
use crate::flow::tasks::{FilterOp, FilterSpec};
use serde::{Deserialize, Serialize};

/// What a connector can filter at the source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterPushdown {
    /// Operators the source applies itself (empty: no pushdown).
    pub ops: Vec<FilterOp>,
    /// Whether `any`/`all` combinations can be pushed (when every leaf can).
    pub combinations: bool,
}

impl FilterPushdown {
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether the source can apply this whole condition.
    pub fn accepts(&self, f: &FilterSpec) -> bool {
        match (&f.any, &f.all) {
            (Some(l), _) | (_, Some(l)) => self.combinations && l.iter().all(|c| self.accepts(c)),
            _ => f.op.is_some_and(|op| self.ops.contains(&op)),
        }
    }
}

impl Plan {
    /// Split the plan's filters for a source: the filters to send with the read request, and a
    /// plan that runs only the others. Both plans produce the same output on what the source
    /// returns; transform-batch may use either.
    pub fn split_pushdown(&self, caps: &FilterPushdown) -> (Vec<FilterSpec>, Plan) {
        let mut pushed = vec![];
        let mut skip = vec![];
        for (pos, f) in &self.pushable {
            if caps.accepts(f) {
                pushed.push(f.clone());
                skip.push(*pos);
            }
        }
        let mut local = self.clone();
        local.steps = self
            .steps
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip.contains(i))
            .map(|(_, s)| s.clone())
            .collect();
        local.pushable.clear();
        (pushed, local)
    }
}
