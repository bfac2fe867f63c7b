//! Manifests as ChiefOnboarding writes them, and what a source answers, seen
//! the way an admin sees them: builder-shaped manifests run like hand-written
//! ones, bodies are encoded by their Content-Type, Basic credentials are sent
//! as vendors document them, and a source's own answer shows in errors.

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::TestDir;

fn dir_with(name: &str, secrets: &str) -> TestDir {
    let dir = TestDir::new();
    dir.config(&format!("[http]\nretries = 0\n[secrets.{name}]\n{secrets}\n"));
    dir
}

fn people() -> Value {
    json!({"employees": [
        {"workEmail": "ann@acme.example", "firstName": "Ann", "lastName": "Lee"},
        {"workEmail": "bo@acme.example", "firstName": "Bo", "lastName": "Kim"}
    ]})
}

fn hand_written(server: &MockServer) -> Value {
    json!({
        "execute": [{"url": format!("{}/people", server.uri()), "method": "GET"}],
        "headers": {"Authorization": "Bearer {{ KEY }}"},
        "action": "create",
        "data_from": "employees",
        "data_structure": {"email": "workEmail", "first_name": "firstName", "last_name": "lastName"},
        "initial_data_form": [{"id": "KEY", "name": "key"}]
    })
}

/// What ChiefOnboarding's integration builder saves for the same integration:
/// every optional key present, empty when unset; no action.
fn builder_shaped(server: &MockServer) -> Value {
    let mut m = hand_written(server);
    let o = m.as_object_mut().unwrap();
    o.remove("action");
    o.insert("type".into(), json!("import_users"));
    for (k, v) in [
        ("schedule", json!("")),
        ("next_page_from", json!("")),
        ("next_page_token_from", json!("")),
        ("next_page", json!("")),
        ("oauth", json!({})),
        ("form", json!([])),
        ("continue_if", json!({})),
        ("polling", json!({})),
    ] {
        o.insert(k.into(), v);
    }
    let step = &mut m["execute"][0];
    for (k, v) in [
        ("headers", json!([])),
        ("data", json!({})),
        ("status_code", json!([])),
        ("cast_data_to_json", json!(true)),
        ("store_data", json!({})),
        ("save_as_file", json!("")),
        ("files", json!([])),
        ("continue_if", json!({})),
        ("polling", json!({})),
    ] {
        step[k] = v;
    }
    m
}

#[tokio::test]
async fn a_builder_shaped_manifest_validates_and_runs_like_the_hand_written_one() {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .and(header("authorization", "Bearer k-123456"))
        .respond_with(ResponseTemplate::new(200).set_body_json(people()))
        .mount(&server)
        .await;
    let mut users = Vec::new();
    for (name, m) in [("hand", hand_written(&server)), ("built", builder_shaped(&server))] {
        let dir = dir_with(name, "KEY = \"k-123456\"");
        dir.manifest(name, &m);
        let out = dir.run_async(&["validate"]).await;
        assert_eq!(out.code(), 0, "{name}: {}", out.all());
        let out = dir.run_async(&["run", name, "--json"]).await;
        assert_eq!(out.code(), 0, "{name}: {}", out.all());
        assert_eq!(out.json()["created"], 2, "{name}");
        users.push(dir.query("SELECT email, first_name, last_name, active FROM users ORDER BY email"));
    }
    assert_eq!(users[0], users[1]);
    let dir = dir_with("built", "KEY = \"k-123456\"");
    dir.manifest("built", &builder_shaped(&server));
    let out = dir.run_async(&["validate"]).await;
    assert!(out.stdout().contains("/action: absent, so \"create\""), "{}", out.all());
}

#[tokio::test]
async fn filters_and_tags_are_refused_at_their_pointer_and_nothing_is_sent() {
    let server = MockServer::start().await;
    let dir = dir_with("hr", "KEY = \"k-123456\"\nCOMPANY_ID = \"acme\"");
    let mut m = hand_written(&server);
    m["execute"][0]["url"] = json!(format!("{}/{{{{ COMPANY_ID|lower }}}}/people", server.uri()));
    m["headers"]["X-Mode"] = json!("{% if KEY %}on{% endif %}");
    m["initial_data_form"] = json!([{"id": "KEY", "name": "key"}, {"id": "COMPANY_ID", "name": "company"}]);
    dir.manifest("hr", &m);
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stderr().contains("/execute/0/url") && out.stderr().contains("filter \"lower\""), "{}", out.all());
    assert!(out.stderr().contains("/headers/X-Mode") && out.stderr().contains("{% if %}"), "{}", out.all());
    assert!(!out.stderr().contains("not defined"), "{}", out.all());
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn bodies_are_encoded_by_content_type() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200).set_body_json(people())).mount(&server).await;
    let dir = dir_with("hr", "KEY = \"k 1&2\"");
    let data = json!({"grant": "password", "key": "{{ KEY }}", "n": 3, "none": null});
    let cases = [
        ("form", json!({"Content-Type": "application/x-www-form-urlencoded"}), true),
        ("json", json!({}), true),
        ("text", json!({"Content-Type": "application/x-www-form-urlencoded"}), false),
    ];
    for (i, (what, headers, cast)) in cases.iter().enumerate() {
        let mut m = hand_written(&server);
        m["execute"][0] = json!({"url": format!("{}/people", server.uri()), "method": "POST", "data": data,
                                 "headers": headers, "cast_data_to_json": cast});
        dir.manifest("hr", &m);
        let out = dir.run_async(&["run", "hr"]).await;
        assert_eq!(out.code(), 0, "{what}: {}", out.all());
        let sent = server.received_requests().await.unwrap();
        let body = String::from_utf8(sent[i].body.clone()).unwrap();
        let content_type = sent[i].headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        match *what {
            "form" => assert_eq!(body, "grant=password&key=k+1%262&n=3&none="),
            "json" => {
                assert_eq!(
                    serde_json::from_str::<Value>(&body).unwrap(),
                    json!({"grant": "password", "key": "k 1&2", "n": 3, "none": null})
                );
                assert_eq!(content_type, "application/json");
            }
            _ => assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["key"], "k 1&2", "as JSON text: {body}"),
        }
    }
}

#[tokio::test]
async fn basic_is_encoded_only_when_it_holds_a_colon() {
    let server = MockServer::start().await;
    let encoded = "dXNlcjpwYXNz"; // base64 of "user:pass"
    Mock::given(path("/people"))
        .and(header("authorization", format!("Basic {encoded}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(people()))
        .mount(&server)
        .await;
    for (secrets, header_value) in [
        ("USER = \"user\"\nPASS = \"pass\"", "Basic {{ USER }}:{{ PASS }}"),
        (&*format!("TOKEN = \"{encoded}\""), "Basic {{ TOKEN }}"),
    ] {
        let dir = dir_with("hr", secrets);
        let mut m = hand_written(&server);
        m["headers"] = json!({"Authorization": header_value});
        m["initial_data_form"] =
            json!([{"id": "USER", "name": "u"}, {"id": "PASS", "name": "p"}, {"id": "TOKEN", "name": "t"}])
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| secrets.contains(f["id"].as_str().unwrap()))
                .cloned()
                .collect();
        dir.manifest("hr", &m);
        let out = dir.run_async(&["run", "hr"]).await;
        assert_eq!(out.code(), 0, "{header_value}: {}", out.all());
    }
}

#[tokio::test]
async fn a_missing_data_from_shows_what_the_source_answered() {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": "not_authed"})))
        .mount(&server)
        .await;
    let dir = dir_with("hr", "KEY = \"k-123456\"");
    dir.manifest("hr", &hand_written(&server));
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(out.stderr().contains(r#"{"error":"not_authed","ok":false}"#), "{}", out.all());
    let history = dir.run_async(&["history", "--run", "1"]).await;
    assert!(history.stdout().contains("not_authed"), "{}", history.all());
}

fn sync_manifest(server: &MockServer, active: Value) -> Value {
    json!({
        "execute": [{"url": format!("{}/people", server.uri())}],
        "action": "sync",
        "match_on": "external_id",
        "max_deactivate": "100%",
        "data_from": "people",
        "data_structure": {"external_id": "id", "email": "mail", "first_name": "first", "last_name": "last", "active": active}
    })
}

fn person(id: &str, status: &str) -> Value {
    json!({"id": id, "mail": format!("{id}@acme.example"), "first": "F", "last": id, "status": status})
}

#[tokio::test]
async fn value_maps_turn_a_status_into_active_and_name_what_they_cannot_map() {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"people": [
            person("a", "Active"), person("t", "Terminated"), person("l", "On Leave")]})))
        .mount(&server)
        .await;
    let dir = dir_with("hr", "");
    dir.manifest(
        "hr",
        &sync_manifest(&server, json!({"path": "status", "map": {"Active": true, "Terminated": false}})),
    );
    let out = dir.run_async(&["run", "hr", "--json"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(dir.query("SELECT external_id, active FROM users ORDER BY external_id"), ["a\t1", "t\t0"]);
    let reasons = dir.query("SELECT reason FROM run_skips");
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("\"On Leave\"") && reasons[0].contains("\"status\""), "{reasons:?}");

    let mut m = sync_manifest(&server, json!({"path": "status", "map": {"Active": true}, "else": false}));
    m["max_deactivate"] = json!("100%");
    dir.manifest("hr", &m);
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(dir.query("SELECT external_id, active FROM users ORDER BY external_id"), ["a\t1", "l\t0", "t\t0"]);
}

#[tokio::test]
async fn a_skipped_record_keeps_its_user_and_a_vanished_one_is_deactivated() {
    let server = MockServer::start().await;
    let first = json!({"people": [person("a", "Active"), person("b", "Active"), person("c", "Active")]});
    let second = json!({"people": [person("a", "Active"), person("b", "Sabbatical")]});
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(first))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/people")).respond_with(ResponseTemplate::new(200).set_body_json(second)).mount(&server).await;
    let dir = dir_with("hr", "");
    dir.manifest(
        "hr",
        &sync_manifest(&server, json!({"path": "status", "map": {"Active": true, "Terminated": false}})),
    );
    assert_eq!(dir.run_async(&["run", "hr"]).await.code(), 0);
    let out = dir.run_async(&["run", "hr", "--json"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let report = out.json();
    assert_eq!((report["skipped"].as_i64(), report["deactivated"].as_i64()), (Some(1), Some(1)), "{report}");
    assert_eq!(dir.query("SELECT external_id, active FROM users ORDER BY external_id"), ["a\t1", "b\t1", "c\t0"]);
}

#[tokio::test]
async fn a_full_name_is_split_reading_a_seed_000_shaped_export() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/user/bulk-export"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"users": [
            {"name": "Mary Jones", "employee_id": "E1", "email": "mary@acme.example", "job": "Builder"},
            {"name": "Seth Van Der Berg", "employee_id": "E2", "email": "seth@acme.example"}]})))
        .mount(&server)
        .await;
    let dir = dir_with("ig", "");
    dir.manifest(
        "ig",
        &json!({"execute": [{"url": format!("{}/api/v1/user/bulk-export", server.uri()), "method": "POST"}],
                "action": "sync", "match_on": "external_id", "data_from": "users",
                "data_structure": {"name": "name", "external_id": "employee_id", "email": "email", "job": "job"}}),
    );
    let out = dir.run_async(&["run", "ig"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(
        dir.query("SELECT first_name, last_name, job FROM users ORDER BY external_id"),
        ["Mary\tJones\tBuilder", "Seth\tVan Der Berg\tNULL"]
    );
}

#[tokio::test]
async fn a_path_that_matches_nothing_is_named_with_a_did_you_mean() {
    let server = MockServer::start().await;
    let records: Vec<Value> = (0..23)
        .map(|i| json!({"id": format!("E{i}"), "emails": {"work": format!("p{i}@acme.example")}, "first": "F", "last": "L"}))
        .collect();
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"people": records})))
        .mount(&server)
        .await;
    let dir = dir_with("hr", "");
    let manifest = |email_path: &str, match_on: &str| {
        json!({"execute": [{"url": format!("{}/people", server.uri())}], "action": "sync", "match_on": match_on,
               "data_from": "people",
               "data_structure": {"external_id": "id", "email": email_path, "first_name": "first", "last_name": "last"}})
    };
    // Not the key: the run goes through and says so, in text, JSON and history.
    dir.manifest("hr", &manifest("emails.wrok", "external_id"));
    let dry = dir.run_async(&["run", "hr", "--dry-run"]).await;
    assert_eq!(dry.code(), 0, "{}", dry.all());
    let text = dry.stdout();
    assert!(text.contains("\"emails.wrok\" matched 0 of 23 records; did you mean \"emails.work\"?"), "{text}");
    assert!(text.contains("external_id") && text.contains("23  from \"id\""), "per-field counts: {text}");
    assert!(text.contains("first record, mapped: first_name: F, last_name: L, external_id: E0"), "{text}");
    let json = dir.run_async(&["run", "hr", "--dry-run", "--json"]).await.json();
    assert_eq!(json["fields"].as_array().map(Vec::len), Some(4), "{json}");
    assert_eq!(json["sample"]["fields"]["external_id"], "E0", "{json}");
    let out = dir.run_async(&["run", "hr", "--json"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(out.json()["warnings"][0].as_str().unwrap().contains("did you mean \"emails.work\""), "{}", out.all());
    let history = dir.run_async(&["history", "hr"]).await.stdout();
    assert!(history.contains("warning: data_structure \"email\": \"emails.wrok\" matched 0 of 23"), "{history}");

    // The key: the run fails and applies nothing.
    let dir = dir_with("hr", "");
    dir.manifest("hr", &manifest("emails.wrok", "email"));
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(
        out.stderr().contains("matched 0 of 23 records; did you mean \"emails.work\"?; nothing was applied"),
        "{}",
        out.all()
    );
    assert_eq!(dir.query("SELECT COUNT(*) FROM users"), ["0"]);
    assert_eq!(dir.query("SELECT status, fetched FROM runs"), ["failed\t23"]);
}

/// A secret whose value is one of rosterd's own words, or the integration's
/// name, is masked in what came from outside and nowhere else.
#[tokio::test]
async fn a_secret_equal_to_a_key_or_the_name_leaves_the_json_intact() {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"employees": [
            {"workEmail": "ann@acme.example", "firstName": "Ann", "lastName": "updated"}]})))
        .mount(&server)
        .await;
    let dir = dir_with("hr", "KEY = \"updated\"\nOTHER = \"hr\"");
    let mut m = hand_written(&server);
    m["headers"] = json!({"Authorization": "Bearer {{ KEY }}", "X-Team": "{{ OTHER }}"});
    m["initial_data_form"] = json!([{"id": "KEY", "name": "key"}, {"id": "OTHER", "name": "other"}]);
    dir.manifest("hr", &m);
    for args in [&["run", "hr", "--json"][..], &["run", "hr", "--dry-run", "--json"][..]] {
        let out = dir.run_async(args).await;
        assert_eq!(out.code(), 0, "{}", out.all());
        let report = out.json();
        for key in ["run_id", "integration", "status", "fetched", "created", "updated", "deactivated", "skipped"] {
            assert!(report.get(key).is_some(), "{key} missing: {report}");
        }
        assert_eq!(report["integration"], "hr", "{report}");
    }
    let history = dir.run_async(&["history", "hr", "--json"]).await.json();
    assert_eq!(history[0]["integration"], "hr");
    assert!(history[0].get("updated").is_some(), "{history}");
    let dry = dir.run_async(&["run", "hr", "--dry-run", "--json"]).await.json();
    assert_eq!(dry["sample"]["fields"]["last_name"], "***KEY***", "a value from the source is masked: {dry}");
}

/// A one-character secret is masked where it stands alone and nowhere else,
/// and validate says why that is weak.
#[tokio::test]
async fn a_one_character_secret_leaves_addresses_readable() {
    let server = MockServer::start().await;
    Mock::given(path("/reports/7"))
        .respond_with(ResponseTemplate::new(500).set_body_string("report 7 failed at 127.0.0.1"))
        .mount(&server)
        .await;
    let dir = dir_with("hr", "REPORT = \"7\"");
    let mut m = hand_written(&server);
    m["execute"][0]["url"] = json!(format!("{}/reports/{{{{ REPORT }}}}", server.uri()));
    m["headers"] = json!({});
    m["initial_data_form"] = json!([{"id": "REPORT", "name": "report"}]);
    dir.manifest("hr", &m);
    let validate = dir.run_async(&["validate"]).await;
    assert!(
        validate.stdout().contains("REPORT is 1 character(s) long") && validate.stdout().contains("\"secret\": false"),
        "{}",
        validate.all()
    );
    let out = dir.run_async(&["run", "hr"]).await;
    let history = dir.run_async(&["history", "--run", "1"]).await;
    for text in [out.all(), history.all()] {
        assert!(text.contains("127.0.0.1"), "{text}");
        assert!(text.contains("/reports/***REPORT***"), "{text}");
        assert!(text.contains("report ***REPORT*** failed"), "{text}");
    }
}
