//! Sending what a push decided: creates, then updates, then removes
//! (reconcile), or the selected users in bodies of `batch` (bulk), each
//! request rendered from the user (`{{ user.* }}`, `{{ target.id }}`) and
//! handed to the `Sender`; every outcome is recorded through the store's
//! `Outbound` port about once a second, so memory holds only the last
//! second's. Stopping (`stop` answers true) sends nothing new and waits for
//! what is in flight. What a run ends as is `run`'s to say.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use serde_json::{Map, Value, json};

use super::send::{Job, Kind, Sender};
use super::{Listing, PushPlan, user_context};
use crate::fetch::{Client, Composer};
use crate::manifest::{Manifest, PushMode, Step};
use crate::port::{Outbound, PushRow, StoreError};
use crate::redact::Redactor;
use crate::user::StoredUser;

/// Users loaded from the store per round of requests.
pub const CHUNK: usize = 256;

/// A reconcile push's requests, each optional in the manifest.
pub struct Steps<'a> {
    pub create: Option<&'a Step>,
    pub update: Option<&'a Step>,
    pub remove: Option<&'a Step>,
}

/// A bulk push: the request, users per body, the body's list key and each user's record.
pub struct BulkSpec<'a> {
    pub request: &'a Step,
    pub batch: usize,
    pub list_key: &'a str,
    pub record: &'a Value,
}

/// What a push sends with: the manifest's templates and the names of the
/// extra fields they use, the composer that renders them, and the redactor
/// for what goes into the record.
pub struct Delivery<'c> {
    pub composer: Composer<'c>,
    pub names: Vec<String>,
    pub redactor: Redactor,
}

impl<'c> Delivery<'c> {
    pub fn new(m: &'c Manifest, client: &'c mut Client, values: Map<String, Value>, redactor: Redactor) -> Self {
        Delivery { composer: Composer::new(m, client, values), names: extra_names(m), redactor }
    }

    /// A request for `user` (or a job that records why it could not be made).
    fn job(&self, step: &Step, kind: Kind, user: &StoredUser, target_id: Option<String>) -> Job {
        let external_id = user.fields.external_id.clone();
        let request = self
            .composer
            .request(step, &format!("push.{}", kind.as_str()))
            .map_err(|e| self.redactor.redact(&e.to_string()));
        Job { kind, external_id, target_id, request }
    }

    /// Sends a reconcile plan: creates, then updates, then removes; returns
    /// whether it stopped before the end. `progress` holds every outcome.
    pub async fn reconcile(
        &mut self,
        store: &mut impl Outbound,
        sender: &mut Sender,
        progress: &mut Progress,
        (plan, listing, steps): (&PushPlan, &Listing, &Steps<'_>),
        stop: impl Fn() -> bool,
    ) -> Result<bool, StoreError> {
        if let Some(step) = steps.create {
            for ids in plan.creates.chunks(CHUNK) {
                for user in &store.users_by_ids(ids)? {
                    if stop() {
                        return Ok(true);
                    }
                    self.composer.set("user", user_context(user, &self.names));
                    sender.send(self.job(step, Kind::Create, user, None)).await;
                    progress.tick(store, sender)?;
                }
            }
        }
        if let Some(step) = steps.update {
            for chunk in plan.updates.chunks(CHUNK) {
                let ids: Vec<i64> = chunk.iter().map(|u| u.user_id).collect();
                let users = store.users_by_ids(&ids)?;
                for u in chunk {
                    let Some(user) = users.iter().find(|s| s.id == u.user_id) else { continue };
                    if stop() {
                        return Ok(true);
                    }
                    self.composer.set("user", user_context(user, &self.names));
                    self.composer.set("target", json!({"id": u.target_id}));
                    sender.send(self.job(step, Kind::Update, user, u.target_id.clone())).await;
                    progress.tick(store, sender)?;
                }
            }
        }
        if let Some(step) = steps.remove {
            for i in &plan.removes {
                if stop() {
                    return Ok(true);
                }
                let record = listing.record(*i);
                let target_id = listing.target_id(*i);
                // `{{ user.* }}` for a remove: the target's own record (the local user may be gone).
                let stand_in =
                    StoredUser { id: 0, fields: record.fields, active: false, extra: Map::new(), owner: None };
                self.composer.set("user", user_context(&stand_in, &self.names));
                self.composer.set("target", json!({"id": target_id}));
                sender.send(self.job(step, Kind::Remove, &stand_in, target_id)).await;
                progress.tick(store, sender)?;
            }
        }
        Ok(false)
    }

    /// Sends the users `ids` in bodies of `spec.batch`, `concurrency` bodies
    /// at a time (each rendered here, in order, then sent on its own task).
    pub async fn bulk(
        &mut self,
        store: &mut impl Outbound,
        (client, concurrency): (&Client, usize),
        progress: &mut Progress,
        (ids, spec): (&[i64], &BulkSpec<'_>),
        stop: impl Fn() -> bool,
    ) -> Result<BulkSent, StoreError> {
        let mut sent = BulkSent::default();
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut tasks: JoinSet<(PushRow, Option<super::bulk::Reply>)> = JoinSet::new();
        for chunk in ids.chunks(spec.batch.max(1)) {
            if stop() {
                sent.stopped = true;
                break;
            }
            let users = store.users_by_ids(chunk)?;
            let first = users.first().and_then(|u| u.fields.external_id.clone());
            let row = PushRow {
                kind: "bulk".into(),
                external_id: first.map(|f| self.redactor.redact(&f)),
                target_id: None,
                status: None,
                error: None,
            };
            sent.requests += 1;
            let request = self.bulk_request(&users, spec);
            let Ok(slot) = slots.clone().acquire_owned().await else { break };
            while let Some(Ok(done)) = tasks.try_join_next() {
                note_bulk(done, &mut sent, progress);
            }
            let (mut client, redactor) = (client.fork(), self.redactor.clone());
            tasks.spawn(async move {
                let mut row = row;
                let reply = match request {
                    Err(e) => {
                        row.error = Some(e);
                        None
                    }
                    Ok(req) => match client.send(&req).await {
                        Ok(resp) => {
                            row.status = Some(resp.status.as_u16());
                            Some(super::bulk::read_reply(&resp.body, &redactor))
                        }
                        Err(e) => {
                            row.status = e.status();
                            row.error = Some(redactor.redact(&e.to_string()));
                            None
                        }
                    },
                };
                drop(slot);
                (row, reply)
            });
            progress.flush_if_due(store)?;
        }
        while let Some(joined) = tasks.join_next().await {
            if let Ok(done) = joined {
                note_bulk(done, &mut sent, progress);
            }
        }
        Ok(sent)
    }

    /// One bulk body: each user's record under `spec.list_key`, JSON unless
    /// the manifest says otherwise; the first render that fails, redacted.
    fn bulk_request(&mut self, users: &[StoredUser], spec: &BulkSpec<'_>) -> Result<crate::fetch::Request, String> {
        let mut records = Vec::with_capacity(users.len());
        for user in users {
            self.composer.set("user", user_context(user, &self.names));
            records.push(
                self.composer.record(spec.record, "push.bulk").map_err(|e| self.redactor.redact(&e.to_string()))?,
            );
        }
        let mut req =
            self.composer.request(spec.request, "push.bulk").map_err(|e| self.redactor.redact(&e.to_string()))?;
        let mut body = Map::new();
        body.insert(spec.list_key.to_string(), Value::Array(records));
        req.body = Some(Value::Object(body).to_string().into_bytes());
        if !req.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
            req.headers.push(("Content-Type".into(), "application/json".into()));
        }
        Ok(req)
    }
}

/// Counts one bulk body's outcome and keeps its row and the target's record errors.
fn note_bulk((row, reply): (PushRow, Option<super::bulk::Reply>), sent: &mut BulkSent, progress: &mut Progress) {
    if let Some(reply) = reply {
        sent.created += reply.created;
        sent.updated += reply.updated;
        sent.record_errors += reply.errors.len() as u64;
        progress.rows.extend(reply.errors);
    }
    if row.error.is_some() {
        sent.failed += 1;
    }
    progress.rows.push(row);
    progress.sent += 1;
}

/// What a bulk push sent and what the target said.
#[derive(Debug, Default)]
pub struct BulkSent {
    pub requests: u64,
    pub failed: u64,
    pub created: u64,
    pub updated: u64,
    /// Record errors the target's replies listed.
    pub record_errors: u64,
    pub stopped: bool,
}

/// Finished push requests, written to the store (and the run's progress)
/// about once a second, so memory holds only the last second's outcomes.
pub struct Progress {
    run_id: i64,
    rows: Vec<PushRow>,
    pub sent: u64,
    last: Instant,
}

impl Progress {
    pub fn new(run_id: i64) -> Progress {
        Progress { run_id, rows: Vec::new(), sent: 0, last: Instant::now() }
    }

    fn tick(&mut self, store: &mut impl Outbound, sender: &mut Sender) -> Result<(), StoreError> {
        self.sent = sender.sent;
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.rows.extend(sender.take_done());
        }
        self.flush_if_due(store)
    }

    fn flush_if_due(&mut self, store: &mut impl Outbound) -> Result<(), StoreError> {
        if self.last.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        self.last = Instant::now();
        store.record_push(self.run_id, &std::mem::take(&mut self.rows))?;
        store.push_progress(self.run_id, self.sent as i64)
    }

    /// Writes what is left: these `rows` and any not written yet.
    pub fn record(&mut self, store: &mut impl Outbound, rows: Vec<PushRow>) -> Result<(), StoreError> {
        self.rows.extend(rows);
        store.record_push(self.run_id, &std::mem::take(&mut self.rows))
    }
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
