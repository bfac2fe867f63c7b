//! What a push reads and writes: the local users a push selects (streamed,
//! never all at once), users by id for the requests being sent, and each
//! push request's outcome per run.

use rusqlite::params;

use super::row::{stored_user, user_columns};
use super::{Store, StoreError};
use crate::manifest::PushSelect;
use crate::port::{Outbound, PushRow};
use crate::user::StoredUser;

/// A user's owning integration, as the column after `user_columns!()`.
macro_rules! owner {
    () => {
        "(SELECT o.integration FROM ownership o WHERE o.user_id = u.id)"
    };
}

const SELECTED: &str = concat!(
    "SELECT ",
    user_columns!(),
    ", ",
    owner!(),
    ", u.source FROM users u
     WHERE u.external_id IS NOT NULL AND u.external_id != '' AND (?1 = 0 OR u.active = 1) ORDER BY u.id"
);

impl Outbound for Store {
    /// Calls `f` with every local user `select` picks that has an external id,
    /// in id order, from one statement; `f` returns false to stop. A user
    /// matches `select.source` by its owner or by the integration (or
    /// `import`) that made it.
    fn push_users_each(&self, select: &PushSelect, mut f: impl FnMut(StoredUser) -> bool) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare(SELECTED)?;
        let mut rows = stmt.query([select.active])?;
        while let Some(r) = rows.next()? {
            if let Some(sources) = &select.source {
                let made_by: Option<String> = r.get(12)?;
                let owner: Option<String> = r.get(11)?;
                let picked = [owner, made_by].iter().flatten().any(|s| sources.iter().any(|want| want == s));
                if !picked {
                    continue;
                }
            }
            if !f(stored_user(r)?) {
                break;
            }
        }
        Ok(())
    }

    /// The users with these ids (those that still exist), in the order asked.
    fn users_by_ids(&self, ids: &[i64]) -> Result<Vec<StoredUser>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut stmt = self.conn.prepare_cached(concat!(
            "SELECT ",
            user_columns!(),
            ", ",
            owner!(),
            " FROM users u WHERE u.id = ?1"
        ))?;
        for id in ids {
            if let Some(user) = stmt.query_map([id], stored_user)?.next() {
                out.push(user?);
            }
        }
        Ok(out)
    }

    /// A running push's progress: requests sent so far.
    fn push_progress(&self, run_id: i64, sent: i64) -> Result<(), StoreError> {
        self.conn.execute("UPDATE runs SET pushed = ?2 WHERE id = ?1 AND status = 'running'", params![run_id, sent])?;
        Ok(())
    }

    /// Appends push request outcomes to a run, after those recorded already.
    fn record_push(&mut self, run_id: i64, rows: &[PushRow]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let start: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), -1) + 1 FROM push_requests WHERE run_id = ?1",
                [run_id],
                |r| r.get(0),
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO push_requests (run_id, seq, kind, external_id, target_id, status, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (i, row) in rows.iter().enumerate() {
                insert.execute(params![
                    run_id,
                    start + i as i64,
                    row.kind,
                    row.external_id,
                    row.target_id,
                    row.status,
                    row.error
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A run's push requests by kind: (kind, sent, failed).
    fn push_counts(&self, run_id: i64) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT kind, COUNT(*), SUM(error IS NOT NULL) FROM push_requests WHERE run_id = ?1 GROUP BY kind",
        )?;
        let rows =
            stmt.query_map([run_id], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A run's push requests, in the order they ended.
    fn push_rows(&self, run_id: i64) -> Result<Vec<PushRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT kind, external_id, target_id, status, error FROM push_requests WHERE run_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([run_id], |r| {
            Ok(PushRow {
                kind: r.get(0)?,
                external_id: r.get(1)?,
                target_id: r.get(2)?,
                status: r.get(3)?,
                error: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
