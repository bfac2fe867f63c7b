//! The `oauth` block of a manifest: the token request (`access_token`),
//! `refresh`, `authenticate_url` for the authorization-code flow (without it,
//! client credentials) and `without_code`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Checker, OAUTH_KEYS, Scope};
use crate::manifest::OAuth;
use crate::problem::kind;

impl Checker<'_> {
    /// The `oauth` block: `access_token` required, `authenticate_url` for the
    /// authorization-code flow (without it: client credentials).
    pub(super) fn oauth_block(&mut self, v: &Value, ids: &BTreeSet<String>) -> Option<OAuth> {
        let obj = self.object(v, "/oauth")?;
        self.unknown_keys(obj, OAUTH_KEYS, "/oauth");
        let scope = Scope {
            ids,
            responses_below: 0,
            next_page_token: false,
            paging: false,
            oauth: true,
            redirect_url: true,
            user: false,
            target: false,
        };
        let authenticate_url = match obj.get("authenticate_url") {
            None | Some(Value::Null) => None,
            Some(v) => self.string(v, "/oauth/authenticate_url").map(str::to_string),
        };
        if let Some(url) = &authenticate_url {
            self.template(url, "/oauth/authenticate_url", &scope);
        }
        let access_token = match obj.get("access_token") {
            Some(v) => self.step(v, "/oauth/access_token", &scope),
            None => {
                self.problem(
                    "/oauth/access_token",
                    "required: the request that gets a token, e.g. {\"url\": \"https://oauth2.googleapis.com/token\",                      \"method\": \"POST\", \"data\": {...}}",
                );
                None
            }
        };
        let refresh = obj.get("refresh").and_then(|v| self.step(v, "/oauth/refresh", &scope));
        let without_code = match obj.get("without_code") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.problem("/oauth/without_code", format!("expected true or false, found {}", kind(other)));
                false
            }
        };
        if authenticate_url.is_none() {
            self.notes.push(
                "/oauth: no authenticate_url, so client credentials: rosterd requests a token itself before a run"
                    .into(),
            );
        }
        Some(OAuth { authenticate_url, access_token: access_token?, refresh, without_code })
    }
}
