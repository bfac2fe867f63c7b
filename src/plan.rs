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

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::manifest::{Action, MatchOn, Target};
use crate::mapping::{Record, Records};
use crate::user::{Field, Fields, StoredUser, TEXT_COLUMNS};

/// How many of each kind of change a plan keeps to show; the counts are always exact.
pub const SAMPLE: usize = 1000;
/// How many skip reasons a plan keeps; `n_skipped` is always exact.
pub const MAX_SKIPS: usize = 10_000;

/// The users a plan reads and changes. Lookups see the changes already made.
pub trait Directory {
    type Error;
    /// The user holding `value` in `key` (`Field::Email`, case-insensitive, or `Field::ExternalId`).
    fn find(&mut self, key: Field, value: &str) -> Result<Option<StoredUser>, Self::Error>;
    /// Whether any user holds `value` in `key`: `find` without reading the user.
    fn holds(&mut self, key: Field, value: &str) -> Result<bool, Self::Error> {
        Ok(self.find_id(key, value)?.is_some())
    }
    /// The id of the user holding `value` in `key`: `find` without reading the user.
    fn find_id(&mut self, key: Field, value: &str) -> Result<Option<i64>, Self::Error> {
        Ok(self.find(key, value)?.map(|u| u.id))
    }
    /// `find_id` for the value record `i` (of the records being planned) has in
    /// `key`, when the directory knows it without a search; `None` otherwise.
    fn holder_of_record(&mut self, _i: usize, _key: Field) -> Result<Option<Option<i64>>, Self::Error> {
        Ok(None)
    }
    /// For each fingerprint in `fps` (one per record), the user carrying it
    /// now, when the directory can answer for all of them at once (one pass
    /// instead of a lookup per record); `None` when it cannot.
    fn carriers(&mut self, _fps: &[u128]) -> Result<Option<Carriers>, Self::Error> {
        Ok(None)
    }
    /// The fingerprint `set_fingerprint` left on user `id`, unless the user
    /// changed in any other way since (`None` then, or when there is none).
    fn fingerprint(&mut self, id: i64) -> Result<Option<u128>, Self::Error>;
    /// Notes that user `id` holds exactly what the record with fingerprint `fp` wrote.
    fn set_fingerprint(&mut self, id: i64, fp: u128) -> Result<(), Self::Error>;
    /// Adds a user owned by `owner`; returns its id.
    fn create(&mut self, user: &NewUser, owner: &str) -> Result<i64, Self::Error>;
    /// Writes a user's fields, `active` and `extra_fields`; with `adopt`, `owner` takes it.
    fn update(&mut self, update: &Update, owner: &str) -> Result<(), Self::Error>;
    fn clear_email(&mut self, id: i64) -> Result<(), Self::Error>;
    fn adopt(&mut self, id: i64, owner: &str) -> Result<(), Self::Error>;
    /// How many active users `owner` owns.
    fn owned_active(&mut self, owner: &str) -> Result<u64, Self::Error>;
    /// Deactivates `owner`'s active users except `keep`; returns how many, and the first `sample`.
    fn deactivate_others(
        &mut self,
        owner: &str,
        keep: &IdSet,
        sample: usize,
    ) -> Result<(u64, Vec<Deactivation>), Self::Error>;
}

/// A set of user ids as a bitmap: ids are small dense integers, so a million
/// of them take 125 KB instead of the tens of MB of a hash set.
#[derive(Debug, Default)]
pub struct IdSet {
    bits: Vec<u64>,
    /// Ids a bitmap cannot hold (negative); SQLite never hands them out, but a set must not lie.
    others: HashSet<i64>,
}

/// Ids below this always go in the bitmap (at most 16 MB of it); a larger one
/// only while the bitmap would not more than double for it.
const DENSE_IDS: usize = 1 << 27;

impl IdSet {
    pub fn insert(&mut self, id: i64) {
        match usize::try_from(id) {
            Ok(i) if i < DENSE_IDS.max(self.bits.len() * 128) => {
                if self.bits.len() <= i / 64 {
                    self.bits.resize(i / 64 + 1, 0);
                    // Keep every positive id in `others` beyond the bitmap (so `iter` stays in order).
                    let limit = self.bits.len() * 64;
                    let fits: Vec<i64> =
                        self.others.iter().copied().filter(|o| usize::try_from(*o).is_ok_and(|o| o < limit)).collect();
                    for o in fits {
                        self.others.remove(&o);
                        self.bits[o as usize / 64] |= 1 << (o as usize % 64);
                    }
                }
                self.bits[i / 64] |= 1 << (i % 64);
            }
            // Negative, or far beyond the others: a stray id must not cost gigabytes.
            _ => {
                self.others.insert(id);
            }
        }
    }

    /// The ids in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        let mut others: Vec<i64> = self.others.iter().copied().collect();
        others.sort_unstable();
        let split = others.partition_point(|id| *id < 0);
        let above = others.split_off(split);
        let bits = self
            .bits
            .iter()
            .enumerate()
            .flat_map(|(w, &word)| (0..64).filter(move |b| word & (1 << b) != 0).map(move |b| (w * 64 + b) as i64));
        // Positive ids in `others` are all beyond the bitmap (see `insert`).
        others.into_iter().chain(bits).chain(above)
    }

    pub fn contains(&self, id: i64) -> bool {
        if let Ok(i) = usize::try_from(id)
            && self.bits.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
        {
            return true;
        }
        self.others.contains(&id)
    }
}

/// Which user carries each record's fingerprint, by record position.
#[derive(Debug, Default)]
pub struct Carriers {
    /// 1 + user id; 0 for nobody; `AMBIGUOUS` when more than one user does.
    slots: Vec<u32>,
}

const AMBIGUOUS: u32 = u32::MAX;
/// Users' fingerprints matched together (see `Carriers::build`).
const BATCH: usize = 64;

impl Carriers {
    /// Matches users' fingerprints (`(user id, fingerprint)` pairs, any order)
    /// against the records' `fps`. `None` when a user id does not fit the compact form.
    pub fn build(fps: &[u128], users: impl IntoIterator<Item = (i64, u128)>) -> Option<Carriers> {
        let mut table = hashbrown::HashTable::<u32>::with_capacity(fps.len());
        for (i, fp) in fps.iter().enumerate() {
            let hash = *fp as u64;
            if table.find(hash, |&r| fps[r as usize] == *fp).is_none() {
                table.insert_unique(hash, i as u32, |&r| fps[r as usize] as u64);
            }
        }
        let mut slots = vec![0u32; fps.len()];
        let mut note = |batch: &mut Vec<(u32, u128)>| {
            // Every candidate first, then every comparison: the random reads of a batch overlap.
            let mut candidates = [None; BATCH];
            for (c, &(_, fp)) in candidates.iter_mut().zip(batch.iter()) {
                *c = table.find(fp as u64, |_| true).copied();
            }
            for (&(slot, fp), candidate) in batch.iter().zip(candidates) {
                let r = match candidate {
                    Some(r) if fps[r as usize] == fp => Some(r),
                    Some(_) => table.find(fp as u64, |&r| fps[r as usize] == fp).copied(),
                    None => None,
                };
                if let Some(r) = r {
                    let r = r as usize;
                    slots[r] = if slots[r] == 0 { slot } else { AMBIGUOUS };
                }
            }
            batch.clear();
        };
        let mut batch = Vec::with_capacity(BATCH);
        for (id, fp) in users {
            let slot = u32::try_from(id).ok().and_then(|id| id.checked_add(1)).filter(|s| *s != AMBIGUOUS)?;
            batch.push((slot, fp));
            if batch.len() == BATCH {
                note(&mut batch);
            }
        }
        note(&mut batch);
        Some(Carriers { slots })
    }

    /// How many records no single user carries (each will need the full path).
    pub fn uncarried(&self) -> usize {
        self.slots.iter().filter(|&&s| s == 0 || s == AMBIGUOUS).count()
    }

    /// `Some(Some(id))`: user `id` carries record `i`'s fingerprint; `Some(None)`:
    /// nobody does; `None`: not known (more than one user, or a record repeating another).
    fn get(&self, i: usize) -> Option<Option<i64>> {
        match self.slots.get(i) {
            None | Some(&AMBIGUOUS) => None,
            Some(&slot) => Some(slot.checked_sub(1).map(i64::from)),
        }
    }
}

/// A record the plan did not use, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skip {
    pub record: usize,
    pub key: Option<String>,
    pub reason: String,
}

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

fn label(user: &StoredUser) -> String {
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
pub fn plan<D: Directory, R: Records + ?Sized>(
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
        let fps: Vec<u128> = (0..records.count()).map(fp_of).collect();
        planner.carriers = planner.dir.carriers(&fps)?;
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
            Err(Refusal::Final(reason)) => planner.skip(&record, reason),
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
                Err(Refusal::Final(reason)) => planner.skip(&record, reason),
            }
        }
        waiting = still;
        if waiting.is_empty() || waiting.len() == before {
            break;
        }
    }
    for (record, reason, _) in waiting {
        planner.skip(&record, reason);
    }
    planner.plan.skips.sort_by_key(|s| s.record);
    if opts.action == Action::Sync {
        let (n, sample) = planner.dir.deactivate_others(opts.integration, &planner.matched, SAMPLE)?;
        planner.plan.n_deactivated = n;
        planner.plan.deactivations = sample;
    }
    Ok(planner.plan)
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

    fn skip(&mut self, r: &Record, reason: String) {
        self.plan.n_skipped += 1;
        if self.plan.skips.len() < MAX_SKIPS {
            self.plan.skips.push(Skip { record: r.index, key: r.key(), reason });
        }
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
            && let Some(known) = self.carriers.as_ref().and_then(|c| c.get(i))
        {
            match known {
                Some(id) if !self.touched.contains(id) => return Ok(self.settle(id)),
                Some(_) => {} // written earlier in this run: ask the directory below
                None => return Ok(false),
            }
        }
        let holder = match self.dir.holder_of_record(i, key_field)? {
            Some(holder) => holder,
            None => self.dir.find_id(key_field, key)?,
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
            Some(holder) => Ok(holder.is_some()),
            None => self.dir.holds(key, r.fields.get(key).unwrap_or_default()),
        }
    }

    /// Creates the record's user; with `fp`, notes the fingerprint on it.
    fn add_new_user(&mut self, r: &Record, fp: Option<u128>) -> Step<D::Error> {
        if let Some(email) = &r.fields.email
            && self.opts.ignored_emails.contains(email)
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
        let id = self.dir.create(&user, self.opts.integration)?;
        self.touched.insert(id);
        if let Some(fp) = fp {
            self.dir.set_fingerprint(id, fp)?;
        }
        self.matched.insert(id);
        self.plan.n_created += 1;
        keep(&mut self.plan.creates, user);
        Ok(Ok(()))
    }

    fn update(&mut self, r: &Record, fp: u128) -> Step<D::Error> {
        let email = r.fields.email.as_deref().unwrap_or_default();
        let Some(user) = self.dir.find(Field::Email, email)? else {
            return Ok(Err("no user with this email".into()));
        };
        let mut extra = user.extra.clone();
        for target in self.opts.mapped {
            let value = match target {
                Target::Core(Field::Email) => continue,
                Target::Core(Field::Active) => r.active.map(Value::Bool),
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
        let Some(user) = self.dir.find(key_field, key)? else {
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
        if !self.dir.holds(Field::Email, email)? {
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

/// Users held in memory, with the uniqueness rules the store enforces
/// (a broken rule is an error). For tests, benchmarks, and reasoning about plans.
#[derive(Debug, Clone, Default)]
pub struct MemoryDirectory {
    pub users: Vec<StoredUser>,
    by_id: HashMap<i64, usize>,
    max_id: i64,
    by_email: HashMap<String, usize>,
    by_external: HashMap<String, usize>,
    fingerprints: HashMap<i64, u128>,
    /// Off: never answers with a fingerprint, so every record takes the full path.
    pub forgetful: bool,
}

impl MemoryDirectory {
    pub fn new(users: Vec<StoredUser>) -> Self {
        let mut dir = Self { users, ..Self::default() };
        for i in 0..dir.users.len() {
            dir.index(i);
        }
        dir
    }

    fn index(&mut self, i: usize) {
        let u = &self.users[i];
        self.by_id.insert(u.id, i);
        self.max_id = self.max_id.max(u.id);
        if let Some(e) = &u.fields.email {
            self.by_email.insert(e.to_lowercase(), i);
        }
        if let Some(x) = &u.fields.external_id {
            self.by_external.insert(x.clone(), i);
        }
    }

    fn position(&self, id: i64) -> Result<usize, String> {
        self.by_id.get(&id).copied().ok_or_else(|| format!("no user #{id}"))
    }

    fn check_free(&self, fields: &Fields, me: Option<usize>) -> Result<(), String> {
        if let Some(e) = &fields.email
            && let Some(i) = self.by_email.get(&e.to_lowercase()).filter(|i| Some(**i) != me)
        {
            return Err(format!("UNIQUE: email {e} is held by user #{}", self.users[*i].id));
        }
        if let Some(x) = &fields.external_id
            && let Some(i) = self.by_external.get(x).filter(|i| Some(**i) != me)
        {
            return Err(format!("UNIQUE: external_id {x} is held by user #{}", self.users[*i].id));
        }
        Ok(())
    }

    fn unindex(&mut self, i: usize) {
        let u = &self.users[i];
        if let Some(e) = &u.fields.email {
            self.by_email.remove(&e.to_lowercase());
        }
        if let Some(x) = &u.fields.external_id {
            self.by_external.remove(x);
        }
    }
}

impl Directory for MemoryDirectory {
    type Error = String;

    fn find(&mut self, key: Field, value: &str) -> Result<Option<StoredUser>, String> {
        let i = match key {
            Field::Email => self.by_email.get(&value.to_lowercase()),
            _ => self.by_external.get(value),
        };
        Ok(i.map(|i| self.users[*i].clone()))
    }

    fn fingerprint(&mut self, id: i64) -> Result<Option<u128>, String> {
        Ok(if self.forgetful { None } else { self.fingerprints.get(&id).copied() })
    }

    fn carriers(&mut self, fps: &[u128]) -> Result<Option<Carriers>, String> {
        if self.forgetful {
            return Ok(None);
        }
        Ok(Carriers::build(fps, self.fingerprints.iter().map(|(id, fp)| (*id, *fp))))
    }

    fn set_fingerprint(&mut self, id: i64, fp: u128) -> Result<(), String> {
        self.position(id)?;
        self.fingerprints.insert(id, fp);
        Ok(())
    }

    fn create(&mut self, user: &NewUser, owner: &str) -> Result<i64, String> {
        self.check_free(&user.fields, None)?;
        let id = self.max_id + 1;
        self.users.push(StoredUser {
            id,
            fields: user.fields.clone(),
            active: user.active,
            extra: user.extra.clone(),
            owner: Some(owner.to_string()),
        });
        self.index(self.users.len() - 1);
        Ok(id)
    }

    fn update(&mut self, update: &Update, owner: &str) -> Result<(), String> {
        let i = self.position(update.user_id)?;
        self.check_free(&update.fields, Some(i))?;
        self.fingerprints.remove(&update.user_id);
        self.unindex(i);
        let u = &mut self.users[i];
        u.fields = update.fields.clone();
        u.active = update.active;
        u.extra = update.extra.clone();
        if update.adopt {
            u.owner = Some(owner.to_string());
        }
        self.index(i);
        Ok(())
    }

    fn clear_email(&mut self, id: i64) -> Result<(), String> {
        let i = self.position(id)?;
        self.fingerprints.remove(&id);
        self.unindex(i);
        self.users[i].fields.email = None;
        self.index(i);
        Ok(())
    }

    fn adopt(&mut self, id: i64, owner: &str) -> Result<(), String> {
        let i = self.position(id)?;
        self.users[i].owner = Some(owner.to_string());
        Ok(())
    }

    fn owned_active(&mut self, owner: &str) -> Result<u64, String> {
        Ok(self.users.iter().filter(|u| u.active && u.owner.as_deref() == Some(owner)).count() as u64)
    }

    fn deactivate_others(
        &mut self,
        owner: &str,
        keep: &IdSet,
        sample: usize,
    ) -> Result<(u64, Vec<Deactivation>), String> {
        let mut n = 0;
        let mut shown = Vec::new();
        for u in &mut self.users {
            if u.active && u.owner.as_deref() == Some(owner) && !keep.contains(u.id) {
                u.active = false;
                self.fingerprints.remove(&u.id);
                n += 1;
                if shown.len() < sample {
                    shown.push(Deactivation { user_id: u.id, label: label(u) });
                }
            }
        }
        Ok((n, shown))
    }
}

#[cfg(test)]
pub(crate) mod tests {
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

    const NAMES: &[Target] =
        &[Target::Core(Field::Email), Target::Core(Field::FirstName), Target::Core(Field::LastName)];

    /// Plans against a `MemoryDirectory` holding `current`; panics if a store rule would break.
    fn plan(records: &[Record], current: &[StoredUser], o: &PlanOptions<'_>) -> Plan {
        super::plan(records, &mut MemoryDirectory::new(current.to_vec()), o).unwrap()
    }

    /// Enough fingerprints that many first candidates belong to another
    /// record (same partial hash), so the full search behind a batch is exercised.
    #[test]
    fn carriers_match_every_fingerprint_exactly() {
        // splitmix64 twice: hashes as random as real digests (a plain multiply
        // spreads its values too evenly to ever meet the full search).
        let split = |mut z: u64| {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let mix = |i: u128| (u128::from(split(i as u64)) << 64) | u128::from(split(!(i as u64)));
        let n = 20_000u128;
        // Every 9th record repeats the fingerprint of the record before it.
        let fps: Vec<u128> = (0..n).map(|i| if i % 9 == 8 { mix(i - 1) } else { mix(i) }).collect();
        // Users carry every third record's fingerprint; one more user shares record 3's; others carry none.
        let users: Vec<(i64, u128)> =
            (0..n).step_by(3).map(|i| (i as i64 + 1, mix(i))).chain([(99_999, mix(3)), (99_998, mix(n + 7))]).collect();
        let carriers = Carriers::build(&fps, users.iter().copied()).expect("ids fit");
        let mut first: HashMap<u128, usize> = HashMap::new();
        for (i, fp) in fps.iter().enumerate() {
            first.entry(*fp).or_insert(i);
        }
        for (i, fp) in fps.iter().enumerate() {
            let holders: Vec<i64> = users.iter().filter(|u| u.1 == *fp).map(|u| u.0).collect();
            let want = match holders.as_slice() {
                _ if first[fp] != i => Some(None), // a repeat: only the first record is noted
                [] => Some(None),
                [id] => Some(Some(*id)),
                _ => None,
            };
            assert_eq!(carriers.get(i), want, "record {i}");
        }
        assert_eq!(carriers.get(3), None, "two users carry record 3's fingerprint");
    }

    #[test]
    fn a_user_written_earlier_in_the_run_is_not_taken_as_settled() {
        // Run 1 gives record A's user its fingerprint. In run 2 an earlier record
        // takes A's email (auto_clear_email), so A's user no longer holds what A wrote.
        let mut a = record(1, "a@x.io", "A", "Lee");
        a.fields.external_id = Some("E1".into());
        let mut j = record(0, "a@x.io", "J", "Kim");
        j.fields.external_id = Some("E2".into());
        let o = PlanOptions { match_on: MatchOn::ExternalId, auto_clear_email: true, ..opts(Action::Sync, NAMES) };
        let mut plans = Vec::new();
        for forgetful in [false, true] {
            let mut dir = MemoryDirectory { forgetful, ..MemoryDirectory::default() };
            super::plan(&[Record { index: 0, ..a.clone() }][..], &mut dir, &o).unwrap();
            let second = super::plan(&[j.clone(), a.clone()][..], &mut dir, &o).unwrap();
            plans.push((format!("{second:?}"), format!("{:?}", dir.users)));
        }
        assert_eq!(plans[0], plans[1]);
        assert!(plans[0].0.contains("n_cleared: 1"), "{}", plans[0].0);
    }

    pub(crate) mod generated {
        use super::*;
        use proptest::prelude::*;

        /// Cases per property: `PROPTEST_CASES` (100000 for a longer hunt), else `default`.
        pub(crate) fn cases(default: u32) -> u32 {
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
        }

        pub(crate) fn email() -> impl Strategy<Value = Option<String>> {
            proptest::option::weighted(0.9, (0..6u8).prop_map(|i| format!("u{i}@x.io")))
        }

        pub(crate) fn external() -> impl Strategy<Value = Option<String>> {
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
            Target::Core(Field::Email),
            Target::Core(Field::ExternalId),
            Target::Core(Field::FirstName),
            Target::Core(Field::LastName),
            Target::Core(Field::Active),
        ];

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(cases(2000)))]

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
                let mut dir = MemoryDirectory::new(users.clone());
                let first = super::super::plan(&records[..], &mut dir, &o);
                prop_assert!(first.is_ok(), "a store rule broke: {first:?}");
                let first = first.unwrap();
                let second = super::super::plan(&records[..], &mut dir, &o).unwrap();
                prop_assert!(second.is_empty(), "first: {first:?}\nsecond: {second:?}");
                for u in users.iter().filter(|u| u.owner.as_deref() != Some("hr") ) {
                    prop_assert!(!first.deactivations.iter().any(|d| d.user_id == u.id), "deactivated a user it does not own");
                }
            }

            #[test]
            fn fingerprints_never_change_an_outcome(
                first in proptest::collection::vec(record(), 0..10),
                second in proptest::collection::vec(record(), 0..10),
                users in users(),
                action in prop_oneof![Just(Action::Create), Just(Action::Update), Just(Action::Sync)],
                by_external in any::<bool>(),
                other_first in any::<bool>(),
                auto_clear_email in any::<bool>(),
            ) {
                let number = |rs: Vec<Record>| -> Vec<Record> {
                    rs.into_iter().enumerate().map(|(i, mut r)| { r.index = i; r }).collect()
                };
                let (first, second) = (number(first), number(second));
                let match_on = if by_external { MatchOn::ExternalId } else { MatchOn::Email };
                let o = PlanOptions { match_on, auto_clear_email, ..opts(action, ALL) };
                let other = PlanOptions { integration: "other", ..o.clone() };
                let mut remembering = MemoryDirectory::new(users.clone());
                let mut forgetful = MemoryDirectory { forgetful: true, ..MemoryDirectory::new(users) };
                // Two runs of one integration, with or without another's run between them.
                for dir in [&mut remembering, &mut forgetful] {
                    super::super::plan(&first[..], dir, &o).unwrap();
                    if other_first {
                        super::super::plan(&second[..], dir, &other).unwrap();
                    }
                }
                let a = super::super::plan(&first[..], &mut remembering, &o).unwrap();
                let b = super::super::plan(&first[..], &mut forgetful, &o).unwrap();
                prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
                // Then the other records, then the first again (users that vanished come back).
                for records in [&second, &first] {
                    let a = super::super::plan(&records[..], &mut remembering, &o).unwrap();
                    let b = super::super::plan(&records[..], &mut forgetful, &o).unwrap();
                    prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
                }
                prop_assert_eq!(format!("{:?}", remembering.users), format!("{:?}", forgetful.users));
            }
        }
    }

    #[test]
    fn id_sets_hold_what_was_put_in() {
        let mut set = IdSet::default();
        let huge = 1_i64 << 50;
        for id in [0, 1, 63, 64, 1_000_003, -5, huge] {
            set.insert(id);
        }
        for id in [0, 1, 63, 64, 1_000_003, -5, huge] {
            assert!(set.contains(id), "{id}");
        }
        for id in [2, 62, 65, 1_000_002, 5_000_000, -4, huge - 1] {
            assert!(!set.contains(id), "{id}");
        }
        assert_eq!(set.iter().collect::<Vec<_>>(), [-5, 0, 1, 63, 64, 1_000_003, huge]);
        assert!(set.bits.len() < 1 << 16, "a huge id stays out of the bitmap");
        // An id first kept aside joins the bitmap once the bitmap grows past it; order holds.
        let mut grow = IdSet::default();
        let aside = (DENSE_IDS + 10) as i64;
        grow.insert(aside);
        grow.insert((DENSE_IDS - 1) as i64);
        grow.insert(aside + 5);
        assert_eq!(grow.iter().collect::<Vec<_>>(), [(DENSE_IDS - 1) as i64, aside, aside + 5]);
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
        let mapped = [Target::Core(Field::Email), Target::Extra("bamboo".into()), Target::Core(Field::FirstName)];
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
        let mapped = [Target::Core(Field::Email), Target::Core(Field::ExternalId)];
        let base = PlanOptions { match_on: MatchOn::ExternalId, ..opts(Action::Sync, &mapped) };
        let p = plan(std::slice::from_ref(&r), &current, &base);
        assert!(p.skips[0].reason.contains("already belongs to taken@x.io"), "{:?}", p.skips);
        let p = plan(&[r], &current, &PlanOptions { auto_clear_email: true, ..base });
        assert_eq!(p.cleared_emails[0].user_id, 2);
        assert_eq!(p.updates[0].fields.email.as_deref(), Some("taken@x.io"));
    }
}
