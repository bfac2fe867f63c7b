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

    /// The Prometheus text for `/metrics`, computed from the store.
    pub fn metrics(&self) -> Result<String, StoreError> {
        use std::fmt::Write as _;
        let mut out = String::new();
        let mut w = |s: String| out.push_str(&s);
        w("# HELP rosterd_runs_total Runs by integration and status.\n# TYPE rosterd_runs_total counter\n".into());
        let mut stmt = self.conn.prepare(
            "SELECT integration, status, COUNT(*) FROM runs WHERE status != 'running' GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
        for row in rows {
            let (i, s, n) = row?;
            w(format!("rosterd_runs_total{{integration=\"{}\",status=\"{s}\"}} {n}\n", label(&i)));
        }
        w("# HELP rosterd_last_success_timestamp_seconds When each integration last ran ok.\n# TYPE rosterd_last_success_timestamp_seconds gauge\n".into());
        let mut stmt = self.conn.prepare(
            "SELECT integration, CAST(strftime('%s', MAX(finished_at)) AS INTEGER) FROM runs WHERE status = 'ok' GROUP BY 1 ORDER BY 1",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?)))?;
        for row in rows {
            if let (i, Some(t)) = row? {
                w(format!("rosterd_last_success_timestamp_seconds{{integration=\"{}\"}} {t}\n", label(&i)));
            }
        }
        w("# HELP rosterd_run_duration_seconds How long finished runs took.\n# TYPE rosterd_run_duration_seconds histogram\n".into());
        const BUCKETS: [f64; 10] = [0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0];
        let mut stmt = self.conn.prepare(
            "SELECT integration, (julianday(finished_at) - julianday(started_at)) * 86400.0 FROM runs
             WHERE finished_at IS NOT NULL AND status IN ('ok', 'failed', 'held', 'dry-run') ORDER BY 1",
        )?;
        let mut by_integration: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))? {
            let (i, d) = row?;
            by_integration.entry(i).or_default().push(d.max(0.0));
        }
        for (i, durations) in &by_integration {
            let i = label(i);
            for b in BUCKETS {
                let n = durations.iter().filter(|d| **d <= b).count();
                w(format!("rosterd_run_duration_seconds_bucket{{integration=\"{i}\",le=\"{b}\"}} {n}\n"));
            }
            w(format!("rosterd_run_duration_seconds_bucket{{integration=\"{i}\",le=\"+Inf\"}} {}\n", durations.len()));
            w(format!("rosterd_run_duration_seconds_sum{{integration=\"{i}\"}} {}\n", durations.iter().sum::<f64>()));
            w(format!("rosterd_run_duration_seconds_count{{integration=\"{i}\"}} {}\n", durations.len()));
        }
        w("# HELP rosterd_users Users by active state.\n# TYPE rosterd_users gauge\n".into());
        let (active, inactive): (i64, i64) = self.conn.query_row(
            "SELECT COALESCE(SUM(active = 1), 0), COALESCE(SUM(active = 0), 0) FROM users",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let _ = write!(out, "rosterd_users{{active=\"1\"}} {active}\nrosterd_users{{active=\"0\"}} {inactive}\n");
        Ok(out)
    }
}

/// Escapes a Prometheus label value.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
