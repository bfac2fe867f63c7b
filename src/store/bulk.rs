//! Bulk import and export against the store: an import is planned by
//! `bulk::plan_import`, which asks `SqlLookup` about each record's users by
//! index inside the import's transaction, and written in that transaction;
//! export reads users in id order from one statement, so a large directory
//! streams either way.

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior};
use serde_json::Value;

use super::{Store, StoreError, now};
use crate::bulk::{self, Existing, ImportLookup, ImportRecord, ImportReply};
use crate::export::ExportRow;
use crate::outcome::RunStatus;

/// Import's questions, answered by the unique indexes (and the username
/// index) inside its transaction; the statements are prepared once per import.
struct SqlLookup<'a> {
    by_external_id: rusqlite::Statement<'a>,
    email_holder: rusqlite::Statement<'a>,
    username_taken: rusqlite::Statement<'a>,
}

impl<'a> SqlLookup<'a> {
    fn new(tx: &'a Transaction<'a>) -> rusqlite::Result<Self> {
        Ok(SqlLookup {
            by_external_id: tx.prepare(
                "SELECT id, external_id, email, first_name, last_name, username, phone, job, extra_fields
                 FROM users WHERE external_id = ?1",
            )?,
            // `email` is COLLATE NOCASE: its unique index answers case-insensitively.
            email_holder: tx.prepare("SELECT id FROM users WHERE email = ?1")?,
            username_taken: tx
                .prepare("SELECT 1 FROM users WHERE username = ?1 COLLATE NOCASE AND id IS NOT ?2 LIMIT 1")?,
        })
    }
}

impl ImportLookup for SqlLookup<'_> {
    type Error = rusqlite::Error;

    fn by_external_id(&mut self, ext: &str) -> rusqlite::Result<Option<Existing>> {
        self.by_external_id
            .query_row([ext], |r| {
                let extra: String = r.get(8)?;
                Ok(Existing {
                    id: r.get(0)?,
                    external_id: r.get(1)?,
                    email: r.get(2)?,
                    first_name: r.get(3)?,
                    last_name: r.get(4)?,
                    username: r.get(5)?,
                    phone: r.get(6)?,
                    job: r.get(7)?,
                    extra: super::extra_map(&extra),
                })
            })
            .optional()
    }

    fn email_holder(&mut self, email: &str) -> rusqlite::Result<Option<i64>> {
        self.email_holder.query_row([email], |r| r.get(0)).optional()
    }

    fn username_taken(&mut self, username: &str, except: Option<i64>) -> rusqlite::Result<bool> {
        self.username_taken
            .query_row(rusqlite::params![username, except], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
    }
}

impl Store {
    /// Applies the valid records of one import in one transaction. Planning
    /// asks the store about each record's users by index, so the cost follows
    /// the request's size, not the directory's.
    pub fn import(&mut self, records: &[ImportRecord]) -> Result<ImportReply, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (writes, reply) = bulk::plan_import(records, &mut SqlLookup::new(&tx)?)?;
        let at = now();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO users (external_id, email, first_name, last_name, username, phone, job, extra_fields,
                                    active, source, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, 'import', ?9, ?9)",
            )?;
            // The same values in the same order as the INSERT, then the id.
            let mut update = tx.prepare_cached(
                "UPDATE users SET external_id = ?1, email = ?2, first_name = ?3, last_name = ?4, username = ?5,
                     phone = ?6, job = ?7, extra_fields = ?8, updated_at = ?9 WHERE id = ?10",
            )?;
            for w in &writes {
                let extra = Value::Object(w.extra.clone()).to_string();
                let values: [&dyn rusqlite::ToSql; 10] = [
                    &w.external_id,
                    &w.email,
                    &w.first_name,
                    &w.last_name,
                    &w.username,
                    &w.phone,
                    &w.job,
                    &extra,
                    &at,
                    &w.id,
                ];
                match w.id {
                    None => insert.execute(&values[..9])?,
                    Some(_) => update.execute(&values[..])?,
                };
            }
        }
        tx.commit()?;
        Ok(reply)
    }

    /// Calls `f` with every user in id order, from one statement (one
    /// consistent snapshot), without holding them all; `f` returns false to stop.
    pub fn export_each(&self, mut f: impl FnMut(ExportRow) -> bool) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT first_name, last_name, external_id, username, email, phone, job, created_at, updated_at
             FROM users ORDER BY id",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let first: Option<String> = r.get(0)?;
            let last: Option<String> = r.get(1)?;
            let row = ExportRow {
                name: bulk::full_name(first.as_deref(), last.as_deref()),
                employee_id: r.get(2)?,
                username: r.get(3)?,
                email: r.get(4)?,
                phone: r.get(5)?,
                job: r.get(6)?,
                created_at: r.get(7)?,
                updated_at: r.get(8)?,
            };
            if !f(row) {
                break;
            }
        }
        Ok(())
    }

    /// What `/metrics` reports, read from the store (the API formats it).
    pub fn metrics(&self) -> Result<Metrics, StoreError> {
        let mut m = Metrics::default();
        let mut stmt = self
            .conn
            .prepare("SELECT integration, status, COUNT(*) FROM runs WHERE status != ?1 GROUP BY 1, 2 ORDER BY 1, 2")?;
        let rows = stmt.query_map([RunStatus::Running.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
        })?;
        for row in rows {
            let (i, s, n) = row?;
            if let Some(s) = RunStatus::parse(&s) {
                m.runs.push((i, s, n));
            }
        }
        let mut stmt = self.conn.prepare(
            "SELECT integration, CAST(strftime('%s', MAX(finished_at)) AS INTEGER) FROM runs
             WHERE status = ?1 GROUP BY 1 ORDER BY 1",
        )?;
        let rows =
            stmt.query_map([RunStatus::Ok.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?)))?;
        for row in rows {
            if let (i, Some(t)) = row? {
                m.last_success.push((i, t));
            }
        }
        // Milliseconds where the run recorded them; older rows have whole seconds only.
        let mut stmt = self.conn.prepare(
            "SELECT integration, COALESCE(duration_ms / 1000.0, (julianday(finished_at) - julianday(started_at)) * 86400.0)
             FROM runs WHERE finished_at IS NOT NULL AND status IN ('ok', 'failed', 'held', 'dry-run') ORDER BY 1",
        )?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))? {
            let (i, d) = row?;
            m.durations.entry(i).or_default().push(d.max(0.0));
        }
        // Counters: records every finished run fetched; users changed by runs that applied.
        let mut stmt = self.conn.prepare(
            "SELECT integration, SUM(fetched), SUM(CASE WHEN status = 'ok' THEN created ELSE 0 END),
                    SUM(CASE WHEN status = 'ok' THEN updated ELSE 0 END),
                    SUM(CASE WHEN status = 'ok' THEN deactivated ELSE 0 END)
             FROM runs WHERE finished_at IS NOT NULL GROUP BY 1 ORDER BY 1",
        )?;
        for row in stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, [r.get::<_, i64>(1)?, r.get(2)?, r.get(3)?, r.get(4)?])))?
        {
            m.totals.push(row?);
        }
        let mut stmt = self.conn.prepare(
            "SELECT r.integration, CASE WHEN q.status IS NULL THEN 'error' ELSE (q.status / 100) || 'xx' END, COUNT(*)
             FROM run_requests q JOIN runs r ON r.id = q.run_id GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))? {
            m.responses.push(row?);
        }
        let mut stmt = self.conn.prepare(
            "SELECT r.integration, p.kind, CASE WHEN p.error IS NULL THEN 'ok' ELSE 'failed' END, COUNT(*)
             FROM push_requests p JOIN runs r ON r.id = p.run_id GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )?;
        for row in stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))? {
            m.push.push(row?);
        }
        (m.users_active, m.users_inactive) = self.conn.query_row(
            "SELECT COALESCE(SUM(active = 1), 0), COALESCE(SUM(active = 0), 0) FROM users",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(m)
    }
}

/// The figures behind `/metrics`, by integration name.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Finished runs: (integration, status, how many).
    pub runs: Vec<(String, RunStatus, i64)>,
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
