//! `rosterd oauth NAME`: connects an integration to its OAuth provider. For
//! the authorization-code flow it prints the authorize link and waits for
//! the callback on 127.0.0.1, for the URL the browser ended on pasted on
//! stdin (the browser is often on another machine), or for the daemon's
//! callback route to have taken it; for client credentials it gets a token
//! at once. `--status` prints expiry and field names, never values.

use std::io::Write;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::routing::get;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::error::Error;
use crate::oauth::{self, Callback, CallbackError};
use crate::port::{StateOutcome, Tokens};
use crate::store::{Database, Store};

/// `--timeout`: `90s`, `10m`, `1h` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.find(|c: char| !c.is_ascii_digit()).map_or((text, ""), |i| text.split_at(i));
    let n: u64 = number.parse().map_err(|_| format!("\"{text}\" is not a duration; write 90s, 10m or 1h"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        other => return Err(format!("unknown unit \"{other}\" in \"{text}\"; use s, m or h")),
    };
    if secs == 0 {
        return Err("the timeout must be at least 1 second".into());
    }
    Ok(Duration::from_secs(secs))
}

pub(super) fn status(config: &Config, name: &str) -> Result<(), Error> {
    // The manifest must exist and have an `oauth` block; its secrets need not be there to say this.
    let path = super::manifest_path(config, name)?;
    let name = crate::manifest::name_of(&path);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Usage(format!("cannot read {}: {}", path.display(), crate::describe_io(&e))))?;
    let has_oauth = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("oauth").and_then(|o| o.as_object()).map(|o| !o.is_empty()))
        .unwrap_or(false);
    if !has_oauth {
        return Err(Error::Usage(format!("{name} has no \"oauth\" block; it uses no token")));
    }
    let store = Store::open_existing(&config.database)?;
    let token = store.token(&name)?;
    writeln!(std::io::stdout(), "{}", oauth::describe(&name, token.as_ref()))?;
    Ok(())
}

pub(super) async fn connect(config: &Config, name: &str, port: u16, timeout: Duration) -> Result<(), Error> {
    let m = super::find_manifest(config, name)?;
    let Some(block) = &m.oauth else {
        return Err(Error::Usage(format!("{} has no \"oauth\" block; it needs no token", m.name)));
    };
    let mut out = std::io::stdout();
    let db = Database::open(&config.database)?;
    if !block.needs_consent() {
        let redirect = oauth::redirect_url(config, port);
        let token = oauth::exchange(&m, config, &db, &redirect, None).await.map_err(failed)?;
        writeln!(out, "{}", oauth::describe(&m.name, Some(&token)))?;
        return Ok(());
    }
    let redirect = oauth::redirect_url(config, port);
    // Only rosterd's own redirect URL is listened on here; a configured one points elsewhere (the daemon).
    let listener = match &config.oauth.redirect_url {
        Some(_) => None,
        None => Some(tokio::net::TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
            Error::Usage(format!("cannot listen on 127.0.0.1:{port} for the callback: {e}; pass --port"))
        })?),
    };
    let store = db.connect()?;
    let (link, state) = oauth::authorize(&m, &store, &redirect, timeout.as_secs() as i64).map_err(failed)?;
    eprintln!(
        "Open this link in a browser and allow access (it waits {} s). Once the browser lands on {redirect}, \
         rosterd takes it; if that page is on another machine, paste the address the browser shows here:",
        timeout.as_secs()
    );
    writeln!(out, "{link}")?;
    out.flush()?;
    let outcome = tokio::time::timeout(timeout, wait(&m, config, &db, &state, listener)).await;
    match outcome {
        Ok(result) => {
            let token = result?;
            writeln!(out, "{}", oauth::describe(&m.name, Some(&token)))?;
            Ok(())
        }
        Err(_) => Err(Error::RunFailed(format!(
            "no callback came within {} s; nothing was stored (run `rosterd oauth {}` again)",
            timeout.as_secs(),
            m.name
        ))),
    }
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::RunFailed(e.to_string())
}

/// A callback the listener received, and where its page's answer goes.
type Call = (Callback, oneshot::Sender<(StatusCode, String)>);

/// The callback listener's routes, on the API's HTTP stack: the browser's
/// `GET /oauth/callback?...` is handed to `wait`, which says what page to
/// answer with; any other path is not ours.
fn callback_router(calls: mpsc::Sender<Call>) -> Router {
    let page = |status: StatusCode, text: &str| {
        (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], crate::html::message_page(text))
    };
    Router::new()
        .route(
            "/oauth/callback",
            get(move |uri: Uri| async move {
                let (reply, answer) = oneshot::channel();
                let callback = Callback::parse(uri.query().unwrap_or(""));
                let (status, text) = match calls.send((callback, reply)).await {
                    Ok(()) => {
                        answer.await.unwrap_or((StatusCode::SERVICE_UNAVAILABLE, "rosterd stopped waiting.".into()))
                    }
                    Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "rosterd stopped waiting.".into()),
                };
                page(status, &text)
            }),
        )
        .fallback(move || async move { page(StatusCode::NOT_FOUND, "Not the OAuth callback.") })
}

/// Waits for the first callback with our state: from the listener, stdin,
/// or the daemon (the state is gone from the store and a token is there).
/// The listener stops once it has answered the browser.
async fn wait(
    m: &crate::manifest::Manifest,
    config: &Config,
    db: &Database,
    state: &str,
    listener: Option<tokio::net::TcpListener>,
) -> Result<crate::store::StoredToken, Error> {
    let (calls, mut received) = mpsc::channel::<Call>(4);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = listener.map(|l| {
        let shutdown = async move {
            let _ = stopped.await;
        };
        tokio::spawn(crate::api::serve_router(l, callback_router(calls), 4, shutdown))
    });
    let result = wait_for_callback(m, config, db, state, &mut received).await;
    // The browser gets its page before the command ends.
    drop(stop);
    if let Some(server) = server {
        let _ = server.await;
    }
    result
}

async fn wait_for_callback(
    m: &crate::manifest::Manifest,
    config: &Config,
    db: &Database,
    state: &str,
    received: &mut mpsc::Receiver<Call>,
) -> Result<crate::store::StoredToken, Error> {
    let store = db.connect()?;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            Some((cb, reply)) = received.recv() => {
                match take(m, config, db, state, &cb).await {
                    Ok(token) => {
                        let _ = reply.send((StatusCode::OK, "rosterd stored the token. You can close this window.".into()));
                        return Ok(token);
                    }
                    Err(Taken::Foreign(why)) => {
                        eprintln!("refused a callback: {why}");
                        let _ = reply.send((StatusCode::BAD_REQUEST, why));
                    }
                    Err(Taken::Failed(e)) => {
                        let _ = reply.send((StatusCode::BAD_GATEWAY, "rosterd could not get the token; see the terminal.".into()));
                        return Err(e);
                    }
                }
            }
            line = stdin.next_line(), if stdin_open => {
                let line = match line {
                    Ok(Some(line)) => line,
                    _ => { stdin_open = false; continue }
                };
                if line.trim().is_empty() {
                    continue;
                }
                match take(m, config, db, state, &Callback::parse(&line)).await {
                    Ok(token) => return Ok(token),
                    Err(Taken::Foreign(why)) => eprintln!("refused the pasted address: {why}; paste the address the browser was sent to"),
                    Err(Taken::Failed(e)) => return Err(e),
                }
            }
            _ = poll.tick() => {
                // The daemon's callback route may have taken it: wait for its exchange to end.
                match store.state_outcome(state)? {
                    StateOutcome::Waiting | StateOutcome::Exchanging => {}
                    StateOutcome::Stored => {
                        return store.token(&m.name)?.ok_or_else(|| {
                            Error::RunFailed("the daemon stored the token, but it is gone; run this again".into())
                        });
                    }
                    StateOutcome::Failed(why) => {
                        return Err(Error::RunFailed(format!("the daemon took the callback, and the exchange failed: {why}")));
                    }
                    StateOutcome::Unknown => {
                        return Err(Error::RunFailed("the link's state expired; run `rosterd oauth NAME` again".into()));
                    }
                }
            }
        }
    }
}

enum Taken {
    /// Not our callback (another state, no code): keep waiting.
    Foreign(String),
    Failed(Error),
}

async fn take(
    m: &crate::manifest::Manifest,
    config: &Config,
    db: &Database,
    state: &str,
    cb: &Callback,
) -> Result<crate::store::StoredToken, Taken> {
    if cb.state.as_deref() != Some(state) {
        return Err(Taken::Foreign(match &cb.state {
            None => "it carries no state".into(),
            Some(_) => "its state is not the one in the link rosterd printed".into(),
        }));
    }
    oauth::complete(m, config, db, cb).await.map_err(|e| match e {
        CallbackError::NoCode => Taken::Foreign(e.to_string()),
        other => Taken::Failed(failed(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
