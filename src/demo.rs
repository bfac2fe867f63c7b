//! `rosterd demo`: an embedded sample HR source (BambooHR-shaped, with a few
//! messy records) and an embedded sample push target (seed 002's API, with
//! users of its own) on 127.0.0.1 at free ports, and the shipped example
//! manifests run against them, hosts swapped, into `./rosterd-demo.db`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::config;
use crate::error::Error;
use crate::manifest;
use crate::port::Outbound;
use crate::run::{RunOptions, Trigger};

/// The manifests the demo runs, in order, as shipped in `integrations/`.
/// The sync goes first: it gives users their external ids (BambooHR's `id`),
/// which a push matches on; create then finds every user there already.
const MANIFESTS: &[(&str, &str)] = &[
    ("bamboohr-sync", include_str!("../integrations/bamboohr-sync.json")),
    ("bamboohr-create", include_str!("../integrations/bamboohr-create.json")),
    ("bamboohr-update", include_str!("../integrations/bamboohr-update.json")),
    ("learnifier-push", include_str!("../integrations/learnifier-push.json")),
];
const REAL_HOST: &str = "https://api.bamboohr.com";
const REAL_TARGET: &str = "https://api.learnifier.com";
pub const DEMO_TARGET_KEY: &str = "demo-back-office-key";
pub const DEMO_KEY: &str = "demo-api-key";
pub const DEMO_COMPANY: &str = "demo-co";
pub const DEMO_REPORT: &str = "7";

/// The sample employees: mostly clean, a few as real exports have them.
pub fn employees() -> Vec<Value> {
    let people = [
        ("101", "Ann", "Lee", "ann.lee@example.org", "Engineering"),
        ("102", "Bob", "Jones", "Bob.Jones@Example.org", "Sales"),
        ("103", "Chidi", "Okafor", "chidi.okafor@example.org", "Finance"),
        ("104", "Dana", "Kim", "", "Engineering"),
        ("105", "Eero", "", "eero@example.org", "Support"),
        ("106", "Fatima", "Zahra", "fatima.zahra@example.org", "People"),
        ("107", "Gus", "Grant", "not-an-email", "Sales"),
        ("108", "Hana", "Sato", "hana.sato@example.org", "Engineering"),
        ("109", "Bob", "Jones", "bob.jones@example.org", "Sales"),
        ("110", "Ines", "Moreau", "ines.moreau@example.org", "Marketing"),
        ("111", "Jonas", "Berg", "jonas.berg@example.org", "Engineering"),
        ("112", "Kai", "Müller", "kai.muller@example.org", "Finance"),
    ];
    people
        .iter()
        .map(|(id, first, last, email, dept)| {
            json!({"id": id, "firstName": first, "lastName": last, "workEmail": email, "department": dept})
        })
        .collect()
}

/// Prints what a push sent: each request's kind, user and status.
fn show_pushed(db: &crate::store::Database, run_id: i64) -> Result<(), Error> {
    for p in db.connect()?.push_rows(run_id)? {
        let sign = match p.kind.as_str() {
            "create" => "+",
            "update" => "~",
            _ => "-",
        };
        let status = p.status.map_or("-".to_string(), |s| s.to_string());
        let error = p.error.map(|e| format!("  ({e})")).unwrap_or_default();
        writeln!(
            std::io::stdout(),
            "    {sign} {:<6} external id {:<4} target {:<3} HTTP {status}{error}",
            p.kind,
            p.external_id.as_deref().unwrap_or("-"),
            p.target_id.as_deref().unwrap_or("new")
        )?;
    }
    Ok(())
}

/// Serves the sample source on a free loopback port until the task is dropped.
pub async fn serve_source() -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{DEMO_KEY}:x")));
    let app = Router::new().route("/api/gateway.php/{company}/v1/reports/{report}", get(report)).with_state(expected);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("demo source stopped: {e}");
        }
    });
    Ok((addr, task))
}

async fn report(
    State(expected): State<String>,
    UrlPath((company, report)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "bad API key"}))).into_response();
    }
    if company != DEMO_COMPANY || report != DEMO_REPORT {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "no such report"}))).into_response();
    }
    axum::Json(json!({
        "title": "Demo employees",
        "fields": [
            {"id": "firstName", "type": "text", "name": "First Name"},
            {"id": "lastName", "type": "text", "name": "Last Name"},
            {"id": "workEmail", "type": "email", "name": "Work Email"},
            {"id": "department", "type": "list", "name": "Department"}
        ],
        "employees": employees()
    }))
    .into_response()
}

/// The sample target's users: two made on the target itself (no external
/// id: never touched), one synced earlier whose name changed since, and
/// one for an employee who is no longer in the HR system.
pub fn target_users() -> Vec<Value> {
    vec![
        json!({"id": 1, "email": "admin@lms.example", "firstName": "Lms", "lastName": "Admin", "hardLock": false}),
        json!({"id": 2, "email": "trainer@lms.example", "firstName": "Tia", "lastName": "Trainer", "hardLock": false}),
        json!({"id": 3, "externalId": "101", "email": "ann.lee@example.org", "firstName": "Annie", "lastName": "Lee",
               "hardLock": false}),
        json!({"id": 4, "externalId": "099", "email": "left@example.org", "firstName": "Lars", "lastName": "Left",
               "hardLock": false}),
    ]
}

type TargetState = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

/// Serves the sample push target (seed 002's API) on a free loopback port.
pub async fn serve_target() -> std::io::Result<(SocketAddr, TargetState, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state: TargetState = std::sync::Arc::new(std::sync::Mutex::new(target_users()));
    let app = Router::new()
        .route("/v1/users", get(target_list).post(target_create))
        .route("/v1/users/{id}", patch(target_patch).delete(target_delete))
        .with_state(state.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("demo target stopped: {e}");
        }
    });
    Ok((addr, state, task))
}

/// The answer to a request without the demo key, or `None` when it has it.
fn target_auth(headers: &HeaderMap) -> Option<Response> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    (auth != Some(format!("Bearer {DEMO_TARGET_KEY}").as_str()))
        .then(|| (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "bad API key"}))).into_response())
}

fn locked(state: &TargetState) -> std::sync::MutexGuard<'_, Vec<Value>> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

async fn target_list(
    State(state): State<TargetState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(denied) = target_auth(&headers) {
        return denied;
    }
    let num = |k: &str, d: usize| q.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let users = locked(&state);
    let page: Vec<Value> = users.iter().skip(num("offset", 0)).take(num("limit", 100)).cloned().collect();
    axum::Json(json!({"users": page, "total": users.len()})).into_response()
}

async fn target_create(
    State(state): State<TargetState>,
    headers: HeaderMap,
    axum::Json(mut body): axum::Json<Value>,
) -> Response {
    if let Some(denied) = target_auth(&headers) {
        return denied;
    }
    let mut users = locked(&state);
    let id = users.iter().filter_map(|u| u["id"].as_u64()).max().unwrap_or(0) + 1;
    body["id"] = json!(id);
    body["hardLock"] = json!(false);
    users.push(body.clone());
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

async fn target_patch(
    State(state): State<TargetState>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<u64>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(denied) = target_auth(&headers) {
        return denied;
    }
    let mut users = locked(&state);
    let Some(user) = users.iter_mut().find(|u| u["id"] == id) else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "no such user"}))).into_response();
    };
    for (k, v) in body.as_object().into_iter().flatten().filter(|(k, _)| *k != "autoClearEmail") {
        user[k] = v.clone();
    }
    axum::Json(user.clone()).into_response()
}

async fn target_delete(State(state): State<TargetState>, headers: HeaderMap, UrlPath(id): UrlPath<u64>) -> Response {
    if let Some(denied) = target_auth(&headers) {
        return denied;
    }
    locked(&state).retain(|u| u["id"] != id);
    StatusCode::NO_CONTENT.into_response()
}

/// A demo that ran: its samples still up, ready to `serve` or `stop`.
pub struct Demo {
    pub db: PathBuf,
    dir: PathBuf,
    config_text: String,
    manifests: Vec<(String, String)>,
    source: tokio::task::JoinHandle<()>,
    target: tokio::task::JoinHandle<()>,
}

/// Where `demo --serve` writes the manifests it runs (never the folder of real ones).
const DEMO_INTEGRATIONS: &str = "rosterd-demo-integrations";

impl Demo {
    /// Stops the sample source and target.
    pub fn stop(self) {
        self.source.abort();
        self.target.abort();
    }

    /// Keeps the samples up and runs the daemon (API and status page on
    /// loopback) over the demo's database until Ctrl-C or SIGTERM: writes
    /// `rosterd-demo.toml` and the manifests (hosts swapped for the samples')
    /// so other commands can look around and run against live samples.
    pub async fn serve(self) -> Result<(), Error> {
        let folder = self.dir.join(DEMO_INTEGRATIONS);
        std::fs::create_dir_all(&folder)
            .map_err(|e| Error::Usage(format!("cannot write {}: {e}", folder.display())))?;
        for (name, text) in &self.manifests {
            let file = folder.join(format!("{name}.json"));
            std::fs::write(&file, text).map_err(|e| Error::Usage(format!("cannot write {}: {e}", file.display())))?;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::Usage(format!("cannot listen on 127.0.0.1 for the demo's API: {e}")))?;
        let addr = listener.local_addr().map_err(|e| Error::Usage(format!("the demo's API has no address: {e}")))?;
        let token = manifest::random_hex();
        // The demo's own config (its tables: http, secrets) with the
        // integrations folder and the API added.
        let text = format!(
            "integrations_dir = \"{DEMO_INTEGRATIONS}\"\n{}[api]\nlisten = \"{addr}\"\ntokens = [\"{token}\"]\n",
            self.config_text
        );
        let path = self.dir.join("rosterd-demo.toml");
        std::fs::write(&path, &text).map_err(|e| Error::Usage(format!("cannot write {}: {e}", path.display())))?;
        let config = config::parse_str(&text, &path).map_err(Error::Invalid)?;
        let mut out = std::io::stdout();
        writeln!(out, "\nserving the demo until Ctrl-C:")?;
        writeln!(out, "  status page: http://{addr}/")?;
        writeln!(out, "  API:         http://{addr}/api/v1/runs  (Authorization: Bearer {token})")?;
        writeln!(
            out,
            "  try:         rosterd --config {} users | history | run bamboohr-create --dry-run",
            path.display()
        )?;
        out.flush()?;
        let service = crate::service::Service::new(config);
        let shutdown = crate::daemon::termination()?;
        let served = crate::daemon::serve(service, Some(path), Some(listener), shutdown).await;
        self.stop();
        served
    }
}

/// Runs the demo in `dir`: fresh `rosterd-demo.db`, the example manifests in
/// order against the embedded source and target, which stay up in the
/// returned `Demo` (`serve` keeps them, `stop` ends them).
pub async fn run(dir: &Path) -> Result<Demo, Error> {
    let db = dir.join("rosterd-demo.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    let (addr, source) =
        serve_source().await.map_err(|e| Error::Usage(format!("cannot start the demo source: {e}")))?;
    let (target_addr, target_state, target) =
        serve_target().await.map_err(|e| Error::Usage(format!("cannot start the demo target: {e}")))?;
    let base = format!("http://{addr}");
    let target_base = format!("http://{target_addr}");
    writeln!(
        std::io::stdout(),
        "demo source: {base}/api/gateway.php/{DEMO_COMPANY}/v1/reports/{DEMO_REPORT} ({} employees)",
        employees().len()
    )?;
    writeln!(
        std::io::stdout(),
        "demo target: {target_base}/v1/users ({} users of its own, 2 without an external id)",
        target_users().len()
    )?;
    let mut toml = String::from("database = \"rosterd-demo.db\"\n[http]\nretries = 0\n");
    for (name, _) in MANIFESTS {
        if name.ends_with("-push") {
            toml.push_str(&format!("[secrets.{name}]\nKEY = \"{DEMO_TARGET_KEY}\"\n"));
            continue;
        }
        toml.push_str(&format!(
            "[secrets.{name}]\nKEY = \"{DEMO_KEY}\"\nREPORT_ID = \"{DEMO_REPORT}\"\nCOMPANY_ID = \"{DEMO_COMPANY}\"\n"
        ));
    }
    let config = config::parse_str(&toml, &dir.join("rosterd-demo.toml")).map_err(Error::Invalid)?;
    let store = crate::store::Database::open(&config.database)?;
    let mut failed = Vec::new();
    let mut manifests = Vec::new();
    for (name, text) in MANIFESTS {
        let text = text.replace(REAL_HOST, &base).replace(REAL_TARGET, &target_base);
        manifests.push((name.to_string(), text.clone()));
        let file = PathBuf::from(format!("integrations/{name}.json"));
        let manifest = manifest::parse(name, &file, &text, &config).map_err(Error::Invalid)?;
        let opts = RunOptions { trigger: Trigger::Manual, dry_run: false, force: false, progress: false, run_id: None };
        let report = crate::run::run(&manifest, &config, &store, opts, &crate::run::Cancel::default()).await?;
        if manifest.push.is_some() {
            writeln!(
                std::io::stdout(),
                "{name}: {} — listed {} target users, created {}, updated {}, removed {}, unchanged {}",
                report.status,
                report.counts.fetched,
                report.counts.created,
                report.counts.updated,
                report.counts.deactivated,
                report.unchanged
            )?;
            show_pushed(&store, report.run_id)?;
            let after = locked(&target_state).clone();
            let mut line = Vec::new();
            for u in &after {
                let id = u["externalId"].as_str().unwrap_or("-");
                let lock = if u["hardLock"] == true { " (locked)" } else { "" };
                line.push(format!("{id}{lock}"));
            }
            writeln!(std::io::stdout(), "    target now: {} users by external id: {}", after.len(), line.join(", "))?;
        } else {
            writeln!(
                std::io::stdout(),
                "{name}: {} — fetched {}, created {}, updated {}, deactivated {}, skipped {}",
                report.status,
                report.counts.fetched,
                report.counts.created,
                report.counts.updated,
                report.counts.deactivated,
                report.counts.skipped
            )?;
        }
        for s in report.skips.iter().take(5) {
            let line = format!("    skipped record {} ({}): {}", s.record, s.key.as_deref().unwrap_or("-"), s.reason);
            writeln!(std::io::stdout(), "{line}")?;
        }
        if !report.succeeded() {
            failed.push(format!("{name}: {}", report.error.unwrap_or_default()));
        }
    }
    let demo = Demo { db, dir: dir.to_path_buf(), config_text: toml, manifests, source, target };
    if failed.is_empty() {
        Ok(demo)
    } else {
        demo.stop();
        Err(Error::RunFailed(failed.join("; ")))
    }
}
