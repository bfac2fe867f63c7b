//! Every check a manifest must pass, reported all at once with file, JSON
//! pointer and a fix. Works on the parsed JSON (not serde structs) so each
//! problem points at the exact key. No I/O besides secret lookups via `Config`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{Action, ContinueIf, FieldPath, FormValue, Manifest, MatchOn, Pagination, Polling, Step, Target};
use crate::config::{Config, Limit, secret_env_name};
use crate::problem::{Problem, kind, pointer_token};
use crate::schedule::Schedule;

const TOP_KEYS: &[&str] = &[
    "execute",
    "headers",
    "action",
    "data_from",
    "data_structure",
    "schedule",
    "initial_data_form",
    "next_page_from",
    "next_page_token_from",
    "next_page",
    "amount_pages_to_fetch",
    "oauth",
    "page_size",
    "match_on",
    "max_deactivate",
    "auto_clear_email",
];
const STEP_KEYS: &[&str] = &["url", "method", "data", "headers", "status_code", "continue_if", "polling"];
const FORM_KEYS: &[&str] = &["id", "name", "description", "secret"];
const WEBHOOK_KEYS: &[&str] = &["form", "exists", "revoke", "extra_user_info", "post_execute_notification"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
const PAGING_NAMES: &[&str] = &["OFFSET", "LIMIT", "PAGE"];

/// Validates every manifest file given; returns the good ones and all problems.
pub fn validate_all(files: &[std::path::PathBuf], config: &Config) -> (Vec<Manifest>, Vec<Problem>) {
    let mut good = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        match super::load(file, config) {
            Ok(m) => good.push(m),
            Err(mut p) => problems.append(&mut p),
        }
    }
    (good, problems)
}

/// Parses and validates one manifest's text. `name` is the integration name (file stem).
pub fn parse(name: &str, file: &Path, text: &str, config: &Config) -> Result<Manifest, Vec<Problem>> {
    let root: Value = serde_json::from_str(text).map_err(|e| {
        let hint = if e.is_eof() { " (the file ends early: a bracket or quote is not closed)" } else { "" };
        let text = e.to_string();
        let cause = text.rfind(" at line ").map_or(text.as_str(), |i| &text[..i]);
        vec![Problem::new(file, "", format!("invalid JSON at line {}, column {}: {cause}{hint}", e.line(), e.column()))]
    })?;
    let mut check = Checker { file, problems: Vec::new() };
    let manifest = check.manifest(name, &root, config);
    match manifest {
        Some(m) if check.problems.is_empty() => Ok(m),
        _ => Err(check.problems),
    }
}

struct Checker<'a> {
    file: &'a Path,
    problems: Vec<Problem>,
}

/// The template names allowed in one string.
struct Scope<'a> {
    ids: &'a BTreeSet<String>,
    /// `responses.N` is allowed for N below this.
    responses_below: usize,
    next_page_token: bool,
    paging: bool,
}

/// The known name a typo most likely meant: a small edit distance, or one
/// name contained in the other (`COMPANY` for `COMPANY_ID`).
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (*k, strsim::damerau_levenshtein(&lower, &k.to_ascii_lowercase())))
        .filter(|(k, d)| {
            let kl = k.to_ascii_lowercase();
            *d <= 2.max(k.len() / 4) || (lower.len() >= 3 && (kl.contains(&lower) || lower.contains(&kl)))
        })
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| k)
}

impl Checker<'_> {
    fn problem(&mut self, pointer: &str, reason: impl Into<String>) {
        self.problems.push(Problem::new(self.file, pointer, reason));
    }

    fn unknown_keys(&mut self, obj: &Map<String, Value>, known: &[&str], at: &str) {
        for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
            let pointer = format!("{at}/{}", pointer_token(key));
            let reason = match closest(key, known) {
                Some(near) => format!("unknown key \"{key}\"; did you mean \"{near}\"?"),
                None => format!("unknown key \"{key}\"; known keys here: {}", known.join(", ")),
            };
            self.problem(&pointer, reason);
        }
    }

    fn string<'v>(&mut self, v: &'v Value, at: &str) -> Option<&'v str> {
        match v {
            Value::String(s) => Some(s),
            other => {
                self.problem(at, format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    fn object<'v>(&mut self, v: &'v Value, at: &str) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            other => {
                self.problem(at, format!("expected an object, found {}", kind(other)));
                None
            }
        }
    }

    fn positive(&mut self, v: &Value, at: &str) -> Option<u32> {
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if n >= 1 && n <= u64::from(u32::MAX) => Some(n as u32),
            _ => {
                self.problem(at, format!("expected a whole number of at least 1, found {v}"));
                None
            }
        }
    }

    fn manifest(&mut self, name: &str, root: &Value, config: &Config) -> Option<Manifest> {
        let Some(obj) = root.as_object() else {
            self.problem("", format!("a manifest is a JSON object, found {}", kind(root)));
            return None;
        };
        let webhook: Vec<&String> = obj.keys().filter(|k| WEBHOOK_KEYS.contains(&k.as_str())).collect();
        if !webhook.is_empty() {
            for key in webhook {
                self.problem(
                    &format!("/{key}"),
                    format!(
                        "not a sync-users manifest: \"{key}\" belongs to ChiefOnboarding's webhook integrations; \
                         rosterd runs sync-users manifests (execute, data_from, data_structure, action)"
                    ),
                );
            }
            return None;
        }
        if name == "import" {
            self.problem("", "the name \"import\" is reserved for users made by bulk import; rename the file");
        }
        if name.is_empty() {
            self.problem("", "a manifest needs a file name; it becomes the integration's name");
        }
        self.unknown_keys(obj, TOP_KEYS, "");
        if obj.contains_key("oauth") {
            self.problem("/oauth", "OAuth comes in a later release of rosterd; this manifest cannot run until then");
        }

        let form = self.form(name, obj.get("initial_data_form"), config);
        let ids: BTreeSet<String> = form.iter().map(|f| f.id.clone()).collect();

        let action = self.action(obj.get("action"));
        let page_size = obj.get("page_size").and_then(|v| self.positive(v, "/page_size"));
        let token_from = obj.get("next_page_token_from").and_then(|v| self.string(v, "/next_page_token_from"));

        let steps_json: &[Value] = match obj.get("execute") {
            None => {
                self.problem("/execute", "required: a list of requests, e.g. [{\"url\": \"https://...\"}]");
                &[]
            }
            Some(Value::Array(items)) if !items.is_empty() => items,
            Some(Value::Array(_)) => {
                self.problem("/execute", "needs at least one request");
                &[]
            }
            Some(other) => {
                self.problem("/execute", format!("expected a list of requests, found {}", kind(other)));
                &[]
            }
        };
        let n_steps = steps_json.len();
        let first_global = steps_json
            .iter()
            .position(|s| s.get("headers").and_then(Value::as_object).is_none_or(Map::is_empty))
            .unwrap_or(n_steps);
        let mut execute = Vec::with_capacity(n_steps);
        for (i, step) in steps_json.iter().enumerate() {
            let paging = page_size.is_some() && i + 1 == n_steps;
            let scope = Scope { ids: &ids, responses_below: i, next_page_token: false, paging };
            if let Some(step) = self.step(step, &format!("/execute/{i}"), &scope) {
                execute.push(step);
            }
        }

        let headers = match obj.get("headers") {
            None => Vec::new(),
            Some(v) => {
                let scope = Scope { ids: &ids, responses_below: first_global, next_page_token: false, paging: false };
                self.headers(v, "/headers", &scope)
            }
        };

        let data_from = match obj.get("data_from") {
            None | Some(Value::Null) => FieldPath::Dot(Vec::new()),
            Some(v) => self.path(v, "/data_from").unwrap_or(FieldPath::Dot(Vec::new())),
        };
        let data_structure = self.data_structure(obj.get("data_structure"));
        let schedule = match obj.get("schedule") {
            None | Some(Value::Null) => None,
            Some(v) => self.string(v, "/schedule").and_then(|s| match Schedule::parse(s) {
                Ok(s) => Some(s),
                Err(reason) => {
                    self.problem("/schedule", reason);
                    None
                }
            }),
        };

        let next_page = obj.get("next_page").and_then(|v| self.string(v, "/next_page")).map(str::to_string);
        if let Some(np) = &next_page {
            let scope = Scope {
                ids: &ids,
                responses_below: n_steps,
                next_page_token: token_from.is_some(),
                paging: page_size.is_some(),
            };
            self.template(np, "/next_page", &scope);
        }
        let pagination = self.pagination(obj, token_from, next_page, page_size, steps_json);
        let amount_pages_to_fetch =
            obj.get("amount_pages_to_fetch").and_then(|v| self.positive(v, "/amount_pages_to_fetch"));

        let (match_on, max_deactivate, auto_clear_email) = self.sync_keys(obj, action);
        if let Some(action) = action {
            self.required_targets(action, match_on, &data_structure);
        }

        let action = action?;
        (execute.len() == n_steps).then_some(())?;
        Some(Manifest {
            name: name.to_string(),
            file: self.file.to_path_buf(),
            execute,
            headers,
            action,
            data_from,
            data_structure,
            schedule,
            pagination,
            amount_pages_to_fetch,
            form,
            match_on,
            max_deactivate,
            auto_clear_email,
        })
    }

    fn action(&mut self, v: Option<&Value>) -> Option<Action> {
        let Some(v) = v else {
            self.problem("/action", "required: \"create\", \"update\" or \"sync\"");
            return None;
        };
        match self.string(v, "/action")? {
            "create" => Some(Action::Create),
            "update" => Some(Action::Update),
            "sync" => Some(Action::Sync),
            other => {
                self.problem("/action", format!("unknown action \"{other}\"; use \"create\", \"update\" or \"sync\""));
                None
            }
        }
    }

    fn form(&mut self, name: &str, v: Option<&Value>, config: &Config) -> Vec<FormValue> {
        let Some(v) = v else { return Vec::new() };
        let Value::Array(items) = v else {
            self.problem(
                "/initial_data_form",
                format!("expected a list of {{\"id\", \"name\"}} entries, found {}", kind(v)),
            );
            return Vec::new();
        };
        let mut out: Vec<FormValue> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("/initial_data_form/{i}");
            let Some(entry) = self.object(item, &at) else { continue };
            self.unknown_keys(entry, FORM_KEYS, &at);
            for key in ["name", "description"] {
                if let Some(v) = entry.get(key) {
                    self.string(v, &format!("{at}/{key}"));
                }
            }
            let secret = match entry.get("secret") {
                None => true,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    self.problem(&format!("{at}/secret"), format!("expected true or false, found {other}"));
                    true
                }
            };
            let id = match entry.get("id") {
                Some(v) => match self.string(v, &format!("{at}/id")) {
                    Some(id) if !id.trim().is_empty() => id.to_string(),
                    Some(_) => {
                        self.problem(&format!("{at}/id"), "an id cannot be empty");
                        continue;
                    }
                    None => continue,
                },
                None => {
                    self.problem(&format!("{at}/id"), "required: the name templates use, e.g. \"KEY\"");
                    continue;
                }
            };
            if out.iter().any(|f| f.id == id) {
                self.problem(&format!("{at}/id"), format!("\"{id}\" is listed twice"));
                continue;
            }
            let generated = entry.get("name").and_then(Value::as_str) == Some("generate");
            let value = if generated { None } else { config.secret(name, &id) };
            if !generated && value.is_none() {
                self.problem(
                    &format!("{at}/id"),
                    format!(
                        "no value for \"{id}\": add {id} = \"...\" under [secrets.{name}] in {}, set {}, \
                         or put it in $CREDENTIALS_DIRECTORY/{name}.{id}",
                        config.file.as_deref().map_or("rosterd.toml".into(), |p| p.display().to_string()),
                        secret_env_name(name, &id),
                    ),
                );
            }
            out.push(FormValue { id, secret, value });
        }
        out
    }

    fn step(&mut self, v: &Value, at: &str, scope: &Scope) -> Option<Step> {
        let obj = self.object(v, at)?;
        self.unknown_keys(obj, STEP_KEYS, at);
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
        Some(Step { url: url?, method: method?, data, headers, status_code, continue_if, polling })
    }

    fn headers(&mut self, v: &Value, at: &str, scope: &Scope) -> Vec<(String, String)> {
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

    fn path(&mut self, v: &Value, at: &str) -> Option<FieldPath> {
        let text = self.string(v, at)?;
        match FieldPath::parse(text) {
            Ok(p) => Some(p),
            Err(reason) => {
                self.problem(at, reason);
                None
            }
        }
    }

    fn data_structure(&mut self, v: Option<&Value>) -> Vec<(Target, FieldPath)> {
        let Some(v) = v else {
            self.problem(
                "/data_structure",
                "required: which record field fills which user field, e.g. {\"email\": \"workEmail\"}",
            );
            return Vec::new();
        };
        let Some(obj) = self.object(v, "/data_structure") else { return Vec::new() };
        let mut out: Vec<(Target, FieldPath)> = Vec::new();
        for (name, path) in obj {
            let at = format!("/data_structure/{}", pointer_token(name));
            let target = Target::from_name(name);
            if out.iter().any(|(t, _)| *t == target) {
                self.problem(
                    &at,
                    format!("\"{name}\" fills the same field as an earlier key (employee_id is external_id)"),
                );
                continue;
            }
            if let Some(p) = self.path(path, &at) {
                out.push((target, p));
            }
        }
        if obj.is_empty() {
            self.problem("/data_structure", "maps no field; add at least {\"email\": \"...\"}");
        }
        out
    }

    fn pagination(
        &mut self,
        obj: &Map<String, Value>,
        token_from: Option<&str>,
        next_page: Option<String>,
        page_size: Option<u32>,
        steps: &[Value],
    ) -> Pagination {
        let next_from = obj.get("next_page_from").and_then(|v| self.string(v, "/next_page_from"));
        let kinds = [next_from.is_some(), token_from.is_some(), page_size.is_some()];
        if kinds.iter().filter(|k| **k).count() > 1 {
            self.problem(
                "/next_page_from",
                "choose one way to page: next_page_from, next_page_token_from with next_page, or page_size",
            );
            return Pagination::None;
        }
        if let Some(from) = next_from {
            if from.trim() == "link:next" {
                return Pagination::LinkNext;
            }
            return self
                .path(&Value::String(from.to_string()), "/next_page_from")
                .map_or(Pagination::None, Pagination::NextUrl);
        }
        if let Some(from) = token_from {
            let Some(next_page) = next_page else {
                self.problem(
                    "/next_page",
                    "required with next_page_token_from: the next page's URL with {{ NEXT_PAGE_TOKEN }}",
                );
                return Pagination::None;
            };
            if !crate::template::names(&next_page).unwrap_or_default().iter().any(|n| n == "NEXT_PAGE_TOKEN") {
                self.problem("/next_page", "must use {{ NEXT_PAGE_TOKEN }}, or every page would be the same");
            }
            let Some(from) = self.path(&Value::String(from.to_string()), "/next_page_token_from") else {
                return Pagination::None;
            };
            return Pagination::Token { from, next_page };
        }
        if let Some(page_size) = page_size {
            let last_url = steps.last().and_then(|s| s.get("url")).and_then(Value::as_str).unwrap_or("");
            let uses = |t: &str| {
                crate::template::names(t).unwrap_or_default().iter().any(|n| PAGING_NAMES.contains(&n.as_str()))
            };
            if !uses(last_url) && !next_page.as_deref().is_some_and(uses) {
                self.problem(
                    "/page_size",
                    "page_size needs {{ OFFSET }}, {{ LIMIT }} or {{ PAGE }} in the last request's url or in next_page",
                );
            }
            return Pagination::Numbered { page_size, next_page };
        }
        if next_page.is_some() {
            self.problem("/next_page", "next_page is used with next_page_token_from or page_size; add one of them");
        }
        Pagination::None
    }

    fn sync_keys(&mut self, obj: &Map<String, Value>, action: Option<Action>) -> (MatchOn, Option<Limit>, bool) {
        let is_sync = action == Some(Action::Sync);
        for key in ["match_on", "max_deactivate", "auto_clear_email"] {
            if obj.contains_key(key) && action.is_some() && !is_sync {
                self.problem(
                    &format!("/{key}"),
                    format!("{key} is used only by action \"sync\"; remove it or change the action"),
                );
            }
        }
        let match_on = match obj.get("match_on") {
            None => MatchOn::Email,
            Some(v) => match self.string(v, "/match_on") {
                Some("email") => MatchOn::Email,
                Some("external_id" | "employee_id") => MatchOn::ExternalId,
                Some(other) => {
                    self.problem(
                        "/match_on",
                        format!("unknown match key \"{other}\"; use \"email\" or \"external_id\""),
                    );
                    MatchOn::Email
                }
                None => MatchOn::Email,
            },
        };
        let max_deactivate = obj.get("max_deactivate").and_then(|v| match Limit::parse(v) {
            Ok(l) => Some(l),
            Err(reason) => {
                self.problem("/max_deactivate", reason);
                None
            }
        });
        let auto_clear_email = match obj.get("auto_clear_email") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.problem("/auto_clear_email", format!("expected true or false, found {other}"));
                false
            }
        };
        (match_on, max_deactivate, auto_clear_email)
    }

    fn required_targets(&mut self, action: Action, match_on: MatchOn, ds: &[(Target, FieldPath)]) {
        use crate::user::Field;
        let has = |c: Field| ds.iter().any(|(t, _)| *t == Target::Core(c));
        let (needed, why) = match (action, match_on) {
            (Action::Create, _) => (Field::Email, "create adds users by email"),
            (Action::Update, _) => (Field::Email, "update finds users by email"),
            (Action::Sync, MatchOn::Email) => (Field::Email, "sync with match_on \"email\" matches users by email"),
            (Action::Sync, MatchOn::ExternalId) => {
                (Field::ExternalId, "sync with match_on \"external_id\" matches users by external_id")
            }
        };
        if !has(needed) && !ds.is_empty() {
            self.problem(
                "/data_structure",
                format!("{why}: add \"{}\" with the path of that field in each record", needed.column()),
            );
        }
    }

    fn data_templates(&mut self, v: &Value, at: &str, scope: &Scope) {
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

    fn template(&mut self, text: &str, at: &str, scope: &Scope) {
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
            "oauth" => Some("{{ oauth.* }} needs oauth, which comes in a later release".into()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        let text = "[secrets.hr]\nKEY = \"k\"\nCOMPANY_ID = \"acme\"\n";
        crate::config::parse_str(text, Path::new("/etc/rosterd/c.toml")).unwrap()
    }

    fn base() -> Value {
        json!({
            "execute": [{"url": "https://x.test/{{COMPANY_ID}}/people", "method": "GET"}],
            "headers": {"Authorization": "Basic {{KEY}}:x"},
            "action": "create",
            "data_from": "employees",
            "data_structure": {"email": "workEmail", "first_name": "firstName", "last_name": "lastName"},
            "initial_data_form": [{"id": "KEY", "name": "key"}, {"id": "COMPANY_ID", "name": "company"}]
        })
    }

    /// The problems for `base()` changed by `edit`, as "pointer: reason" lines.
    fn check(edit: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut m = base();
        edit(&mut m);
        match parse("hr", Path::new("hr.json"), &m.to_string(), &config()) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(|p| format!("{}: {}", p.pointer, p.reason)).collect(),
        }
    }

    fn push(list: &mut Value, item: Value) {
        list.as_array_mut().unwrap().push(item);
    }

    fn has(problems: &[String], pointer: &str, words: &str) -> bool {
        problems.iter().any(|p| p.starts_with(&format!("{pointer}: ")) && p.contains(words))
    }

    #[test]
    fn the_base_manifest_is_valid() {
        assert_eq!(check(|_| {}), Vec::<String>::new());
    }

    #[test]
    fn unknown_keys_suggest_the_closest() {
        let p = check(|m| {
            m["shedule"] = json!("0 * * * *");
            m["execute"][0]["metod"] = json!("GET");
        });
        assert!(has(&p, "/shedule", "did you mean \"schedule\""), "{p:?}");
        assert!(has(&p, "/execute/0/metod", "did you mean \"method\""), "{p:?}");
    }

    #[test]
    fn wrong_types_name_what_was_found() {
        let p = check(|m| m["execute"] = json!({"url": "x"}));
        assert!(has(&p, "/execute", "found an object"), "{p:?}");
        let p = check(|m| m["data_structure"]["email"] = json!(3));
        assert!(has(&p, "/data_structure/email", "expected a string"), "{p:?}");
    }

    #[test]
    fn malformed_json_gives_line_and_column() {
        let err = parse("hr", Path::new("hr.json"), "{\n  \"execute\": [\n", &config()).unwrap_err();
        assert!(err[0].reason.contains("line 3"), "{}", err[0].reason);
    }

    #[test]
    fn schedules_are_checked() {
        assert_eq!(check(|m| m["schedule"] = json!("0 * * * *")), Vec::<String>::new());
        assert_eq!(check(|m| m["schedule"] = json!("@hourly")), Vec::<String>::new());
        assert!(has(&check(|m| m["schedule"] = json!("0 * *")), "/schedule", "3 field(s)"));
    }

    #[test]
    fn update_needs_email() {
        let p = check(|m| {
            m["action"] = json!("update");
            m["data_structure"] = json!({"bamboohr_id": "id"});
        });
        assert!(has(&p, "/data_structure", "add \"email\""), "{p:?}");
    }

    #[test]
    fn unknown_action_is_refused() {
        assert!(has(&check(|m| m["action"] = json!("delete")), "/action", "unknown action"));
    }

    #[test]
    fn missing_secret_says_where_to_put_it() {
        let p = check(|m| push(&mut m["initial_data_form"], json!({"id": "REPORT_ID", "name": "report"})));
        assert!(has(&p, "/initial_data_form/2/id", "[secrets.hr]"), "{p:?}");
        assert!(has(&p, "/initial_data_form/2/id", "ROSTERD_SECRET_HR_REPORT_ID"), "{p:?}");
        let generated = check(|m| push(&mut m["initial_data_form"], json!({"id": "NONCE", "name": "generate"})));
        assert_eq!(generated, Vec::<String>::new());
    }

    #[test]
    fn templates_name_only_known_values() {
        let p = check(|m| m["execute"][0]["url"] = json!("https://x.test/{{ COMPANY }}"));
        assert!(has(&p, "/execute/0/url", "did you mean {{ COMPANY_ID }}"), "{p:?}");
        let p = check(|m| m["execute"][0]["url"] = json!("https://x.test/{{ responses.0.id }}"));
        assert!(has(&p, "/execute/0/url", "no earlier response"), "{p:?}");
        let p = check(|m| m["execute"][0]["data"] = json!({"q": ["{{ NEXT_PAGE_TOKEN }}"]}));
        assert!(has(&p, "/execute/0/data/q/0", "only be used in next_page"), "{p:?}");
        let p = check(|m| m["execute"][0]["url"] = json!("https://x.test/?o={{ OFFSET }}"));
        assert!(has(&p, "/execute/0/url", "needs page_size"), "{p:?}");
    }

    #[test]
    fn responses_of_earlier_steps_are_allowed() {
        let p = check(|m| {
            push(&mut m["execute"], json!({"url": "https://x.test/{{ responses.0.next }}"}));
        });
        assert_eq!(p, Vec::<String>::new());
    }

    #[test]
    fn token_pagination_needs_next_page_with_the_token() {
        let p = check(|m| m["next_page_token_from"] = json!("meta.next"));
        assert!(has(&p, "/next_page", "required"), "{p:?}");
        let ok = check(|m| {
            m["next_page_token_from"] = json!("meta.next");
            m["next_page"] = json!("https://x.test/p?t={{ NEXT_PAGE_TOKEN }}");
        });
        assert_eq!(ok, Vec::<String>::new());
    }

    #[test]
    fn page_size_needs_a_paging_name() {
        let p = check(|m| m["page_size"] = json!(100));
        assert!(has(&p, "/page_size", "OFFSET"), "{p:?}");
        let ok = check(|m| {
            m["page_size"] = json!(100);
            m["execute"][0]["url"] = json!("https://x.test/p?offset={{ OFFSET }}&limit={{LIMIT}}");
        });
        assert_eq!(ok, Vec::<String>::new());
    }

    #[test]
    fn webhook_manifests_are_named_as_such() {
        let p = check(|m| m["form"] = json!([]));
        assert!(has(&p, "/form", "not a sync-users manifest"), "{p:?}");
    }

    #[test]
    fn oauth_is_for_a_later_release() {
        assert!(has(&check(|m| m["oauth"] = json!({})), "/oauth", "later release"));
    }

    #[test]
    fn sync_keys_belong_to_sync() {
        assert!(has(&check(|m| m["match_on"] = json!("email")), "/match_on", "only by action \"sync\""));
        let p = check(|m| {
            m["action"] = json!("sync");
            m["match_on"] = json!("external_id");
        });
        assert!(has(&p, "/data_structure", "add \"external_id\""), "{p:?}");
    }

    #[test]
    fn status_codes_take_strings_and_numbers() {
        assert_eq!(check(|m| m["execute"][0]["status_code"] = json!(["200", 201])), Vec::<String>::new());
        assert!(has(
            &check(|m| m["execute"][0]["status_code"] = json!(["abc"])),
            "/execute/0/status_code/0",
            "not an HTTP status"
        ));
    }

    #[test]
    fn every_problem_is_reported_in_one_pass() {
        let p = check(|m| {
            m["action"] = json!("nope");
            m["shedule"] = json!("x");
            m["execute"][0]["method"] = json!("FETCH");
            m["data_from"] = json!(1);
        });
        assert_eq!(p.len(), 4, "{p:?}");
    }

    #[test]
    fn the_name_import_is_reserved() {
        let err = parse("import", Path::new("import.json"), &base().to_string(), &config()).unwrap_err();
        assert!(err.iter().any(|p| p.reason.contains("reserved")));
    }
}
