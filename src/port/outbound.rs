//! What an outbound run (a push; provisioning next) reads and records: the
//! local users it selects, streamed, users by id for the requests it sends,
//! and each request's outcome per run (`PushRow`, defined with the runs).

use super::{PushRow, StoreError};
use crate::manifest::PushSelect;
use crate::user::StoredUser;

/// The store as an outbound run sees it.
pub trait Outbound {
    /// Calls `f` with every local user `select` picks that has an external id,
    /// in id order, from one statement; `f` returns false to stop. A user
    /// matches `select.source` by its owner or by the integration (or
    /// `import`) that made it.
    fn push_users_each(&self, select: &PushSelect, f: impl FnMut(StoredUser) -> bool) -> Result<(), StoreError>;
    /// The users with these ids (those that still exist), in the order asked.
    fn users_by_ids(&self, ids: &[i64]) -> Result<Vec<StoredUser>, StoreError>;
    /// A running push's progress: requests sent so far.
    fn push_progress(&self, run_id: i64, sent: i64) -> Result<(), StoreError>;
    /// Appends push request outcomes to a run, after those recorded already.
    fn record_push(&mut self, run_id: i64, rows: &[PushRow]) -> Result<(), StoreError>;
    /// A run's push requests by kind: (kind, sent, failed).
    fn push_counts(&self, run_id: i64) -> Result<Vec<(String, u64, u64)>, StoreError>;
    /// A run's push requests, in the order they ended.
    fn push_rows(&self, run_id: i64) -> Result<Vec<PushRow>, StoreError>;
}
