//! OAuth 2.0 as a manifest's `oauth` block describes it: the token a run
//! needs (fetched for client credentials, renewed a minute before it
//! expires), the authorize link with its single-use `state`, and the
//! exchange of the code a callback brings. Tokens live in the store; every
//! value of them is registered as a secret before anything can print it.
//! How the callback arrives (a local listener, a pasted URL, the daemon's
//! route) is the caller's business.

use serde_json::{Map, Value};

use crate::config::Config;
use futures_util::future::BoxFuture;

use crate::fetch::{self, Client, FetchError, Renew, Token};
use crate::manifest::{Manifest, OAuth, Step};
use crate::port::Tokens;
use crate::redact::Redactor;
use crate::store::{Database, Store, StoreError, StoredToken};

/// A token is renewed when it expires within this many seconds.
pub const RENEW_EARLY_SECS: i64 = 60;
/// `rosterd oauth`'s port when `[oauth] redirect_url` is not set.
pub const DEFAULT_PORT: u16 = 8976;

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0} has no \"oauth\" block; it needs no token")]
    NoBlock(String),
    #[error("no OAuth token is stored for {0} yet: run `rosterd oauth {0}` first")]
    NoToken(String),
    #[error("getting an OAuth token failed: {0}")]
    Token(FetchError),
    #[error("renewing the OAuth token failed: {0}")]
    Renew(FetchError),
    #[error("the authorize link cannot be made: {0}")]
    Link(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `{{ redirect_url }}`: `[oauth] redirect_url`, else rosterd's own listener on `port`.
pub fn redirect_url(config: &Config, port: u16) -> String {
    config.oauth.redirect_url.clone().unwrap_or_else(|| format!("http://127.0.0.1:{port}/oauth/callback"))
}

fn block(m: &Manifest) -> Result<&OAuth, OAuthError> {
    m.oauth.as_ref().ok_or_else(|| OAuthError::NoBlock(m.name.clone()))
}

/// Names of token fields that are not secrets (everything else is).
const NOT_SECRET: &[&str] = &["token_type", "scope", "expires_in", "ext_expires_in", "id_token_type"];

/// The token values a redactor must hide: every string field but a few descriptive ones.
pub fn secret_fields(response: &Value) -> Vec<(String, String)> {
    let Some(obj) = response.as_object() else { return Vec::new() };
    obj.iter()
        .filter(|(k, _)| !NOT_SECRET.contains(&k.as_str()))
        .filter_map(|(k, v)| v.as_str().map(|s| (format!("oauth.{k}"), s.to_string())))
        .collect()
}

/// Registers every secret value of a token response with `redactor`: the
/// one place a token's values become secrets (stored, renewed or new).
pub fn hide(redactor: &Redactor, response: &Value) {
    for (label, value) in secret_fields(response) {
        redactor.add(&label, &value);
    }
}

/// The token a run of `m` uses, put into `values` as `oauth` (with
/// `redirect_url`): the stored one, renewed when it expires within a
/// minute, or for client credentials a new one when none is stored.
/// Nothing for a manifest without an `oauth` block.
pub async fn prepare(
    m: &Manifest,
    config: &Config,
    db: &Database,
    values: &mut Map<String, Value>,
    client: &mut Client,
) -> Result<(), OAuthError> {
    let Some(o) = &m.oauth else { return Ok(()) };
    values.insert("redirect_url".into(), Value::String(redirect_url(config, DEFAULT_PORT)));
    let stored = db.connect()?.token(&m.name)?;
    if let Some(t) = &stored {
        hide(client.redactor(), &t.response);
    }
    let now = chrono::Utc::now().timestamp();
    let response = match stored {
        None if o.needs_consent() => return Err(OAuthError::NoToken(m.name.clone())),
        None => {
            tracing::info!("getting an OAuth token (client credentials)");
            let answer = fetch::token_request(m, &o.access_token, values.clone(), None, client, "oauth access_token")
                .await
                .map_err(OAuthError::Token)?;
            keep(db, &m.name, client.redactor(), Token::new(answer))?
        }
        Some(t) if t.expires_at.is_some_and(|at| at - now <= RENEW_EARLY_SECS) => {
            let step = match (&o.refresh, o.needs_consent()) {
                (Some(refresh), _) => refresh,
                (None, false) => &o.access_token,
                // A code-flow token without `refresh` cannot be renewed here; the source will say if it is dead.
                (None, true) => {
                    values.insert("oauth".into(), t.response.clone());
                    return Ok(());
                }
            };
            tracing::info!("renewing the OAuth token (it expires within {RENEW_EARLY_SECS} s)");
            let mut ctx = values.clone();
            ctx.insert("oauth".into(), t.response.clone());
            let answer =
                fetch::token_request(m, step, ctx, None, client, "oauth renewal").await.map_err(OAuthError::Renew)?;
            keep(db, &m.name, client.redactor(), Token::new(fetch::merge(&t.response, answer)))?
        }
        Some(t) => t.response,
    };
    values.insert("oauth".into(), response);
    Ok(())
}

/// The `Renew` port a run's fetch calls when a source answers 401: the
/// manifest's `refresh` request (or, for client credentials, a new token),
/// merged into the refused token, its values marked secret and stored.
/// It owns what it needs, so a push's sends, running as tasks of their own, can share one.
pub struct Renewer {
    m: std::sync::Arc<Manifest>,
    db: Database,
    /// The template values a renewal renders with (form values, `redirect_url`).
    values: Map<String, Value>,
    /// The latest token this renewer got, if it renewed at all.
    latest: Option<Value>,
}

impl Renewer {
    pub fn new(m: std::sync::Arc<Manifest>, db: &Database, values: &Map<String, Value>) -> Self {
        Renewer { m, db: db.clone(), values: values.clone(), latest: None }
    }

    /// The token response it last renewed, for the rest of the run.
    pub fn latest(&self) -> Option<&Value> {
        self.latest.as_ref()
    }

    fn step(&self) -> Option<&Step> {
        let o = self.m.oauth.as_ref()?;
        o.refresh.as_ref().or((!o.needs_consent()).then_some(&o.access_token))
    }
}

impl Renew for Renewer {
    fn can_renew(&self) -> bool {
        self.step().is_some()
    }

    fn renew<'r>(&'r mut self, client: &'r mut Client, old: &'r Value) -> BoxFuture<'r, Result<Value, FetchError>> {
        Box::pin(async move {
            let Some(step) = self.step().cloned() else { return Ok(old.clone()) };
            let mut ctx = self.values.clone();
            ctx.insert("oauth".into(), old.clone());
            let answer = fetch::token_request(&self.m, &step, ctx, None, client, "oauth renewal").await?;
            let token = Token::new(fetch::merge(old, answer));
            // A token that cannot be stored still serves this run; the next one renews again.
            if let Err(e) = keep(&self.db, &self.m.name, client.redactor(), token.clone()) {
                tracing::error!("cannot store the renewed OAuth token: {e}");
            }
            self.latest = Some(token.response.clone());
            Ok(token.response)
        })
    }
}

/// Marks a new token's values secret (the one place that does) and stores it.
fn keep(db: &Database, name: &str, redactor: &Redactor, token: Token) -> Result<Value, OAuthError> {
    hide(redactor, &token.response);
    db.connect()?.save_token(name, &token.response, token.expires_at())?;
    Ok(token.response)
}

/// A new authorize link for `m` and the `state` in it, remembered for
/// `ttl_secs` so a callback can bring it back once.
pub fn authorize(
    m: &Manifest,
    store: &Store,
    redirect_url: &str,
    ttl_secs: i64,
) -> Result<(String, String), OAuthError> {
    let o = block(m)?;
    let Some(template) = &o.authenticate_url else {
        return Err(OAuthError::Link(format!(
            "{} uses client credentials (its oauth block has no authenticate_url); nobody needs to authorize it",
            m.name
        )));
    };
    let (mut values, _) = m.template_values();
    values.insert("redirect_url".into(), Value::String(redirect_url.to_string()));
    let text = crate::template::Renderer::default()
        .render(template, &Value::Object(values))
        .map_err(|e| OAuthError::Link(format!("authenticate_url: {e}")))?;
    let mut url = reqwest::Url::parse(&text)
        .map_err(|e| OAuthError::Link(format!("authenticate_url renders to \"{text}\", not a URL: {e}")))?;
    let state = crate::manifest::random_hex();
    // ChiefOnboarding's Google manifest carries a fixed `state`; rosterd's own replaces it.
    let pairs: Vec<(String, String)> =
        url.query_pairs().filter(|(k, _)| k != "state").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    url.query_pairs_mut().clear().extend_pairs(pairs).append_pair("state", &state);
    store.put_state(&state, &m.name, redirect_url, chrono::Utc::now().timestamp() + ttl_secs)?;
    Ok((url.to_string(), state))
}

/// Runs `access_token` for `m` (with `code=` appended unless `without_code`
/// or no code) and stores the answer.
pub async fn exchange(
    m: &Manifest,
    config: &Config,
    db: &Database,
    redirect_url: &str,
    code: Option<&str>,
) -> Result<StoredToken, OAuthError> {
    let o = block(m)?;
    let (mut values, redactor) = m.template_values();
    values.insert("redirect_url".into(), Value::String(redirect_url.to_string()));
    let code = code.filter(|_| !o.without_code);
    if let Some(code) = code {
        redactor.add("code", code);
    }
    let mut client = Client::new(&config.http, redactor.clone(), m.allowed_origins.clone())
        .map_err(|e| OAuthError::Token(redacted(e, &redactor)))?;
    let answer = fetch::token_request(m, &o.access_token, values, code, &mut client, "oauth access_token")
        .await
        .map_err(|e| OAuthError::Token(redacted(e, &redactor)))?;
    keep(db, &m.name, &redactor, Token::new(answer))?;
    db.connect()?.token(&m.name)?.ok_or_else(|| OAuthError::NoToken(m.name.clone()))
}

/// A fetch error whose text went through `redactor` (it leaves here for a terminal or a browser).
fn redacted(e: FetchError, redactor: &Redactor) -> FetchError {
    FetchError::Request(redactor.redact(&e.to_string()))
}

/// What a callback brought: from a full URL, a path with a query, or a bare query.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    /// The provider's `error` (and `error_description`): the admin said no, or the request was wrong.
    pub error: Option<String>,
}

impl Callback {
    pub fn parse(text: &str) -> Callback {
        let text = text.trim();
        let query = match text.split_once('?') {
            Some((_, q)) => q,
            None if text.contains('=') => text,
            None => "",
        };
        let query = query.split('#').next().unwrap_or("");
        let url = reqwest::Url::parse(&format!("http://callback.invalid/?{query}")).ok();
        let mut out = Callback::default();
        let mut description = None;
        for (k, v) in url.iter().flat_map(|u| u.query_pairs()) {
            match k.as_ref() {
                "code" => out.code = Some(v.into_owned()),
                "state" => out.state = Some(v.into_owned()),
                "error" => out.error = Some(v.into_owned()),
                "error_description" => description = Some(v.into_owned()),
                _ => {}
            }
        }
        if let (Some(e), Some(d)) = (&mut out.error, description) {
            *e = format!("{e}: {d}");
        }
        out
    }
}

/// Takes a callback for `m` whose `state` the store handed out: checks the
/// state (single use, unexpired, this integration's), then exchanges the code.
pub async fn complete(
    m: &Manifest,
    config: &Config,
    db: &Database,
    callback: &Callback,
) -> Result<StoredToken, CallbackError> {
    let Some(state) = &callback.state else { return Err(CallbackError::State) };
    let Some(redirect_url) = db.connect().and_then(|s| s.take_state(state, &m.name)).map_err(OAuthError::from)? else {
        return Err(CallbackError::State);
    };
    let result = exchange_taken(m, config, db, &redirect_url, callback).await;
    // The command waiting on this state learns how it ended (the daemon's callback route).
    let error = result.as_ref().err().map(ToString::to_string);
    if let Err(e) = db.connect().and_then(|s| s.finish_state(state, error.as_deref())) {
        tracing::error!(integration = %m.name, "cannot record how the OAuth callback ended: {e}");
    }
    result
}

/// The code exchange of a callback whose state was taken.
async fn exchange_taken(
    m: &Manifest,
    config: &Config,
    db: &Database,
    redirect_url: &str,
    callback: &Callback,
) -> Result<StoredToken, CallbackError> {
    if let Some(e) = &callback.error {
        return Err(CallbackError::Refused(e.clone()));
    }
    let o = block(m)?;
    if callback.code.is_none() && !o.without_code {
        return Err(CallbackError::NoCode);
    }
    Ok(exchange(m, config, db, redirect_url, callback.code.as_deref()).await?)
}

/// Why a callback did not end in a stored token.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error(
        "the callback's state is not one rosterd handed out for this integration, was used already or has \
         expired; nothing was stored (start again with `rosterd oauth NAME`)"
    )]
    State,
    #[error("the provider refused: {0}")]
    Refused(String),
    #[error("the callback carries no code; if the provider sends none, set \"without_code\": true in the oauth block")]
    NoCode,
    #[error(transparent)]
    OAuth(#[from] OAuthError),
}

/// What `rosterd oauth NAME --status` says: expiry and field names, never values.
pub fn describe(name: &str, token: Option<&StoredToken>) -> String {
    let Some(t) = token else {
        return format!("{name}: no token stored; run `rosterd oauth {name}`");
    };
    let fields: Vec<&str> = t.response.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    let expiry = match t.expires_at {
        None => "does not expire (no expires_in)".to_string(),
        Some(at) => {
            let when = chrono::DateTime::from_timestamp(at, 0).map_or(at.to_string(), |d| d.to_rfc3339());
            let left = at - chrono::Utc::now().timestamp();
            if left > 0 { format!("expires {when} (in {left} s)") } else { format!("expired {when}") }
        }
    };
    format!("{name}: token stored {} UTC; {expiry}; fields: {}", t.updated_at, fields.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn descriptive_fields_are_not_secrets() {
        let fields =
            secret_fields(&json!({"access_token": "a", "token_type": "Bearer", "scope": "s", "id_token": "i"}));
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["oauth.access_token", "oauth.id_token"]);
    }

    #[test]
    fn callbacks_are_read_from_urls_paths_and_queries() {
        let want = Callback { code: Some("4/0A b".into()), state: Some("s1".into()), error: None };
        assert_eq!(Callback::parse("http://127.0.0.1:8976/oauth/callback?code=4%2F0A+b&state=s1"), want);
        assert_eq!(Callback::parse("/oauth/callback?state=s1&code=4/0A%20b#x"), want);
        assert_eq!(Callback::parse("  code=4/0A%20b&state=s1\n"), want);
        let denied = Callback::parse("?error=access_denied&error_description=no&state=s");
        assert_eq!(denied.error.as_deref(), Some("access_denied: no"));
        assert_eq!(Callback::parse("hello"), Callback::default());
    }
}
