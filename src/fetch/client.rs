//! One HTTP request with rosterd's rules: connect and total timeouts,
//! retries with exponential backoff and jitter on connect errors, timeouts,
//! 5xx and 429 (`Retry-After` honoured, in seconds or as an HTTP date, up to a
//! cap), and `max_response_bytes` enforced while the body is read. Every
//! attempt becomes an `Attempt` in the trace; the run redacts it when it
//! stores it. Log lines are redacted here, since they leave at once.

use std::sync::Once;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};

use super::FetchError;
use crate::config::HttpConfig;
use crate::manifest::origin;
use crate::redact::Redactor;

/// Redirects followed in a row at most.
const MAX_REDIRECTS: usize = 10;
/// The longest wait between attempts, whatever `Retry-After` asks for.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How much of a source's answer an error shows.
const EXCERPT_BYTES: usize = 500;

/// When a failed request is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Whenever the failure may pass (release 1's retries).
    Any,
    /// Only when it cannot have been applied (see `Client::send_with`).
    Unsent,
}

/// A request ready to send; the URL and headers are rendered, not yet redacted.
#[derive(Clone)]
pub struct Request {
    /// What the trace and errors call it: `step 0`, `page 3`.
    pub label: String,
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Allowed status codes; empty means any 2xx.
    pub allowed: Vec<u16>,
}

impl Request {
    /// How errors name it: `page 3 (GET https://...)`.
    pub fn describe(&self) -> String {
        format!("{} ({} {})", self.label, self.method, self.url)
    }
}

/// A response whose status was allowed, with its body read in full.
pub struct Response {
    pub url: reqwest::Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// One HTTP attempt of a run, as sent (not redacted).
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The request's label: `step 0`, `page 3`.
    pub step: String,
    pub method: String,
    pub url: String,
    pub status: Option<u16>,
    pub bytes: Option<i64>,
    pub millis: i64,
    pub attempt: u32,
    pub error: Option<String>,
}

/// Sends requests for one run and keeps their trace.
pub struct Client {
    inner: reqwest::Client,
    http: HttpConfig,
    /// For log lines only; errors and the trace are redacted by the run.
    redactor: Redactor,
    pub trace: Vec<Attempt>,
}

fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed one already; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Client {
    /// A client for one run. A redirect is followed only within the origin
    /// it came from or into one of `allowed_origins` (at most 10 in a row):
    /// the manifest's headers carry secrets and go nowhere else.
    pub fn new(http: &HttpConfig, redactor: Redactor, allowed_origins: Vec<String>) -> Result<Self, FetchError> {
        install_crypto();
        let timeout = Duration::from_secs(http.timeout_secs.max(1));
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            let from = attempt.previous().last().map(origin).unwrap_or_default();
            let to = origin(attempt.url());
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects in a row"))
            } else if from == to || allowed_origins.contains(&to) {
                attempt.follow()
            } else {
                attempt.error(format!(
                    "refused a redirect from {from} to {to}, another origin: the manifest's headers go only \
                     where it points; list {to} in allowed_origins if you trust it"
                ))
            }
        });
        let inner = reqwest::Client::builder()
            .redirect(policy)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(15)))
            .user_agent(concat!("rosterd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        Ok(Self { inner, http: http.clone(), redactor, trace: Vec::new() })
    }

    /// Another client on the same connection pool and rules, with a trace of
    /// its own (a push sends many requests at once, one client each).
    pub fn fork(&self) -> Client {
        Client {
            inner: self.inner.clone(),
            http: self.http.clone(),
            redactor: self.redactor.clone(),
            trace: Vec::new(),
        }
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Sends `req`, retrying as configured. The error names the request,
    /// its URL, the status and a body excerpt.
    pub async fn send(&mut self, req: &Request) -> Result<Response, FetchError> {
        self.send_with(req, Retry::Any).await
    }

    /// `send` with a retry policy: a request that must not be applied twice
    /// (a push's create) is retried only when it cannot have reached the
    /// target (no connection), or the target said it did not take it (429 or
    /// 503 with `Retry-After`); after a timeout or another 5xx it may have been
    /// stored, so it is not sent again.
    pub async fn send_with(&mut self, req: &Request, retry: Retry) -> Result<Response, FetchError> {
        let shown_url = self.redactor.redact(&req.url);
        let headers = self.header_map(req)?;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let started = Instant::now();
            let outcome = self.attempt(req, headers.clone()).await;
            let millis = started.elapsed().as_millis() as i64;
            let (status, bytes, error) = match &outcome {
                Ok(r) => (Some(r.status.as_u16()), Some(r.body.len() as i64), None),
                Err(f) => (f.status.map(|s| s.as_u16()), f.bytes, Some(f.cause.clone())),
            };
            tracing::debug!(step = %req.label, method = %req.method, url = %shown_url, ?status, millis, attempt, "request");
            self.trace.push(Attempt {
                step: req.label.clone(),
                method: req.method.to_string(),
                url: req.url.clone(),
                status,
                bytes,
                millis,
                attempt,
                error,
            });
            let failure = match outcome {
                Ok(response) => return Ok(response),
                Err(f) => f,
            };
            let allowed = match retry {
                Retry::Any => failure.retryable,
                Retry::Unsent => {
                    failure.unsent
                        || (failure.retry_after.is_some()
                            && matches!(
                                failure.status,
                                Some(StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
                            ))
                }
            };
            if allowed && attempt <= self.http.retries {
                let wait = failure.retry_after.unwrap_or_else(|| self.backoff(attempt)).min(MAX_BACKOFF);
                tracing::warn!(step = %req.label, url = %shown_url, attempt, wait_ms = wait.as_millis() as u64,
                    "retrying: {}", self.redactor.redact(&failure.cause));
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(FetchError::Http {
                request: req.describe(),
                cause: failure.cause,
                attempts: attempt,
                status: failure.status.map(|s| s.as_u16()),
            });
        }
    }

    fn header_map(&self, req: &Request) -> Result<HeaderMap, FetchError> {
        let mut map = HeaderMap::new();
        for (name, value) in &req.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| FetchError::Request(format!("\"{name}\" is not a valid header name")))?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                FetchError::Request(format!("header {name} holds characters a header cannot carry (a newline?)"))
            })?;
            map.insert(name, value);
        }
        if req.body.is_some() && !map.contains_key(reqwest::header::CONTENT_TYPE) {
            map.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        // A POST, PUT or PATCH without `data` still says it has no body:
        // Google's token endpoint answers 411 otherwise.
        if req.body.is_none() && matches!(req.method, Method::POST | Method::PUT | Method::PATCH) {
            map.insert(reqwest::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        Ok(map)
    }

    async fn attempt(&self, req: &Request, headers: HeaderMap) -> Result<Response, Failure> {
        let mut builder = self.inner.request(req.method.clone(), &req.url).headers(headers);
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        let mut resp = builder.send().await.map_err(|e| Failure {
            status: None,
            bytes: None,
            retryable: e.is_connect() || e.is_timeout() || e.is_request(),
            retry_after: None,
            cause: describe_reqwest(&e),
            unsent: e.is_connect(),
        })?;
        let status = resp.status();
        let limit = self.http.max_response_bytes;
        if let Some(len) = resp.content_length().filter(|l| *l > limit) {
            return Err(Failure::fatal(
                status,
                format!("the response is {len} bytes, over max_response_bytes ({limit})"),
            ));
        }
        // Sized once from Content-Length (already checked against the limit) instead of grown chunk by chunk.
        let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0).min(limit) as usize);
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() as u64 + chunk.len() as u64 > limit {
                        return Err(Failure::fatal(
                            status,
                            format!("the response is over max_response_bytes ({limit})"),
                        ));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(Failure {
                        status: Some(status),
                        bytes: Some(body.len() as i64),
                        retryable: true,
                        retry_after: None,
                        cause: format!("the response was cut off after {} bytes: {}", body.len(), describe_reqwest(&e)),
                        unsent: false,
                    });
                }
            }
        }
        let allowed = if req.allowed.is_empty() { status.is_success() } else { req.allowed.contains(&status.as_u16()) };
        if allowed {
            return Ok(Response { url: resp.url().clone(), status, headers: resp.headers().clone(), body });
        }
        let excerpt = excerpt(&body);
        let expected = if req.allowed.is_empty() {
            String::new()
        } else {
            format!(" (expected {})", req.allowed.iter().map(u16::to_string).collect::<Vec<_>>().join(", "))
        };
        Err(Failure {
            status: Some(status),
            bytes: Some(body.len() as i64),
            retryable: status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
            retry_after: retry_after(resp.headers()),
            unsent: false,
            cause: format!(
                "HTTP {status}{expected}{}",
                if excerpt.is_empty() { String::new() } else { format!(": {excerpt}") }
            ),
        })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.http.retry_base_ms.saturating_mul(1u64 << (attempt - 1).min(16));
        let mut jitter = [0u8; 2];
        let _ = getrandom::getrandom(&mut jitter);
        let jitter = u64::from(u16::from_le_bytes(jitter)) % (base / 4 + 1);
        Duration::from_millis(base + jitter)
    }
}

struct Failure {
    status: Option<StatusCode>,
    bytes: Option<i64>,
    retryable: bool,
    retry_after: Option<Duration>,
    cause: String,
    /// The request cannot have reached the target (no connection was made).
    unsent: bool,
}

impl Failure {
    fn fatal(status: StatusCode, cause: String) -> Self {
        Self { status: Some(status), bytes: None, retryable: false, retry_after: None, cause, unsent: false }
    }
}

/// The start of a body for error messages: at most `EXCERPT_BYTES` bytes
/// (cut at a character boundary), white space folded to single spaces.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.len() <= EXCERPT_BYTES {
        return one_line;
    }
    let mut end = EXCERPT_BYTES;
    while !one_line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &one_line[..end])
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(excerpt(b"{\n  \"error\": \"boom\"\n}"), "{ \"error\": \"boom\" }");
        assert_eq!(excerpt(&[b'x'; 900]).len(), EXCERPT_BYTES + "…".len());
        assert!(excerpt("é".repeat(400).as_bytes()).ends_with("é…"), "cut at a character boundary");
    }
}
