//! A run of a push manifest: get the token, list the target (reconcile
//! mode, every page, all or nothing), decide against the selected local
//! users (`push`), hold it when it removes more than `max_remove`, then send
//! with `[push] concurrency` in flight and record every outcome. A remote
//! API has no transaction: a failed request is recorded and the rest go on;
//! the run ends `failed` saying how many of each kind failed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Ctx, FetchPhase, RunError, RunReport, fetch_phase, request_row, watch::Shown};
use crate::config::Limit;
use crate::fetch::{Client, Composer};
use crate::manifest::{Manifest, Push, PushMode, Rule, Step, Target};
use crate::outcome::RunStatus;
use crate::port::{Outbound, Runs};
use crate::push::send::{Job, Kind, Sender};
use crate::push::{Listing, PlannedUpdate, PushPlan, TARGET_ID, user_context};
use crate::redact::Redactor;
use crate::store::{Conn, PushRow, RequestRow, RunEnd, Store, StoreError};
use crate::user::StoredUser;

/// Users loaded from the store per round of requests.
const CHUNK: usize = 256;

/// What a push did or would do, as `run --json` prints it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushReport {
    /// Per kind: planned, sent, failed.
    pub requests: BTreeMap<&'static str, KindCount>,
    /// Target users that have an external id (what `max_remove` is measured against).
    pub target_users: u64,
    /// The most requests that were in flight at once.
    pub peak_in_flight: usize,
    /// A dry run's plan: every create, update and remove.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub creates: Vec<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<PlannedUpdate>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removes: Vec<Value>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct KindCount {
    pub planned: u64,
    pub sent: u64,
    pub failed: u64,
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
        if let Some(listing_m) = &listing_m {
            match super::check::Mapping::check(listing_m, &fetched, self.ctx.opts.dry_run, &redactor) {
                Ok(found) => {
                    report.warnings = found.warnings;
                    report.fields = found.fields;
                }
                Err(e) => return self.failed(report, &mut store, e, requests),
            }
            listing = Some(Listing::new(fetched.records));
        }
        let mut client = match Client::new(&self.ctx.config.http, redactor.clone(), self.ctx.m.allowed_origins.clone())
        {
            Ok(c) => c,
            Err(e) => return self.failed(report, &mut store, e.into(), requests),
        };
        match &self.push.mode {
            PushMode::Reconcile { create, update, remove, .. } => {
                let listing = listing.unwrap_or_else(|| Listing::new(Default::default()));
                let steps = Steps { create: create.as_ref(), update: update.as_ref(), remove: remove.as_ref() };
                self.reconcile(report, store, listing, steps, client, values, requests).await
            }
            PushMode::Bulk { request, batch, list_key, record } => {
                let bulk = BulkSpec { request, batch: *batch, list_key, record };
                self.bulk(report, store, bulk, &mut client, values, requests).await
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

    #[allow(clippy::too_many_arguments)]
    async fn reconcile(
        &self,
        mut report: RunReport,
        mut store: Conn,
        listing: Listing,
        steps: Steps<'_>,
        client: Client,
        values: Map<String, Value>,
        requests: Vec<RequestRow>,
    ) -> Result<RunReport, StoreError> {
        let redactor = report.redactor.clone();
        let rules: Vec<Rule> = self.ctx.m.data_structure.clone();
        let select = self.push.select.clone();
        let db = self.ctx.db.clone();
        let planned = tokio::task::spawn_blocking(move || {
            let mut listing = listing;
            let mut plan = PushPlan::default();
            let store = db.connect()?;
            store.push_users_each(&select, |user| {
                crate::push::consider(&mut plan, &mut listing, &rules, &user);
                true
            })?;
            crate::push::finish(&mut plan, &listing);
            Ok::<_, StoreError>((plan, listing))
        })
        .await;
        let (plan, listing) = match planned {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return self.failed(report, &mut store, RunError::Apply(e), requests),
            Err(e) => return self.failed(report, &mut store, RunError::Stopped(e.to_string()), requests),
        };
        let mut summary = PushReport { target_users: listing.with_external_id(), ..PushReport::default() };
        for d in &listing.duplicates {
            report.warnings.push(
                redactor.redact(&format!(
                    "external id \"{d}\" is held by more than one target user; none of them is removed"
                )),
            );
        }
        let sendable = |step: Option<&Step>, n: usize| if step.is_some() { n as u64 } else { 0 };
        summary.requests.insert(
            "create",
            KindCount { planned: sendable(steps.create, plan.creates.len()), ..KindCount::default() },
        );
        summary.requests.insert(
            "update",
            KindCount { planned: sendable(steps.update, plan.updates.len()), ..KindCount::default() },
        );
        summary.requests.insert(
            "remove",
            KindCount { planned: sendable(steps.remove, plan.removes.len()), ..KindCount::default() },
        );
        for (kind, step, n) in
            [("create", steps.create, plan.creates.len()), ("update", steps.update, plan.updates.len())]
        {
            if step.is_none() && n > 0 {
                report.warnings.push(format!("{n} {kind}(s) needed, but the manifest has no push.{kind} request"));
            }
        }
        report.unchanged = plan.unchanged;
        let removes = if steps.remove.is_some() { plan.removes.len() as u64 } else { 0 };
        let limit = self.push.max_remove.unwrap_or(self.ctx.config.push.max_remove);
        let over = over_limit(removes, summary.target_users, limit);

        if self.ctx.opts.dry_run {
            self.dry_run_lists(&store, &plan, &listing, &mut summary, &redactor)?;
            if let Some(why) = &over {
                report.notice = Some(format!("a real push would be held: {why}; --force sends it"));
            }
            report.push = Some(summary);
            return self.end(report, &mut store, RunStatus::DryRun, None, requests, 0);
        }
        if let Some(why) = over.filter(|_| !self.ctx.opts.force) {
            let error =
                format!("held: {why}; nothing was sent. Check the target and the mapping, then push with --force");
            report.notice = Some(error.clone());
            report.push = Some(summary);
            return self.end(report, &mut store, RunStatus::Held, Some(error), requests, 0);
        }

        // Send: creates, then updates, then removes.
        let mut composer_client = client.fork();
        let names = extra_names(self.ctx.m);
        let mut composer = Composer::new(self.ctx.m, &mut composer_client, values);
        let mut sender = Sender::new(client.fork(), self.ctx.config.push.concurrency);
        let mut progress = Progress::new(report.run_id);
        let mut stopped = false;
        let cancel = &self.ctx.deadline.cancel;
        'send: {
            if let Some(step) = steps.create {
                for ids in plan.creates.chunks(CHUNK) {
                    let users = store.users_by_ids(ids)?;
                    for user in &users {
                        if cancel.is_cancelled() {
                            stopped = true;
                            break 'send;
                        }
                        composer.set("user", user_context(user, &names));
                        let job = job(&composer, step, Kind::Create, user, None, &redactor);
                        sender.send(job).await;
                        progress.tick(&mut store, &mut sender)?;
                    }
                }
            }
            if let Some(step) = steps.update {
                for chunk in plan.updates.chunks(CHUNK) {
                    let ids: Vec<i64> = chunk.iter().map(|u| u.user_id).collect();
                    let users = store.users_by_ids(&ids)?;
                    for u in chunk {
                        let Some(user) = users.iter().find(|s| s.id == u.user_id) else { continue };
                        if cancel.is_cancelled() {
                            stopped = true;
                            break 'send;
                        }
                        composer.set("user", user_context(user, &names));
                        composer.set("target", json!({"id": u.target_id}));
                        let job = job(&composer, step, Kind::Update, user, u.target_id.clone(), &redactor);
                        sender.send(job).await;
                        progress.tick(&mut store, &mut sender)?;
                    }
                }
            }
            if let Some(step) = steps.remove {
                for i in &plan.removes {
                    if cancel.is_cancelled() {
                        stopped = true;
                        break 'send;
                    }
                    let record = listing.record(*i);
                    let target_id = listing.target_id(*i);
                    // `{{ user.* }}` for a remove: the target's own record (the local user may be gone).
                    let stand_in =
                        StoredUser { id: 0, fields: record.fields, active: false, extra: Map::new(), owner: None };
                    composer.set("user", user_context(&stand_in, &names));
                    composer.set("target", json!({"id": target_id}));
                    let job = job(&composer, step, Kind::Remove, &stand_in, target_id, &redactor);
                    sender.send(job).await;
                    progress.tick(&mut store, &mut sender)?;
                }
            }
        }
        let rows = sender.finish().await;
        progress.record(&mut store, rows)?;
        summary.peak_in_flight = sender.peak.load(std::sync::atomic::Ordering::SeqCst);
        self.settle(
            report,
            store,
            summary,
            progress,
            stopped,
            requests,
            plan.creates.len() + plan.updates.len() + plan.removes.len(),
        )
    }

    /// A dry run's lists: every create (external id, email, name), update
    /// (field: target → local) and remove, values redacted.
    fn dry_run_lists(
        &self,
        store: &Store,
        plan: &PushPlan,
        listing: &Listing,
        summary: &mut PushReport,
        redactor: &Redactor,
    ) -> Result<(), StoreError> {
        let text = |v: Option<&str>| v.map_or(Value::Null, |s| Value::String(redactor.redact(s)));
        for ids in plan.creates.chunks(CHUNK) {
            for u in store.users_by_ids(ids)? {
                summary.creates.push(json!({
                    "external_id": text(u.fields.external_id.as_deref()),
                    "email": text(u.fields.email.as_deref()),
                    "first_name": text(u.fields.first_name.as_deref()),
                    "last_name": text(u.fields.last_name.as_deref()),
                }));
            }
        }
        summary.updates = plan.updates.clone();
        for u in &mut summary.updates {
            u.external_id = redactor.redact(&u.external_id);
            for c in &mut u.changes {
                for v in [&mut c.target, &mut c.local] {
                    if let Value::String(s) = v {
                        *s = redactor.redact(s);
                    }
                }
            }
        }
        for i in &plan.removes {
            let r = listing.record(*i);
            summary.removes.push(json!({
                "external_id": text(r.fields.external_id.as_deref()),
                "target_id": text(listing.target_id(*i).as_deref()),
                "email": text(r.fields.email.as_deref()),
            }));
        }
        Ok(())
    }

    async fn bulk(
        &self,
        mut report: RunReport,
        mut store: Conn,
        spec: BulkSpec<'_>,
        client: &mut Client,
        values: Map<String, Value>,
        requests: Vec<RequestRow>,
    ) -> Result<RunReport, StoreError> {
        let redactor = report.redactor.clone();
        let names = extra_names(self.ctx.m);
        let mut composer_client = client.fork();
        let mut composer = Composer::new(self.ctx.m, &mut composer_client, values);
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
        let mut stopped = false;
        let (mut created, mut updated) = (0u64, 0u64);
        let mut record_errors = 0u64;
        for chunk in ids.chunks(spec.batch.max(1)) {
            if self.ctx.deadline.cancel.is_cancelled() {
                stopped = true;
                break;
            }
            let users = store.users_by_ids(chunk)?;
            let mut records = Vec::with_capacity(users.len());
            let mut failed_render = None;
            for user in &users {
                composer.set("user", user_context(user, &names));
                match composer.record(spec.record, "push.bulk") {
                    Ok(r) => records.push(r),
                    Err(e) => {
                        failed_render = Some(redactor.redact(&e.to_string()));
                        break;
                    }
                }
            }
            let first = users.first().and_then(|u| u.fields.external_id.clone());
            let mut row = PushRow {
                kind: "bulk".into(),
                external_id: first.map(|f| redactor.redact(&f)),
                target_id: None,
                status: None,
                error: None,
            };
            count.sent += 1;
            let request = failed_render.map_or_else(
                || composer.request(spec.request, "push.bulk").map_err(|e| redactor.redact(&e.to_string())),
                Err,
            );
            match request {
                Err(e) => row.error = Some(e),
                Ok(mut req) => {
                    let mut body = Map::new();
                    body.insert(spec.list_key.to_string(), Value::Array(records));
                    req.body = Some(Value::Object(body).to_string().into_bytes());
                    if !req.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
                        req.headers.push(("Content-Type".into(), "application/json".into()));
                    }
                    match client.send(&req).await {
                        Ok(resp) => {
                            row.status = Some(resp.status.as_u16());
                            let reply = crate::push::bulk::read_reply(&resp.body, &redactor);
                            created += reply.created;
                            updated += reply.updated;
                            record_errors += reply.errors.len() as u64;
                            progress.rows.extend(reply.errors);
                        }
                        Err(e) => {
                            row.status = e.status();
                            row.error = Some(redactor.redact(&e.to_string()));
                        }
                    }
                }
            }
            if row.error.is_some() {
                count.failed += 1;
            }
            progress.rows.push(row);
            progress.sent += 1;
            progress.flush_if_due(&mut store)?;
        }
        client.trace.clear();
        summary.requests.insert("bulk", count);
        report.counts.created = created as i64;
        report.counts.updated = updated as i64;
        progress.record(&mut store, Vec::new())?;
        let mut problems = Vec::new();
        if count.failed > 0 {
            problems.push(format!("{} of {} bulk requests failed", count.failed, count.sent));
        }
        if record_errors > 0 {
            problems.push(format!("the target reported {record_errors} record error(s)"));
        }
        if stopped {
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
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &self,
        mut report: RunReport,
        mut store: Conn,
        mut summary: PushReport,
        progress: Progress,
        stopped: bool,
        requests: Vec<RequestRow>,
        planned: usize,
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
        if stopped {
            problems.push(format!(
                "stopped: rosterd was stopping; {} of {planned} requests were not sent",
                planned as u64 - progress.sent.min(planned as u64)
            ));
        }
        report.push = Some(summary);
        let (status, error) =
            if problems.is_empty() { (RunStatus::Ok, None) } else { (RunStatus::Failed, Some(problems.join("; "))) };
        let sent = progress.sent;
        self.end(report, &mut store, status, error, requests, sent)
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
        let error = report.redactor.redact(&e.to_string());
        tracing::debug!("push failed: {error}");
        self.end(report, store, RunStatus::Failed, Some(error), requests, 0)
    }
}

struct Steps<'a> {
    create: Option<&'a Step>,
    update: Option<&'a Step>,
    remove: Option<&'a Step>,
}

struct BulkSpec<'a> {
    request: &'a Step,
    batch: usize,
    list_key: &'a str,
    record: &'a Value,
}

/// Finished push requests, written to the store (and the run's progress)
/// about once a second, so memory holds only the last second's outcomes.
struct Progress {
    run_id: i64,
    rows: Vec<PushRow>,
    sent: u64,
    last: Instant,
}

impl Progress {
    fn new(run_id: i64) -> Progress {
        Progress { run_id, rows: Vec::new(), sent: 0, last: Instant::now() }
    }

    fn tick(&mut self, store: &mut Store, sender: &mut Sender) -> Result<(), StoreError> {
        self.sent = sender.sent;
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.rows.extend(sender.take_done());
        }
        self.flush_if_due(store)
    }

    fn flush_if_due(&mut self, store: &mut Store) -> Result<(), StoreError> {
        if self.last.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        self.last = Instant::now();
        store.record_push(self.run_id, &std::mem::take(&mut self.rows))?;
        store.push_progress(self.run_id, self.sent as i64)
    }

    fn record(&mut self, store: &mut Store, rows: Vec<PushRow>) -> Result<(), StoreError> {
        self.rows.extend(rows);
        store.record_push(self.run_id, &std::mem::take(&mut self.rows))
    }
}

fn kind_name(kind: &str) -> &'static str {
    Kind::ALL.iter().find(|k| k.as_str() == kind).map_or("unknown", |k| k.as_str())
}

/// A request for `user` (or a job that records why it could not be made).
fn job(
    composer: &Composer<'_>,
    step: &Step,
    kind: Kind,
    user: &StoredUser,
    target_id: Option<String>,
    redactor: &Redactor,
) -> Job {
    let external_id = user.fields.external_id.clone();
    let request =
        composer.request(step, &format!("push.{}", kind.as_str())).map_err(|e| redactor.redact(&e.to_string()));
    Job { kind, external_id, target_id, request }
}

/// The extra field names a push manifest's templates use (`user.extra.<name>`).
fn extra_names(m: &Manifest) -> Vec<String> {
    let mut texts: Vec<&str> = Vec::new();
    fn strings<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
            Value::Object(o) => o.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let steps: Vec<&Step> = match m.push.as_ref().map(|p| &p.mode) {
        Some(PushMode::Reconcile { create, update, remove, .. }) => {
            [create, update, remove].into_iter().flatten().collect()
        }
        Some(PushMode::Bulk { request, record, .. }) => {
            strings(record, &mut texts);
            vec![request]
        }
        None => Vec::new(),
    };
    for s in &steps {
        texts.push(&s.url);
        if let Some(d) = &s.data {
            strings(d, &mut texts);
        }
    }
    let mut names: Vec<String> = texts
        .iter()
        .flat_map(|t| crate::template::names(t).unwrap_or_default())
        .filter_map(|n| n.strip_prefix("user.extra.").map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Why removing `n` of `of` target users is over `limit`, if it is.
fn over_limit(n: u64, of: u64, limit: Limit) -> Option<String> {
    limit.check(n, of).map(|over| over.describe("it would remove", "target users", "max_remove"))
}
