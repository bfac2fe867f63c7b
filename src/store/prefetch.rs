//! What a large run would otherwise ask the store a million times, asked
//! once: which user holds each record's email and external id. Each is one
//! sequential scan of a unique index inside the run's transaction, then kept
//! exact by `SqlDirectory` on every write it makes (the transaction is the
//! only writer), so a lookup answered here is the answer SQLite would give.
//!
//! The key caches are keyed by the records' own keys (their text stays in the
//! record arena): a few bytes a record, not a copy of every user's email. A
//! key no record has is not cached; the directory asks SQLite for it.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rusqlite::Connection;

use crate::index::{BATCH, Holder, probe_batch};
use crate::mapping::RecordArena;
use crate::user::Field;

/// Who holds each record key of one kind (`email`, case-insensitive as the
/// store compares it, or `external_id`), from a scan of all users.
pub(super) struct KeyCache {
    core: Field,
    /// Record indices, one per distinct key, hashed by the (folded) key.
    table: HashTable<u32>,
    /// Per record: 1 + the id of the user holding its key, or 0 for nobody;
    /// `UNKNOWN` for a record without a key or repeating an earlier record's
    /// (only the first record with a key is kept up to date).
    holder: Vec<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    fold: Vec<u8>,
}

impl KeyCache {
    /// Scans the store for every key `records` have in `core`. `None` when a
    /// user id does not fit the compact form (the caller falls back to SQL).
    pub fn load(tx: &Connection, records: &RecordArena, core: Field) -> rusqlite::Result<Option<KeyCache>> {
        let Ok(n) = u32::try_from(records.len()) else { return Ok(None) };
        let mut cache = KeyCache {
            core,
            table: HashTable::with_capacity(n as usize),
            holder: vec![UNKNOWN; n as usize],
            hasher: hashbrown::DefaultHashBuilder::default(),
            fold: Vec::new(),
        };
        for i in 0..n {
            let Some(key) = records.field(i as usize, core) else { continue };
            let hash = cache.hash(key.as_bytes());
            if cache.find(records, hash, key.as_bytes()).is_none() {
                cache.holder[i as usize] = 0;
                let hasher = &cache.hasher;
                cache.table.insert_unique(hash, i, |&r| {
                    let key = records.field(r as usize, core).unwrap_or_default();
                    hash_key(hasher, &mut Vec::new(), core, key.as_bytes())
                });
            }
        }
        let sql = match core {
            Field::Email => "SELECT email, id FROM users WHERE email IS NOT NULL",
            _ => "SELECT external_id, id FROM users WHERE external_id IS NOT NULL",
        };
        let mut stmt = tx.prepare(sql)?;
        let mut rows = stmt.query([])?;
        let mut batch = Batch::default();
        while let Some(row) = rows.next()? {
            // Only text can equal a record's key (a blob never equals text in SQLite).
            let rusqlite::types::ValueRef::Text(key) = row.get_ref(0)? else { continue };
            let Some(slot) = compact(row.get(1)?) else { return Ok(None) };
            let hash = cache.hash(key);
            batch.push(key, hash, slot);
            if batch.len() == BATCH {
                cache.probe(records, &mut batch);
            }
        }
        cache.probe(records, &mut batch);
        Ok(Some(cache))
    }

    /// Notes each batched key's holder on the record with that key, if any
    /// (`probe_batch`: the random reads of a batch overlap).
    fn probe(&mut self, records: &RecordArena, batch: &mut Batch) {
        let (core, holder) = (self.core, &mut self.holder);
        let keys = &batch.keys;
        let key = |&(start, end, _): &(usize, usize, u32)| &keys[start..end];
        probe_batch(
            &self.table,
            &batch.rows,
            |r, row| same(core, records.field(r as usize, core), key(row)),
            |r, &(_, _, slot)| holder[r as usize] = slot,
        );
        batch.clear();
    }

    /// The first record with `key` (hashed to `hash`), if any record has it.
    fn find(&self, records: &RecordArena, hash: u64, key: &[u8]) -> Option<u32> {
        let core = self.core;
        self.table.find(hash, |&r| same(core, records.field(r as usize, core), key)).copied()
    }

    fn hash(&mut self, key: &[u8]) -> u64 {
        hash_key(&self.hasher, &mut self.fold, self.core, key)
    }

    fn slot(&mut self, records: &RecordArena, key: &str) -> Option<usize> {
        let hash = self.hash(key.as_bytes());
        self.find(records, hash, key.as_bytes()).map(|r| r as usize)
    }

    /// Who holds `key`, when it is a record key (cached); `Unknown`: ask the store.
    pub fn get(&mut self, records: &RecordArena, key: &str) -> Holder {
        match self.slot(records, key) {
            Some(r) => Holder::from_slot(self.holder[r]),
            None => Holder::Unknown,
        }
    }

    /// Who holds record `i`'s key, when `i` is the first record with that key.
    pub fn holder_of(&self, i: usize) -> Holder {
        match self.holder.get(i) {
            None | Some(&UNKNOWN) => Holder::Unknown,
            Some(&slot) => Holder::from_slot(slot),
        }
    }

    /// Record `i`'s key is now held by `id`, when `i` is the first record
    /// with that key (`None` otherwise: use `set`). False when the id cannot be kept.
    pub fn set_for_record(&mut self, i: usize, id: i64) -> Option<bool> {
        let slot = self.holder.get_mut(i).filter(|s| **s != UNKNOWN)?;
        Some(match compact(id) {
            Some(c) => {
                *slot = c;
                true
            }
            None => false,
        })
    }

    /// `key` is now held by `id` (`None`: by nobody). Returns false when the
    /// id cannot be kept (the caller then stops using the cache).
    pub fn set(&mut self, records: &RecordArena, key: &str, id: Option<i64>) -> bool {
        let Some(r) = self.slot(records, key) else { return true };
        match id {
            None => {
                self.holder[r] = 0;
                true
            }
            Some(id) => match compact(id) {
                Some(slot) => {
                    self.holder[r] = slot;
                    true
                }
                None => false,
            },
        }
    }
}

const UNKNOWN: u32 = u32::MAX;

/// A holder id as kept in `holder`: 1 + id, below `UNKNOWN`.
fn compact(id: i64) -> Option<u32> {
    u32::try_from(id).ok().and_then(|id| id.checked_add(1)).filter(|slot| *slot != UNKNOWN)
}

/// Scanned rows waiting for `KeyCache::probe`: their keys end to end.
#[derive(Default)]
struct Batch {
    keys: Vec<u8>,
    /// (hash, (start and end of the key in `keys`, holder slot))
    rows: Vec<(u64, (usize, usize, u32))>,
}

impl Batch {
    fn push(&mut self, key: &[u8], hash: u64, slot: u32) {
        let start = self.keys.len();
        self.keys.extend_from_slice(key);
        self.rows.push((hash, (start, self.keys.len(), slot)));
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.rows.clear();
    }
}

/// Whether a record's key equals a key as the store compares them.
fn same(core: Field, record_key: Option<&str>, key: &[u8]) -> bool {
    match (core, record_key) {
        (Field::Email, Some(k)) => k.as_bytes().eq_ignore_ascii_case(key),
        (_, Some(k)) => k.as_bytes() == key,
        (_, None) => false,
    }
}

/// Emails hash by their ASCII-lower-cased bytes, as `COLLATE NOCASE` compares them.
fn hash_key(hasher: &hashbrown::DefaultHashBuilder, fold: &mut Vec<u8>, core: Field, key: &[u8]) -> u64 {
    if core == Field::Email && key.iter().any(u8::is_ascii_uppercase) {
        fold.clear();
        fold.extend(key.iter().map(u8::to_ascii_lowercase));
        return hasher.hash_one(fold.as_slice());
    }
    hasher.hash_one(key)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rusqlite::params;

    use super::*;
    use crate::mapping::Record;
    use crate::store::Store;
    use crate::user::Fields;

    /// Enough keys that many probes meet a first candidate of another key
    /// (same partial hash), so the full search behind a batch is exercised.
    #[test]
    fn a_scan_finds_every_holder_a_lookup_would() {
        let n = 20_000;
        let mut arena = RecordArena::default();
        for i in 0..n {
            // Every 7th record repeats an earlier record's keys; every 11th has no email.
            let k = if i % 7 == 6 { i - 3 } else { i };
            let email = (i % 11 != 10).then(|| format!("user{k}@acme.example"));
            let fields = Fields { email, external_id: Some(format!("X{k}")), ..Fields::default() };
            arena.push(&Record { index: i, fields, ..Record::default() });
        }
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        let tx = store.conn.transaction().unwrap();
        // Users for every third key (some e-mails stored upper-cased), and others no record has.
        let mut id = 0;
        for k in (0..n).step_by(3).chain(n..n + 5000) {
            id += 1;
            let email = if k % 2 == 0 { format!("USER{k}@ACME.example") } else { format!("user{k}@acme.example") };
            tx.execute(
                "INSERT INTO users (id, email, external_id, created_at, updated_at) VALUES (?1, ?2, ?3, 'x', 'x')",
                params![id * 2, email, format!("X{k}")],
            )
            .unwrap();
        }
        // Keys stored as blobs: SQLite never finds them by a text key, nor may the cache.
        tx.execute(
            "INSERT INTO users (id, email, external_id, created_at, updated_at)
             VALUES (1, CAST('user1@acme.example' AS BLOB), CAST('X1' AS BLOB), 'x', 'x')",
            [],
        )
        .unwrap();
        for core in [Field::Email, Field::ExternalId] {
            let mut cache = KeyCache::load(&tx, &arena, core).unwrap().expect("ids fit");
            let mut expected: HashMap<String, Option<i64>> = HashMap::new();
            let mut firsts = 0;
            for i in 0..n {
                let Some(key) = arena.field(i, core).map(str::to_string) else {
                    assert_eq!(cache.holder_of(i), Holder::Unknown, "record {i} has no key");
                    continue;
                };
                let holder: Option<i64> = tx
                    .query_row(
                        if core == Field::Email {
                            "SELECT id FROM users WHERE email = ?1"
                        } else {
                            "SELECT id FROM users WHERE external_id = ?1"
                        },
                        [&key],
                        |r| r.get(0),
                    )
                    .ok();
                assert_eq!(cache.get(&arena, &key).known(), Some(holder), "{core:?} {key}");
                match expected.insert(key.clone(), holder) {
                    None => {
                        firsts += 1;
                        assert_eq!(cache.holder_of(i).known(), Some(holder), "first record with {key}");
                    }
                    Some(_) => assert_eq!(cache.holder_of(i), Holder::Unknown, "record {i} repeats {key}"),
                }
            }
            assert!(firsts > n / 2);
            assert!(expected.values().filter(|h| h.is_some()).count() > n / 4, "many keys are held");
            assert_eq!(cache.get(&arena, "nobody@acme.example"), Holder::Unknown, "a key no record has is not cached");
        }
    }
}
