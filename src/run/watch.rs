//! What stops or shows a run from outside its own work: `Cancel` (rosterd
//! stopping), `Deadline` (that, or `[http] run_timeout_secs`), and `Shown`
//! (its progress written to its row while it fetches).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::RunError;
use crate::port::Runs;
use crate::store::Database;

/// Asks running runs to stop. A run that sees it before its transaction
/// applies nothing and is recorded `failed` with the reason `cancelled`.
#[derive(Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl Cancel {
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Completes once `cancel` has been called.
    pub async fn cancelled(&self) {
        loop {
            // Created before the check, so a cancel between the two is not missed.
            let notified = self.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// A running run's progress, written to its `runs` row every second while
/// it fetches (when it moved), so `history`, the API and the status page show
/// pages and records fetched so far. Stops when dropped.
pub(super) struct Shown {
    progress: Arc<(AtomicU64, AtomicU64)>,
    task: tokio::task::JoinHandle<()>,
}

impl Shown {
    pub(super) fn start(db: Database, run_id: i64) -> Shown {
        let progress: Arc<(AtomicU64, AtomicU64)> = Arc::default();
        let seen = progress.clone();
        let task = tokio::spawn(async move {
            let Ok(store) = db.connect() else { return };
            let mut written = (0, 0);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = (seen.0.load(Ordering::Relaxed), seen.1.load(Ordering::Relaxed));
                if now != written {
                    // A busy store only delays the next figure; the run goes on.
                    if store.progress(run_id, now.0 as i64, now.1 as i64).is_ok() {
                        written = now;
                    }
                }
            }
        });
        Shown { progress, task }
    }

    pub(super) fn note(&self, pages: u32, records: usize) {
        self.progress.0.store(u64::from(pages), Ordering::Relaxed);
        self.progress.1.store(records as u64, Ordering::Relaxed);
    }
}

impl Drop for Shown {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A run's own stop: set when rosterd stops (the shared `Cancel`) or when
/// `[http] run_timeout_secs` passes, whichever comes first.
pub(super) struct Deadline {
    pub(super) cancel: Cancel,
    pub(super) timed_out: Arc<AtomicBool>,
    pub(super) limit: Duration,
    /// When the run began (what its `duration_ms` counts from).
    pub(super) started: std::time::Instant,
    watch: tokio::task::JoinHandle<()>,
}

impl Deadline {
    pub(super) fn start(outer: &Cancel, limit: Duration, started: std::time::Instant) -> Deadline {
        let (cancel, timed_out) = (Cancel::default(), Arc::new(AtomicBool::new(false)));
        let (outer, inner, flag) = (outer.clone(), cancel.clone(), timed_out.clone());
        let watch = tokio::spawn(async move {
            tokio::select! {
                () = outer.cancelled() => {}
                () = tokio::time::sleep(limit) => flag.store(true, Ordering::SeqCst),
            }
            inner.cancel();
        });
        Deadline { cancel, timed_out, limit, watch, started }
    }

    /// A cancellation said as what caused it.
    pub(super) fn explain(&self, e: RunError) -> RunError {
        match e {
            RunError::Cancelled if self.timed_out.load(Ordering::SeqCst) => RunError::TimedOut(self.limit.as_secs()),
            other => other,
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.watch.abort();
    }
}
