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
use rusqlite::Transaction;

use crate::manifest::Core;
use crate::mapping::RecordArena;

/// Who holds each record key of one kind (`email`, case-insensitive as the
/// store compares it, or `external_id`), from a scan of all users.
pub(super) struct KeyCache {
    core: Core,
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
    pub fn load(tx: &Transaction<'_>, records: &RecordArena, core: Core) -> rusqlite::Result<Option<KeyCache>> {
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
            let hash = cache.hash(key);
            if cache.table.find(hash, |&r| same(core, records.field(r as usize, core), key)).is_none() {
                cache.holder[i as usize] = 0;
                let hasher = &cache.hasher;
                cache.table.insert_unique(hash, i, |&r| {
                    hash_key(hasher, &mut Vec::new(), core, records.field(r as usize, core).unwrap_or_default())
                });
            }
        }
        let sql = match core {
            Core::Email => "SELECT email, id FROM users WHERE email IS NOT NULL",
            _ => "SELECT external_id, id FROM users WHERE external_id IS NOT NULL",
        };
        let mut stmt = tx.prepare(sql)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let Ok(key) = row.get_ref(0)?.as_str() else { continue };
            let id: i64 = row.get(1)?;
            let Some(slot) = compact(id) else { return Ok(None) };
            let hash = cache.hash(key);
            if let Some(&r) = cache.table.find(hash, |&r| same(core, records.field(r as usize, core), key)) {
                cache.holder[r as usize] = slot;
            }
        }
        Ok(Some(cache))
    }

    fn hash(&mut self, key: &str) -> u64 {
        hash_key(&self.hasher, &mut self.fold, self.core, key)
    }

    fn slot(&mut self, records: &RecordArena, key: &str) -> Option<usize> {
        let hash = self.hash(key);
        let core = self.core;
        self.table.find(hash, |&r| same(core, records.field(r as usize, core), key)).map(|&r| r as usize)
    }

    /// `Some(holder)` when `key` is a record key (cached), `None` when the store must be asked.
    pub fn get(&mut self, records: &RecordArena, key: &str) -> Option<Option<i64>> {
        let r = self.slot(records, key)?;
        Some(self.holder[r].checked_sub(1).map(i64::from))
    }

    /// Who holds record `i`'s key, when `i` is the first record with that key.
    pub fn holder_of(&self, i: usize) -> Option<Option<i64>> {
        match self.holder.get(i) {
            None | Some(&UNKNOWN) => None,
            Some(&slot) => Some(slot.checked_sub(1).map(i64::from)),
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

/// Whether a record's key equals a key as the store compares them.
fn same(core: Core, record_key: Option<&str>, key: &str) -> bool {
    match (core, record_key) {
        (Core::Email, Some(k)) => k.eq_ignore_ascii_case(key),
        (_, Some(k)) => k == key,
        (_, None) => false,
    }
}

/// Emails hash by their ASCII-lower-cased bytes, as `COLLATE NOCASE` compares them.
fn hash_key(hasher: &hashbrown::DefaultHashBuilder, fold: &mut Vec<u8>, core: Core, key: &str) -> u64 {
    if core == Core::Email && key.bytes().any(|b| b.is_ascii_uppercase()) {
        fold.clear();
        fold.extend(key.bytes().map(|b| b.to_ascii_lowercase()));
        return hasher.hash_one(fold.as_slice());
    }
    hasher.hash_one(key.as_bytes())
}
