//! The users a run's rules read and change, and the plain types of the
//! decisions written through it. The store implements `Directory` inside a
//! run's one transaction; `plan::MemoryDirectory` implements it in memory.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{RunEnd, StoreError};
use crate::index::{Carriers, Holder, IdSet};
use crate::mapping::RecordArena;
use crate::user::{Field, Fields, StoredUser};

/// A store a run applies through: it opens the run's one transaction over
/// the users, in which the rules decide its records.
pub trait Apply {
    type Tx<'t>: RunTransaction
    where
        Self: 't;
    /// Opens run `run_id`'s write transaction for `records`; dropped
    /// unfinished, it rolls back.
    fn begin_apply<'t>(&'t mut self, run_id: i64, records: &'t RecordArena) -> Result<Self::Tx<'t>, StoreError>;
}

/// A run's open transaction: the `Directory` the rules decide in, then how the run ends.
pub trait RunTransaction: Directory<Error = StoreError> {
    /// A status that commits (`ok`) keeps the users' changes with the
    /// `runs` row; any other rolls every change back and records only the row.
    fn finish(self, end: &RunEnd) -> Result<(), StoreError>;
}

/// The users a plan reads and changes. Lookups see the changes already made.
pub trait Directory {
    type Error;
    /// The user holding `value` in `key` (`Field::Email`, case-insensitive, or `Field::ExternalId`).
    fn find(&mut self, key: Field, value: &str) -> Result<Option<StoredUser>, Self::Error>;
    /// `find` for a caller that never reads the owner: `owner` may be `None`
    /// though an integration owns the user (a directory may save the search).
    fn find_without_owner(&mut self, key: Field, value: &str) -> Result<Option<StoredUser>, Self::Error> {
        self.find(key, value)
    }
    /// Whether any user holds `value` in `key`: `find` without reading the user.
    fn holds(&mut self, key: Field, value: &str) -> Result<bool, Self::Error> {
        Ok(self.find_id(key, value)?.is_some())
    }
    /// The id of the user holding `value` in `key`: `find` without reading the user.
    fn find_id(&mut self, key: Field, value: &str) -> Result<Option<i64>, Self::Error> {
        Ok(self.find(key, value)?.map(|u| u.id))
    }
    /// `find_id` for the value record `i` (of the records being planned) has in
    /// `key`, when the directory knows it without a search; `Unknown` otherwise.
    fn holder_of_record(&mut self, _i: usize, _key: Field) -> Result<Holder, Self::Error> {
        Ok(Holder::Unknown)
    }
    /// For each record's fingerprint (`fps` computes them, one per record,
    /// when the directory needs them), the user carrying it now, when the
    /// directory can answer for all of them at once (one pass instead of a
    /// lookup per record); `None` when it cannot.
    fn carriers(&mut self, _fps: impl FnOnce() -> Vec<u128>) -> Result<Option<Carriers>, Self::Error> {
        Ok(None)
    }
    /// The fingerprint `set_fingerprint` left on user `id`, unless the user
    /// changed in any other way since (`None` then, or when there is none).
    fn fingerprint(&mut self, id: i64) -> Result<Option<u128>, Self::Error>;
    /// Notes that user `id` holds exactly what the record with fingerprint `fp` wrote.
    fn set_fingerprint(&mut self, id: i64, fp: u128) -> Result<(), Self::Error>;
    /// Adds a user owned by `owner` (with `fp`, carrying that fingerprint); returns its id.
    fn create(&mut self, user: &NewUser, owner: &str, fp: Option<u128>) -> Result<i64, Self::Error>;
    /// Writes a user's fields, `active` and `extra_fields`; with `adopt`, `owner` takes it.
    fn update(&mut self, update: &Update, owner: &str) -> Result<(), Self::Error>;
    fn clear_email(&mut self, id: i64) -> Result<(), Self::Error>;
    fn adopt(&mut self, id: i64, owner: &str) -> Result<(), Self::Error>;
    /// How many active users `owner` owns.
    fn owned_active(&mut self, owner: &str) -> Result<u64, Self::Error>;
    /// `owner`'s active users other than `keep`, the users a sync would
    /// deactivate, with the first `sample` of them labelled. Reads only:
    /// the run judges its limit on them before any is written.
    fn vanished(
        &mut self,
        owner: &str,
        keep: &IdSet,
        sample: usize,
    ) -> Result<(Vec<i64>, Vec<Deactivation>), Self::Error>;
    /// Deactivates these users.
    fn deactivate(&mut self, ids: &[i64]) -> Result<(), Self::Error>;
}

/// A record the plan did not use, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skip {
    pub record: usize,
    pub key: Option<String>,
    pub reason: String,
}

/// A user a run creates, from record `record`.
#[derive(Debug, Clone, Serialize)]
pub struct NewUser {
    pub record: usize,
    pub fields: Fields,
    pub active: bool,
    pub extra: Map<String, Value>,
}

/// A user a run changes: its fields after the change, and each change.
#[derive(Debug, Clone, Serialize)]
pub struct Update {
    pub user_id: i64,
    pub record: usize,
    /// The user's email before the change, for display.
    pub label: String,
    pub changes: Vec<Change>,
    pub fields: Fields,
    pub active: bool,
    pub extra: Map<String, Value>,
    /// The integration takes ownership with this update.
    pub adopt: bool,
}

/// One field of a user, before and after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// A user named for display: one deactivated, or whose email was cleared.
#[derive(Debug, Clone, Serialize)]
pub struct Deactivation {
    pub user_id: i64,
    pub label: String,
}
