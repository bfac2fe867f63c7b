//! The one transaction of a run: read the current users, let the caller plan
//! against them, write the plan and the run's end together, commit. A plan
//! that is not to be applied (dry run, held) still gets its `runs` row, and
//! no user row changes.

use rusqlite::{Transaction, TransactionBehavior, params};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{Counts, RunEnd, Store, StoreError, now};
use crate::plan::Plan;
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

/// What the caller decided after seeing the plan.
pub struct ApplyOutcome {
    pub plan: Plan,
    pub end: RunEnd,
}

impl Store {
    /// Loads the current users, calls `decide` with them, and in the same
    /// transaction writes the plan (when the returned end's status is `ok`) and the run's end.
    pub fn apply_run<F>(&mut self, run_id: i64, integration: &str, decide: F) -> Result<ApplyOutcome, StoreError>
    where
        F: FnOnce(&[StoredUser]) -> (Plan, RunEnd),
    {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let users = load_users(&tx)?;
        let (plan, end) = decide(&users);
        drop(users);
        if end.status == "ok" {
            write_plan(&tx, &plan, integration)?;
        }
        write_run_end(&tx, run_id, &end)?;
        tx.commit()?;
        Ok(ApplyOutcome { plan, end })
    }
}

fn load_users(tx: &Transaction<'_>) -> Result<Vec<StoredUser>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT u.id, u.email, u.first_name, u.last_name, u.external_id, u.username, u.phone, u.job,
                u.department, u.extra_fields, u.active, o.integration
         FROM users u LEFT JOIN ownership o ON o.user_id = u.id ORDER BY u.id",
    )?;
    let rows = stmt.query_map([], |r| {
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
            extra: match serde_json::from_str(&extra) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            },
            active: r.get::<_, i64>(10)? != 0,
            owner: r.get(11)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn write_plan(tx: &Transaction<'_>, plan: &Plan, integration: &str) -> Result<(), StoreError> {
    let at = now();
    let mut own = tx.prepare_cached("INSERT OR REPLACE INTO ownership (user_id, integration) VALUES (?1, ?2)")?;
    {
        let mut clear = tx.prepare_cached("UPDATE users SET email = NULL, updated_at = ?2 WHERE id = ?1")?;
        for c in &plan.cleared_emails {
            clear.execute(params![c.user_id, at])?;
        }
    }
    {
        let mut update = tx.prepare_cached(
            "UPDATE users SET email = ?2, first_name = ?3, last_name = ?4, external_id = ?5, username = ?6,
                 phone = ?7, job = ?8, department = ?9, extra_fields = ?10, active = ?11, updated_at = ?12
             WHERE id = ?1",
        )?;
        for u in &plan.updates {
            let [email, first, last, ext, username, phone, job, dept] = text_values(&u.fields);
            let extra = Value::Object(u.extra.clone()).to_string();
            update.execute(params![
                u.user_id, email, first, last, ext, username, phone, job, dept, extra, u.active, at
            ])?;
            if u.adopt {
                own.execute(params![u.user_id, integration])?;
            }
        }
    }
    for id in &plan.adoptions {
        own.execute(params![id, integration])?;
    }
    {
        let mut deactivate = tx.prepare_cached("UPDATE users SET active = 0, updated_at = ?2 WHERE id = ?1")?;
        for d in &plan.deactivations {
            deactivate.execute(params![d.user_id, at])?;
        }
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO users (email, first_name, last_name, external_id, username, phone, job, department,
                            extra_fields, active, source, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
    )?;
    for n in &plan.creates {
        let [email, first, last, ext, username, phone, job, dept] = text_values(&n.fields);
        let extra = Value::Object(n.extra.clone()).to_string();
        insert.execute(params![
            email,
            first,
            last,
            ext,
            username,
            phone,
            job,
            dept,
            extra,
            n.active,
            integration,
            at
        ])?;
        own.execute(params![tx.last_insert_rowid(), integration])?;
    }
    Ok(())
}

fn text_values(f: &Fields) -> [Option<&str>; 8] {
    TEXT_COLUMNS.map(|c| f.get(c))
}

pub(super) fn write_run_end(tx: &Transaction<'_>, run_id: i64, end: &RunEnd) -> Result<(), StoreError> {
    let Counts { fetched, created, updated, deactivated, skipped } = end.counts;
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
