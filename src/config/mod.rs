//! The config file: lookup order, the raw TOML form (unknown keys refused),
//! and the validated `Config` every command works from. Secrets are resolved
//! here too (environment, then `$CREDENTIALS_DIRECTORY`, then the file); what
//! a manifest needs of them is checked by `manifest::validate`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::Deserialize;

use crate::problem::Problem;
use crate::redact::Secret;
use crate::user::Email;

const DEFAULT_DATABASE: &str = "rosterd.db";
const DEFAULT_INTEGRATIONS: &str = "integrations";

#[derive(Debug, Deserialize, Default)]
struct RawConfig {
    database: Option<PathBuf>,
    integrations_dir: Option<PathBuf>,
    #[serde(default)]
    ignored_emails: Vec<String>,
    timezone: Option<String>,
    max_concurrent_runs: Option<usize>,
    shutdown_grace_secs: Option<u64>,
    log_format: Option<LogFormat>,
    #[serde(default)]
    secrets: BTreeMap<String, BTreeMap<String, toml::Value>>,
    #[serde(default)]
    visible: BTreeMap<String, BTreeMap<String, toml::Value>>,
    #[serde(default)]
    http: HttpConfig,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    export: RawExport,
    #[serde(default)]
    oauth: OAuthConfig,
    #[serde(default)]
    push: RawPush,
}

/// `[oauth]`: where an authorization sends the browser back.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct OAuthConfig {
    /// `{{ redirect_url }}` in `oauth` requests; without it `rosterd oauth`
    /// listens on `http://127.0.0.1:<port>/oauth/callback`.
    pub redirect_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawPush {
    concurrency: usize,
    max_remove: Option<toml::Value>,
}

impl Default for RawPush {
    fn default() -> Self {
        Self { concurrency: 4, max_remove: None }
    }
}

/// `[push]`: how a push sends its requests, and how many removes it makes without `--force`.
#[derive(Debug, Clone, Copy)]
pub struct PushConfig {
    /// Push requests in flight at once.
    pub concurrency: usize,
    /// Removes a push applies without `--force`; a manifest's own `max_remove` wins.
    pub max_remove: Limit,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self { concurrency: 4, max_remove: DEFAULT_LIMIT }
    }
}

/// `max_deactivate` and `max_remove` when neither config nor manifest sets one.
const DEFAULT_LIMIT: Limit = Limit::Percent(10.0);

/// The counts that must be at least 1, and `[oauth] redirect_url`'s scheme.
fn check_counts(raw: &RawConfig, problem: &mut impl FnMut(&str, String)) {
    let at_least_one = [
        ("/max_concurrent_runs", raw.max_concurrent_runs.unwrap_or(1) as u64),
        ("/http/max_pages", u64::from(raw.http.max_pages)),
        ("/http/run_timeout_secs", raw.http.run_timeout_secs),
        ("/push/concurrency", raw.push.concurrency as u64),
        ("/api/max_connections", raw.api.max_connections as u64),
    ];
    for (pointer, n) in at_least_one {
        if n == 0 {
            problem(pointer, "must be at least 1".into());
        }
    }
    if let Some(url) = &raw.oauth.redirect_url
        && reqwest::Url::parse(url).map_or(true, |u| !matches!(u.scheme(), "http" | "https"))
    {
        problem(
            "/oauth/redirect_url",
            format!("\"{url}\" is not an http(s) URL; write the full address the provider sends the browser back to"),
        );
    }
}

/// `ignored_emails` as emails; one that is not an email could never match a record.
fn ignored_emails(raw: &[String], problem: &mut impl FnMut(&str, String)) -> Vec<Email> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, text) in raw.iter().enumerate() {
        match Email::parse(text) {
            Ok(email) => out.push(email),
            Err(why) => {
                problem(&format!("/ignored_emails/{i}"), format!("{why}; write an address such as it@acme.example"))
            }
        }
    }
    out
}

/// `[secrets.NAME]` (or `[visible.NAME]`: `kind`) as values (a number is taken as its digits).
fn secret_tables(
    raw: BTreeMap<String, BTreeMap<String, toml::Value>>,
    kind: &str,
    problem: &mut impl FnMut(&str, String),
) -> BTreeMap<String, BTreeMap<String, Secret>> {
    let mut secrets = BTreeMap::new();
    for (name, values) in raw {
        let mut table = BTreeMap::new();
        for (id, value) in values {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                _ => {
                    problem(&format!("/{kind}/{name}/{id}"), "a value must be a string; put it in quotes".into());
                    continue;
                }
            };
            table.insert(id, Secret::new(text));
        }
        secrets.insert(name, table);
    }
    secrets
}

/// The shortest API token accepted.
const MIN_TOKEN: usize = 16;

/// `[api] tokens` and the lines of `token_file` (blank lines and `#` comments
/// skipped); a token shorter than `MIN_TOKEN` is a problem (never printed).
fn api_tokens(
    listed: Vec<String>,
    token_file: Option<&Path>,
    base: &Path,
    problem: &mut impl FnMut(&str, String),
) -> Vec<Secret> {
    let too_short = |n: usize| {
        format!(
            "a token of {n} character(s) can be guessed; use at least {MIN_TOKEN} (e.g. the output of \
             `openssl rand -hex 24`)"
        )
    };
    let mut tokens = Vec::new();
    for (i, token) in listed.into_iter().enumerate() {
        match token.chars().count() {
            n if n < MIN_TOKEN => problem(&format!("/api/tokens/{i}"), too_short(n)),
            _ => tokens.push(Secret::new(token)),
        }
    }
    let Some(token_file) = token_file else { return tokens };
    let token_file = resolve(base, token_file);
    let text = match std::fs::read_to_string(&token_file) {
        Ok(text) => text,
        Err(e) => {
            problem("/api/token_file", format!("cannot read {}: {}", token_file.display(), crate::describe_io(&e)));
            return tokens;
        }
    };
    for (i, line) in text.lines().enumerate().map(|(i, l)| (i, l.trim())) {
        match line.chars().count() {
            0 => {}
            _ if line.starts_with('#') => {}
            n if n < MIN_TOKEN => {
                problem("/api/token_file", format!("{} line {}: {}", token_file.display(), i + 1, too_short(n)));
            }
            _ => tokens.push(Secret::new(line)),
        }
    }
    tokens
}

/// A limit from the config, or `DEFAULT_LIMIT` with a problem at `pointer` when it is not one.
fn config_limit(value: Option<&toml::Value>, pointer: &str, problem: &mut impl FnMut(&str, String)) -> Limit {
    let Some(value) = value else { return DEFAULT_LIMIT };
    let json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    Limit::parse(&json).unwrap_or_else(|reason| {
        problem(pointer, reason);
        DEFAULT_LIMIT
    })
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawExport {
    csv_escape_formulas: bool,
}

impl Default for RawExport {
    fn default() -> Self {
        Self { csv_escape_formulas: true }
    }
}

#[derive(Debug, Deserialize, Default)]
struct RawSync {
    max_deactivate: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
struct RawApi {
    listen: Option<String>,
    #[serde(default)]
    tokens: Vec<String>,
    token_file: Option<PathBuf>,
    #[serde(default = "default_max_body")]
    max_body_bytes: u64,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_true")]
    status_page: bool,
}

fn default_true() -> bool {
    true
}

impl Default for RawApi {
    fn default() -> Self {
        Self {
            listen: None,
            tokens: Vec::new(),
            token_file: None,
            max_body_bytes: default_max_body(),
            max_connections: default_max_connections(),
            status_page: true,
        }
    }
}

fn default_max_connections() -> usize {
    256
}

fn default_max_body() -> u64 {
    10 * 1024 * 1024
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[http]`: how rosterd talks to sources.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Whole-request limit, connect included.
    pub timeout_secs: u64,
    /// Extra attempts after the first, on connect errors, 5xx and 429.
    pub retries: u32,
    /// Pages fetched at most when a manifest sets no `amount_pages_to_fetch`;
    /// a further page after that many fails the run.
    pub max_pages: u32,
    pub max_response_bytes: u64,
    /// First retry delay; it doubles each attempt (with jitter), up to 30 s.
    pub retry_base_ms: u64,
    /// A whole run, fetch and apply included, is cancelled past this.
    pub run_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            timeout_secs: 120,
            retries: 3,
            max_pages: 10_000,
            max_response_bytes: 100 * 1024 * 1024,
            retry_base_ms: 500,
            run_timeout_secs: 3600,
        }
    }
}

/// How many deactivations one `sync` run may apply without `--force`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Count(u64),
    Percent(f64),
}

impl Limit {
    /// Parses `"10%"`, `"25"` or a bare number.
    pub fn parse(value: &serde_json::Value) -> Result<Self, String> {
        const HINT: &str = "write a count such as 50 or a percentage such as \"10%\"";
        match value {
            serde_json::Value::Number(n) => {
                n.as_u64().map(Limit::Count).ok_or_else(|| format!("{n} is not a whole count; {HINT}"))
            }
            serde_json::Value::String(s) => {
                let s = s.trim();
                if let Some(pct) = s.strip_suffix('%') {
                    match pct.trim().parse::<f64>() {
                        Ok(p) if (0.0..=100.0).contains(&p) => Ok(Limit::Percent(p)),
                        _ => Err(format!("\"{s}\" is not a percentage from 0% to 100%; {HINT}")),
                    }
                } else {
                    s.parse::<u64>().map(Limit::Count).map_err(|_| format!("\"{s}\" is not a limit; {HINT}"))
                }
            }
            other => Err(format!("expected a count or a percentage, found {other}; {HINT}")),
        }
    }

    /// The largest number of deactivations allowed when `owned` active users exist.
    /// Percentages round up, so 10% of 5 users allows 1.
    pub fn allowed(self, owned: u64) -> u64 {
        match self {
            Limit::Count(n) => n,
            Limit::Percent(p) => ((owned as f64) * p / 100.0 - 1e-9).ceil().max(0.0) as u64,
        }
    }
}

/// What a run would do past its limit: `n` of `of`, where the limit allows `allowed`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Over {
    pub n: u64,
    pub of: u64,
    pub allowed: u64,
    pub limit: Limit,
}

impl Limit {
    /// Whether `n` of `of` (deactivations of owned active users, removes of
    /// target users, revokes of accounts) is over this limit: the one check
    /// behind `max_deactivate`, `max_remove` and `max_revoke`.
    pub fn check(self, n: u64, of: u64) -> Option<Over> {
        let allowed = self.allowed(of);
        (n > allowed).then_some(Over { n, of, allowed, limit: self })
    }
}

impl Over {
    /// "`verb` N of M `what`, over `key` L (A)": why a run is held.
    pub fn describe(&self, verb: &str, what: &str, key: &str) -> String {
        format!("{verb} {} of {} {what}, over {key} {} ({})", self.n, self.of, self.limit, self.allowed)
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n}"),
            Limit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: Option<String>,
    pub tokens: Vec<Secret>,
    pub max_body_bytes: u64,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// `GET /` serves the status page (no token; no user data, no secret).
    pub status_page: bool,
}

/// The validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    pub database: PathBuf,
    pub integrations_dir: PathBuf,
    /// Lower-cased, trimmed.
    pub ignored_emails: Vec<Email>,
    pub timezone: Tz,
    pub max_concurrent_runs: usize,
    pub shutdown_grace_secs: u64,
    pub log_format: LogFormat,
    pub http: HttpConfig,
    pub max_deactivate: Limit,
    pub api: ApiConfig,
    /// CSV cells that a spreadsheet would take for a formula get a leading `'`.
    pub csv_escape_formulas: bool,
    pub oauth: OAuthConfig,
    pub push: PushConfig,
    secrets: BTreeMap<String, BTreeMap<String, Secret>>,
    /// `[visible.NAME]`: form values that are no secret (an id in an email
    /// domain): supplied like secrets, never masked.
    visible: BTreeMap<String, BTreeMap<String, String>>,
}

impl Default for Config {
    fn default() -> Self {
        Self::from_raw(RawConfig::default(), Path::new("."), None).expect("the built-in defaults are valid")
    }
}

/// Where the config comes from: `--config`, `$ROSTERD_CONFIG`, `./rosterd.toml`, or none.
pub fn locate(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = flag {
        return Some(path.to_path_buf());
    }
    if let Some(env) = std::env::var_os("ROSTERD_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(env));
    }
    let local = PathBuf::from("rosterd.toml");
    local.is_file().then_some(local)
}

/// Loads the config named by `--config` (or found by the lookup order).
pub fn load(flag: Option<&Path>) -> Result<Config, Vec<Problem>> {
    match locate(flag) {
        Some(path) => load_file(&path),
        None => Ok(Config::default()),
    }
}

pub fn load_file(path: &Path) -> Result<Config, Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem::new(path, "", format!("cannot read the config file: {}", crate::describe_io(&e)))]
    })?;
    parse_str(&text, path)
}

/// Parses config text as if read from `path` (relative paths follow its folder).
pub fn parse_str(text: &str, path: &Path) -> Result<Config, Vec<Problem>> {
    let de = toml::de::Deserializer::parse(text).map_err(|e| vec![toml_problem(path, text, &e)])?;
    // Every unknown key, not only the first (serde_ignored walks the whole document).
    let mut unknown = Vec::new();
    let raw: RawConfig = serde_ignored::deserialize(de, |key| unknown.push(key.to_string()))
        .map_err(|e| vec![toml_problem(path, text, &e)])?;
    if !unknown.is_empty() {
        let mut found: Vec<(usize, Problem)> = unknown.iter().map(|key| unknown_key(path, text, key)).collect();
        found.sort_by_key(|(line, _)| *line);
        return Err(found.into_iter().map(|(_, p)| p).collect());
    }
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
    Config::from_raw(raw, &base, Some(path))
}

fn toml_problem(path: &Path, text: &str, e: &toml::de::Error) -> Problem {
    let mut reason = e.message().to_string();
    if let Some(span) = e.span() {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        reason = format!("line {line}, column {column}: {reason}");
    }
    if reason.contains("unknown field") {
        reason.push_str(" (remove it or fix its spelling; see config.example.toml)");
    }
    Problem::new(path, "", reason)
}

/// An unknown key (`http.retriez`) as a problem at its line and column, with that line.
fn unknown_key(path: &Path, text: &str, key: &str) -> (usize, Problem) {
    let (table, name) = key.rsplit_once('.').unwrap_or(("", key));
    let mut in_table = table.is_empty();
    let mut at = None;
    let mut line_no = usize::MAX;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(header) = trimmed.strip_prefix('[') {
            in_table = header.trim_end().trim_end_matches(']').trim() == table;
            continue;
        }
        let is_key = trimmed.strip_prefix(name).is_some_and(|rest| rest.trim_start().starts_with('='));
        if in_table && is_key {
            at = Some(format!("line {}, column {}: ", i + 1, line.len() - trimmed.len() + 1));
            line_no = i;
            break;
        }
    }
    let place = if table.is_empty() { String::new() } else { format!(" in [{table}]") };
    let reason = format!(
        "{}unknown field `{name}`{place} (remove it or fix its spelling; see config.example.toml)",
        at.unwrap_or_default()
    );
    (line_no, Problem::new(path, "", reason))
}

impl Config {
    fn from_raw(raw: RawConfig, base: &Path, file: Option<&Path>) -> Result<Self, Vec<Problem>> {
        let file_for_problems = file.unwrap_or(Path::new("(built-in config)"));
        let mut problems = Vec::new();
        let mut problem =
            |pointer: &str, reason: String| problems.push(Problem::new(file_for_problems, pointer, reason));

        let timezone = match raw.timezone.as_deref() {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().unwrap_or_else(|_| {
                problem(
                    "/timezone",
                    format!("unknown time zone \"{name}\"; use an IANA name such as \"Europe/Stockholm\" or \"UTC\""),
                );
                Tz::UTC
            }),
        };
        let max_deactivate = config_limit(raw.sync.max_deactivate.as_ref(), "/sync/max_deactivate", &mut problem);
        let max_remove = config_limit(raw.push.max_remove.as_ref(), "/push/max_remove", &mut problem);
        check_counts(&raw, &mut problem);
        let ignored_emails = ignored_emails(&raw.ignored_emails, &mut problem);
        let secrets = secret_tables(raw.secrets, "secrets", &mut problem);
        let visible: BTreeMap<String, BTreeMap<String, String>> = secret_tables(raw.visible, "visible", &mut problem)
            .into_iter()
            .map(|(name, t)| (name, t.into_iter().map(|(id, v)| (id, v.expose().to_string())).collect()))
            .collect();
        for (name, table) in &visible {
            for id in table.keys().filter(|id| secrets.get(name).is_some_and(|s| s.contains_key(*id))) {
                problem(
                    &format!("/visible/{name}/{id}"),
                    format!("{id} is under both [secrets.{name}] and [visible.{name}]; keep it in one"),
                );
            }
        }
        let tokens = api_tokens(raw.api.tokens, raw.api.token_file.as_deref(), base, &mut problem);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            file: file.map(Path::to_path_buf),
            database: resolve(base, &raw.database.unwrap_or_else(|| DEFAULT_DATABASE.into())),
            integrations_dir: resolve(base, &raw.integrations_dir.unwrap_or_else(|| DEFAULT_INTEGRATIONS.into())),
            ignored_emails,
            timezone,
            max_concurrent_runs: raw.max_concurrent_runs.unwrap_or(2),
            shutdown_grace_secs: raw.shutdown_grace_secs.unwrap_or(30),
            log_format: raw.log_format.unwrap_or_default(),
            http: raw.http,
            max_deactivate,
            api: ApiConfig {
                listen: raw.api.listen,
                tokens,
                max_body_bytes: raw.api.max_body_bytes,
                max_connections: raw.api.max_connections,
                status_page: raw.api.status_page,
            },
            csv_escape_formulas: raw.export.csv_escape_formulas,
            oauth: raw.oauth,
            push: PushConfig { concurrency: raw.push.concurrency, max_remove },
            secrets,
            visible,
        })
    }

    /// The file problems about this config are reported against.
    pub fn display_file(&self) -> PathBuf {
        self.file.clone().unwrap_or_else(|| PathBuf::from("(built-in config)"))
    }

    /// The value for `id` of the manifest `name`: the environment wins, then
    /// `$CREDENTIALS_DIRECTORY/<name>.<id>`, then `[secrets.<name>]`.
    pub fn secret(&self, name: &str, id: &str) -> Option<Secret> {
        if let Ok(value) = std::env::var(secret_env_name(name, id)) {
            return Some(Secret::new(value));
        }
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            let path = Path::new(&dir).join(format!("{name}.{id}"));
            if let Ok(mut text) = std::fs::read_to_string(path) {
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                return Some(Secret::new(text));
            }
        }
        self.secrets.get(name).and_then(|t| t.get(id)).cloned()
    }

    /// The value of `id` for manifest `name` from `[visible.NAME]`: no secret, never masked.
    pub fn visible(&self, name: &str, id: &str) -> Option<&str> {
        self.visible.get(name).and_then(|t| t.get(id)).map(String::as_str)
    }

    pub fn is_ignored(&self, email: &str) -> bool {
        self.ignored_emails.iter().any(|e| e == email)
    }
}

/// Whether `value`, supplied for form id `id` of manifest `name`, is a
/// placeholder rather than a real value: `changeme`, `<...>`, `your-...`,
/// `replace-with-...`, `xxx`, or, for a secret, the value
/// config.example.toml gives that same id (an example's report id of 42 may
/// well be real; its API key is not). A manifest with one is refused, so
/// nothing is ever sent with it.
pub fn is_placeholder(name: &str, id: &str, value: &str, secret: bool) -> bool {
    let v = value.trim().to_ascii_lowercase();
    const WORDS: [&str; 9] =
        ["changeme", "change-me", "change_me", "replaceme", "replace-me", "replace_me", "todo", "tbd", "placeholder"];
    WORDS.contains(&v.as_str())
        || (v.len() >= 3 && v.chars().all(|c| c == 'x'))
        || (v.starts_with('<') && v.ends_with('>'))
        || ["your-", "your_", "your ", "replace-with", "replace_with", "fill-in", "fill_in"]
            .iter()
            .any(|p| v.starts_with(p))
        || (secret && example_value(name, id).is_some_and(|example| example == value.trim()))
}

/// The value config.example.toml gives `[secrets.NAME] ID`, if any.
fn example_value(name: &str, id: &str) -> Option<&'static str> {
    static EXAMPLE: std::sync::OnceLock<BTreeMap<(String, String), String>> = std::sync::OnceLock::new();
    let values = EXAMPLE.get_or_init(|| {
        let mut out = BTreeMap::new();
        let Ok(table) = include_str!("../../config.example.toml").parse::<toml::Table>() else { return out };
        let Some(secrets) = table.get("secrets").and_then(toml::Value::as_table) else { return out };
        for (manifest, ids) in secrets {
            for (id, value) in ids.as_table().into_iter().flatten() {
                if let Some(v) = value.as_str() {
                    out.insert((manifest.clone(), id.clone()), v.to_string());
                }
            }
        }
        out
    });
    values.get(&(name.to_string(), id.to_string())).map(String::as_str)
}

/// `ROSTERD_SECRET_<NAME>_<ID>`, upper-cased, every character outside `A-Z0-9` as `_`.
pub fn secret_env_name(name: &str, id: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
    };
    format!("ROSTERD_SECRET_{}_{}", clean(name), clean(id))
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() || base == Path::new(".") { path.to_path_buf() } else { base.join(path) }
}

#[cfg(test)]
mod tests;
