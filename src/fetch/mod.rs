//! Fetching: renders each `execute` step, sends it (with `continue_if` and
//! `polling`), then follows every page of the last step's response. Each
//! page is skimmed here for its next link and record count, then read
//! straight into the arena on the reader's thread (`reader`, `project`; a
//! page is parsed whole only when a manifest needs it) while the next page
//! is fetched; a body is dropped once read. A source's 401 gets one token
//! renewal and one retry (`token`, which also sends OAuth token requests);
//! `Composer` renders a push's requests with the same rules.
//! Nothing here touches the store; a failure anywhere returns an error and
//! the run applies nothing.

mod client;
mod error;
mod paginate;
pub mod project;
mod reader;
mod token;

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value};

pub use client::{Attempt, Client, Request, Response, Retry, excerpt};
pub use error::FetchError;
pub use token::{Renew, Token, merge, token_request, with_token};

use crate::manifest::{FieldPath, Manifest, Pagination, Step};
use crate::mapping::{RecordArena, text};
use crate::problem::kind;
use crate::template::{Renderer, TemplateError};
use paginate::Pager;
use project::{Found, Projection};
use reader::Reader;

/// One page as the walk sees it: how many records (`None`: a later page
/// without `data_from`, the end), the next-page hint, and what the reader gets.
pub(super) struct PageSeen {
    items: Option<usize>,
    next: Option<String>,
    hand: Option<reader::Page>,
}

/// Everything a fetch produced.
#[derive(Debug, Default)]
pub struct Fetched {
    pub records: RecordArena,
    pub pages: u32,
    /// The first record as the source sent it (for "did you mean" when a path matches nothing).
    pub first: Option<Value>,
    /// Milliseconds the reader spent mapping pages (overlapping the fetch of later ones).
    pub read_ms: u64,
}

/// Called after each page with (pages so far, records so far).
pub type Progress<'a> = &'a mut (dyn FnMut(u32, usize) + Send);

/// Fetches every page of `m` into mapped records. `values` holds the form
/// values (secrets included) by id, and `oauth` (the token) and
/// `redirect_url` for a manifest with an `oauth` block; `max_pages` is
/// `[http] max_pages`. When a source answers 401, `renew` (the `oauth`
/// port), if given, renews the token once and the request is sent again.
pub async fn fetch<'a>(
    m: &'a Manifest,
    values: Map<String, Value>,
    client: &'a mut Client,
    max_pages: u32,
    progress: Progress<'_>,
    renew: Option<&'a mut dyn Renew>,
) -> Result<Fetched, FetchError> {
    let mut values = values;
    values.insert("responses".into(), Value::Array(Vec::new()));
    let mut run = Fetch::new(m, client, values, renew);
    let last = m.execute.len() - 1;
    for (i, step) in m.execute[..last].iter().enumerate() {
        let req = run.step_request(step, &format!("step {i}"))?;
        let (_, value) = run.send_step(step, &req).await?;
        run.push_response(value);
    }
    run.pages(last, max_pages, progress).await
}

struct Fetch<'a> {
    m: &'a Manifest,
    client: &'a mut Client,
    renderer: Renderer,
    /// The template context, an object: form values, `responses`, paging
    /// values. Templates borrow it; nothing copies it per render.
    ctx: Value,
    /// Who renews the token on a 401; `None`: this fetch does not renew
    /// (it is itself a token request, or a push's composer).
    renew: Option<&'a mut dyn Renew>,
    /// Push bodies: a string leaf that is exactly one `{{ name }}` keeps its JSON type.
    typed: bool,
}

impl<'a> Fetch<'a> {
    fn new(
        m: &'a Manifest,
        client: &'a mut Client,
        values: Map<String, Value>,
        renew: Option<&'a mut dyn Renew>,
    ) -> Self {
        Fetch { m, client, renderer: Renderer::default(), ctx: Value::Object(values), renew, typed: false }
    }

    /// Sends `req`; a 401 from the source, when the token can be renewed,
    /// renews it once and sends the request once more.
    async fn send(&mut self, req: &Request) -> Result<Response, FetchError> {
        match self.client.send(req).await {
            Err(FetchError::Http { status: Some(401), .. }) if self.can_renew() => {
                let retry = self.renew_for(req).await?;
                self.client.send(&retry).await
            }
            other => other,
        }
    }

    fn push_response(&mut self, value: Value) {
        if let Some(Value::Array(responses)) = self.ctx.get_mut("responses") {
            responses.push(value);
        }
    }

    /// Sets a template value (`OFFSET`, `NEXT_PAGE_TOKEN`, ...).
    fn set(&mut self, name: &str, value: Value) {
        if let Value::Object(ctx) = &mut self.ctx {
            ctx.insert(name.to_string(), value);
        }
    }

    fn render(&self, template: &str, label: &str, what: &str) -> Result<String, FetchError> {
        self.renderer.render(template, &self.ctx).map_err(|e| template_error(e, label, what))
    }

    fn headers_for(&self, own: Option<&[(String, String)]>, label: &str) -> Result<Vec<(String, String)>, FetchError> {
        self.render_headers(own.unwrap_or(&self.m.headers), label)
    }

    fn render_headers(&self, templates: &[(String, String)], label: &str) -> Result<Vec<(String, String)>, FetchError> {
        let mut out = Vec::with_capacity(templates.len());
        for (name, template) in templates {
            let mut value = self.render(template, label, &format!("header {name}"))?;
            if name.eq_ignore_ascii_case("authorization")
                && let Some(credential) = value.strip_prefix("Basic ")
                // `user:password` is encoded here; text without `:` is taken as encoded already.
                && credential.contains(':')
            {
                let encoded = base64::engine::general_purpose::STANDARD.encode(credential);
                self.client.redactor().add_form(encoded.clone(), &secret_label(template, self.m));
                value = format!("Basic {encoded}");
            }
            out.push((name.clone(), value));
        }
        Ok(out)
    }

    fn step_request(&self, step: &Step, label: &str) -> Result<Request, FetchError> {
        self.step_request_with(step, label, None)
    }

    /// The step's `data` with every string leaf rendered.
    fn rendered_data(&self, step: &Step, label: &str) -> Result<Option<Value>, FetchError> {
        step.data.as_ref().map(|data| self.render_body(data, label, "data")).transpose()
    }

    fn render_body(&self, data: &Value, label: &str, what: &str) -> Result<Value, FetchError> {
        let rendered = if self.typed {
            self.renderer.render_typed(data, &self.ctx)
        } else {
            self.renderer.render_value(data, &self.ctx)
        };
        rendered.map_err(|e| template_error(e, label, what))
    }

    /// `step` as a request; `headers`, when given, are the header templates
    /// instead of the step's or the manifest's.
    fn step_request_with(
        &self,
        step: &Step,
        label: &str,
        headers: Option<&[(String, String)]>,
    ) -> Result<Request, FetchError> {
        let url = self.render(&step.url, label, "url")?;
        let headers = match headers {
            Some(own) => self.render_headers(own, label)?,
            None => self.headers_for(step.headers.as_deref(), label)?,
        };
        let body = match self.rendered_data(step, label)? {
            None => None,
            Some(rendered) => {
                let form = step.cast_data_to_json
                    && headers.iter().any(|(name, value)| {
                        name.eq_ignore_ascii_case("content-type")
                            && value.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded")
                    });
                match (form, &rendered) {
                    (true, Value::Object(fields)) => Some(form_body(fields).into_bytes()),
                    _ => Some(
                        serde_json::to_vec(&rendered)
                            .map_err(|e| FetchError::Data { label: label.to_string(), reason: e.to_string() })?,
                    ),
                }
            }
        };
        Ok(Request {
            label: label.to_string(),
            method: step.method.clone(),
            url,
            headers,
            body,
            allowed: step.status_code.clone(),
        })
    }

    /// Sends a step, repeating it while `polling` allows until `continue_if` holds.
    async fn send_step(&mut self, step: &Step, req: &Request) -> Result<(Response, Value), FetchError> {
        let amount = step.polling.map_or(1, |p| p.amount);
        let mut n = 0;
        loop {
            n += 1;
            let resp = self.send(req).await?;
            let value = self.parse(&resp, req)?;
            let Some(cond) = &step.continue_if else { return Ok((resp, value)) };
            let got = cond.notation.select(&value).first().and_then(|v| text(v, "").ok().flatten());
            if got.as_deref() == Some(cond.value.as_str()) {
                return Ok((resp, value));
            }
            if n >= amount {
                return Err(FetchError::ContinueIf {
                    request: req.describe(),
                    polls: amount,
                    path: cond.notation_text.clone(),
                    got,
                    expected: cond.value.clone(),
                });
            }
            if let Some(p) = step.polling {
                tokio::time::sleep(p.interval).await;
            }
        }
    }

    fn parse(&self, resp: &Response, req: &Request) -> Result<Value, FetchError> {
        if resp.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&resp.body).map_err(|e| self.not_json(&e, resp, req))
    }

    fn not_json(&self, e: &serde_json::Error, resp: &Response, req: &Request) -> FetchError {
        FetchError::NotJson { request: req.describe(), reason: json_reason(e), excerpt: excerpt(&resp.body) }
    }

    /// Follows every page of the last step; each page is read on the reader's
    /// thread while the next is asked for. The first failure in page order wins.
    async fn pages(&mut self, last: usize, max_pages: u32, progress: Progress<'_>) -> Result<Fetched, FetchError> {
        let mut reader = Reader::start(self.m);
        let walked = self.walk_pages(&mut reader, last, max_pages, progress).await;
        // The reader's error is about a page handed over before whatever stopped the walk.
        let (records, first, read_ms) = reader.finish().await?;
        Ok(Fetched { records, pages: walked?, first, read_ms })
    }

    async fn walk_pages(
        &mut self,
        reader: &mut Reader,
        last: usize,
        max_pages: u32,
        progress: Progress<'_>,
    ) -> Result<u32, FetchError> {
        let m = self.m;
        let step = &m.execute[last];
        let mut pager = Pager::new(self, max_pages);
        let mut req = self.step_request(step, &format!("step {last}"))?;
        let projection = Projection::new(self.m).map(Arc::new);
        let (mut resp, mut parsed) = self.first_page(step, &req, projection.is_none()).await?;
        let mut records = 0usize;
        loop {
            let page_no = pager.pages + 1;
            let page = self.see_page(parsed.take(), projection.as_ref(), &mut resp, &req, page_no)?;
            pager.pages = page_no;
            let Some(n_items) = page.items else { break };
            if let Some(handed) = page.hand
                && !reader.hand(handed).await
            {
                // The reader stopped on an earlier page; `pages` reports why.
                break;
            }
            records += n_items;
            progress(page_no, records);
            let Some(next) = pager.next_request(self, step, n_items, page.next, &resp)? else { break };
            req = next;
            resp = self.send(&req).await?;
        }
        Ok(pager.pages)
    }

    /// Sends the last step. Its page is parsed whole only when something needs
    /// it whole: `continue_if`, templates that read it through `responses`, or
    /// a manifest the projection cannot read.
    async fn first_page(
        &mut self,
        step: &Step,
        req: &Request,
        whole: bool,
    ) -> Result<(Response, Option<Value>), FetchError> {
        let keep_first =
            matches!(self.m.pagination, Pagination::Token { .. } | Pagination::Numbered { next_page: Some(_), .. });
        if !(step.continue_if.is_some() || keep_first || whole) {
            return Ok((self.send(req).await?, None));
        }
        let (resp, page) = self.send_step(step, req).await?;
        if keep_first {
            self.push_response(page.clone());
        }
        Ok((resp, Some(page)))
    }

    /// What a page holds, from the page parsed already, a skim by
    /// `projection`, or a parse of its body.
    fn see_page(
        &self,
        parsed: Option<Value>,
        projection: Option<&Arc<Projection>>,
        resp: &mut Response,
        req: &Request,
        page_no: u32,
    ) -> Result<PageSeen, FetchError> {
        match (parsed, projection) {
            (Some(page), _) => self.take_page(page, resp, req, page_no),
            (None, Some(p)) if !resp.body.iter().all(u8::is_ascii_whitespace) => self.skim_page(p, resp, req, page_no),
            (None, _) => {
                let page = self.parse(resp, req)?;
                self.take_page(page, resp, req, page_no)
            }
        }
    }

    /// A parsed page's records, to hand to the reader.
    fn take_page(&self, page: Value, resp: &Response, req: &Request, page_no: u32) -> Result<PageSeen, FetchError> {
        let next = self.next_hint(&page, resp);
        Ok(match self.page_items(page, resp, req, page_no)? {
            Some(items) => PageSeen { items: Some(items.len()), next, hand: Some(reader::Page::Items(items)) },
            None => PageSeen { items: None, next, hand: None },
        })
    }

    /// What a page read by `projection` holds, from a skim; its body goes to the reader.
    fn skim_page(
        &self,
        projection: &Arc<Projection>,
        resp: &mut Response,
        req: &Request,
        page_no: u32,
    ) -> Result<PageSeen, FetchError> {
        let skim = projection.skim(&resp.body, self.m).map_err(|e| self.not_json(&e, resp, req))?;
        let next = match &self.m.pagination {
            Pagination::LinkNext => link_next(resp),
            _ => skim.next.as_ref().and_then(|v| text(v, "").ok().flatten()),
        };
        let what = format!("{} ({} {})", req.label, req.method, req.url);
        match skim.found {
            Found::List(n) => {
                let body = std::mem::take(&mut resp.body);
                let projection = projection.clone();
                Ok(PageSeen { items: Some(n), next, hand: Some(reader::Page::Body { body, projection, what }) })
            }
            Found::Missing if page_no > 1 => Ok(PageSeen { items: None, next, hand: None }),
            Found::Missing => Err(self.data_from_error(req, resp, "missing")),
            Found::Other(kind) => Err(self.data_from_error(req, resp, &format!("{kind}, not a list"))),
        }
    }

    /// What the page says about the next one (a URL or a token), before the page is consumed.
    fn next_hint(&self, page: &Value, resp: &Response) -> Option<String> {
        let from = |path: &FieldPath| path.select(page).first().and_then(|v| text(v, "").ok().flatten());
        match &self.m.pagination {
            Pagination::NextUrl(path) => from(path),
            Pagination::Token { from: path, .. } => from(path),
            Pagination::LinkNext => link_next(resp),
            Pagination::None | Pagination::Numbered { .. } => None,
        }
    }

    fn page_items(
        &self,
        page: Value,
        resp: &Response,
        req: &Request,
        page_no: u32,
    ) -> Result<Option<Vec<Value>>, FetchError> {
        match self.m.data_from.take(page) {
            Some(Value::Array(items)) => Ok(Some(items)),
            None if page_no > 1 => Ok(None),
            None => Err(self.data_from_error(req, resp, "missing")),
            Some(v) => Err(self.data_from_error(req, resp, &format!("{}, not a list", kind(&v)))),
        }
    }

    /// `data_from` found nothing, or not a list: the error names the
    /// answer's top-level keys and the one `data_from` most likely meant (a
    /// long first key, like BambooHR's `fields`, fills any excerpt), or
    /// shows the start of an answer that is not an object
    /// (`{"ok": false, "error": "not_authed"}` is one, and says so itself).
    fn data_from_error(&self, req: &Request, resp: &Response, found: &str) -> FetchError {
        let path = self.m.data_from.to_string();
        let answer = match serde_json::from_slice::<Value>(&resp.body) {
            Ok(Value::Object(obj)) if !obj.is_empty() => top_level_keys(&obj, &path),
            _ => None,
        }
        .unwrap_or_else(|| format!("which starts: {}", excerpt(&resp.body)));
        FetchError::DataFrom { request: req.describe(), path, found: found.to_string(), answer }
    }

    fn get_request(&self, url: String, label: &str) -> Result<Request, FetchError> {
        let own =
            if self.m.headers.is_empty() { self.m.execute.last().and_then(|s| s.headers.as_deref()) } else { None };
        Ok(Request {
            label: label.to_string(),
            method: reqwest::Method::GET,
            url,
            headers: self.headers_for(own, label)?,
            body: None,
            allowed: Vec::new(),
        })
    }
}

/// Renders a push's requests, one user at a time: the manifest's headers
/// (a Basic credential encoded as for a fetch), its form values and token,
/// `user` and `target` set per request; a body leaf that is exactly one
/// `{{ user.x }}` keeps the field's JSON type.
pub struct Composer<'a> {
    fetch: Fetch<'a>,
}

impl<'a> Composer<'a> {
    /// `client` only lends its redactor (for an encoded Basic credential).
    pub fn new(m: &'a Manifest, client: &'a mut Client, values: Map<String, Value>) -> Self {
        let mut fetch = Fetch::new(m, client, values, None);
        fetch.typed = true;
        Composer { fetch }
    }

    /// Sets a template value (`user`, `target`).
    pub fn set(&mut self, name: &str, value: Value) {
        self.fetch.set(name, value);
    }

    pub fn request(&self, step: &Step, label: &str) -> Result<Request, FetchError> {
        self.fetch.step_request(step, label)
    }

    /// A bulk record: `template` with every leaf rendered (typed).
    pub fn record(&self, template: &Value, label: &str) -> Result<Value, FetchError> {
        self.fetch.render_body(template, label, "record")
    }
}

/// `application/x-www-form-urlencoded` of an object's top-level keys: text as
/// it is, null as empty, anything else as its JSON text.
fn form_body(fields: &Map<String, Value>) -> String {
    let mut url = reqwest::Url::parse("http://form.invalid/").expect("a constant URL parses");
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in fields {
            match v {
                Value::String(s) => pairs.append_pair(k, s),
                Value::Null => pairs.append_pair(k, ""),
                other => pairs.append_pair(k, &other.to_string()),
            };
        }
    }
    url.query().unwrap_or_default().to_string()
}

/// Why a body is not JSON rosterd reads, in the same words on every path.
pub(super) fn json_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.starts_with("recursion limit exceeded") { project::TOO_DEEP.to_string() } else { text }
}

fn template_error(e: TemplateError, label: &str, what: &str) -> FetchError {
    let reason = match e {
        TemplateError::Undefined(name) => format!("{{{{ {name} }}}} is not defined in this run"),
        TemplateError::Syntax(reason) => reason,
    };
    FetchError::Template { label: label.to_string(), what: what.to_string(), reason }
}

/// `***KEY***` for a Basic credential built from the secret ids in `template`.
fn secret_label(template: &str, m: &Manifest) -> String {
    let ids: Vec<String> = crate::template::names(template)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| m.form.iter().any(|f| f.id == *n && f.secret))
        .collect();
    if ids.is_empty() { "***Authorization***".to_string() } else { format!("***{}***", ids.join("+")) }
}

/// The `rel="next"` target of an RFC 8288 `Link` header.
fn link_next(resp: &Response) -> Option<String> {
    for value in resp.headers.get_all(reqwest::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim();
            let is_next = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=")
                    .is_some_and(|r| r.trim_matches('"').split_whitespace().any(|r| r.eq_ignore_ascii_case("next")))
            });
            if is_next && target.starts_with('<') && target.ends_with('>') {
                return Some(target[1..target.len() - 1].to_string());
            }
        }
    }
    None
}

/// "whose top-level keys are a, b, c; did you mean \"c\"?": an object's
/// keys (at most 12 named), and the list among them closest to `wanted`
/// (the first segment of `data_from`). `None` when no key holds a list (an
/// error answer such as `{"ok": false, "error": "not_authed"}` says more
/// itself) or when the key is there (the list is below it).
fn top_level_keys(obj: &Map<String, Value>, wanted: &str) -> Option<String> {
    let wanted = wanted.trim_start_matches("$.").split(['.', '[']).next().unwrap_or_default();
    if !wanted.is_empty() && obj.contains_key(wanted) {
        return None;
    }
    let lower = wanted.to_ascii_lowercase();
    let closest = obj
        .iter()
        .filter(|(_, v)| v.is_array())
        .map(|(k, _)| k.as_str())
        .min_by_key(|k| (strsim::damerau_levenshtein(&lower, &k.to_ascii_lowercase()), k.len()))?;
    let mut names: Vec<&str> = obj.keys().take(12).map(String::as_str).collect();
    if obj.len() > 12 {
        names.push("...");
    }
    Some(format!("whose top-level keys are {}; did you mean \"{closest}\"?", names.join(", ")))
}
