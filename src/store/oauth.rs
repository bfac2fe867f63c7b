//! The OAuth tables: one stored token response per integration, and the
//! authorize links' `state` values waiting for their callback.

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::{Store, StoreError, now};
use crate::port::{StateOutcome, StoredToken, Tokens};

impl Tokens for Store {
    fn token(&self, integration: &str) -> Result<Option<StoredToken>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT response, expires_at, updated_at FROM oauth_tokens WHERE integration = ?1",
                params![integration],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, String>(2)?)),
            )
            .optional()?;
        Ok(row.map(|(text, expires_at, updated_at)| StoredToken {
            response: serde_json::from_str(&text).unwrap_or(Value::Null),
            expires_at,
            updated_at,
        }))
    }

    fn save_token(&self, integration: &str, response: &Value, expires_at: Option<i64>) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO oauth_tokens (integration, response, expires_at, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (integration) DO UPDATE SET response = excluded.response,
                 expires_at = excluded.expires_at, updated_at = excluded.updated_at",
            params![integration, response.to_string(), expires_at, now()],
        )?;
        Ok(())
    }

    /// Remembers an authorize link's `state` until `expires_at` (unix seconds).
    fn put_state(&self, state: &str, integration: &str, redirect_url: &str, expires_at: i64) -> Result<(), StoreError> {
        let now_secs = chrono::Utc::now().timestamp();
        self.conn.execute("DELETE FROM oauth_states WHERE expires_at <= ?1", params![now_secs])?;
        self.conn.execute(
            "INSERT INTO oauth_states (state, integration, redirect_url, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![state, integration, redirect_url, expires_at],
        )?;
        Ok(())
    }

    /// Takes `state` back for `integration`, with the redirect URL its link
    /// carried: `None` when it was never handed out, was used already, belongs
    /// to another integration or has expired. It stays (taken) until it
    /// expires, so the command that handed it out learns how the exchange ended.
    fn take_state(&self, state: &str, integration: &str) -> Result<Option<String>, StoreError> {
        let now_secs = chrono::Utc::now().timestamp();
        let row = self
            .conn
            .query_row(
                "UPDATE oauth_states SET taken = 1 WHERE state = ?1 AND taken = 0
                 RETURNING integration, redirect_url, expires_at",
                params![state],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)),
            )
            .optional()?;
        Ok(row.and_then(|(owner, redirect_url, expires_at)| {
            (owner == integration && expires_at > now_secs).then_some(redirect_url)
        }))
    }

    fn finish_state(&self, state: &str, error: Option<&str>) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE oauth_states SET finished = 1, error = ?2 WHERE state = ?1", params![state, error])?;
        Ok(())
    }

    fn state_outcome(&self, state: &str) -> Result<StateOutcome, StoreError> {
        let row = self
            .conn
            .query_row("SELECT taken, finished, error FROM oauth_states WHERE state = ?1", params![state], |r| {
                Ok((r.get::<_, bool>(0)?, r.get::<_, bool>(1)?, r.get::<_, Option<String>>(2)?))
            })
            .optional()?;
        Ok(match row {
            None => StateOutcome::Unknown,
            Some((false, _, _)) => StateOutcome::Waiting,
            Some((true, false, _)) => StateOutcome::Exchanging,
            Some((true, true, None)) => StateOutcome::Stored,
            Some((true, true, Some(e))) => StateOutcome::Failed(e),
        })
    }
}
