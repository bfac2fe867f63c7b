//! A run's row and trace: what a run records about itself as it goes
//! (`Runs`' writes) and what history, the API and the status page read back,
//! with the plain types they carry.

use serde::Serialize;
use serde_json::Value;

use super::{Skip, StoreError};
use crate::outcome::{Counts, RunStatus};
use crate::user::{Fields, StoredUser};

/// The `runs` table and each run's trace (requests, skipped records, push requests).
pub trait Runs {
    /// The integration's latest run that ended `ok`.
    fn last_ok(&self, integration: &str) -> Result<Option<RunRow>, StoreError>;
    /// Marks run `run_id` as a dry run.
    fn mark_dry_run(&self, run_id: i64) -> Result<(), StoreError>;
    /// Records a run as begun (`status` queued or running) by this process and returns its id.
    fn begin_run(&self, integration: &str, action: &str, trigger: &str, status: RunStatus) -> Result<i64, StoreError>;
    /// A running run's progress so far: pages and records fetched.
    fn progress(&self, run_id: i64, pages: i64, fetched: i64) -> Result<(), StoreError>;
    /// A queued run got its slot and starts.
    fn mark_running(&self, run_id: i64) -> Result<(), StoreError>;
    /// Marks runs of `integration` left open by a process that is gone as failed
    /// (all but `current`). Call only while holding that integration's run lock.
    fn close_abandoned_runs(&self, integration: &str, current: i64) -> Result<usize, StoreError>;
    /// Writes a run's end when it applied nothing (failed, skipped, held, dry-run).
    fn finish_run(&mut self, run_id: i64, end: &RunEnd) -> Result<(), StoreError>;
    /// The latest runs, newest first.
    fn runs(&self, integration: Option<&str>, limit: u32) -> Result<Vec<RunRow>, StoreError>;
    fn run(&self, run_id: i64) -> Result<Option<RunRow>, StoreError>;
    /// One run whole: its row, requests, skipped records and push requests
    /// (what `history --run ID --json` and `GET /api/v1/runs/ID` show).
    fn run_detail(&self, run_id: i64) -> Result<Option<RunDetail>, StoreError>;
    fn run_skips(&self, run_id: i64, limit: u32) -> Result<Vec<Skip>, StoreError>;
    fn run_requests(&self, run_id: i64) -> Result<Vec<RequestRow>, StoreError>;
}

/// The users as commands print them, read in id order without holding them all.
pub trait Users {
    /// Calls `f` with every user's text fields, `created_at` and
    /// `updated_at`, in id order, from one consistent snapshot; `f` returns
    /// false to stop (what an export writes).
    fn export_each(&self, f: impl FnMut(Fields, String, String) -> bool) -> Result<(), StoreError>;
    /// Calls `f` with every user in id order, from one statement, without
    /// holding them all; `f` returns false to stop.
    fn users_each(&self, f: impl FnMut(UserRow) -> bool) -> Result<(), StoreError>;
}

/// How a run ended, for its `runs` row.
#[derive(Debug, Clone, Default)]
pub struct RunEnd {
    pub status: RunStatus,
    /// How long the run took, when it ran at all.
    pub duration_ms: Option<i64>,
    /// What an admin should know about a run that went through, one line each.
    pub warnings: Vec<String>,
    pub counts: Counts,
    pub error: Option<String>,
    /// The error in rosterd's own words only (what the public status page shows).
    pub summary: Option<String>,
    pub skips: Vec<Skip>,
    pub requests: Vec<RequestRow>,
}

/// One HTTP request of a run, URL already redacted.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRow {
    pub step: String,
    pub method: String,
    pub url: String,
    pub status: Option<u16>,
    pub bytes: Option<i64>,
    pub millis: i64,
    pub attempt: u32,
    pub error: Option<String>,
}

/// One row of `users`, as `users --format json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct UserRow {
    pub id: i64,
    #[serde(flatten)]
    pub fields: Fields,
    pub extra_fields: Value,
    pub active: i64,
    pub source: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl UserRow {
    /// `user` as `users` prints it, with where it came from and when.
    pub fn new(user: StoredUser, source: Option<String>, created_at: String, updated_at: String) -> UserRow {
        UserRow {
            id: user.id,
            fields: user.fields,
            extra_fields: Value::Object(user.extra),
            active: i64::from(user.active),
            source,
            created_at,
            updated_at,
        }
    }
}

/// One run whole, as `history --run ID --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    pub run: RunRow,
    pub requests: Vec<RequestRow>,
    pub skips: Vec<Skip>,
    /// A push's requests and their outcomes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub push: Vec<PushRow>,
}

/// One row of `runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub integration: String,
    pub action: String,
    pub trigger: String,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// How long it took; `None` for runs from before rosterd measured it, or that never ran.
    pub duration_ms: Option<i64>,
    /// A push: requests sent so far (while it runs) or in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed: Option<i64>,
    /// A dry run, whatever its status (a failed dry run is not a failed real run).
    pub dry_run: bool,
    /// The error in rosterd's own words only, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// One push request as recorded: what it did to which user, and how it ended.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PushRow {
    /// `create`, `update`, `remove` or `bulk`.
    pub kind: String,
    pub external_id: Option<String>,
    pub target_id: Option<String>,
    /// The target's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why it failed, redacted; `None`: it succeeded.
    pub error: Option<String>,
}
