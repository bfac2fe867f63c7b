//! OAuth: the code flow through rosterd's listener, a pasted URL and the
//! daemon's callback route; client credentials; renewal before expiry and on
//! a 401; a failed renewal; and no token value anywhere but the token table.
//! A mock provider hands out tokens; a mock source answers 401 unless it
//! sees the provider's current access token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::TestDir;

const CLIENT_SECRET: &str = "client-secret-s3cr3t-value";
const CODE: &str = "auth-code-4/0AbC";

/// What the provider does and has done.
#[derive(Default)]
struct Provider {
    /// Tokens issued so far (access tokens are `access-token-NNNN`).
    issued: u32,
    /// The access token the source accepts; `None`: none.
    current: Option<String>,
    refresh: Option<String>,
    expires_in: u64,
    /// Refresh requests fail with 400 invalid_grant.
    refuse_refresh: bool,
    /// Every token request: (grant, full URL, Content-Type, body).
    requests: Vec<(String, String, String, String)>,
    /// How long the provider takes to answer a token request.
    delay_ms: u64,
}

#[derive(Clone)]
struct Shared(Arc<Mutex<Provider>>);

impl Shared {
    fn get<T>(&self, f: impl FnOnce(&mut Provider) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }
}

fn form_value(text: &str, key: &str) -> Option<String> {
    let url = reqwest::Url::parse(&format!("http://x.invalid/?{text}")).ok()?;
    url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

impl Respond for Shared {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let query = req.url.query().unwrap_or("").to_string();
        let field = |k: &str| form_value(&body, k).or_else(|| form_value(&query, k));
        let grant = field("grant_type").unwrap_or_default();
        let content_type = req.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let mut p = self.0.lock().unwrap();
        p.requests.push((grant.clone(), req.url.to_string(), content_type, body.clone()));
        let ok = match grant.as_str() {
            "authorization_code" => field("code").as_deref() == Some(CODE) || field("code").is_none(),
            "refresh_token" => !p.refuse_refresh && field("refresh_token") == p.refresh,
            "client_credentials" => field("client_secret").as_deref() == Some(CLIENT_SECRET),
            _ => false,
        };
        let delay = std::time::Duration::from_millis(p.delay_ms);
        if !ok {
            return ResponseTemplate::new(400)
                .set_body_json(json!({"error": "invalid_grant", "echo": body}))
                .set_delay(delay);
        }
        p.issued += 1;
        let access = format!("access-token-{:04}", p.issued);
        p.current = Some(access.clone());
        let mut answer = json!({"access_token": access, "token_type": "Bearer", "expires_in": p.expires_in});
        if grant == "authorization_code" {
            let refresh = format!("refresh-token-{:04}", p.issued);
            p.refresh = Some(refresh.clone());
            answer["refresh_token"] = json!(refresh);
        }
        ResponseTemplate::new(200).set_body_json(answer).set_delay(delay)
    }
}

struct Source(Shared);

impl Respond for Source {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let auth = req.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        match self.0.get(|p| p.current.clone()) {
            Some(current) if auth == format!("Bearer {current}") => ResponseTemplate::new(200).set_body_json(json!({
                "users": [
                    {"primaryEmail": "ada@acme.example", "name": {"givenName": "Ada", "familyName": "Lovelace"}},
                    {"primaryEmail": "alan@acme.example", "name": {"givenName": "Alan", "familyName": "Turing"}}
                ]
            })),
            // Like many APIs, it names what it was sent: a trace that keeps the answer must redact it.
            _ => ResponseTemplate::new(401)
                .set_body_json(json!({"error": {"code": 401, "message": format!("Invalid Credentials: {auth}")}})),
        }
    }
}

struct Setup {
    dir: TestDir,
    server: MockServer,
    provider: Shared,
}

/// A provider and a source on one mock server, and a Google-shaped manifest
/// (`oauth` edited by `edit`) named `google`.
async fn setup(expires_in: u64, edit: impl FnOnce(&mut Value)) -> Setup {
    let server = MockServer::start().await;
    let provider = Shared(Arc::new(Mutex::new(Provider { expires_in, ..Provider::default() })));
    Mock::given(method("POST")).and(path("/token")).respond_with(provider.clone()).mount(&server).await;
    Mock::given(method("GET"))
        .and(path("/admin/directory/v1/users"))
        .respond_with(Source(provider.clone()))
        .mount(&server)
        .await;
    let base = server.uri();
    let mut m = json!({
        "execute": [{"url": format!("{base}/admin/directory/v1/users?customer=my_customer"), "method": "GET"}],
        "headers": {"Authorization": "Bearer {{ oauth.access_token }}"},
        "data_from": "users",
        "action": "create",
        "data_structure": {"email": "primaryEmail", "first_name": "name.givenName", "last_name": "name.familyName"},
        "initial_data_form": [{"id": "CLIENT_ID", "name": "Client ID", "secret": false},
                              {"id": "CLIENT_SECRET", "name": "Client secret"}],
        "oauth": {
            "authenticate_url": format!("{base}/auth?client_id={{{{CLIENT_ID}}}}&redirect_uri={{{{redirect_url}}}}&response_type=code&state=state_parameter_passthrough_value"),
            "access_token": {"url": format!("{base}/token?client_id={{{{CLIENT_ID}}}}&client_secret={{{{CLIENT_SECRET}}}}&redirect_uri={{{{redirect_url}}}}&grant_type=authorization_code"), "method": "POST"},
            "refresh": {"url": format!("{base}/token"), "method": "POST",
                        "data": {"client_id": "{{CLIENT_ID}}", "client_secret": "{{CLIENT_SECRET}}",
                                 "refresh_token": "{{ oauth.refresh_token }}", "grant_type": "refresh_token"}},
            "without_code": false
        },
        "schedule": ""
    });
    edit(&mut m);
    let dir = TestDir::new();
    dir.manifest("google", &m);
    dir.config(&format!("[secrets.google]\nCLIENT_ID = \"client-id-1\"\nCLIENT_SECRET = \"{CLIENT_SECRET}\"\n"));
    Setup { dir, server, provider }
}

/// A free loopback port (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `rosterd oauth google` running, and the authorize link it printed.
async fn start_oauth(dir: &TestDir, args: &[&str]) -> (Oauth, reqwest::Url) {
    let mut all = vec!["oauth", "google"];
    all.extend_from_slice(args);
    let mut cmd = tokio::process::Command::from(dir.command(&all));
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let link = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
    let link = reqwest::Url::parse(&link).unwrap_or_else(|e| panic!("not a link ({e}): {link}"));
    let rest = tokio::spawn(async move {
        let mut text = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    (Oauth { child, rest }, link)
}

/// A running `rosterd oauth`, and what it prints after the link.
struct Oauth {
    child: tokio::process::Child,
    rest: tokio::task::JoinHandle<String>,
}

/// How `rosterd oauth` ended: its status, what it printed after the link, and stderr.
struct Ended {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

fn query(url: &reqwest::Url, key: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

async fn finish(o: Oauth) -> Ended {
    let out = tokio::time::timeout(Duration::from_secs(30), o.child.wait_with_output()).await.unwrap().unwrap();
    let stdout = o.rest.await.unwrap();
    Ended { status: out.status, stdout, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Authorizes `google` through rosterd's own listener.
async fn authorize(s: &Setup) {
    let port = free_port();
    let (child, link) = start_oauth(&s.dir, &["--port", &port.to_string(), "--timeout", "30s"]).await;
    let state = query(&link, "state").unwrap();
    let url = format!("http://127.0.0.1:{port}/oauth/callback?code={}&state={state}", urlencode(CODE));
    let page = http().get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let out = finish(child).await;
    assert!(out.status.success(), "{}", out.stderr);
}

fn urlencode(text: &str) -> String {
    let mut url = reqwest::Url::parse("http://x.invalid/").unwrap();
    url.query_pairs_mut().append_pair("v", text);
    url.query().unwrap()[2..].to_string()
}

#[tokio::test]
async fn the_code_flow_through_rosterds_listener() {
    let s = setup(3600, |_| {}).await;
    let port = free_port();
    let (child, link) = start_oauth(&s.dir, &["--port", &port.to_string(), "--timeout", "30s"]).await;
    let redirect = format!("http://127.0.0.1:{port}/oauth/callback");
    assert_eq!(query(&link, "redirect_uri").as_deref(), Some(redirect.as_str()));
    let state = query(&link, "state").unwrap();
    assert_ne!(state, "state_parameter_passthrough_value", "rosterd's own state replaces the manifest's");
    assert!(state.len() >= 32);

    // A wrong state is refused and the wait goes on.
    let wrong = http().get(format!("{redirect}?code=x&state=forged")).send().await.unwrap();
    assert_eq!(wrong.status(), 400);
    let page = http().get(format!("{redirect}?code={}&state={state}", urlencode(CODE))).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("stored the token"));
    let out = finish(child).await;
    let stdout = &out.stdout;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(stdout.contains("google: token stored") && stdout.contains("refresh_token"), "{stdout}");
    assert!(!stdout.contains("access-token-0001"), "{stdout}");

    // The exchange: code= appended to the URL, as ChiefOnboarding does.
    let requests = s.provider.get(|p| p.requests.clone());
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].1.contains(&format!("&code={}", urlencode(CODE))), "{}", requests[0].1);

    let run = s.dir.rosterd(&["run", "google", "--json"]);
    assert_eq!(run.code(), 0, "{}", run.all());
    assert_eq!(run.json()["created"], 2);

    let status = s.dir.rosterd(&["oauth", "google", "--status"]);
    assert_eq!(status.code(), 0, "{}", status.all());
    assert!(status.stdout().contains("expires") && status.stdout().contains("access_token"), "{}", status.all());
    assert!(
        !status.stdout().contains("access-token-0001") && !status.stdout().contains("refresh-token"),
        "{}",
        status.all()
    );
}

#[tokio::test]
async fn the_code_flow_through_a_pasted_url_and_a_wrong_state_refused() {
    let s = setup(3600, |_| {}).await;
    let (mut child, link) = start_oauth(&s.dir, &["--port", &free_port().to_string(), "--timeout", "30s"]).await;
    let state = query(&link, "state").unwrap();
    let stdin = child.child.stdin.as_mut().unwrap();
    stdin.write_all(b"https://laptop.example/oauth/callback?code=x&state=not-the-state\n").await.unwrap();
    let pasted = format!("https://laptop.example/oauth/callback?state={state}&code={}&scope=x\n", urlencode(CODE));
    stdin.write_all(pasted.as_bytes()).await.unwrap();
    let out = finish(child).await;
    let stderr = &out.stderr;
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("refused the pasted address"), "{stderr}");
    assert_eq!(s.provider.get(|p| p.requests.len()), 1, "the wrong state sent nothing to the provider");
    assert_eq!(s.dir.query("SELECT COUNT(*) FROM oauth_tokens"), ["1"]);
}

#[tokio::test]
async fn only_a_wrong_state_stores_nothing() {
    let s = setup(3600, |_| {}).await;
    let (mut child, _link) = start_oauth(&s.dir, &["--port", &free_port().to_string(), "--timeout", "3s"]).await;
    child.child.stdin.as_mut().unwrap().write_all(b"?code=x&state=forged\n").await.unwrap();
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("no callback came within 3 s"));
    assert_eq!(s.dir.query("SELECT COUNT(*) FROM oauth_tokens"), ["0"]);
    assert_eq!(s.provider.get(|p| p.requests.len()), 0);
}

#[tokio::test]
async fn without_code_sends_no_code() {
    let s = setup(3600, |m| m["oauth"]["without_code"] = json!(true)).await;
    let port = free_port();
    let (child, link) = start_oauth(&s.dir, &["--port", &port.to_string(), "--timeout", "30s"]).await;
    let state = query(&link, "state").unwrap();
    let page = http().get(format!("http://127.0.0.1:{port}/oauth/callback?state={state}")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(finish(child).await.status.success());
    let requests = s.provider.get(|p| p.requests.clone());
    assert_eq!(requests.len(), 1);
    assert!(!requests[0].1.contains("code="), "{}", requests[0].1);
}

#[tokio::test]
async fn a_code_flow_run_without_a_token_says_what_to_do() {
    let s = setup(3600, |_| {}).await;
    let run = s.dir.rosterd(&["run", "google"]);
    assert_eq!(run.code(), 1, "{}", run.all());
    assert!(run.stderr().contains("run `rosterd oauth google` first"), "{}", run.all());
}

/// Client credentials: a form-encoded token request (no Content-Type in the
/// manifest), made again only when the token is about to expire.
#[tokio::test]
async fn client_credentials_get_a_token_once_while_it_lasts() {
    let s = setup(3600, |m| {
        m["oauth"] = json!({"access_token": {"url": "PROVIDER/token", "method": "POST",
            "data": {"grant_type": "client_credentials", "client_id": "{{CLIENT_ID}}", "client_secret": "{{CLIENT_SECRET}}"}}});
    })
    .await;
    let text = std::fs::read_to_string(s.dir.path().join("integrations/google.json")).unwrap();
    s.dir.write("integrations/google.json", &text.replace("PROVIDER", &s.server.uri()));
    for _ in 0..2 {
        let run = s.dir.rosterd(&["run", "google", "--json"]);
        assert_eq!(run.code(), 0, "{}", run.all());
    }
    let requests = s.provider.get(|p| p.requests.clone());
    assert_eq!(requests.len(), 1, "one token request inside expires_in: {requests:?}");
    assert_eq!(requests[0].2, "application/x-www-form-urlencoded");
    assert!(requests[0].3.contains("grant_type=client_credentials"), "{}", requests[0].3);
    assert_eq!(s.dir.query("SELECT COUNT(*) FROM users"), ["2"]);

    // `rosterd oauth NAME` for client credentials gets a token at once.
    let out = s.dir.rosterd(&["oauth", "google"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(s.provider.get(|p| p.requests.len()), 2);
}

/// A token that expires within a minute is refreshed before the run; the
/// refresh answer has no refresh_token, so the old one is kept.
#[tokio::test]
async fn a_token_about_to_expire_is_refreshed_keeping_the_refresh_token() {
    let s = setup(30, |_| {}).await;
    authorize(&s).await;
    let run = s.dir.rosterd(&["run", "google", "--json"]);
    assert_eq!(run.code(), 0, "{}", run.all());
    let grants: Vec<String> = s.provider.get(|p| p.requests.iter().map(|r| r.0.clone()).collect());
    assert_eq!(grants, ["authorization_code", "refresh_token"]);
    let stored: Value = serde_json::from_str(&s.dir.query("SELECT response FROM oauth_tokens")[0]).unwrap();
    assert_eq!(stored["access_token"], "access-token-0002");
    assert_eq!(stored["refresh_token"], "refresh-token-0001", "kept from the first answer");
}

/// The provider revoked the token early: the source's 401 gets one renewal
/// and one retry; a source that still says 401 fails the run.
#[tokio::test]
async fn a_401_gets_one_renewal_and_one_retry() {
    let s = setup(3600, |_| {}).await;
    authorize(&s).await;
    s.provider.get(|p| p.current = Some("revoked-elsewhere".into()));
    let run = s.dir.rosterd(&["run", "google", "--json"]);
    assert_eq!(run.code(), 0, "{}", run.all());
    assert_eq!(run.json()["created"], 2);
    assert_eq!(s.dir.query("SELECT json_extract(response, '$.access_token') FROM oauth_tokens"), ["access-token-0002"]);

    // Now every token is refused: one renewal, one retry, then the run fails.
    let source = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(401)).mount(&source).await;
    let text = std::fs::read_to_string(s.dir.path().join("integrations/google.json")).unwrap();
    let text = text.replace(&format!("{}/admin", s.server.uri()), &format!("{}/admin", source.uri()));
    s.dir.write("integrations/google.json", &text);
    let run = s.dir.rosterd(&["run", "google", "--json"]);
    assert_eq!(run.code(), 1, "{}", run.all());
    assert!(run.json()["error"].as_str().unwrap().contains("401"), "{}", run.all());
    assert_eq!(source.received_requests().await.unwrap().len(), 2, "the request and one retry");
    assert_eq!(s.provider.get(|p| p.requests.len()), 3, "code, renewal on the first run, one renewal now");
}

#[tokio::test]
async fn a_failed_renewal_fails_the_run_and_applies_nothing() {
    let s = setup(30, |_| {}).await;
    authorize(&s).await;
    s.provider.get(|p| p.refuse_refresh = true);
    let run = s.dir.rosterd(&["run", "google", "--json"]);
    assert_eq!(run.code(), 1, "{}", run.all());
    let error = run.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("renewing the OAuth token failed") && error.contains("invalid_grant"), "{error}");
    assert!(!error.contains(CLIENT_SECRET) && !error.contains("refresh-token-0001"), "{error}");
    assert_eq!(s.dir.query("SELECT COUNT(*) FROM users"), ["0"]);
    assert_eq!(s.dir.query("SELECT status FROM runs"), ["failed"]);
}

/// No access token, refresh token or client secret in stdout, stderr at
/// trace level, or any table but the token store.
#[tokio::test]
async fn token_values_appear_nowhere_else() {
    let s = setup(3600, |_| {}).await;
    authorize(&s).await;
    s.provider.get(|p| p.current = Some("revoked-elsewhere".into()));
    let mut cmd = s.dir.command(&["run", "google", "--json"]);
    cmd.env("RUST_LOG", "trace");
    let run = crate::Out(cmd.output().unwrap());
    assert_eq!(run.code(), 0, "{}", run.all());
    let dry = s.dir.rosterd(&["run", "google", "--dry-run", "--json"]);
    let history = s.dir.rosterd(&["history", "google", "--json"]);
    let mut seen = format!("{}{}{}", run.all(), dry.all(), history.all());
    let tables = s.dir.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'oauth_tokens'");
    for table in tables {
        let columns = s.dir.query(&format!("SELECT name FROM pragma_table_info('{table}')"));
        for column in columns {
            seen.push_str(&s.dir.query(&format!("SELECT quote(\"{column}\") FROM \"{table}\"")).join("\n"));
        }
    }
    assert!(seen.contains("Ada"), "the scan reads the outputs");
    let secrets = s.provider.get(|p| {
        let mut all: Vec<String> = (1..=p.issued).map(|i| format!("access-token-{i:04}")).collect();
        all.push(p.refresh.clone().unwrap());
        all
    });
    for secret in secrets.iter().map(String::as_str).chain([CLIENT_SECRET]) {
        assert!(!seen.contains(secret), "{secret} leaked:\n{seen}");
    }
    assert!(s.dir.query("SELECT response FROM oauth_tokens")[0].contains("access-token-"), "stored where it belongs");
}

/// With the API on, the daemon takes the callback: `[oauth] redirect_url`
/// points at it, `rosterd oauth` sees the token arrive, and a state works once.
#[tokio::test]
async fn the_daemon_takes_the_callback() {
    let s = setup(3600, |_| {}).await;
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/oauth/google/callback");
    let config = format!(
        "[secrets.google]\nCLIENT_ID = \"client-id-1\"\nCLIENT_SECRET = \"{CLIENT_SECRET}\"\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\ntokens = [\"api-token-1234567\"]\n[oauth]\nredirect_url = \"{redirect}\"\n"
    );
    s.dir.config(&config);
    let mut daemon = tokio::process::Command::from(s.dir.command(&["serve"]));
    daemon.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
    let mut daemon = daemon.spawn().unwrap();
    crate::listening_address(daemon.stderr.take().unwrap()).await;

    let (child, link) = start_oauth(&s.dir, &["--timeout", "30s"]).await;
    assert_eq!(query(&link, "redirect_uri").as_deref(), Some(redirect.as_str()));
    let state = query(&link, "state").unwrap();
    let callback = format!("{redirect}?code={}&state={state}", urlencode(CODE));
    let page = http().get(&callback).send().await.unwrap();
    assert_eq!(page.status(), 200, "no bearer token needed");
    let out = finish(child).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("google: token stored"));

    let again = http().get(&callback).send().await.unwrap();
    assert_eq!(again.status(), 400, "a state works once");
    let forged = http().get(format!("{redirect}?code=x&state=forged")).send().await.unwrap();
    assert_eq!(forged.status(), 400);
    assert_eq!(s.provider.get(|p| p.requests.len()), 1);
    let run = s.dir.rosterd(&["run", "google", "--json"]);
    assert_eq!(run.code(), 0, "{}", run.all());

    // A slow provider: the command waits for the daemon's exchange, however long it takes.
    s.provider.get(|p| p.delay_ms = 1500);
    let (child, link) = start_oauth(&s.dir, &["--timeout", "30s"]).await;
    let state = query(&link, "state").unwrap();
    let page = http().get(format!("{redirect}?code={}&state={state}", urlencode(CODE))).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let out = finish(child).await;
    assert!(out.status.success(), "a slow provider: {}", out.stderr);
    assert!(out.stdout.contains("google: token stored"), "{}", out.stdout);

    // A failed exchange is a failure, though an older token is stored.
    s.provider.get(|p| p.delay_ms = 0);
    let (child, link) = start_oauth(&s.dir, &["--timeout", "30s"]).await;
    let state = query(&link, "state").unwrap();
    let page = http().get(format!("{redirect}?code=not-the-code&state={state}")).send().await.unwrap();
    assert_eq!(page.status(), 502);
    let out = finish(child).await;
    assert!(!out.status.success(), "{}", out.stdout);
    assert!(out.stderr.contains("the exchange failed") && out.stderr.contains("invalid_grant"), "{}", out.stderr);
}

#[test]
fn status_never_creates_a_database() {
    let dir = TestDir::new();
    let out = dir.rosterd(&["oauth", "google", "--status"]);
    assert_eq!(out.code(), 2, "no manifest: {}", out.all());
    assert!(out.stderr().contains("no integration \"google\""), "{}", out.all());
    let step = json!({"url": "http://127.0.0.1:9/people"});
    dir.manifest("plain", &json!({"execute": [step], "data_from": "x", "data_structure": {"email": "e"}}));
    let out = dir.rosterd(&["oauth", "plain", "--status"]);
    assert_eq!(out.code(), 2, "no oauth block: {}", out.all());
    assert!(out.stderr().contains("plain has no \"oauth\" block"), "{}", out.all());
    let oauth = json!({"access_token": {"url": "http://127.0.0.1:9/token", "method": "POST"}});
    dir.manifest(
        "google",
        &json!({"execute": [step], "data_from": "x", "data_structure": {"email": "e"}, "oauth": oauth}),
    );
    let out = dir.rosterd(&["oauth", "google", "--status"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stderr().contains("no database"), "{}", out.all());
    assert!(!dir.path().join("rosterd.db").exists());
}
