//! The mapping rules: one source record (a parsed `Value`, or the slots
//! `fetch::project` read from a page) becomes fields, `active` and extras
//! through the manifest's `data_structure` (its rules, `rule`: paths,
//! targets, value maps); a run's records are packed into a
//! `RecordArena`, whose packed bytes also give each record's fingerprint
//! (`digest`). Pure: no I/O, no async. A value that cannot be used makes the
//! whole record carry a `problem`, which the plan records as its skip reason.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::problem::kind;
use crate::user::{Email, Field, Fields};

mod arena;
mod rule;

pub use arena::RecordArena;
use arena::{ACTIVE, HAS_ACTIVE, HAS_EXTRA, HAS_PROBLEM};
pub(crate) use rule::dot_get;
pub use rule::{FieldPath, Rule, Target, ValueMap};

/// One mapped record. `index` is its 0-based position in the whole fetch.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Record {
    pub index: usize,
    pub fields: Fields,
    pub active: Option<bool>,
    pub extra: Map<String, Value>,
    /// Why this record cannot be used (a bad email, an ambiguous JSONPath, ...).
    pub problem: Option<String>,
}

impl Record {
    /// The text a skip reason is filed under: the email, else the external id.
    pub fn key(&self) -> Option<String> {
        self.fields.email.clone().or_else(|| self.fields.external_id.clone())
    }
}

/// Writes a record's content (not its index) in the arena's compact form:
/// a mask of what is present, then each present text, the extra fields as
/// JSON (keys sorted), and the problem. Equal content gives equal bytes.
fn encode(r: &Record, bytes: &mut Vec<u8>) {
    encode_mapped(&Mapped::from_record(r), bytes);
}

/// What a record has: a bit per present text (in `TEXT_COLUMNS` order), then
/// `active` and its value, extra fields, a problem. The packed and the content
/// form both start with it.
fn presence_mask(m: &Mapped<'_>) -> u16 {
    let mut mask = 0u16;
    for (bit, text) in m.texts.iter().enumerate() {
        if text.is_some() {
            mask |= 1 << bit;
        }
    }
    if let Some(a) = m.active {
        mask |= HAS_ACTIVE | if a { ACTIVE } else { 0 };
    }
    if !m.extra.is_empty() {
        mask |= HAS_EXTRA;
    }
    if m.problem.is_some() {
        mask |= HAS_PROBLEM;
    }
    mask
}

fn encode_mapped(m: &Mapped<'_>, bytes: &mut Vec<u8>) {
    bytes.extend_from_slice(&presence_mask(m).to_le_bytes());
    for text in m.texts.iter().flatten() {
        put_str(bytes, text);
    }
    if !m.extra.is_empty() {
        put_str(bytes, &extra_json(&m.extra));
    }
    if let Some(p) = &m.problem {
        put_str(bytes, p);
    }
}

/// The extra fields in the order the content form writes them: by name, a
/// repeated name's last value winning.
fn sorted_extras<'m, 'a>(extra: &'m [(&'a str, Extra<'a>)]) -> Vec<&'m (&'a str, Extra<'a>)> {
    let mut entries: Vec<(usize, &(&str, Extra<'_>))> = extra.iter().enumerate().collect();
    // By name, then the later entry first, so the first of each name is the one that wins.
    entries.sort_by(|(i, a), (j, b)| a.0.cmp(b.0).then(j.cmp(i)));
    entries.dedup_by(|later, earlier| later.1.0 == earlier.1.0);
    entries.into_iter().map(|(_, e)| e).collect()
}

/// The extra fields as one JSON object, keys sorted, a repeated name's last
/// value winning: the bytes `serde_json` writes for the same `Map` (sorted).
fn extra_json(extra: &[(&str, Extra<'_>)]) -> String {
    let entries = sorted_extras(extra);
    let mut out = Vec::with_capacity(16 * entries.len() + 2);
    out.push(b'{');
    for (n, (name, value)) in entries.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        // Strings and JSON values always serialize.
        let _ = serde_json::to_writer(&mut out, name);
        out.push(b':');
        let _ = match value {
            Extra::Str(s) => serde_json::to_writer(&mut out, s),
            Extra::Value(v) => serde_json::to_writer(&mut out, v.as_ref()),
        };
    }
    out.push(b'}');
    String::from_utf8(out).unwrap_or_default()
}

/// A 128-bit digest of `context` and a record's content, the same in every
/// run and every build (SipHash-1-3 with fixed keys): what the store keeps
/// to know a user still holds exactly what this record last wrote.
pub fn digest(context: &[u8], encoded: &[u8]) -> u128 {
    use siphasher::sip128::Hasher128;
    use std::hash::Hasher;
    let mut h = siphasher::sip128::SipHasher13::new_with_keys(0x0072_6f73_7465_7264, 0x0066_696e_6765_7273);
    h.write(&(context.len() as u64).to_le_bytes());
    h.write(context);
    h.write(encoded);
    h.finish128().as_u128()
}

/// Records a plan can read by position, more than once.
pub trait Records {
    fn count(&self) -> usize;
    fn record(&self, i: usize) -> Record;
    /// Field `c` of record `i`, or `None` when it is absent or the record has a problem.
    fn key(&self, i: usize, c: Field) -> Option<&str>;
    /// `digest(context, content of record i)`.
    fn fingerprint(&self, i: usize, context: &[u8]) -> u128 {
        self.fingerprint_with(i, context, &mut Vec::with_capacity(256))
    }
    /// `fingerprint`, building the content in `scratch` (cleared first): a
    /// caller digesting many records allocates once.
    fn fingerprint_with(&self, i: usize, context: &[u8], scratch: &mut Vec<u8>) -> u128;
}

impl Records for RecordArena {
    fn count(&self) -> usize {
        self.len()
    }
    fn record(&self, i: usize) -> Record {
        self.get(i)
    }
    fn key(&self, i: usize, c: Field) -> Option<&str> {
        self.field(i, c)
    }
    fn fingerprint_with(&self, i: usize, context: &[u8], scratch: &mut Vec<u8>) -> u128 {
        scratch.clear();
        self.content(i, scratch);
        digest(context, scratch)
    }
}

impl Records for [Record] {
    fn count(&self) -> usize {
        self.len()
    }
    fn record(&self, i: usize) -> Record {
        self[i].clone()
    }
    fn key(&self, i: usize, c: Field) -> Option<&str> {
        let r = &self[i];
        if r.problem.is_some() { None } else { r.fields.get(c) }
    }
    fn fingerprint_with(&self, i: usize, context: &[u8], scratch: &mut Vec<u8>) -> u128 {
        scratch.clear();
        encode(&self[i], scratch);
        digest(context, scratch)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(cur: &mut &[u8]) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    while let Some((&b, rest)) = cur.split_first() {
        *cur = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    v
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn take_str<'a>(cur: &mut &'a [u8]) -> &'a str {
    let len = take_varint(cur) as usize;
    let (s, rest) = cur.split_at(len);
    *cur = rest;
    // Only `put_str` writes here, always from a `&str`.
    std::str::from_utf8(s).unwrap_or_default()
}

/// How many of `records` have a value for each rule's field, in rule order.
/// With `full` false it stops once every rule has one (the question is then
/// only whether a path matches nothing, which the first records answer).
pub fn coverage(records: &RecordArena, rules: &[Rule], full: bool) -> Vec<u64> {
    let mut counts = vec![0u64; rules.len()];
    let wants_extra = rules.iter().any(|r| matches!(r.target, Target::Extra(_)));
    for i in 0..records.len() {
        let (mask, extra) = records.presence(i, wants_extra);
        let text =
            |c: Field| crate::user::TEXT_COLUMNS.iter().position(|t| *t == c).is_some_and(|bit| mask & (1 << bit) != 0);
        for (count, rule) in counts.iter_mut().zip(rules) {
            let has = match &rule.target {
                Target::Core(Field::Active) => mask & HAS_ACTIVE != 0,
                Target::Core(c) => text(*c),
                Target::Extra(name) => extra.iter().any(|k| k == name),
                Target::Name { .. } => text(Field::FirstName) || text(Field::LastName),
            };
            *count += u64::from(has);
        }
        if !full && counts.iter().all(|c| *c > 0) {
            break;
        }
    }
    counts
}

/// The dot path in `record` closest to `missing` (a path that found nothing), if any is close.
pub fn closest_path(record: &Value, missing: &str) -> Option<String> {
    fn walk(v: &Value, prefix: &str, depth: usize, out: &mut Vec<String>) {
        let Value::Object(m) = v else { return };
        for (k, child) in m {
            let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            if depth < 3 {
                walk(child, &path, depth + 1, out);
            }
            out.push(path);
        }
    }
    let mut paths = Vec::new();
    walk(record, "", 0, &mut paths);
    let lower = missing.to_ascii_lowercase();
    paths
        .into_iter()
        .map(|p| (strsim::damerau_levenshtein(&lower, &p.to_ascii_lowercase()), p))
        .filter(|(d, p)| *d <= 2.max(p.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, p)| p)
}

/// What one path found in one record.
#[derive(Debug, Clone, Copy)]
pub enum Hits<'a> {
    None,
    One(&'a Value),
    /// More than one value (a JSONPath); how many.
    Many(usize),
}

/// Maps one record.
pub fn map_record(structure: &[Rule], index: usize, source: &Value) -> Record {
    map_hits(structure, index, |i| {
        let hits = structure[i].path.select(source);
        match hits.as_slice() {
            [] => Hits::None,
            [one] => Hits::One(one),
            many => Hits::Many(many.len()),
        }
    })
}

/// Maps one record from what each `structure` path found (`hit(i)` for entry `i`).
pub fn map_hits<'a>(structure: &'a [Rule], index: usize, mut hit: impl FnMut(usize) -> Hits<'a>) -> Record {
    let mut m = Mapped::default();
    for (i, rule) in structure.iter().enumerate() {
        match hit(i) {
            Hits::None => {}
            Hits::One(value) => m.apply(rule, Found::Value(value)),
            Hits::Many(n) => {
                m.problem.get_or_insert(format!("\"{}\" matched {n} values, expected one", rule.target.name()));
            }
        }
    }
    m.into_record(index)
}

/// What a path found in a record: a string (borrowed from the page where it
/// can be), or any other JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot<'a> {
    Str(Cow<'a, str>),
    Value(Value),
}

/// Maps one record from one slot per `structure` entry, and packs it into `arena`
/// without making a `Record` (most texts stay borrowed from the page).
pub fn push_slots(arena: &mut RecordArena, structure: &[Rule], slots: &[Option<Slot<'_>>]) {
    let mut m = Mapped::default();
    for (rule, slot) in structure.iter().zip(slots) {
        match slot {
            None => {}
            Some(Slot::Str(s)) => m.apply(rule, Found::Str(s)),
            Some(Slot::Value(v)) => m.apply(rule, Found::Value(v)),
        }
    }
    arena.push_mapped(&m);
}

enum Found<'a> {
    Str(&'a str),
    Value(&'a Value),
}

/// A mapped record on its way into the arena, borrowing what it can.
#[derive(Default)]
struct Mapped<'a> {
    /// In `TEXT_COLUMNS` order.
    texts: [Option<Cow<'a, str>>; 8],
    active: Option<bool>,
    /// In mapping order; `extra_json` sorts them.
    extra: Vec<(&'a str, Extra<'a>)>,
    problem: Option<String>,
}

/// One extra field's value, borrowed where it can be.
enum Extra<'a> {
    /// A string as the source wrote it (not trimmed).
    Str(&'a str),
    Value(Cow<'a, Value>),
}

fn column(c: Field) -> usize {
    crate::user::TEXT_COLUMNS.iter().position(|t| *t == c).unwrap_or(0)
}

impl<'a> Mapped<'a> {
    fn apply(&mut self, rule: &'a Rule, found: Found<'a>) {
        let found = match &rule.map {
            None => Ok(found),
            Some(map) => through(map, rule, found),
        };
        if let Err(reason) = found.and_then(|found| self.set(&rule.target, found)) {
            self.problem.get_or_insert(reason);
        }
    }

    fn set(&mut self, target: &'a Target, found: Found<'a>) -> Result<(), String> {
        // A string is handled the same whether it was borrowed or parsed into a `Value`.
        let found = match found {
            Found::Value(Value::String(s)) => Found::Str(s.as_str()),
            other => other,
        };
        match (target, found) {
            (Target::Core(Field::Active), Found::Str(s)) => {
                if !s.trim().is_empty() {
                    self.active = Some(parse_active_str(s)?);
                }
            }
            (Target::Core(Field::Active), Found::Value(v)) => {
                if !is_missing(v) {
                    self.active = Some(parse_active(v)?);
                }
            }
            (Target::Core(Field::Email), Found::Str(s)) => {
                if !s.trim().is_empty() {
                    self.texts[column(Field::Email)] = Some(Email::check(s)?);
                }
            }
            (Target::Core(Field::Email), Found::Value(v)) => {
                if let Some(text) = text(v, "email")? {
                    self.texts[column(Field::Email)] = Some(Cow::Owned(Email::parse(&text)?.into_string()));
                }
            }
            (Target::Core(core), Found::Str(s)) => {
                let t = s.trim();
                self.texts[column(*core)] = (!t.is_empty()).then_some(Cow::Borrowed(t));
            }
            (Target::Core(core), Found::Value(v)) => {
                self.texts[column(*core)] = text(v, core.column())?.map(Cow::Owned);
            }
            (Target::Name { first, last }, found) => {
                let text = match found {
                    Found::Str(s) => Some(s.to_string()),
                    Found::Value(v) => text(v, "name")?,
                };
                if let Some((f, l)) = text.as_deref().map(crate::user::split_name).filter(|(f, _)| !f.is_empty()) {
                    if *first {
                        self.texts[column(Field::FirstName)] = Some(Cow::Owned(f));
                    }
                    if *last {
                        self.texts[column(Field::LastName)] = l.map(Cow::Owned);
                    }
                }
            }
            (Target::Extra(name), Found::Str(s)) => {
                if !s.trim().is_empty() {
                    self.extra.push((name, Extra::Str(s)));
                }
            }
            (Target::Extra(name), Found::Value(v)) => {
                if !is_missing(v) {
                    self.extra.push((name, Extra::Value(Cow::Borrowed(v))));
                }
            }
        }
        Ok(())
    }

    fn from_record(r: &'a Record) -> Self {
        Mapped {
            texts: crate::user::TEXT_COLUMNS.map(|c| r.fields.get(c).map(Cow::Borrowed)),
            active: r.active,
            extra: r.extra.iter().map(|(k, v)| (k.as_str(), Extra::Value(Cow::Borrowed(v)))).collect(),
            problem: r.problem.clone(),
        }
    }

    fn into_record(self, index: usize) -> Record {
        let mut record = Record { index, active: self.active, problem: self.problem, ..Record::default() };
        for (name, value) in self.extra {
            let value = match value {
                Extra::Str(s) => Value::String(s.to_string()),
                Extra::Value(v) => v.into_owned(),
            };
            record.extra.insert(name.to_string(), value);
        }
        for (c, text) in crate::user::TEXT_COLUMNS.iter().zip(self.texts) {
            record.fields.set(*c, text.map(Cow::into_owned));
        }
        record
    }
}

/// A found value through a rule's value map: the value (as text, exactly)
/// replaced from the map, else by `else`; a value in neither skips the record.
fn through<'a>(map: &'a ValueMap, rule: &Rule, found: Found<'_>) -> Result<Found<'a>, String> {
    let key = match found {
        Found::Str(s) => s.to_string(),
        Found::Value(Value::String(s)) => s.clone(),
        Found::Value(Value::Null) => return Ok(Found::Value(&Value::Null)),
        Found::Value(other) => other.to_string(),
    };
    match map.values.get(&key).or(map.otherwise.as_ref()) {
        Some(v) => Ok(Found::Value(v)),
        None => Err(format!(
            "{} \"{key}\" (at \"{}\") is not in its map; add it to \"map\", or give \"else\"",
            rule.target.name(),
            rule.path
        )),
    }
}

fn is_missing(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// A JSON value as text: strings trimmed, numbers as written, booleans as `true`/`false`.
/// Null and blank strings are missing.
pub fn text(value: &Value, field: &str) -> Result<Option<String>, String> {
    Ok(match value {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(_) | Value::Object(_) => return Err(format!("\"{field}\" is {}, expected text", kind(value))),
    })
}

/// `active`: booleans, 0/1, or "true"/"false"/"active"/"inactive"/"1"/"0" in any case.
pub fn parse_active(value: &Value) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
        Value::String(s) => parse_active_str(s),
        other => Err(format!("\"active\" is {other}; expected true/false, 1/0 or active/inactive")),
    }
}

fn parse_active_str(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "active" | "1" => Ok(true),
        "false" | "inactive" | "0" => Ok(false),
        _ => Err(format!("\"active\" is \"{s}\"; expected true/false, 1/0 or active/inactive")),
    }
}

#[cfg(test)]
mod tests;
