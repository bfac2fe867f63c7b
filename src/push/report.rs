//! What a push did or would do, as `run --json` prints it: requests per
//! kind (planned, sent, failed) and, for a dry run, every create, update and
//! remove with its values redacted.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::deliver::{CHUNK, Steps};
use super::{Listing, PlannedUpdate, PushPlan};
use crate::port::{Outbound, StoreError};
use crate::redact::Redactor;

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

impl PushReport {
    /// The requests a reconcile `plan` needs, per kind the manifest can send,
    /// and what an admin should know about it (duplicate external ids on the
    /// target, changes the manifest has no request for), redacted.
    pub fn planned(plan: &PushPlan, listing: &Listing, steps: &Steps<'_>, redactor: &Redactor) -> (Self, Vec<String>) {
        let mut report = PushReport { target_users: listing.with_external_id(), ..PushReport::default() };
        let mut warnings: Vec<String> = listing
            .duplicates
            .iter()
            .map(|d| {
                redactor.redact(&format!(
                    "external id \"{d}\" is held by more than one target user; none of them is removed"
                ))
            })
            .collect();
        let kinds = [
            ("create", steps.create, plan.creates.len()),
            ("update", steps.update, plan.updates.len()),
            ("remove", steps.remove, plan.removes.len()),
        ];
        for (kind, step, n) in kinds {
            let planned = if step.is_some() { n as u64 } else { 0 };
            report.requests.insert(kind, KindCount { planned, ..KindCount::default() });
            if step.is_none() && n > 0 && kind != "remove" {
                warnings.push(format!("{n} {kind}(s) needed, but the manifest has no push.{kind} request"));
            }
        }
        (report, warnings)
    }

    /// A dry run's lists: every create (external id, email, name), update
    /// (field: target → local) and remove, values redacted.
    pub fn list(
        &mut self,
        store: &impl Outbound,
        plan: &PushPlan,
        listing: &Listing,
        redactor: &Redactor,
    ) -> Result<(), StoreError> {
        let text = |v: Option<&str>| v.map_or(Value::Null, |s| Value::String(redactor.redact(s)));
        for ids in plan.creates.chunks(CHUNK) {
            for u in store.users_by_ids(ids)? {
                self.creates.push(json!({
                    "external_id": text(u.fields.external_id.as_deref()),
                    "email": text(u.fields.email.as_deref()),
                    "first_name": text(u.fields.first_name.as_deref()),
                    "last_name": text(u.fields.last_name.as_deref()),
                }));
            }
        }
        self.updates = plan.updates.clone();
        for u in &mut self.updates {
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
            self.removes.push(json!({
                "external_id": text(r.fields.external_id.as_deref()),
                "target_id": text(listing.target_id(*i).as_deref()),
                "email": text(r.fields.email.as_deref()),
            }));
        }
        Ok(())
    }
}
