//! `rosterd demo`: an embedded sample HR source (BambooHR-shaped, with a few
//! messy records) on 127.0.0.1 at a free port, and the shipped example
//! manifests run against it, host swapped, into `./rosterd-demo.db`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::config;
use crate::error::Error;
use crate::manifest;
use crate::run::{RunOptions, Trigger};

/// The manifests the demo runs, in order, as shipped in `integrations/`.
const MANIFESTS: &[(&str, &str)] = &[
    ("bamboohr-create", include_str!("../integrations/bamboohr-create.json")),
    ("bamboohr-update", include_str!("../integrations/bamboohr-update.json")),
];
const REAL_HOST: &str = "https://api.bamboohr.com";
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

/// Runs the demo in `dir`: fresh `rosterd-demo.db`, the example manifests in
/// order against the embedded source. Returns the database path.
pub async fn run(dir: &Path) -> Result<PathBuf, Error> {
    let db = dir.join("rosterd-demo.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    let (addr, source) =
        serve_source().await.map_err(|e| Error::Usage(format!("cannot start the demo source: {e}")))?;
    let base = format!("http://{addr}");
    writeln!(
        std::io::stdout(),
        "demo source: {base}/api/gateway.php/{DEMO_COMPANY}/v1/reports/{DEMO_REPORT} ({} employees)",
        employees().len()
    )?;
    let mut toml = String::from("database = \"rosterd-demo.db\"\n[http]\nretries = 0\n");
    for (name, _) in MANIFESTS {
        toml.push_str(&format!(
            "[secrets.{name}]\nKEY = \"{DEMO_KEY}\"\nREPORT_ID = \"{DEMO_REPORT}\"\nCOMPANY_ID = \"{DEMO_COMPANY}\"\n"
        ));
    }
    let config = config::parse_str(&toml, &dir.join("rosterd-demo.toml")).map_err(Error::Invalid)?;
    let mut failed = Vec::new();
    for (name, text) in MANIFESTS {
        let text = text.replace(REAL_HOST, &base);
        let file = PathBuf::from(format!("integrations/{name}.json"));
        let manifest = manifest::parse(name, &file, &text, &config).map_err(Error::Invalid)?;
        let opts = RunOptions { trigger: Trigger::Manual, dry_run: false, force: false, progress: false, run_id: None };
        let report = crate::run::run(&manifest, &config, opts, &crate::run::Cancel::default()).await?;
        writeln!(
            std::io::stdout(),
            "{name}: {} — fetched {}, created {}, updated {}, skipped {}",
            report.status,
            report.counts.fetched,
            report.counts.created,
            report.counts.updated,
            report.counts.skipped
        )?;
        for s in report.skips.iter().take(5) {
            let line = format!("    skipped record {} ({}): {}", s.record, s.key.as_deref().unwrap_or("-"), s.reason);
            writeln!(std::io::stdout(), "{line}")?;
        }
        if !report.succeeded() {
            failed.push(format!("{name}: {}", report.error.unwrap_or_default()));
        }
    }
    source.abort();
    if failed.is_empty() { Ok(db) } else { Err(Error::RunFailed(failed.join("; "))) }
}
