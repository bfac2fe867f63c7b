//! Operating rosterd for months: a failure said once, exit codes a cron
//! wrapper can trust, completions and a man page, and a daemon whose log says
//! a broken manifest once per change and says when it is good again.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::TestDir;

#[test]
fn history_of_an_unknown_integration_exits_2() {
    let dir = TestDir::new();
    dir.db_init();
    let out = dir.rosterd(&["history", "nosuch"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stderr().contains("no integration named nosuch"), "{}", out.all());
}

#[test]
fn serve_once_with_an_unreadable_folder_exits_1() {
    let dir = TestDir::new();
    dir.config("integrations_dir = \"missing\"\n");
    let out = dir.rosterd(&["serve", "--once"]);
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(out.stderr().contains("cannot read the integrations folder"), "{}", out.all());
}

#[tokio::test]
async fn a_failed_run_is_said_once_on_stderr() {
    let server = MockServer::start().await;
    Mock::given(path("/people")).respond_with(ResponseTemplate::new(404).set_body_string("gone")).mount(&server).await;
    let dir = TestDir::new();
    dir.config("[http]\nretries = 0\n");
    dir.manifest(
        "hr",
        &json!({"execute": [{"url": format!("{}/people", server.uri())}], "action": "create",
                "data_from": "data", "data_structure": {"email": "e", "first_name": "f", "last_name": "l"}}),
    );
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    let stderr = out.stderr();
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("404")).collect();
    assert_eq!(lines.len(), 1, "one line for one failure: {}", out.all());
    assert!(lines[0].starts_with("error: "), "{}", out.all());
}

#[test]
fn completions_and_a_man_page_come_from_the_command_line_definition() {
    let dir = TestDir::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = dir.rosterd(&["completions", shell]);
        assert_eq!(out.code(), 0, "{shell}: {}", out.all());
        assert!(out.stdout().contains("rosterd") && out.stdout().contains("history"), "{shell}");
    }
    let man = dir.rosterd(&["man"]);
    assert_eq!(man.code(), 0, "{}", man.all());
    assert!(man.stdout().contains(".TH rosterd") && man.stdout().contains("validate"), "{}", man.stdout());
    // One page, and it says what a script and an admin need.
    for section in [".SH COMMANDS", ".SH EXIT STATUS", ".SH ENVIRONMENT", ".SH FILES", "ROSTERD_SECRET_"] {
        assert!(man.stdout().contains(section), "{section} missing: {}", man.stdout());
    }
    assert!(!man.stdout().contains("rosterd\\-validate(1)"), "refers to no page it does not install");
    assert!(!man.stdout().contains("(1)"), "no other page: {}", man.stdout());
}

#[tokio::test]
async fn a_broken_manifest_is_logged_once_per_change_and_when_it_is_good_again() {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .mount(&server)
        .await;
    let dir = TestDir::new();
    let good = json!({"execute": [{"url": format!("{}/people", server.uri())}], "action": "create",
                      "schedule": "0 3 * * *", "data_from": "data",
                      "data_structure": {"email": "e", "first_name": "f", "last_name": "l"}});
    let file = dir.manifest("hr", &good);
    let mut daemon = tokio::process::Command::from(dir.command(&["serve"]));
    daemon.stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    let daemon = daemon.spawn().unwrap();
    let pid = daemon.id().unwrap().to_string();
    // Let it load the good version, break the file, wait several polls, then mend it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    std::fs::write(&file, "{\"execute\": \"oops\"}").unwrap();
    // Five poll intervals of the folder (one a second): the count is the point.
    tokio::time::sleep(Duration::from_secs(5)).await;
    dir.manifest("hr", &good);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = crate::Out(daemon.wait_with_output().await.unwrap());
    let log = out.stderr();
    let broken = log.lines().filter(|l| l.contains("invalid manifest") && l.contains("/execute")).count();
    assert_eq!(broken, 1, "logged once over several polls:\n{log}");
    assert!(log.contains("is valid again"), "{log}");
}

/// A 6-field schedule means seconds first here and seconds last in
/// ChiefOnboarding: validate shows both readings' next fire times.
#[test]
fn validate_shows_both_readings_of_a_six_field_schedule() {
    let dir = TestDir::new();
    dir.manifest(
        "hr",
        &json!({"execute": [{"url": "https://hr.example/people"}], "action": "create", "schedule": "30 9 * * * *",
                "data_from": "data", "data_structure": {"email": "e", "first_name": "f", "last_name": "l"}}),
    );
    let out = dir.rosterd(&["validate"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let text = out.stdout();
    assert!(text.contains("6 fields: the first is seconds"), "{text}");
    let theirs = text.lines().find(|l| l.contains("ChiefOnboarding would fire:")).expect("their reading");
    // rosterd: second 30 of minute 9 of each hour; ChiefOnboarding: every second of 09:30.
    assert_eq!(theirs.matches("T09:30:").count(), 3, "{theirs}");
    let ours = text.lines().find(|l| l.trim_start().starts_with("next:")).expect("our reading");
    assert!(ours.contains(":09:30"), "{ours}");
}
