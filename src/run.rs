//! One run of one integration: take its lock, record the run, fetch every
//! page, then plan and apply in one transaction (or only record, for a dry
//! run or a run held by `max_deactivate`). The only module that uses both
//! `fetch` and `store`. A run that fails anywhere changes no user and leaves a
//! `failed` row with a one-line, redacted cause.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::config::Config;
use crate::fetch::{self, Client};
use crate::manifest::{Manifest, Target};
use crate::plan::{Plan, PlanOptions};
use crate::redact::Redactor;
use crate::store::{Counts, RunEnd, Skip, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
    Api,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Api => "api",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub trigger: Trigger,
    pub dry_run: bool,
    pub force: bool,
    /// Show pages and records on stderr while fetching (only on a terminal).
    pub progress: bool,
    /// A `runs` row already made for this run (status `running`), e.g. by the API to answer with its id.
    pub run_id: Option<i64>,
}

/// What a run did, as `run --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: i64,
    pub integration: String,
    pub action: &'static str,
    pub trigger: &'static str,
    pub status: &'static str,
    pub fetched: i64,
    pub created: i64,
    pub updated: i64,
    pub deactivated: i64,
    pub skipped: i64,
    pub unchanged: u64,
    pub pages: u32,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// For a held run, or a dry run that a real run would hold: what and how to proceed.
    pub notice: Option<String>,
    /// The first skipped records, with reasons (all of them are in `history NAME`).
    pub skips: Vec<Skip>,
    /// A dry run's plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// Hides this run's secrets in whatever is printed from the report
    /// (source data in a plan or a skip reason could carry one).
    #[serde(skip)]
    pub redactor: Redactor,
}

impl RunReport {
    /// Whether the command that ran it succeeded (exit 0).
    pub fn succeeded(&self) -> bool {
        matches!(self.status, "ok" | "dry-run")
    }
}

/// Asks running runs to stop. A run that sees it before its transaction
/// applies nothing and is recorded `failed` with the reason `cancelled`.
#[derive(Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl Cancel {
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Completes once `cancel` has been called.
    pub async fn cancelled(&self) {
        loop {
            // Created before the check, so a cancel between the two is not missed.
            let notified = self.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

const CANCELLED: &str = "cancelled: rosterd was stopping; nothing was applied";

/// Records a run that did not start because another run of the same integration is going
/// (in the row `run_id` when one was made already).
pub fn record_skipped(config: &Config, m: &Manifest, trigger: Trigger, run_id: Option<i64>) -> Result<i64, StoreError> {
    let mut store = Store::open(&config.database)?;
    let run_id = match run_id {
        Some(id) => id,
        None => store.begin_run(&m.name, m.action.as_str(), trigger.as_str())?,
    };
    let reason = format!("another run of {} is in progress; this one was skipped", m.name);
    tracing::warn!(integration = %m.name, run_id, "{reason}");
    store.finish_run(run_id, &RunEnd { status: "skipped", error: Some(reason), ..RunEnd::default() })?;
    Ok(run_id)
}

/// How many skips a report carries; the rest are in the store.
const REPORT_SKIPS: usize = 100;

/// Holds an integration's run lock for as long as it lives; the OS releases it
/// when the process ends, so a killed run's lock is free again.
pub struct RunLock {
    _file: File,
}

/// Tries to take the run lock of `integration`; `None` while another run holds it.
pub fn try_lock(database: &Path, integration: &str) -> std::io::Result<Option<RunLock>> {
    let mut dir = database.as_os_str().to_owned();
    dir.push(".lock.d");
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    let file =
        OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(format!("{integration}.lock")))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(RunLock { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Runs `m` once. Errors are only those before a run could be recorded (the
/// store cannot be opened); a run that fails is an `Ok` report with status `failed`.
pub async fn run(m: &Manifest, config: &Config, opts: RunOptions, cancel: &Cancel) -> Result<RunReport, StoreError> {
    let started = Instant::now();
    let store = Store::open(&config.database)?;
    let mut report = RunReport {
        run_id: 0,
        integration: m.name.clone(),
        action: m.action.as_str(),
        trigger: opts.trigger.as_str(),
        status: "failed",
        fetched: 0,
        created: 0,
        updated: 0,
        deactivated: 0,
        skipped: 0,
        unchanged: 0,
        pages: 0,
        duration_ms: 0,
        error: None,
        notice: None,
        skips: Vec::new(),
        plan: None,
        redactor: Redactor::default(),
    };
    let lock = try_lock(&config.database, &m.name).map_err(|e| StoreError::Open {
        path: config.database.clone(),
        reason: format!("cannot take the run lock next to it: {}", crate::describe_io(&e)),
    })?;
    let Some(_lock) = lock else {
        drop(store);
        report.run_id = record_skipped(config, m, opts.trigger, opts.run_id)?;
        report.status = "skipped";
        report.error = Some(format!("another run of {} is in progress; this one was skipped", m.name));
        return Ok(report);
    };
    report.run_id = match opts.run_id {
        Some(id) => id,
        None => store.begin_run(&m.name, report.action, report.trigger)?,
    };
    store.close_abandoned_runs(&m.name, report.run_id)?;
    let span = tracing::info_span!("run", integration = %m.name, run_id = report.run_id, trigger = report.trigger);
    let (values, redactor) = form_values(m);
    report.redactor = redactor.clone();

    let (fetched, trace) = fetch_phase(m, config, opts, cancel, values, &redactor).instrument(span.clone()).await;
    let fetch_ms = started.elapsed().as_millis() as u64;
    let fetched = match fetched {
        Ok(f) => f,
        Err(e) => {
            let error = redactor.redact(&e);
            span.in_scope(|| tracing::error!("run failed: {error}"));
            let mut store = store;
            let end = RunEnd { status: "failed", error: Some(error.clone()), requests: trace, ..RunEnd::default() };
            store.finish_run(report.run_id, &end)?;
            report.error = Some(error);
            report.duration_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
    };
    report.pages = fetched.pages;
    report.fetched = fetched.records.len() as i64;

    let limit = m.max_deactivate.unwrap_or(config.max_deactivate);
    let applied = apply_phase(store, m, config, opts, cancel, &report, fetched.records, trace, limit)
        .instrument(span.clone())
        .await;
    let outcome = match applied {
        Ok(outcome) => outcome,
        Err(error) => return Ok(fail_after_fetch(config, report, error, started)),
    };
    let end = outcome.end;
    report.status = end.status;
    report.created = end.counts.created;
    report.updated = end.counts.updated;
    report.deactivated = end.counts.deactivated;
    report.skipped = end.counts.skipped;
    report.unchanged = outcome.plan.unchanged;
    report.error = end.error.as_deref().map(|e| redactor.redact(e));
    report.notice = over_limit(&outcome.plan, limit).and_then(|why| match end.status {
        "dry-run" => Some(format!("a real run would be held: it {why}; --force applies it")),
        "ok" => Some(format!("applied with --force: {why}")),
        "held" => Some(format!(
            "held: nothing applied; this run {why}. Check the source, then run again with --force to apply"
        )),
        _ => None,
    });
    report.skips = outcome.plan.skips.iter().take(REPORT_SKIPS).cloned().collect();
    if opts.dry_run {
        report.plan = Some(outcome.plan);
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    span.in_scope(|| {
        tracing::info!(
            status = report.status,
            fetched = report.fetched,
            created = report.created,
            updated = report.updated,
            deactivated = report.deactivated,
            skipped = report.skipped,
            fetch_ms,
            apply_ms = report.duration_ms.saturating_sub(fetch_ms),
            ms = report.duration_ms,
            "run finished"
        )
    });
    Ok(report)
}

/// Fetches every page into records, unless cancelled; the trace comes back either way.
async fn fetch_phase(
    m: &Manifest,
    config: &Config,
    opts: RunOptions,
    cancel: &Cancel,
    values: Map<String, Value>,
    redactor: &Redactor,
) -> (Result<fetch::Fetched, String>, Vec<crate::store::RequestRow>) {
    tracing::info!("fetching");
    let mut client = match Client::new(&config.http, redactor.clone()) {
        Ok(c) => c,
        Err(e) => return (Err(e), Vec::new()),
    };
    let show = opts.progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut progress = |pages: u32, records: usize| {
        if show {
            eprint!("\r{}: page {pages}, {records} records", m.name);
        }
    };
    let result = tokio::select! {
        result = fetch::fetch(m, values, &mut client, config.http.max_pages, &mut progress) => result,
        () = cancel.cancelled() => Err(CANCELLED.to_string()),
    };
    if show {
        eprintln!();
    }
    (result, std::mem::take(&mut client.trace))
}

/// Plans and applies the records in the store's one transaction, on a blocking
/// thread; decides how the run ends (ok, dry-run, held, cancelled).
#[allow(clippy::too_many_arguments)]
async fn apply_phase(
    store: Store,
    m: &Manifest,
    config: &Config,
    opts: RunOptions,
    cancel: &Cancel,
    report: &RunReport,
    records: crate::mapping::RecordArena,
    trace: Vec<crate::store::RequestRow>,
    limit: crate::config::Limit,
) -> Result<crate::store::ApplyOutcome, String> {
    let integration = m.name.clone();
    let mapped: Vec<Target> = m.data_structure.iter().map(|(t, _)| t.clone()).collect();
    let ignored = config.ignored_emails.clone();
    let (action, match_on, auto_clear_email) = (m.action, m.match_on, m.auto_clear_email);
    let (run_id, n_fetched) = (report.run_id, report.fetched);
    let cancel = cancel.clone();
    let redactor = report.redactor.clone();
    let applied = tokio::task::spawn_blocking(move || {
        let mut store = store;
        let opts_plan = PlanOptions {
            integration: &integration,
            action,
            match_on,
            mapped: &mapped,
            ignored_emails: &ignored,
            auto_clear_email,
        };
        store.apply_run(run_id, &records, &opts_plan, |plan| {
            let (status, error) = match (over_limit(plan, limit), opts.dry_run, opts.force) {
                _ if cancel.is_cancelled() => ("failed", Some(CANCELLED.to_string())),
                (_, true, _) => ("dry-run", None),
                (Some(why), false, false) => ("held", Some(format!("held: {why}; run with --force to apply"))),
                _ => ("ok", None),
            };
            let counts = Counts {
                fetched: n_fetched,
                created: plan.n_created as i64,
                updated: plan.n_changed() as i64,
                deactivated: plan.n_deactivated as i64,
                skipped: plan.n_skipped as i64,
            };
            let skips = plan
                .skips
                .iter()
                .map(|s| Skip {
                    record: s.record,
                    key: s.key.as_deref().map(|k| redactor.redact(k)),
                    reason: redactor.redact(&s.reason),
                })
                .collect();
            RunEnd { status, counts, error, skips, requests: trace }
        })
    })
    .await;
    match applied {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(e)) => Err(format!("applying failed and was rolled back: {e}")),
        Err(join) => Err(format!("applying stopped and was rolled back: {join}")),
    }
}

/// Why a plan deactivates more than `limit` allows, or `None` when it is within it.
fn over_limit(plan: &Plan, limit: crate::config::Limit) -> Option<String> {
    let allowed = limit.allowed(plan.owned_active);
    let n = plan.n_deactivated;
    (n > allowed).then(|| {
        format!(
            "would deactivate {n} of {} owned active users, over max_deactivate {limit} ({allowed})",
            plan.owned_active
        )
    })
}

/// The apply transaction failed (and rolled back): record the run as failed.
fn fail_after_fetch(config: &Config, mut report: RunReport, error: String, started: Instant) -> RunReport {
    tracing::error!(integration = %report.integration, run_id = report.run_id, "run failed: {error}");
    if let Ok(mut store) = Store::open(&config.database) {
        let end = RunEnd { status: "failed", error: Some(error.clone()), ..RunEnd::default() };
        if let Err(e) = store.finish_run(report.run_id, &end) {
            tracing::error!("cannot record the failure of run {}: {e}", report.run_id);
        }
    }
    report.status = "failed";
    report.error = Some(error);
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

/// The template values of a run (form values; `generate` ids get a fresh
/// random value) and the redactor that hides the secret ones.
fn form_values(m: &Manifest) -> (Map<String, Value>, Redactor) {
    let redactor = Redactor::default();
    let mut values = Map::new();
    for f in &m.form {
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

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    // Without an OS random source nothing else here is safe either; a clock
    // fallback keeps the value unique per run.
    if getrandom::getrandom(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
