//! The HTTP API and `rosterd import` / `export`, over real loopback HTTP
//! against the real daemon.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::TestDir;

const TOKEN: &str = "test-token-1234567";

struct Api {
    base: String,
    client: reqwest::Client,
    child: tokio::process::Child,
}

impl Api {
    /// Starts `serve` with the API on port 0 and learns the port from its log.
    async fn start(dir: &TestDir, extra: &str) -> Self {
        dir.config(&format!("[api]\nlisten = \"127.0.0.1:0\"\ntokens = [\"{TOKEN}\"]\nmax_body_bytes = 4096\n{extra}"));
        let mut cmd = tokio::process::Command::from(dir.command(&["serve"]));
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut child = cmd.spawn().unwrap();
        let addr = crate::listening_address(child.stderr.take().expect("stderr piped")).await;
        let api = Self { base: format!("http://{addr}"), client: reqwest::Client::new(), child };
        for _ in 0..100 {
            if let Ok(r) = api.client.get(format!("{}/healthz", api.base)).send().await
                && r.status() == 200
            {
                return api;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the API did not come up");
    }

    fn post(&self, route: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{route}", self.base)).header("authorization", format!("Bearer {TOKEN}"))
    }

    async fn import(&self, body: Value) -> (u16, Value) {
        let r = self
            .post("/api/v1/user/bulk-import")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, serde_json::from_slice(&r.bytes().await.unwrap()).unwrap())
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn seed_users() -> Value {
    json!({"users": [
        {"email": "mjones@goodbuilders.biz", "employee_id": "Y-58439", "phone": "360-555-3434", "name": "Mary Jones", "job": "Corporate Office"},
        {"email": "bjones@goodbuilders.biz", "employee_id": "X-13892", "phone": "360-555-1212", "name": "Bob Jones", "job": "South Bridge Project"},
        {"name": "Seth Jones", "employee_id": "Z-8274", "job": "Fortune Tower 2 Project"}
    ]})
}

#[tokio::test]
async fn every_api_route_needs_a_valid_token() {
    let dir = TestDir::new();
    let api = Api::start(&dir, "").await;
    for auth in [None, Some("Bearer wrong"), Some(&format!("Basic {TOKEN}") as &str), Some("Bearer ")] {
        for (method, route) in [
            ("POST", "/api/v1/user/bulk-export"),
            ("POST", "/api/v1/user/bulk-import"),
            ("GET", "/api/v1/runs"),
            ("POST", "/api/v1/integrations/x/run"),
        ] {
            let mut req = api.client.request(method.parse().unwrap(), format!("{}{route}", api.base));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {route} with {auth:?}");
            let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
        }
    }
}

#[tokio::test]
async fn import_creates_then_lists_only_what_changed() {
    let dir = TestDir::new();
    let api = Api::start(&dir, "").await;
    let (status, reply) = api.import(seed_users()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["errors"], json!([]));
    assert_eq!(
        reply["updated_users"][2],
        json!({"name": "Seth Jones", "employee_id": "Z-8274", "action": "create", "username": "seth.jones"})
    );
    assert_eq!(dir.query("SELECT DISTINCT source FROM users"), ["import"]);

    let mut second = seed_users();
    second["users"][1]["phone"] = json!("360-555-9999");
    let (status, reply) = api.import(second).await;
    assert_eq!(status, 200);
    assert_eq!(
        reply,
        json!({"errors": [], "updated_users": [{"name": "Bob Jones", "employee_id": "X-13892", "action": "update"}]})
    );
    assert_eq!(dir.query("SELECT phone FROM users WHERE external_id = 'X-13892'"), ["360-555-9999"]);
}

#[tokio::test]
async fn a_bad_record_is_reported_by_index_and_the_others_are_applied() {
    let dir = TestDir::new();
    let api = Api::start(&dir, "").await;
    let (status, reply) = api
        .import(json!({"users": [
            {"name": "Ann Lee", "employee_id": "E1"},
            {"name": "No Id"},
            {"name": "Bad Email", "employee_id": "E3", "email": "nope"},
            {"name": "Seth Jones", "employee_id": "E4"},
            {"name": "Seth Jones", "employee_id": "E5"}
        ]}))
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["errors"],
        json!([
            {"index": 1, "employee_id": null, "error": "employee_id is required"},
            {"index": 2, "employee_id": "E3", "error": "invalid email \"nope\""}
        ])
    );
    assert_eq!(reply["updated_users"][2]["username"], "seth.jones2");
    assert_eq!(dir.query("SELECT external_id FROM users ORDER BY id"), ["E1", "E4", "E5"]);
}

#[tokio::test]
async fn malformed_bodies_get_400_and_apply_nothing() {
    let dir = TestDir::new();
    let api = Api::start(&dir, "").await;
    let r = api
        .post("/api/v1/user/bulk-import")
        .body("{\"users\": [\n{\"name\": \"A\", \"employee_id\": \"1\"},\n{oops}]}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(body["error"].as_str().unwrap().contains("line 3"), "{body}");
    let r = api
        .post("/api/v1/user/bulk-import")
        .header("content-type", "text/csv")
        .body("name,email\nA,a@x.io\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = api
        .post("/api/v1/user/bulk-import")
        .header("content-type", "text/csv")
        .body("name,employee_id\nA,1\nB,2,3\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(dir.query("SELECT COUNT(*) FROM users"), ["0"]);
}

#[tokio::test]
async fn csv_import_and_both_export_formats() {
    let dir = TestDir::new();
    let api = Api::start(&dir, "").await;
    let csv =
        "name,employee_id,email,phone,job,badge\nMary Ann-Smith,E1,Mary@Acme.Example,,Ops,B-7\nKai Müller,E2,,555,,\n";
    let r = api.post("/api/v1/user/bulk-import").header("content-type", "text/csv").body(csv).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let reply: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(reply["updated_users"][0]["username"], "mary.annsmith");
    assert_eq!(reply["updated_users"][1]["username"], "kai.muller");
    assert_eq!(
        dir.query("SELECT email, extra_fields FROM users WHERE external_id = 'E1'"),
        ["mary@acme.example\t{\"badge\":\"B-7\"}"]
    );

    let r = api.post("/api/v1/user/bulk-export").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let first = body["users"][0].as_object().unwrap();
    let keys: Vec<&str> = first.keys().map(String::as_str).collect();
    let mut expected = ["name", "employee_id", "username", "email", "phone", "job", "created_at", "updated_at"];
    let mut sorted = keys.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected);
    assert_eq!(body["users"][0]["name"], "Mary Ann-Smith");
    assert_eq!(body["users"][1]["email"], Value::Null);

    let r = api.post("/api/v1/user/bulk-export").header("accept", "text/csv").send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let text = r.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("name,employee_id,username,email,phone,job,created_at,updated_at"));
    assert!(lines.next().unwrap().starts_with("Mary Ann-Smith,E1,mary.annsmith,mary@acme.example,,Ops,"), "{text}");
}

#[tokio::test]
async fn an_oversized_body_gets_413() {
    let dir = TestDir::new();
    let api = Api::start(&dir, "").await;
    let users: Vec<Value> =
        (0..200).map(|i| json!({"name": format!("User {i}"), "employee_id": format!("E{i}")})).collect();
    let (status, body) = api.import(json!({"users": users})).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("max_body_bytes"), "{body}");
    assert_eq!(dir.query("SELECT COUNT(*) FROM users"), ["0"]);
}

#[tokio::test]
async fn healthz_metrics_and_run_triggers() {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": [{"email": "a@acme.example", "first": "A", "last": "B"}]}))
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&server)
        .await;
    let dir = TestDir::new();
    dir.manifest(
        "hr",
        &json!({
            "execute": [{"url": format!("{}/people", server.uri())}],
            "action": "create", "data_from": "data",
            "data_structure": {"email": "email", "first_name": "first", "last_name": "last"}
        }),
    );
    let api = Api::start(&dir, "").await;
    let health = api.client.get(format!("{}/healthz", api.base)).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let r = api.post("/api/v1/integrations/nope/run").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = api.post("/api/v1/integrations/hr/run").send().await.unwrap();
    assert_eq!(r.status(), 202);
    let started: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let run_id = started["run_id"].as_i64().unwrap();
    let r = api.post("/api/v1/integrations/hr/run").send().await.unwrap();
    assert_eq!(r.status(), 409);

    let mut finished = false;
    for _ in 0..100 {
        let r = api
            .client
            .get(format!("{}/api/v1/runs?integration=hr&limit=5", api.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let runs: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        if runs["runs"].as_array().unwrap().iter().any(|r| r["id"] == run_id && r["status"] == "ok") {
            assert_eq!(runs["runs"].as_array().unwrap().iter().find(|r| r["id"] == run_id).unwrap()["trigger"], "api");
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(finished, "the triggered run finished ok");

    let metrics = api.client.get(format!("{}/metrics", api.base)).send().await.unwrap().text().await.unwrap();
    for line in [
        "rosterd_runs_total{integration=\"hr\",status=\"ok\",dry_run=\"false\"} 1",
        "rosterd_runs_total{integration=\"hr\",status=\"skipped\",dry_run=\"false\"} 1",
        "rosterd_users{active=\"1\"} 1",
        "rosterd_run_duration_seconds_count{integration=\"hr\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    assert!(metrics.contains("rosterd_last_success_timestamp_seconds{integration=\"hr\"} "), "{metrics}");
    for line in [
        "rosterd_users_created_total{integration=\"hr\"} 1",
        "rosterd_users_deactivated_total{integration=\"hr\"} 0",
        "rosterd_source_responses_total{integration=\"hr\",class=\"2xx\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    promtool_accepts(&metrics);
    // Durations in milliseconds: a run of a few ms adds more than 0 to the sum.
    let sum: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rosterd_run_duration_seconds_sum{integration=\"hr\"} "))
        .and_then(|v| v.parse().ok())
        .expect("a duration sum");
    assert!(sum > 0.0, "{metrics}");
}

#[tokio::test]
async fn listen_without_tokens_refuses_to_start() {
    let dir = TestDir::new();
    dir.config("[api]\nlisten = \"127.0.0.1:0\"\n");
    let out = dir.run_async(&["serve"]).await;
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stderr().contains("/api/tokens") && out.stderr().contains("no tokens"), "{}", out.all());
}

#[tokio::test]
async fn cli_export_then_import_changes_nothing() {
    let dir = TestDir::new();
    dir.write("people.json", &seed_users().to_string());
    let out = dir.run_async(&["import", "people.json"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(out.json()["updated_users"].as_array().unwrap().len(), 3);
    for format in ["json", "csv"] {
        let exported = dir.run_async(&["export", "--format", format]).await;
        assert_eq!(exported.code(), 0, "{}", exported.all());
        let file = dir.write(&format!("export.{format}"), &exported.stdout());
        let again = dir.run_async(&["import", file.to_str().unwrap()]).await;
        assert_eq!(again.code(), 0, "{}", again.all());
        assert_eq!(again.json(), json!({"errors": [], "updated_users": []}), "{format}");
    }
    dir.write("bad.json", "{\"users\": [{\"name\": \"X\"}]}");
    let out = dir.run_async(&["import", "bad.json"]).await;
    assert_eq!(out.code(), 1, "a failed record makes import exit 1: {}", out.all());
    assert_eq!(out.json()["errors"][0]["index"], 0);
}

/// Import asks the store per record (by index) instead of reading every
/// user: usernames compare case-insensitively, made ones skip those taken,
/// and what an earlier record of the same request claimed is taken too.
#[tokio::test]
async fn cli_import_checks_each_record_against_the_store_and_the_request() {
    let dir = TestDir::new();
    dir.db_init();
    dir.db()
        .execute_batch(
            "INSERT INTO users (email, first_name, last_name, external_id, username, created_at, updated_at) VALUES
               ('seth@acme.example', 'Seth', 'Jones', 'S-1', 'Seth.Jones', 'x', 'x'),
               ('other@acme.example', 'Seth', 'Jones', 'S-2', 'seth.jones2', 'x', 'x');",
        )
        .unwrap();
    dir.write(
        "people.json",
        &json!({"users": [
            {"name": "Seth Jones", "employee_id": "N-1", "email": "NEW@acme.example"},
            {"name": "Seth Jones", "employee_id": "N-2", "email": "new@acme.example"},
            {"name": "Seth Jones", "employee_id": "S-1", "username": "SETH.JONES"},
            {"name": "Seth Jones", "employee_id": "S-2", "username": "seth.JONES"},
            {"name": "Ann Lee", "employee_id": "N-3", "email": "Other@acme.example"}
        ]})
        .to_string(),
    );
    let out = dir.run_async(&["import", "people.json"]).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    let reply = out.json();
    let listed: Vec<String> = reply["updated_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| format!("{} {} {}", u["employee_id"], u["action"], u["username"]))
        .collect();
    assert_eq!(listed, [r#""N-1" "create" "seth.jones3""#, r#""S-1" "update" null"#], "{reply}");
    let errors: Vec<String> =
        reply["errors"].as_array().unwrap().iter().map(|e| format!("{} {}", e["index"], e["error"])).collect();
    assert_eq!(
        errors,
        [
            r#"1 "email new@acme.example already belongs to another user""#,
            r#"3 "username seth.JONES is taken""#,
            r#"4 "email other@acme.example already belongs to another user""#
        ]
    );
    assert_eq!(
        dir.query("SELECT external_id, username, email FROM users ORDER BY id"),
        [
            "S-1\tSETH.JONES\tseth@acme.example",
            "S-2\tseth.jones2\tother@acme.example",
            "N-1\tseth.jones3\tnew@acme.example"
        ]
    );
}

/// Idle clients that never send a request hold at most `max_connections`
/// slots, and only until the header timeout: with 256 file descriptors for
/// the whole daemon and 300 idle clients, health checks and scheduled runs
/// (which open the database and sockets to the source) go on.
#[tokio::test]
async fn idle_connections_neither_starve_the_api_nor_the_schedule() {
    let (_server, dir) = one_person_on_a_schedule("* * * * * *").await;
    dir.config(&format!("[api]\nlisten = \"127.0.0.1:0\"\ntokens = [\"{TOKEN}\"]\nmax_connections = 200\n"));
    let mut daemon = tokio::process::Command::new("sh")
        .args(["-c", "ulimit -n 256 && exec \"$0\" serve", env!("CARGO_BIN_EXE_rosterd")])
        .current_dir(dir.path())
        .env_remove("ROSTERD_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = crate::listening_address(daemon.stderr.take().unwrap()).await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.expect("connect"));
    }
    // While the idle clients hold their slots (the header timeout is 10 s), the schedule goes on.
    let runs = |dir: &TestDir| {
        dir.try_query("SELECT COUNT(*) FROM runs WHERE status = 'ok'").ok().map_or(0, |r| r[0].parse::<u32>().unwrap())
    };
    let before = runs(&dir);
    let mut ran = false;
    for _ in 0..80 {
        if runs(&dir) >= before + 3 {
            ran = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ran, "scheduled runs go on while 300 idle clients wait");
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A new client (no pooled connection) waits for a slot, at most about the header timeout.
    let health =
        reqwest::Client::new().get(format!("http://{addr}/healthz")).timeout(Duration::from_secs(40)).send().await;
    assert_eq!(health.map(|r| r.status().as_u16()).ok(), Some(200), "healthz answers behind 300 idle clients");
    drop(idle);
    daemon.kill().await.unwrap();
}

#[tokio::test]
async fn a_declared_body_over_the_limit_gets_413_before_it_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = TestDir::new();
    let api = Api::start(&dir, "").await;
    let mut stream = tokio::net::TcpStream::connect(api.base.trim_start_matches("http://")).await.unwrap();
    // The body is never sent: a server that waited for it would not answer.
    let head = format!(
        "POST /api/v1/user/bulk-import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut answer))
        .await
        .expect("an answer without the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn the_bearer_scheme_is_matched_in_any_case() {
    let dir = TestDir::new();
    let api = Api::start(&dir, "").await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = api
            .client
            .get(format!("{}/api/v1/runs", api.base))
            .header("authorization", format!("{scheme} {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let r = api.client.get(format!("{}/api/v1/runs", api.base)).header("authorization", TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 401, "a token without a scheme is refused");
}

#[tokio::test]
async fn one_run_and_every_integration_are_in_the_api() {
    let (_server, dir) = one_person_on_a_schedule("0 3 * * *").await;
    dir.write("integrations/broken.json", "{\"execute\": \"oops\"}");
    let api = Api::start(&dir, "").await;
    let get = |route: String| {
        let request = api.client.get(format!("{}{route}", api.base)).bearer_auth(TOKEN);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).unwrap_or(Value::Null))
        }
    };
    let started = api.post("/api/v1/integrations/hr/run").send().await.unwrap();
    let run_id = serde_json::from_slice::<Value>(&started.bytes().await.unwrap()).unwrap()["run_id"].as_i64().unwrap();
    let mut detail = Value::Null;
    for _ in 0..100 {
        let (status, body) = get(format!("/api/v1/runs/{run_id}")).await;
        assert_eq!(status, 200, "{body}");
        if body["run"]["status"] == "ok" {
            detail = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(detail["run"]["created"], 1, "{detail}");
    assert_eq!(detail["requests"].as_array().map(Vec::len), Some(1), "{detail}");
    assert_eq!(get("/api/v1/runs/999".into()).await.0, 404);

    let (status, list) = get("/api/v1/integrations".into()).await;
    assert_eq!(status, 200, "{list}");
    let all = list["integrations"].as_array().unwrap();
    let hr = all.iter().find(|i| i["name"] == "hr").unwrap();
    assert_eq!((hr["schedule"].as_str(), hr["next"].as_array().map(Vec::len)), (Some("0 3 * * *"), Some(3)), "{hr}");
    assert_eq!(hr["last_run"]["id"], run_id);
    let broken = all.iter().find(|i| i["name"] == "broken").unwrap();
    assert_eq!(broken["problems"][0]["pointer"], "/execute", "{broken}");
    let unauthorized = api.client.get(format!("{}/api/v1/integrations", api.base)).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
}

/// A source of one person, and a folder whose `hr` manifest creates them on `schedule`.
/// A create of `/people` (`data`: email, first, last) on `schedule`.
fn people_manifest(server: &MockServer, schedule: &str) -> Value {
    json!({"execute": [{"url": format!("{}/people", server.uri())}], "action": "create", "data_from": "data",
           "schedule": schedule,
           "data_structure": {"email": "email", "first_name": "first", "last_name": "last"}})
}

async fn one_person_on_a_schedule(schedule: &str) -> (MockServer, TestDir) {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [
            {"email": "a@acme.example", "first": "A", "last": "B"}]})))
        .mount(&server)
        .await;
    let dir = TestDir::new();
    dir.manifest("hr", &people_manifest(&server, schedule));
    (server, dir)
}

/// The status page lists every integration and every broken manifest, and
/// shows no user data and no secret.
#[tokio::test]
async fn the_status_page_shows_integrations_and_problems_but_no_user_or_secret() {
    let (_server, dir) = one_person_on_a_schedule("0 3 * * *").await;
    dir.write("integrations/broken.json", "{\"execute\": \"oops\"}");
    let api = Api::start(&dir, "").await;
    let run = api.post("/api/v1/integrations/hr/run").send().await.unwrap();
    assert_eq!(run.status(), 202);
    for _ in 0..100 {
        if dir.try_query("SELECT COUNT(*) FROM runs WHERE status = 'ok'").is_ok_and(|r| r == ["1"]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = api.client.get(format!("{}/", api.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    for expected in ["<strong>hr</strong>", "0 3 * * *", "<strong>broken</strong>", "/execute", "class=\"s ok\""] {
        assert!(html.contains(expected), "{expected} missing:\n{html}");
    }
    for hidden in ["a@acme.example", TOKEN, "<script"] {
        assert!(!html.contains(hidden), "{hidden} shown:\n{html}");
    }

    let dir = TestDir::new();
    let api = Api::start(&dir, "status_page = false\n").await;
    assert_eq!(api.client.get(format!("{}/", api.base)).send().await.unwrap().status(), 404);
}

/// `promtool check metrics` (Debian's prometheus package) on the exposition,
/// when it is installed; otherwise says why the check was skipped.
fn promtool_accepts(metrics: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("promtool is not installed (Debian: apt-get install prometheus): the exposition check is skipped");
        return;
    };
    child.stdin.take().expect("stdin").write_all(metrics.as_bytes()).expect("write metrics");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running run shows how far it got: pages and records fetched so far.
#[tokio::test]
async fn a_running_run_shows_its_progress() {
    let server = MockServer::start().await;
    for page in 1..=5u32 {
        let next = if page < 5 { json!(format!("/people?page={}", page + 1)) } else { json!(null) };
        let people: Vec<Value> =
            (0..3).map(|i| json!({"email": format!("p{page}-{i}@acme.example"), "first": "P", "last": "N"})).collect();
        Mock::given(path("/people"))
            .and(wiremock::matchers::query_param("page", page.to_string()))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"data": people, "next": next}))
                    .set_delay(Duration::from_millis(700)),
            )
            .mount(&server)
            .await;
    }
    let dir = TestDir::new();
    dir.manifest(
        "hr",
        &json!({"execute": [{"url": format!("{}/people?page=1", server.uri())}], "action": "create",
                "data_from": "data", "next_page_from": "next",
                "data_structure": {"email": "email", "first_name": "first", "last_name": "last"}}),
    );
    let api = Api::start(&dir, "").await;
    let started = api.post("/api/v1/integrations/hr/run").send().await.unwrap();
    let run_id = serde_json::from_slice::<Value>(&started.bytes().await.unwrap()).unwrap()["run_id"].as_i64().unwrap();
    let mut seen_running_with_progress = false;
    let mut finished = Value::Null;
    for _ in 0..200 {
        let r = api.client.get(format!("{}/api/v1/runs/{run_id}", api.base)).bearer_auth(TOKEN).send().await.unwrap();
        let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        let run = &body["run"];
        if run["status"] == "running" && run["fetched"].as_i64().unwrap_or(0) > 0 {
            assert!(run["pages"].as_i64().unwrap_or(0) > 0, "{run}");
            seen_running_with_progress = true;
        }
        if run["status"] == "ok" {
            finished = run.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_running_with_progress, "progress was visible while the run fetched");
    assert_eq!((finished["fetched"].as_i64(), finished["pages"].as_i64()), (Some(15), Some(5)), "{finished}");
}

/// The status page is an operations view: a failing integration is marked
/// in words with rosterd's own summary of why (never what the source
/// answered, which here names a person), a failed dry run is not a failed
/// real run, an integration whose file broke stays, running its last good
/// version, and times say their zone.
#[tokio::test]
async fn the_status_page_marks_failing_integrations_and_publishes_no_outside_text() {
    let server = MockServer::start().await;
    let people = json!({"data": [{"email": "a@acme.example", "first": "A", "last": "B"}]});
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(people))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(500).set_body_string("{\"error\": \"ann.private@acme.example is locked\"}"))
        .with_priority(2)
        .mount(&server)
        .await;
    let dir = TestDir::new();
    dir.manifest("hr", &people_manifest(&server, "0 3 * * *"));
    let api = Api::start(&dir, "[http]\nretries = 0\n").await;
    let (api, dir) = (&api, &dir);
    let page = || async { api.client.get(format!("{}/", api.base)).send().await.unwrap().text().await.unwrap() };
    let run_and_wait = |n: usize| async move {
        assert_eq!(api.post("/api/v1/integrations/hr/run").send().await.unwrap().status(), 202);
        for _ in 0..100 {
            let done = dir.try_query("SELECT COUNT(*) FROM runs WHERE finished_at IS NOT NULL AND dry_run = 0");
            if done.is_ok_and(|r| r == [n.to_string()]) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("run {n} did not finish");
    };
    run_and_wait(1).await;
    // A dry run that fails is a failed dry run: the integration is not marked failing.
    let dry = dir.run_async(&["run", "hr", "--dry-run"]).await;
    assert_eq!(dry.code(), 1, "{}", dry.all());
    let html = page().await;
    assert!(html.contains("failed (dry run)"), "{html}");
    assert!(!html.contains("FAILING"), "{html}");
    assert!(html.contains(" UTC"), "times say their zone: {html}");
    // A real run that fails: marked in words, with rosterd's summary, not the source's answer.
    run_and_wait(2).await;
    let html = page().await;
    assert!(html.contains("FAILING"), "{html}");
    assert!(html.contains("step 0 to 127.0.0.1: HTTP 500"), "{html}");
    assert!(!html.contains("ann.private"), "the source's answer is not published: {html}");
    assert!(!html.contains("a@acme.example"), "{html}");
    // The full error stays in history.
    let history = dir.run_async(&["history", "hr"]).await;
    assert!(history.stdout().contains("ann.private"), "{}", history.all());
    // A file that stops validating stays on the page, running its last good version.
    dir.write("integrations/hr.json", "{\"execute\": \"oops\"}");
    let mut html = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        html = page().await;
        if html.contains("running the last good version") {
            break;
        }
    }
    assert!(html.contains("running the last good version"), "{html}");
    assert!(html.contains("<strong>hr</strong>"), "{html}");
}

/// A kept-alive connection with no request stays open well past the 10 s
/// header timeout (it closes after 60 s idle); a request whose headers take
/// longer than 10 s is cut off.
#[tokio::test]
async fn idle_connections_stay_while_slow_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = TestDir::new();
    let api = Api::start(&dir, "").await;
    let addr = api.base.trim_start_matches("http://").to_string();
    let get = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    async fn answer(stream: &mut tokio::net::TcpStream) -> String {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
    let idle = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(get.as_bytes()).await.unwrap();
        assert!(answer(&mut stream).await.starts_with("HTTP/1.1 "), "first answer");
        tokio::time::sleep(Duration::from_secs(13)).await;
        stream.write_all(get.as_bytes()).await.unwrap();
        let again = answer(&mut stream).await;
        assert!(again.starts_with("HTTP/1.1 "), "still open after 13 s idle: {again:?}");
    };
    let slow = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_secs(13)).await;
        let _ = stream.write_all(b"\r\n").await;
        let mut buf = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap_or(0);
        assert_eq!(n, 0, "closed: headers took over 10 s: {:?}", String::from_utf8_lossy(&buf[..n]));
    };
    tokio::join!(idle, slow);
}
