//! `RecordArena`: a run's mapped records packed into chunks of bytes, in
//! about the size of their text. Values that repeat across records (a
//! department, a location, a status, a hire date, a manager's email) are
//! kept once in a dictionary and referred to by number, and extra fields'
//! names once in a key table, so a wide record costs its unique text plus a
//! few bytes. What the store's fingerprints digest is the record's content
//! form (`super::encode`), rebuilt from the packed form on demand
//! (`content`), so packing never changes a fingerprint.

use hashbrown::HashTable;
use serde_json::{Map, Value};

use super::{Extra, Mapped, Record, presence_mask, put_str, put_varint, sorted_extras, take_str, take_varint};
use crate::user::{Field, TEXT_COLUMNS};

/// Mapped records, packed. Chunks never move once written, so growing never
/// copies (nor briefly holds two copies); a record's position is its index.
#[derive(Debug, Default)]
pub struct RecordArena {
    chunks: Vec<Vec<u8>>,
    /// (chunk, end offset in the chunk) of each record.
    ends: Vec<(u32, u32)>,
    dict: Dict,
    /// Extra fields' names, and each as its JSON text (`"name"`), by key number.
    keys: Vec<(Box<str>, Box<str>)>,
}

const CHUNK: usize = 4 << 20;
/// Room left in a chunk before a record is written into it; a larger record gets a chunk of its own.
const MAX_INLINE: usize = 64 << 10;

pub(super) const HAS_ACTIVE: u16 = 1 << 8;
pub(super) const ACTIVE: u16 = 1 << 9;
pub(super) const HAS_EXTRA: u16 = 1 << 10;
pub(super) const HAS_PROBLEM: u16 = 1 << 11;

/// An extra field's value: text inline, text in the dictionary, or other JSON as its text.
const VALUE_TEXT: u64 = 0;
const VALUE_DICT: u64 = 1;
const VALUE_JSON: u64 = 2;

/// Texts kept once: at most `SLOT_LIMIT` distinct values per field (a field
/// with more, such as an email, stops adding and is written inline), each
/// of 2 to `MAX_LEN` bytes.
#[derive(Default)]
struct Dict {
    texts: Vec<Box<str>>,
    table: HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    /// Distinct values added per field (8 text columns, then extra keys); `CLOSED` once past the limit.
    added: Vec<u32>,
}

const SLOT_LIMIT: u32 = 4096;
const CLOSED: u32 = u32::MAX;
const MAX_LEN: usize = 64;

impl std::fmt::Debug for Dict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dict({} texts)", self.texts.len())
    }
}

impl Dict {
    /// The number of `text` for field `slot`, adding it while the field is open.
    fn id(&mut self, slot: usize, text: &str) -> Option<u32> {
        if !(2..=MAX_LEN).contains(&text.len()) {
            return None;
        }
        if self.added.len() <= slot {
            self.added.resize(slot + 1, 0);
        }
        if self.added[slot] == CLOSED {
            return None;
        }
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, text);
        let texts = &self.texts;
        if let Some(id) = self.table.find(hash, |&id| &*texts[id as usize] == text) {
            return Some(*id);
        }
        if self.added[slot] >= SLOT_LIMIT {
            self.added[slot] = CLOSED;
            return None;
        }
        self.added[slot] += 1;
        let id = self.texts.len() as u32;
        self.texts.push(text.into());
        let (texts, hasher) = (&self.texts, &self.hasher);
        self.table.insert_unique(hash, id, |&id| std::hash::BuildHasher::hash_one(hasher, &*texts[id as usize]));
        Some(id)
    }

    fn text(&self, id: u64) -> &str {
        self.texts.get(id as usize).map_or("", |t| t)
    }
}

impl RecordArena {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Keeps the first `len` records.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        self.ends.truncate(len);
        match self.ends.last() {
            Some(&(chunk, end)) => {
                self.chunks.truncate(chunk as usize + 1);
                self.chunks[chunk as usize].truncate(end as usize);
            }
            None => self.chunks.clear(),
        }
    }

    pub fn push(&mut self, r: &Record) {
        debug_assert_eq!(r.index, self.len(), "records are pushed in order");
        self.push_mapped(&Mapped::from_record(r));
    }

    pub(super) fn push_mapped(&mut self, m: &Mapped<'_>) {
        let fits = self.chunks.last().is_some_and(|c| c.capacity() - c.len() >= MAX_INLINE);
        if !fits {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let mut chunk = std::mem::take(self.chunks.last_mut().expect("a chunk was just made"));
        let start = chunk.len();
        self.pack(m, &mut chunk);
        *self.chunks.last_mut().expect("a chunk") = chunk;
        let last = self.chunks.len() - 1;
        if start > 0 && self.chunks[last].len() - start > MAX_INLINE {
            // Too big to share a chunk: move it to a chunk of its own.
            let own = self.chunks[last].split_off(start);
            self.chunks.push(own);
        }
        let chunk = self.chunks.len() - 1;
        self.ends.push((chunk as u32, self.chunks[chunk].len() as u32));
    }

    /// Writes `m` packed: the presence mask, each present text (inline or a
    /// dictionary number), the extra fields (key number and value) in content
    /// order, and the problem.
    fn pack(&mut self, m: &Mapped<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(&presence_mask(m).to_le_bytes());
        for (slot, text) in m.texts.iter().enumerate() {
            if let Some(text) = text {
                match self.dict.id(slot, text) {
                    Some(id) => put_varint(out, (u64::from(id) << 1) | 1),
                    None => {
                        put_varint(out, (text.len() as u64) << 1);
                        out.extend_from_slice(text.as_bytes());
                    }
                }
            }
        }
        if !m.extra.is_empty() {
            let entries = sorted_extras(&m.extra);
            put_varint(out, entries.len() as u64);
            for (name, value) in entries {
                let key = self.key(name);
                put_varint(out, key as u64);
                let text = match value {
                    Extra::Str(s) => Some(*s),
                    Extra::Value(v) => v.as_str(),
                };
                match text {
                    Some(s) => match self.dict.id(TEXT_COLUMNS.len() + key, s) {
                        Some(id) => put_varint(out, (u64::from(id) << 2) | VALUE_DICT),
                        None => {
                            put_varint(out, ((s.len() as u64) << 2) | VALUE_TEXT);
                            out.extend_from_slice(s.as_bytes());
                        }
                    },
                    None => {
                        let json = match value {
                            Extra::Value(v) => v.to_string(),
                            Extra::Str(s) => Value::String(s.to_string()).to_string(),
                        };
                        put_varint(out, ((json.len() as u64) << 2) | VALUE_JSON);
                        out.extend_from_slice(json.as_bytes());
                    }
                }
            }
        }
        if let Some(p) = &m.problem {
            put_str(out, p);
        }
    }

    /// The number of an extra field's name, added on first sight.
    fn key(&mut self, name: &str) -> usize {
        if let Some(k) = self.keys.iter().position(|(n, _)| &**n == name) {
            return k;
        }
        let json = Value::String(name.to_string()).to_string();
        self.keys.push((name.into(), json.into()));
        self.keys.len() - 1
    }

    /// Record `i` as packed.
    fn raw(&self, i: usize) -> &[u8] {
        let (chunk, end) = self.ends[i];
        let start = match i.checked_sub(1).map(|p| self.ends[p]) {
            Some((c, e)) if c == chunk => e,
            _ => 0,
        };
        &self.chunks[chunk as usize][start as usize..end as usize]
    }

    /// A packed text: from the dictionary or inline.
    fn take_text<'a>(&'a self, cur: &mut &'a [u8]) -> &'a str {
        let v = take_varint(cur);
        if v & 1 == 1 {
            return self.dict.text(v >> 1);
        }
        take_bytes(cur, (v >> 1) as usize)
    }

    /// An extra field's packed value: (its text, whether it is JSON text rather than a string).
    fn take_value<'a>(&'a self, cur: &mut &'a [u8]) -> (&'a str, bool) {
        let v = take_varint(cur);
        match v & 3 {
            VALUE_DICT => (self.dict.text(v >> 2), false),
            VALUE_JSON => (take_bytes(cur, (v >> 2) as usize), true),
            _ => (take_bytes(cur, (v >> 2) as usize), false),
        }
    }

    pub fn get(&self, i: usize) -> Record {
        let mut cur = self.raw(i);
        let mask = u16::from_le_bytes([cur[0], cur[1]]);
        cur = &cur[2..];
        let mut r = Record { index: i, ..Record::default() };
        for (bit, c) in TEXT_COLUMNS.iter().enumerate() {
            if mask & (1 << bit) != 0 {
                r.fields.set(*c, Some(self.take_text(&mut cur).to_string()));
            }
        }
        if mask & HAS_ACTIVE != 0 {
            r.active = Some(mask & ACTIVE != 0);
        }
        if mask & HAS_EXTRA != 0 {
            let n = take_varint(&mut cur);
            let mut extra = Map::new();
            for _ in 0..n {
                let key = take_varint(&mut cur) as usize;
                let (text, json) = self.take_value(&mut cur);
                let value = if json {
                    serde_json::from_str(text).unwrap_or(Value::Null)
                } else {
                    Value::String(text.to_string())
                };
                extra.insert(self.keys.get(key).map_or(String::new(), |(n, _)| n.to_string()), value);
            }
            r.extra = extra;
        }
        if mask & HAS_PROBLEM != 0 {
            r.problem = Some(take_str(&mut cur).to_string());
        }
        r
    }

    pub fn iter(&self) -> impl Iterator<Item = Record> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Record `i` in the content form (`super::encode`'s bytes): what its
    /// fingerprint digests, the same however it was packed.
    pub(super) fn content(&self, i: usize, out: &mut Vec<u8>) {
        let mut cur = self.raw(i);
        let mask = u16::from_le_bytes([cur[0], cur[1]]);
        cur = &cur[2..];
        out.extend_from_slice(&mask.to_le_bytes());
        for bit in 0..TEXT_COLUMNS.len() {
            if mask & (1 << bit) != 0 {
                put_str(out, self.take_text(&mut cur));
            }
        }
        if mask & HAS_EXTRA != 0 {
            let n = take_varint(&mut cur);
            // The object is written in place and its length then rotated in
            // before it: the same bytes as writing it apart, with no buffer.
            let start = out.len();
            out.push(b'{');
            for k in 0..n {
                if k > 0 {
                    out.push(b',');
                }
                let key = take_varint(&mut cur) as usize;
                out.extend_from_slice(self.keys.get(key).map_or("\"\"", |(_, j)| j).as_bytes());
                out.push(b':');
                match self.take_value(&mut cur) {
                    (text, true) => out.extend_from_slice(text.as_bytes()),
                    // A string always serializes.
                    (text, false) => drop(serde_json::to_writer(&mut *out, text)),
                }
            }
            out.push(b'}');
            let end = out.len();
            put_varint(out, (end - start) as u64);
            let len_bytes = out.len() - end;
            out[start..].rotate_right(len_bytes);
        }
        if mask & HAS_PROBLEM != 0 {
            put_str(out, take_str(&mut cur));
        }
    }

    /// Which fields record `i` has, without decoding their values: its
    /// presence mask, and (when `extra` is asked for) its extra fields' names.
    pub(super) fn presence(&self, i: usize, extra: bool) -> (u16, Vec<&str>) {
        let mut cur = self.raw(i);
        let mask = u16::from_le_bytes([cur[0], cur[1]]);
        if !extra || mask & HAS_EXTRA == 0 {
            return (mask, Vec::new());
        }
        cur = &cur[2..];
        for bit in 0..TEXT_COLUMNS.len() {
            if mask & (1 << bit) != 0 {
                self.take_text(&mut cur);
            }
        }
        let n = take_varint(&mut cur);
        let mut names = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let key = take_varint(&mut cur) as usize;
            self.take_value(&mut cur);
            names.push(self.keys.get(key).map_or("", |(n, _)| n));
        }
        (mask, names)
    }

    /// One text field of record `i` without decoding the rest; `None` for a
    /// record with a problem (it never takes part in matching).
    pub fn field(&self, i: usize, c: Field) -> Option<&str> {
        let mut cur = self.raw(i);
        let mask = u16::from_le_bytes([cur[0], cur[1]]);
        cur = &cur[2..];
        if mask & HAS_PROBLEM != 0 {
            return None;
        }
        for (bit, col) in TEXT_COLUMNS.iter().enumerate() {
            let present = mask & (1 << bit) != 0;
            if *col == c {
                return present.then(|| self.take_text(&mut cur));
            }
            if present {
                self.take_text(&mut cur);
            }
        }
        None
    }

    /// Bytes the packed records and the dictionary hold (chunks counted as
    /// filled; each chunk reserves up to 4 MB more).
    pub fn packed_bytes(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum::<usize>()
            + self.ends.capacity() * std::mem::size_of::<(u32, u32)>()
            + self.dict.texts.iter().map(|t| t.len() + 16).sum::<usize>()
            + self.dict.table.capacity() * 5
    }
}

fn take_bytes<'a>(cur: &mut &'a [u8], len: usize) -> &'a str {
    let (s, rest) = cur.split_at(len.min(cur.len()));
    *cur = rest;
    // Only `pack` writes here, always from a `&str`.
    std::str::from_utf8(s).unwrap_or_default()
}
