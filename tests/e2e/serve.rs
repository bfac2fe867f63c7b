//! `rosterd serve`: schedules, live reload, no overlap, signals. The daemon
//! is the real binary in a child process; the source is wiremock over loopback.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{header, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{Out, TestDir};

fn manifest(server: &MockServer, schedule: &str, route: &str) -> Value {
    json!({
        "execute": [{"url": format!("{}{route}", server.uri())}],
        "action": "create",
        "data_from": "data",
        "schedule": schedule,
        "data_structure": {"email": "email", "first_name": "first", "last_name": "last"}
    })
}

fn people() -> Value {
    json!({"data": [{"email": "a@acme.example", "first": "A", "last": "Person"}]})
}

async fn source(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(people()).set_delay(delay))
        .mount(&server)
        .await;
    server
}

struct Daemon {
    child: tokio::process::Child,
}

impl Daemon {
    fn start(dir: &TestDir, args: &[&str]) -> Self {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let mut cmd = tokio::process::Command::from(dir.command(&all));
        cmd.env("RUST_LOG", "info").stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        Self { child: cmd.spawn().expect("start rosterd serve") }
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap().success();
        assert!(ok, "kill -{name} {pid}");
    }

    /// SIGTERM, then the exit status and output; fails if it takes over `limit`.
    async fn stop(self, limit: Duration) -> Out {
        self.signal("TERM");
        self.wait(limit).await
    }

    async fn wait(self, limit: Duration) -> Out {
        let out =
            tokio::time::timeout(limit, self.child.wait_with_output()).await.expect("rosterd did not exit in time");
        Out(out.expect("wait for rosterd"))
    }
}

/// Polls `check` every 100 ms until it holds or `secs` pass.
async fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}

fn runs(dir: &TestDir, integration: &str, status: &str) -> usize {
    if !dir.path().join("rosterd.db").exists() {
        return 0;
    }
    // Until the daemon has created the schema there are no runs to count.
    dir.try_query(&format!("SELECT COUNT(*) FROM runs WHERE integration = '{integration}' AND status = '{status}'"))
        .map_or(0, |rows| rows[0].parse().unwrap())
}

#[tokio::test]
async fn a_per_second_schedule_runs_repeatedly_and_sigterm_exits_0() {
    let server = source(Duration::ZERO).await;
    let dir = TestDir::new();
    dir.manifest("hr", &manifest(&server, "* * * * * *", "/people"));
    let daemon = Daemon::start(&dir, &[]);
    assert!(eventually(15, || runs(&dir, "hr", "ok") >= 3).await, "three scheduled runs");
    let started = Instant::now();
    let out = daemon.stop(Duration::from_secs(10)).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(out.stderr().contains("stopped"), "{}", out.all());
    assert_eq!(dir.query("SELECT DISTINCT trigger FROM runs"), ["schedule"]);
    assert_eq!(dir.query("SELECT COUNT(*) FROM runs WHERE status = 'running'"), ["0"]);
}

#[tokio::test]
async fn manifests_added_and_removed_while_serving_take_effect() {
    let server = source(Duration::ZERO).await;
    let dir = TestDir::new();
    let first = dir.manifest("first", &manifest(&server, "* * * * * *", "/people"));
    let daemon = Daemon::start(&dir, &[]);
    assert!(eventually(10, || runs(&dir, "first", "ok") >= 1).await);
    dir.manifest("second", &manifest(&server, "* * * * * *", "/people"));
    assert!(eventually(10, || runs(&dir, "second", "ok") >= 1).await, "an added manifest runs without a restart");
    std::fs::remove_file(first).unwrap();
    // Allow a tick already under way when the file went (the folder is polled
    // every second): once `second` has run twice more, `first` is unscheduled.
    let ticks = runs(&dir, "second", "ok");
    assert!(eventually(10, || runs(&dir, "second", "ok") >= ticks + 2).await);
    let after_removal = runs(&dir, "first", "ok");
    let ticks = runs(&dir, "second", "ok");
    assert!(eventually(10, || runs(&dir, "second", "ok") >= ticks + 3).await);
    assert_eq!(runs(&dir, "first", "ok"), after_removal, "a removed manifest stops running");
    let out = daemon.stop(Duration::from_secs(10)).await;
    assert!(out.stderr().contains("manifest removed"), "{}", out.all());
}

#[tokio::test]
async fn a_broken_manifest_does_not_stop_the_good_one_and_a_bad_edit_keeps_the_last_good_version() {
    let server = source(Duration::ZERO).await;
    let dir = TestDir::new();
    dir.write("integrations/broken.json", "{\"execute\": [}");
    let good = dir.manifest("good", &manifest(&server, "* * * * * *", "/people"));
    let daemon = Daemon::start(&dir, &[]);
    assert!(eventually(10, || runs(&dir, "good", "ok") >= 1).await);
    std::fs::write(&good, "{\"execute\": \"oops\"").unwrap();
    // The bad edit is seen within a second; two more runs after that are the old version's.
    let before = runs(&dir, "good", "ok");
    assert!(eventually(10, || runs(&dir, "good", "ok") >= before + 3).await, "the last good version keeps running");
    let out = daemon.stop(Duration::from_secs(10)).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let log = out.stderr();
    assert!(log.contains("integrations/broken.json: invalid JSON"), "{log}");
    assert!(log.contains("the last good version keeps running"), "{log}");
}

#[tokio::test]
async fn serve_once_runs_everything_once_and_reports_failures() {
    let server = source(Duration::ZERO).await;
    Mock::given(path("/broken")).respond_with(ResponseTemplate::new(500)).mount(&server).await;
    let dir = TestDir::new();
    dir.config("[http]\nretries = 0\n");
    dir.manifest("good", &manifest(&server, "0 3 * * *", "/people"));
    let mut ondemand = manifest(&server, "0 3 * * *", "/people");
    ondemand.as_object_mut().unwrap().remove("schedule");
    dir.manifest("ondemand", &ondemand);
    let out = Daemon::start(&dir, &["--once"]).wait(Duration::from_secs(30)).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(
        dir.query("SELECT integration, trigger, status FROM runs ORDER BY integration"),
        ["good\tschedule\tok", "ondemand\tschedule\tok"]
    );
    dir.manifest("bad", &manifest(&server, "0 3 * * *", "/broken"));
    let out = Daemon::start(&dir, &["--once"]).wait(Duration::from_secs(30)).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(out.stderr().contains("bad failed"), "{}", out.all());
    dir.write("integrations/invalid.json", "[]");
    std::fs::remove_file(dir.path().join("integrations/bad.json")).unwrap();
    let out = Daemon::start(&dir, &["--once"]).wait(Duration::from_secs(30)).await;
    assert_eq!(out.code(), 1, "an invalid manifest left out fails --once: {}", out.all());
}

#[tokio::test]
async fn a_slow_source_never_gets_two_overlapping_runs() {
    let server = source(Duration::from_secs(3)).await;
    let dir = TestDir::new();
    dir.manifest("slow", &manifest(&server, "* * * * * *", "/people"));
    let daemon = Daemon::start(&dir, &[]);
    assert!(eventually(20, || runs(&dir, "slow", "ok") >= 2 && runs(&dir, "slow", "skipped") >= 2).await);
    let out = daemon.stop(Duration::from_secs(40)).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let spans: Vec<(String, String)> = dir
        .query("SELECT started_at, finished_at FROM runs WHERE status IN ('ok', 'failed') ORDER BY id")
        .iter()
        .map(|row| {
            let (a, b) = row.split_once('\t').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "runs overlap: {pair:?}");
    }
    let requests = server.received_requests().await.unwrap().len();
    assert_eq!(requests, spans.len(), "one request per run that started");
}

#[tokio::test]
async fn sigterm_cancels_a_run_still_going_after_the_grace_period() {
    let server = source(Duration::from_secs(20)).await;
    let dir = TestDir::new();
    dir.config("shutdown_grace_secs = 1\n");
    dir.manifest("slow", &manifest(&server, "* * * * * *", "/people"));
    let daemon = Daemon::start(&dir, &[]);
    assert!(eventually(10, || runs(&dir, "slow", "running") >= 1).await, "a run started");
    let started = Instant::now();
    let out = daemon.stop(Duration::from_secs(10)).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(dir.query("SELECT COUNT(*) FROM users"), ["0"]);
    let failed = dir.query("SELECT error FROM runs WHERE status = 'failed'");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].starts_with("cancelled"), "{failed:?}");
}

#[tokio::test]
async fn sighup_picks_up_a_changed_secret() {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .and(header("authorization", "Bearer new-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(people()))
        .mount(&server)
        .await;
    Mock::given(path("/people")).respond_with(ResponseTemplate::new(401)).mount(&server).await;
    let dir = TestDir::new();
    dir.config("[http]\nretries = 0\n[secrets.hr]\nKEY = \"old-key\"\n");
    let mut m = manifest(&server, "* * * * * *", "/people");
    m["headers"] = json!({"Authorization": "Bearer {{KEY}}"});
    m["initial_data_form"] = json!([{"id": "KEY", "name": "key"}]);
    dir.manifest("hr", &m);
    let daemon = Daemon::start(&dir, &[]);
    assert!(eventually(10, || runs(&dir, "hr", "failed") >= 1).await, "runs fail with the old key");
    assert_eq!(runs(&dir, "hr", "ok"), 0);
    dir.config("[http]\nretries = 0\n[secrets.hr]\nKEY = \"new-key\"\n");
    daemon.signal("HUP");
    assert!(eventually(10, || runs(&dir, "hr", "ok") >= 1).await, "after SIGHUP the new key is used");
    let out = daemon.stop(Duration::from_secs(10)).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(!out.all().contains("new-key") && !out.all().contains("old-key"), "{}", out.all());
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let dir = TestDir::new();
    let unit =
        include_str!("../../systemd/rosterd.service").replace("/usr/local/bin/rosterd", env!("CARGO_BIN_EXE_rosterd"));
    let file = dir.write("rosterd.service", &unit);
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", file.to_str().unwrap()])
        .output()
        .expect("systemd-analyze is installed by .ci/run");
    let out = Out(out);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(unit.contains("Type=notify") && unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
}

#[tokio::test]
async fn log_format_json_writes_one_json_object_per_line() {
    let server = source(Duration::ZERO).await;
    let dir = TestDir::new();
    dir.config("log_format = \"json\"\n");
    dir.manifest("hr", &manifest(&server, "0 3 * * *", "/people"));
    let out = Daemon::start(&dir, &["--once"]).wait(Duration::from_secs(30)).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let stderr = out.stderr();
    assert!(!stderr.is_empty());
    let mut saw_run_span = false;
    for line in stderr.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["span"]["integration"] == "hr" && v["span"]["run_id"].is_number() {
            saw_run_span = true;
        }
    }
    assert!(saw_run_span, "a log line inside the run span names integration and run_id:\n{stderr}");
}

#[tokio::test]
async fn ctrl_c_during_a_one_shot_run_cancels_it_and_applies_nothing() {
    let server = source(Duration::from_secs(20)).await;
    let dir = TestDir::new();
    dir.manifest("slow", &manifest(&server, "0 3 * * *", "/people"));
    let mut cmd = tokio::process::Command::from(dir.command(&["run", "slow"]));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let run = Daemon { child: cmd.spawn().expect("start rosterd run") };
    assert!(eventually(10, || runs(&dir, "slow", "running") >= 1).await, "the run started");
    run.signal("INT");
    let out = run.wait(Duration::from_secs(10)).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    assert_eq!(dir.query("SELECT status, error LIKE 'cancelled%' FROM runs"), ["failed\t1"]);
    assert_eq!(dir.query("SELECT COUNT(*) FROM users"), ["0"]);
}
