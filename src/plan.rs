//! Decides what a run changes: records + the store's current users → a
//! `Plan` of creations, updates, deactivations and skips with reasons.
//! Pure: no I/O, no clock; the same inputs give the same plan, and applying
//! a plan then planning the same records again gives an empty plan.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::manifest::{Action, Core, MatchOn, Target};
use crate::mapping::Record;
use crate::store::Skip;
use crate::user::{Fields, StoredUser, TEXT_COLUMNS};

/// What the plan needs besides records and users.
#[derive(Debug, Clone)]
pub struct PlanOptions<'a> {
    pub integration: &'a str,
    pub action: Action,
    pub match_on: MatchOn,
    /// The targets the manifest maps; only these are compared or written.
    pub mapped: &'a [Target],
    /// Lower-cased; never created.
    pub ignored_emails: &'a [String],
    pub auto_clear_email: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub creates: Vec<NewUser>,
    pub updates: Vec<Update>,
    pub deactivations: Vec<Deactivation>,
    /// Users whose email is cleared so a synced user can take it (`auto_clear_email`).
    pub cleared_emails: Vec<Deactivation>,
    /// Unchanged users this integration takes ownership of.
    pub adoptions: Vec<i64>,
    pub skips: Vec<Skip>,
    /// Records that matched a user whose data already agrees.
    pub unchanged: u64,
    /// Owned, active users before the run: the base of a percentage `max_deactivate`.
    pub owned_active: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewUser {
    pub record: usize,
    pub fields: Fields,
    pub active: bool,
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Update {
    pub user_id: i64,
    pub record: usize,
    /// The user's email before the change, for display.
    pub label: String,
    pub changes: Vec<Change>,
    pub fields: Fields,
    pub active: bool,
    pub extra: Map<String, Value>,
    /// The integration takes ownership with this update.
    pub adopt: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deactivation {
    pub user_id: i64,
    pub label: String,
}

impl Plan {
    pub fn n_updated(&self) -> u64 {
        (self.updates.len() + self.cleared_emails.len()) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.creates.is_empty()
            && self.updates.is_empty()
            && self.deactivations.is_empty()
            && self.cleared_emails.is_empty()
            && self.adoptions.is_empty()
    }
}

fn label(user: &StoredUser) -> String {
    user.fields
        .email
        .clone()
        .or_else(|| user.fields.external_id.as_ref().map(|id| format!("external_id {id}")))
        .unwrap_or_else(|| format!("user #{}", user.id))
}

/// Plans one run.
///
/// A record refused because another user holds its email or external id is
/// tried again after the others, and again while retries make progress: a
/// later record may free the value (emails that move between people in one
/// export), and the plan must not depend on record order.
pub fn plan(records: &[Record], current: &[StoredUser], opts: &PlanOptions<'_>) -> Plan {
    let mut planner = Planner::new(current, opts);
    let mut waiting: Vec<(&Record, String)> = Vec::new();
    for record in records {
        match planner.admit(record).and_then(|key| planner.act(record, &key)) {
            Ok(()) => {}
            Err(Refusal::Conflict(reason)) => waiting.push((record, reason)),
            Err(Refusal::Final(reason)) => planner.skip(record, reason),
        }
    }
    loop {
        let before = waiting.len();
        let mut still = Vec::new();
        for (record, reason) in waiting {
            let key = planner.key(record).unwrap_or_default();
            match planner.act(record, &key) {
                Ok(()) => {}
                Err(Refusal::Conflict(_)) => still.push((record, reason)),
                Err(Refusal::Final(reason)) => planner.skip(record, reason),
            }
        }
        waiting = still;
        if waiting.is_empty() || waiting.len() == before {
            break;
        }
    }
    let mut skipped: Vec<(&Record, String)> = waiting;
    skipped.sort_by_key(|(r, _)| r.index);
    for (record, reason) in skipped {
        planner.skip(record, reason);
    }
    planner.plan.skips.sort_by_key(|s| s.record);
    planner.finish()
}

/// Why a record is not used: final, or a conflict with another user that a
/// later record may resolve.
enum Refusal {
    Final(String),
    Conflict(String),
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Refusal::Final(reason)
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Self {
        Refusal::Final(reason.to_string())
    }
}

struct Planner<'a> {
    opts: &'a PlanOptions<'a>,
    users: &'a [StoredUser],
    by_email: HashMap<String, usize>,
    by_external: HashMap<String, usize>,
    /// Keys (email or external id) of users this run creates, with their record index.
    new_emails: HashMap<String, usize>,
    new_externals: HashMap<String, usize>,
    /// Match keys already seen in this run, with the record that used them.
    seen_keys: HashMap<String, usize>,
    /// Users matched by a record (not deactivated by a sync).
    matched: HashSet<usize>,
    cleared: HashSet<usize>,
    plan: Plan,
}

impl<'a> Planner<'a> {
    fn new(users: &'a [StoredUser], opts: &'a PlanOptions<'a>) -> Self {
        let mut by_email = HashMap::with_capacity(users.len());
        let mut by_external = HashMap::with_capacity(users.len());
        for (i, u) in users.iter().enumerate() {
            if let Some(e) = &u.fields.email {
                by_email.insert(e.to_lowercase(), i);
            }
            if let Some(x) = &u.fields.external_id {
                by_external.insert(x.clone(), i);
            }
        }
        let owned_active =
            users.iter().filter(|u| u.active && u.owner.as_deref() == Some(opts.integration)).count() as u64;
        Self {
            opts,
            users,
            by_email,
            by_external,
            new_emails: HashMap::new(),
            new_externals: HashMap::new(),
            seen_keys: HashMap::new(),
            matched: HashSet::new(),
            cleared: HashSet::new(),
            plan: Plan { owned_active, ..Plan::default() },
        }
    }

    fn skip(&mut self, r: &Record, reason: String) {
        self.plan.skips.push(Skip { record: r.index, key: r.key(), reason });
    }

    fn key(&self, r: &Record) -> Result<String, Refusal> {
        match (self.opts.action, self.opts.match_on) {
            (Action::Sync, MatchOn::ExternalId) => {
                Ok(r.fields.external_id.clone().ok_or("no external_id: sync matches on external_id")?)
            }
            _ => Ok(r.fields.email.clone().ok_or("no valid email")?),
        }
    }

    /// Checks a record can be used at all and returns its match key; a key
    /// already used by an earlier record of the run is refused.
    fn admit(&mut self, r: &Record) -> Result<String, Refusal> {
        if let Some(problem) = &r.problem {
            return Err(Refusal::Final(problem.clone()));
        }
        let key = self.key(r)?;
        if let Some(first) = self.seen_keys.insert(key.clone(), r.index) {
            self.seen_keys.insert(key.clone(), first);
            return Err(Refusal::Final(format!("duplicate of record {first} ({key}) in this run")));
        }
        Ok(key)
    }

    fn act(&mut self, r: &Record, key: &str) -> Result<(), Refusal> {
        match self.opts.action {
            Action::Create => self.create(r),
            Action::Update => self.update(r),
            Action::Sync => self.sync(r, key),
        }
    }

    fn find(&self, c: Core, value: &str) -> Option<usize> {
        match c {
            Core::Email => self.by_email.get(value).copied(),
            _ => self.by_external.get(value).copied(),
        }
    }

    fn create(&mut self, r: &Record) -> Result<(), Refusal> {
        let email = r.fields.email.as_deref().unwrap_or_default();
        if self.find(Core::Email, email).is_some() {
            self.plan.unchanged += 1;
            return Ok(());
        }
        if r.fields.first_name.is_none() || r.fields.last_name.is_none() {
            return Err("missing first_name or last_name".into());
        }
        self.add_new_user(r)
    }

    fn add_new_user(&mut self, r: &Record) -> Result<(), Refusal> {
        if let Some(email) = &r.fields.email {
            if self.opts.ignored_emails.contains(email) {
                return Err("email is in ignored_emails".into());
            }
            if let Some(first) = self.new_emails.get(email) {
                return Err(format!("email {email} is also used by record {first}, created in this run").into());
            }
        }
        if let Some(ext) = &r.fields.external_id {
            if let Some(i) = self.find(Core::ExternalId, ext) {
                return Err(Refusal::Conflict(format!(
                    "external_id {ext} already belongs to {}",
                    label(&self.users[i])
                )));
            }
            if let Some(first) = self.new_externals.get(ext) {
                return Err(format!("external_id {ext} is also used by record {first}, created in this run").into());
            }
        }
        if let Some(email) = &r.fields.email {
            self.new_emails.insert(email.clone(), r.index);
        }
        if let Some(ext) = &r.fields.external_id {
            self.new_externals.insert(ext.clone(), r.index);
        }
        self.plan.creates.push(NewUser {
            record: r.index,
            fields: r.fields.clone(),
            active: r.active.unwrap_or(true),
            extra: r.extra.clone(),
        });
        Ok(())
    }

    fn update(&mut self, r: &Record) -> Result<(), Refusal> {
        let email = r.fields.email.as_deref().unwrap_or_default();
        let i = self.find(Core::Email, email).ok_or("no user with this email")?;
        let user = &self.users[i];
        let mut extra = user.extra.clone();
        for target in self.opts.mapped {
            let value = match target {
                Target::Core(Core::Email) => continue,
                Target::Core(Core::Active) => r.active.map(Value::Bool),
                Target::Core(c) => r.fields.get(*c).map(|s| Value::String(s.to_string())),
                Target::Extra(name) => r.extra.get(name).cloned(),
            };
            if let Some(v) = value {
                extra.insert(target.name().to_string(), v);
            }
        }
        let changes = extra_changes(&user.extra, &extra);
        if changes.is_empty() {
            self.plan.unchanged += 1;
            return Ok(());
        }
        self.plan.updates.push(Update {
            user_id: user.id,
            record: r.index,
            label: label(user),
            changes,
            fields: user.fields.clone(),
            active: user.active,
            extra,
            adopt: false,
        });
        Ok(())
    }

    fn sync(&mut self, r: &Record, key: &str) -> Result<(), Refusal> {
        let key_field = if self.opts.match_on == MatchOn::Email { Core::Email } else { Core::ExternalId };
        let Some(i) = self.find(key_field, key) else {
            self.claim_email(r, None)?;
            return self.add_new_user(r);
        };
        let user = &self.users[i];
        if let Some(owner) = user.owner.as_deref().filter(|o| *o != self.opts.integration) {
            return Err(format!("{} is owned by integration {owner}", label(user)).into());
        }
        self.matched.insert(i);
        // What the user holds at this point of the run: an email cleared for another record is gone.
        let mut current = user.fields.clone();
        if self.cleared.contains(&i) {
            current.email = None;
        }
        let mut fields = current.clone();
        for c in TEXT_COLUMNS {
            if let Some(v) = r.fields.get(c) {
                fields.set(c, Some(v.to_string()));
            }
        }
        if fields.email != current.email {
            self.claim_email(r, Some(i))?;
        }
        if let Some(ext) = &r.fields.external_id {
            if let Some(j) = self.find(Core::ExternalId, ext).filter(|j| *j != i) {
                return Err(Refusal::Conflict(format!(
                    "external_id {ext} already belongs to {}",
                    label(&self.users[j])
                )));
            }
            if let Some(first) = self.new_externals.get(ext) {
                return Err(format!("external_id {ext} is also used by record {first}, created in this run").into());
            }
        }
        let mut extra = user.extra.clone();
        for (k, v) in &r.extra {
            extra.insert(k.clone(), v.clone());
        }
        let active = r.active.unwrap_or(true);
        let mut changes = field_changes(&user.fields, &fields);
        if active != user.active {
            changes.push(Change { field: "active".into(), old: Some(flag(user.active)), new: Some(flag(active)) });
        }
        changes.extend(extra_changes(&user.extra, &extra));
        let adopt = user.owner.is_none();
        if changes.is_empty() {
            self.plan.unchanged += 1;
            if adopt {
                self.plan.adoptions.push(user.id);
            }
            return Ok(());
        }
        self.reindex(i, &current, &fields);
        self.plan.updates.push(Update {
            user_id: user.id,
            record: r.index,
            label: label(user),
            changes,
            fields,
            active,
            extra,
            adopt,
        });
        Ok(())
    }

    /// Keeps the lookup maps true after user `i` changes its email or external id,
    /// so later records in the run see the new values.
    fn reindex(&mut self, i: usize, old: &Fields, new: &Fields) {
        if old.email != new.email {
            if let Some(e) = &old.email
                && self.by_email.get(&e.to_lowercase()) == Some(&i)
            {
                self.by_email.remove(&e.to_lowercase());
            }
            if let Some(e) = &new.email {
                self.by_email.insert(e.to_lowercase(), i);
            }
        }
        if old.external_id != new.external_id {
            if let Some(x) = &old.external_id
                && self.by_external.get(x) == Some(&i)
            {
                self.by_external.remove(x);
            }
            if let Some(x) = &new.external_id {
                self.by_external.insert(x.clone(), i);
            }
        }
    }

    /// Makes sure the record's email is free for user `me` (None = a new user):
    /// clears another user's email with `auto_clear_email`, or refuses.
    fn claim_email(&mut self, r: &Record, me: Option<usize>) -> Result<(), Refusal> {
        let Some(email) = &r.fields.email else { return Ok(()) };
        if let Some(first) = self.new_emails.get(email).filter(|_| me.is_some()) {
            return Err(format!("email {email} is also used by record {first}, created in this run").into());
        }
        let Some(other) = self.find(Core::Email, email).filter(|o| Some(*o) != me) else { return Ok(()) };
        let holder = &self.users[other];
        if let Some(owner) = holder.owner.as_deref().filter(|o| *o != self.opts.integration) {
            return Err(Refusal::Conflict(format!(
                "email {email} belongs to {}, owned by integration {owner}",
                label(holder)
            )));
        }
        if !self.opts.auto_clear_email || self.matched.contains(&other) {
            return Err(Refusal::Conflict(format!(
                "email {email} already belongs to {} (user #{}){}",
                label(holder),
                holder.id,
                if self.opts.auto_clear_email {
                    ", which this run also updates"
                } else {
                    "; set auto_clear_email to take it"
                }
            )));
        }
        self.by_email.remove(email);
        self.cleared.insert(other);
        self.plan.cleared_emails.push(Deactivation { user_id: holder.id, label: label(holder) });
        Ok(())
    }

    fn finish(mut self) -> Plan {
        if self.opts.action == Action::Sync {
            for (i, u) in self.users.iter().enumerate() {
                if u.active && u.owner.as_deref() == Some(self.opts.integration) && !self.matched.contains(&i) {
                    self.plan.deactivations.push(Deactivation { user_id: u.id, label: label(u) });
                }
            }
        }
        self.plan
    }
}

fn flag(b: bool) -> String {
    if b { "1".into() } else { "0".into() }
}

fn field_changes(old: &Fields, new: &Fields) -> Vec<Change> {
    TEXT_COLUMNS
        .iter()
        .filter(|c| old.get(**c) != new.get(**c))
        .map(|c| Change {
            field: c.column().to_string(),
            old: old.get(*c).map(str::to_string),
            new: new.get(*c).map(str::to_string),
        })
        .collect()
}

fn extra_changes(old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<Change> {
    let show = |v: Option<&Value>| v.map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
    new.iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, v)| Change { field: format!("extra_fields.{k}"), old: show(old.get(k)), new: show(Some(v)) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(index: usize, email: &str, first: &str, last: &str) -> Record {
        let mut r = Record { index, ..Record::default() };
        r.fields.email = Some(email.into());
        r.fields.first_name = (!first.is_empty()).then(|| first.into());
        r.fields.last_name = (!last.is_empty()).then(|| last.into());
        r
    }

    fn user(id: i64, email: &str, owner: Option<&str>) -> StoredUser {
        StoredUser {
            id,
            fields: Fields {
                email: Some(email.into()),
                first_name: Some("F".into()),
                last_name: Some("L".into()),
                ..Fields::default()
            },
            active: true,
            extra: Map::new(),
            owner: owner.map(String::from),
        }
    }

    fn opts<'a>(action: Action, mapped: &'a [Target]) -> PlanOptions<'a> {
        PlanOptions {
            integration: "hr",
            action,
            match_on: MatchOn::Email,
            mapped,
            ignored_emails: &[],
            auto_clear_email: false,
        }
    }

    const NAMES: &[Target] = &[Target::Core(Core::Email), Target::Core(Core::FirstName), Target::Core(Core::LastName)];

    /// Applies a plan to users in memory the way `store::apply_run` does, and
    /// checks the uniqueness rules SQLite would enforce.
    fn apply(users: &[StoredUser], p: &Plan, integration: &str) -> Vec<StoredUser> {
        let mut out = users.to_vec();
        let by_id = |out: &mut Vec<StoredUser>, id: i64| out.iter().position(|u| u.id == id).unwrap();
        for c in &p.cleared_emails {
            let i = by_id(&mut out, c.user_id);
            out[i].fields.email = None;
        }
        for u in &p.updates {
            let i = by_id(&mut out, u.user_id);
            out[i].fields = u.fields.clone();
            out[i].active = u.active;
            out[i].extra = u.extra.clone();
            if u.adopt {
                out[i].owner = Some(integration.to_string());
            }
        }
        for id in &p.adoptions {
            let i = by_id(&mut out, *id);
            out[i].owner = Some(integration.to_string());
        }
        for d in &p.deactivations {
            let i = by_id(&mut out, d.user_id);
            out[i].active = false;
        }
        let first_id = out.iter().map(|u| u.id).max().unwrap_or(0) + 1;
        for (next, n) in (first_id..).zip(&p.creates) {
            out.push(StoredUser {
                id: next,
                fields: n.fields.clone(),
                active: n.active,
                extra: n.extra.clone(),
                owner: Some(integration.into()),
            });
        }
        let mut emails = HashSet::new();
        let mut externals = HashSet::new();
        for u in &out {
            if let Some(e) = &u.fields.email {
                assert!(emails.insert(e.to_lowercase()), "two users with email {e}");
            }
            if let Some(x) = &u.fields.external_id {
                assert!(externals.insert(x.clone()), "two users with external_id {x}");
            }
        }
        out
    }

    mod generated {
        use super::*;
        use proptest::prelude::*;

        fn email() -> impl Strategy<Value = Option<String>> {
            proptest::option::weighted(0.9, (0..6u8).prop_map(|i| format!("u{i}@x.io")))
        }

        fn external() -> impl Strategy<Value = Option<String>> {
            proptest::option::weighted(0.8, (0..6u8).prop_map(|i| format!("E{i}")))
        }

        fn name() -> impl Strategy<Value = Option<String>> {
            proptest::option::weighted(0.9, prop_oneof![Just("Ann".to_string()), Just("Bo".to_string())])
        }

        fn record() -> impl Strategy<Value = Record> {
            (email(), external(), name(), name(), proptest::option::of(any::<bool>()), proptest::option::of(0..3u8))
                .prop_map(|(email, external_id, first_name, last_name, active, extra)| {
                    let fields = Fields { email, external_id, first_name, last_name, ..Fields::default() };
                    let mut r = Record { fields, active, ..Record::default() };
                    if let Some(v) = extra {
                        r.extra.insert("level".into(), json!(v));
                    }
                    r
                })
        }

        fn users() -> impl Strategy<Value = Vec<StoredUser>> {
            proptest::collection::vec((email(), external(), any::<bool>(), 0..3u8), 0..8).prop_map(|rows| {
                let mut seen_e = HashSet::new();
                let mut seen_x = HashSet::new();
                let mut out = Vec::new();
                for (i, (email, ext, active, owner)) in rows.into_iter().enumerate() {
                    let email = email.filter(|e| seen_e.insert(e.clone()));
                    let ext = ext.filter(|x| seen_x.insert(x.clone()));
                    let owner = [None, Some("hr".to_string()), Some("other".to_string())][owner as usize].clone();
                    out.push(StoredUser {
                        id: i as i64 + 1,
                        fields: Fields { email, external_id: ext, first_name: Some("F".into()), ..Fields::default() },
                        active,
                        extra: Map::new(),
                        owner,
                    });
                }
                out
            })
        }

        const ALL: &[Target] = &[
            Target::Core(Core::Email),
            Target::Core(Core::ExternalId),
            Target::Core(Core::FirstName),
            Target::Core(Core::LastName),
            Target::Core(Core::Active),
        ];

        proptest! {
            // PROPTEST_CASES=100000 for a longer hunt.
            #![proptest_config(ProptestConfig::with_cases(
                std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
            ))]

            #[test]
            fn applying_a_plan_then_planning_again_changes_nothing(
                records in proptest::collection::vec(record(), 0..10),
                users in users(),
                action in prop_oneof![Just(Action::Create), Just(Action::Update), Just(Action::Sync)],
                by_external in any::<bool>(),
                auto_clear_email in any::<bool>(),
            ) {
                let records: Vec<Record> = records.into_iter().enumerate().map(|(i, mut r)| { r.index = i; r }).collect();
                let match_on = if by_external { MatchOn::ExternalId } else { MatchOn::Email };
                let o = PlanOptions { match_on, auto_clear_email, ..opts(action, ALL) };
                let first = plan(&records, &users, &o);
                let after = apply(&users, &first, "hr");
                let second = plan(&records, &after, &o);
                prop_assert!(second.is_empty(), "first: {first:?}\nsecond: {second:?}");
                for u in users.iter().filter(|u| u.owner.as_deref() != Some("hr") ) {
                    prop_assert!(!first.deactivations.iter().any(|d| d.user_id == u.id), "deactivated a user it does not own");
                }
            }
        }
    }

    #[test]
    fn create_skips_messy_records_with_reasons() {
        let mut bad = record(3, "x@y.io", "", "");
        bad.problem = Some("invalid email \"nope\"".into());
        let records = [record(0, "a@x.io", "A", "B"), record(1, "b@x.io", "", "B"), record(2, "a@x.io", "A", "C"), bad];
        let p = plan(&records, &[], &opts(Action::Create, NAMES));
        assert_eq!(p.creates.len(), 1);
        let reasons: Vec<_> = p.skips.iter().map(|s| (s.record, s.reason.as_str())).collect();
        assert_eq!(
            reasons,
            [
                (1, "missing first_name or last_name"),
                (2, "duplicate of record 0 (a@x.io) in this run"),
                (3, "invalid email \"nope\"")
            ]
        );
    }

    #[test]
    fn create_never_touches_existing_users() {
        let p = plan(&[record(0, "a@x.io", "New", "Name")], &[user(1, "a@x.io", None)], &opts(Action::Create, NAMES));
        assert!(p.is_empty());
        assert_eq!(p.unchanged, 1);
    }

    #[test]
    fn create_respects_ignored_emails() {
        let ignored = ["it@x.io".to_string()];
        let o = PlanOptions { ignored_emails: &ignored, ..opts(Action::Create, NAMES) };
        let p = plan(&[record(0, "it@x.io", "I", "T")], &[], &o);
        assert_eq!(p.skips[0].reason, "email is in ignored_emails");
    }

    #[test]
    fn update_merges_into_extra_fields_only() {
        let mapped = [Target::Core(Core::Email), Target::Extra("bamboo".into()), Target::Core(Core::FirstName)];
        let mut r = record(0, "a@x.io", "Other", "");
        r.extra.insert("bamboo".into(), json!(7));
        let p = plan(
            &[r.clone(), record(1, "nobody@x.io", "", "")],
            &[user(1, "a@x.io", None)],
            &opts(Action::Update, &mapped),
        );
        assert_eq!(p.updates.len(), 1);
        assert_eq!(p.updates[0].extra, json!({"bamboo": 7, "first_name": "Other"}).as_object().unwrap().clone());
        assert_eq!(p.updates[0].fields.first_name.as_deref(), Some("F"));
        assert_eq!(p.skips[0].reason, "no user with this email");
    }

    #[test]
    fn sync_leaves_users_it_does_not_own() {
        let current = [user(1, "ann@x.io", Some("hr")), user(2, "bob@x.io", Some("hr")), user(3, "cy@x.io", None)];
        let p = plan(&[record(0, "ann@x.io", "F", "L")], &current, &opts(Action::Sync, NAMES));
        let gone: Vec<_> = p.deactivations.iter().map(|d| d.label.as_str()).collect();
        assert_eq!(gone, ["bob@x.io"]);
        assert!(p.updates.is_empty());
        assert_eq!(p.owned_active, 2);
    }

    #[test]
    fn sync_adopts_unowned_and_skips_others_users() {
        let current = [user(1, "a@x.io", None), user(2, "b@x.io", Some("other"))];
        let p =
            plan(&[record(0, "a@x.io", "F", "L"), record(1, "b@x.io", "F", "L")], &current, &opts(Action::Sync, NAMES));
        assert_eq!(p.adoptions, [1]);
        assert!(p.skips[0].reason.contains("owned by integration other"));
    }

    #[test]
    fn sync_reactivates_returning_users() {
        let mut gone = user(1, "a@x.io", Some("hr"));
        gone.active = false;
        let p = plan(&[record(0, "a@x.io", "F", "L")], &[gone], &opts(Action::Sync, NAMES));
        assert_eq!(
            p.updates[0].changes,
            [Change { field: "active".into(), old: Some("0".into()), new: Some("1".into()) }]
        );
    }

    #[test]
    fn sync_email_conflicts_need_auto_clear() {
        let mut r = record(0, "taken@x.io", "F", "L");
        r.fields.external_id = Some("E1".into());
        let mut me = user(1, "old@x.io", Some("hr"));
        me.fields.external_id = Some("E1".into());
        let current = [me, user(2, "taken@x.io", None)];
        let mapped = [Target::Core(Core::Email), Target::Core(Core::ExternalId)];
        let base = PlanOptions { match_on: MatchOn::ExternalId, ..opts(Action::Sync, &mapped) };
        let p = plan(std::slice::from_ref(&r), &current, &base);
        assert!(p.skips[0].reason.contains("already belongs to taken@x.io"), "{:?}", p.skips);
        let p = plan(&[r], &current, &PlanOptions { auto_clear_email: true, ..base });
        assert_eq!(p.cleared_emails[0].user_id, 2);
        assert_eq!(p.updates[0].fields.email.as_deref(), Some("taken@x.io"));
    }
}
