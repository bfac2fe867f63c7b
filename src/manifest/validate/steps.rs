//! The request half of a manifest: each `execute` step (URL, method,
//! headers, body, status codes, `continue_if`, `polling`), the pagination
//! keys, and every template, checked against the names its place may use.

use serde_json::Value;

use super::*;

impl Checker<'_> {
    pub(super) fn step(&mut self, v: &Value, at: &str, scope: &Scope) -> Option<Step> {
        let obj = self.object(v, at)?;
        self.unknown_keys(obj, STEP_KEYS, at);
        self.builder_keys(obj, at);
        let url = match obj.get("url") {
            None => {
                self.problem(&format!("{at}/url"), "required: the address to request");
                None
            }
            Some(v) => self.string(v, &format!("{at}/url")).map(str::to_string),
        };
        if let Some(url) = &url {
            self.template(url, &format!("{at}/url"), scope);
        }
        let method = match obj.get("method") {
            None => Some(reqwest::Method::GET),
            Some(v) => self.string(v, &format!("{at}/method")).and_then(|m| {
                let upper = m.trim().to_ascii_uppercase();
                if METHODS.contains(&upper.as_str()) {
                    reqwest::Method::from_bytes(upper.as_bytes()).ok()
                } else {
                    self.problem(
                        &format!("{at}/method"),
                        format!("unknown method \"{m}\"; use one of {}", METHODS.join(", ")),
                    );
                    None
                }
            }),
        };
        let data = obj.get("data").cloned();
        if let Some(data) = &data {
            self.data_templates(data, &format!("{at}/data"), scope);
        }
        let headers = match obj.get("headers") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let h = self.headers(v, &format!("{at}/headers"), scope);
                (!h.is_empty()).then_some(h)
            }
        };
        let status_code = match obj.get("status_code") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => self.status_codes(v, &format!("{at}/status_code")),
        };
        let continue_if = obj.get("continue_if").and_then(|v| self.continue_if(v, &format!("{at}/continue_if")));
        let polling = obj.get("polling").and_then(|v| self.polling(v, &format!("{at}/polling")));
        if polling.is_some() && continue_if.is_none() {
            self.problem(
                &format!("{at}/polling"),
                "polling repeats the request until continue_if is met; add continue_if",
            );
        }
        let cast_data_to_json = obj.get("cast_data_to_json").and_then(Value::as_bool).unwrap_or(self.cast_default);
        Some(Step { url: url?, method: method?, data, headers, status_code, continue_if, polling, cast_data_to_json })
    }

    pub(super) fn headers(&mut self, v: &Value, at: &str, scope: &Scope) -> Vec<(String, String)> {
        let Some(obj) = self.object(v, at) else { return Vec::new() };
        let mut out = Vec::new();
        for (name, value) in obj {
            let here = format!("{at}/{}", pointer_token(name));
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.problem(&here, format!("\"{name}\" is not a valid header name"));
                continue;
            }
            if let Some(text) = self.string(value, &here) {
                self.template(text, &here, scope);
                out.push((name.clone(), text.to_string()));
            }
        }
        out
    }

    fn status_codes(&mut self, v: &Value, at: &str) -> Vec<u16> {
        let Value::Array(items) = v else {
            self.problem(at, format!("expected a list of status codes such as [\"200\", 201], found {}", kind(v)));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let code = match item {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            };
            match code {
                Some(c @ 100..=599) => out.push(c as u16),
                _ => self.problem(&format!("{at}/{i}"), format!("{item} is not an HTTP status code (100 to 599)")),
            }
        }
        out
    }

    fn continue_if(&mut self, v: &Value, at: &str) -> Option<ContinueIf> {
        let obj = self.object(v, at)?;
        self.unknown_keys(obj, &["response_notation", "value"], at);
        let notation_text = match obj.get("response_notation") {
            Some(v) => self.string(v, &format!("{at}/response_notation"))?.to_string(),
            None => {
                self.problem(&format!("{at}/response_notation"), "required: the dot path of the value to check");
                return None;
            }
        };
        let notation = self.path(&Value::String(notation_text.clone()), &format!("{at}/response_notation"))?;
        let value = match obj.get("value") {
            Some(Value::String(s)) => s.clone(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            Some(other) => {
                self.problem(
                    &format!("{at}/value"),
                    format!("expected a string, number or boolean, found {}", kind(other)),
                );
                return None;
            }
            None => {
                self.problem(&format!("{at}/value"), "required: the value the response must hold");
                return None;
            }
        };
        Some(ContinueIf { notation, notation_text, value })
    }

    fn polling(&mut self, v: &Value, at: &str) -> Option<Polling> {
        let obj = self.object(v, at)?;
        self.unknown_keys(obj, &["interval", "amount"], at);
        let interval = match obj.get("interval") {
            Some(Value::Number(n)) if n.as_f64().is_some_and(|s| (0.0..=3600.0).contains(&s)) => {
                Duration::from_secs_f64(n.as_f64().unwrap_or(0.0))
            }
            other => {
                self.problem(
                    &format!("{at}/interval"),
                    format!(
                        "expected seconds from 0 to 3600, found {}",
                        other.map_or("nothing".into(), Value::to_string)
                    ),
                );
                return None;
            }
        };
        let amount = match obj.get("amount") {
            Some(v) => self.positive(v, &format!("{at}/amount"))?,
            None => {
                self.problem(&format!("{at}/amount"), "required: how many requests to make at most");
                return None;
            }
        };
        Some(Polling { interval, amount })
    }

    pub(super) fn data_templates(&mut self, v: &Value, at: &str, scope: &Scope) {
        match v {
            Value::String(s) => self.template(s, at, scope),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.data_templates(item, &format!("{at}/{i}"), scope);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    self.data_templates(item, &format!("{at}/{}", pointer_token(k)), scope);
                }
            }
            _ => {}
        }
    }

    pub(super) fn template(&mut self, text: &str, at: &str, scope: &Scope) {
        let names = match crate::template::names(text) {
            Ok(n) => n,
            Err(reason) => return self.problem(at, reason),
        };
        for name in names {
            if let Some(reason) = scope.refuse(&name) {
                self.problem(at, reason);
            }
        }
    }
}

/// Why `user.<x>` names no user field, or `None` when it does.
fn user_name(name: &str) -> Option<String> {
    let rest = name.strip_prefix("user.").unwrap_or("");
    if let Some(extra) = rest.strip_prefix("extra.") {
        return (extra.is_empty() || extra.contains('.'))
            .then(|| format!("{{{{ {name} }}}}: write user.extra.<name>, one extra field"));
    }
    if Field::ALL.iter().any(|f| f.column() == rest) {
        return None;
    }
    let known: Vec<&str> = Field::ALL.iter().map(|f| f.column()).collect();
    let hint = closest(rest, &known).map_or(String::new(), |near| format!("; did you mean {{{{ user.{near} }}}}?"));
    Some(format!("{{{{ {name} }}}} is not a user field{hint} (fields: {}, extra.<name>)", known.join(", ")))
}

impl Scope<'_> {
    /// Why `name` cannot be used here, or `None` when it can.
    fn refuse(&self, name: &str) -> Option<String> {
        let head = name.split('.').next().unwrap_or(name);
        if self.ids.contains(name) {
            return None;
        }
        match head {
            "responses" => {
                let n = name.split('.').nth(1).and_then(|n| n.parse::<usize>().ok());
                match n {
                    Some(n) if n < self.responses_below => None,
                    Some(n) => Some(format!(
                        "{{{{ {name} }}}} uses the response of request {n}, which has not run yet here; \
                         only responses.0 to responses.{} can be used",
                        self.responses_below as i64 - 1
                    ))
                    .map(|s| {
                        if self.responses_below == 0 {
                            format!("{{{{ {name} }}}}: no earlier response exists here")
                        } else {
                            s
                        }
                    }),
                    None => {
                        Some(format!("{{{{ {name} }}}}: write responses.N.path, N being an earlier request's index"))
                    }
                }
            }
            "NEXT_PAGE_TOKEN" if self.next_page_token => None,
            "NEXT_PAGE_TOKEN" => {
                Some("{{ NEXT_PAGE_TOKEN }} can only be used in next_page, with next_page_token_from".into())
            }
            "OFFSET" | "LIMIT" | "PAGE" if self.paging => None,
            "OFFSET" | "LIMIT" | "PAGE" => Some(format!(
                "{{{{ {name} }}}} needs page_size and can only be used in the last request's url or in next_page"
            )),
            "oauth" if self.oauth && name.contains('.') => None,
            "oauth" if self.oauth => {
                Some(format!("{{{{ {name} }}}}: name a field of the token response, e.g. {{{{ oauth.access_token }}}}"))
            }
            "oauth" => Some(format!(
                "{{{{ {name} }}}} needs an \"oauth\" block that says how to get the token; add one, or use a value \
                 from initial_data_form"
            )),
            "user" if self.user => user_name(name),
            "user" => Some(format!(
                "{{{{ {name} }}}} can only be used in a push request (push.create, update, remove, bulk.record)"
            )),
            "target" if self.target && name == "target.id" => None,
            "target" if self.target => {
                Some(format!("{{{{ {name} }}}}: the target record offers only {{{{ target.id }}}}"))
            }
            "target" => Some(format!("{{{{ {name} }}}} can only be used in push.update and push.remove")),
            "redirect_url" if self.redirect_url => None,
            "redirect_url" => Some("{{ redirect_url }} can only be used in the oauth block's requests".into()),
            _ => {
                let known: Vec<&str> = self.ids.iter().map(String::as_str).collect();
                let hint = match closest(name, &known) {
                    Some(near) => format!("; did you mean {{{{ {near} }}}}?"),
                    None if known.is_empty() => "; add it to initial_data_form".to_string(),
                    None => format!("; initial_data_form defines {}", known.join(", ")),
                };
                Some(format!("{{{{ {name} }}}} is not defined{hint}"))
            }
        }
    }
}
