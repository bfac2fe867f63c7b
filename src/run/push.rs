//! A run of a push manifest, the glue a run needs around `push`: get the
//! token, list the target (reconcile mode, every page, all or nothing) and
//! check its mapping, have `push` decide against the selected local users,
//! hold it when it removes more than `max_remove`, have `push::deliver` send
//! with `[push] concurrency` in flight, and write the run's end. A remote
//! API has no transaction: a failed request is recorded and the rest go on;
//! the run ends `failed` saying how many of each kind failed.

use serde_json::{Map, Value};

use super::{Ctx, FetchPhase, RunError, RunReport, fetch_phase, request_row, watch::Shown};
use crate::config::Limit;
use crate::fetch::Client;
use crate::manifest::{Push, PushMode, Rule, Target};
use crate::outcome::RunStatus;
use crate::port::{Outbound, Runs};
use crate::push::deliver::{BulkSpec, Delivery, Progress, Steps};
use crate::push::report::{KindCount, PushReport};
use crate::push::send::{Kind, SendRenewal, Sender};
use crate::push::{Listing, PushPlan, TARGET_ID};
use crate::redact::Redactor;
use crate::store::{Conn, RequestRow, RunEnd, Store, StoreError};

/// What a push has once its listing (or token) is in: the client it sends
/// with, the template values, and the requests made so far.
struct Ready {
    client: Client,
    values: Map<String, Value>,
    requests: Vec<RequestRow>,
    /// The listing's external-id path matched none of its records (why, when so).
    lost_ids: Option<String>,
}

/// How far a reconcile push's sending got.
struct Sent {
    sent: u64,
    stopped: bool,
    planned: u64,
}

/// Everything a push run needs from `run`: the run's context and the manifest's push block.
pub(super) struct PushRun<'a> {
    pub ctx: Ctx<'a>,
    pub push: &'a Push,
}

impl PushRun<'_> {
    pub(super) async fn run(
        self,
        mut report: RunReport,
        mut store: Conn,
        values: Map<String, Value>,
    ) -> Result<RunReport, StoreError> {
        let redactor = report.redactor.clone();
        // The listing (reconcile) or only the token (bulk).
        let (phase, listing_m) = match &self.push.mode {
            PushMode::Reconcile { target_id_from, .. } => {
                let mut listing = self.ctx.m.clone();
                listing.data_structure.push(Rule::new(Target::Extra(TARGET_ID.into()), target_id_from.clone()));
                let shown = Shown::start(self.ctx.db.clone(), report.run_id);
                let phase = fetch_phase(&self.ctx, &listing, values, &redactor, &shown).await;
                (phase, Some(listing))
            }
            PushMode::Bulk { .. } => (self.token_only(values, &redactor).await, None),
        };
        let requests: Vec<RequestRow> = phase.trace.iter().map(|a| request_row(a, &redactor)).collect();
        report.counts.pages = i64::from(phase.pages);
        report.counts.fetched = phase.records as i64;
        let (fetched, values) = match phase.result {
            Ok(f) => (f, phase.values),
            Err(e) => return self.failed(report, &mut store, self.ctx.deadline.explain(e), requests),
        };
        let mut listing = None;
        let mut lost_ids = None;
        if let Some(listing_m) = &listing_m {
            match super::check::Mapping::check(listing_m, &fetched, self.ctx.opts.dry_run, &redactor) {
                Ok(found) => {
                    report.warnings = found.warnings;
                    report.fields = found.fields;
                    lost_ids = found.key_missing;
                }
                Err(e) => return self.failed(report, &mut store, e, requests),
            }
            listing = Some(Listing::new(fetched.records));
        }
        let client = match Client::new(&self.ctx.config.http, redactor.clone(), self.ctx.m.allowed_origins.clone()) {
            Ok(c) => c,
            Err(e) => return self.failed(report, &mut store, e.into(), requests),
        };
        let ready = Ready { client, values, requests, lost_ids };
        match &self.push.mode {
            PushMode::Reconcile { create, update, remove, .. } => {
                let listing = listing.unwrap_or_else(|| Listing::new(Default::default()));
                let steps = Steps { create: create.as_ref(), update: update.as_ref(), remove: remove.as_ref() };
                self.reconcile(report, store, listing, steps, ready).await
            }
            PushMode::Bulk { request, batch, list_key, record } => {
                let bulk = BulkSpec { request, batch: *batch, list_key, record };
                self.bulk(report, store, bulk, ready).await
            }
        }
    }

    /// A bulk push lists nothing; it still needs its token.
    async fn token_only(&self, mut values: Map<String, Value>, redactor: &Redactor) -> FetchPhase {
        let mut client = match Client::new(&self.ctx.config.http, redactor.clone(), self.ctx.m.allowed_origins.clone())
        {
            Ok(c) => c,
            Err(e) => return FetchPhase::failed(e.into(), Vec::new()),
        };
        let prepared = crate::oauth::prepare(self.ctx.m, self.ctx.config, self.ctx.db, &mut values, &mut client).await;
        let trace = std::mem::take(&mut client.trace);
        match prepared {
            Ok(()) => FetchPhase { result: Ok(Default::default()), trace, pages: 0, records: 0, values },
            Err(e) => FetchPhase::failed(e.into(), trace),
        }
    }

    /// The selected local users against the listing, on a blocking thread
    /// (the users are streamed from the store, never all held).
    async fn plan(&self, listing: Listing) -> Result<(PushPlan, Listing), RunError> {
        let rules: Vec<Rule> = self.ctx.m.data_structure.clone();
        let select = self.push.select.clone();
        let db = self.ctx.db.clone();
        let planned = tokio::task::spawn_blocking(move || {
            let mut listing = listing;
            let mut plan = PushPlan::default();
            db.connect()?.push_users_each(&select, |user| {
                crate::push::consider(&mut plan, &mut listing, &rules, &user);
                true
            })?;
            crate::push::finish(&mut plan, &listing);
            Ok::<_, StoreError>((plan, listing))
        })
        .await;
        match planned {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => Err(RunError::Apply(e)),
            Err(e) => Err(RunError::Stopped(e.to_string())),
        }
    }

    /// Reconcile: plan, hold it over `max_remove` (a dry run lists it), then send.
    async fn reconcile(
        &self,
        mut report: RunReport,
        mut store: Conn,
        listing: Listing,
        steps: Steps<'_>,
        ready: Ready,
    ) -> Result<RunReport, StoreError> {
        let Ready { client, values, requests, lost_ids } = ready;
        let redactor = report.redactor.clone();
        let (plan, listing) = match self.plan(listing).await {
            Ok(done) => done,
            Err(e) => return self.failed(report, &mut store, e, requests),
        };
        let (mut summary, warnings) = PushReport::planned(&plan, &listing, &steps, &redactor);
        report.warnings.extend(warnings);
        report.unchanged = plan.unchanged;
        let removes = if steps.remove.is_some() { plan.removes.len() as u64 } else { 0 };
        let limit = self.push.max_remove.unwrap_or(self.ctx.config.push.max_remove);
        let creates = if steps.create.is_some() { plan.creates.len() as u64 } else { 0 };
        // A listing that lost its external ids would have every user created
        // again: held, as a source whose key path found nothing fails.
        let over = lost_ids
            .map(|why| format!("{why}: every selected user would be created on the target again"))
            .or_else(|| over_limit(removes, summary.target_users, limit))
            .or_else(|| {
                let limit = self.push.max_create?;
                limit
                    .check(creates, summary.target_users)
                    .map(|o| o.describe("it would create", "listed target users", "max_create"))
            });
        // What it would apply: a dry run and a held push record these (a push that sends, what it did).
        let planned = |kind: &str| summary.requests.get(kind).map_or(0, |c| c.planned as i64);
        (report.counts.created, report.counts.updated) = (planned("create"), planned("update"));
        report.counts.deactivated = planned("remove");
        if self.ctx.opts.dry_run {
            summary.list(&*store, &plan, &listing, &redactor)?;
            if let Some(why) = &over {
                report.notice = Some(format!("a real push would be held: {why}; --force sends it"));
            }
            report.push = Some(summary);
            return self.end(report, &mut store, RunStatus::DryRun, None, requests, 0);
        }
        if let Some(why) = over.filter(|_| !self.ctx.opts.force) {
            let error = format!("{why}; nothing was sent: check the target and the mapping, then push with --force");
            report.push = Some(summary);
            return self.end(report, &mut store, RunStatus::Held, Some(error), requests, 0);
        }
        // Send: creates, then updates, then removes.
        let mut composer_client = client.fork();
        // A 401 on a send renews the run's token once for all of them.
        let renewal = self.ctx.m.oauth.as_ref().map(|_| {
            let initial = values.get("oauth").cloned().unwrap_or_default();
            let renewer = crate::oauth::Renewer::new(std::sync::Arc::new(self.ctx.m.clone()), self.ctx.db, &values);
            SendRenewal::new(initial, Box::new(renewer))
        });
        let mut delivery = Delivery::new(self.ctx.m, &mut composer_client, values, redactor.clone());
        let mut sender = Sender::new(client.fork(), self.ctx.config.push.concurrency).with_renewal(renewal);
        let mut progress = Progress::new(report.run_id);
        let cancel = &self.ctx.deadline.cancel;
        let stopped = delivery
            .reconcile(&mut *store, &mut sender, &mut progress, (&plan, &listing, &steps), || cancel.is_cancelled())
            .await?;
        let rows = sender.finish().await;
        progress.record(&mut *store, rows)?;
        summary.peak_in_flight = sender.peak.load(std::sync::atomic::Ordering::SeqCst);
        let planned = (plan.creates.len() + plan.updates.len() + plan.removes.len()) as u64;
        let sent = Sent { sent: progress.sent, stopped, planned };
        self.settle(report, store, summary, sent, requests)
    }

    /// Bulk: the selected users in bodies of `batch`, one body at a time.
    async fn bulk(
        &self,
        mut report: RunReport,
        mut store: Conn,
        spec: BulkSpec<'_>,
        ready: Ready,
    ) -> Result<RunReport, StoreError> {
        let Ready { mut client, values, requests, .. } = ready;
        let client = &mut client;
        let redactor = report.redactor.clone();
        // The selected users' ids only; each batch is loaded when it is sent.
        let mut ids = Vec::new();
        store.push_users_each(&self.push.select, |u| {
            ids.push(u.id);
            true
        })?;
        let batches = ids.len().div_ceil(spec.batch.max(1));
        let mut summary = PushReport::default();
        let mut count = KindCount { planned: batches as u64, ..KindCount::default() };
        if self.ctx.opts.dry_run {
            summary.requests.insert("bulk", count);
            report.counts.created = 0;
            report.push = Some(summary);
            report.notice =
                Some(format!("would send {} users in {batches} bodies of at most {}", ids.len(), spec.batch));
            return self.end(report, &mut store, RunStatus::DryRun, None, requests, 0);
        }
        let mut progress = Progress::new(report.run_id);
        let mut composer_client = client.fork();
        let mut delivery = Delivery::new(self.ctx.m, &mut composer_client, values, redactor);
        let cancel = &self.ctx.deadline.cancel;
        let concurrency = self.ctx.config.push.concurrency;
        let sent = delivery
            .bulk(&mut *store, (&*client, concurrency), &mut progress, (&ids, &spec), || cancel.is_cancelled())
            .await?;
        client.trace.clear();
        (count.sent, count.failed) = (sent.requests, sent.failed);
        summary.requests.insert("bulk", count);
        report.counts.created = sent.created as i64;
        report.counts.updated = sent.updated as i64;
        progress.record(&mut *store, Vec::new())?;
        let mut problems = Vec::new();
        if count.failed > 0 {
            problems.push(format!("{} of {} bulk requests failed", count.failed, count.sent));
        }
        if sent.record_errors > 0 {
            problems.push(format!("the target reported {} record error(s)", sent.record_errors));
        }
        if sent.stopped {
            problems.push("stopped: rosterd was stopping; the remaining batches were not sent".into());
        }
        report.push = Some(summary);
        let (status, error) = if problems.is_empty() {
            (RunStatus::Ok, None)
        } else {
            (RunStatus::Failed, Some(format!("{}; see history --run {}", problems.join("; "), report.run_id)))
        };
        let sent = progress.sent;
        self.end(report, &mut store, status, error, requests, sent)
    }

    /// Counts what was sent and how it ended, and writes the run's end.
    fn settle(
        &self,
        mut report: RunReport,
        mut store: Conn,
        mut summary: PushReport,
        sent: Sent,
        requests: Vec<RequestRow>,
    ) -> Result<RunReport, StoreError> {
        for (kind, sent, failed) in store.push_counts(report.run_id)? {
            let entry = summary.requests.entry(kind_name(&kind)).or_default();
            (entry.sent, entry.failed) = (sent, failed);
        }
        let ok = |kind: &str| summary.requests.get(kind).map_or(0, |c| (c.sent - c.failed) as i64);
        report.counts.created = ok("create");
        report.counts.updated = ok("update");
        report.counts.deactivated = ok("remove");
        let failed: Vec<String> = summary
            .requests
            .iter()
            .filter(|(_, c)| c.failed > 0)
            .map(|(k, c)| format!("{} of {} {k}s", c.failed, c.sent))
            .collect();
        let mut problems = Vec::new();
        if !failed.is_empty() {
            problems.push(format!(
                "{} failed; the next push lists the target again and retries them (history --run {})",
                failed.join(", "),
                report.run_id
            ));
        }
        if sent.stopped {
            problems.push(format!(
                "stopped: rosterd was stopping; {} of {} requests were not sent",
                sent.planned - sent.sent.min(sent.planned),
                sent.planned
            ));
        }
        report.push = Some(summary);
        let (status, error) =
            if problems.is_empty() { (RunStatus::Ok, None) } else { (RunStatus::Failed, Some(problems.join("; "))) };
        self.end(report, &mut store, status, error, requests, sent.sent)
    }

    /// Writes the run's end and finishes the report.
    fn end(
        &self,
        mut report: RunReport,
        store: &mut Store,
        status: RunStatus,
        error: Option<String>,
        requests: Vec<RequestRow>,
        sent: u64,
    ) -> Result<RunReport, StoreError> {
        let redactor = report.redactor.clone();
        let error = error.map(|e| redactor.redact(&e));
        store.push_progress(report.run_id, sent as i64)?;
        let end = RunEnd {
            status,
            duration_ms: Some(self.ctx.started.elapsed().as_millis() as i64),
            warnings: report.warnings.clone(),
            counts: report.counts,
            error: error.clone(),
            // A push's own errors are rosterd's words (counts, limits); a failure
            // that carries a target's answer brings its summary (`failed`).
            summary: report.summary.take().map(|s| redactor.redact(&s)).or_else(|| error.clone()),
            skips: Vec::new(),
            requests,
        };
        store.finish_run(report.run_id, &end)?;
        report.status = status;
        report.error = error;
        report.duration_ms = self.ctx.started.elapsed().as_millis() as u64;
        Ok(report)
    }

    fn failed(
        &self,
        report: RunReport,
        store: &mut Store,
        e: RunError,
        requests: Vec<RequestRow>,
    ) -> Result<RunReport, StoreError> {
        let mut report = report;
        let error = report.redactor.redact(&e.to_string());
        tracing::debug!("push failed: {error}");
        report.summary = Some(e.summary());
        self.end(report, store, RunStatus::Failed, Some(error), requests, 0)
    }
}

fn kind_name(kind: &str) -> &'static str {
    Kind::ALL.iter().find(|k| k.as_str() == kind).map_or("unknown", |k| k.as_str())
}

/// Why removing `n` of `of` target users is over `limit`, if it is.
fn over_limit(n: u64, of: u64, limit: Limit) -> Option<String> {
    limit.check(n, of).map(|over| over.describe("it would remove", "target users", "max_remove"))
}
