//! Import and export against the store. An import's rules
//! (`import::plan_import`, which `run::import` calls) ask an `ImportTx`
//! about each record's users by index inside the import's transaction, and
//! it writes their decisions there; export reads users in id order from one
//! statement, so a large directory streams either way.

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::row::{stored_user, user_columns};
use super::{Store, StoreError, now};
use crate::port::{Import, ImportLookup, ImportTransaction, Write};
use crate::user::{StoredUser, TEXT_COLUMNS};

/// An import's one write transaction: its rules' questions are answered by
/// the unique indexes (and the username index) inside it. Dropped without
/// `commit`, it rolls back.
pub struct ImportTx<'s> {
    store: &'s Store,
    open: bool,
}

impl ImportLookup for ImportTx<'_> {
    type Error = StoreError;

    fn by_external_id(&mut self, ext: &str) -> Result<Option<StoredUser>, StoreError> {
        Ok(self
            .store
            .conn
            .prepare_cached(concat!("SELECT ", user_columns!(), ", NULL FROM users u WHERE u.external_id = ?1"))?
            .query_row([ext], stored_user)
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

impl ImportTransaction for ImportTx<'_> {
    /// Writes an import's decisions and commits them.
    fn commit(mut self, writes: &[Write]) -> Result<(), StoreError> {
        let conn = &self.store.conn;
        let at = now();
        {
            let mut insert = conn.prepare_cached(
                "INSERT INTO users (email, first_name, last_name, external_id, username, phone, job, department,
                                    extra_fields, active, source, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1, 'import', ?10, ?10)",
            )?;
            // The same values in the same order as the INSERT, then the id.
            let mut update = conn.prepare_cached(
                "UPDATE users SET email = ?1, first_name = ?2, last_name = ?3, external_id = ?4, username = ?5,
                     phone = ?6, job = ?7, department = ?8, extra_fields = ?9, updated_at = ?10 WHERE id = ?11",
            )?;
            for w in writes {
                let extra = Value::Object(w.extra.clone()).to_string();
                let texts = TEXT_COLUMNS.map(|c| w.fields.get(c));
                let mut values: Vec<&dyn rusqlite::ToSql> = texts.iter().map(|t| t as &dyn rusqlite::ToSql).collect();
                values.extend([&extra as &dyn rusqlite::ToSql, &at, &w.id]);
                match w.id {
                    None => insert.execute(&values[..10])?,
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

impl Import for Store {
    type Tx<'t> = ImportTx<'t>;

    /// Opens an import's one write transaction; its rules ask it about users, then `commit` writes.
    fn begin_import(&mut self) -> Result<ImportTx<'_>, StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(ImportTx { store: self, open: true })
    }
}
