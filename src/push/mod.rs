//! Push: the store is the master and a target API is brought in step
//! (seed 002's algorithm; seed 000's bulk import in `bulk`). Here the
//! decisions, pure: the target's listing (mapped records) is indexed by
//! external id, the selected local users are streamed past it, and each
//! becomes a create, an update (the mapped fields that differ) or nothing;
//! target records left unmatched become removes. `send` sends the requests
//! with a concurrency limit; `deliver` renders and sends what a plan decided
//! and records each outcome through the store's `Outbound` port; `report`
//! is what a push did, as `run --json` prints it. A push manifest's own
//! checks are `manifest::validate`'s (`validate/push.rs`): a `Manifest`
//! exists only once they pass. `run::push` is the glue a run needs.
//!
//! Memory: the listing's records (the arena, about their text's size) and
//! one index entry per target record with an external id; per local user
//! only the decisions that send something (a create is its id: 8 bytes).

pub mod bulk;
pub mod deliver;
pub mod report;
pub mod send;

use hashbrown::HashMap;
use serde::Serialize;
use serde_json::Value;

use crate::manifest::{Rule, Target};
use crate::mapping::{Record, RecordArena};
use crate::user::{Field, StoredUser};

/// The extra field a listing maps `target_id_from` into.
pub const TARGET_ID: &str = "target_id_from";

/// The target's listing, indexed by external id.
pub struct Listing {
    records: RecordArena,
    /// External id → record; only records that have one.
    by_external_id: HashMap<Box<str>, u32>,
    /// Whether each record was matched by a selected local user.
    matched: Vec<bool>,
    /// External ids held by more than one target record (never removed).
    pub duplicates: Vec<String>,
}

impl Listing {
    pub fn new(records: RecordArena) -> Listing {
        let mut by_external_id = HashMap::with_capacity(records.len());
        let mut duplicates = Vec::new();
        for i in 0..records.len() {
            let Some(id) = records.get(i).fields.external_id else { continue };
            if by_external_id.contains_key(id.as_str()) {
                duplicates.push(id);
                continue;
            }
            by_external_id.insert(id.into_boxed_str(), i as u32);
        }
        let matched = vec![false; records.len()];
        Listing { records, by_external_id, matched, duplicates }
    }

    /// Target records that have an external id: what `max_remove` is measured against.
    pub fn with_external_id(&self) -> u64 {
        self.by_external_id.len() as u64
    }

    pub fn record(&self, i: u32) -> Record {
        self.records.get(i as usize)
    }

    /// The target's own id of record `i` (`target_id_from`), as text.
    pub fn target_id(&self, i: u32) -> Option<String> {
        self.record(i).extra.get(TARGET_ID).and_then(|v| crate::mapping::text(v, TARGET_ID).ok().flatten())
    }
}

/// One field that differs: the target's value and the local one.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Difference {
    pub field: String,
    pub target: Value,
    pub local: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedUpdate {
    #[serde(skip)]
    pub user_id: i64,
    pub external_id: String,
    pub target_id: Option<String>,
    pub changes: Vec<Difference>,
}

/// What a push will send.
#[derive(Debug, Default)]
pub struct PushPlan {
    /// Local users missing on the target (their ids).
    pub creates: Vec<i64>,
    pub updates: Vec<PlannedUpdate>,
    /// Target records no selected local user has (indexes into the listing).
    pub removes: Vec<u32>,
    pub unchanged: u64,
    /// Selected local users with an external id.
    pub selected: u64,
}

/// Decides, for one selected local user (with an external id), what the
/// target needs. `rules` are the listing's mapping (without `TARGET_ID`).
pub fn consider(plan: &mut PushPlan, listing: &mut Listing, rules: &[Rule], user: &StoredUser) {
    let Some(external_id) = user.fields.external_id.as_deref() else { return };
    plan.selected += 1;
    let Some(&i) = listing.by_external_id.get(external_id) else {
        plan.creates.push(user.id);
        return;
    };
    listing.matched[i as usize] = true;
    let record = listing.record(i);
    let changes = differences(rules, user, &record);
    if changes.is_empty() {
        plan.unchanged += 1;
        return;
    }
    plan.updates.push(PlannedUpdate {
        user_id: user.id,
        external_id: external_id.to_string(),
        target_id: listing.target_id(i),
        changes,
    });
}

/// After every local user: the target records with an external id that no
/// selected user matched. A duplicated external id is never removed, nor a
/// record the target already shows inactive (`active` mapped and false: a
/// user locked by an earlier push is not locked again each night).
pub fn finish(plan: &mut PushPlan, listing: &Listing) {
    let mut removes: Vec<u32> = listing
        .by_external_id
        .iter()
        .filter(|(id, i)| !listing.matched[**i as usize] && !listing.duplicates.iter().any(|d| d == &***id))
        .map(|(_, i)| *i)
        .filter(|i| listing.record(*i).active != Some(false))
        .collect();
    removes.sort_unstable();
    plan.removes = removes;
}

/// The mapped fields where the target's record and the local user differ
/// (an email ignoring case; empty text is no value).
pub fn differences(rules: &[Rule], user: &StoredUser, record: &Record) -> Vec<Difference> {
    let mut out = Vec::new();
    for rule in rules {
        match &rule.target {
            Target::Core(Field::Active) => {
                if let Some(t) = record.active.filter(|t| *t != user.active) {
                    out.push(Difference {
                        field: "active".into(),
                        target: Value::Bool(t),
                        local: Value::Bool(user.active),
                    });
                }
            }
            Target::Core(f) => {
                out.extend(text_difference(f.column(), record.fields.get(*f), user.fields.get(*f), *f == Field::Email));
            }
            Target::Name { first, last } => {
                for (on, f) in [(*first, Field::FirstName), (*last, Field::LastName)] {
                    if on {
                        out.extend(text_difference(f.column(), record.fields.get(f), user.fields.get(f), false));
                    }
                }
            }
            Target::Extra(name) if name == TARGET_ID => {}
            Target::Extra(name) => {
                let as_text = |v: Option<&Value>| v.and_then(|v| crate::mapping::text(v, name).ok().flatten());
                let (t, l) = (as_text(record.extra.get(name)), as_text(user.extra.get(name)));
                out.extend(text_difference(&format!("extra.{name}"), t.as_deref(), l.as_deref(), false));
            }
        }
    }
    out
}

/// Two texts of one field, when they differ (`fold`: ignoring case; empty is no value).
fn text_difference(field: &str, target: Option<&str>, local: Option<&str>, fold: bool) -> Option<Difference> {
    let (t, l) = (target.filter(|s| !s.is_empty()), local.filter(|s| !s.is_empty()));
    let same = match (t, l) {
        (Some(t), Some(l)) if fold => t.to_lowercase() == l.to_lowercase(),
        (t, l) => t == l,
    };
    (!same).then(|| Difference { field: field.to_string(), target: opt(t), local: opt(l) })
}

fn opt(v: Option<&str>) -> Value {
    v.map_or(Value::Null, |s| Value::String(s.to_string()))
}

/// `{{ user.* }}` for a push request: every field (null when the user has
/// none), `active` a boolean, `extra` the extra fields with `names` (the
/// extras the manifest's templates use) present as null when missing.
pub fn user_context(user: &StoredUser, names: &[String]) -> Value {
    let mut obj = serde_json::Map::new();
    for f in crate::user::TEXT_COLUMNS {
        obj.insert(f.column().to_string(), opt(user.fields.get(f)));
    }
    obj.insert("active".into(), Value::Bool(user.active));
    let mut extra = user.extra.clone();
    for name in names {
        extra.entry(name.clone()).or_insert(Value::Null);
    }
    obj.insert("extra".into(), Value::Object(extra));
    Value::Object(obj)
}

#[cfg(test)]
mod tests;
