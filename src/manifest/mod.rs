//! Integration manifests (ChiefOnboarding's "sync users" format plus
//! rosterd's own keys): the typed model here, the checks that build it in
//! `validate`. A `Manifest` only exists once every check has passed.

mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::config::{Config, Limit};
pub use crate::mapping::{FieldPath, Rule, Target, ValueMap};
use crate::problem::Problem;
use crate::redact::{Redactor, Secret};
use crate::schedule::Schedule;

pub use validate::{parse, validate_all};

/// Loads and validates the manifest at `path`; its name is the file stem.
pub fn load(path: &Path, config: &Config) -> Result<Manifest, Vec<Problem>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![Problem::new(path, "", format!("cannot read the manifest: {}", crate::describe_io(&e)))])?;
    parse(&name_of(path), path, &text, config)
}

/// A URL's origin as `scheme://host:port` (the port always written).
pub fn origin(url: &reqwest::Url) -> String {
    format!("{}://{}:{}", url.scheme(), url.host_str().unwrap_or(""), url.port_or_known_default().unwrap_or(0))
}

/// The integration name for a manifest file: its stem (`integrations/bamboohr.json` → `bamboohr`).
pub fn name_of(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The manifest files in `dir`, sorted: every `*.json`.
pub fn files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    pub file: PathBuf,
    pub execute: Vec<Step>,
    pub headers: Vec<(String, String)>,
    pub action: Action,
    pub data_from: FieldPath,
    pub data_structure: Vec<Rule>,
    pub schedule: Option<Schedule>,
    pub pagination: Pagination,
    pub amount_pages_to_fetch: Option<u32>,
    /// Origins (`scheme://host:port`) a next page or a redirect may lead to
    /// besides the origin of the request it came from.
    pub allowed_origins: Vec<String>,
    /// What `validate` notes about it (a default it took, a rule it follows).
    pub notes: Vec<String>,
    pub form: Vec<FormValue>,
    pub match_on: MatchOn,
    pub max_deactivate: Option<Limit>,
    pub auto_clear_email: bool,
    pub oauth: Option<OAuth>,
    /// `action: push`: how the target is brought in step with the store.
    pub push: Option<Push>,
}

/// A push: the store is the master and a target API is brought in step.
#[derive(Debug, Clone)]
pub struct Push {
    pub mode: PushMode,
    pub select: PushSelect,
    /// `max_remove`: removes allowed without `--force` (of the matched target users).
    pub max_remove: Option<Limit>,
    /// `max_create`: creates allowed without `--force` (of the listed target
    /// users); none by default.
    pub max_create: Option<Limit>,
}

// One per manifest, never in a collection: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum PushMode {
    /// Seed 002: list the target (`execute` and `data_structure`), then
    /// create, update and remove one user per request.
    Reconcile {
        /// Where the target's own id sits in a listed record: `{{ target.id }}`.
        target_id_from: FieldPath,
        create: Option<Step>,
        update: Option<Step>,
        remove: Option<Step>,
    },
    /// Seed 000 option 2: every selected user as one `record`, sent in
    /// bodies of `{"<list_key>": [...]}` of at most `batch` records.
    Bulk { request: Step, batch: usize, list_key: String, record: Value },
}

/// `push_select`: which local users belong on the target.
#[derive(Debug, Clone)]
pub struct PushSelect {
    /// Active users only (default true).
    pub active: bool,
    /// Users made by these integrations (or `import`); `None`: every user.
    pub source: Option<Vec<String>>,
}

impl Default for PushSelect {
    fn default() -> Self {
        Self { active: true, source: None }
    }
}

/// The `oauth` block: requests like `execute` steps that get and renew a token.
#[derive(Debug, Clone)]
pub struct OAuth {
    /// Where an admin authorizes access (the authorization-code flow);
    /// `None`: client credentials, which rosterd runs itself.
    pub authenticate_url: Option<String>,
    /// Exchanges the code (appended as `code=`, unless `without_code`) for tokens.
    pub access_token: Step,
    /// Renews the access token; without it a code-flow token is permanent.
    pub refresh: Option<Step>,
    pub without_code: bool,
}

impl OAuth {
    /// Whether a person must authorize it first (`rosterd oauth NAME`).
    pub fn needs_consent(&self) -> bool {
        self.authenticate_url.is_some()
    }
}

impl Manifest {
    /// The template values of one run (form values; `generate` ids get a
    /// fresh random value) and the redactor that hides the secret ones.
    pub fn template_values(&self) -> (serde_json::Map<String, Value>, Redactor) {
        let redactor = Redactor::default();
        let mut values = serde_json::Map::new();
        for f in &self.form {
            let value = match &f.value {
                Some(secret) => secret.expose().to_string(),
                None => random_hex(),
            };
            if f.secret {
                redactor.add(&f.id, &value);
            }
            values.insert(f.id.clone(), Value::String(value));
        }
        (values, redactor)
    }
}

/// 32 random hex digits (a `generate` value, an OAuth `state`).
pub fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    // Without an OS random source nothing else here is safe either; a clock
    // fallback keeps the value unique per run.
    if getrandom::getrandom(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One value from `initial_data_form`, resolved from config, environment or credentials.
#[derive(Debug, Clone)]
pub struct FormValue {
    pub id: String,
    /// Shown in logs and plans only when the entry says `"secret": false`.
    pub secret: bool,
    /// `None` for ids named `generate`: a fresh random value each run.
    pub value: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub url: String,
    pub method: reqwest::Method,
    pub data: Option<Value>,
    /// A non-empty list replaces the manifest's `headers` wholesale.
    pub headers: Option<Vec<(String, String)>>,
    /// Allowed status codes; empty means any 2xx.
    pub status_code: Vec<u16>,
    pub continue_if: Option<ContinueIf>,
    pub polling: Option<Polling>,
    /// `cast_data_to_json` (default true): `data` is encoded by the request's
    /// Content-Type (a form or JSON); false sends the rendered JSON text as is.
    pub cast_data_to_json: bool,
}

#[derive(Debug, Clone)]
pub struct ContinueIf {
    pub notation: FieldPath,
    pub notation_text: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Polling {
    pub interval: Duration,
    /// Requests in all, the first included.
    pub amount: u32,
}

#[derive(Debug, Clone)]
pub enum Pagination {
    None,
    /// `next_page_from`: a dot path to the next page's full URL.
    NextUrl(FieldPath),
    /// `next_page_from: "link:next"`: the RFC 8288 `Link` header.
    LinkNext,
    /// `next_page_token_from` + `next_page` (a URL template using `NEXT_PAGE_TOKEN`).
    Token {
        from: FieldPath,
        next_page: String,
    },
    /// `page_size` with `OFFSET`, `LIMIT` or `PAGE` in the last step's URL or in `next_page`.
    Numbered {
        page_size: u32,
        next_page: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Sync,
    /// The store is the master; a target API is brought in step.
    Push,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Sync => "sync",
            Action::Push => "push",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOn {
    Email,
    ExternalId,
}
