//! OAuth tokens and authorization states, per integration.

use serde_json::Value;

use super::StoreError;

/// An integration's latest token response. Its `Debug` shows the
/// response's field names, never their values.
#[derive(Clone)]
pub struct StoredToken {
    /// The provider's JSON object; every string in it but `token_type` and `scope` is a secret.
    pub response: Value,
    /// Unix seconds; `None`: the provider gave no `expires_in`.
    pub expires_at: Option<i64>,
    pub updated_at: String,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken")
            .field("response", &crate::redact::Masked(&self.response))
            .field("expires_at", &self.expires_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// Where an integration's token and its pending authorization `state`s are kept.
pub trait Tokens {
    /// The integration's stored token, if it has one.
    fn token(&self, integration: &str) -> Result<Option<StoredToken>, StoreError>;
    /// Keeps `response` as the integration's token (replacing any before it).
    fn save_token(&self, integration: &str, response: &Value, expires_at: Option<i64>) -> Result<(), StoreError>;
    /// Remembers an authorize link's `state` until `expires_at` (unix seconds).
    fn put_state(&self, state: &str, integration: &str, redirect_url: &str, expires_at: i64) -> Result<(), StoreError>;
    /// Takes `state` back for `integration`, with the redirect URL its link
    /// carried: `None` when it was never handed out, was used already, belongs
    /// to another integration or has expired.
    fn take_state(&self, state: &str, integration: &str) -> Result<Option<String>, StoreError>;
    /// Notes how the exchange of a taken `state` ended (`error`: why it failed).
    fn finish_state(&self, state: &str, error: Option<&str>) -> Result<(), StoreError>;
    /// Where `state` stands: waiting for its callback, taken and exchanging, or done.
    fn state_outcome(&self, state: &str) -> Result<StateOutcome, StoreError>;
}

/// Where an authorize link's `state` stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateOutcome {
    /// No callback has brought it yet.
    Waiting,
    /// A callback took it; its code is being exchanged.
    Exchanging,
    /// The exchange stored a token.
    Stored,
    /// The exchange failed, and why.
    Failed(String),
    /// Not known: it expired, or was never handed out.
    Unknown,
}
