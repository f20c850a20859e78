//! Records as fetch-page reads them, page by page, for a live display (`ferry run`'s progress
//! line). The embedded engine runs the steps in the CLI's process, so the CLI listens here; on
//! AWS nothing listens and reporting is a no-op. A retried chunk's pages count again: this is
//! a display, not the run's figures (those come from the committed chunk results).

use std::sync::{Arc, RwLock};

type Listener = Arc<dyn Fn(u64) + Send + Sync>;

static LISTENER: RwLock<Option<Listener>> = RwLock::new(None);

/// Call `f` with the number of records of every page read in this process from now on.
pub fn listen(f: impl Fn(u64) + Send + Sync + 'static) {
    *LISTENER
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(f));
}

/// Stop listening.
pub fn stop_listening() {
    *LISTENER
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
}

/// A page of `records` records was read.
pub(crate) fn page_read(records: u64) {
    let l = LISTENER
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(f) = l {
        f(records);
    }
}
