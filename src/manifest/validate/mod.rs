//! Every check a manifest must pass, reported all at once with file, JSON
//! pointer and a fix. Works on the parsed JSON (not serde structs) so each
//! problem points at the exact key. No I/O besides secret lookups via `Config`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{
    Action, ContinueIf, FieldPath, FormValue, Manifest, MatchOn, Pagination, Polling, Rule, Step, Target, ValueMap,
    origin,
};
use crate::config::{Config, Limit, secret_env_name};
use crate::problem::{Problem, kind, pointer_token};
use crate::redact::Secret;
use crate::schedule::Schedule;
use crate::user::Field;

mod form;
mod mapping;
mod oauth;
mod push;
mod steps;

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
    "allowed_origins",
    "type",
    "cast_data_to_json",
    "store_data",
    "files",
    "save_as_file",
    "extra_headers",
    "push",
    "push_select",
    "max_remove",
    "max_create",
    "target_id_from",
];
const STEP_KEYS: &[&str] = &[
    "url",
    "method",
    "data",
    "headers",
    "status_code",
    "continue_if",
    "polling",
    "cast_data_to_json",
    "store_data",
    "files",
    "save_as_file",
    "extra_headers",
];
/// Optional keys ChiefOnboarding's integration builder saves as `[]`, `{}` or
/// `""` when they are not set: such a value means the key is absent.
pub(super) const EMPTY_MEANS_UNSET: &[&str] = &[
    "headers",
    "status_code",
    "data",
    "continue_if",
    "polling",
    "schedule",
    "next_page_from",
    "next_page_token_from",
    "next_page",
    "oauth",
    "form",
    "store_data",
    "files",
    "save_as_file",
    "extra_headers",
];
/// Builder keys with no use in a sync-users manifest, and what they do in ChiefOnboarding.
const BUILDER_ONLY: &[(&str, &str)] = &[
    (
        "store_data",
        "stores values from this response for later integrations in ChiefOnboarding; rosterd keeps no \
         data between runs (a later step of this run reads this one as {{ responses.N }})",
    ),
    ("files", "sends files from ChiefOnboarding; rosterd sends no files"),
    ("save_as_file", "saves the response as a file in ChiefOnboarding; rosterd reads responses as users only"),
    ("extra_headers", "adds headers in ChiefOnboarding's webhook integrations; put them in \"headers\""),
];
const OAUTH_KEYS: &[&str] = &["authenticate_url", "access_token", "refresh", "without_code"];
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
    let root = unset_empties(root);
    let cast_default = root.get("cast_data_to_json").and_then(Value::as_bool).unwrap_or(true);
    let mut check = Checker { file, problems: Vec::new(), notes: Vec::new(), cast_default, oauth: false };
    let manifest = check.manifest(name, &root, config);
    match manifest {
        Some(mut m) if check.problems.is_empty() => {
            m.notes = check.notes;
            Ok(m)
        }
        _ => Err(check.problems),
    }
}

/// Whether a value is the builder's "not set": `[]`, `{}` or `""`.
fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The manifest with every empty optional key (top level and in each
/// `execute` step) removed, so only non-empty values are checked.
fn unset_empties(mut root: Value) -> Value {
    let strip = |obj: &mut Map<String, Value>| {
        obj.retain(|k, v| !(EMPTY_MEANS_UNSET.contains(&k.as_str()) && is_empty_value(v)))
    };
    if let Value::Object(obj) = &mut root {
        strip(obj);
        if let Some(Value::Array(steps)) = obj.get_mut("execute") {
            for step in steps.iter_mut().filter_map(Value::as_object_mut) {
                strip(step);
            }
        }
    }
    root
}

struct Checker<'a> {
    file: &'a Path,
    problems: Vec<Problem>,
    /// What `validate` says about a valid manifest (a default taken, a rule of ChiefOnboarding's).
    notes: Vec<String>,
    /// The manifest's own `cast_data_to_json`, for steps that do not say.
    cast_default: bool,
    /// The manifest has an `oauth` block.
    oauth: bool,
}

/// The template names allowed in one string.
struct Scope<'a> {
    ids: &'a BTreeSet<String>,
    /// `responses.N` is allowed for N below this.
    responses_below: usize,
    next_page_token: bool,
    paging: bool,
    /// The manifest has an `oauth` block: `{{ oauth.* }}` may be used.
    oauth: bool,
    /// An `oauth` request or `authenticate_url`: `{{ redirect_url }}` may be used.
    redirect_url: bool,
    /// A push request: `{{ user.<field> }}` may be used.
    user: bool,
    /// A push update or remove: `{{ target.id }}` may be used.
    target: bool,
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
        if !self.is_sync_users(name, obj) {
            return None;
        }
        let form = self.form(name, obj.get("initial_data_form"), config);
        let ids: BTreeSet<String> = form.iter().map(|f| f.id.clone()).collect();
        self.oauth = obj.contains_key("oauth");
        let oauth = obj.get("oauth").and_then(|v| self.oauth_block(v, &ids));

        let action = self.action(obj.get("action"));
        let bulk = action == Some(Action::Push) && obj.get("push").and_then(|p| p.get("bulk")).is_some();
        let page_size = obj.get("page_size").and_then(|v| self.positive(v, "/page_size"));
        let token_from = obj.get("next_page_token_from").and_then(|v| self.string(v, "/next_page_token_from"));
        let steps_json = if bulk { self.no_listing(obj) } else { self.steps_json(obj.get("execute")) };
        let n_steps = steps_json.len();
        let execute = self.execute(steps_json, &ids, page_size.is_some());
        let headers = self.global_headers(obj.get("headers"), steps_json, &ids);

        let data_from = match obj.get("data_from") {
            None | Some(Value::Null) => FieldPath::Dot(Vec::new()),
            Some(v) => self.path(v, "/data_from").unwrap_or(FieldPath::Dot(Vec::new())),
        };
        let data_structure = if bulk { Vec::new() } else { self.data_structure(obj.get("data_structure")) };
        let schedule = self.schedule(obj.get("schedule"));

        let next_page = obj.get("next_page").and_then(|v| self.string(v, "/next_page")).map(str::to_string);
        if let Some(np) = &next_page {
            let scope = Scope {
                ids: &ids,
                responses_below: n_steps,
                next_page_token: token_from.is_some(),
                paging: page_size.is_some(),
                oauth: self.oauth,
                redirect_url: false,
                user: false,
                target: false,
            };
            self.template(np, "/next_page", &scope);
        }
        let pagination = self.pagination(obj, token_from, next_page, page_size, steps_json);
        let amount_pages_to_fetch =
            obj.get("amount_pages_to_fetch").and_then(|v| self.positive(v, "/amount_pages_to_fetch"));
        let allowed_origins = self.allowed_origins(obj.get("allowed_origins"));

        let (match_on, max_deactivate, auto_clear_email) = self.sync_keys(obj, action);
        let push = self.push_keys(obj, action, &ids);
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
            allowed_origins,
            notes: Vec::new(),
            form,
            match_on,
            max_deactivate,
            auto_clear_email,
            oauth,
            push,
        })
    }

    /// Refuses a manifest of another kind (a webhook integration) or with a
    /// reserved or empty name, and reports unknown keys; false when it cannot go on.
    fn is_sync_users(&mut self, name: &str, obj: &Map<String, Value>) -> bool {
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
            return false;
        }
        if name == "import" {
            self.problem("", "the name \"import\" is reserved for users made by bulk import; rename the file");
        }
        if name.is_empty() {
            self.problem("", "a manifest needs a file name; it becomes the integration's name");
        }
        self.unknown_keys(obj, TOP_KEYS, "");
        self.builder_keys(obj, "");
        if let Some(v) = obj.get("type")
            && v != "import_users"
        {
            self.problem(
                "/type",
                format!("{v} is not a sync-users manifest; rosterd runs \"import_users\" (or no \"type\" at all)"),
            );
        }
        true
    }

    /// The builder's keys: `cast_data_to_json` must be a boolean; the keys
    /// with no use here are refused when they hold anything.
    fn builder_keys(&mut self, obj: &Map<String, Value>, at: &str) {
        if let Some(v) = obj.get("cast_data_to_json")
            && !v.is_boolean()
        {
            self.problem(&format!("{at}/cast_data_to_json"), format!("expected true or false, found {}", kind(v)));
        }
        for (key, what) in BUILDER_ONLY {
            if obj.contains_key(*key) {
                self.problem(&format!("{at}/{key}"), format!("\"{key}\" {what}; remove it or leave it empty"));
            }
        }
    }

    /// The `execute` list as JSON (empty, with a problem, when it is not a non-empty list).
    fn steps_json<'v>(&mut self, v: Option<&'v Value>) -> &'v [Value] {
        match v {
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
        }
    }

    /// Each step checked; step `i` may use `responses.N` for N below `i`, and
    /// the last one the paging names when `paged`.
    fn execute(&mut self, steps: &[Value], ids: &BTreeSet<String>, paged: bool) -> Vec<Step> {
        let mut execute = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            let paging = paged && i + 1 == steps.len();
            let scope = Scope {
                ids,
                responses_below: i,
                next_page_token: false,
                paging,
                oauth: self.oauth,
                redirect_url: false,
                user: false,
                target: false,
            };
            if let Some(step) = self.step(step, &format!("/execute/{i}"), &scope) {
                execute.push(step);
            }
        }
        execute
    }

    /// The manifest's `headers`: they go with every step that has none of its
    /// own, so they may use the responses of steps before the first such step.
    fn global_headers(&mut self, v: Option<&Value>, steps: &[Value], ids: &BTreeSet<String>) -> Vec<(String, String)> {
        let Some(v) = v else { return Vec::new() };
        let first_global = steps
            .iter()
            .position(|s| s.get("headers").and_then(Value::as_object).is_none_or(Map::is_empty))
            .unwrap_or(steps.len());
        let scope = Scope {
            ids,
            responses_below: first_global,
            next_page_token: false,
            paging: false,
            oauth: self.oauth,
            redirect_url: false,
            user: false,
            target: false,
        };
        self.headers(v, "/headers", &scope)
    }

    /// `allowed_origins`: origins (scheme, host, port) besides a request's
    /// own that a next page or a redirect may lead to, as `scheme://host:port`.
    fn allowed_origins(&mut self, v: Option<&Value>) -> Vec<String> {
        let Some(v) = v else { return Vec::new() };
        let Some(items) = v.as_array() else {
            self.problem("/allowed_origins", format!("expected a list of origins, found {}", kind(v)));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("/allowed_origins/{i}");
            let Some(text) = self.string(item, &at) else { continue };
            match reqwest::Url::parse(text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() && url.path() == "/" => {
                    out.push(origin(&url));
                }
                _ => self.problem(
                    &at,
                    format!("\"{text}\" is not an origin; write scheme and host (and a port if not the default), e.g. \"https://api.bamboohr.com\""),
                ),
            }
        }
        out
    }

    fn schedule(&mut self, v: Option<&Value>) -> Option<Schedule> {
        match v {
            None | Some(Value::Null) => None,
            Some(v) => self.string(v, "/schedule").and_then(|s| match Schedule::parse(s) {
                Ok(s) => Some(s),
                Err(reason) => {
                    self.problem("/schedule", reason);
                    None
                }
            }),
        }
    }

    fn action(&mut self, v: Option<&Value>) -> Option<Action> {
        let Some(v) = v else {
            self.notes.push("/action: absent, so \"create\" (as ChiefOnboarding's runtime does)".into());
            return Some(Action::Create);
        };
        match self.string(v, "/action")? {
            "create" => Some(Action::Create),
            "update" => Some(Action::Update),
            "sync" => Some(Action::Sync),
            "push" => Some(Action::Push),
            other => {
                self.problem(
                    "/action",
                    format!("unknown action \"{other}\"; use \"create\", \"update\", \"sync\" or \"push\""),
                );
                None
            }
        }
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
}

#[cfg(test)]
mod tests;
