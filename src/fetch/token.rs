//! OAuth token requests (`oauth.access_token`, `oauth.refresh`): rendered
//! like an `execute` step but with their own headers only (the manifest's
//! headers carry the token they are getting), a body without a Content-Type
//! sent as a form (RFC 6749), `code=` appended for the authorization-code
//! exchange, and the answer read as a token response. A fetch renews a
//! token once when a source answers 401 through the `Renew` port, which
//! `oauth` implements (the renewal's request is sent from here).

use serde_json::{Map, Value};

use futures_util::future::BoxFuture;

use super::{Fetch, FetchError, Request, Response, excerpt};
use crate::manifest::{Manifest, Step};

/// A token response and when it came (unix seconds).
#[derive(Clone)]
pub struct Token {
    pub response: Value,
    pub received: i64,
}

/// Masked: a token's values are secrets, so `{:?}` shows only its field names.
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("response", &crate::redact::Masked(&self.response))
            .field("received", &self.received)
            .finish()
    }
}

impl Token {
    pub fn new(response: Value) -> Token {
        Token { response, received: chrono::Utc::now().timestamp() }
    }

    /// When it expires (unix seconds), from `expires_in`; `None`: it does not say.
    pub fn expires_at(&self) -> Option<i64> {
        let secs = match self.response.get("expires_in")? {
            Value::Number(n) => n.as_f64()?,
            Value::String(s) => s.trim().parse::<f64>().ok()?,
            _ => return None,
        };
        Some(self.received + secs.max(0.0) as i64)
    }
}

/// What a fetch calls when a source answers 401: the port `oauth`
/// implements. It gets a new token (its own request, through `client`),
/// marks its values secret, keeps it, and answers with the new token
/// response; the fetch then retries the refused request once with it.
pub trait Renew: Send {
    /// Whether the manifest has a way to renew (a `refresh` request, or client credentials).
    fn can_renew(&self) -> bool;
    /// A new token response in place of `old`, the one the source refused.
    fn renew<'a>(
        &'a mut self,
        client: &'a mut super::Client,
        old: &'a Value,
    ) -> BoxFuture<'a, Result<Value, FetchError>>;
}

/// A renewal's answer merged into the stored one: its fields win, and a
/// field it leaves out (a `refresh_token` not sent again) is kept.
pub fn merge(old: &Value, new: Value) -> Value {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut out = old.clone();
            out.extend(new);
            Value::Object(out)
        }
        (_, new) => new,
    }
}

/// Sends one of `m`'s `oauth` requests with `values` (form values,
/// `redirect_url`, `oauth` when a token is stored) and returns the token
/// response. `code` is appended to the URL as `code=` (the exchange).
pub async fn token_request(
    m: &Manifest,
    step: &Step,
    values: Map<String, Value>,
    code: Option<&str>,
    client: &mut super::Client,
    label: &str,
) -> Result<Value, FetchError> {
    let mut fetch = Fetch::new(m, client, values, None);
    fetch.token_request(step, code, label).await
}

impl Fetch<'_> {
    pub(super) async fn token_request(
        &mut self,
        step: &Step,
        code: Option<&str>,
        label: &str,
    ) -> Result<Value, FetchError> {
        let mut req = self.oauth_request(step, label)?;
        if let Some(code) = code {
            let encoded: String = percent_encoding::utf8_percent_encode(code, QUERY_VALUE).to_string();
            let sep = if req.url.contains('?') { '&' } else { '?' };
            req.url = format!("{}{sep}code={encoded}", req.url);
        }
        // Sent as is: a token request is never itself renewed, and its
        // `continue_if` / `polling` (ChiefOnboarding has none there) are not used.
        let resp = self.client.send(&req).await?;
        token_response(&resp, &req)
    }

    /// A step of the `oauth` block as a request: its own headers only, and a
    /// body without a Content-Type sent as a form.
    fn oauth_request(&self, step: &Step, label: &str) -> Result<Request, FetchError> {
        let mut req = self.step_request_with(step, label, Some(step.headers.as_deref().unwrap_or(&[])))?;
        let typed = req.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if let (false, Some(Value::Object(fields))) = (typed, self.rendered_data(step, label)?) {
            req.body = Some(super::form_body(&fields).into_bytes());
            req.headers.push(("Content-Type".into(), "application/x-www-form-urlencoded".into()));
        }
        Ok(req)
    }

    /// Whether a 401 from a source can be answered by renewing the token.
    pub(super) fn can_renew(&self) -> bool {
        self.renew.as_ref().is_some_and(|r| r.can_renew())
    }

    /// Has the token renewed once (through the `Renew` port) and returns
    /// `req` with the old token's values replaced by the new ones.
    pub(super) async fn renew_for(&mut self, req: &Request) -> Result<Request, FetchError> {
        let old = self.ctx.get("oauth").cloned().unwrap_or(Value::Null);
        let Some(renew) = self.renew.as_deref_mut() else { return Ok(req.clone()) };
        let merged = renew.renew(self.client, &old).await?;
        tracing::info!("the source answered 401: renewed the OAuth token and retrying the request once");
        let retry = with_token(req, &old, &merged);
        self.set("oauth", merged);
        Ok(retry)
    }
}

/// `req` as rendered with token response `old`, with `new`'s values in
/// their place (URL, headers, body): a request sent again after a renewal.
pub fn with_token(req: &Request, old: &Value, new: &Value) -> Request {
    let mut retry = req.clone();
    for (field, old_value) in old.as_object().into_iter().flatten() {
        let (Some(old_value), Some(new_value)) = (old_value.as_str(), new.get(field).and_then(Value::as_str)) else {
            continue;
        };
        if old_value.is_empty() || old_value == new_value {
            continue;
        }
        retry.url = retry.url.replace(old_value, new_value);
        for (_, v) in &mut retry.headers {
            *v = v.replace(old_value, new_value);
        }
        if let Some(body) = retry.body.take() {
            retry.body = Some(match String::from_utf8(body) {
                Ok(text) => text.replace(old_value, new_value).into_bytes(),
                Err(e) => e.into_bytes(),
            });
        }
    }
    retry
}

/// The characters a query value keeps as they are (RFC 3986 unreserved).
const QUERY_VALUE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A token response: a JSON object, or a form (`access_token=...&scope=...`,
/// as some providers answer without `Accept: application/json`).
fn token_response(resp: &Response, req: &Request) -> Result<Value, FetchError> {
    let not_token = || FetchError::NotToken { request: req.describe(), excerpt: excerpt(&resp.body) };
    if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(&resp.body) {
        return Ok(Value::Object(obj));
    }
    let text = std::str::from_utf8(&resp.body).map_err(|_| not_token())?.trim();
    if text.is_empty() || text.starts_with(['{', '[', '<']) || !text.contains('=') {
        return Err(not_token());
    }
    let url = reqwest::Url::parse(&format!("http://form.invalid/?{text}")).map_err(|_| not_token())?;
    let obj: Map<String, Value> =
        url.query_pairs().map(|(k, v)| (k.into_owned(), Value::String(v.into_owned()))).collect();
    if obj.is_empty() { Err(not_token()) } else { Ok(Value::Object(obj)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_renewal_keeps_the_fields_it_does_not_send() {
        let old = json!({"access_token": "a1", "refresh_token": "r1", "expires_in": 3600});
        let merged = merge(&old, json!({"access_token": "a2", "expires_in": 60}));
        assert_eq!(merged, json!({"access_token": "a2", "refresh_token": "r1", "expires_in": 60}));
    }

    #[test]
    fn expiry_comes_from_expires_in() {
        let t = Token { response: json!({"expires_in": "3600"}), received: 1000 };
        assert_eq!(t.expires_at(), Some(4600));
        assert_eq!(Token { response: json!({"access_token": "x"}), received: 1000 }.expires_at(), None);
    }
}
