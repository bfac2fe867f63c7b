//! `rosterd run`: fetch, map and apply against a real loopback source
//! (wiremock), with a real SQLite file. All or nothing, secrets never shown.

use base64::Engine as _;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::TestDir;

const KEY: &str = "s3cr3t-\"bamboo\"-key";

fn employee(id: u32, first: &str, last: &str, email: &str) -> Value {
    json!({"id": id.to_string(), "firstName": first, "lastName": last, "workEmail": email})
}

fn people(range: std::ops::Range<u32>) -> Vec<Value> {
    range.map(|i| employee(i, &format!("First{i}"), &format!("Last{i}"), &format!("user{i}@acme.example"))).collect()
}

/// Quick retries, so retry tests do not wait.
const QUICK: &str = "retries = 2\nretry_base_ms = 10";

/// A dir whose config holds the secrets of integration `name`, quick retries.
fn dir_with_secrets(name: &str) -> TestDir {
    dir_with_config(name, "", QUICK)
}

/// Like `dir_with_secrets`, with `top` (top-level keys or other tables) and `http` (the `[http]` keys).
fn dir_with_config(name: &str, top: &str, http: &str) -> TestDir {
    let dir = TestDir::new();
    dir.config(&format!(
        "{top}\n[http]\n{http}\n[secrets.{name}]\nKEY = {}\nREPORT_ID = \"42\"\nCOMPANY_ID = \"acmeco\"\n",
        toml_string(KEY)
    ));
    dir
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The seed's BambooHR create manifest, host swapped for the mock server.
fn seed_create(server: &MockServer) -> Value {
    let text =
        include_str!("../../integrations/bamboohr-create.json").replace("https://api.bamboohr.com", &server.uri());
    serde_json::from_str(&text).unwrap()
}

fn basic() -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:x")))
}

const REPORT: &str = "/api/gateway.php/acmeco/v1/reports/42";

/// A simple paged manifest named `hr` against `server`.
fn paged(server: &MockServer, extra: Value) -> Value {
    let mut m = json!({
        "execute": [{"url": format!("{}/people?page=1", server.uri())}],
        "headers": {"Authorization": "Bearer {{KEY}}"},
        "action": "create",
        "data_from": "data",
        "next_page_from": "next",
        "data_structure": {"email": "workEmail", "first_name": "firstName", "last_name": "lastName", "external_id": "id"},
        "initial_data_form": [{"id": "KEY", "name": "key"}]
    });
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

/// Serves `n` pages of `per_page` people linked by `next`; each page must be fetched exactly `expect` times.
async fn mount_pages(server: &MockServer, n: u32, per_page: u32, expect: impl Into<wiremock::Times> + Clone) {
    for p in 1..=n {
        let next = if p < n { json!(format!("{}/people?page={}", server.uri(), p + 1)) } else { Value::Null };
        let body = json!({"data": people((p - 1) * per_page..p * per_page), "next": next});
        Mock::given(method("GET"))
            .and(path("/people"))
            .and(query_param("page", p.to_string()))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(expect.clone())
            .mount(server)
            .await;
    }
}

/// Runs `hr`, which must fail (exit 1) saying `says` on stderr.
async fn run_fails(dir: &TestDir, says: &str) -> crate::Out {
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(out.stderr().contains(says), "{}", out.all());
    out
}

fn count_users(dir: &TestDir) -> usize {
    dir.query("SELECT COUNT(*) FROM users")[0].parse().unwrap()
}

#[tokio::test]
async fn the_seed_create_manifest_runs_unchanged_with_a_basic_header() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(REPORT))
        .and(header("authorization", basic().as_str()))
        .and(header("accept", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"employees": people(0..3)})))
        .expect(1)
        .mount(&server)
        .await;
    let dir = dir_with_secrets("bamboohr-create");
    dir.manifest("bamboohr-create", &seed_create(&server));
    let out = dir.run_async(&["run", "bamboohr-create"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(
        dir.query("SELECT email, first_name, last_name, source, active FROM users ORDER BY id"),
        [
            "user0@acme.example\tFirst0\tLast0\tbamboohr-create\t1",
            "user1@acme.example\tFirst1\tLast1\tbamboohr-create\t1",
            "user2@acme.example\tFirst2\tLast2\tbamboohr-create\t1"
        ]
    );
    assert_eq!(
        dir.query("SELECT integration, action, trigger, status, fetched, created, skipped, error FROM runs"),
        ["bamboohr-create\tcreate\tmanual\tok\t3\t3\t0\tNULL"]
    );
}

#[tokio::test]
async fn a_post_body_is_rendered_leaf_by_leaf() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/search"))
        .and(body_json(json!({"key": KEY, "filters": [{"company": "acmeco"}], "limit": 100})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": people(0..2)})))
        .expect(1)
        .mount(&server)
        .await;
    let dir = dir_with_secrets("hr");
    let mut m = paged(&server, json!({}));
    m["execute"] = json!([{
        "url": format!("{}/search", server.uri()),
        "method": "POST",
        "data": {"key": "{{KEY}}", "filters": [{"company": "{{ COMPANY_ID }}"}], "limit": 100}
    }]);
    m["initial_data_form"] = json!([{"id": "KEY", "name": "k"}, {"id": "COMPANY_ID", "name": "c", "secret": false}]);
    dir.manifest("hr", &m);
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(count_users(&dir), 2);
}

#[tokio::test]
async fn messy_records_are_skipped_with_reasons_and_the_rest_created() {
    let server = MockServer::start().await;
    let records = json!({"employees": [
        employee(1, "Ann", "Lee", "  ANN.Lee@Acme.Example "),
        employee(2, "", "NoFirst", "nofirst@acme.example"),
        employee(3, "No", "Email", ""),
        employee(4, "Bad", "Email", "bad@@acme"),
        employee(5, "Ann", "Again", "ann.lee@acme.example"),
        employee(6, "Ok", "Person", "ok@acme.example"),
        employee(7, "It", "Admin", "it-admin@acme.example")
    ]});
    Mock::given(path(REPORT)).respond_with(ResponseTemplate::new(200).set_body_json(records)).mount(&server).await;
    let dir = dir_with_config("bamboohr-create", "ignored_emails = [\"IT-admin@acme.example\"]", QUICK);
    dir.manifest("bamboohr-create", &seed_create(&server));
    let out = dir.run_async(&["run", "bamboohr-create", "--json"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let report = out.json();
    assert_eq!((report["created"].as_i64(), report["skipped"].as_i64()), (Some(2), Some(5)), "{report}");
    assert_eq!(dir.query("SELECT email FROM users ORDER BY id"), ["ann.lee@acme.example", "ok@acme.example"]);
    assert_eq!(
        dir.query("SELECT record, reason FROM run_skips ORDER BY record"),
        [
            "1\tmissing first_name or last_name",
            "2\tno valid email",
            "3\tinvalid email \"bad@@acme\"",
            "4\tduplicate of record 0 (ann.lee@acme.example) in this run",
            "6\temail is in ignored_emails"
        ]
    );
    let history = dir.rosterd(&["history", "bamboohr-create"]).stdout();
    assert!(history.contains("missing first_name or last_name"), "{history}");
    assert!(
        history.contains("/reports/42"),
        "the example manifest marks REPORT_ID \"secret\": false, so history shows it: {history}"
    );

    // After a later run, the first one is still there to read, by id.
    assert_eq!(dir.run_async(&["run", "bamboohr-create"]).await.code(), 0);
    let first = dir.rosterd(&["history", "--run", "1"]);
    assert_eq!(first.code(), 0, "{}", first.all());
    let text = first.stdout();
    assert!(text.contains("skipped records of run 1 (first 5)") && text.contains("no valid email"), "{text}");
    assert!(text.contains("requests of run 1:") && text.contains("/reports/42"), "{text}");
    let detail = dir.rosterd(&["history", "--run", "1", "--json"]).json();
    assert_eq!(detail["run"]["id"], 1);
    assert_eq!(detail["skips"].as_array().unwrap().len(), 5, "{detail}");
    assert!(detail["requests"][0]["url"].as_str().unwrap().contains("/reports/42"), "{detail}");
    let missing = dir.rosterd(&["history", "--run", "99"]);
    assert_eq!(missing.code(), 2, "{}", missing.all());
    assert!(missing.stderr().contains("there is no run 99"), "{}", missing.all());
}

#[tokio::test]
async fn a_second_create_run_changes_nothing() {
    let server = MockServer::start().await;
    Mock::given(path(REPORT))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"employees": people(0..5)})))
        .mount(&server)
        .await;
    let dir = dir_with_secrets("bamboohr-create");
    dir.manifest("bamboohr-create", &seed_create(&server));
    assert_eq!(dir.run_async(&["run", "bamboohr-create"]).await.code(), 0);
    dir.db().execute("UPDATE users SET updated_at = '2000-01-01 00:00:00', first_name = 'Local'", []).unwrap();
    let out = dir.run_async(&["run", "bamboohr-create", "--json"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(out.json()["created"], 0);
    assert_eq!(out.json()["updated"], 0);
    assert_eq!(dir.query("SELECT DISTINCT updated_at, first_name FROM users"), ["2000-01-01 00:00:00\tLocal"]);
}

#[tokio::test]
async fn update_merges_mapped_fields_into_extra_fields() {
    let server = MockServer::start().await;
    Mock::given(path(REPORT))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"employees": people(0..3)})))
        .mount(&server)
        .await;
    let dir = dir_with_secrets("bamboohr-update");
    dir.db_init();
    dir.db()
        .execute_batch(
            "INSERT INTO users (email, first_name, extra_fields, created_at, updated_at) VALUES
               ('user1@acme.example', 'One', '{\"keep\":true}', '2000-01-01 00:00:00', '2000-01-01 00:00:00'),
               ('other@acme.example', 'Other', '{}', '2000-01-01 00:00:00', '2000-01-01 00:00:00');",
        )
        .unwrap();
    let text =
        include_str!("../../integrations/bamboohr-update.json").replace("https://api.bamboohr.com", &server.uri());
    dir.write("integrations/bamboohr-update.json", &text);
    let out = dir.run_async(&["run", "bamboohr-update", "--json"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(out.json()["updated"], 1, "{}", out.all());
    assert_eq!(out.json()["skipped"], 2, "{}", out.all());
    assert_eq!(
        dir.query("SELECT email, first_name, extra_fields FROM users ORDER BY id"),
        ["user1@acme.example\tOne\t{\"bamboohr_id\":\"1\",\"keep\":true}", "other@acme.example\tOther\t{}"]
    );
    let again = dir.run_async(&["run", "bamboohr-update", "--json"]).await;
    assert_eq!(again.json()["updated"], 0, "{}", again.all());
}

#[tokio::test]
async fn seven_pages_without_a_cap_are_all_fetched() {
    let server = MockServer::start().await;
    mount_pages(&server, 7, 3, 1).await;
    let dir = dir_with_secrets("hr");
    dir.manifest("hr", &paged(&server, json!({})));
    let out = dir.run_async(&["run", "hr", "--json"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(out.json()["pages"], 7);
    assert_eq!(count_users(&dir), 21);
    server.verify().await;
}

#[tokio::test]
async fn amount_pages_to_fetch_caps_the_pages() {
    let server = MockServer::start().await;
    mount_pages(&server, 2, 3, 1).await;
    Mock::given(query_param("page", "3")).respond_with(ResponseTemplate::new(500)).expect(0).mount(&server).await;
    let dir = dir_with_secrets("hr");
    dir.manifest("hr", &paged(&server, json!({"amount_pages_to_fetch": 2})));
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(count_users(&dir), 6);
}

#[tokio::test]
async fn reaching_max_pages_with_more_to_come_fails_the_run() {
    let server = MockServer::start().await;
    mount_pages(&server, 3, 2, 0..=1).await;
    let dir = dir_with_config("hr", "", &format!("{QUICK}\nmax_pages = 2"));
    dir.manifest("hr", &paged(&server, json!({})));
    run_fails(&dir, "max_pages").await;
    assert_eq!(count_users(&dir), 0);
}

#[tokio::test]
async fn token_pagination_follows_next_page_tokens() {
    let server = MockServer::start().await;
    let pages = [(None, Some("t2"), 0..2), (Some("t2"), Some("t3"), 2..4), (Some("t3"), None, 4..5)];
    for (token, next, range) in pages {
        let mut mock = Mock::given(path("/people"));
        if let Some(t) = token {
            mock = mock.and(query_param("cursor", t));
        }
        let body = json!({"data": people(range), "meta": {"next": next}});
        let mock = mock.respond_with(ResponseTemplate::new(200).set_body_json(body)).expect(1);
        if token.is_none() {
            mock.with_priority(10).mount(&server).await;
        } else {
            mock.mount(&server).await;
        }
    }
    let dir = dir_with_secrets("hr");
    let mut m = paged(&server, json!({}));
    m.as_object_mut().unwrap().remove("next_page_from");
    m["execute"][0]["url"] = json!(format!("{}/people", server.uri()));
    m["next_page_token_from"] = json!("meta.next");
    m["next_page"] = json!(format!("{}/people?cursor={{{{ NEXT_PAGE_TOKEN }}}}", server.uri()));
    dir.manifest("hr", &m);
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(count_users(&dir), 5);
    server.verify().await;
}

#[tokio::test]
async fn link_header_and_offset_pagination() {
    let server = MockServer::start().await;
    Mock::given(path("/linked"))
        .and(query_param("p", "1"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", "</linked?p=2>; rel=\"next\", </linked?p=1>; rel=\"first\"")
                .set_body_json(json!({"data": people(0..2)})),
        )
        .mount(&server)
        .await;
    Mock::given(path("/linked"))
        .and(query_param("p", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": people(2..3)})))
        .mount(&server)
        .await;
    for (offset, range) in [("0", 10..12), ("2", 12..14), ("4", 14..14)] {
        Mock::given(path("/offset"))
            .and(query_param("offset", offset))
            .and(query_param("limit", "2"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": people(range)})))
            .expect(1)
            .mount(&server)
            .await;
    }
    let dir = dir_with_config("hr", "[secrets.linked]\nKEY = \"k\"\n[secrets.offset]\nKEY = \"k\"", QUICK);
    let mut linked = paged(&server, json!({"next_page_from": "link:next"}));
    linked["execute"][0]["url"] = json!(format!("{}/linked?p=1", server.uri()));
    dir.manifest("linked", &linked);
    let mut offset = paged(&server, json!({"page_size": 2}));
    offset.as_object_mut().unwrap().remove("next_page_from");
    offset["execute"][0]["url"] = json!(format!("{}/offset?offset={{{{ OFFSET }}}}&limit={{{{LIMIT}}}}", server.uri()));
    dir.manifest("offset", &offset);

    let out = dir.run_async(&["run", "linked"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let out = dir.run_async(&["run", "offset"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(count_users(&dir), 7);
    server.verify().await;
}

#[tokio::test]
async fn two_steps_pass_data_through_responses_and_headers_are_replaced() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/login"))
        .and(header("x-login", "yes"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"session": {"token": "tok-123"}, "org": 9})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/orgs/9/people"))
        .and(header("authorization", "Bearer tok-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": people(0..2)})))
        .expect(1)
        .mount(&server)
        .await;
    let dir = dir_with_secrets("hr");
    let mut m = paged(&server, json!({}));
    m.as_object_mut().unwrap().remove("next_page_from");
    m["headers"] = json!({"Authorization": "Bearer {{ responses.0.session.token }}"});
    m["execute"] = json!([
        {"url": format!("{}/login", server.uri()), "method": "POST", "data": {"key": "{{KEY}}"}, "headers": {"X-Login": "yes"}},
        {"url": format!("{}/orgs/{{{{ responses.0.org }}}}/people", server.uri())}
    ]);
    dir.manifest("hr", &m);
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(count_users(&dir), 2);
    let login = &server.received_requests().await.unwrap()[0];
    assert!(login.headers.get("authorization").is_none(), "the step's own headers replace the global ones");
}

#[tokio::test]
async fn jsonpath_maps_nested_values() {
    let server = MockServer::start().await;
    let body = json!({"results": [
        {"contact": {"emails": [{"type": "work", "value": "jp@acme.example"}]}, "name": {"given": "Jay", "family": "Path"}, "dept": {"name": "Ops"}}
    ]});
    Mock::given(path("/people")).respond_with(ResponseTemplate::new(200).set_body_json(body)).mount(&server).await;
    let dir = dir_with_secrets("hr");
    let mut m = paged(&server, json!({}));
    m.as_object_mut().unwrap().remove("next_page_from");
    m["data_from"] = json!("results");
    m["data_structure"] = json!({
        "email": "$.contact.emails[?(@.type == 'work')].value",
        "first_name": "name.given",
        "last_name": "$.name.family",
        "department": "dept.name"
    });
    dir.manifest("hr", &m);
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(
        dir.query("SELECT email, first_name, last_name, department FROM users"),
        ["jp@acme.example\tJay\tPath\tOps"]
    );
}

#[tokio::test]
async fn an_undefined_value_at_run_time_fails_the_run() {
    let server = MockServer::start().await;
    Mock::given(path("/login"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"other": 1})))
        .mount(&server)
        .await;
    let dir = dir_with_secrets("hr");
    let mut m = paged(&server, json!({}));
    m["execute"] = json!([
        {"url": format!("{}/login", server.uri())},
        {"url": format!("{}/people?t={{{{ responses.0.token }}}}", server.uri())}
    ]);
    dir.manifest("hr", &m);
    run_fails(&dir, "{{ responses.0.token }} is not defined").await;
    assert_eq!(dir.query("SELECT status FROM runs"), ["failed"]);
}

#[tokio::test]
async fn a_500_on_page_3_of_5_changes_no_user() {
    let server = MockServer::start().await;
    for p in [1u32, 2] {
        let body =
            json!({"data": people((p - 1) * 2..p * 2), "next": format!("{}/people?page={}", server.uri(), p + 1)});
        Mock::given(query_param("page", p.to_string()))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&server)
            .await;
    }
    Mock::given(query_param("page", "3"))
        .respond_with(ResponseTemplate::new(500).set_body_string("{\"error\": \"database on fire\"}"))
        .expect(3)
        .mount(&server)
        .await;
    let dir = dir_with_secrets("hr");
    dir.db_init();
    dir.db()
        .execute("INSERT INTO users (email, first_name, last_name, created_at, updated_at) VALUES ('keep@acme.example', 'K', 'P', 'x', 'x')", [])
        .unwrap();
    dir.manifest("hr", &paged(&server, json!({})));
    let out = dir.run_async(&["run", "hr", "--json"]).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    let error = out.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("page 3") && error.contains("500") && error.contains("database on fire"), "{error}");
    assert!(error.contains("after 3 attempts"), "{error}");
    assert_eq!(dir.query("SELECT email, updated_at FROM users"), ["keep@acme.example\tx"]);
    assert_eq!(dir.query("SELECT status, created FROM runs"), ["failed\t0"]);
    server.verify().await;
}

#[tokio::test]
async fn truncated_json_fails_the_run() {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .respond_with(
            ResponseTemplate::new(200).set_body_string("{\"data\": [{\"workEmail\": \"a@acme.example\", \"firstN"),
        )
        .mount(&server)
        .await;
    let dir = dir_with_secrets("hr");
    dir.manifest("hr", &paged(&server, json!({})));
    run_fails(&dir, "not valid JSON").await;
    assert_eq!(count_users(&dir), 0);
}

/// Pages are read on a thread of their own while the next is fetched; a page
/// that only the full read finds bad (a string that is not UTF-8) still fails
/// the run with its own error, not the later page's.
#[tokio::test]
async fn a_bad_page_read_while_the_next_is_fetched_fails_the_run_with_its_own_error() {
    let server = MockServer::start().await;
    let page1 = json!({"data": people(0..2), "next": format!("{}/people?page=2", server.uri())});
    Mock::given(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page1))
        .mount(&server)
        .await;
    let mut page2 = format!(
        r#"{{"data": [{{"workEmail": "x@acme.example", "firstName": "X"}}], "next": "{}/people?page=3"}}"#,
        server.uri()
    )
    .into_bytes();
    let at = page2.windows(3).position(|w| w == b"\"X\"").unwrap() + 1;
    page2[at] = 0xff; // not UTF-8, inside a mapped string
    Mock::given(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(page2, "application/json"))
        .mount(&server)
        .await;
    Mock::given(query_param("page", "3"))
        .respond_with(ResponseTemplate::new(500).set_body_string("later page fails too"))
        .mount(&server)
        .await;
    let dir = dir_with_secrets("hr");
    dir.manifest("hr", &paged(&server, json!({})));
    let out = run_fails(&dir, "page 2 (GET").await;
    let stderr = out.stderr();
    let error = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
    assert!(error.contains("page 2 (GET") && error.contains("not valid JSON"), "{}", out.all());
    assert!(!error.contains("later page fails too"), "the earlier page's error wins: {}", out.all());
    assert_eq!(count_users(&dir), 0);
    assert_eq!(dir.query("SELECT status, created FROM runs"), ["failed\t0"]);
}

#[tokio::test]
async fn data_from_that_is_not_a_list_names_the_path() {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {"a": 1}})))
        .mount(&server)
        .await;
    let dir = dir_with_secrets("hr");
    dir.manifest("hr", &paged(&server, json!({})));
    run_fails(&dir, "data_from \"data\" is an object, not a list").await;
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after() {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": people(0..2)})))
        .mount(&server)
        .await;
    let dir = dir_with_secrets("hr");
    dir.manifest("hr", &paged(&server, json!({})));
    let start = std::time::Instant::now();
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(start.elapsed() >= std::time::Duration::from_millis(900), "Retry-After: 1 was not honoured");
    assert_eq!(count_users(&dir), 2);
    assert_eq!(dir.query("SELECT attempt, status FROM run_requests ORDER BY seq"), ["1\t429", "2\t200"]);
}

#[tokio::test]
async fn secrets_never_reach_output_or_the_database() {
    let server = MockServer::start().await;
    let echo = |req: &Request| {
        let auth = req.headers.get("authorization").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        ResponseTemplate::new(503).set_body_string(format!("bad credentials {auth} for {}", req.url))
    };
    Mock::given(path("/people")).respond_with(echo).mount(&server).await;
    let mut dir = dir_with_secrets("hr");
    dir.env.push(("RUST_LOG".into(), "debug".into()));
    let mut m = paged(&server, json!({}));
    m["headers"] = json!({"Authorization": "Basic {{KEY}}:x"});
    m["execute"][0]["url"] = json!(format!("{}/people?key={{{{KEY}}}}", server.uri()));
    dir.manifest("hr", &m);
    let mut cmd = tokio::process::Command::from(dir.command(&["run", "hr", "--json"]));
    cmd.env("RUST_LOG", "debug");
    let out = crate::Out(cmd.output().await.unwrap());
    assert_eq!(out.code(), 1, "{}", out.all());
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:x"));
    let encoded: String = url_encode(KEY);
    let forms = [KEY.to_string(), b64, encoded];
    let mut everything = out.all();
    for table in ["users", "runs", "run_requests", "run_skips"] {
        everything.push_str(&dir.query(&format!("SELECT * FROM {table}")).join("\n"));
    }
    everything.push_str(&dir.rosterd(&["history", "hr"]).all());
    for form in &forms {
        assert!(!everything.contains(form.as_str()), "secret form {form} leaked:\n{everything}");
    }
    assert!(everything.contains("***KEY***"), "{everything}");
}

fn url_encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_writes_no_user() {
    let server = MockServer::start().await;
    Mock::given(path(REPORT))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"employees": people(0..3)})))
        .mount(&server)
        .await;
    let dir = dir_with_secrets("bamboohr-create");
    dir.manifest("bamboohr-create", &seed_create(&server));
    let out = dir.run_async(&["run", "bamboohr-create", "--dry-run"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(out.stdout().contains("would create 3"), "{}", out.all());
    assert!(out.stdout().contains("+ user1@acme.example  First1 Last1"), "{}", out.all());
    assert_eq!(count_users(&dir), 0);
    assert_eq!(dir.query("SELECT status, created FROM runs"), ["dry-run\t3"]);
    let json = dir.run_async(&["run", "bamboohr-create", "--dry-run", "--json"]).await.json();
    assert_eq!(json["plan"]["creates"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn json_report_has_the_documented_keys() {
    let server = MockServer::start().await;
    Mock::given(path(REPORT))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"employees": people(0..1)})))
        .mount(&server)
        .await;
    let dir = dir_with_secrets("bamboohr-create");
    dir.manifest("bamboohr-create", &seed_create(&server));
    let out = dir.run_async(&["run", "bamboohr-create", "--json"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let r = out.json();
    for key in ["run_id", "integration", "status", "fetched", "created", "updated", "deactivated", "skipped", "error"] {
        assert!(r.get(key).is_some(), "missing {key}: {r}");
    }
    assert_eq!(r["error"], Value::Null);
    assert_eq!(r["status"], "ok");
    assert!(out.stderr().is_empty(), "{}", out.all());
}

#[tokio::test]
async fn run_of_an_unknown_or_invalid_manifest_exits_2() {
    let dir = TestDir::new();
    let out = dir.run_async(&["run", "nope"]).await;
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stderr().contains("no integration \"nope\""), "{}", out.all());
    dir.manifest("broken", &json!({"execute": []}));
    let out = dir.run_async(&["run", "broken"]).await;
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stderr().contains("/execute: needs at least one request"), "{}", out.all());
}

#[tokio::test]
async fn a_run_while_another_holds_the_lock_is_skipped() {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": people(0..1)}))
                .set_delay(std::time::Duration::from_secs(2)),
        )
        .mount(&server)
        .await;
    let dir = dir_with_secrets("hr");
    dir.manifest("hr", &paged(&server, json!({})));
    let slow = dir.run_async(&["run", "hr"]);
    let second = async {
        // Once the source has the first run's request, that run holds the lock.
        while server.received_requests().await.unwrap_or_default().is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        dir.run_async(&["run", "hr"]).await
    };
    let (first, second) = tokio::join!(slow, second);
    assert_eq!(first.code(), 0, "{}", first.all());
    assert_eq!(second.code(), 1, "{}", second.all());
    assert!(second.stderr().contains("in progress"), "{}", second.all());
    let mut statuses = dir.query("SELECT status FROM runs ORDER BY status");
    statuses.sort();
    assert_eq!(statuses, ["ok", "skipped"]);
}

#[tokio::test]
async fn a_timeout_fails_the_run_with_that_cause() {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": people(0..1)}))
                .set_delay(std::time::Duration::from_secs(5)),
        )
        .mount(&server)
        .await;
    let dir = dir_with_config("hr", "", "retries = 0\ntimeout_secs = 1");
    dir.manifest("hr", &paged(&server, json!({})));
    let out = run_fails(&dir, "timed out").await;
    assert!(out.stderr().contains("step 0 (GET http://"), "{}", out.all());
    assert_eq!(count_users(&dir), 0);
}

#[tokio::test]
async fn a_response_over_max_response_bytes_fails_the_run() {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": people(0..50)})))
        .mount(&server)
        .await;
    let dir = dir_with_config("hr", "", &format!("{QUICK}\nmax_response_bytes = 1000"));
    dir.manifest("hr", &paged(&server, json!({})));
    run_fails(&dir, "over max_response_bytes (1000)").await;
    assert_eq!(count_users(&dir), 0);
}

#[tokio::test]
async fn polling_repeats_a_step_until_continue_if_holds() {
    let server = MockServer::start().await;
    Mock::given(path("/export"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"state": "pending"})))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/export"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"state": "done", "id": 77})))
        .mount(&server)
        .await;
    Mock::given(path("/export/77"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"data": people(0..2)})))
        .expect(1)
        .mount(&server)
        .await;
    let dir = dir_with_secrets("hr");
    let mut m = paged(&server, json!({}));
    m.as_object_mut().unwrap().remove("next_page_from");
    m["execute"] = json!([
        {"url": format!("{}/export", server.uri()), "continue_if": {"response_notation": "state", "value": "done"},
         "polling": {"interval": 0.1, "amount": 5}},
        {"url": format!("{}/export/{{{{ responses.0.id }}}}", server.uri()), "status_code": ["201", 202]}
    ]);
    dir.manifest("hr", &m);
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(count_users(&dir), 2);
    assert_eq!(server.received_requests().await.unwrap().iter().filter(|r| r.url.path() == "/export").count(), 3);

    m["execute"][0]["polling"] = json!({"interval": 0, "amount": 1});
    m["execute"][0]["continue_if"]["value"] = json!("never");
    dir.manifest("hr", &m);
    run_fails(&dir, "continue_if not met: \"state\" is").await;
}

#[tokio::test]
async fn a_status_outside_status_code_fails_and_generate_ids_are_fresh_each_run() {
    let server = MockServer::start().await;
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": people(0..1)})))
        .mount(&server)
        .await;
    let dir = dir_with_secrets("hr");
    let mut m = paged(&server, json!({}));
    m["execute"][0]["url"] = json!(format!("{}/people?nonce={{{{NONCE}}}}", server.uri()));
    m["initial_data_form"] = json!([{"id": "KEY", "name": "key"}, {"id": "NONCE", "name": "generate"}]);
    dir.manifest("hr", &m);
    assert_eq!(dir.run_async(&["run", "hr"]).await.code(), 0);
    assert_eq!(dir.run_async(&["run", "hr"]).await.code(), 0);
    let nonces: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.query_pairs().find(|(k, _)| k == "nonce").unwrap().1.into_owned())
        .collect();
    assert_eq!(nonces.len(), 2);
    assert_ne!(nonces[0], nonces[1]);
    assert!(nonces.iter().all(|n| n.len() == 32), "{nonces:?}");

    m["execute"][0]["status_code"] = json!([204]);
    dir.manifest("hr", &m);
    run_fails(&dir, "HTTP 200 OK (expected 204)").await;
}

#[tokio::test]
async fn a_next_page_seen_before_fails_the_run_instead_of_looping() {
    let server = MockServer::start().await;
    for p in [1u32, 2] {
        let body =
            json!({"data": people(p * 10..p * 10 + 2), "next": format!("{}/people?page={}", server.uri(), 3 - p)});
        Mock::given(query_param("page", p.to_string()))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&server)
            .await;
    }
    let dir = dir_with_secrets("hr");
    dir.manifest("hr", &paged(&server, json!({})));
    run_fails(&dir, "next-page URL it had sent before").await;
    assert_eq!(count_users(&dir), 0);
}

#[tokio::test]
async fn a_source_echoing_a_secret_does_not_leak_it_through_plans_or_skips() {
    let server = MockServer::start().await;
    let echoed = json!({"data": [
        {"workEmail": "ok@acme.example", "firstName": "Ok", "lastName": KEY, "id": "1"},
        {"workEmail": format!("{KEY}@nowhere"), "firstName": "Bad", "lastName": "Email", "id": "2"}
    ]});
    Mock::given(path("/people")).respond_with(ResponseTemplate::new(200).set_body_json(echoed)).mount(&server).await;
    let dir = dir_with_secrets("hr");
    let mut m = paged(&server, json!({}));
    m.as_object_mut().unwrap().remove("next_page_from");
    dir.manifest("hr", &m);
    let mut everything = String::new();
    for args in [&["run", "hr", "--dry-run"][..], &["run", "hr", "--dry-run", "--json"], &["run", "hr", "--json"]] {
        let out = dir.run_async(args).await;
        assert_eq!(out.code(), 0, "{}", out.all());
        everything.push_str(&out.all());
    }
    for table in ["runs", "run_requests", "run_skips"] {
        everything.push_str(&dir.query(&format!("SELECT * FROM {table}")).join("\n"));
    }
    assert!(!everything.contains(KEY), "the secret leaked:\n{everything}");
    assert!(everything.contains("***KEY***"), "{everything}");
}
