//! Import and export against the store. An import's rules
//! (`import::plan_import`, which `run::import` calls) ask an `ImportTx`
//! about each record's users by index inside the import's transaction, and
//! it writes their decisions there; export reads users in id order from one
//! statement, so a large directory streams either way.

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::{Store, StoreError, now};
use crate::export::ExportRow;
use crate::port::{Existing, ImportLookup, Write};

/// An import's one write transaction: its rules' questions are answered by
/// the unique indexes (and the username index) inside it. Dropped without
/// `commit`, it rolls back.
pub struct ImportTx<'s> {
    store: &'s Store,
    open: bool,
}

/// A user as the import's lookup reads it (the columns of `by_external_id`).
fn existing(r: &rusqlite::Row<'_>) -> rusqlite::Result<Existing> {
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
}

impl ImportLookup for ImportTx<'_> {
    type Error = StoreError;

    fn by_external_id(&mut self, ext: &str) -> Result<Option<Existing>, StoreError> {
        Ok(self
            .store
            .conn
            .prepare_cached(
                "SELECT id, external_id, email, first_name, last_name, username, phone, job, extra_fields
                 FROM users WHERE external_id = ?1",
            )?
            .query_row([ext], existing)
            .optional()?)
    }

    fn email_holder(&mut self, email: &str) -> Result<Option<i64>, StoreError> {
        // `email` is COLLATE NOCASE: its unique index answers case-insensitively.
        Ok(self
            .store
            .conn
            .prepare_cached("SELECT id FROM users WHERE email = ?1")?
            .query_row([email], |r| r.get(0))
            .optional()?)
    }

    fn username_taken(&mut self, username: &str, except: Option<i64>) -> Result<bool, StoreError> {
        Ok(self
            .store
            .conn
            .prepare_cached("SELECT 1 FROM users WHERE username = ?1 COLLATE NOCASE AND id IS NOT ?2 LIMIT 1")?
            .query_row(params![username, except], |_| Ok(()))
            .optional()?
            .is_some())
    }
}

impl ImportTx<'_> {
    /// Writes an import's decisions and commits them.
    pub fn commit(mut self, writes: &[Write]) -> Result<(), StoreError> {
        let conn = &self.store.conn;
        let at = now();
        {
            let mut insert = conn.prepare_cached(
                "INSERT INTO users (external_id, email, first_name, last_name, username, phone, job, extra_fields,
                                    active, source, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, 'import', ?9, ?9)",
            )?;
            // The same values in the same order as the INSERT, then the id.
            let mut update = conn.prepare_cached(
                "UPDATE users SET external_id = ?1, email = ?2, first_name = ?3, last_name = ?4, username = ?5,
                     phone = ?6, job = ?7, extra_fields = ?8, updated_at = ?9 WHERE id = ?10",
            )?;
            for w in writes {
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
        conn.execute_batch("COMMIT")?;
        self.open = false;
        Ok(())
    }
}

impl Drop for ImportTx<'_> {
    fn drop(&mut self) {
        if self.open && !self.store.conn.is_autocommit() {
            let _ = self.store.conn.execute_batch("ROLLBACK");
        }
    }
}

impl Store {
    /// Opens an import's one write transaction; its rules ask it about users, then `commit` writes.
    pub fn begin_import(&mut self) -> Result<ImportTx<'_>, StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(ImportTx { store: self, open: true })
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
                name: crate::user::full_name(first.as_deref(), last.as_deref()),
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
}
