//! Soak: the real `rosterd serve` with many every-second integrations and
//! reload churn (manifests rewritten, SIGHUP) for a set time, against a
//! source on 127.0.0.1 that answers each request after 200 ms and notes when
//! each request of each integration began and ended, in milliseconds. Each run
//! makes one request, so two runs of one integration overlap exactly when
//! their requests do. Prints runs by status, overlaps, and the daemon's RSS and
//! open file descriptors over time. Asserts nothing about time.
//!
//! cargo bench --bench soak                          # 20 integrations, 60 s
//! cargo bench --bench soak -- --secs 300 --integrations 50

// A benchmark stops at the first surprise: unwrap is its way of saying so.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::routing::get;

/// (integration, began, ended) in milliseconds since the bench started.
type Spans = Arc<Mutex<Vec<(String, u128, u128)>>>;

struct Args {
    secs: u64,
    integrations: usize,
}

fn args() -> Args {
    let mut out = Args { secs: 60, integrations: 20 };
    let all: Vec<String> = std::env::args().collect();
    for pair in all.windows(2) {
        match pair[0].as_str() {
            "--secs" => out.secs = pair[1].parse().expect("--secs N"),
            "--integrations" => out.integrations = pair[1].parse().expect("--integrations N"),
            _ => {}
        }
    }
    out
}

async fn people(State((spans, t0)): State<(Spans, Instant)>, UrlPath(name): UrlPath<String>) -> String {
    let began = t0.elapsed().as_millis();
    tokio::time::sleep(Duration::from_millis(200)).await;
    spans.lock().unwrap().push((name.clone(), began, t0.elapsed().as_millis()));
    let people: Vec<String> =
        (0..3).map(|i| format!(r#"{{"email":"{name}-{i}@soak.example","first":"F{i}","last":"L{i}"}}"#)).collect();
    format!(r#"{{"data":[{}]}}"#, people.join(","))
}

fn manifest(base: &str, name: &str, variant: u32) -> String {
    serde_json::json!({
        "execute": [{"url": format!("{base}/people/{name}")}],
        "headers": {"X-Variant": variant.to_string()},
        "action": "sync",
        "data_from": "data",
        "schedule": "* * * * * *",
        "data_structure": {"email": "email", "first_name": "first", "last_name": "last"}
    })
    .to_string()
}

/// (RSS in KB, open file descriptors) of a process.
fn usage(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

fn count(db: &Path, sql: &str) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

#[tokio::main]
async fn main() {
    let a = args();
    let t0 = Instant::now();
    let spans: Spans = Arc::default();
    let app = Router::new().route("/people/{name}", get(people)).with_state((spans.clone(), t0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = std::env::temp_dir().join(format!("rosterd-soak-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("integrations")).unwrap();
    std::fs::write(dir.join("rosterd.toml"), "max_concurrent_runs = 4\n[sync]\nmax_deactivate = \"100%\"\n").unwrap();
    let names: Vec<String> = (0..a.integrations).map(|i| format!("soak{i:03}")).collect();
    for name in &names {
        std::fs::write(dir.join(format!("integrations/{name}.json")), manifest(&base, name, 0)).unwrap();
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rosterd"))
        .arg("serve")
        .current_dir(&dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut samples = vec![(t0.elapsed().as_secs(), usage(pid))];
    let (mut rewrites, mut hups) = (0u32, 0u32);
    let end = Instant::now() + Duration::from_secs(a.secs);
    let mut tick = 0u64;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        tick += 1;
        // Churn: a manifest rewritten every second, a SIGHUP every 5 s.
        if tick.is_multiple_of(2) {
            let name = &names[(tick as usize / 2) % names.len()];
            rewrites += 1;
            std::fs::write(dir.join(format!("integrations/{name}.json")), manifest(&base, name, rewrites)).unwrap();
        }
        if tick.is_multiple_of(10) {
            hups += 1;
            let _ = std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status();
        }
        if tick.is_multiple_of(20) {
            samples.push((t0.elapsed().as_secs(), usage(pid)));
        }
    }
    samples.push((t0.elapsed().as_secs(), usage(pid)));
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();

    let spans = spans.lock().unwrap().clone();
    let mut overlaps = 0;
    for name in &names {
        let mut mine: Vec<(u128, u128)> = spans.iter().filter(|s| &s.0 == name).map(|s| (s.1, s.2)).collect();
        mine.sort_unstable();
        overlaps += mine.windows(2).filter(|w| w[1].0 < w[0].1).count();
    }
    let by_status = count(&dir.join("rosterd.db"), "SELECT status, COUNT(*) FROM runs GROUP BY 1 ORDER BY 1");
    let runs: i64 = by_status.iter().map(|(_, n)| n).sum();
    println!("soak: {} integrations every second, {} s, {rewrites} rewrites, {hups} SIGHUPs", a.integrations, a.secs);
    println!("runs: {runs} ({})", by_status.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(", "));
    println!("source requests: {}, overlapping runs of one integration: {overlaps}", spans.len());
    println!("| at s | RSS KB | open fds |\n|---:|---:|---:|");
    for (at, (rss, fds)) in &samples {
        println!("| {at} | {rss} | {fds} |");
    }
    let (first, last) = (samples[0].1.0 as f64, samples[samples.len() - 1].1.0 as f64);
    if runs > 0 {
        println!("RSS {first:.0} -> {last:.0} KB: {:.2} KB per run", (last - first) / runs as f64);
    }
    // Whether memory settles: growth after the first two minutes (target: at most 2 MB).
    match samples.iter().find(|(at, _)| *at >= 120) {
        Some((at, (settled, _))) if samples[samples.len() - 1].0 > *at => {
            println!("RSS growth after the first {at} s: {} KB (target: at most 2048)", last as i64 - *settled as i64)
        }
        _ => println!("RSS growth after the first two minutes: run with --secs 180 or more to see it"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
