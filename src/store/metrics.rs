//! The figures `/metrics` reports, read from the store in one go (the API
//! formats them).

use super::{Store, StoreError};
use crate::outcome::RunStatus;
use crate::port::{Figures, Metrics};

impl Figures for Store {
    fn metrics(&self) -> Result<Metrics, StoreError> {
        let mut m = Metrics::default();
        let mut stmt = self
            .conn
            .prepare("SELECT integration, status, dry_run, COUNT(*) FROM runs WHERE status != ?1 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")?;
        let rows = stmt.query_map([RunStatus::Running.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?, r.get::<_, i64>(3)?))
        })?;
        for row in rows {
            let (i, s, dry, n) = row?;
            if let Some(s) = RunStatus::parse(&s) {
                m.runs.push((i, s, dry, n));
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
        // Counters: records every finished run fetched; users changed in the
        // store by runs that applied. A push's creates and removes are on its
        // target (`rosterd_push_requests_total`), not in the store: not counted here.
        let mut stmt = self.conn.prepare(
            "SELECT integration, SUM(fetched),
                    SUM(CASE WHEN status = 'ok' AND action != 'push' THEN created ELSE 0 END),
                    SUM(CASE WHEN status = 'ok' AND action != 'push' THEN updated ELSE 0 END),
                    SUM(CASE WHEN status = 'ok' AND action != 'push' THEN deactivated ELSE 0 END)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Counts;
    use crate::port::{RunEnd, Runs};

    /// Users created in the store and accounts created on a push's target are different things.
    #[test]
    fn a_push_creates_on_its_target_not_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("m.db")).unwrap();
        for (integration, action) in [("hr", "sync"), ("lms", "push")] {
            let id = store.begin_run(integration, action, "manual", RunStatus::Running).unwrap();
            let counts = Counts { created: 5, updated: 2, deactivated: 1, ..Counts::default() };
            store.finish_run(id, &RunEnd { status: RunStatus::Ok, counts, ..RunEnd::default() }).unwrap();
        }
        let m = store.metrics().unwrap();
        let totals: Vec<(&str, [i64; 4])> = m.totals.iter().map(|(i, t)| (i.as_str(), *t)).collect();
        assert_eq!(totals, [("hr", [0, 5, 2, 1]), ("lms", [0, 0, 0, 0])]);
    }
}
