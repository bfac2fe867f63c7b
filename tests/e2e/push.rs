//! Push: the store is the master and a stateful mock target (seed 002's
//! API: GET /users?offset&limit, POST, PATCH, DELETE) is brought in step;
//! bulk mode against a seed-000 bulk-import API, and against rosterd's own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::TestDir;

const KEY: &str = "target-key-7f3a9c21";

#[derive(Default)]
struct Target {
    users: Vec<Value>,
    next_id: u64,
    /// Every request: (method, path and query, body).
    log: Vec<(String, String, Value)>,
    /// A POST for this external id answers 500 (and names the key it was sent).
    fail_post_for: Option<String>,
    /// The listing answers 503.
    fail_listing: bool,
    /// How long each write takes.
    delay_ms: u64,
    /// A POST stores the user, then answers this late (after a client's timeout).
    answer_late_ms: u64,
    /// An OAuth target: the one access token it accepts (instead of KEY), and how many it issued.
    oauth_token: Option<String>,
    issued: u32,
    /// The Authorization header of every write.
    write_auth: Vec<String>,
    /// The next listing that succeeds revokes the token right after.
    revoke_after_listing: bool,
}

#[derive(Clone, Default)]
struct Shared {
    target: Arc<Mutex<Target>>,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Shared {
    fn with<T>(&self, f: impl FnOnce(&mut Target) -> T) -> T {
        f(&mut self.target.lock().unwrap())
    }
    fn writes(&self) -> Vec<(String, String, Value)> {
        self.with(|t| t.log.iter().filter(|(m, _, _)| m != "GET").cloned().collect())
    }
    fn add(&self, user: Value) {
        self.with(|t| {
            t.next_id += 1;
            let mut user = user;
            user["id"] = json!(t.next_id);
            t.users.push(user);
        });
    }
    fn by_external_id(&self, id: &str) -> Option<Value> {
        self.with(|t| t.users.iter().find(|u| u["externalId"] == id).cloned())
    }
}

fn authorized_in(t: &Target, headers: &HeaderMap) -> bool {
    let expected = t.oauth_token.clone().unwrap_or_else(|| KEY.to_string());
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {expected}"))
}

fn authorized(s: &Shared, headers: &HeaderMap) -> bool {
    let expected = s.with(|t| t.oauth_token.clone()).unwrap_or_else(|| KEY.to_string());
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {expected}"))
}

/// Seed 000's bulk import: every record reported created.
async fn bulk_import(State(s): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(denied) = write(&s, "POST", "/bulk".into(), &headers, body.clone()).await {
        return denied;
    }
    let created: Vec<Value> = body["users"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| json!({"name": u["name"], "employee_id": u["employee_id"], "action": "create"}))
        .collect();
    Json(json!({"errors": [], "updated_users": created})).into_response()
}

/// The OAuth target's token endpoint (client credentials): a new token each time, the only one accepted.
async fn token(State(s): State<Shared>) -> Response {
    let token = s.with(|t| {
        t.issued += 1;
        let token = format!("tok-{:04}", t.issued);
        t.oauth_token = Some(token.clone());
        token
    });
    Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600})).into_response()
}

async fn list(State(s): State<Shared>, headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    let param = |k: &str| q.iter().find(|(n, _)| n == k).and_then(|(_, v)| v.parse::<usize>().ok());
    let (offset, limit) = (param("offset").unwrap_or(0), param("limit").unwrap_or(100));
    s.with(|t| {
        t.log.push(("GET".into(), format!("/users?offset={offset}&limit={limit}"), Value::Null));
        if !authorized_in(t, &headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        if t.fail_listing {
            return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
        }
        let page: Vec<Value> = t.users.iter().skip(offset).take(limit).cloned().collect();
        if std::mem::take(&mut t.revoke_after_listing) {
            t.oauth_token = Some("revoked-after-listing".into());
        }
        Json(json!({"users": page, "total": t.users.len()})).into_response()
    })
}

async fn write(s: &Shared, method: &str, path: String, headers: &HeaderMap, body: Value) -> Option<Response> {
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.peak.fetch_max(now, Ordering::SeqCst);
    let delay = s.with(|t| t.delay_ms);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    s.with(|t| {
        t.log.push((method.into(), path, body));
        t.write_auth.push(auth);
    });
    (!authorized(s, headers)).then(|| StatusCode::UNAUTHORIZED.into_response())
}

async fn create(State(s): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(denied) = write(&s, "POST", "/users".into(), &headers, body.clone()).await {
        return denied;
    }
    if s.with(|t| t.fail_post_for.as_deref() == body["externalId"].as_str()) {
        let echo = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot create: storage full (request had {echo})"))
            .into_response();
    }
    s.add(body.clone());
    let late = s.with(|t| t.answer_late_ms);
    if late > 0 {
        tokio::time::sleep(Duration::from_millis(late)).await;
    }
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn change(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<u64>, Json(body): Json<Value>) -> Response {
    if let Some(denied) = write(&s, "PATCH", format!("/users/{id}"), &headers, body.clone()).await {
        return denied;
    }
    s.with(|t| match t.users.iter_mut().find(|u| u["id"] == id) {
        Some(user) => {
            for (k, v) in body.as_object().into_iter().flatten() {
                user[k] = v.clone();
            }
            Json(user.clone()).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

async fn delete(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    if let Some(denied) = write(&s, "DELETE", format!("/users/{id}"), &headers, Value::Null).await {
        return denied;
    }
    s.with(|t| t.users.retain(|u| u["id"] != id));
    StatusCode::NO_CONTENT.into_response()
}

/// The target on a free loopback port, with its state.
async fn target() -> (String, Shared) {
    let shared = Shared::default();
    let app = Router::new()
        .route("/v1/users", get(list).post(create))
        .route("/v1/users/{id}", patch(change).delete(delete))
        .route("/v1/token", axum::routing::post(token))
        .route("/v1/bulk", axum::routing::post(bulk_import))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, shared)
}

/// Seed 002's push manifest against `base`, edited by `edit`.
fn learnifier(base: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut m = json!({
        "action": "push",
        "execute": [{"url": format!("{base}/users?offset={{{{ OFFSET }}}}&limit={{{{ LIMIT }}}}")}],
        "page_size": 2,
        "headers": {"Authorization": "Bearer {{ KEY }}"},
        "data_from": "users",
        "data_structure": {"external_id": "externalId", "email": "email", "first_name": "firstName",
                           "last_name": "lastName", "active": {"path": "hardLock", "map": {"true": false, "false": true}, "else": true}},
        "target_id_from": "id",
        "push": {
            "create": {"url": format!("{base}/users"), "method": "POST",
                       "data": {"externalId": "{{ user.external_id }}", "email": "{{ user.email }}",
                                "firstName": "{{ user.first_name }}", "lastName": "{{ user.last_name }}",
                                "phone": "{{ user.phone }}", "note": "from {{ user.first_name }} ({{ user.phone }})"}},
            "update": {"url": format!("{base}/users/{{{{ target.id }}}}"), "method": "PATCH",
                       "data": {"email": "{{ user.email }}", "firstName": "{{ user.first_name }}",
                                "lastName": "{{ user.last_name }}", "autoClearEmail": true}},
            "remove": {"url": format!("{base}/users/{{{{ target.id }}}}"), "method": "PATCH", "data": {"hardLock": true}}
        },
        "push_select": {"active": true},
        "max_remove": "50%",
        "initial_data_form": [{"id": "KEY", "name": "Back Office API key"}]
    });
    edit(&mut m);
    m
}

/// A store with `people` imported (name, employee_id, email) and the manifest `lms`.
fn dir_with(people: &[(&str, &str, &str)], manifest: &Value) -> TestDir {
    let dir = TestDir::new();
    dir.config(&format!("[secrets.lms]\nKEY = \"{KEY}\"\n[http]\nretries = 1\nretry_base_ms = 10\n"));
    import(&dir, people);
    dir.manifest("lms", manifest);
    dir
}

fn import(dir: &TestDir, people: &[(&str, &str, &str)]) {
    let users: Vec<Value> =
        people.iter().map(|(name, id, email)| json!({"name": name, "employee_id": id, "email": email})).collect();
    let file = dir.write("people.json", &json!({ "users": users }).to_string());
    let out = dir.rosterd(&["import", file.to_str().unwrap()]);
    assert_eq!(out.code(), 0, "{}", out.all());
}

const PEOPLE: &[(&str, &str, &str)] = &[
    ("Ann Lee", "E1", "ann@acme.example"),
    ("Bob Jones", "E2", "bob@acme.example"),
    ("Cy Twombly", "E3", "cy@acme.example"),
];

async fn push(dir: &TestDir, args: &[&str]) -> crate::Out {
    let mut all = vec!["run", "lms", "--json"];
    all.extend_from_slice(args);
    dir.run_async(&all).await
}

#[tokio::test]
async fn the_first_push_creates_and_the_second_only_lists() {
    let (base, t) = target().await;
    t.add(json!({"email": "admin@lms.example", "firstName": "Admin", "lastName": "Only"}));
    let dir = dir_with(PEOPLE, &learnifier(&base, |_| {}));
    // A listing none of whose records has an external id holds the first push
    // (it may be a target that lost them); --force says it is a new target.
    let held = push(&dir, &[]).await;
    assert_eq!(held.json()["status"], "held", "{}", held.all());
    assert!(held.json()["error"].as_str().unwrap().contains("matched 0 of 1 records"), "{}", held.all());
    assert!(t.writes().is_empty());
    let out = push(&dir, &["--force"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let report = out.json();
    assert_eq!((report["created"].as_i64(), report["status"].as_str()), (Some(3), Some("ok")));
    let posts: Vec<Value> = t.writes().into_iter().filter(|w| w.0 == "POST").map(|w| w.2).collect();
    assert_eq!(posts.len(), 3);
    let ann = posts.iter().find(|p| p["externalId"] == "E1").unwrap();
    assert_eq!(ann["firstName"], "Ann");
    assert_eq!(ann["phone"], Value::Null, "a sole {{ user.x }} keeps its JSON type: null");
    assert_eq!(ann["note"], "from Ann ()", "inside text a missing field is empty");

    t.with(|t| t.log.clear());
    let again = push(&dir, &[]).await;
    assert_eq!(again.code(), 0, "{}", again.all());
    assert_eq!(again.json()["unchanged"], 3);
    let methods: Vec<String> = t.with(|t| t.log.iter().map(|l| l.0.clone()).collect());
    assert!(methods.iter().all(|m| m == "GET") && methods.len() == 3, "2 per page over 4 users: {methods:?}");
    assert_eq!(t.by_external_id("E1").unwrap()["id"], 2);
    assert!(t.with(|t| t.users.iter().any(|u| u["email"] == "admin@lms.example" && u.get("hardLock").is_none())));
}

#[tokio::test]
async fn a_local_change_is_one_patch_and_an_email_in_other_case_is_none() {
    let (base, t) = target().await;
    t.add(json!({"externalId": "E1", "email": "ANN@ACME.EXAMPLE", "firstName": "Ann", "lastName": "Lee"}));
    t.add(json!({"externalId": "E2", "email": "bob@acme.example", "firstName": "Bobby", "lastName": "Jones"}));
    let dir = dir_with(&PEOPLE[..2], &learnifier(&base, |_| {}));
    let out = push(&dir, &[]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let writes = t.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].0, "PATCH");
    assert_eq!(writes[0].1, "/users/2");
    assert_eq!(
        writes[0].2,
        json!({"email": "bob@acme.example", "firstName": "Bob", "lastName": "Jones", "autoClearEmail": true})
    );
    assert_eq!(out.json()["updated"], 1);
}

#[tokio::test]
async fn a_deactivated_user_is_removed_and_users_without_external_id_are_left() {
    let (base, t) = target().await;
    t.add(json!({"email": "admin@lms.example", "firstName": "Admin"}));
    let dir = dir_with(PEOPLE, &learnifier(&base, |m| m["max_remove"] = json!(5)));
    // A new target (no record with an external id yet): the first push is forced.
    assert_eq!(push(&dir, &["--force"]).await.code(), 0);
    dir.db().execute("UPDATE users SET active = 0 WHERE external_id = 'E2'", []).unwrap();
    t.with(|t| t.log.clear());
    let out = push(&dir, &[]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(out.json()["deactivated"], 1);
    let writes = t.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!((writes[0].0.as_str(), &writes[0].2), ("PATCH", &json!({"hardLock": true})));
    assert_eq!(t.by_external_id("E2").unwrap()["hardLock"], true);
    // Locked on the target already: not locked again.
    t.with(|t| t.log.clear());
    assert_eq!(push(&dir, &[]).await.code(), 0);
    assert!(t.writes().is_empty());
    assert!(t.with(|t| t.users[0].get("hardLock").is_none()), "the admin without an external id is untouched");

    let last_with_push = dir.rosterd(&["history", "--run", "2", "--json"]).json();
    assert_eq!(last_with_push["push"][0]["kind"], "remove");
    assert_eq!(last_with_push["push"][0]["external_id"], "E2");
    assert_eq!(last_with_push["push"][0]["status"], 200);
    let text = dir.rosterd(&["history", "--run", "2"]).stdout();
    assert!(text.contains("push requests of run 2 (1 sent, 0 failed)") && text.contains("remove"), "{text}");
}

#[tokio::test]
async fn without_a_remove_request_nothing_is_removed() {
    let (base, t) = target().await;
    t.add(json!({"externalId": "GONE", "email": "gone@acme.example"}));
    let m = learnifier(&base, |m| {
        m["push"].as_object_mut().unwrap().remove("remove");
    });
    let dir = dir_with(&PEOPLE[..1], &m);
    let out = push(&dir, &[]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(out.json()["deactivated"], 0);
    assert!(t.writes().iter().all(|w| w.0 == "POST"));
}

#[tokio::test]
async fn push_select_source_picks_by_integration() {
    let (base, t) = target().await;
    let source = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({"people": [
            {"id": "H1", "mail": "hr1@acme.example", "first": "Hr", "last": "One"}
        ]})))
        .mount(&source)
        .await;
    let dir = dir_with(&PEOPLE[..1], &learnifier(&base, |m| m["push_select"] = json!({"source": ["hr"]})));
    dir.manifest(
        "hr",
        &json!({"action": "create", "execute": [{"url": format!("{}/people", source.uri())}], "data_from": "people",
                "data_structure": {"email": "mail", "first_name": "first", "last_name": "last", "external_id": "id"}}),
    );
    assert_eq!(dir.rosterd(&["run", "hr"]).code(), 0);
    let out = push(&dir, &[]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let posted: Vec<Value> = t.writes().into_iter().map(|w| w.2["externalId"].clone()).collect();
    assert_eq!(posted, [json!("H1")], "the imported E1 is not from hr");
}

#[tokio::test]
async fn max_remove_holds_the_push_until_forced() {
    let (base, t) = target().await;
    for i in 0..4 {
        t.add(json!({"externalId": format!("OLD{i}"), "email": format!("old{i}@acme.example")}));
    }
    let dir = dir_with(&PEOPLE[..1], &learnifier(&base, |m| m["max_remove"] = json!(2)));
    let held = push(&dir, &[]).await;
    assert_eq!(held.code(), 1, "{}", held.all());
    assert_eq!(held.json()["status"], "held");
    assert!(held.json()["error"].as_str().unwrap().contains("remove 4 of 4 target users, over max_remove 2"));
    assert!(t.writes().is_empty(), "a held push sends nothing");
    assert!(!held.all().contains("held: held"), "{}", held.all());
    // The runs row keeps what it would have applied, as a held sync does.
    assert_eq!(dir.query("SELECT status, created, deactivated FROM runs ORDER BY id DESC LIMIT 1"), ["held\t1\t4"]);
    let forced = push(&dir, &["--force"]).await;
    assert_eq!(forced.code(), 0, "{}", forced.all());
    assert_eq!((forced.json()["created"].as_i64(), forced.json()["deactivated"].as_i64()), (Some(1), Some(4)));
}

#[tokio::test]
async fn a_dry_run_sends_only_the_listing_and_prints_every_change() {
    let (base, t) = target().await;
    t.add(json!({"externalId": "E2", "email": "bob@acme.example", "firstName": "Bobby", "lastName": "Jones"}));
    t.add(json!({"externalId": "OLD", "email": "old@acme.example"}));
    let dir = dir_with(&PEOPLE[..2], &learnifier(&base, |_| {}));
    let out = dir.run_async(&["run", "lms", "--dry-run"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let text = out.stdout();
    assert!(text.contains("would create 1") && text.contains("+ E1  ann@acme.example"), "{text}");
    assert!(text.contains("~ E2  first_name: Bobby → Bob"), "{text}");
    assert!(text.contains("would remove 1") && text.contains("- OLD  old@acme.example  target 2"), "{text}");
    assert!(t.writes().is_empty());
    let json = push(&dir, &["--dry-run"]).await.json();
    assert_eq!(json["status"], "dry-run");
    assert_eq!(
        (json["created"].as_i64(), json["updated"].as_i64(), json["deactivated"].as_i64()),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(
        dir.query("SELECT status, created, updated, deactivated FROM runs ORDER BY id DESC LIMIT 1"),
        ["dry-run\t1\t1\t1"]
    );
    assert_eq!(
        json["push"]["updates"][0]["changes"][0],
        json!({"field": "first_name", "target": "Bobby", "local": "Bob"})
    );
}

#[tokio::test]
async fn a_failed_listing_sends_nothing_else() {
    let (base, t) = target().await;
    t.with(|t| t.fail_listing = true);
    let dir = dir_with(PEOPLE, &learnifier(&base, |_| {}));
    let out = push(&dir, &[]).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(out.json()["error"].as_str().unwrap().contains("503"), "{}", out.all());
    assert!(t.writes().is_empty());
}

#[tokio::test]
async fn one_failing_create_leaves_the_others_sent_and_the_next_push_retries_it() {
    let (base, t) = target().await;
    t.with(|t| t.fail_post_for = Some("E2".into()));
    let dir = dir_with(PEOPLE, &learnifier(&base, |_| {}));
    let out = push(&dir, &[]).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    let report = out.json();
    assert_eq!((report["status"].as_str(), report["created"].as_i64()), (Some("failed"), Some(2)));
    assert!(report["error"].as_str().unwrap().contains("1 of 3 creates failed"), "{report}");
    assert_eq!(report["push"]["requests"]["create"]["failed"], 1);
    let detail = dir.rosterd(&["history", "--run", "1", "--json"]).json();
    let failed: Vec<&Value> = detail["push"].as_array().unwrap().iter().filter(|p| !p["error"].is_null()).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!((failed[0]["external_id"].as_str(), failed[0]["status"].as_u64()), (Some("E2"), Some(500)));
    assert!(!failed[0]["error"].as_str().unwrap().contains(KEY), "the target's echo of the key is masked");
    assert_eq!(t.with(|t| t.users.len()), 2);

    t.with(|t| t.fail_post_for = None);
    t.with(|t| t.log.clear());
    let retry = push(&dir, &[]).await;
    assert_eq!(retry.code(), 0, "{}", retry.all());
    let posted: Vec<Value> = t.writes().into_iter().map(|w| w.2["externalId"].clone()).collect();
    assert_eq!(posted, [json!("E2")]);
}

#[tokio::test]
async fn requests_in_flight_stay_within_the_limit_and_overlap() {
    let (base, t) = target().await;
    t.with(|t| t.delay_ms = 60);
    let people: Vec<(String, String, String)> =
        (0..24).map(|i| (format!("P{i} Person"), format!("P{i}"), format!("p{i}@acme.example"))).collect();
    let refs: Vec<(&str, &str, &str)> = people.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    let dir = dir_with(&refs, &learnifier(&base, |_| {}));
    dir.config(&format!("[secrets.lms]\nKEY = \"{KEY}\"\n[push]\nconcurrency = 3\n"));
    let out = push(&dir, &[]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let peak = t.peak.load(Ordering::SeqCst);
    assert!(peak > 1 && peak <= 3, "peak in flight {peak}");
    assert_eq!(out.json()["created"], 24);
    assert!(out.json()["push"]["peak_in_flight"].as_u64().unwrap() <= 3);
}

#[tokio::test]
async fn the_key_appears_nowhere() {
    let (base, t) = target().await;
    t.with(|t| t.fail_post_for = Some("E1".into()));
    let dir = dir_with(PEOPLE, &learnifier(&base, |_| {}));
    let mut cmd = dir.command(&["run", "lms", "--json"]);
    cmd.env("RUST_LOG", "trace");
    let out = crate::Out(tokio::process::Command::from(cmd).output().await.unwrap());
    assert_eq!(out.code(), 1);
    let mut seen = out.all();
    seen.push_str(&dir.rosterd(&["history", "--run", "1"]).all());
    for table in dir.query("SELECT name FROM sqlite_master WHERE type = 'table'") {
        for column in dir.query(&format!("SELECT name FROM pragma_table_info('{table}')")) {
            seen.push_str(&dir.query(&format!("SELECT quote(\"{column}\") FROM \"{table}\"")).join("\n"));
        }
    }
    assert!(seen.contains("storage full"), "the scan reads the recorded error");
    assert!(!seen.contains(KEY), "{seen}");
}

/// Seed 000's bulk import: records in bodies of at most `batch`, the reply counted.
#[tokio::test]
async fn bulk_mode_sends_batches_and_reads_the_reply() {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({
            "errors": [{"employee_id": "E3", "error": "name is required"}],
            "updated_users": [{"name": "A", "employee_id": "E1", "action": "create"},
                              {"name": "B", "employee_id": "E2", "action": "update"}]
        })))
        .mount(&server)
        .await;
    let m = json!({
        "action": "push",
        "push": {"bulk": {"url": format!("{}/api/v1/user/bulk-import", server.uri()), "method": "POST",
                          "batch": 2, "list_key": "users",
                          "record": {"name": "{{ user.first_name }} {{ user.last_name }}",
                                     "employee_id": "{{ user.external_id }}", "email": "{{ user.email }}"}}},
        "headers": {"Authorization": "Bearer {{ KEY }}"},
        "initial_data_form": [{"id": "KEY", "name": "token"}]
    });
    let dir = dir_with(PEOPLE, &m);
    let out = push(&dir, &[]).await;
    assert_eq!(out.code(), 1, "a reported record error fails the run: {}", out.all());
    let bodies: Vec<Value> =
        server.received_requests().await.unwrap().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    assert_eq!(bodies.len(), 2, "3 users in batches of 2");
    // The bodies go out concurrently: either may arrive first.
    let two = bodies.iter().find(|b| b["users"].as_array().unwrap().len() == 2).expect("a body of 2");
    assert_eq!(two["users"][0], json!({"name": "Ann Lee", "employee_id": "E1", "email": "ann@acme.example"}));
    let report = out.json();
    assert_eq!((report["created"].as_i64(), report["updated"].as_i64()), (Some(2), Some(2)));
    assert!(report["error"].as_str().unwrap().contains("reported 2 record error(s)"), "{report}");
    let detail = dir.rosterd(&["history", "--run", "1", "--json"]).json();
    assert!(
        detail["push"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["external_id"] == "E3" && p["error"].as_str().unwrap().contains("name is required"))
    );
}

/// Two rosterd instances chained: A pushes its users to B's bulk-import API.
#[tokio::test]
async fn rosterd_pushes_to_rosterds_own_bulk_import() {
    let b = TestDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    b.config(&format!("[api]\nlisten = \"127.0.0.1:{port}\"\ntokens = [\"{KEY}\"]\n"));
    let mut daemon = tokio::process::Command::from(b.command(&["serve"]));
    daemon.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
    let mut daemon = daemon.spawn().unwrap();
    let addr = crate::listening_address(daemon.stderr.take().unwrap()).await;
    let m = json!({
        "action": "push",
        "push": {"bulk": {"url": format!("http://{addr}/api/v1/user/bulk-import"), "method": "POST", "batch": 2,
                          "record": {"name": "{{ user.first_name }} {{ user.last_name }}",
                                     "employee_id": "{{ user.external_id }}", "email": "{{ user.email }}"}}},
        "headers": {"Authorization": "Bearer {{ KEY }}"},
        "initial_data_form": [{"id": "KEY", "name": "token"}]
    });
    let a = dir_with(PEOPLE, &m);
    let out = push(&a, &[]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(out.json()["created"], 3);
    assert_eq!(
        b.query("SELECT external_id, email, first_name, last_name FROM users ORDER BY external_id"),
        ["E1\tann@acme.example\tAnn\tLee", "E2\tbob@acme.example\tBob\tJones", "E3\tcy@acme.example\tCy\tTwombly"]
    );
    // The same list again: rosterd's import reports nothing it did not change.
    a.db().execute("UPDATE users SET first_name = 'Robert' WHERE external_id = 'E2'", []).unwrap();
    let again = push(&a, &[]).await;
    assert_eq!(again.code(), 0, "{}", again.all());
    assert_eq!((again.json()["created"].as_i64(), again.json()["updated"].as_i64()), (Some(0), Some(1)));
    assert_eq!(b.query("SELECT first_name FROM users WHERE external_id = 'E2'"), ["Robert"]);
}

/// Ctrl-C or SIGTERM while a push sends: no new request starts, those in
/// flight end and are recorded, and the run is failed saying how many were
/// not sent (never exit 143 with nothing recorded).
#[tokio::test]
async fn stopping_sends_no_new_request_and_waits_for_those_in_flight() {
    for signal in ["-INT", "-TERM"] {
        stopping_with(signal).await;
    }
}

async fn stopping_with(signal: &str) {
    let (base, t) = target().await;
    t.with(|t| t.delay_ms = 400);
    let people: Vec<(String, String, String)> =
        (0..12).map(|i| (format!("P{i} Person"), format!("P{i}"), format!("p{i}@acme.example"))).collect();
    let refs: Vec<(&str, &str, &str)> = people.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    let dir = dir_with(&refs, &learnifier(&base, |_| {}));
    dir.config(&format!("[secrets.lms]\nKEY = \"{KEY}\"\n[push]\nconcurrency = 2\n"));
    let child = tokio::process::Command::from(dir.command(&["run", "lms", "--json"]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait until the first writes are under way.
    let started = std::time::Instant::now();
    while t.in_flight.load(Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "no write started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::process::Command::new("kill").args([signal, &child.id().unwrap().to_string()]).status().unwrap();
    let out =
        crate::Out(tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.unwrap().unwrap());
    assert_eq!(out.code(), 1, "{signal}: {}", out.all());
    let report = out.json();
    assert!(report["error"].as_str().unwrap().contains("requests were not sent"), "{signal}: {report}");
    assert!(!report["error"].as_str().unwrap().contains("nothing was applied"), "{signal}: {report}");
    let posts = t.writes().len();
    assert!(posts < 12, "{signal}: sending stopped: {posts} of 12 sent");
    assert_eq!(t.in_flight.load(Ordering::SeqCst), 0, "no request was left hanging");
    let recorded = dir.query("SELECT COUNT(*) FROM push_requests")[0].parse::<usize>().unwrap();
    assert_eq!(recorded, posts, "every request that reached the target is recorded");
}

/// A target whose listing stopped showing external ids (a renamed field, a
/// permission change) is not flooded with every user again: the push is
/// held with the 0-of-N message until forced; `max_create` bounds creates.
#[tokio::test]
async fn a_target_that_lost_its_ids_is_not_flooded() {
    let (base, t) = target().await;
    for (i, (name, id, email)) in PEOPLE.iter().enumerate() {
        let (first, last) = name.split_once(' ').unwrap();
        // The field is `external_id` now, not the `externalId` the manifest maps.
        t.add(json!({"external_id": id, "email": email, "firstName": first, "lastName": last, "n": i}));
    }
    let dir = dir_with(PEOPLE, &learnifier(&base, |_| {}));
    let held = push(&dir, &[]).await;
    assert_eq!(held.code(), 1, "{}", held.all());
    let report = held.json();
    assert_eq!(report["status"], "held", "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("\"externalId\" matched 0 of 3 records"), "{error}");
    assert!(error.contains("did you mean \"external_id\"?"), "{error}");
    assert!(error.contains("created on the target again"), "{error}");
    assert!(t.writes().is_empty(), "nothing sent");

    let (base, t) = target().await;
    t.add(json!({"externalId": "E1", "email": "ann@acme.example", "firstName": "Ann", "lastName": "Lee"}));
    let dir = dir_with(PEOPLE, &learnifier(&base, |m| m["max_create"] = json!(1)));
    let held = push(&dir, &[]).await;
    assert_eq!(held.code(), 1, "{}", held.all());
    let error = held.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("it would create 2 of 1 listed target users, over max_create 1"), "{error}");
    assert!(t.writes().is_empty(), "nothing sent");
    let forced = push(&dir, &["--force"]).await;
    assert_eq!(forced.code(), 0, "{}", forced.all());
    assert_eq!(forced.json()["created"].as_i64(), Some(2));
}

/// SIGTERM to `serve` while a push sends: no new request, and the process
/// exits only once the requests in flight have ended and are recorded,
/// whatever `shutdown_grace_secs` says about cancelling.
#[tokio::test]
async fn sigterm_to_serve_waits_for_the_push_requests_in_flight() {
    let (base, t) = target().await;
    t.with(|t| t.delay_ms = 1500);
    let people: Vec<(String, String, String)> =
        (0..10).map(|i| (format!("P{i} Person"), format!("P{i}"), format!("p{i}@acme.example"))).collect();
    let refs: Vec<(&str, &str, &str)> = people.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    let dir = dir_with(&refs, &learnifier(&base, |_| {}));
    let token = "serve-token-0123456789";
    dir.config(&format!(
        "shutdown_grace_secs = 0\n[secrets.lms]\nKEY = \"{KEY}\"\n[push]\nconcurrency = 2\n\
         [api]\nlisten = \"127.0.0.1:0\"\ntokens = [\"{token}\"]\n"
    ));
    let mut serve = tokio::process::Command::from(dir.command(&["serve"]));
    serve.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
    let mut serve = serve.spawn().unwrap();
    let addr = crate::listening_address(serve.stderr.take().unwrap()).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/integrations/lms/run"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let waiting = std::time::Instant::now();
    while t.in_flight.load(Ordering::SeqCst) == 0 {
        assert!(waiting.elapsed() < Duration::from_secs(20), "no write started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::process::Command::new("kill").args(["-TERM", &serve.id().unwrap().to_string()]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), serve.wait()).await.expect("serve stops").unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(t.in_flight.load(Ordering::SeqCst), 0, "serve exited with requests in flight");
    let posts = t.writes().len();
    assert!(posts < 10, "no new request after SIGTERM: {posts} of 10 sent");
    let recorded = dir.query("SELECT COUNT(*) FROM push_requests")[0].parse::<usize>().unwrap();
    assert_eq!(recorded, posts, "every request that reached the target is recorded");
    assert_eq!(dir.query("SELECT status FROM runs WHERE integration = 'lms' ORDER BY id DESC LIMIT 1"), ["failed"]);
}

/// A POST that times out after the target stored it is not sent again: it
/// is recorded as of unknown outcome, and the next push's listing finds the
/// user there, so the target converges without a duplicate.
#[tokio::test]
async fn a_create_that_timed_out_is_not_sent_twice() {
    let (base, t) = target().await;
    t.add(json!({"externalId": "OLD", "email": "old@acme.example"}));
    t.with(|t| t.answer_late_ms = 1500);
    let dir = dir_with(PEOPLE, &learnifier(&base, |m| m["max_remove"] = json!(5)));
    dir.config(&format!("[secrets.lms]\nKEY = \"{KEY}\"\n[http]\ntimeout_secs = 1\nretries = 3\nretry_base_ms = 10\n"));
    let first = push(&dir, &[]).await;
    assert_eq!(first.code(), 1, "{}", first.all());
    let posts = t.writes().iter().filter(|w| w.0 == "POST").count();
    assert_eq!(posts, 3, "one POST per user, none retried: {:?}", t.writes());
    let unknown =
        dir.query("SELECT COUNT(*) FROM push_requests WHERE kind = 'create' AND error LIKE 'outcome unknown%'");
    assert_eq!(unknown, ["3"]);
    // The next push lists them there: nothing created again, no duplicate.
    t.with(|t| t.answer_late_ms = 0);
    let second = push(&dir, &[]).await;
    assert_eq!(second.code(), 0, "{}", second.all());
    assert_eq!(second.json()["created"].as_i64(), Some(0));
    for id in ["E1", "E2", "E3"] {
        let n = t.with(|t| t.users.iter().filter(|u| u["externalId"] == id).count());
        assert_eq!(n, 1, "{id} exists once");
    }
}

/// An OAuth target whose stored token was revoked: the listing's 401 renews
/// it once, and every request the push sends after carries the new token.
#[tokio::test]
async fn a_token_renewed_on_the_listing_is_the_one_the_sends_carry() {
    let (base, t) = target().await;
    let oauth = |m: &mut Value| {
        m["headers"] = json!({"Authorization": "Bearer {{ oauth.access_token }}"});
        m["initial_data_form"] = json!([]);
        m["oauth"] = json!({"access_token": {"url": format!("{base}/token"), "method": "POST",
                                             "data": {"grant_type": "client_credentials"}}});
    };
    let dir = dir_with(&PEOPLE[..1], &learnifier(&base, oauth));
    dir.config("[http]\nretries = 0\n");
    let first = push(&dir, &["--force"]).await;
    assert_eq!(first.code(), 0, "{}", first.all());
    assert_eq!(t.with(|t| t.write_auth.clone()), ["Bearer tok-0001"]);
    // The target revokes it; a new local user needs a create.
    t.with(|t| {
        t.oauth_token = Some("revoked-elsewhere".into());
        t.write_auth.clear();
    });
    let file = dir.write(
        "more.json",
        &json!({"users": [{"name": "Bob Jones", "employee_id": "E2", "email": "bob@acme.example"}]}).to_string(),
    );
    assert_eq!(dir.rosterd(&["import", file.to_str().unwrap()]).code(), 0);
    let second = push(&dir, &[]).await;
    assert_eq!(second.code(), 0, "{}", second.all());
    assert_eq!(second.json()["created"].as_i64(), Some(1));
    assert_eq!(t.with(|t| t.write_auth.clone()), ["Bearer tok-0002"], "the send carries the renewed token");
}

/// The token is revoked between the listing and the sends: the first 401
/// renews it once for all the sends, and each refused request goes again
/// with the new token.
#[tokio::test]
async fn a_401_on_a_send_renews_the_token_once_and_sends_again() {
    let (base, t) = target().await;
    let oauth = |m: &mut Value| {
        m["headers"] = json!({"Authorization": "Bearer {{ oauth.access_token }}"});
        m["initial_data_form"] = json!([]);
        m["page_size"] = json!(100);
        m["oauth"] = json!({"access_token": {"url": format!("{base}/token"), "method": "POST",
                                             "data": {"grant_type": "client_credentials"}}});
    };
    let dir = dir_with(&PEOPLE[..1], &learnifier(&base, oauth));
    dir.config("[http]\nretries = 0\n");
    assert_eq!(push(&dir, &["--force"]).await.code(), 0);
    let more = json!({"users": [{"name": "Bob Jones", "employee_id": "E2", "email": "bob@acme.example"},
                                {"name": "Cy Twombly", "employee_id": "E3", "email": "cy@acme.example"}]});
    let file = dir.write("more.json", &more.to_string());
    assert_eq!(dir.rosterd(&["import", file.to_str().unwrap()]).code(), 0);
    t.with(|t| {
        t.revoke_after_listing = true;
        t.write_auth.clear();
    });
    let out = push(&dir, &[]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(out.json()["created"].as_i64(), Some(2), "{}", out.all());
    assert_eq!(t.with(|t| t.issued), 2, "one renewal for both sends");
    let auth = t.with(|t| t.write_auth.clone());
    assert_eq!(auth.iter().filter(|a| *a == "Bearer tok-0002").count(), 2, "{auth:?}");
    assert!(auth.iter().all(|a| a == "Bearer tok-0001" || a == "Bearer tok-0002"), "{auth:?}");
    assert_eq!(t.with(|t| t.users.len()), 3);
}

/// Bulk bodies go out `[push] concurrency` at a time, not one after another.
#[tokio::test]
async fn bulk_bodies_go_out_push_concurrency_at_a_time() {
    let (base, t) = target().await;
    t.with(|t| t.delay_ms = 300);
    let people: Vec<(String, String, String)> =
        (0..6).map(|i| (format!("P{i} Person"), format!("P{i}"), format!("p{i}@acme.example"))).collect();
    let refs: Vec<(&str, &str, &str)> = people.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    let m = json!({
        "action": "push",
        "push": {"bulk": {"url": format!("{base}/bulk"), "method": "POST", "batch": 1, "list_key": "users",
                          "record": {"name": "{{ user.first_name }}", "employee_id": "{{ user.external_id }}"}}},
        "headers": {"Authorization": "Bearer {{ KEY }}"},
        "initial_data_form": [{"id": "KEY", "name": "token"}]
    });
    let dir = dir_with(&refs, &m);
    dir.config(&format!("[secrets.lms]\nKEY = \"{KEY}\"\n[push]\nconcurrency = 3\n"));
    let out = push(&dir, &[]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(out.json()["created"].as_i64(), Some(6));
    assert_eq!(t.writes().len(), 6, "six bodies of one user");
    assert_eq!(t.peak.load(Ordering::SeqCst), 3, "three in flight at once, never more");
    assert_eq!(dir.query("SELECT COUNT(*) FROM push_requests WHERE kind = 'bulk'"), ["6"]);
}
