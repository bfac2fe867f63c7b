//! The one transaction of a run. `plan` walks the records against a
//! `SqlDirectory` over that transaction: each user is looked up by index
//! when a record needs it, and each decision is written as it is made, so a
//! run never loads every user. Then the caller decides: an `ok` run commits
//! its changes together with its `runs` row; a dry run or a held run rolls
//! back every change and records only its `runs` row.

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use serde_json::Value;

use super::{RunEnd, Store, StoreError, now};
use crate::manifest::Core;
use crate::mapping::RecordArena;
use crate::plan::{self, Deactivation, Directory, IdSet, NewUser, Plan, PlanOptions, Update};
use crate::user::{Fields, StoredUser, TEXT_COLUMNS};

/// At most this many skip reasons are kept per run; the count is always exact.
const MAX_SKIP_ROWS: usize = 10_000;

/// A record the plan did not use, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skip {
    pub record: usize,
    pub key: Option<String>,
    pub reason: String,
}

/// What a run did, and how it ended.
pub struct ApplyOutcome {
    pub plan: Plan,
    pub end: RunEnd,
}

impl Store {
    /// Plans `records` against the store in one transaction, asks `decide`
    /// how the run ends, and commits (status `ok`) or rolls back (anything
    /// else) the users' changes; the run's end is written either way.
    pub fn apply_run(
        &mut self,
        run_id: i64,
        records: &RecordArena,
        opts: &PlanOptions<'_>,
        decide: impl FnOnce(&Plan) -> RunEnd,
    ) -> Result<ApplyOutcome, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let plan = {
            let mut dir = SqlDirectory { tx: &tx, at: now() };
            plan::plan(records, &mut dir, opts)?
        };
        let end = decide(&plan);
        if end.status == "ok" {
            write_run_end(&tx, run_id, &end)?;
            tx.commit()?;
        } else {
            tx.rollback()?;
            let tx = self.conn.transaction()?;
            write_run_end(&tx, run_id, &end)?;
            tx.commit()?;
        }
        Ok(ApplyOutcome { plan, end })
    }
}

/// The users of the store, inside a run's transaction.
struct SqlDirectory<'t> {
    tx: &'t Transaction<'t>,
    at: String,
}

// The owner comes from a scalar subquery, not a LEFT JOIN: SQLite re-prepares
// this LEFT JOIN on every execution once the table has changed (measured with
// SQLITE_STMTSTATUS_REPREPARE), which tripled the time of a large run.
const SELECT_USER: &str = "SELECT u.id, u.email, u.first_name, u.last_name, u.external_id, u.username, u.phone, u.job,
        u.department, u.extra_fields, u.active, (SELECT o.integration FROM ownership o WHERE o.user_id = u.id)
     FROM users u";

fn stored_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredUser> {
    let extra: String = r.get(9)?;
    Ok(StoredUser {
        id: r.get(0)?,
        fields: Fields {
            email: r.get(1)?,
            first_name: r.get(2)?,
            last_name: r.get(3)?,
            external_id: r.get(4)?,
            username: r.get(5)?,
            phone: r.get(6)?,
            job: r.get(7)?,
            department: r.get(8)?,
        },
        extra: super::extra_map(&extra),
        active: r.get::<_, i64>(10)? != 0,
        owner: r.get(11)?,
    })
}

fn text_values(f: &Fields) -> [Option<&str>; 8] {
    TEXT_COLUMNS.map(|c| f.get(c))
}

impl Directory for SqlDirectory<'_> {
    type Error = rusqlite::Error;

    fn find(&mut self, key: Core, value: &str) -> rusqlite::Result<Option<StoredUser>> {
        let sql = match key {
            // `email` is COLLATE NOCASE, so this uses its unique index case-insensitively.
            Core::Email => const_format(SELECT_USER, " WHERE u.email = ?1"),
            _ => const_format(SELECT_USER, " WHERE u.external_id = ?1"),
        };
        self.tx.prepare_cached(&sql)?.query_row([value], stored_user).optional()
    }

    fn find_id(&mut self, key: Core, value: &str) -> rusqlite::Result<Option<i64>> {
        let sql = match key {
            Core::Email => "SELECT id FROM users WHERE email = ?1",
            _ => "SELECT id FROM users WHERE external_id = ?1",
        };
        self.tx.prepare_cached(sql)?.query_row([value], |r| r.get(0)).optional()
    }

    fn fingerprint(&mut self, id: i64) -> rusqlite::Result<Option<u128>> {
        let blob: Option<Vec<u8>> = self
            .tx
            .prepare_cached("SELECT fingerprint FROM applied WHERE user_id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        Ok(blob.and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok()).map(u128::from_le_bytes))
    }

    fn set_fingerprint(&mut self, id: i64, fp: u128) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached("INSERT OR REPLACE INTO applied (user_id, fingerprint) VALUES (?1, ?2)")?
            .execute(params![id, fp.to_le_bytes().as_slice()])?;
        Ok(())
    }

    fn holds(&mut self, key: Core, value: &str) -> rusqlite::Result<bool> {
        // Answered from the unique index alone (a covering index search).
        let sql = match key {
            Core::Email => "SELECT 1 FROM users WHERE email = ?1",
            _ => "SELECT 1 FROM users WHERE external_id = ?1",
        };
        self.tx.prepare_cached(sql)?.exists([value])
    }

    fn create(&mut self, user: &NewUser, owner: &str) -> rusqlite::Result<i64> {
        let [email, first, last, ext, username, phone, job, dept] = text_values(&user.fields);
        let extra = Value::Object(user.extra.clone()).to_string();
        self.tx
            .prepare_cached(
                "INSERT INTO users (email, first_name, last_name, external_id, username, phone, job, department,
                                    extra_fields, active, source, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
            )?
            .execute(params![
                email,
                first,
                last,
                ext,
                username,
                phone,
                job,
                dept,
                extra,
                user.active,
                owner,
                self.at
            ])?;
        let id = self.tx.last_insert_rowid();
        // A new user has no ownership row yet: a plain INSERT, not the REPLACE of adopt.
        self.tx
            .prepare_cached("INSERT INTO ownership (user_id, integration) VALUES (?1, ?2)")?
            .execute(params![id, owner])?;
        Ok(id)
    }

    fn update(&mut self, u: &Update, owner: &str) -> rusqlite::Result<()> {
        let [email, first, last, ext, username, phone, job, dept] = text_values(&u.fields);
        let extra = Value::Object(u.extra.clone()).to_string();
        self.tx
            .prepare_cached(
                "UPDATE users SET email = ?2, first_name = ?3, last_name = ?4, external_id = ?5, username = ?6,
                     phone = ?7, job = ?8, department = ?9, extra_fields = ?10, active = ?11, updated_at = ?12
                 WHERE id = ?1",
            )?
            .execute(params![
                u.user_id, email, first, last, ext, username, phone, job, dept, extra, u.active, self.at
            ])?;
        if u.adopt {
            self.adopt(u.user_id, owner)?;
        }
        Ok(())
    }

    fn clear_email(&mut self, id: i64) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached("UPDATE users SET email = NULL, updated_at = ?2 WHERE id = ?1")?
            .execute(params![id, self.at])?;
        Ok(())
    }

    fn adopt(&mut self, id: i64, owner: &str) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached("INSERT OR REPLACE INTO ownership (user_id, integration) VALUES (?1, ?2)")?
            .execute(params![id, owner])?;
        Ok(())
    }

    fn owned_active(&mut self, owner: &str) -> rusqlite::Result<u64> {
        self.tx.query_row(
            "SELECT COUNT(*) FROM users u JOIN ownership o ON o.user_id = u.id WHERE o.integration = ?1 AND u.active = 1",
            [owner],
            |r| r.get::<_, i64>(0).map(|n| n as u64),
        )
    }

    fn deactivate_others(
        &mut self,
        owner: &str,
        keep: &IdSet,
        sample: usize,
    ) -> rusqlite::Result<(u64, Vec<Deactivation>)> {
        let mut gone = Vec::new();
        let mut shown = Vec::new();
        {
            let mut stmt = self.tx.prepare(
                "SELECT u.id, u.email, u.external_id FROM users u JOIN ownership o ON o.user_id = u.id
                 WHERE o.integration = ?1 AND u.active = 1",
            )?;
            let mut rows = stmt.query([owner])?;
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                if keep.contains(id) {
                    continue;
                }
                gone.push(id);
                if shown.len() < sample {
                    let email: Option<String> = r.get(1)?;
                    let ext: Option<String> = r.get(2)?;
                    let label = email
                        .or_else(|| ext.map(|x| format!("external_id {x}")))
                        .unwrap_or_else(|| format!("user #{id}"));
                    shown.push(Deactivation { user_id: id, label });
                }
            }
        }
        let mut deactivate = self.tx.prepare_cached("UPDATE users SET active = 0, updated_at = ?2 WHERE id = ?1")?;
        for id in &gone {
            deactivate.execute(params![id, self.at])?;
        }
        Ok((gone.len() as u64, shown))
    }
}

fn const_format(a: &str, b: &str) -> String {
    format!("{a}{b}")
}

pub(super) fn write_run_end(tx: &Transaction<'_>, run_id: i64, end: &RunEnd) -> Result<(), StoreError> {
    let super::Counts { fetched, created, updated, deactivated, skipped } = end.counts;
    tx.execute(
        "UPDATE runs SET status = ?2, finished_at = ?3, fetched = ?4, created = ?5, updated = ?6,
             deactivated = ?7, skipped = ?8, error = ?9 WHERE id = ?1",
        params![run_id, end.status, now(), fetched, created, updated, deactivated, skipped, end.error],
    )?;
    let mut skip = tx.prepare_cached("INSERT INTO run_skips (run_id, record, key, reason) VALUES (?1, ?2, ?3, ?4)")?;
    for s in end.skips.iter().take(MAX_SKIP_ROWS) {
        skip.execute(params![run_id, s.record as i64, s.key, s.reason])?;
    }
    let mut req = tx.prepare_cached(
        "INSERT INTO run_requests (run_id, seq, step, method, url, status, bytes, millis, attempt, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for (seq, r) in end.requests.iter().enumerate() {
        req.execute(params![
            run_id, seq as i64, r.step, r.method, r.url, r.status, r.bytes, r.millis, r.attempt, r.error
        ])?;
    }
    Ok(())
}
