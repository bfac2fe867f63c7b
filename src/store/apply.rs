//! The one transaction of a run, as a `RunTx`: the `Directory` the rules
//! (`plan`, which `run` calls) walk the records against. A user is looked up
//! by index when a record needs it (or, in a large run, found in one scan:
//! fingerprints in `applied`, the records' own keys in `prefetch`), and each
//! decision is written as it is made (new users' ownership and fingerprint
//! rows 64 at a time, before anything reads them), so a run never loads every
//! user. The transaction then waits until the caller (`run`) has decided how
//! the run ends: an `ok` run commits its changes together with its `runs`
//! row; any other status rolls back every change and records only its `runs`
//! row. The store never sees the rules: it answers the port.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::prefetch::KeyCache;
use super::row::stored_user;
use super::{Prefetch, RunEnd, Store, StoreError, now};
use crate::index::{Carriers, Holder, IdSet};
use crate::mapping::RecordArena;
use crate::outcome::Counts;
use crate::port::{Apply, Deactivation, Directory, NewUser, RunTransaction, Update};
use crate::user::Field;
use crate::user::{Fields, StoredUser, TEXT_COLUMNS};

/// At most this many skip reasons are kept per run; the count is always exact.
const MAX_SKIP_ROWS: usize = 10_000;

impl Apply for Store {
    type Tx<'t> = RunTx<'t>;

    /// Opens run `run_id`'s one write transaction over the users, for the
    /// rules to decide `records` in (each decision is written as it is made,
    /// so memory stays flat). The caller then `finish`es it; dropped
    /// unfinished, it rolls back.
    fn begin_apply<'t>(&'t mut self, run_id: i64, records: &'t RecordArena) -> Result<RunTx<'t>, StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut tx = RunTx::new(&self.conn, records, self.prefetch, run_id);
        if let Err(e) = tx.count_users() {
            let _ = self.conn.execute_batch("ROLLBACK");
            tx.open = false;
            return Err(e);
        }
        Ok(tx)
    }
}

impl RunTransaction for RunTx<'_> {
    /// Ends the run as `end` says: a status that commits (`ok`) keeps the
    /// users' changes together with the `runs` row; any other rolls every
    /// change back and records only the `runs` row.
    fn finish(mut self, end: &RunEnd) -> Result<(), StoreError> {
        self.open = false;
        self.flush_new()?;
        let conn = self.tx;
        if end.status.commits() {
            if let Err(e) = write_run_end(conn, self.run_id, end) {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
            conn.execute_batch("COMMIT")?;
            return Ok(());
        }
        conn.execute_batch("ROLLBACK")?;
        conn.execute_batch("BEGIN")?;
        if let Err(e) = write_run_end(conn, self.run_id, end) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        conn.execute_batch("COMMIT")?;
        Ok(())
    }
}

impl Drop for RunTx<'_> {
    fn drop(&mut self) {
        if self.open && !self.tx.is_autocommit() {
            let _ = self.tx.execute_batch("ROLLBACK");
        }
    }
}

/// A run's write transaction over the users: the `Directory` the rules
/// decide in. Nothing is visible to others until `finish` says how the run ends.
pub struct RunTx<'t> {
    tx: &'t Connection,
    run_id: i64,
    /// Not finished yet: dropped so, it rolls back.
    open: bool,
    at: String,
    records: &'t RecordArena,
    /// How the run looks its users up in bulk (see `count_users`).
    mode: Prefetch,
    /// Large runs answer many lookups from one scan; small ones ask SQLite per record.
    prefetch: bool,
    emails: Cached<KeyCache>,
    externals: Cached<KeyCache>,
    /// Lookups SQLite answered so far, per key kind: past `load_after`, one
    /// scan costs less than the lookups still to come.
    asked: [usize; 2],
    load_after: usize,
    /// A sync's owned, active users when it began (see `owned_active`).
    owned_at_start: Option<(String, IdSet)>,
    /// Until the plan asks for carriers (update and sync), a record's own key
    /// is its hot path and is worth a scan from the first lookup.
    eager: bool,
    /// New users' ownership and fingerprint rows not written yet: they go
    /// `NEW_ROWS` to a statement, not one statement each (a first sync of a
    /// million spent 2 s on its fingerprint rows alone). Written before
    /// anything reads an owner or touches `applied` (`flush_new`).
    new_rows: Vec<(i64, Option<u128>)>,
    new_owner: String,
}

/// How many new users' rows one statement writes.
pub(crate) const NEW_ROWS: usize = 64;

/// `INSERT INTO {table} ({columns}) VALUES (?, ?), …` with `NEW_ROWS` rows.
fn new_rows_sql(table: &str, columns: &str) -> String {
    format!("INSERT INTO {table} ({columns}) VALUES {}", vec!["(?, ?)"; NEW_ROWS].join(", "))
}

/// Something loaded at most once: not yet tried, loaded, or not available.
enum Cached<T> {
    Untried,
    Loaded(T),
    Off,
}

impl<T> Cached<T> {
    fn get(&mut self) -> Option<&mut T> {
        match self {
            Cached::Loaded(t) => Some(t),
            _ => None,
        }
    }
}

/// A run with fewer records than this never scans; nor one with under 1/16 as many records as users.
const PREFETCH_MIN: usize = 1000;

impl<'t> RunTx<'t> {
    fn new(tx: &'t Connection, records: &'t RecordArena, mode: Prefetch, run_id: i64) -> Self {
        RunTx {
            tx,
            run_id,
            open: true,
            at: now(),
            records,
            mode,
            prefetch: false,
            load_after: 0,
            emails: Cached::Untried,
            externals: Cached::Untried,
            asked: [0, 0],
            owned_at_start: None,
            eager: true,
            new_rows: Vec::with_capacity(NEW_ROWS),
            new_owner: String::new(),
        }
    }

    /// Decides, from the records against the users there are, whether the
    /// run scans for its users up front.
    fn count_users(&mut self) -> Result<(), StoreError> {
        let users: i64 = self.tx.query_row("SELECT COALESCE(MAX(id), 0) FROM users", [], |r| r.get(0))?;
        let n = self.records.len();
        self.prefetch = match self.mode {
            Prefetch::Auto => n >= PREFETCH_MIN && (n as i64).saturating_mul(16) >= users,
            Prefetch::Always => true,
            Prefetch::Never => false,
        };
        // Forced on (tests), every cache loads at its first use.
        self.load_after = if self.mode == Prefetch::Always { 0 } else { (n / 8).max(PREFETCH_MIN) };
        Ok(())
    }

    fn slot(&mut self, key: Field) -> &mut Cached<KeyCache> {
        if key == Field::Email { &mut self.emails } else { &mut self.externals }
    }

    /// The key cache for `key`, loading it now when `load` says so and it was not tried yet.
    fn keys(&mut self, key: Field, load: bool) -> rusqlite::Result<Option<&mut KeyCache>> {
        let (tx, records, prefetch) = (self.tx, self.records, self.prefetch);
        let slot = self.slot(key);
        if load && let Cached::Untried = slot {
            *slot = match prefetch {
                true => KeyCache::load(tx, records, key)?.map_or(Cached::Off, Cached::Loaded),
                false => Cached::Off,
            };
        }
        Ok(slot.get())
    }

    /// Who holds `value` in `key`, if the cache knows (`Unknown`: ask SQLite).
    fn cached_holder(&mut self, key: Field, value: &str) -> rusqlite::Result<Holder> {
        let kind = usize::from(key != Field::Email);
        let load = self.asked[kind] >= self.load_after;
        let records = self.records;
        let known = self.keys(key, load)?.map_or(Holder::Unknown, |c| c.get(records, value));
        if known == Holder::Unknown {
            self.asked[kind] += 1;
        }
        Ok(known)
    }

    /// Notes in the caches that `value` in `key` is now held by `id` (`None`: by nobody).
    fn note_key(&mut self, key: Field, value: Option<&str>, id: Option<i64>) {
        let Some(value) = value else { return };
        let records = self.records;
        let slot = self.slot(key);
        if let Some(cache) = slot.get()
            && !cache.set(records, value, id)
        {
            *slot = Cached::Off;
        }
    }

    /// `note_key` for a user just created from record `i`: by the record's
    /// position when it is the first with that key, else by the key's text.
    fn note_created(&mut self, key: Field, i: usize, value: Option<&str>, id: i64) {
        if value.is_none() {
            return;
        }
        let slot = self.slot(key);
        match slot.get().map(|c| c.set_for_record(i, id)) {
            Some(Some(true)) => {}
            Some(Some(false)) => *slot = Cached::Off,
            Some(None) => self.note_key(key, value, Some(id)),
            None => {}
        }
    }

    /// A user's email and external id as stored now, when a cache must follow a change to them.
    fn keys_of(&mut self, id: i64) -> rusqlite::Result<Option<(Option<String>, Option<String>)>> {
        if self.emails.get().is_none() && self.externals.get().is_none() {
            return Ok(None);
        }
        self.tx
            .prepare_cached("SELECT email, external_id FROM users WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    }

    /// Writes the ownership and fingerprint rows of the users `create` made
    /// since the last call: a full batch in one statement per table, a
    /// partial one row by row.
    fn flush_new(&mut self) -> rusqlite::Result<()> {
        static OWNERSHIP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        static APPLIED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let (tx, rows, owner) = (self.tx, &self.new_rows, self.new_owner.as_str());
        if rows.is_empty() {
            return Ok(());
        }
        if rows.len() == NEW_ROWS {
            let mut owned =
                tx.prepare_cached(OWNERSHIP.get_or_init(|| new_rows_sql("ownership", "user_id, integration")))?;
            for (k, (id, _)) in rows.iter().enumerate() {
                owned.raw_bind_parameter(2 * k + 1, id)?;
                owned.raw_bind_parameter(2 * k + 2, owner)?;
            }
            owned.raw_execute()?;
        } else {
            let mut owned = tx.prepare_cached("INSERT INTO ownership (user_id, integration) VALUES (?1, ?2)")?;
            for (id, _) in rows {
                owned.execute(params![id, owner])?;
            }
        }
        if rows.len() == NEW_ROWS && rows.iter().all(|(_, fp)| fp.is_some()) {
            let mut applied =
                tx.prepare_cached(APPLIED.get_or_init(|| new_rows_sql("applied", "user_id, fingerprint")))?;
            for (k, (id, fp)) in rows.iter().enumerate() {
                applied.raw_bind_parameter(2 * k + 1, id)?;
                applied.raw_bind_parameter(2 * k + 2, fp.unwrap_or_default().to_le_bytes().as_slice())?;
            }
            applied.raw_execute()?;
        } else {
            let mut applied = tx.prepare_cached("INSERT INTO applied (user_id, fingerprint) VALUES (?1, ?2)")?;
            for (id, fp) in rows {
                if let Some(fp) = fp {
                    applied.execute(params![id, fp.to_le_bytes().as_slice()])?;
                }
            }
        }
        self.new_rows.clear();
        Ok(())
    }

    fn user_by_id(&mut self, id: i64, owner: bool) -> rusqlite::Result<Option<StoredUser>> {
        let sql = if owner { select_user!(OWNER, "u.id = ?1") } else { select_user!("NULL", "u.id = ?1") };
        self.tx.prepare_cached(sql)?.query_row([id], stored_user).optional()
    }

    /// `find`, reading the user's owner only when asked (a second B-tree search per user).
    fn find_user(&mut self, key: Field, value: &str, owner: bool) -> rusqlite::Result<Option<StoredUser>> {
        if owner {
            self.flush_new()?;
        }
        match self.cached_holder(key, value)? {
            Holder::Nobody => return Ok(None),
            Holder::User(id) => return self.user_by_id(id, owner),
            Holder::Unknown => {}
        }
        // `email` is COLLATE NOCASE, so this uses its unique index case-insensitively.
        let sql = match (key, owner) {
            (Field::Email, true) => select_user!(OWNER, "u.email = ?1"),
            (Field::Email, false) => select_user!("NULL", "u.email = ?1"),
            (_, true) => select_user!(OWNER, "u.external_id = ?1"),
            (_, false) => select_user!("NULL", "u.external_id = ?1"),
        };
        self.tx.prepare_cached(sql)?.query_row([value], stored_user).optional()
    }
}

/// A user row as `row::stored_user` reads it, filtered by `$filter`, with
/// `$owner` as its owner column: the owning integration (`OWNER`) or NULL.
macro_rules! select_user {
    (OWNER, $filter:literal) => {
        // A scalar subquery, not a LEFT JOIN: SQLite re-prepares this LEFT JOIN
        // on every execution once the table has changed (measured with
        // SQLITE_STMTSTATUS_REPREPARE), which tripled the time of a large run.
        select_user!("(SELECT o.integration FROM ownership o WHERE o.user_id = u.id)", $filter)
    };
    ($owner:literal, $filter:literal) => {
        concat!("SELECT ", crate::store::row::user_columns!(), ", ", $owner, " FROM users u WHERE ", $filter)
    };
}
use select_user;

fn text_values(f: &Fields) -> [Option<&str>; 8] {
    TEXT_COLUMNS.map(|c| f.get(c))
}

impl Directory for RunTx<'_> {
    type Error = StoreError;

    fn find(&mut self, key: Field, value: &str) -> Result<Option<StoredUser>, StoreError> {
        Ok(self.find_user(key, value, true)?)
    }

    fn find_without_owner(&mut self, key: Field, value: &str) -> Result<Option<StoredUser>, StoreError> {
        Ok(self.find_user(key, value, false)?)
    }

    fn holder_of_record(&mut self, i: usize, key: Field) -> Result<Holder, StoreError> {
        // Only a create's own email is worth a scan from the first lookup; other
        // kinds load once SQLite has answered enough of them (`cached_holder`).
        let eager = self.eager && key == Field::Email;
        Ok(self.keys(key, eager)?.map_or(Holder::Unknown, |c| c.holder_of(i)))
    }

    fn carriers(&mut self, fps: impl FnOnce() -> Vec<u128>) -> Result<Option<Carriers>, StoreError> {
        self.flush_new()?;
        self.eager = false;
        if !self.prefetch {
            return Ok(None);
        }
        // No user carries a fingerprint (a first sync or update): no record
        // is settled by one, nor worth digesting before it is written.
        if !self.tx.query_row("SELECT EXISTS (SELECT 1 FROM applied)", [], |r| r.get::<_, bool>(0))? {
            self.load_after = 0;
            return Ok(Some(Carriers::nobody(self.records.len())));
        }
        let fps = fps();
        let mut stmt = self.tx.prepare("SELECT user_id, fingerprint FROM applied")?;
        let mut rows = stmt.query([])?;
        let mut failed = None;
        let pairs = std::iter::from_fn(|| {
            loop {
                match rows.next() {
                    Ok(Some(row)) => {
                        let id = row.get::<_, i64>(0);
                        let fp = row.get_ref(1).map(|v| v.as_blob().ok().and_then(|b| <[u8; 16]>::try_from(b).ok()));
                        match (id, fp) {
                            (Ok(id), Ok(Some(fp))) => return Some((id, u128::from_le_bytes(fp))),
                            (Ok(_), Ok(None)) => continue,
                            (Err(e), _) | (_, Err(e)) => failed = Some(e),
                        }
                    }
                    Ok(None) => {}
                    Err(e) => failed = Some(e),
                }
                return None;
            }
        });
        let carriers = Carriers::build(&fps, pairs);
        // Every record no user carries will be looked up: when that is more
        // than a scan is worth, scan at the first lookup instead of after `load_after`.
        if let Some(c) = &carriers
            && c.uncarried() >= self.load_after
        {
            self.load_after = 0;
        }
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(carriers),
        }
    }

    fn find_id(&mut self, key: Field, value: &str) -> Result<Option<i64>, StoreError> {
        if let Some(holder) = self.cached_holder(key, value)?.known() {
            return Ok(holder);
        }
        // Answered from the unique index alone (a covering index search).
        let sql = match key {
            Field::Email => "SELECT id FROM users WHERE email = ?1",
            _ => "SELECT id FROM users WHERE external_id = ?1",
        };
        Ok(self.tx.prepare_cached(sql)?.query_row([value], |r| r.get(0)).optional()?)
    }

    fn fingerprint(&mut self, id: i64) -> Result<Option<u128>, StoreError> {
        self.flush_new()?;
        let blob: Option<Vec<u8>> = self
            .tx
            .prepare_cached("SELECT fingerprint FROM applied WHERE user_id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        Ok(blob.and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok()).map(u128::from_le_bytes))
    }

    fn set_fingerprint(&mut self, id: i64, fp: u128) -> Result<(), StoreError> {
        self.flush_new()?;
        self.tx
            // An upsert, not INSERT OR REPLACE: the row written is usually gone
            // (a trigger drops it when the user changes), and REPLACE's delete
            // path costs even when there is nothing to delete.
            .prepare_cached(
                "INSERT INTO applied (user_id, fingerprint) VALUES (?1, ?2)
                 ON CONFLICT (user_id) DO UPDATE SET fingerprint = excluded.fingerprint",
            )?
            .execute(params![id, fp.to_le_bytes().as_slice()])?;
        Ok(())
    }

    fn holds(&mut self, key: Field, value: &str) -> Result<bool, StoreError> {
        Ok(self.find_id(key, value)?.is_some())
    }

    fn create(&mut self, user: &NewUser, owner: &str, fp: Option<u128>) -> Result<i64, StoreError> {
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
        // A new user has no ownership or `applied` row yet (a user's rows go
        // with it): plain INSERTs, not the REPLACE of adopt, a batch at a time.
        if self.new_owner != owner {
            self.flush_new()?;
            owner.clone_into(&mut self.new_owner);
        }
        self.new_rows.push((id, fp));
        if self.new_rows.len() == NEW_ROWS {
            self.flush_new()?;
        }
        self.note_created(Field::Email, user.record, email, id);
        self.note_created(Field::ExternalId, user.record, ext, id);
        Ok(id)
    }

    /// Writes only the columns `u.changes` names: an unchanged email or
    /// external id keeps its index entries as they are.
    fn update(&mut self, u: &Update, owner: &str) -> Result<(), StoreError> {
        // Its triggers drop the user's `applied` row (and `adopt` replaces an owner).
        self.flush_new()?;
        let changed = |name: &str| u.changes.iter().any(|c| c.field == name);
        let old_keys = if changed("email") || changed("external_id") { self.keys_of(u.user_id)? } else { None };
        let mut sql = String::from("UPDATE users SET updated_at = ?1");
        let mut values: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(self.at.clone()), Box::new(u.user_id)];
        for c in TEXT_COLUMNS {
            if changed(c.column()) {
                values.push(Box::new(u.fields.get(c).map(str::to_string)));
                sql.push_str(&format!(", {} = ?{}", c.column(), values.len()));
            }
        }
        if changed("active") {
            values.push(Box::new(u.active));
            sql.push_str(&format!(", active = ?{}", values.len()));
        }
        if u.changes.iter().any(|c| c.field.starts_with("extra_fields.")) {
            values.push(Box::new(Value::Object(u.extra.clone()).to_string()));
            sql.push_str(&format!(", extra_fields = ?{}", values.len()));
        }
        sql.push_str(" WHERE id = ?2");
        self.tx.prepare_cached(&sql)?.execute(rusqlite::params_from_iter(values.iter()))?;
        if let Some((email, ext)) = old_keys {
            self.note_key(Field::Email, email.as_deref(), None);
            self.note_key(Field::ExternalId, ext.as_deref(), None);
            self.note_key(Field::Email, u.fields.email.as_deref(), Some(u.user_id));
            self.note_key(Field::ExternalId, u.fields.external_id.as_deref(), Some(u.user_id));
        }
        if u.adopt {
            self.adopt(u.user_id, owner)?;
        }
        Ok(())
    }

    fn clear_email(&mut self, id: i64) -> Result<(), StoreError> {
        self.flush_new()?;
        let old = self.keys_of(id)?;
        self.tx
            .prepare_cached("UPDATE users SET email = NULL, updated_at = ?2 WHERE id = ?1")?
            .execute(params![id, self.at])?;
        if let Some((email, _)) = old {
            self.note_key(Field::Email, email.as_deref(), None);
        }
        Ok(())
    }

    fn adopt(&mut self, id: i64, owner: &str) -> Result<(), StoreError> {
        self.flush_new()?;
        self.tx
            .prepare_cached("INSERT OR REPLACE INTO ownership (user_id, integration) VALUES (?1, ?2)")?
            .execute(params![id, owner])?;
        Ok(())
    }

    fn owned_active(&mut self, owner: &str) -> Result<u64, StoreError> {
        self.flush_new()?;
        if !self.prefetch {
            return Ok(self.tx.query_row(
                "SELECT COUNT(*) FROM users u JOIN ownership o ON o.user_id = u.id
                 WHERE o.integration = ?1 AND u.active = 1",
                [owner],
                |r| r.get::<_, i64>(0).map(|n| n as u64),
            )?);
        }
        // Kept for `deactivate_others`: the users it may deactivate are exactly
        // these minus the ones the run matched (any user that becomes owned and
        // active during a sync is one it matched).
        let mut ids = IdSet::default();
        let mut n = 0;
        let mut stmt = self.tx.prepare(
            "SELECT u.id FROM users u JOIN ownership o ON o.user_id = u.id WHERE o.integration = ?1 AND u.active = 1",
        )?;
        let mut rows = stmt.query([owner])?;
        while let Some(r) = rows.next()? {
            ids.insert(r.get(0)?);
            n += 1;
        }
        self.owned_at_start = Some((owner.to_string(), ids));
        Ok(n)
    }

    fn vanished(
        &mut self,
        owner: &str,
        keep: &IdSet,
        sample: usize,
    ) -> Result<(Vec<i64>, Vec<Deactivation>), StoreError> {
        self.flush_new()?;
        let mut gone = Vec::new();
        let mut shown = Vec::new();
        if let Some((_, start)) = self.owned_at_start.take().filter(|(o, _)| o == owner) {
            gone = start.iter().filter(|id| !keep.contains(*id)).collect();
            let mut keys = self.tx.prepare_cached("SELECT email, external_id FROM users WHERE id = ?1")?;
            for &id in gone.iter().take(sample) {
                let (email, ext): (Option<String>, Option<String>) =
                    keys.query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                shown.push(Deactivation { user_id: id, label: deactivation_label(id, email, ext) });
            }
        } else {
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
                    shown.push(Deactivation { user_id: id, label: deactivation_label(id, r.get(1)?, r.get(2)?) });
                }
            }
        }
        Ok((gone, shown))
    }

    fn deactivate(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        self.flush_new()?;
        let mut deactivate = self.tx.prepare_cached("UPDATE users SET active = 0, updated_at = ?2 WHERE id = ?1")?;
        for id in ids {
            deactivate.execute(params![id, self.at])?;
        }
        Ok(())
    }
}

fn deactivation_label(id: i64, email: Option<String>, ext: Option<String>) -> String {
    email.or_else(|| ext.map(|x| format!("external_id {x}"))).unwrap_or_else(|| format!("user #{id}"))
}

pub(super) fn write_run_end(tx: &Connection, run_id: i64, end: &RunEnd) -> Result<(), StoreError> {
    let Counts { fetched, pages, created, updated, deactivated, skipped } = end.counts;
    tx.execute(
        "UPDATE runs SET status = ?2, finished_at = ?3, fetched = ?4, created = ?5, updated = ?6,
             deactivated = ?7, skipped = ?8, error = ?9, pages = ?10, warnings = ?11, duration_ms = ?12,
             summary = ?13
         WHERE id = ?1",
        params![
            run_id,
            end.status.as_str(),
            now(),
            fetched,
            created,
            updated,
            deactivated,
            skipped,
            end.error,
            pages,
            (!end.warnings.is_empty()).then(|| end.warnings.join("\n")),
            end.duration_ms,
            end.summary
        ],
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
