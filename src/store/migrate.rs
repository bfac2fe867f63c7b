//! Numbered schema migrations. Each runs in its own transaction together with
//! its `user_version` bump, so a crash leaves the schema at a whole version.
//! A database from a newer rosterd is refused and left untouched.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// The migrations in order; the database's `user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_applied.sql"),
    include_str!("migrations/0003_username_index.sql"),
    include_str!("migrations/0004_run_process.sql"),
    include_str!("migrations/0005_run_warnings.sql"),
    include_str!("migrations/0006_run_duration.sql"),
    include_str!("migrations/0007_oauth.sql"),
    include_str!("migrations/0008_push.sql"),
    include_str!("migrations/0009_run_dry_run_and_summary.sql"),
    include_str!("migrations/0010_oauth_state_outcome.sql"),
];

/// Brings the schema up to date. The version is read and raised inside one
/// write transaction per migration, so processes opening a new or older
/// database at once take turns: each migration runs exactly once.
pub fn run(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    let version = |c: &Connection| c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0));
    // Most opens find the schema current: no write lock for them.
    let found = version(conn)?;
    if found > known {
        return Err(StoreError::Newer { path: path.to_path_buf(), found, known });
    }
    if found == known {
        return Ok(());
    }
    loop {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| open_error(path, &e))?;
        let found = version(&tx)?;
        if found > known {
            return Err(StoreError::Newer { path: path.to_path_buf(), found, known });
        }
        let Some(sql) = MIGRATIONS.get(found as usize) else { return Ok(()) };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
    }
}

fn open_error(path: &Path, e: &rusqlite::Error) -> StoreError {
    StoreError::Open { path: path.to_path_buf(), reason: super::explain(e) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_database_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        drop(crate::store::Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = crate::store::Store::open(&path).err().unwrap();
        assert!(err.to_string().contains("newer"), "{err}");
        let conn = Connection::open(&path).unwrap();
        let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, 99);
    }

    #[test]
    fn opening_twice_keeps_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        drop(crate::store::Store::open(&path).unwrap());
        let store = crate::store::Store::open(&path).unwrap();
        let v: i64 = store.conn().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
    }
}
