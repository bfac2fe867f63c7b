//! What a run comes to, in words every layer shares: its `RunStatus` and its
//! `Counts`. `run` decides the status, `store` writes it, `daemon`, `api` and
//! `cli` read it back; none of them spells a status as a string.

use std::fmt;

use serde::{Serialize, Serializer};

/// How a run stands or ended, as the `runs` table and every output name it.
/// The default is `Failed`: a run that never said how it ended did not succeed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Waiting for a run slot (`max_concurrent_runs`); slots go in the order asked.
    Queued,
    /// Started and not finished.
    Running,
    /// Applied (or nothing to apply).
    Ok,
    /// Nothing applied: the fetch, the apply or the store failed, or it was cancelled.
    #[default]
    Failed,
    /// Planned and rolled back on purpose (`--dry-run`).
    DryRun,
    /// Not started: another run of the same integration was going.
    Skipped,
    /// Planned and rolled back: it would deactivate more than `max_deactivate` allows.
    Held,
}

impl RunStatus {
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Ok,
        RunStatus::Failed,
        RunStatus::DryRun,
        RunStatus::Skipped,
        RunStatus::Held,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::DryRun => "dry-run",
            RunStatus::Skipped => "skipped",
            RunStatus::Held => "held",
        }
    }

    pub fn parse(text: &str) -> Option<RunStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether a command that ran it succeeded (exit 0).
    pub fn succeeded(self) -> bool {
        matches!(self, RunStatus::Ok | RunStatus::DryRun)
    }

    /// Whether the run has not ended (queued or running).
    pub fn is_open(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
    }

    /// Whether the run's user changes are kept.
    pub fn commits(self) -> bool {
        self == RunStatus::Ok
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RunStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What a run fetched and did to users, as its `runs` row counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Records fetched (so far, for a run that failed while fetching).
    pub fetched: i64,
    pub pages: i64,
    pub created: i64,
    pub updated: i64,
    pub deactivated: i64,
    pub skipped: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_back_as_written() {
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(RunStatus::parse("done"), None);
        // Every status a row can hold reads back (a queued run was once unreadable).
        for text in ["queued", "running", "ok", "failed", "dry-run", "skipped", "held"] {
            assert_eq!(RunStatus::parse(text).map(RunStatus::as_str), Some(text));
        }
    }
}
