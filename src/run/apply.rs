//! A run's apply, on a blocking thread: the rules (`plan`) decide the
//! records inside the store's transaction (`Apply`), the run's end is
//! decided from the decisions (limits judged before a deactivation is
//! written, a run that skips every record failed), and only a run that
//! commits writes its deactivations.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Ctx, Fetched, RunError, RunOptions, RunReport};
use crate::manifest::Target;
use crate::outcome::{Counts, RunStatus};
use crate::plan::{Plan, PlanOptions};
use crate::port::{Apply, RunEnd, RunTransaction, Skip, StoreError};
use crate::redact::Redactor;
use crate::store::Conn;

/// What the apply needs, owned, to move onto its blocking thread.
struct ApplyJob {
    integration: String,
    action: crate::manifest::Action,
    match_on: crate::manifest::MatchOn,
    auto_clear_email: bool,
    /// The targets the manifest maps, a full name as the first and last name it fills.
    mapped: Vec<Target>,
    ignored: Vec<crate::user::Email>,
    limit: crate::config::Limit,
    opts: RunOptions,
    run_id: i64,
    fetched: Counts,
    warnings: Vec<String>,
    redactor: Redactor,
    started: Instant,
}

/// What an applied run brings back: its plan, how it ended, and the plan and commit times.
type Applied = (Plan, RunEnd, (u64, u64));

/// Plans the records in the store's one transaction, on a blocking thread;
/// decides how the run ends (ok, dry-run, held, cancelled) and only then
/// tells the store to commit or roll back. A failure hands the store back
/// (unless the thread died) so the run's row can say so.
pub(super) async fn apply_phase(
    ctx: &Ctx<'_>,
    mut store: Conn,
    report: &RunReport,
    fetched: Fetched,
) -> Result<Applied, (RunError, Option<Conn>)> {
    let (m, config, opts, deadline) = (ctx.m, ctx.config, ctx.opts, ctx.deadline);
    // A full name fills first and last name: those are what an update compares.
    let mapped: Vec<Target> = m
        .data_structure
        .iter()
        .flat_map(|r| match r.target {
            Target::Name { first, last } => [
                first.then_some(Target::Core(crate::user::Field::FirstName)),
                last.then_some(Target::Core(crate::user::Field::LastName)),
            ]
            .into_iter()
            .flatten()
            .collect(),
            ref t => vec![t.clone()],
        })
        .collect();
    let job = ApplyJob {
        integration: m.name.clone(),
        action: m.action,
        match_on: m.match_on,
        auto_clear_email: m.auto_clear_email,
        mapped,
        ignored: config.ignored_emails.clone(),
        limit: m.max_deactivate.unwrap_or(config.max_deactivate),
        opts,
        run_id: report.run_id,
        fetched: report.counts,
        warnings: report.warnings.clone(),
        redactor: report.redactor.clone(),
        started: deadline.started,
    };
    let (cancel, timed_out, limit_secs) =
        (deadline.cancel.clone(), deadline.timed_out.clone(), deadline.limit.as_secs());
    let applied = tokio::task::spawn_blocking(move || {
        let stopped = move || {
            cancel.is_cancelled().then(|| match timed_out.load(Ordering::SeqCst) {
                true => RunError::TimedOut(limit_secs),
                false => RunError::Cancelled,
            })
        };
        let result = apply(&mut *store, job, fetched, stopped);
        (result, store)
    })
    .await;
    match applied {
        Ok((Ok(done), _)) => Ok(done),
        Ok((Err(e), store)) => Err((RunError::Apply(e), Some(store))),
        Err(join) => Err((RunError::Stopped(join.to_string()), None)),
    }
}

/// The apply itself, on its blocking thread: plan in the run's transaction,
/// decide how the run ends (`stopped`: whether it was cancelled meanwhile),
/// write the deactivations only when it commits, finish.
fn apply(
    store: &mut impl Apply,
    job: ApplyJob,
    fetched: Fetched,
    stopped: impl FnOnce() -> Option<RunError>,
) -> Result<Applied, StoreError> {
    let opts_plan = PlanOptions {
        integration: &job.integration,
        action: job.action,
        match_on: job.match_on,
        mapped: &job.mapped,
        ignored_emails: &job.ignored,
        auto_clear_email: job.auto_clear_email,
    };
    let planning = Instant::now();
    let records = fetched.records;
    let mut tx = store.begin_apply(job.run_id, &records)?;
    let plan = crate::plan::plan(&records, &mut tx, &opts_plan)?;
    // Judged on the decisions, before a single deactivation is written.
    let (status, error, summary) = decide(&plan, (job.fetched.fetched, job.limit), job.opts, stopped());
    let error = error.map(|e| job.redactor.redact(&e));
    let summary = summary.map(|e| job.redactor.redact(&e));
    if status.commits() {
        crate::plan::deactivate(&mut tx, &plan)?;
    }
    let plan_ms = planning.elapsed().as_millis() as u64;
    let counts = Counts {
        fetched: job.fetched.fetched,
        pages: job.fetched.pages,
        created: plan.n_created as i64,
        updated: plan.n_changed() as i64,
        deactivated: plan.n_deactivated as i64,
        skipped: plan.n_skipped as i64,
    };
    let redactor = &job.redactor;
    let skips = plan
        .skips
        .iter()
        .map(|s| Skip {
            record: s.record,
            key: s.key.as_deref().map(|k| redactor.redact(k)),
            reason: redactor.redact(&s.reason),
        })
        .collect();
    let duration_ms = Some(job.started.elapsed().as_millis() as i64);
    let end = RunEnd {
        status,
        duration_ms,
        warnings: job.warnings,
        counts,
        error,
        summary,
        skips,
        requests: fetched.requests,
    };
    let committing = Instant::now();
    tx.finish(&end)?;
    Ok((plan, end, (plan_ms, committing.elapsed().as_millis() as u64)))
}

/// How a planned run ends, before anything is committed: its status, its
/// error, and the error's public summary (rosterd's own words only).
fn decide(
    plan: &Plan,
    (fetched, limit): (i64, crate::config::Limit),
    opts: RunOptions,
    stopped: Option<RunError>,
) -> (RunStatus, Option<String>, Option<String>) {
    if let Some(why) = stopped {
        return (RunStatus::Failed, Some(why.to_string()), Some(why.summary()));
    }
    if let Some(why) = all_skipped(plan, fetched).filter(|_| !opts.dry_run) {
        let summary = format!("every one of the {fetched} records was skipped; nothing was applied");
        return (RunStatus::Failed, Some(why), Some(summary));
    }
    match (over_limit(plan, limit), opts.dry_run, opts.force) {
        (_, true, _) => (RunStatus::DryRun, None, None),
        (Some(why), false, false) => (
            RunStatus::Held,
            Some(format!("{why}; nothing was applied: check the source, then run again with --force to apply")),
            Some(format!("held: {why}")),
        ),
        _ => (RunStatus::Ok, None, None),
    }
}

/// Why a run whose every one of `fetched` records was skipped fails: a
/// mistyped mapping must never look like success to cron. Names the most
/// common reason and how many records had it.
pub(super) fn all_skipped(plan: &Plan, fetched: i64) -> Option<String> {
    if fetched <= 0 || plan.n_skipped < fetched as u64 {
        return None;
    }
    let mut reasons: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for s in &plan.skips {
        *reasons.entry(s.reason.as_str()).or_default() += 1;
    }
    // The most common; of equals, the first in text order, so the message is stable.
    let (reason, n) = reasons.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))?;
    Some(format!(
        "every one of the {fetched} records was skipped, so nothing was applied (most often: {reason}; \
         {n} of them); check the mapping: `rosterd run NAME --dry-run` shows what each field found"
    ))
}

/// Why a plan deactivates more than `limit` allows, or `None` when it is within it.
pub(super) fn over_limit(plan: &Plan, limit: crate::config::Limit) -> Option<String> {
    limit
        .check(plan.n_deactivated, plan.owned_active)
        .map(|over| over.describe("would deactivate", "owned active users", "max_deactivate"))
}
