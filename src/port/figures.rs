//! The figures `/metrics` reports, read from the store in one go (the API formats them).

use super::StoreError;
use crate::outcome::RunStatus;

/// Where `/metrics` reads its figures.
pub trait Figures {
    /// What `/metrics` reports, read from the store.
    fn metrics(&self) -> Result<Metrics, StoreError>;
}

/// The figures behind `/metrics`, by integration name.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Finished runs: (integration, status, dry run, how many).
    pub runs: Vec<(String, RunStatus, bool, i64)>,
    /// (integration, Unix time of its last `ok` run).
    pub last_success: Vec<(String, i64)>,
    /// Seconds each finished run took.
    pub durations: std::collections::BTreeMap<String, Vec<f64>>,
    pub users_active: i64,
    pub users_inactive: i64,
    /// (integration, [records fetched, users created, updated, deactivated]).
    pub totals: Vec<(String, [i64; 4])>,
    /// (integration, status class `2xx`… or `error`, responses): what sources answered.
    pub responses: Vec<(String, String, i64)>,
    /// (integration, kind, `ok` or `failed`, requests): what pushes sent.
    pub push: Vec<(String, String, String, i64)>,
}
