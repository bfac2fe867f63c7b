//! Decides what a run changes, record by record: creations, updates,
//! deactivations and skips with reasons. The rules are pure; the users they
//! act on are behind `Directory`, which the store implements inside the run's
//! one transaction (looking users up by index and writing each decision as it
//! is made) and `MemoryDirectory` implements for tests and benchmarks. So a
//! run never holds every user in memory, and a plan applied then planned again
//! changes nothing. A record whose user still carries the record's own
//! fingerprint (see `Directory::set_fingerprint`) is settled without reading
//! the user; for update and sync the directory answers that for every record
//! at once (`Carriers`).

use std::collections::HashMap;
use std::hash::BuildHasher;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::index::{Carriers, Holder, IdSet};
use crate::manifest::{Action, MatchOn, Target};
use crate::mapping::{Record, Records};
use crate::port::{Change, Deactivation, Directory, NewUser, Skip, Update};
use crate::user::{Email, Field, Fields, StoredUser, TEXT_COLUMNS};

/// How many of each kind of change a plan keeps to show; the counts are always exact.
pub const SAMPLE: usize = 1000;
/// How many skip reasons a plan keeps; `n_skipped` is always exact.
pub const MAX_SKIPS: usize = 10_000;

/// What the plan needs besides records and users.
#[derive(Debug, Clone)]
pub struct PlanOptions<'a> {
    pub integration: &'a str,
    pub action: Action,
    pub match_on: MatchOn,
    /// The targets the manifest maps; only these are compared or written.
    pub mapped: &'a [Target],
    /// Lower-cased; never created.
    pub ignored_emails: &'a [Email],
    pub auto_clear_email: bool,
}

/// What a run changed (or, for a dry run, would change): exact counts, and the
/// first `SAMPLE` changes of each kind to show.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub n_created: u64,
    pub n_updated: u64,
    pub n_deactivated: u64,
    pub n_cleared: u64,
    pub n_adopted: u64,
    pub n_skipped: u64,
    /// Records that matched a user whose data already agrees.
    pub unchanged: u64,
    /// Owned, active users before the run: the base of a percentage `max_deactivate`.
    pub owned_active: u64,
    pub creates: Vec<NewUser>,
    pub updates: Vec<Update>,
    pub deactivations: Vec<Deactivation>,
    /// Users whose email was cleared so a synced user could take it (`auto_clear_email`).
    pub cleared_emails: Vec<Deactivation>,
    /// Unchanged users this integration took ownership of.
    pub adoptions: Vec<i64>,
    pub skips: Vec<Skip>,
    /// Every user the plan deactivates (`deactivations` shows the first few):
    /// decided by `plan`, written by `deactivate`.
    #[serde(skip)]
    pub vanished: Vec<i64>,
}

impl Plan {
    /// Users whose stored data changed, emails cleared for another user included.
    pub fn n_changed(&self) -> u64 {
        self.n_updated + self.n_cleared
    }

    /// True when the run changed nothing at all (ownership included).
    pub fn is_empty(&self) -> bool {
        self.n_created == 0
            && self.n_updated == 0
            && self.n_deactivated == 0
            && self.n_cleared == 0
            && self.n_adopted == 0
    }
}

fn keep<T>(list: &mut Vec<T>, item: T) {
    if list.len() < SAMPLE {
        list.push(item);
    }
}

pub(crate) fn label(user: &StoredUser) -> String {
    user.fields
        .email
        .clone()
        .or_else(|| user.fields.external_id.as_ref().map(|id| format!("external_id {id}")))
        .unwrap_or_else(|| format!("user #{}", user.id))
}

/// Plans one run and applies each decision to `dir` as it is made.
///
/// A record refused because another user holds its email or external id is
/// tried again after the others, and again while retries make progress: a
/// later record may free the value (emails that move between people in one
/// export), and the outcome must not depend on record order.
pub fn plan<D: Directory, R: Records + Sync + ?Sized>(
    records: &R,
    dir: &mut D,
    opts: &PlanOptions<'_>,
) -> Result<Plan, D::Error> {
    let mut planner = Planner::new(dir, opts);
    planner.repeats = repeated_keys(records, planner.key_field());
    if opts.action == Action::Sync {
        planner.plan.owned_active = planner.dir.owned_active(opts.integration)?;
    }
    let context = format!("{}\0{}\0{:?}", opts.integration, opts.action.as_str(), opts.match_on);
    // A create never reads or writes fingerprints.
    let fp_of = |i: usize| if opts.action == Action::Create { 0 } else { records.fingerprint(i, context.as_bytes()) };
    if opts.action != Action::Create {
        planner.carriers = planner.dir.carriers(|| fingerprints(records, context.as_bytes()))?;
    }
    let mut waiting: Vec<(Record, String, u128)> = Vec::new();
    for i in 0..records.count() {
        // Computed again only for a record its carrier does not settle.
        let mut fp = None;
        if planner.settled(records, i, || *fp.get_or_insert_with(|| fp_of(i)))? {
            continue;
        }
        let fp = fp.unwrap_or_else(|| fp_of(i));
        let record = records.record(i);
        let outcome = match planner.admit(&record) {
            Ok(key) => planner.act(&record, &key, fp)?,
            Err(refusal) => Err(refusal),
        };
        match outcome {
            Ok(()) => {}
            Err(Refusal::Conflict(reason)) => waiting.push((record, reason, fp)),
            Err(Refusal::Final(reason)) => planner.skip(&record, reason)?,
        }
    }
    loop {
        let before = waiting.len();
        let mut still = Vec::new();
        for (record, reason, fp) in waiting {
            let key = planner.key(&record).unwrap_or_default();
            match planner.act(&record, &key, fp)? {
                Ok(()) => {}
                Err(Refusal::Conflict(_)) => still.push((record, reason, fp)),
                Err(Refusal::Final(reason)) => planner.skip(&record, reason)?,
            }
        }
        waiting = still;
        if waiting.is_empty() || waiting.len() == before {
            break;
        }
    }
    for (record, reason, _) in waiting {
        planner.skip(&record, reason)?;
    }
    planner.plan.skips.sort_by_key(|s| s.record);
    if opts.action == Action::Sync {
        let (ids, sample) = planner.dir.vanished(opts.integration, &planner.matched, SAMPLE)?;
        planner.plan.n_deactivated = ids.len() as u64;
        planner.plan.deactivations = sample;
        planner.plan.vanished = ids;
    }
    Ok(planner.plan)
}

/// Writes the deactivations `plan` decided (a sync's vanished users). The
/// run calls it once it has judged them against `max_deactivate`, so a held
/// run never writes one.
pub fn deactivate<D: Directory>(dir: &mut D, plan: &Plan) -> Result<(), D::Error> {
    dir.deactivate(&plan.vanished)
}

/// Every record's fingerprint, for `Directory::carriers`. A large run splits
/// the work across the machine's cores (at most 4): nothing else runs while
/// a plan starts, and on one core it took 0.36 s of a 10% update of a million.
fn fingerprints<R: Records + Sync + ?Sized>(records: &R, context: &[u8]) -> Vec<u128> {
    let n = records.count();
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get()).min(4);
    let mut fps = vec![0u128; n];
    // One buffer per thread for every record's content: a helper thread
    // that allocated per record kept about 14 MB in its own malloc arena.
    let digest_from = |first: usize, part: &mut [u128]| {
        let mut scratch = Vec::with_capacity(256);
        for (j, fp) in part.iter_mut().enumerate() {
            *fp = records.fingerprint_with(first + j, context, &mut scratch);
        }
    };
    if n < 50_000 || threads < 2 {
        digest_from(0, &mut fps);
        return fps;
    }
    let chunk = n.div_ceil(threads);
    std::thread::scope(|s| {
        for (k, part) in fps.chunks_mut(chunk).enumerate() {
            s.spawn(move || digest_from(k * chunk, part));
        }
    });
    fps
}

/// Records whose match key an earlier record already used, with that earlier
/// record. Found before planning by sorting 64-bit hashes of the keys (16 bytes
/// a record, freed at once) and comparing the texts within each hash group, so
/// it is exact without keeping every key while the run writes.
fn repeated_keys<R: Records + ?Sized>(records: &R, c: Field) -> HashMap<usize, usize> {
    // Equal hashes are compared as text below, so a fast hash is enough.
    let seed = hashbrown::DefaultHashBuilder::default();
    let mut hashes: Vec<(u64, u32)> =
        (0..records.count()).filter_map(|i| records.key(i, c).map(|k| (seed.hash_one(k), i as u32))).collect();
    hashes.sort_unstable();
    let mut repeats = HashMap::new();
    for group in hashes.chunk_by(|a, b| a.0 == b.0).filter(|g| g.len() > 1) {
        let mut firsts: Vec<(&str, usize)> = Vec::new();
        for &(_, i) in group {
            let i = i as usize;
            let Some(key) = records.key(i, c) else { continue };
            match firsts.iter().find(|(k, _)| *k == key) {
                Some((_, first)) => {
                    repeats.insert(i, *first);
                }
                None => firsts.push((key, i)),
            }
        }
    }
    repeats
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

/// A decision about one record, or the directory's error.
type Step<E> = Result<Result<(), Refusal>, E>;

struct Planner<'a, D> {
    opts: &'a PlanOptions<'a>,
    dir: &'a mut D,
    /// Records repeating an earlier record's match key, with that record.
    repeats: HashMap<usize, usize>,
    /// Users matched or created by a record: present in the source, never deactivated.
    matched: IdSet,
    /// Who carried each record's fingerprint when the run began, if the directory could tell.
    carriers: Option<Carriers>,
    /// Users this run has written: what `carriers` says about them may be out of date.
    touched: IdSet,
    plan: Plan,
}

impl<'a, D: Directory> Planner<'a, D> {
    fn new(dir: &'a mut D, opts: &'a PlanOptions<'a>) -> Self {
        Self {
            opts,
            dir,
            repeats: HashMap::new(),
            matched: IdSet::default(),
            carriers: None,
            touched: IdSet::default(),
            plan: Plan::default(),
        }
    }

    /// Records why `r` is not used. In a sync, a skipped record that carries
    /// its key still speaks for its user: that user is kept as it is, neither
    /// updated nor deactivated (a record the source sent is not a vanished one).
    fn skip(&mut self, r: &Record, reason: String) -> Result<(), D::Error> {
        self.plan.n_skipped += 1;
        if self.plan.skips.len() < MAX_SKIPS {
            self.plan.skips.push(Skip { record: r.index, key: r.key(), reason });
        }
        if self.opts.action == Action::Sync
            && let Some(key) = r.fields.get(self.key_field())
            && let Some(id) = self.dir.find_id(self.key_field(), key)?
        {
            self.matched.insert(id);
        }
        Ok(())
    }

    fn key(&self, r: &Record) -> Result<String, Refusal> {
        match (self.opts.action, self.opts.match_on) {
            (Action::Sync, MatchOn::ExternalId) => {
                Ok(r.fields.external_id.clone().ok_or("no external_id: sync matches on external_id")?)
            }
            _ => Ok(r.fields.email.clone().ok_or("no valid email")?),
        }
    }

    fn key_field(&self) -> Field {
        match (self.opts.action, self.opts.match_on) {
            (Action::Sync, MatchOn::ExternalId) => Field::ExternalId,
            _ => Field::Email,
        }
    }

    /// Checks a record can be used at all and returns its match key; a key
    /// already used by an earlier record of the run is refused.
    fn admit(&mut self, r: &Record) -> Result<String, Refusal> {
        if let Some(problem) = &r.problem {
            return Err(Refusal::Final(problem.clone()));
        }
        let key = self.key(r)?;
        if let Some(first) = self.repeats.get(&r.index) {
            return Err(Refusal::Final(format!("duplicate of record {first} ({key}) in this run")));
        }
        Ok(key)
    }

    /// Whether record `i` needs nothing, decided from its match key and
    /// fingerprint alone, without decoding it or reading its user: a create
    /// whose email exists, or an update or sync whose user still holds exactly
    /// what this record wrote last time. Anything else takes the full path.
    fn settled<R: Records + ?Sized>(
        &mut self,
        records: &R,
        i: usize,
        fp: impl FnOnce() -> u128,
    ) -> Result<bool, D::Error> {
        let key_field = self.key_field();
        let Some(key) = records.key(i, key_field) else { return Ok(false) };
        if self.repeats.contains_key(&i) {
            return Ok(false);
        }
        if self.opts.action != Action::Create
            && let Some(carriers) = &self.carriers
        {
            match carriers.get(i) {
                Holder::User(id) if !self.touched.contains(id) => return Ok(self.settle(id)),
                Holder::User(_) => {} // written earlier in this run: ask the directory below
                Holder::Nobody => return Ok(false),
                Holder::Unknown => {}
            }
        }
        let holder = match self.dir.holder_of_record(i, key_field)? {
            Holder::Unknown => self.dir.find_id(key_field, key)?,
            Holder::Nobody => None,
            Holder::User(id) => Some(id),
        };
        if self.opts.action == Action::Create {
            if holder.is_some() {
                self.plan.unchanged += 1;
            }
            return Ok(holder.is_some());
        }
        let Some(id) = holder else { return Ok(false) };
        if self.dir.fingerprint(id)? != Some(fp()) {
            return Ok(false);
        }
        Ok(self.settle(id))
    }

    /// Record settled: its user `id` already holds exactly what it would write.
    fn settle(&mut self, id: i64) -> bool {
        if self.opts.action == Action::Sync {
            self.matched.insert(id);
        }
        self.plan.unchanged += 1;
        true
    }

    fn act(&mut self, r: &Record, key: &str, fp: u128) -> Step<D::Error> {
        match self.opts.action {
            Action::Create => self.create(r),
            Action::Update => self.update(r, fp),
            Action::Sync => self.sync(r, key, fp),
            // A push never plans records into the store (`run` sends it to `push`); nothing to do.
            Action::Push => Ok(Ok(())),
        }
    }

    fn create(&mut self, r: &Record) -> Step<D::Error> {
        if self.held(r, Field::Email)? {
            self.plan.unchanged += 1;
            return Ok(Ok(()));
        }
        if r.fields.first_name.is_none() || r.fields.last_name.is_none() {
            return Ok(Err("missing first_name or last_name".into()));
        }
        self.add_new_user(r, None)
    }

    /// Whether any user holds record `r`'s own value in `key` (its email or external id).
    fn held(&mut self, r: &Record, key: Field) -> Result<bool, D::Error> {
        match self.dir.holder_of_record(r.index, key)? {
            Holder::Unknown => self.dir.holds(key, r.fields.get(key).unwrap_or_default()),
            Holder::Nobody => Ok(false),
            Holder::User(_) => Ok(true),
        }
    }

    /// The user holding `value`, record `r`'s own value in `key` (with its
    /// owner when `owner`): "nobody" comes from the directory's record index
    /// when it has one, without a search.
    fn find_own(&mut self, r: &Record, key: Field, value: &str, owner: bool) -> Result<Option<StoredUser>, D::Error> {
        match self.dir.holder_of_record(r.index, key)? {
            Holder::Nobody => Ok(None),
            Holder::User(_) | Holder::Unknown if owner => self.dir.find(key, value),
            Holder::User(_) | Holder::Unknown => self.dir.find_without_owner(key, value),
        }
    }

    /// Creates the record's user; with `fp`, notes the fingerprint on it.
    fn add_new_user(&mut self, r: &Record, fp: Option<u128>) -> Step<D::Error> {
        if let Some(email) = &r.fields.email
            && self.opts.ignored_emails.iter().any(|e| e == email)
        {
            return Ok(Err("email is in ignored_emails".into()));
        }
        if let Some(ext) = &r.fields.external_id
            && self.held(r, Field::ExternalId)?
            && let Some(holder) = self.dir.find(Field::ExternalId, ext)?
        {
            return Ok(Err(Refusal::Conflict(format!("external_id {ext} already belongs to {}", label(&holder)))));
        }
        let user = NewUser {
            record: r.index,
            fields: r.fields.clone(),
            active: r.active.unwrap_or(true),
            extra: r.extra.clone(),
        };
        let id = self.dir.create(&user, self.opts.integration, fp)?;
        self.touched.insert(id);
        self.matched.insert(id);
        self.plan.n_created += 1;
        keep(&mut self.plan.creates, user);
        Ok(Ok(()))
    }

    fn update(&mut self, r: &Record, fp: u128) -> Step<D::Error> {
        let email = r.fields.email.as_deref().unwrap_or_default();
        // An update never reads or changes who owns a user.
        let Some(user) = self.find_own(r, Field::Email, email, false)? else {
            return Ok(Err("no user with this email".into()));
        };
        let mut extra = user.extra.clone();
        for target in self.opts.mapped {
            let value = match target {
                Target::Core(Field::Email) => continue,
                Target::Core(Field::Active) => r.active.map(Value::Bool),
                Target::Core(c) => r.fields.get(*c).map(|s| Value::String(s.to_string())),
                Target::Extra(name) => r.extra.get(name).cloned(),
                // The caller passes a full name as the first and last name it fills.
                Target::Name { .. } => continue,
            };
            if let Some(v) = value {
                extra.insert(target.name().to_string(), v);
            }
        }
        let changes = extra_changes(&user.extra, &extra);
        if changes.is_empty() {
            self.plan.unchanged += 1;
            self.note_settled(user.id, fp)?;
            return Ok(Ok(()));
        }
        let update = Update {
            user_id: user.id,
            record: r.index,
            label: label(&user),
            changes,
            fields: user.fields.clone(),
            active: user.active,
            extra,
            adopt: false,
        };
        self.write_update(update, fp)
    }

    /// A user found to hold exactly what the record would write already gets
    /// the record's fingerprint (the user row is not written), so the next run
    /// settles it without a comparison: users from before fingerprints, or
    /// written by someone else with the same values, join the fast path once.
    fn note_settled(&mut self, id: i64, fp: u128) -> Result<(), D::Error> {
        self.touched.insert(id);
        self.dir.set_fingerprint(id, fp)
    }

    fn write_update(&mut self, update: Update, fp: u128) -> Step<D::Error> {
        self.touched.insert(update.user_id);
        self.dir.update(&update, self.opts.integration)?;
        self.dir.set_fingerprint(update.user_id, fp)?;
        self.plan.n_updated += 1;
        keep(&mut self.plan.updates, update);
        Ok(Ok(()))
    }

    fn sync(&mut self, r: &Record, key: &str, fp: u128) -> Step<D::Error> {
        let key_field = if self.opts.match_on == MatchOn::Email { Field::Email } else { Field::ExternalId };
        let Some(user) = self.find_own(r, key_field, key, true)? else {
            if let Err(refusal) = self.claim_email(r, None)? {
                return Ok(Err(refusal));
            }
            return self.add_new_user(r, Some(fp));
        };
        if let Some(owner) = user.owner.as_deref().filter(|o| *o != self.opts.integration) {
            return Ok(Err(Refusal::Conflict(format!("{} is owned by integration {owner}", label(&user)))));
        }
        self.matched.insert(user.id);
        let mut fields = user.fields.clone();
        for c in TEXT_COLUMNS {
            if let Some(v) = r.fields.get(c) {
                fields.set(c, Some(v.to_string()));
            }
        }
        // The matched user already holding this external id is the common case: no lookup.
        if let Some(ext) = r.fields.external_id.as_ref().filter(|x| user.fields.external_id.as_ref() != Some(*x))
            && let Some(holder) = self.dir.find(Field::ExternalId, ext)?.filter(|h| h.id != user.id)
        {
            return Ok(Err(Refusal::Conflict(format!("external_id {ext} already belongs to {}", label(&holder)))));
        }
        if fields.email != user.fields.email
            && let Err(refusal) = self.claim_email(r, Some(user.id))?
        {
            return Ok(Err(refusal));
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
                self.touched.insert(user.id);
                self.dir.adopt(user.id, self.opts.integration)?;
                self.plan.n_adopted += 1;
                keep(&mut self.plan.adoptions, user.id);
            }
            self.note_settled(user.id, fp)?;
            return Ok(Ok(()));
        }
        if adopt {
            self.plan.n_adopted += 1;
        }
        let update =
            Update { user_id: user.id, record: r.index, label: label(&user), changes, fields, active, extra, adopt };
        self.write_update(update, fp)
    }

    /// Makes sure the record's email is free for user `me` (None = a new user):
    /// clears another user's email with `auto_clear_email`, or refuses.
    fn claim_email(&mut self, r: &Record, me: Option<i64>) -> Step<D::Error> {
        let Some(email) = &r.fields.email else { return Ok(Ok(())) };
        if !self.held(r, Field::Email)? {
            return Ok(Ok(()));
        }
        let Some(holder) = self.dir.find(Field::Email, email)?.filter(|h| Some(h.id) != me) else {
            return Ok(Ok(()));
        };
        if let Some(owner) = holder.owner.as_deref().filter(|o| *o != self.opts.integration) {
            return Ok(Err(Refusal::Conflict(format!(
                "email {email} belongs to {}, owned by integration {owner}",
                label(&holder)
            ))));
        }
        if !self.opts.auto_clear_email || self.matched.contains(holder.id) {
            return Ok(Err(Refusal::Conflict(format!(
                "email {email} already belongs to {} (user #{}){}",
                label(&holder),
                holder.id,
                if self.opts.auto_clear_email {
                    ", which this run also updates"
                } else {
                    "; set auto_clear_email to take it"
                }
            ))));
        }
        self.touched.insert(holder.id);
        self.dir.clear_email(holder.id)?;
        self.plan.n_cleared += 1;
        keep(&mut self.plan.cleared_emails, Deactivation { user_id: holder.id, label: label(&holder) });
        Ok(Ok(()))
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

#[cfg(any(test, feature = "bench"))]
mod memory;
#[cfg(any(test, feature = "bench"))]
pub use memory::MemoryDirectory;

#[cfg(test)]
pub(crate) mod tests;
