//! What an import's rules ask the store about the users a request names,
//! and the writes they decide. The store answers inside the import's
//! transaction; `run::import` drives the two.

use serde_json::{Map, Value};

use super::StoreError;
use crate::user::{Fields, StoredUser};

/// A store an import applies through: one transaction per import.
pub trait Import {
    type Tx<'t>: ImportTransaction
    where
        Self: 't;
    /// Opens an import's write transaction; dropped without `commit`, it rolls back.
    fn begin_import(&mut self) -> Result<Self::Tx<'_>, StoreError>;
}

/// An import's open transaction: the import rules ask it, then it writes their decisions.
pub trait ImportTransaction: ImportLookup<Error = StoreError> {
    fn commit(self, writes: &[Write]) -> Result<(), StoreError>;
}

/// What an import writes for one user: every text field (those the request
/// leaves out keep the user's values) and the extra fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// `None` creates a user.
    pub id: Option<i64>,
    /// `external_id` is always set: import matches on it.
    pub fields: Fields,
    pub extra: Map<String, Value>,
}

/// What planning an import asks the store, record by record, so importing a
/// few users into a large directory never reads every user.
pub trait ImportLookup {
    type Error;
    /// The user with this `external_id` (its owner is not read).
    fn by_external_id(&mut self, ext: &str) -> Result<Option<StoredUser>, Self::Error>;
    /// Who holds this email (compared as the store compares emails).
    fn email_holder(&mut self, email: &str) -> Result<Option<i64>, Self::Error>;
    /// Whether a user other than `except` has this username, ignoring ASCII case.
    fn username_taken(&mut self, username: &str, except: Option<i64>) -> Result<bool, Self::Error>;
}
