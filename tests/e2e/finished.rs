//! Release 2, finished: what a field test of real manifests found, each
//! checked the way an admin would meet it.

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::TestDir;

fn people(domain: &str) -> Value {
    json!({"employees": [
        {"workEmail": format!("cabbott@{domain}.example"), "firstName": "Cy", "lastName": "Abbott"},
        {"workEmail": format!("dlee@{domain}.example"), "firstName": "Di", "lastName": "Lee"}
    ]})
}

fn manifest(server: &MockServer) -> Value {
    json!({
        "execute": [{"url": format!("{}/{{{{ COMPANY_ID }}}}/people", server.uri()), "method": "GET"}],
        "headers": {"Authorization": "Bearer {{ KEY }}"},
        "action": "create",
        "data_from": "employees",
        "data_structure": {"email": "workEmail", "first_name": "firstName", "last_name": "lastName"},
        "initial_data_form": [{"id": "KEY", "name": "key"}, {"id": "COMPANY_ID", "name": "company"}]
    })
}

/// Google's token endpoint answers 411 to a POST without `Content-Length`;
/// ChiefOnboarding's Google manifest puts every parameter in the URL.
#[tokio::test]
async fn a_post_without_data_says_its_length_is_zero() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header("content-length", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": "tok-0001", "expires_in": 3600})))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(411).set_body_string("Length Required"))
        .with_priority(2)
        .mount(&server)
        .await;
    let dir = TestDir::new();
    dir.config("[http]\nretries = 0\n[secrets.google]\nCLIENT_ID = \"id-123456\"\nCLIENT_SECRET = \"s-123456\"\n");
    dir.manifest(
        "google",
        &json!({
            "execute": [{"url": format!("{}/people", server.uri()), "method": "GET"}],
            "headers": {"Authorization": "Bearer {{ oauth.access_token }}"},
            "data_from": "employees",
            "data_structure": {"email": "workEmail", "first_name": "firstName", "last_name": "lastName"},
            "initial_data_form": [{"id": "CLIENT_ID", "name": "id"}, {"id": "CLIENT_SECRET", "name": "secret"}],
            "oauth": {"access_token": {
                "url": format!("{}/token?grant_type=client_credentials&client_id={{{{ CLIENT_ID }}}}&client_secret={{{{ CLIENT_SECRET }}}}", server.uri()),
                "method": "POST"
            }}
        }),
    );
    let out = dir.run_async(&["oauth", "google"]).await;
    assert_eq!(out.code(), 0, "{}", out.all());
    let sent = server.received_requests().await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].headers.get("content-length").and_then(|v| v.to_str().ok()), Some("0"));
    assert_eq!(dir.query("SELECT COUNT(*) FROM oauth_tokens"), ["1"]);
}

/// A company id in every email domain stays readable when the config says it is no secret.
#[tokio::test]
async fn a_visible_value_is_supplied_and_never_masked() {
    let server = MockServer::start().await;
    Mock::given(path("/acmecorp/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(people("acmecorp")))
        .mount(&server)
        .await;
    let dir = TestDir::new();
    dir.manifest("hr", &manifest(&server));
    for (table, masked) in [("secrets", true), ("visible", false)] {
        let company = if masked { "" } else { "[visible.hr]\n" };
        dir.config(&format!(
            "[http]\nretries = 0\n[secrets.hr]\nKEY = \"k-123456\"\n{company}COMPANY_ID = \"acmecorp\"\n"
        ));
        let out = dir.run_async(&["run", "hr", "--dry-run", "--json"]).await;
        assert_eq!(out.code(), 0, "{table}: {}", out.all());
        let email = out.json()["sample"]["fields"]["email"].as_str().unwrap_or_default().to_string();
        assert_eq!(email.contains("acmecorp"), !masked, "{table}: {email}");
        assert_eq!(email.contains("***COMPANY_ID***"), masked, "{table}: {email}");
    }
    // The key stays a secret: only the named id is visible.
    let out = dir.run_async(&["run", "hr", "--dry-run", "--json"]).await;
    assert!(!out.all().contains("k-123456"), "{}", out.all());
    // Said in both tables is one too many.
    dir.config("[secrets.hr]\nKEY = \"k-123456\"\nCOMPANY_ID = \"a\"\n[visible.hr]\nCOMPANY_ID = \"acmecorp\"\n");
    let out = dir.run_async(&["validate"]).await;
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stderr().contains("/visible/hr/COMPANY_ID"), "{}", out.all());
}

/// BambooHR's report starts with a long `fields` list: an excerpt shows
/// nothing useful, the top-level keys do.
#[tokio::test]
async fn a_wrong_data_from_names_the_top_level_keys_and_the_closest() {
    let server = MockServer::start().await;
    let fields: Vec<Value> = (0..200).map(|i| json!({"id": i, "name": format!("Field number {i}")})).collect();
    let mut body = people("acme");
    body["title"] = json!("Report");
    body["fields"] = Value::Array(fields);
    Mock::given(path("/acme/people")).respond_with(ResponseTemplate::new(200).set_body_json(body)).mount(&server).await;
    let dir = TestDir::new();
    dir.config("[http]\nretries = 0\n[secrets.hr]\nKEY = \"k-123456\"\nCOMPANY_ID = \"acme\"\n");
    let mut m = manifest(&server);
    m["data_from"] = json!("employee");
    dir.manifest("hr", &m);
    let out = dir.run_async(&["run", "hr"]).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    let err = out.stderr();
    assert!(err.contains("top-level keys are employees, fields, title"), "{err}");
    assert!(err.contains("did you mean \"employees\"?"), "{err}");
    assert!(!err.contains("Field number"), "no excerpt of the long list: {err}");
}

/// A mistyped path of a required field skips every record: that is a failed
/// run, never a green one with nothing done.
#[tokio::test]
async fn a_run_that_skips_every_record_fails() {
    let server = MockServer::start().await;
    Mock::given(path("/acme/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(people("acme")))
        .mount(&server)
        .await;
    let dir = TestDir::new();
    dir.config("[http]\nretries = 0\n[secrets.hr]\nKEY = \"k-123456\"\nCOMPANY_ID = \"acme\"\n");
    let mut m = manifest(&server);
    m["data_structure"]["first_name"] = json!("firstname");
    dir.manifest("hr", &m);
    let dry = dir.run_async(&["run", "hr", "--dry-run", "--json"]).await;
    assert_eq!(dry.code(), 0, "{}", dry.all());
    assert!(dry.json()["notice"].as_str().unwrap_or_default().starts_with("a real run would fail"), "{}", dry.all());
    let out = dir.run_async(&["run", "hr", "--json"]).await;
    assert_eq!(out.code(), 1, "{}", out.all());
    let report = out.json();
    assert_eq!(report["status"], "failed");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.contains("every one of the 2 records was skipped"), "{error}");
    assert!(error.contains("missing first_name or last_name; 2 of them"), "{error}");
    assert_eq!(dir.query("SELECT COUNT(*) FROM users"), ["0"]);
    assert_eq!(dir.query("SELECT status, skipped FROM runs ORDER BY id DESC LIMIT 1"), ["failed\t2"]);
}
