//! One run of one integration, where fetching, deciding and storing meet:
//! take its lock, record the run, fetch every page (its progress shown in
//! its row), check the mapping, open the store's transaction (`Apply`) and
//! have the rules (`plan`) decide in it, decide how the run ends
//! (`RunStatus`, limits judged on the decisions), write a sync's
//! deactivations only when it commits, and finish (`apply`: that part, on
//! its blocking thread). A push manifest goes to
//! `push` (glue in `run/push.rs`) after the lock and the row; `import` drives
//! a bulk import the same way. The one place a run's errors are redacted. A
//! run that fails anywhere changes no user and leaves a `failed` row with a
//! one-line, redacted cause and its counts so far.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};
use tracing::Instrument;

mod apply;
mod check;
mod push;
mod watch;

pub use crate::push::report::{KindCount, PushReport};
pub use check::FieldCount;
pub use watch::Cancel;

use apply::{all_skipped, apply_phase, over_limit};
use check::{Mapping, redacted_plan};
use watch::{Deadline, Shown};

use crate::config::Config;
use crate::fetch::{self, Attempt, Client, FetchError};
use crate::manifest::Manifest;
use crate::outcome::{Counts, RunStatus};
use crate::plan::Plan;
use crate::port::Runs;
use crate::port::{Import, ImportTransaction, Skip};
use crate::redact::Redactor;
use crate::store::{Conn, Database, RequestRow, RunEnd, Store, StoreError};

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

/// What every step of one run reads: its manifest, the config, the
/// process's store, how it was asked to run, and its deadline.
struct Ctx<'a> {
    m: &'a Manifest,
    config: &'a Config,
    db: &'a Database,
    opts: RunOptions,
    deadline: &'a Deadline,
    started: Instant,
}

/// What a run did, as `run --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: i64,
    pub integration: String,
    pub action: &'static str,
    pub trigger: &'static str,
    pub status: RunStatus,
    #[serde(flatten)]
    pub counts: Counts,
    pub unchanged: u64,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// For a held run, or a dry run that a real run would hold: what and how to proceed.
    pub notice: Option<String>,
    /// What an admin should know about the mapping (a path that matched no record).
    pub warnings: Vec<String>,
    /// A dry run's mapping: each mapped field and how many records had it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldCount>,
    /// A dry run's first mapped record, redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<crate::mapping::Record>,
    /// The first skipped records, with reasons (all of them are in `history NAME`).
    pub skips: Vec<Skip>,
    /// A dry run's plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// Where the time went, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<Stages>,
    /// A push: its requests by kind (and, for a dry run, every create, update and remove).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<PushReport>,
    /// The error in rosterd's own words, when it differs from `error` (what
    /// the public status page shows).
    #[serde(skip)]
    pub summary: Option<String>,
    /// This run's secrets. Everything in the report that came from outside
    /// (errors, skips, a dry run's plan) is redacted already; rosterd's own
    /// names, keys and counts are never touched.
    #[serde(skip)]
    pub redactor: Redactor,
}

impl RunReport {
    /// A report of a run of `m` not yet begun: `failed` until it says otherwise.
    fn new(m: &Manifest, trigger: Trigger) -> Self {
        RunReport {
            run_id: 0,
            integration: m.name.clone(),
            action: m.action.as_str(),
            trigger: trigger.as_str(),
            status: RunStatus::Failed,
            counts: Counts::default(),
            unchanged: 0,
            duration_ms: 0,
            error: None,
            notice: None,
            warnings: Vec::new(),
            fields: Vec::new(),
            sample: None,
            skips: Vec::new(),
            plan: None,
            stages: None,
            push: None,
            summary: None,
            redactor: Redactor::default(),
        }
    }

    fn log_finished(&self, fetch_ms: u64) {
        let c = &self.counts;
        tracing::info!(
            status = %self.status,
            fetched = c.fetched,
            created = c.created,
            updated = c.updated,
            deactivated = c.deactivated,
            skipped = c.skipped,
            fetch_ms,
            apply_ms = self.duration_ms.saturating_sub(fetch_ms),
            ms = self.duration_ms,
            "run finished"
        );
    }

    /// Whether the command that ran it succeeded (exit 0).
    pub fn succeeded(&self) -> bool {
        self.status.succeeded()
    }
}

/// Where a run's time went, in milliseconds: `fetch` every page (the
/// reader maps pages meanwhile: `read` is its busy time, overlapping the
/// fetch), `check` the mapping, `plan` the decisions and their SQL writes
/// (streamed into the one transaction), `commit` it.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Stages {
    pub fetch_ms: u64,
    pub read_ms: u64,
    pub check_ms: u64,
    pub plan_ms: u64,
    pub commit_ms: u64,
}

/// Why a run did not apply. Its text is not redacted: `run` redacts it once,
/// where it leaves the run (report, `runs` row, log).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    OAuth(#[from] crate::oauth::OAuthError),
    #[error("cancelled: rosterd was stopping; nothing was applied")]
    Cancelled,
    #[error("timed out: the run took longer than [http] run_timeout_secs ({0} s); nothing was applied")]
    TimedOut(u64),
    /// The path of the run's key (email, or external_id for a sync matched on
    /// it) found nothing in any record: applying would create or match nobody sensibly.
    #[error("{0}; nothing was applied")]
    KeyPath(String),
    #[error("applying failed and was rolled back: {0}")]
    Apply(#[from] StoreError),
    #[error("applying stopped and was rolled back: {0}")]
    Stopped(String),
}

impl RunError {
    /// rosterd's own account of why the run failed, for the public status
    /// page: never a word of what a source or target answered.
    pub fn summary(&self) -> String {
        use crate::oauth::OAuthError;
        match self {
            RunError::Fetch(e) => e.summary(),
            RunError::OAuth(OAuthError::Token(e)) => format!("getting an OAuth token failed: {}", e.summary()),
            RunError::OAuth(OAuthError::Renew(e)) => format!("renewing the OAuth token failed: {}", e.summary()),
            RunError::OAuth(OAuthError::Link(_)) => "the OAuth authorize link cannot be made".into(),
            RunError::OAuth(OAuthError::Store(_)) | RunError::Apply(_) => {
                "the store failed; nothing was applied".into()
            }
            RunError::Stopped(_) => "applying stopped; nothing was applied".into(),
            // rosterd's own words, with names from the manifest only.
            other => other.to_string(),
        }
    }
}

/// Records a run that did not start because another run of the same
/// integration is `busy` (queued or running), in the row `run_id` when one
/// was made already.
pub fn record_skipped(
    store: &mut Store,
    m: &Manifest,
    trigger: Trigger,
    run_id: Option<i64>,
    busy: RunStatus,
) -> Result<i64, StoreError> {
    let run_id = match run_id {
        Some(id) => id,
        None => store.begin_run(&m.name, m.action.as_str(), trigger.as_str(), RunStatus::Running)?,
    };
    let reason = skip_reason(&m.name, busy);
    tracing::info!(integration = %m.name, run_id, "{reason}");
    let end =
        RunEnd { status: RunStatus::Skipped, summary: Some(reason.clone()), error: Some(reason), ..RunEnd::default() };
    store.finish_run(run_id, &end)?;
    Ok(run_id)
}

fn skip_reason(name: &str, busy: RunStatus) -> String {
    let state = if busy == RunStatus::Queued { "queued for a run slot" } else { "in progress" };
    format!("another run of {name} is {state}; this one was skipped")
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
pub async fn run(
    m: &Manifest,
    config: &Config,
    db: &Database,
    opts: RunOptions,
    cancel: &Cancel,
) -> Result<RunReport, StoreError> {
    let started = Instant::now();
    let mut store = db.connect()?;
    let mut report = RunReport::new(m, opts.trigger);
    let lock = try_lock(&config.database, &m.name).map_err(|e| StoreError::Open {
        path: config.database.clone(),
        reason: format!("cannot take the run lock next to it: {}", crate::describe_io(&e)),
    })?;
    let Some(_lock) = lock else {
        report.run_id = record_skipped(&mut store, m, opts.trigger, opts.run_id, RunStatus::Running)?;
        report.status = RunStatus::Skipped;
        report.error = Some(skip_reason(&m.name, RunStatus::Running));
        return Ok(report);
    };
    report.run_id = match opts.run_id {
        Some(id) => {
            store.mark_running(id)?;
            id
        }
        None => store.begin_run(&m.name, report.action, report.trigger, RunStatus::Running)?,
    };
    store.close_abandoned_runs(&m.name, report.run_id)?;
    if opts.dry_run {
        store.mark_dry_run(report.run_id)?;
    }
    let span = tracing::info_span!("run", integration = %m.name, run_id = report.run_id, trigger = report.trigger);
    let (values, redactor) = m.template_values();
    report.redactor = redactor.clone();

    // This run's own stop: rosterd stopping, or `[http] run_timeout_secs` passing.
    let deadline = Deadline::start(cancel, Duration::from_secs(config.http.run_timeout_secs), started);
    let ctx = Ctx { m, config, db, opts, deadline: &deadline, started };
    if let Some(p) = &m.push {
        let push = push::PushRun { ctx, push: p };
        let report = push.run(report, store, values).instrument(span.clone()).await?;
        span.in_scope(|| report.log_finished(0));
        return Ok(report);
    }
    let fetched = fetch_and_check(&ctx, values, &mut report).instrument(span.clone()).await;
    let fetched = match fetched {
        Ok(f) => f,
        Err((error, requests)) => {
            let error = deadline.explain(error);
            let summary = Some(redactor.redact(&error.summary()));
            let error = redactor.redact(&error.to_string());
            // The caller says it once: the daemon's log line, or the command's `error:`.
            span.in_scope(|| tracing::debug!("run failed: {error}"));
            let duration_ms = Some(started.elapsed().as_millis() as i64);
            let end = RunEnd {
                error: Some(error.clone()),
                summary,
                requests,
                counts: report.counts,
                duration_ms,
                ..RunEnd::default()
            };
            store.finish_run(report.run_id, &end)?;
            report.error = Some(error);
            report.duration_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
    };
    let limit = m.max_deactivate.unwrap_or(config.max_deactivate);
    let stages = fetched.stages;
    let applied = apply_phase(&ctx, store, &report, fetched).instrument(span.clone()).await;
    let (plan, end, (plan_ms, commit_ms)) = match applied {
        Ok(done) => done,
        Err((error, store)) => return Ok(fail_after_fetch(&ctx, store, report, deadline.explain(error))),
    };
    report.stages = Some(Stages { plan_ms, commit_ms, ..stages });
    report.status = end.status;
    report.counts = end.counts;
    report.unchanged = plan.unchanged;
    report.error = end.error.as_deref().map(|e| redactor.redact(e));
    report.notice = match all_skipped(&plan, report.counts.fetched) {
        Some(why) if opts.dry_run => Some(format!("a real run would fail: {}", redactor.redact(&why))),
        _ => over_limit(&plan, limit).and_then(|why| notice(end.status, &why)),
    };
    report.skips = end.skips.iter().take(REPORT_SKIPS).cloned().collect();
    if opts.dry_run {
        report.plan = Some(redacted_plan(plan, &redactor));
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    span.in_scope(|| report.log_finished(stages.fetch_ms));
    Ok(report)
}

/// What a fetch that passed the mapping's checks brings to the apply.
struct Fetched {
    records: crate::mapping::RecordArena,
    requests: Vec<RequestRow>,
    stages: Stages,
}

/// Fetches every page (its progress shown in the run's row) and checks the
/// mapping; `report` gains the counts, warnings and a dry run's sample. A
/// failure comes back with the requests made so far.
async fn fetch_and_check(
    ctx: &Ctx<'_>,
    values: Map<String, Value>,
    report: &mut RunReport,
) -> Result<Fetched, (RunError, Vec<RequestRow>)> {
    let (m, opts) = (ctx.m, ctx.opts);
    let started = Instant::now();
    let redactor = report.redactor.clone();
    let shown = Shown::start(ctx.db.clone(), report.run_id);
    let fetched = fetch_phase(ctx, m, values, &redactor, &shown).await;
    drop(shown);
    let mut stages = Stages { fetch_ms: started.elapsed().as_millis() as u64, ..Stages::default() };
    let requests: Vec<RequestRow> = fetched.trace.iter().map(|a| request_row(a, &redactor)).collect();
    report.counts.pages = i64::from(fetched.pages);
    report.counts.fetched = fetched.records as i64;
    let checking = Instant::now();
    let checked = fetched.result.and_then(|f| {
        stages.read_ms = f.read_ms;
        let found = Mapping::check(m, &f, opts.dry_run, &redactor)?;
        Ok((f.records, found))
    });
    stages.check_ms = checking.elapsed().as_millis() as u64;
    match checked {
        Ok((records, found)) => {
            report.warnings = found.warnings;
            report.fields = found.fields;
            report.sample = found.sample;
            Ok(Fetched { records, requests, stages })
        }
        Err(e) => Err((e, requests)),
    }
}

/// What a run over `max_deactivate` (`why`) means for a run that ended `status`.
fn notice(status: RunStatus, why: &str) -> Option<String> {
    match status {
        RunStatus::DryRun => Some(format!("a real run would be held: it {why}; --force applies it")),
        RunStatus::Ok => Some(format!("applied with --force: {why}")),
        // A held run's error says why, once; the report says nothing was applied.
        _ => None,
    }
}

/// What the fetch brought, and how far it got when it failed.
struct FetchPhase {
    result: Result<fetch::Fetched, RunError>,
    trace: Vec<Attempt>,
    /// Pages and records fetched, also when the fetch failed part way.
    pages: u32,
    records: usize,
    /// The template values the fetch used (with the OAuth token, when any).
    values: Map<String, Value>,
}

impl FetchPhase {
    fn failed(e: RunError, trace: Vec<Attempt>) -> FetchPhase {
        FetchPhase { result: Err(e), trace, pages: 0, records: 0, values: Map::new() }
    }
}

/// Fetches every page into records, unless cancelled; the trace and how far
/// it got come back either way.
/// `m` is the manifest whose requests are sent: the run's own, or a push's listing.
async fn fetch_phase(
    ctx: &Ctx<'_>,
    m: &Manifest,
    values: Map<String, Value>,
    redactor: &Redactor,
    shown: &Shown,
) -> FetchPhase {
    let (config, opts, cancel) = (ctx.config, ctx.opts, &ctx.deadline.cancel);
    tracing::info!("fetching");
    let mut client = match Client::new(&config.http, redactor.clone(), m.allowed_origins.clone()) {
        Ok(c) => c,
        Err(e) => return FetchPhase::failed(e.into(), Vec::new()),
    };
    let show = opts.progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (mut pages, mut records) = (0, 0);
    let mut progress = |p: u32, r: usize| {
        (pages, records) = (p, r);
        shown.note(p, r);
        if show {
            eprint!("\r{}: page {p}, {r} records", m.name);
        }
    };
    let mut values = values;
    let mut kept = Map::new();
    let work = async {
        crate::oauth::prepare(m, config, ctx.db, &mut values, &mut client).await?;
        if m.push.is_some() {
            kept = values.clone();
        }
        let mut renewer =
            m.oauth.as_ref().map(|_| crate::oauth::Renewer::new(std::sync::Arc::new(m.clone()), ctx.db, &values));
        let renew = renewer.as_mut().map(|r| r as &mut dyn fetch::Renew);
        let fetched = fetch::fetch(m, values, &mut client, config.http.max_pages, &mut progress, renew).await;
        // A token renewed during the fetch (a 401 of the listing) is the one
        // the rest of the run uses: a push's sends carry it.
        if let Some(token) = renewer.as_ref().and_then(|r| r.latest()) {
            kept.insert("oauth".into(), token.clone());
        }
        Ok(fetched?)
    };
    let result = tokio::select! {
        result = work => result,
        () = cancel.cancelled() => Err(RunError::Cancelled),
    };
    if show {
        eprintln!();
    }
    if let Ok(f) = &result {
        (pages, records) = (f.pages, f.records.len());
    }
    FetchPhase { result, trace: std::mem::take(&mut client.trace), pages, records, values: kept }
}

/// The apply transaction failed (and rolled back): record the run as failed,
/// through the run's store when the apply handed it back.
fn fail_after_fetch(ctx: &Ctx<'_>, store: Option<Conn>, mut report: RunReport, error: RunError) -> RunReport {
    let started = ctx.started;
    let summary = Some(report.redactor.redact(&error.summary()));
    let error = report.redactor.redact(&error.to_string());
    tracing::debug!(integration = %report.integration, run_id = report.run_id, "run failed: {error}");
    if let Some(mut store) = store.map_or_else(|| ctx.db.connect().ok(), Some) {
        let duration_ms = Some(started.elapsed().as_millis() as i64);
        let end =
            RunEnd { error: Some(error.clone()), summary, counts: report.counts, duration_ms, ..RunEnd::default() };
        if let Err(e) = store.finish_run(report.run_id, &end) {
            tracing::error!("cannot record the failure of run {}: {e}", report.run_id);
        }
    }
    report.status = RunStatus::Failed;
    report.error = Some(error);
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

/// Applies one bulk import in one transaction: the import rules decide
/// against the store's users (asked by index, so the cost follows the
/// request's size), the store writes what they decided, all or nothing.
pub fn import(
    store: &mut impl Import,
    records: &[crate::import::ImportRecord],
) -> Result<crate::import::ImportReply, StoreError> {
    let mut tx = store.begin_import()?;
    let (writes, reply) = crate::import::plan_import(records, &mut tx)?;
    tx.commit(&writes)?;
    Ok(reply)
}

/// A request of the run as its `runs` trace keeps it: URL and error redacted.
fn request_row(a: &Attempt, redactor: &Redactor) -> RequestRow {
    RequestRow {
        step: a.step.clone(),
        method: a.method.clone(),
        url: redactor.redact(&a.url),
        status: a.status,
        bytes: a.bytes,
        millis: a.millis,
        attempt: a.attempt,
        error: a.error.as_deref().map(|e| redactor.redact(e)),
    }
}

#[cfg(test)]
mod apply_tests;
