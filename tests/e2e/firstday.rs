//! A first day that goes well: what a new admin meets following the README.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::TestDir;

/// `rosterd demo --serve` keeps the samples and the daemon up, writes a
/// config other commands can use against them, and stops on Ctrl-C.
#[tokio::test]
async fn demo_serve_stays_to_be_explored_until_ctrl_c() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = TestDir::new();
    let mut child = tokio::process::Command::from(dir.command(&["demo", "--serve"]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.trim().strip_prefix("status page: ") {
                return url.to_string();
            }
        }
        panic!("the demo ended without serving");
    })
    .await
    .expect("the demo serves within 2 minutes");
    let page = reqwest::get(&url).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<strong>bamboohr-sync</strong>") && html.contains("<strong>learnifier-push</strong>"),
        "{html}"
    );
    // The samples are live: a dry run against them works from the written config.
    let dry = dir.run_async(&["--config", "rosterd-demo.toml", "run", "bamboohr-create", "--dry-run"]).await;
    assert_eq!(dry.code(), 0, "{}", dry.all());
    let users = dir.run_async(&["--config", "rosterd-demo.toml", "users"]).await;
    assert_eq!(users.code(), 0, "{}", users.all());
    assert!(users.stdout().contains("ann.lee@example.org"), "{}", users.all());
    std::process::Command::new("kill").args(["-INT", &child.id().unwrap().to_string()]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("it stops").unwrap();
    assert_eq!(status.code(), Some(0));
    // The sample source stopped with it.
    assert!(reqwest::get(&url).await.is_err(), "the demo's API is down");
}

/// Plain `rosterd demo` says how to keep it running.
#[test]
fn plain_demo_says_how_to_explore() {
    let dir = TestDir::new();
    let out = dir.rosterd(&["demo"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(out.stdout().contains("rosterd demo --serve"), "{}", out.all());
    assert!(!dir.path().join("rosterd-demo.toml").exists(), "only --serve writes a config");
}
