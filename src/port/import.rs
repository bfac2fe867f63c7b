//! What an import's rules ask the store about the users a request names,
//! and the writes they decide. The store answers inside the import's
//! transaction; `run::import` drives the two.

use serde_json::{Map, Value};

/// A user as import sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Existing {
    pub id: i64,
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub phone: Option<String>,
    pub job: Option<String>,
    pub extra: Map<String, Value>,
}

/// The fields an import writes for one user.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// `None` creates a user.
    pub id: Option<i64>,
    pub external_id: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub phone: Option<String>,
    pub job: Option<String>,
    pub extra: Map<String, Value>,
}

/// What planning an import asks the store, record by record, so importing a
/// few users into a large directory never reads every user.
pub trait ImportLookup {
    type Error;
    /// The user with this `external_id`.
    fn by_external_id(&mut self, ext: &str) -> Result<Option<Existing>, Self::Error>;
    /// Who holds this email (compared as the store compares emails).
    fn email_holder(&mut self, email: &str) -> Result<Option<i64>, Self::Error>;
    /// Whether a user other than `except` has this username, ignoring ASCII case.
    fn username_taken(&mut self, username: &str, except: Option<i64>) -> Result<bool, Self::Error>;
}
