//! The HTTP API (seed 000): bulk export and import, run triggers, runs (a
//! list, or one with its requests and skips), integrations, health, metrics
//! and the status page (`status`). Off unless `[api] listen` is set; every
//! `/api/` route needs a bearer token from the config, compared in constant
//! time. Connections are accepted here (a limit, a header timeout), not by
//! `axum::serve`. Handlers do store work on blocking threads; an import is
//! one transaction.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

mod status;
mod watch;

use crate::config::Config;
use crate::error::Error;
use crate::export::ExportWriter;
use crate::port::{Figures, Runs, Users};
use crate::problem::Problem;
use crate::run::Trigger;
use crate::service::Service;
use crate::store::{Metrics, Store, StoreError};

/// Binds `[api] listen` when set; refuses to start without tokens.
pub async fn bind(config: &Config) -> Result<Option<tokio::net::TcpListener>, Error> {
    let Some(listen) = &config.api.listen else { return Ok(None) };
    if config.api.tokens.is_empty() {
        return Err(Error::Invalid(vec![Problem::new(
            &config.display_file(),
            "/api/tokens",
            "the API is on ([api] listen) but has no tokens: set tokens or token_file, or remove listen",
        )]));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Usage(format!("cannot listen on {listen} ([api] listen): {e}")))?;
    tracing::info!("API listening on {}", listener.local_addr().map_or(listen.clone(), |a| a.to_string()));
    Ok(Some(listener))
}

/// A request's headers must arrive within this of its first byte.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A kept-alive connection with no request is closed after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves the API until `shutdown` completes, at most `[api] max_connections`
/// connections at once.
pub async fn serve(listener: TcpListener, service: Arc<Service>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let max_connections = service.config().api.max_connections;
    serve_router(listener, router(service), max_connections, shutdown).await;
}

/// rosterd's one HTTP server loop (the API, and `rosterd oauth`'s callback
/// listener): serves `app` until `shutdown` completes. At most
/// `max_connections` connections are served at once: further clients wait
/// in the listen backlog (costing rosterd no file descriptor) until one
/// closes, and a client that sends no request within `HEADER_TIMEOUT` is
/// closed. Requests under way when it stops are finished.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let stream = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match stream {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors or a connection reset before accept: wait, do not spin.
                tracing::warn!("API: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // hyper's own header timeout also closes a kept-alive connection that
        // is idle: the watch below keeps the two apart (headers 10 s, idle 60 s).
        let watch = Arc::new(watch::Activity::default());
        let conn = hyper::server::conn::http1::Builder::new().header_read_timeout(None).serve_connection(
            hyper_util::rt::TokioIo::new(watch::Watched::new(stream, watch.clone())),
            hyper_util::service::TowerToHyperService::new(watch::Counted::new(app.clone(), watch.clone())),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let mut check = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = &mut conn => break,
                    _ = check.tick() => {
                        // Dropping the connection closes it.
                        if watch.expired(HEADER_TIMEOUT, IDLE_TIMEOUT) {
                            break;
                        }
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    // Requests under way finish; idle connections close.
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await.is_err() {
        tracing::warn!("API: connections still open 5 s after stopping were dropped");
    }
}

pub fn router(service: Arc<Service>) -> Router {
    let limit = usize::try_from(service.config().api.max_body_bytes).unwrap_or(usize::MAX);
    let api = Router::new()
        .route("/api/v1/user/bulk-export", post(export))
        .route("/api/v1/user/bulk-import", post(import))
        .route("/api/v1/integrations/{name}/run", post(trigger))
        .route("/api/v1/runs", get(runs))
        .route("/api/v1/runs/{id}", get(run_detail))
        .route("/api/v1/integrations", get(integrations))
        .layer(DefaultBodyLimit::max(limit))
        .route_layer(middleware::from_fn_with_state(service.clone(), auth))
        .route_layer(middleware::from_fn_with_state(service.clone(), declared_size));
    Router::new()
        .route("/", get(status::page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/oauth/{name}/callback", get(oauth_callback))
        .merge(api)
        .with_state(service)
}

/// `GET /oauth/NAME/callback` (no token: the provider sends the admin's
/// browser here): the `state` must be one `rosterd oauth NAME` handed out,
/// unused and unexpired; then the code is exchanged and the token stored.
async fn oauth_callback(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
) -> Response {
    use crate::oauth::{Callback, CallbackError};
    let page = |status: StatusCode, text: &str| {
        let body = crate::html::message_page(text);
        (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
    };
    let Some(m) = service.manifest(&name) else {
        return page(StatusCode::NOT_FOUND, &format!("no integration named {name} is loaded"));
    };
    let callback = Callback::parse(uri.query().unwrap_or(""));
    let db = match service.database() {
        Ok(db) => db,
        Err(e) => return page(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot open the store: {e}")),
    };
    match crate::oauth::complete(&m, &service.config(), &db, &callback).await {
        Ok(_) => {
            tracing::info!(integration = %name, "OAuth token stored from the callback");
            page(StatusCode::OK, &format!("rosterd stored the token for {name}. You can close this window."))
        }
        Err(e @ (CallbackError::State | CallbackError::Refused(_) | CallbackError::NoCode)) => {
            tracing::warn!(integration = %name, "OAuth callback refused: {e}");
            page(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Err(e) => {
            tracing::warn!(integration = %name, "OAuth callback failed: {e}");
            page(StatusCode::BAD_GATEWAY, &e.to_string())
        }
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// Compares without stopping at the first difference, so timing does not reveal a token's prefix.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(service): State<Arc<Service>>, request: Request, next: Next) -> Response {
    // The scheme is case-insensitive (RFC 9110 section 11.1).
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let config = service.config();
    let ok = given.is_some_and(|g| {
        config.api.tokens.iter().fold(false, |hit, t| hit | same(g.as_bytes(), t.expose().as_bytes()))
    });
    if !ok {
        let mut response =
            error(StatusCode::UNAUTHORIZED, "missing or invalid token: send Authorization: Bearer <token>");
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(request).await
}

/// A request that says its body is over `[api] max_body_bytes` gets 413
/// before any of the body is read.
async fn declared_size(State(service): State<Arc<Service>>, request: Request, next: Next) -> Response {
    let limit = service.config().api.max_body_bytes;
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return too_large(limit);
    }
    next.run(request).await
}

fn too_large(limit: u64) -> Response {
    error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {limit} bytes ([api] max_body_bytes)"))
}

/// Runs store work on a blocking thread; a store error becomes a 503 with its message.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(store_error(e)),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// `blocking` with a connection from the process's store.
async fn with_store<T: Send + 'static>(
    service: &Service,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response> {
    let db = service.database().map_err(store_error)?;
    blocking(move || f(&mut *db.connect()?)).await
}

fn store_error(e: impl std::fmt::Display) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

async fn import(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => return too_large(service.config().api.max_body_bytes),
        Err(r) => return error(r.status(), r.body_text()),
    };
    let csv =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("text/csv"));
    let parsed = if csv { crate::import::parse_csv(&body) } else { crate::import::parse_json(&body) };
    let records = match parsed {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.0),
    };
    match with_store(&service, move |s| crate::run::import(s, &records)).await {
        Ok(reply) => Json(reply).into_response(),
        Err(r) => r,
    }
}

async fn export(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    let csv = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/csv"));
    let escape = service.config().csv_escape_formulas;
    let db = match service.database() {
        Ok(db) => db,
        Err(e) => return store_error(e),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let result = db.connect().map_err(std::io::Error::other).and_then(|store| {
            let mut chunk = ExportWriter::new(csv, escape);
            store
                .export_each(|fields, created, updated| {
                    let row = crate::export::ExportRow::new(fields, created, updated);
                    chunk.push(&row);
                    chunk
                        .full()
                        .then(|| tx.blocking_send(Ok(Bytes::from(chunk.take()))))
                        .is_none_or(|sent| sent.is_ok())
                })
                .map_err(std::io::Error::other)?;
            chunk.finish();
            let _ = tx.blocking_send(Ok(Bytes::from(chunk.take())));
            Ok(())
        });
        if let Err(e) = result {
            tracing::error!("export failed: {e}");
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let content_type = if csv { "text/csv; charset=utf-8" } else { "application/json" };
    ([(header::CONTENT_TYPE, content_type)], Body::from_stream(stream)).into_response()
}

async fn trigger(State(service): State<Arc<Service>>, Path(name): Path<String>) -> Response {
    let Some(m) = service.manifest(&name) else {
        return error(StatusCode::NOT_FOUND, format!("no integration named {name}"));
    };
    let started = tokio::task::block_in_place(|| service.trigger(m, Trigger::Api));
    match started {
        Ok(Some(run_id)) => {
            (StatusCode::ACCEPTED, Json(json!({"run_id": run_id, "integration": name, "status": "running"})))
                .into_response()
        }
        Ok(None) => error(StatusCode::CONFLICT, format!("a run of {name} is in progress")),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
struct RunsQuery {
    integration: Option<String>,
    limit: Option<u32>,
}

async fn runs(State(service): State<Arc<Service>>, Query(q): Query<RunsQuery>) -> Response {
    let limit = q.limit.unwrap_or(50).min(10_000);
    let result = with_store(&service, move |s| s.runs(q.integration.as_deref().filter(|i| !i.is_empty()), limit)).await;
    match result {
        Ok(rows) => Json(json!({"runs": rows})).into_response(),
        Err(r) => r,
    }
}

/// One run as `history --run ID --json` prints it: its row, requests and skips.
async fn run_detail(State(service): State<Arc<Service>>, Path(id): Path<i64>) -> Response {
    let found = with_store(&service, move |s| s.run_detail(id)).await;
    match found {
        Ok(Some(detail)) => Json(detail).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("there is no run {id}")),
        Err(r) => r,
    }
}

/// Every manifest in the folder: its schedule and next fire times and its
/// last run, or, for a file that does not validate, its problems.
async fn integrations(State(service): State<Arc<Service>>) -> Response {
    let config = service.config();
    let listed = with_store(&service, move |store| {
        let files = crate::manifest::files_in(&config.integrations_dir).map_err(|e| StoreError::Open {
            path: config.integrations_dir.clone(),
            reason: crate::describe_io(&e),
        })?;
        let now = chrono::Utc::now().with_timezone(&config.timezone);
        let mut out = Vec::new();
        for file in files {
            let name = crate::manifest::name_of(&file);
            let last = store.runs(Some(&name), 1)?.into_iter().next().map(|r| {
                json!({"id": r.id, "status": r.status, "finished_at": r.finished_at})
            });
            let entry = match crate::manifest::load(&file, &config) {
                Ok(m) => json!({
                    "name": name,
                    "action": m.action.as_str(),
                    "schedule": m.schedule.as_ref().map(|s| s.expr.clone()),
                    "next": m.schedule.as_ref().map_or(Vec::new(), |s| s.upcoming(now, 3).iter().map(|t| t.to_rfc3339()).collect()),
                    "last_run": last,
                    "problems": [],
                }),
                Err(problems) => json!({
                    "name": name,
                    "last_run": last,
                    "problems": problems.iter().map(|p| json!({"pointer": p.pointer, "reason": p.reason})).collect::<Vec<_>>(),
                }),
            };
            out.push(entry);
        }
        Ok(out)
    })
    .await;
    match listed {
        Ok(list) => Json(json!({"integrations": list})).into_response(),
        Err(r) => r,
    }
}

async fn healthz(State(service): State<Arc<Service>>) -> Response {
    let store = with_store(&service, |s| s.runs(None, 1).map(|_| ())).await;
    match (store, service.is_ticking()) {
        (Ok(()), true) => Json(json!({"status": "ok"})).into_response(),
        (Ok(()), false) => error(StatusCode::SERVICE_UNAVAILABLE, "the scheduler is not running"),
        (Err(r), _) => r,
    }
}

async fn metrics(State(service): State<Arc<Service>>) -> Response {
    match with_store(&service, |s| s.metrics()).await {
        Ok(m) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics_text(&m)).into_response(),
        Err(r) => r,
    }
}

/// The Prometheus text exposition of `m`.
fn metrics_text(m: &Metrics) -> String {
    use std::fmt::Write as _;
    const BUCKETS: [f64; 10] = [0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0];
    let mut out = String::new();
    out.push_str(
        "# HELP rosterd_runs_total Runs by integration, status and whether they were dry runs.\n\
         # TYPE rosterd_runs_total counter\n",
    );
    for (i, s, dry, n) in &m.runs {
        let _ =
            writeln!(out, "rosterd_runs_total{{integration=\"{}\",status=\"{s}\",dry_run=\"{dry}\"}} {n}", label(i));
    }
    out.push_str(
        "# HELP rosterd_last_success_timestamp_seconds When each integration last ran ok.\n\
         # TYPE rosterd_last_success_timestamp_seconds gauge\n",
    );
    for (i, t) in &m.last_success {
        let _ = writeln!(out, "rosterd_last_success_timestamp_seconds{{integration=\"{}\"}} {t}", label(i));
    }
    out.push_str(
        "# HELP rosterd_run_duration_seconds How long finished runs took.\n\
         # TYPE rosterd_run_duration_seconds histogram\n",
    );
    for (i, durations) in &m.durations {
        let i = label(i);
        for b in BUCKETS {
            let n = durations.iter().filter(|d| **d <= b).count();
            let _ = writeln!(out, "rosterd_run_duration_seconds_bucket{{integration=\"{i}\",le=\"{b}\"}} {n}");
        }
        let (n, sum) = (durations.len(), durations.iter().sum::<f64>());
        let _ = writeln!(out, "rosterd_run_duration_seconds_bucket{{integration=\"{i}\",le=\"+Inf\"}} {n}");
        let _ = writeln!(out, "rosterd_run_duration_seconds_sum{{integration=\"{i}\"}} {sum}");
        let _ = writeln!(out, "rosterd_run_duration_seconds_count{{integration=\"{i}\"}} {n}");
    }
    let totals = [
        ("rosterd_records_fetched_total", "Records fetched by finished runs."),
        (
            "rosterd_users_created_total",
            "Users created in the store by runs that applied (a push's are in rosterd_push_requests_total).",
        ),
        ("rosterd_users_updated_total", "Users updated by runs that applied."),
        ("rosterd_users_deactivated_total", "Users deactivated by runs that applied."),
    ];
    for (k, (name, help)) in totals.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (i, values) in &m.totals {
            let _ = writeln!(out, "{name}{{integration=\"{}\"}} {}", label(i), values[k]);
        }
    }
    out.push_str(
        "# HELP rosterd_source_responses_total HTTP responses from sources by status class.\n\
         # TYPE rosterd_source_responses_total counter\n",
    );
    for (i, class, n) in &m.responses {
        let _ = writeln!(out, "rosterd_source_responses_total{{integration=\"{}\",class=\"{class}\"}} {n}", label(i));
    }
    out.push_str(
        "# HELP rosterd_push_requests_total Requests pushes sent to their targets by kind and outcome.\n\
         # TYPE rosterd_push_requests_total counter\n",
    );
    for (i, kind, outcome, n) in &m.push {
        let _ = writeln!(
            out,
            "rosterd_push_requests_total{{integration=\"{}\",kind=\"{}\",outcome=\"{outcome}\"}} {n}",
            label(i),
            label(kind)
        );
    }
    out.push_str("# HELP rosterd_users Users by active state.\n# TYPE rosterd_users gauge\n");
    let _ = writeln!(out, "rosterd_users{{active=\"1\"}} {}", m.users_active);
    let _ = writeln!(out, "rosterd_users{{active=\"0\"}} {}", m.users_inactive);
    out
}

/// Escapes a Prometheus label value.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
