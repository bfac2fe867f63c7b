//! The SQLite store, implementing the ports (`crate::port`): opening (WAL,
//! busy timeout, migrations) and one process's handle on it (`database`),
//! the `runs` bookkeeping and the users (`Runs`, `Users`, here), a run's
//! transaction (`apply`: `Apply`), an import's (`import`: `Import`), OAuth
//! tokens and states (`oauth`: `Tokens`), what a push reads and records
//! (`push`: `Outbound`), the `/metrics` figures (`metrics`: `Figures`), and
//! the one decoder of user rows (`row`). Only this module speaks SQL; it
//! never imports the rules; users change only in a run's transaction or an
//! import's.

mod apply;
mod database;
mod import;
mod metrics;
mod migrate;
mod oauth;
mod prefetch;
mod push;
mod row;

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::{Map, Value};

pub use crate::port::Metrics;
#[cfg(test)]
pub(crate) use apply::NEW_ROWS;
pub use apply::RunTx;
pub use database::{Conn, Database};
pub use import::ImportTx;

use crate::outcome::{Counts, RunStatus};
use crate::port::Skip;
use crate::port::{Outbound, Runs, Users};
pub use crate::port::{PushRow, RequestRow, RunDetail, RunEnd, RunRow, StoreError, StoredToken, UserRow};
use crate::user::Fields;

/// Why a run whose process is gone did not finish.
const INTERRUPTED: &str = "interrupted: the process running it stopped before it finished; nothing was applied";

/// How long a statement waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Engine(explain(&e))
    }
}

pub struct Store {
    conn: Connection,
    /// Whether a run scans for its users up front (see `prefetch`); tests force each way.
    pub(crate) prefetch: Prefetch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefetch {
    /// When the run is large (by records, and against the number of users).
    Auto,
    #[cfg_attr(not(test), allow(dead_code))]
    Always,
    #[cfg_attr(not(test), allow(dead_code))]
    Never,
}

/// UTC now as the store writes it: `YYYY-MM-DD HH:MM:SS`.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut store = Self::connect(path)?;
        migrate::run(&mut store.conn, path)?;
        Ok(store)
    }

    /// A connection to a database whose schema `open` brought up to date already.
    fn connect(path: &Path) -> Result<Self, StoreError> {
        let fail = |reason: String| StoreError::Open { path: path.to_path_buf(), reason };
        if path.is_dir() {
            return Err(fail("it is a directory; set `database` to a file path".into()));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(format!("cannot create its folder: {}", crate::describe_io(&e))))?;
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| fail(e.to_string()))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| fail(e.to_string()))?;
        let setup = || -> rusqlite::Result<()> {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            conn.pragma_update(None, "cache_size", -49152)?;
            Ok(())
        };
        // Switching a new file to WAL takes an exclusive lock and, when another
        // process is opening it too, can answer "locked" without waiting: retry.
        let started = std::time::Instant::now();
        loop {
            match setup() {
                Ok(()) => break,
                Err(e) if is_busy(&e) && started.elapsed() < BUSY_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(fail(explain(&e))),
            }
        }
        // A run uses a few dozen distinct statements (updates name only the columns they change).
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Self { conn, prefetch: Prefetch::Auto })
    }

    /// Whether no transaction is open on this connection.
    fn is_idle(&self) -> bool {
        self.conn.is_autocommit()
    }

    /// Frees what this connection's page cache holds (`PRAGMA shrink_memory`);
    /// false when SQLite refused, and the connection is better closed.
    fn release_memory(&self) -> bool {
        self.conn.execute_batch("PRAGMA shrink_memory").is_ok()
    }

    /// Opens a database that must exist already: what commands that only
    /// read use, so a typo in the path never leaves an empty database behind.
    pub fn open_existing(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing { path: path.to_path_buf() });
        }
        Self::open(path)
    }

    #[cfg(test)]
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// The columns `RunRow::from_row` reads, in its order.
macro_rules! run_columns {
    () => {
        "id, integration, action, trigger, status, started_at, finished_at, fetched, created, updated, deactivated,
         skipped, error, pages, pid, warnings, duration_ms, pushed, dry_run, summary"
    };
}

impl Runs for Store {
    fn mark_dry_run(&self, run_id: i64) -> Result<(), StoreError> {
        self.conn.execute("UPDATE runs SET dry_run = 1 WHERE id = ?1", [run_id])?;
        Ok(())
    }

    /// Records a run as begun (`status` queued or running) by this process and returns its id.
    fn begin_run(&self, integration: &str, action: &str, trigger: &str, status: RunStatus) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO runs (integration, action, trigger, status, started_at, pid) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![integration, action, trigger, status.as_str(), now(), std::process::id()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// A running run's progress so far: pages and records fetched.
    fn progress(&self, run_id: i64, pages: i64, fetched: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE runs SET pages = ?2, fetched = ?3 WHERE id = ?1 AND status = ?4",
            params![run_id, pages, fetched, RunStatus::Running.as_str()],
        )?;
        Ok(())
    }

    /// A queued run got its slot and starts.
    fn mark_running(&self, run_id: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE runs SET status = ?2, pid = ?3 WHERE id = ?1 AND status = ?4",
            params![run_id, RunStatus::Running.as_str(), std::process::id(), RunStatus::Queued.as_str()],
        )?;
        Ok(())
    }

    /// Marks runs of `integration` left open by a process that is gone as failed
    /// (all but `current`). Call only while holding that integration's run lock.
    fn close_abandoned_runs(&self, integration: &str, current: i64) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "UPDATE runs SET status = 'failed', finished_at = ?2, error = ?4
             WHERE integration = ?1 AND status IN ('running', 'queued') AND id != ?3",
            params![integration, now(), current, INTERRUPTED],
        )?)
    }

    /// Writes a run's end when it applied nothing (failed, skipped, held, dry-run).
    fn finish_run(&mut self, run_id: i64, end: &RunEnd) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        apply::write_run_end(&tx, run_id, end)?;
        tx.commit()?;
        Ok(())
    }

    /// The latest runs, newest first.
    fn runs(&self, integration: Option<&str>, limit: u32) -> Result<Vec<RunRow>, StoreError> {
        let mut stmt = self.conn.prepare(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE ?1 IS NULL OR integration = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![integration, limit], RunRow::from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn last_ok(&self, integration: &str) -> Result<Option<RunRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                concat!(
                    "SELECT ",
                    run_columns!(),
                    " FROM runs WHERE integration = ?1 AND status = 'ok' ORDER BY id DESC LIMIT 1"
                ),
                [integration],
                RunRow::from_row,
            )
            .optional()?)
    }

    fn run(&self, run_id: i64) -> Result<Option<RunRow>, StoreError> {
        Ok(self
            .conn
            .query_row(concat!("SELECT ", run_columns!(), " FROM runs WHERE id = ?1"), [run_id], RunRow::from_row)
            .optional()?)
    }

    /// One run whole: its row, requests, skipped records and push requests
    /// (what `history --run ID --json` and `GET /api/v1/runs/ID` show).
    fn run_detail(&self, run_id: i64) -> Result<Option<RunDetail>, StoreError> {
        let Some(run) = self.run(run_id)? else { return Ok(None) };
        Ok(Some(RunDetail {
            run,
            requests: self.run_requests(run_id)?,
            skips: self.run_skips(run_id, u32::MAX)?,
            push: self.push_rows(run_id)?,
        }))
    }

    fn run_skips(&self, run_id: i64, limit: u32) -> Result<Vec<Skip>, StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT record, key, reason FROM run_skips WHERE run_id = ?1 ORDER BY rowid LIMIT ?2")?;
        let rows = stmt.query_map(params![run_id, limit], |r| {
            Ok(Skip { record: r.get::<_, i64>(0)? as usize, key: r.get(1)?, reason: r.get(2)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn run_requests(&self, run_id: i64) -> Result<Vec<RequestRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT step, method, url, status, bytes, millis, attempt, error FROM run_requests
             WHERE run_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([run_id], |r| {
            Ok(RequestRow {
                step: r.get(0)?,
                method: r.get(1)?,
                url: r.get(2)?,
                status: r.get(3)?,
                bytes: r.get(4)?,
                millis: r.get(5)?,
                attempt: r.get(6)?,
                error: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Users for Store {
    /// Calls `f` with every user in id order, from one statement, without
    /// holding them all; `f` returns false to stop.
    fn users_each(&self, mut f: impl FnMut(UserRow) -> bool) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare(concat!(
            "SELECT ",
            row::user_columns!(),
            ", NULL, u.source, u.created_at, u.updated_at FROM users u ORDER BY u.id"
        ))?;
        let mut rows = stmt.query([])?;
        let at = row::USER_COLUMNS + 1;
        while let Some(r) = rows.next()? {
            let user = UserRow::new(row::stored_user(r)?, r.get(at)?, r.get(at + 1)?, r.get(at + 2)?);
            if !f(user) {
                break;
            }
        }
        Ok(())
    }

    /// Calls `f` with every user in id order, from one statement (one
    /// consistent snapshot), without holding them all; `f` returns false to stop.
    fn export_each(&self, mut f: impl FnMut(Fields, String, String) -> bool) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare(concat!(
            "SELECT ",
            row::text_columns!(),
            ", u.created_at, u.updated_at FROM users u ORDER BY u.id"
        ))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            if !f(row::fields_at(r, 0)?, r.get(8)?, r.get(9)?) {
                break;
            }
        }
        Ok(())
    }
}

/// The `extra_fields` column as a map (`{}` when it is not a JSON object).
pub(crate) fn extra_map(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// Turns SQLite's terse errors into a cause an admin can act on.
fn explain(e: &rusqlite::Error) -> String {
    let text = e.to_string();
    if text.contains("readonly") || text.contains("read-only") {
        format!("{text}: the file or its folder is read-only; give rosterd write access")
    } else if text.contains("locked") || text.contains("busy") {
        format!("{text}: another process holds the database; wait for it or stop it")
    } else if text.contains("not a database") {
        format!("{text}: the file is not a SQLite database; point `database` at another path")
    } else {
        text
    }
}

impl RunRow {
    /// A row of `runs`; one left queued or running by a process that is gone
    /// reads as failed (interrupted) at once.
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let text: String = r.get(4)?;
        let mut status = RunStatus::parse(&text)
            .ok_or_else(|| rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, text.into()))?;
        let mut error: Option<String> = r.get(12)?;
        let pid: Option<u32> = r.get(14)?;
        if status.is_open() && pid.is_some_and(|pid| !process_alive(pid)) {
            status = RunStatus::Failed;
            error = Some(INTERRUPTED.to_string());
        }
        Ok(Self {
            id: r.get(0)?,
            integration: r.get(1)?,
            action: r.get(2)?,
            trigger: r.get(3)?,
            status,
            started_at: r.get(5)?,
            finished_at: r.get(6)?,
            counts: Counts {
                fetched: r.get(7)?,
                pages: r.get(13)?,
                created: r.get(8)?,
                updated: r.get(9)?,
                deactivated: r.get(10)?,
                skipped: r.get(11)?,
            },
            error,
            warnings: r
                .get::<_, Option<String>>(15)?
                .map(|w| w.lines().map(str::to_string).collect())
                .unwrap_or_default(),
            duration_ms: r.get(16)?,
            pushed: r.get(17)?,
            dry_run: r.get(18)?,
            summary: r.get(19)?,
        })
    }
}

/// Whether process `pid` still exists (Linux: `/proc/<pid>`; elsewhere assumed alive).
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || pid == std::process::id() || proc.join(pid.to_string()).exists()
}
