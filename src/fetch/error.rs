//! Why a fetch stopped. The text names the request (`page 3 (GET url)`),
//! what went wrong and what to check; it is not redacted here: the run
//! redacts it once, where it leaves the run (stdout, stderr, `runs`, trace).

/// A fetch that did not bring every page; nothing was applied.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// A request that could not be built (a header rosterd cannot send).
    #[error("{0}")]
    Request(String),
    /// A request that failed after its retries. `request` is `label (METHOD url)`;
    /// `status` is the last answer's, when there was one.
    #[error("{request}: {cause}{}", attempts_text(*.attempts))]
    Http { request: String, cause: String, attempts: u32, status: Option<u16> },
    /// An OAuth token request answered, but not with a token.
    #[error("{request}: the token response is not a JSON object with the token's fields; it starts: {excerpt}")]
    NotToken { request: String, excerpt: String },
    #[error("{label}: {what}: {reason}")]
    Template { label: String, what: String, reason: String },
    #[error("{label}: cannot encode data: {reason}")]
    Data { label: String, reason: String },
    #[error("{request}: the response is not valid JSON ({reason}); it starts: {excerpt}")]
    NotJson { request: String, reason: String, excerpt: String },
    #[error("{request}: continue_if not met{}: \"{path}\" is {}, expected \"{expected}\"",
        polled_text(*.polls), got.as_ref().map_or("missing".to_string(), |g| format!("\"{g}\"")))]
    ContinueIf { request: String, polls: u32, path: String, got: Option<String>, expected: String },
    /// `data_from` found nothing, or not a list; `found` says which.
    #[error("{request}: {} is {found}; check data_from against the response, {answer}", data_from_text(.path))]
    DataFrom { request: String, path: String, found: String, answer: String },
    #[error("page {page}: the next page link \"{link}\" is not a URL: {reason}")]
    BadLink { page: u32, link: String, reason: String },
    /// A next-page link that leaves the origin its page came from.
    #[error(
        "page {page}: the next page link leads to {to}, another origin than {from}; nothing was sent there \
         (the manifest's headers go only where it points): list {to} in allowed_origins if you trust it"
    )]
    Origin { page: u32, from: String, to: String },
    #[error(
        "stopped after {0} pages, and a further page exists: raise [http] max_pages, \
         or set amount_pages_to_fetch in the manifest to fetch fewer pages on purpose"
    )]
    TooManyPages(u32),
    #[error("page {page}: the source sent a next-page {what} it had sent before; stopping instead of looping")]
    Loop { page: u32, what: &'static str },
    /// The page reader stopped without saying why (it panicked or was cancelled).
    #[error("reading pages stopped: {0}")]
    Reader(String),
}

impl FetchError {
    /// rosterd's own account of what failed, for a page anyone may read:
    /// the step, the host and the HTTP status or the kind of failure, never
    /// a word of what the source answered (an excerpt can name people) nor a
    /// URL's path or query.
    pub fn summary(&self) -> String {
        match self {
            FetchError::Client(_) => "cannot build the HTTP client".into(),
            FetchError::Request(_) => "a request could not be built".into(),
            FetchError::Http { request, status: Some(s), .. } => format!("{}: HTTP {s}", public_request(request)),
            FetchError::Http { request, status: None, .. } => format!("{}: no answer", public_request(request)),
            FetchError::NotToken { request, .. } => format!("{}: the answer is not a token", public_request(request)),
            FetchError::Template { label, .. } => format!("{label}: a template cannot be rendered"),
            FetchError::Data { label, .. } => format!("{label}: the request body cannot be encoded"),
            FetchError::NotJson { request, .. } => format!("{}: the answer is not JSON", public_request(request)),
            FetchError::ContinueIf { request, .. } => format!("{}: continue_if not met", public_request(request)),
            FetchError::DataFrom { request, .. } => {
                format!("{}: data_from found no list of records", public_request(request))
            }
            FetchError::BadLink { page, .. } => format!("page {page}: the next page link is not a URL"),
            FetchError::Origin { page, .. } => format!("page {page}: the next page link leads to another origin"),
            FetchError::TooManyPages(n) => format!("stopped after {n} pages ([http] max_pages)"),
            FetchError::Loop { page, .. } => format!("page {page}: the source repeated a next page"),
            FetchError::Reader(_) => "reading pages stopped".into(),
        }
    }

    /// The HTTP status of the answer that failed the request, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            FetchError::Http { status, .. } => *status,
            _ => None,
        }
    }
}

/// `step 0 (GET https://host/path?q)` as `step 0 to host`: the label and the host only.
fn public_request(request: &str) -> String {
    let Some((label, rest)) = request.split_once(" (") else { return "a request".into() };
    let url = rest.trim_end_matches(')').split_whitespace().nth(1).unwrap_or_default();
    match reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_string)) {
        Some(host) => format!("{label} to {host}"),
        None => label.to_string(),
    }
}

fn attempts_text(attempts: u32) -> String {
    if attempts > 1 { format!(" after {attempts} attempts") } else { String::new() }
}

fn polled_text(polls: u32) -> String {
    if polls > 1 { format!(" after {polls} requests (polling)") } else { String::new() }
}

fn data_from_text(path: &str) -> String {
    if path.is_empty() { "the response itself".to_string() } else { format!("data_from \"{path}\"") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_names_step_host_and_status_and_nothing_the_source_said() {
        let e = FetchError::Http {
            request: "step 0 (GET https://api.example.com/v1/people?company=acme)".into(),
            cause: "HTTP 500 Internal Server Error: {\"error\": \"ann.lee@acme.example is locked\"}".into(),
            attempts: 2,
            status: Some(500),
        };
        assert_eq!(e.summary(), "step 0 to api.example.com: HTTP 500");
        let e = FetchError::NotJson {
            request: "page 2 (GET http://127.0.0.1:9/p)".into(),
            reason: "x".into(),
            excerpt: "<html>Ann Lee</html>".into(),
        };
        assert_eq!(e.summary(), "page 2 to 127.0.0.1: the answer is not JSON");
    }
}
