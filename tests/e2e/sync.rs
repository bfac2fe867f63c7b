//! `action: sync`: the source is the master. Runs against a loopback source
//! whose data changes between runs.

use serde_json::{Value, json};
use wiremock::matchers::{path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::TestDir;

fn person(id: u32, dept: &str) -> Value {
    json!({"id": format!("E{id}"), "first": format!("First{id}"), "last": format!("Last{id}"),
           "email": format!("p{id}@acme.example"), "dept": dept})
}

fn staff(ids: impl IntoIterator<Item = u32>) -> Vec<Value> {
    ids.into_iter().map(|i| person(i, "Ops")).collect()
}

/// Makes the source serve exactly `people` from now on.
async fn serve(server: &MockServer, people: Vec<Value>) {
    server.reset().await;
    Mock::given(path("/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": people})))
        .mount(server)
        .await;
}

fn manifest(server: &MockServer, extra: Value) -> Value {
    let mut m = json!({
        "execute": [{"url": format!("{}/people", server.uri())}],
        "action": "sync",
        "data_from": "data",
        "data_structure": {"email": "email", "first_name": "first", "last_name": "last", "external_id": "id", "department": "dept"}
    });
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

async fn setup(people: Vec<Value>, extra: Value) -> (MockServer, TestDir) {
    let server = MockServer::start().await;
    serve(&server, people).await;
    let dir = TestDir::new();
    dir.manifest("hr", &manifest(&server, extra));
    (server, dir)
}

async fn run_json(dir: &TestDir, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["run", "hr", "--json"];
    all.extend_from_slice(args);
    let out = dir.run_async(&all).await;
    let code = out.code();
    (code, out.json())
}

fn counts(r: &Value) -> [i64; 4] {
    ["created", "updated", "deactivated", "skipped"].map(|k| r[k].as_i64().unwrap_or(-1))
}

#[tokio::test]
async fn sync_creates_then_updates_only_what_changed() {
    let (server, dir) = setup(staff(1..=5), json!({})).await;
    let (code, r) = run_json(&dir, &[]).await;
    assert_eq!((code, counts(&r)), (0, [5, 0, 0, 0]), "{r}");
    dir.db().execute("UPDATE users SET updated_at = 'before'", []).unwrap();
    let mut people = staff(1..=5);
    people[1]["dept"] = json!("Sales");
    serve(&server, people).await;
    let (code, r) = run_json(&dir, &[]).await;
    assert_eq!((code, counts(&r)), (0, [0, 1, 0, 0]), "{r}");
    let changed: Vec<String> = dir.query("SELECT email, department FROM users WHERE updated_at != 'before'");
    assert_eq!(changed, ["p2@acme.example\tSales"]);
    let (_, r) = run_json(&dir, &[]).await;
    assert_eq!(counts(&r), [0, 0, 0, 0], "a second identical sync writes nothing: {r}");
}

#[tokio::test]
async fn vanished_users_are_deactivated_and_reactivated_when_they_return() {
    let (server, dir) = setup(staff(1..=10), json!({})).await;
    assert_eq!(run_json(&dir, &[]).await.0, 0);
    serve(&server, staff(2..=10)).await;
    let (code, r) = run_json(&dir, &[]).await;
    assert_eq!((code, counts(&r)), (0, [0, 0, 1, 0]), "{r}");
    assert_eq!(dir.query("SELECT email FROM users WHERE active = 0"), ["p1@acme.example"]);
    assert_eq!(dir.query("SELECT COUNT(*) FROM users"), ["10"], "deactivated, never deleted");
    serve(&server, staff(1..=10)).await;
    let (code, r) = run_json(&dir, &[]).await;
    assert_eq!((code, counts(&r)), (0, [0, 1, 0, 0]), "{r}");
    assert_eq!(dir.query("SELECT COUNT(*) FROM users WHERE active = 1"), ["10"]);
}

#[tokio::test]
async fn users_it_does_not_own_are_never_deactivated_and_unowned_matches_are_adopted() {
    let (server, dir) = setup(staff(1..=3), json!({})).await;
    dir.db_init();
    dir.db()
        .execute_batch(
            "INSERT INTO users (email, first_name, created_at, updated_at) VALUES ('local@acme.example', 'Local', 'x', 'x');
             INSERT INTO users (email, first_name, created_at, updated_at) VALUES ('p3@acme.example', 'Old', 'x', 'x');",
        )
        .unwrap();
    let (code, r) = run_json(&dir, &[]).await;
    assert_eq!((code, counts(&r)), (0, [2, 1, 0, 0]), "{r}");
    assert_eq!(dir.query("SELECT first_name, source FROM users WHERE email = 'p3@acme.example'"), ["First3\tNULL"]);
    serve(&server, staff(1..=2)).await;
    let out = dir.run_async(&["run", "hr", "--force"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(
        dir.query("SELECT email, active FROM users ORDER BY email"),
        ["local@acme.example\t1", "p1@acme.example\t1", "p2@acme.example\t1", "p3@acme.example\t0"],
        "the adopted user is owned now; the local one is not"
    );
}

/// Every record owned by another integration: each is skipped with the
/// reason, and a run that skips every record fails (release 3).
#[tokio::test]
async fn users_owned_by_another_integration_are_skipped() {
    let (_server, dir) = setup(staff(1..=2), json!({})).await;
    let other = manifest(&_server, json!({}));
    dir.manifest("other", &other);
    let out = dir.run_async(&["run", "other"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let (code, r) = run_json(&dir, &[]).await;
    assert_eq!((code, counts(&r)), (1, [0, 0, 0, 2]), "{r}");
    assert!(r["skips"][0]["reason"].as_str().unwrap().contains("owned by integration other"), "{r}");
    assert!(r["error"].as_str().unwrap().contains("owned by integration other"), "{r}");
}

#[tokio::test]
async fn a_sync_over_max_deactivate_is_held_until_forced() {
    let (server, dir) = setup(staff(1..=10), json!({})).await;
    assert_eq!(run_json(&dir, &[]).await.0, 0);
    serve(&server, staff(4..=10)).await;
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(out.stdout().contains("nothing applied; it would create 0, update 0, deactivate 3"), "{}", out.all());
    assert!(out.stderr().contains("run 2 held: would deactivate 3 of 10"), "{}", out.all());
    assert!(out.all().contains("--force"), "{}", out.all());
    assert_eq!(out.all().matches("max_deactivate").count(), 1, "the limit is named once: {}", out.all());
    assert_eq!(dir.query("SELECT COUNT(*) FROM users WHERE active = 0"), ["0"], "held: nothing applied");
    assert_eq!(dir.query("SELECT status, deactivated FROM runs ORDER BY id DESC LIMIT 1"), ["held\t3"]);

    let dry = dir.run_async(&["run", "hr", "--dry-run"]).await;
    assert_eq!(dry.code(), 0, "{}", dry.all());
    assert!(dry.stdout().contains("a real run would be held"), "{}", dry.all());

    let (code, r) = run_json(&dir, &["--force"]).await;
    assert_eq!((code, counts(&r)), (0, [0, 0, 3, 0]), "{r}");
    assert_eq!(dir.query("SELECT COUNT(*) FROM users WHERE active = 0"), ["3"]);
}

#[tokio::test]
async fn the_manifest_limit_wins_over_the_config() {
    let (server, dir) = setup(staff(1..=10), json!({"max_deactivate": 3})).await;
    dir.config("[sync]\nmax_deactivate = 1\n");
    assert_eq!(run_json(&dir, &[]).await.0, 0);
    serve(&server, staff(4..=10)).await;
    let (code, r) = run_json(&dir, &[]).await;
    assert_eq!((code, counts(&r)), (0, [0, 0, 3, 0]), "exactly the limit is allowed: {r}");
}

#[tokio::test]
async fn match_on_external_id_follows_a_changed_email() {
    let (server, dir) = setup(staff(1..=3), json!({"match_on": "external_id"})).await;
    assert_eq!(run_json(&dir, &[]).await.0, 0);
    let mut people = staff(1..=3);
    people[0]["email"] = json!("renamed@acme.example");
    serve(&server, people).await;
    let (code, r) = run_json(&dir, &[]).await;
    assert_eq!((code, counts(&r)), (0, [0, 1, 0, 0]), "{r}");
    assert_eq!(dir.query("SELECT email FROM users WHERE external_id = 'E1'"), ["renamed@acme.example"]);
}

#[tokio::test]
async fn an_email_taken_by_another_user_needs_auto_clear_email() {
    let (server, dir) = setup(staff(1..=2), json!({"match_on": "external_id"})).await;
    dir.db_init();
    dir.db()
        .execute("INSERT INTO users (email, first_name, created_at, updated_at) VALUES ('taken@acme.example', 'Local', 'x', 'x')", [])
        .unwrap();
    assert_eq!(run_json(&dir, &[]).await.0, 0);
    let mut people = staff(1..=2);
    people[0]["email"] = json!("taken@acme.example");
    serve(&server, people.clone()).await;
    let (code, r) = run_json(&dir, &[]).await;
    assert_eq!((code, counts(&r)), (0, [0, 0, 0, 1]), "{r}");
    assert!(r["skips"][0]["reason"].as_str().unwrap().contains("already belongs to taken@acme.example"), "{r}");

    dir.manifest("hr", &manifest(&server, json!({"match_on": "external_id", "auto_clear_email": true})));
    let (code, r) = run_json(&dir, &[]).await;
    assert_eq!((code, counts(&r)), (0, [0, 2, 0, 0]), "{r}");
    assert_eq!(
        dir.query("SELECT first_name, email FROM users ORDER BY id"),
        ["Local\tNULL", "First1\ttaken@acme.example", "First2\tp2@acme.example"]
    );
}

#[tokio::test]
async fn a_fetch_that_fails_midway_deactivates_nobody() {
    let (server, dir) = setup(staff(1..=4), json!({})).await;
    assert_eq!(run_json(&dir, &[]).await.0, 0);
    server.reset().await;
    let first = json!({"data": staff(1..=2), "next": format!("{}/people?page=2", server.uri())});
    Mock::given(path("/people"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    Mock::given(path("/people")).respond_with(ResponseTemplate::new(200).set_body_json(first)).mount(&server).await;
    dir.manifest("hr", &manifest(&server, json!({"next_page_from": "next", "max_deactivate": "100%"})));
    dir.config("[http]\nretries = 0\n");
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    assert_eq!(dir.query("SELECT COUNT(*) FROM users WHERE active = 1"), ["4"]);
}

#[tokio::test]
async fn dry_run_lists_creations_updates_and_deactivations() {
    let (server, dir) = setup(staff(1..=10), json!({"max_deactivate": 5})).await;
    assert_eq!(run_json(&dir, &[]).await.0, 0);
    let mut people = staff(2..=11);
    people[0]["dept"] = json!("Sales");
    serve(&server, people).await;
    let out = dir.run_async(&["run", "hr", "--dry-run"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let text = out.stdout();
    assert!(text.contains("would create 1") && text.contains("+ p11@acme.example  First11 Last11"), "{text}");
    assert!(text.contains("would update 1") && text.contains("~ p2@acme.example  department: Ops → Sales"), "{text}");
    assert!(text.contains("would deactivate 1") && text.contains("- p1@acme.example"), "{text}");
    assert_eq!(dir.query("SELECT COUNT(*) FROM users"), ["10"]);
}

#[tokio::test]
async fn a_user_changed_outside_the_sync_is_written_back_on_a_large_run() {
    // Over 1,000 records: the run finds unchanged users by their fingerprints in one scan.
    let (_server, dir) = setup(staff(1..=1200), json!({})).await;
    let (code, r) = run_json(&dir, &[]).await;
    assert_eq!((code, counts(&r)), (0, [1200, 0, 0, 0]), "{r}");
    dir.db().execute("UPDATE users SET department = 'Edited by hand' WHERE external_id = 'E7'", []).unwrap();
    dir.write("people.json", r#"{"users": [{"name": "Changed Name", "employee_id": "E9"}]}"#);
    let out = dir.run_async(&["import", "people.json"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let (code, r) = run_json(&dir, &[]).await;
    assert_eq!((code, counts(&r)), (0, [0, 2, 0, 0]), "the two users changed elsewhere are written back: {r}");
    assert_eq!(
        dir.query("SELECT external_id, first_name, department FROM users WHERE external_id IN ('E7', 'E9') ORDER BY 1"),
        ["E7\tFirst7\tOps", "E9\tFirst9\tOps"]
    );
    let (_, r) = run_json(&dir, &[]).await;
    assert_eq!(counts(&r), [0, 0, 0, 0], "{r}");
    // Users from before fingerprints (none recorded): found unchanged, they get one, unwritten.
    dir.db().execute("DELETE FROM applied", []).unwrap();
    dir.db().execute("UPDATE users SET updated_at = 'before'", []).unwrap();
    let (_, r) = run_json(&dir, &[]).await;
    assert_eq!(counts(&r), [0, 0, 0, 0], "{r}");
    assert_eq!(dir.query("SELECT COUNT(*) FROM applied"), ["1200"]);
    assert_eq!(dir.query("SELECT COUNT(*) FROM users WHERE updated_at != 'before'"), ["0"]);
}
