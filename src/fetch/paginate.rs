//! The next page, for each way a manifest pages: none, a next-page URL in
//! the body, a `Link: rel=next` header, a token with a URL template, or
//! numbered pages (`OFFSET`, `LIMIT`, `PAGE`). Also the limits every kind
//! shares: `amount_pages_to_fetch`, `[http] max_pages`, and a source that
//! sends a page it sent before.

use std::collections::HashSet;

use serde_json::Value;

use super::{Fetch, FetchError, Request, Response};
use crate::manifest::{Pagination, Step, origin};

/// Where a walk through the pages stands.
pub(super) struct Pager {
    /// Pages seen so far.
    pub pages: u32,
    max_pages: u32,
    /// Records skipped so far (numbered pages).
    offset: u64,
    /// Next-page URLs or tokens already followed.
    seen: HashSet<String>,
}

impl Pager {
    /// Starts a walk; numbered pages set their template values for the first page.
    pub fn new(fetch: &mut Fetch<'_>, max_pages: u32) -> Pager {
        if let Pagination::Numbered { page_size, .. } = &fetch.m.pagination {
            set_paging(fetch, 0, *page_size, 1);
        }
        Pager { pages: 0, max_pages, offset: 0, seen: HashSet::new() }
    }

    /// The request for the page after the one just seen (`n_items` records,
    /// the page's next-page hint), or `None` when that was the last.
    pub fn next_request(
        &mut self,
        fetch: &mut Fetch<'_>,
        step: &Step,
        n_items: usize,
        hint: Option<String>,
        resp: &Response,
    ) -> Result<Option<Request>, FetchError> {
        let m = fetch.m;
        let page_no = self.pages;
        if n_items == 0 && !matches!(m.pagination, Pagination::None) {
            return Ok(None);
        }
        let label = format!("page {}", page_no + 1);
        let next = match (&m.pagination, hint) {
            (Pagination::None, _) => return Ok(None),
            (Pagination::Numbered { page_size, next_page }, _) => {
                if (n_items as u64) < u64::from(*page_size) {
                    return Ok(None);
                }
                self.offset += u64::from(*page_size);
                set_paging(fetch, self.offset, *page_size, page_no + 1);
                match next_page {
                    Some(template) => fetch.get_request(fetch.render(template, &label, "next_page")?, &label)?,
                    None => fetch.step_request(step, &label)?,
                }
            }
            (Pagination::Token { next_page, .. }, Some(token)) => {
                if !self.seen.insert(format!("token:{token}")) {
                    return Err(FetchError::Loop { page: page_no, what: "token" });
                }
                fetch.set("NEXT_PAGE_TOKEN", Value::String(token));
                fetch.get_request(fetch.render(next_page, &label, "next_page")?, &label)?
            }
            (_, Some(link)) => {
                let url = resp.url.join(&link).map_err(|e| FetchError::BadLink {
                    page: page_no,
                    link: link.clone(),
                    reason: e.to_string(),
                })?;
                let (from, to) = (origin(&resp.url), origin(&url));
                if from != to && !m.allowed_origins.contains(&to) {
                    return Err(FetchError::Origin { page: page_no, from, to });
                }
                fetch.get_request(url.to_string(), &label)?
            }
            (_, None) => return Ok(None),
        };
        if m.amount_pages_to_fetch.is_some_and(|cap| page_no >= cap) {
            return Ok(None);
        }
        if page_no >= self.max_pages {
            return Err(FetchError::TooManyPages(self.max_pages));
        }
        if !matches!(m.pagination, Pagination::Token { .. }) && !self.seen.insert(next.url.clone()) {
            return Err(FetchError::Loop { page: page_no, what: "URL" });
        }
        Ok(Some(next))
    }
}

fn set_paging(fetch: &mut Fetch<'_>, offset: u64, size: u32, page: u32) {
    fetch.set("OFFSET", Value::from(offset));
    fetch.set("LIMIT", Value::from(size));
    fetch.set("PAGE", Value::from(page));
}
