//! How a run ends, as the store records it in its `runs` row: the plain
//! types a run hands the store.

use serde::Serialize;

use super::Skip;
use crate::outcome::{Counts, RunStatus};

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
