//! What a hostile source, two processes or a killed run cannot do: walk a
//! secret to another host, show a secret in the form the client sent it,
//! race the migrations, put a formula in a spreadsheet, leave a run
//! `running`, lose a failed run's counts, or drive the terminal.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{header, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::TestDir;

const KEY: &str = "Pcred Secret&Gamma3";

/// A dir whose config gives integration `name` the secret KEY, without retries.
fn dir_for(name: &str, extra: &str) -> TestDir {
    let dir = TestDir::new();
    dir.config(&format!("{extra}\n[http]\nretries = 0\n[secrets.{name}]\nKEY = \"{KEY}\"\n"));
    dir
}

fn manifest(url: &str, extra: Value) -> Value {
    let mut m = json!({
        "execute": [{"url": url}],
        "action": "create",
        "headers": {"X-Api-Key": "{{ KEY }}"},
        "data_from": "data",
        "next_page_from": "next",
        "initial_data_form": [{"id": "KEY", "name": "API key"}],
        "data_structure": {"email": "email", "first_name": "first", "last_name": "last"}
    });
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(extra.clone());
    }
    m
}

fn person(i: u32) -> Value {
    json!({"email": format!("p{i}@acme.example"), "first": "P", "last": format!("N{i}")})
}

#[tokio::test]
async fn a_next_page_on_another_origin_is_refused_and_that_host_receives_nothing() {
    let (home, elsewhere) = (MockServer::start().await, MockServer::start().await);
    let next = format!("{}/people?page=2", elsewhere.uri());
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [person(1)], "next": next})))
        .mount(&home)
        .await;
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [person(2)], "next": null})))
        .mount(&elsewhere)
        .await;
    let dir = dir_for("hr", "");
    dir.manifest("hr", &manifest(&format!("{}/people", home.uri()), json!({})));
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    let (from, to) = (home.uri().replace("http://", ""), elsewhere.uri().replace("http://", ""));
    assert!(out.stderr().contains(&from) && out.stderr().contains(&to), "names both origins: {}", out.all());
    assert!(out.stderr().contains("allowed_origins"), "{}", out.all());
    assert!(elsewhere.received_requests().await.unwrap().is_empty(), "nothing was sent to the other origin");
    assert_eq!(dir.query("SELECT COUNT(*) FROM users"), ["0"]);

    // Listed in allowed_origins, it is followed with the manifest's headers.
    dir.manifest("hr", &manifest(&format!("{}/people", home.uri()), json!({"allowed_origins": [elsewhere.uri()]})));
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let got = elsewhere.received_requests().await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers.get("x-api-key").and_then(|v| v.to_str().ok()), Some(KEY));
    assert_eq!(dir.query("SELECT COUNT(*) FROM users"), ["2"]);
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_refused_and_one_within_it_is_followed() {
    let (home, elsewhere) = (MockServer::start().await, MockServer::start().await);
    Mock::given(path("/away"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", format!("{}/people", elsewhere.uri())))
        .mount(&home)
        .await;
    Mock::given(path("/moved"))
        .respond_with(ResponseTemplate::new(301).insert_header("location", "/people"))
        .mount(&home)
        .await;
    let page = json!({"data": [person(1)], "next": null});
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page.clone()))
        .mount(&home)
        .await;
    Mock::given(path("/people")).respond_with(ResponseTemplate::new(200).set_body_json(page)).mount(&elsewhere).await;
    let dir = dir_for("hr", "");
    dir.manifest("hr", &manifest(&format!("{}/away", home.uri()), json!({})));
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(out.stderr().contains("refused a redirect"), "{}", out.all());
    assert!(elsewhere.received_requests().await.unwrap().is_empty(), "the custom secret header went nowhere");

    dir.manifest("hr", &manifest(&format!("{}/moved", home.uri()), json!({})));
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 0, "a redirect within the origin is followed: {}", out.all());
}

#[tokio::test]
async fn a_secret_never_shows_in_the_form_the_client_sent_it() {
    let server = MockServer::start().await;
    Mock::given(path("/people/Pcred Secret&Gamma3"))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream says no"))
        .mount(&server)
        .await;
    let dir = dir_for("hr", "");
    let url = format!("{}/people/{{{{ KEY }}}}?key={{{{ KEY }}}}&other=1", server.uri());
    dir.manifest("hr", &manifest(&url, json!({})));
    let run = dir.run_async(&["run", "hr", "--json"]).await;
    assert_eq!(run.code(), 1, "{}", run.all());
    let sent = server.received_requests().await.unwrap();
    assert!(!sent.is_empty() && sent[0].url.as_str().contains("Pcred%20Secret"), "the wire form is percent-encoded");
    let history = dir.run_async(&["history", "hr"]).await;
    let detail = dir.run_async(&["history", "--run", "1", "--json"]).await;
    let stored = dir.query(
        "SELECT COALESCE(r.error, '') || ' ' || q.url || ' ' || COALESCE(q.error, '')
                            FROM runs r JOIN run_requests q ON q.run_id = r.id",
    );
    let everything = format!("{}\n{}\n{}\n{}", run.all(), history.all(), detail.all(), stored.join("\n"));
    assert!(everything.contains("***KEY***"), "{everything}");
    for form in ["Pcred", "Gamma3", "Secret%26", "Secret&"] {
        assert!(!everything.contains(form), "{form} leaked:\n{everything}");
    }
}

#[tokio::test]
async fn processes_opening_a_new_database_at_once_all_succeed() {
    for round in 0..4 {
        let dir = TestDir::new();
        let children: Vec<_> = (0..10)
            .map(|i| {
                let user = json!({"users": [{"name": format!("P N{i}"), "employee_id": format!("E{i}"),
                                             "email": format!("p{i}@acme.example")}]});
                let file = dir.write(&format!("p{i}.json"), &user.to_string());
                let mut cmd = tokio::process::Command::from(dir.command(&["import", file.to_str().unwrap()]));
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
                cmd.spawn().expect("spawn rosterd")
            })
            .collect();
        for child in children {
            let out = crate::Out(child.wait_with_output().await.unwrap());
            assert_eq!(out.code(), 0, "round {round}: {}", out.all());
        }
        assert_eq!(dir.query("SELECT COUNT(*) FROM users"), ["10"], "round {round}");
    }
}

#[tokio::test]
async fn csv_exports_escape_formulas_and_import_takes_them_back() {
    let dir = TestDir::new();
    dir.write(
        "people.json",
        &json!({"users": [{"name": "=HYPERLINK(\"http://x.example\",\"click\") Smith", "employee_id": "E1",
                           "email": "e1@acme.example", "phone": "+1 555 0100", "job": "@lead"}]})
        .to_string(),
    );
    let out = dir.run_async(&["import", "people.json"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let export = dir.run_async(&["export", "--format", "csv"]).await;
    assert_eq!(export.code(), 0, "{}", export.all());
    let csv = export.stdout();
    assert!(csv.contains("'=HYPERLINK") && csv.contains("'+1 555 0100") && csv.contains("'@lead"), "{csv}");
    let users = dir.run_async(&["users", "--format", "csv"]).await.stdout();
    assert!(users.contains("'=HYPERLINK"), "{users}");
    dir.write("export.csv", &csv);
    let again = dir.run_async(&["import", "export.csv"]).await;
    assert_eq!(again.code(), 0, "{}", again.all());
    assert_eq!(again.json()["updated_users"], json!([]), "the round trip changes nothing: {}", again.all());
    assert_eq!(
        dir.query("SELECT first_name, phone, job FROM users"),
        ["=HYPERLINK(\"http://x.example\",\"click\")\t+1 555 0100\t@lead"]
    );

    dir.config("[export]\ncsv_escape_formulas = false\n");
    let raw = dir.run_async(&["export", "--format", "csv"]).await.stdout();
    assert!(raw.contains("\n\"=HYPERLINK") && !raw.contains("'="), "{raw}");
}

#[tokio::test]
async fn a_killed_run_reads_as_interrupted_at_once() {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let dir = dir_for("hr", "");
    dir.manifest("hr", &manifest(&format!("{}/people", server.uri()), json!({})));
    let mut child = tokio::process::Command::from(dir.command(&["run", "hr"]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    while server.received_requests().await.unwrap_or_default().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().await.unwrap();
    child.wait().await.unwrap();
    let history = dir.run_async(&["history", "hr", "--json"]).await;
    let runs = history.json();
    assert_eq!(runs[0]["status"], "failed", "{runs}");
    assert!(runs[0]["error"].as_str().unwrap_or_default().contains("interrupted"), "{runs}");
}

#[tokio::test]
async fn a_run_that_fails_after_fetching_keeps_its_counts() {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .and(query_param("page", "1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": [person(1), person(2)], "next": "/people?page=2"})),
        )
        .mount(&server)
        .await;
    Mock::given(path("/people"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(500).set_body_string("page 2 is broken"))
        .mount(&server)
        .await;
    let dir = dir_for("hr", "");
    dir.manifest("hr", &manifest(&format!("{}/people?page=1", server.uri()), json!({})));
    let out = dir.run_async(&["run", "hr", "--json"]).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    let report = out.json();
    assert_eq!((report["fetched"].as_i64(), report["pages"].as_i64()), (Some(2), Some(1)), "{report}");
    assert_eq!(dir.query("SELECT status, fetched, pages FROM runs"), ["failed\t2\t1"]);
    assert_eq!(dir.query("SELECT COUNT(*) FROM users"), ["0"]);
}

#[tokio::test]
async fn control_characters_from_a_source_are_shown_escaped() {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .and(header("x-api-key", KEY))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom \u{1b}[31mred\u{7} bell"))
        .mount(&server)
        .await;
    let dir = dir_for("hr", "");
    dir.manifest("hr", &manifest(&format!("{}/people", server.uri()), json!({})));
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    let history = dir.run_async(&["history", "hr"]).await;
    for text in [out.all(), history.all()] {
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "raw control characters: {text:?}");
        assert!(text.contains("\\x1b[31mred\\x07"), "{text}");
    }
    let json = dir.run_async(&["history", "hr", "--json"]).await;
    assert!(json.stdout().contains("\\u001b[31mred\\u0007"), "JSON escapes them as JSON does: {}", json.stdout());
}

#[tokio::test]
async fn a_hung_source_waits_its_turn_and_the_run_timeout_ends_it() {
    let server = MockServer::start().await;
    Mock::given(path("/hung"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})).set_delay(Duration::from_secs(60)))
        .mount(&server)
        .await;
    Mock::given(path("/fast"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [person(1)]})))
        .mount(&server)
        .await;
    let dir = TestDir::new();
    dir.config("max_concurrent_runs = 1\n[http]\nretries = 0\nrun_timeout_secs = 2\n[secrets.hung]\nKEY = \"k\"\n[secrets.fast]\nKEY = \"k\"\n");
    let every_second = json!({"schedule": "* * * * * *"});
    dir.manifest("hung", &manifest(&format!("{}/hung", server.uri()), every_second.clone()));
    dir.manifest("fast", &manifest(&format!("{}/fast", server.uri()), every_second));
    let mut daemon = tokio::process::Command::from(dir.command(&["serve"]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let count = |sql: &str| dir.try_query(sql).ok().and_then(|r| r[0].parse::<u32>().ok()).unwrap_or(0);
    let mut ok = false;
    for _ in 0..150 {
        ok = count("SELECT COUNT(*) FROM runs WHERE integration = 'fast' AND status = 'ok'") >= 2
            && count("SELECT COUNT(*) FROM runs WHERE integration = 'hung' AND error LIKE '%run_timeout_secs%'") >= 1
            && count("SELECT COUNT(*) FROM runs WHERE status = 'skipped' AND error LIKE '%queued for a run slot%'")
                >= 1;
        if ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.kill().await.unwrap();
    assert!(ok, "{:?}", dir.query("SELECT integration, status, error FROM runs ORDER BY id"));
}
