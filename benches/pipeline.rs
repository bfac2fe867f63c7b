//! End-to-end benchmark: the real `rosterd` binary against a generated
//! BambooHR-shaped source served from memory on 127.0.0.1, compared with a
//! floor measured in the same run (one HTTP client, typed serde, one prepared
//! INSERT in one transaction). Prints a table; asserts nothing about time,
//! but every row's counts are checked so a fast wrong answer cannot pass.
//!
//! cargo bench --bench pipeline                 # N = 10,000 and 100,000
//! cargo bench --bench pipeline -- --n 1000000  # one N (or a comma list)
//! cargo bench --bench pipeline -- --runs 3     # the median of 3 runs per row
//! cargo bench --bench pipeline -- --push-n 100000 --no-bulk --n 0   # push rows only
//! cargo bench --bench pipeline -- --wide       # also BambooHR-wide records (15 fields, 12 mapped)
//! cargo bench --bench pipeline -- --wide-only  # only those

// A benchmark stops at the first surprise: unwrap is its way of saying so.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;

const PAGE: usize = 500;

/// What the source serves: `n` people; with `variant` 1, every 10th changed;
/// with `vanish`, every 100th (offset 1) missing.
#[derive(Default)]
struct Source {
    n: AtomicU32,
    variant: AtomicU32,
    vanish: AtomicU32,
    /// 1: BambooHR-wide records (15 fields, ~283 bytes).
    wide: AtomicU32,
}

#[derive(Deserialize)]
struct PageQuery {
    page: usize,
}

fn person(out: &mut String, i: usize, changed: bool) {
    use std::fmt::Write;
    let dept = if changed { format!("Dept {} (moved)", i % 40) } else { format!("Dept {}", i % 40) };
    let _ = write!(
        out,
        r#"{{"id":"{}","firstName":"First{i}","lastName":"Last{i}","workEmail":"user{i}@example.com","department":"{dept}","jobTitle":"Engineer {}","mobilePhone":"+1-555-{:07}","location":"Office {}","status":"Active","hireDate":"2020-01-{:02}"}}"#,
        100_000 + i,
        i % 7,
        i,
        i % 30,
        1 + i % 28
    );
}

/// A BambooHR-shaped record of 15 fields (~283 bytes), as people really sync.
fn wide_person(out: &mut String, i: usize, changed: bool) {
    use std::fmt::Write;
    let dept = if changed { format!("Dept {} (moved)", i % 40) } else { format!("Dept {}", i % 40) };
    let _ = write!(
        out,
        r#"{{"id":"{}","firstName":"First{i}","lastName":"Last{i}","workEmail":"user{i}@example.com","jobTitle":"Engineer {}","department":"{dept}","mobilePhone":"+1-555-{:07}","hireDate":"2020-01-{:02}","status":"Active","supervisorEmail":"lead{}@example.com","location":"Office {}","employeeNumber":"E{:07}","customCostCenter":"CC-{:04}","customShirtSize":"M","customStartBuddy":"buddy{}@example.com"}}"#,
        100_000 + i,
        i % 7,
        i,
        1 + i % 28,
        i % 500,
        i % 30,
        i,
        i % 2000,
        (i + 7) % 1000
    );
}

async fn page(State(src): State<Arc<Source>>, Query(q): Query<PageQuery>) -> impl IntoResponse {
    let n = src.n.load(Ordering::SeqCst) as usize;
    let variant = src.variant.load(Ordering::SeqCst) == 1;
    let vanish = src.vanish.load(Ordering::SeqCst) == 1;
    let wide = src.wide.load(Ordering::SeqCst) == 1;
    let start = (q.page - 1) * PAGE;
    let end = (start + PAGE).min(n);
    let mut body = String::with_capacity(PAGE * 260 + 100);
    body.push_str(r#"{"title":"bench","employees":["#);
    let mut first = true;
    for i in start..end {
        if vanish && i % 100 == 1 {
            continue;
        }
        if !first {
            body.push(',');
        }
        first = false;
        if wide {
            wide_person(&mut body, i, variant && i % 10 == 0);
        } else {
            person(&mut body, i, variant && i % 10 == 0);
        }
    }
    body.push_str("],\"next\":");
    if end < n {
        body.push_str(&format!("\"/people?page={}\"}}", q.page + 1));
    } else {
        body.push_str("null}");
    }
    ([("content-type", "application/json")], body)
}

async fn start_source() -> (String, Arc<Source>) {
    let src = Arc::new(Source::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/people", get(page)).with_state(src.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), src)
}

fn manifest(base: &str, action: &str, structure: &str, extra: &str) -> String {
    format!(
        r#"{{"execute": [{{"url": "{base}/people?page=1"}}], "action": "{action}", "data_from": "employees",
            "next_page_from": "next", "data_structure": {structure} {extra}}}"#
    )
}

const CORE: &str = r#"{"email": "workEmail", "first_name": "firstName", "last_name": "lastName", "external_id": "id",
    "department": "department", "job": "jobTitle", "phone": "mobilePhone"}"#;
const UPDATE: &str = r#"{"email": "workEmail", "bamboohr_id": "id", "dept": "department", "location": "location"}"#;
/// The wide shape's mapping: 12 of its 15 fields, 5 of them into extra fields.
const WIDE: &str = r#"{"email": "workEmail", "first_name": "firstName", "last_name": "lastName", "external_id": "id",
    "phone": "mobilePhone", "job": "jobTitle", "department": "department", "hire_date": "hireDate", "status": "status",
    "location": "location", "supervisor_email": "supervisorEmail", "cost_center": "customCostCenter"}"#;

struct Outcome {
    secs: f64,
    peak_rss_mb: f64,
    report: serde_json::Value,
}

/// Runs the binary; its peak RSS is the high-water mark (`VmHWM`) it reports
/// in /proc, sampled every few milliseconds by a thread while the wall time
/// is taken from a blocking `wait4`. (`wait4`'s own `ru_maxrss` would not do:
/// a child spawned with vfork carries the parent's peak into its figure, so a
/// bench grown large would show in every row.)
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which std cannot see
fn rosterd(dir: &Path, args: &[&str]) -> Outcome {
    let started = Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_rosterd"))
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.unwrap();
    let reading = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
        text
    });
    let done = Arc::new(AtomicBool::new(false));
    let sampling = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak_kb = 0u64;
            while !done.load(Ordering::SeqCst) {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let hwm = status.lines().find_map(|l| l.strip_prefix("VmHWM:"));
                if let Some(kb) = hwm.and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()) {
                    peak_kb = peak_kb.max(kb);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            peak_kb
        })
    };
    let mut status = 0;
    // SAFETY: pid is our child, reaped here and nowhere else; the pointer is to a live local.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, std::ptr::null_mut()) };
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(waited, pid, "wait4");
    done.store(true, Ordering::SeqCst);
    let peak_kb = sampling.join().unwrap();
    let text = reading.join().unwrap();
    let report = serde_json::from_str(&text).unwrap_or_else(|_| panic!("rosterd {args:?} printed: {text}"));
    Outcome { secs, peak_rss_mb: peak_kb as f64 / 1024.0, report }
}

fn expect(report: &serde_json::Value, status: &str, counts: [i64; 4]) {
    let got = ["created", "updated", "deactivated", "skipped"].map(|k| report[k].as_i64().unwrap_or(-1));
    assert_eq!(report["status"], status, "{report}");
    assert_eq!(got, counts, "created/updated/deactivated/skipped: {report}");
}

fn count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
}

#[derive(Deserialize)]
struct FloorPage {
    employees: Vec<FloorPerson>,
    next: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FloorPerson {
    id: String,
    first_name: String,
    last_name: String,
    work_email: String,
    department: String,
    job_title: String,
    mobile_phone: String,
    // The wide shape's extra fields (absent from the narrow one).
    hire_date: Option<String>,
    status: Option<String>,
    location: Option<String>,
    supervisor_email: Option<String>,
    custom_cost_center: Option<String>,
}

/// The fetching part of the floor alone: every page fetched and parsed into typed structs.
async fn fetch_floor(base: &str, n: usize) -> f64 {
    let started = Instant::now();
    let client = reqwest::Client::new();
    let mut url = format!("{base}/people?page=1");
    let mut seen = 0;
    loop {
        let bytes = client.get(&url).send().await.unwrap().bytes().await.unwrap();
        let page: FloorPage = serde_json::from_slice(&bytes).unwrap();
        seen += page.employees.len();
        match page.next {
            Some(next) => url = format!("{base}{next}"),
            None => break,
        }
    }
    assert_eq!(seen, n);
    started.elapsed().as_secs_f64()
}

/// The floor: fetch every page with one client, parse into typed structs, insert with one statement in one transaction.
async fn floor(base: &str, db: &Path) -> f64 {
    let started = Instant::now();
    let client = reqwest::Client::new();
    let mut conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.pragma_update(None, "cache_size", -65536).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT COLLATE NOCASE UNIQUE, first_name TEXT, last_name TEXT,
         external_id TEXT UNIQUE, username TEXT, phone TEXT, job TEXT, department TEXT, extra_fields TEXT NOT NULL DEFAULT '{}',
         active INTEGER NOT NULL DEFAULT 1, source TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare("INSERT INTO users (email, first_name, last_name, external_id, phone, job, department, created_at, updated_at, extra_fields)
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)")
            .unwrap();
        let mut url = format!("{base}/people?page=1");
        loop {
            let bytes = client.get(&url).send().await.unwrap().bytes().await.unwrap();
            let page: FloorPage = serde_json::from_slice(&bytes).unwrap();
            for p in &page.employees {
                // The wide shape's extras as one JSON object, as rosterd stores them.
                let extra = match &p.hire_date {
                    None => "{}".to_string(),
                    Some(_) => serde_json::json!({"hire_date": p.hire_date, "status": p.status, "location": p.location,
                        "supervisor_email": p.supervisor_email, "cost_center": p.custom_cost_center})
                    .to_string(),
                };
                insert
                    .execute(rusqlite::params![
                        p.work_email,
                        p.first_name,
                        p.last_name,
                        p.id,
                        p.mobile_phone,
                        p.job_title,
                        p.department,
                        "2026-01-01 00:00:00",
                        extra
                    ])
                    .unwrap();
            }
            match page.next {
                Some(next) => url = format!("{base}{next}"),
                None => break,
            }
        }
    }
    tx.commit().unwrap();
    started.elapsed().as_secs_f64()
}

struct Row {
    what: String,
    n: usize,
    secs: f64,
    rss: f64,
    written: i64,
    floor: f64,
    /// The run's own stages (fetch, read, check, plan, commit), seconds.
    stages: Option<[f64; 5]>,
}

/// A run report's `stages`, in seconds.
fn stages(report: &serde_json::Value) -> Option<[f64; 5]> {
    let s = report.get("stages")?;
    let ms = |k: &str| s[k].as_f64().unwrap_or(0.0) / 1000.0;
    Some([ms("fetch_ms"), ms("read_ms"), ms("check_ms"), ms("plan_ms"), ms("commit_ms")])
}

fn fresh_dir(root: &Path, name: &str, manifests: &[(&str, String)]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("integrations")).unwrap();
    std::fs::write(dir.join("rosterd.toml"), "[sync]\nmax_deactivate = \"5%\"\n[http]\nmax_pages = 100000\n").unwrap();
    for (n, text) in manifests {
        std::fs::write(dir.join(format!("integrations/{n}.json")), text).unwrap();
    }
    dir
}

/// Every run kind at `n` records, narrow (the benchmark's own shape) or
/// `wide` (BambooHR's 15 fields, 12 mapped), against a floor for the same bytes.
async fn pipeline(n: usize, root: &Path, rows: &mut Vec<Row>, wide: bool) {
    let (base, src) = start_source().await;
    src.n.store(n as u32, Ordering::SeqCst);
    src.wide.store(u32::from(wide), Ordering::SeqCst);
    let shape = if wide { "wide" } else { "narrow" };
    let (core, update) = if wide { (WIDE, WIDE) } else { (CORE, UPDATE) };
    let start = rows.len();
    let fetch_secs = fetch_floor(&base, n).await;
    let floor_secs = floor(&base, &root.join(format!("floor-{shape}-{n}.db"))).await;
    rows.push(Row {
        what: "floor's fetch + typed parse alone".into(),
        n,
        secs: fetch_secs,
        rss: 0.0,
        written: 0,
        floor: floor_secs,
        stages: None,
    });
    rows.push(Row {
        what: "floor: fetch + typed parse + insert".into(),
        n,
        secs: floor_secs,
        rss: 0.0,
        written: n as i64,
        floor: floor_secs,
        stages: None,
    });

    let manifests =
        [("create", manifest(&base, "create", core, "")), ("update", manifest(&base, "update", update, ""))];
    let dir = fresh_dir(root, &format!("create-{shape}-{n}"), &manifests);
    let create_dir = dir.clone();
    let db = dir.join("rosterd.db");
    let mut row = |what: &str, o: &Outcome, written: i64| {
        rows.push(Row {
            what: what.into(),
            n,
            secs: o.secs,
            rss: o.peak_rss_mb,
            written,
            floor: floor_secs,
            stages: stages(&o.report),
        })
    };

    let o = rosterd(&dir, &["run", "create", "--json"]);
    expect(&o.report, "ok", [n as i64, 0, 0, 0]);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM users"), n as i64);
    row("create into an empty store", &o, n as i64);

    let o = rosterd(&dir, &["run", "create", "--dry-run", "--json"]);
    expect(&o.report, "dry-run", [0, 0, 0, 0]);
    row("create again, dry run", &o, 0);

    rusqlite::Connection::open(&db).unwrap().execute("UPDATE users SET updated_at = 'sentinel'", []).unwrap();
    let o = rosterd(&dir, &["run", "create", "--json"]);
    expect(&o.report, "ok", [0, 0, 0, 0]);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM users WHERE updated_at = 'sentinel'"), n as i64, "no user row written");
    row("create again (no-op)", &o, 0);

    let o = rosterd(&dir, &["run", "update", "--json"]);
    expect(&o.report, "ok", [0, n as i64, 0, 0]);
    src.variant.store(1, Ordering::SeqCst);
    rusqlite::Connection::open(&db).unwrap().execute("UPDATE users SET updated_at = 'sentinel'", []).unwrap();
    let o = rosterd(&dir, &["run", "update", "--json"]);
    let changed = n.div_ceil(10) as i64;
    expect(&o.report, "ok", [0, changed, 0, 0]);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM users WHERE updated_at != 'sentinel'"),
        changed,
        "only changed rows written"
    );
    row("update, 10% changed", &o, changed);
    src.variant.store(0, Ordering::SeqCst);

    let sync = [("sync", manifest(&base, "sync", core, r#", "match_on": "external_id""#))];
    let dir = fresh_dir(root, &format!("sync-{shape}-{n}"), &sync);
    let o = rosterd(&dir, &["run", "sync", "--json"]);
    expect(&o.report, "ok", [n as i64, 0, 0, 0]);
    row("sync, initial (creates all)", &o, n as i64);
    src.variant.store(1, Ordering::SeqCst);
    src.vanish.store(1, Ordering::SeqCst);
    let o = rosterd(&dir, &["run", "sync", "--json"]);
    let vanished = (0..n).filter(|i| i % 100 == 1).count() as i64;
    let changed = (0..n).filter(|i| i % 10 == 0 && i % 100 != 1).count() as i64;
    expect(&o.report, "ok", [0, changed, vanished, 0]);
    assert_eq!(count(&dir.join("rosterd.db"), "SELECT COUNT(*) FROM users WHERE active = 0"), vanished);
    row("sync, 10% changed, 1% vanished", &o, changed + vanished);
    src.variant.store(0, Ordering::SeqCst);
    src.vanish.store(0, Ordering::SeqCst);
    if wide {
        for r in &mut rows[start..] {
            r.what = format!("wide: {}", r.what);
        }
        return;
    }

    // A small import into the large store of the create rows: its cost must follow the request, not the directory.
    let users: Vec<serde_json::Value> = (0..1000)
        .map(|i| match i % 2 {
            0 => serde_json::json!({"name": format!("New Person{i}"), "employee_id": format!("new-{i}")}),
            _ => serde_json::json!({"name": format!("First{i} Last{i}"), "employee_id": (100_000 + i).to_string(),
                                    "job": "Imported"}),
        })
        .collect();
    std::fs::write(create_dir.join("import.json"), serde_json::json!({ "users": users }).to_string()).unwrap();
    let o = rosterd(&create_dir, &["import", "import.json"]);
    let listed = o.report["updated_users"].as_array().map_or(0, Vec::len);
    assert!(o.report["errors"].as_array().is_some_and(Vec::is_empty) && listed == 1000, "{}", o.report);
    rows.push(Row {
        what: format!("rosterd import of 1,000 users into this store of {n}"),
        n: 1000,
        secs: o.secs,
        rss: o.peak_rss_mb,
        written: 1000,
        floor: 0.0,
        stages: None,
    });
}

async fn bulk(n: usize, root: &Path, rows: &mut Vec<Row>) {
    let dir = root.join(format!("api-{n}"));
    std::fs::create_dir_all(dir.join("integrations")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        dir.join("rosterd.toml"),
        format!(
            "[api]\nlisten = \"127.0.0.1:{port}\"\ntokens = [\"bench-token-0123456789\"]\nmax_body_bytes = 1073741824\n"
        ),
    )
    .unwrap();
    let mut child =
        std::process::Command::new(env!("CARGO_BIN_EXE_rosterd")).arg("serve").current_dir(&dir).spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let json: String = {
        let users: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"name":"First{i} Last{i}","employee_id":"J{i}","email":"j{i}@example.com","phone":"555-{i}","job":"Job {}"}}"#, i % 9))
            .collect();
        format!("{{\"users\":[{}]}}", users.join(","))
    };
    let csv: String = std::iter::once("name,employee_id,email,phone,job".to_string())
        .chain((0..n).map(|i| format!("First{i} Last{i},C{i},c{i}@example.com,555-{i},Job {}", i % 9)))
        .collect::<Vec<_>>()
        .join("\n");
    let mut measure = |what: &str, secs: f64, written: i64| {
        rows.push(Row { what: what.into(), n, secs, rss: 0.0, written, floor: 0.0, stages: None })
    };
    for (what, body, ctype) in [("bulk-import JSON", json, "application/json"), ("bulk-import CSV", csv, "text/csv")] {
        let started = Instant::now();
        let r = client
            .post(format!("{base}/api/v1/user/bulk-import"))
            .bearer_auth("bench-token-0123456789")
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap();
        let reply: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(reply["updated_users"].as_array().unwrap().len(), n, "{what}");
        assert_eq!(reply["errors"].as_array().unwrap().len(), 0, "{what}");
        measure(what, secs, n as i64);
    }
    for (what, accept) in [("bulk-export JSON", "application/json"), ("bulk-export CSV", "text/csv")] {
        let started = Instant::now();
        let r = client
            .post(format!("{base}/api/v1/user/bulk-export"))
            .bearer_auth("bench-token-0123456789")
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        let body = r.bytes().await.unwrap();
        let secs = started.elapsed().as_secs_f64();
        let records = if accept == "text/csv" {
            body.iter().filter(|b| **b == b'\n').count() as i64 - 1
        } else {
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()["users"].as_array().unwrap().len() as i64
        };
        assert_eq!(records, 2 * n as i64, "{what}");
        measure(what, secs, 0);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// An in-memory push target (seed 002's API): a listing by offset and
/// limit, and POST / PATCH that keep what they are sent.
#[derive(Default)]
struct PushTarget {
    users: std::sync::Mutex<Vec<String>>,
}

#[derive(Deserialize)]
struct Window {
    offset: usize,
    limit: usize,
}

async fn target_list(State(t): State<Arc<PushTarget>>, Query(w): Query<Window>) -> impl IntoResponse {
    let users = t.users.lock().unwrap();
    let page: Vec<&str> = users.iter().skip(w.offset).take(w.limit).map(String::as_str).collect();
    ([("content-type", "application/json")], format!("{{\"users\":[{}]}}", page.join(",")))
}

async fn target_create(State(t): State<Arc<PushTarget>>, body: axum::body::Bytes) -> impl IntoResponse {
    let mut user: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut users = t.users.lock().unwrap();
    user["id"] = serde_json::json!(users.len() + 1);
    users.push(user.to_string());
    (axum::http::StatusCode::CREATED, "{}")
}

async fn start_target() -> (String, Arc<PushTarget>) {
    let t = Arc::new(PushTarget::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/v1/users", get(target_list).post(target_create)).with_state(t.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), t)
}

fn push_manifest(base: &str) -> String {
    format!(
        r#"{{"action": "push", "execute": [{{"url": "{base}/users?offset={{{{ OFFSET }}}}&limit={{{{ LIMIT }}}}"}}],
            "page_size": 1000, "data_from": "users",
            "data_structure": {{"external_id": "externalId", "email": "email", "first_name": "firstName", "last_name": "lastName"}},
            "target_id_from": "id",
            "push": {{"create": {{"url": "{base}/users", "method": "POST",
                       "data": {{"externalId": "{{{{ user.external_id }}}}", "email": "{{{{ user.email }}}}",
                                "firstName": "{{{{ user.first_name }}}}", "lastName": "{{{{ user.last_name }}}}"}}}}}}}}"#
    )
}

/// Push rows: `n` local users (imported) against an empty target (every
/// user a POST, at concurrency 4 and 16) and against one in step (only the
/// listing). Counts are checked; the target's own count too.
async fn push(n: usize, root: &Path, rows: &mut Vec<Row>) {
    let (base, target) = start_target().await;
    let dir = fresh_dir(root, &format!("push-{n}"), &[("lms", push_manifest(&base))]);
    let users: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"name":"First{i} Last{i}","employee_id":"P{i}","email":"p{i}@example.com"}}"#))
        .collect();
    std::fs::write(dir.join("import.json"), format!("{{\"users\":[{}]}}", users.join(","))).unwrap();
    drop(users);
    let o = rosterd(&dir, &["import", "import.json"]);
    assert_eq!(o.report["errors"].as_array().map(Vec::len), Some(0));
    for concurrency in [4, 16] {
        target.users.lock().unwrap().clear();
        std::fs::write(dir.join("rosterd.toml"), format!("[push]\nconcurrency = {concurrency}\n")).unwrap();
        let o = rosterd(&dir, &["run", "lms", "--json"]);
        expect(&o.report, "ok", [n as i64, 0, 0, 0]);
        assert_eq!(target.users.lock().unwrap().len(), n, "the target has every user");
        rows.push(Row {
            what: format!("push to an empty target: {n} POSTs at concurrency {concurrency}"),
            n,
            secs: o.secs,
            rss: o.peak_rss_mb,
            written: n as i64,
            floor: 0.0,
            stages: None,
        });
    }
    let o = rosterd(&dir, &["run", "lms", "--json"]);
    expect(&o.report, "ok", [0, 0, 0, 0]);
    assert_eq!(o.report["unchanged"], n, "{}", o.report);
    assert_eq!(o.report["push"]["requests"]["create"]["sent"], 0);
    rows.push(Row {
        what: "push to a target in step (only the listing)".into(),
        n,
        secs: o.secs,
        rss: o.peak_rss_mb,
        written: 0,
        floor: 0.0,
        stages: None,
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
    let list = |flag: &str, default: Vec<usize>| match value(flag) {
        Some(v) => v.split(',').map(|v| v.trim().parse().expect("takes numbers")).filter(|n| *n > 0).collect(),
        None => default,
    };
    let ns: Vec<usize> = list("--n", vec![10_000, 100_000]);
    let push_ns: Vec<usize> =
        if args.iter().any(|a| a == "--no-push") { Vec::new() } else { list("--push-n", vec![100_000]) };
    let runs: usize = value("--runs").map_or(1, |v| v.parse().expect("--runs takes a number")).max(1);
    let bulk_n = 100_000;
    let root = std::env::temp_dir().join(format!("rosterd-bench-{}", std::process::id()));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    // Every run gives the same rows in the same order.
    let mut all: Vec<Vec<Row>> = Vec::new();
    for k in 0..runs {
        let root = root.join(format!("run-{k}"));
        std::fs::create_dir_all(&root).unwrap();
        let mut rows = Vec::new();
        runtime.block_on(async {
            let wide_only = args.iter().any(|a| a == "--wide-only");
            for n in &ns {
                if !wide_only {
                    pipeline(*n, &root, &mut rows, false).await;
                }
                if wide_only || args.iter().any(|a| a == "--wide") {
                    pipeline(*n, &root, &mut rows, true).await;
                }
            }
            for n in &push_ns {
                push(*n, &root, &mut rows).await;
            }
            if !args.iter().any(|a| a == "--no-bulk") {
                bulk(bulk_n, &root, &mut rows).await;
            }
        });
        let _ = std::fs::remove_dir_all(&root);
        all.push(rows);
    }
    let _ = std::fs::remove_dir_all(&root);
    if runs > 1 {
        println!("\nmedian of {runs} runs (each ratio is the median of the runs' own ratios):");
    }
    println!("\n| N | what | wall s | records/s | peak RSS MB | rows written | x floor |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for (i, r) in all[0].iter().enumerate() {
        let of_runs = |f: &dyn Fn(&Row) -> f64| median(all.iter().map(|rows| f(&rows[i])).collect());
        let secs = of_runs(&|r| r.secs);
        let rss = of_runs(&|r| r.rss);
        let ratio = if r.floor > 0.0 && !r.what.contains("floor") {
            format!("{:.2}", of_runs(&|r| r.secs / r.floor))
        } else {
            "".into()
        };
        let rss = if rss > 0.0 { format!("{rss:.0}") } else { "".into() };
        println!("| {} | {} | {secs:.2} | {:.0} | {rss} | {} | {ratio} |", r.n, r.what, r.n as f64 / secs, r.written);
    }
    if runs > 1 {
        // The spread behind each median: a VM's neighbours move single runs by 10% and more.
        println!("\neach run's own x floor (its floor in the first row):");
        println!("\n| N | what |{}", (1..=runs).map(|k| format!(" run {k} |")).collect::<String>());
        println!("|---:|---|{}", "---:|".repeat(runs));
        for (i, r) in all[0].iter().enumerate() {
            let cells: String = if r.what.contains("floor: fetch + typed parse + insert") {
                all.iter().map(|rows| format!(" {:.2} s |", rows[i].secs)).collect()
            } else if r.floor > 0.0 && !r.what.contains("floor") {
                all.iter().map(|rows| format!(" {:.2} |", rows[i].secs / rows[i].floor)).collect()
            } else {
                continue;
            };
            println!("| {} | {} |{cells}", r.n, r.what);
        }
    }
    println!("\nwhere the time goes (seconds; read is the reader's mapping, overlapping fetch):");
    println!("\n| N | what | wall | fetch | read | check | plan + writes | commit |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for (i, r) in all[0].iter().enumerate() {
        if r.stages.is_none() {
            continue;
        }
        let of_runs = |k: usize| median(all.iter().map(|rows| rows[i].stages.map_or(0.0, |s| s[k])).collect());
        let wall = median(all.iter().map(|rows| rows[i].secs).collect());
        println!(
            "| {} | {} | {wall:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.n,
            r.what,
            of_runs(0),
            of_runs(1),
            of_runs(2),
            of_runs(3),
            of_runs(4)
        );
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
