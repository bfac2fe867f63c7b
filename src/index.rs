//! Compact indexes that let a large run answer per-record questions from
//! one pass instead of a lookup per record: `IdSet` (a bitmap of user ids),
//! `Carriers` (which user carries each record's fingerprint) and the batched
//! hash-table probe that both `Carriers` and the store's key caches use.
//! Pure data structures: no SQL, no rules.

use std::collections::HashSet;

use hashbrown::HashTable;

/// What an index knows of who holds a key: not known (ask the store),
/// nobody, or one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Unknown,
    Nobody,
    User(i64),
}

impl Holder {
    /// From a compact slot: 0 for nobody, 1 + id for a user.
    pub fn from_slot(slot: u32) -> Holder {
        match slot.checked_sub(1) {
            None => Holder::Nobody,
            Some(id) => Holder::User(i64::from(id)),
        }
    }

    /// `None` when not known; else who (`Some(None)`: nobody).
    pub fn known(self) -> Option<Option<i64>> {
        match self {
            Holder::Unknown => None,
            Holder::Nobody => Some(None),
            Holder::User(id) => Some(Some(id)),
        }
    }
}

/// Rows probed together (see `probe_batch`).
pub const BATCH: usize = 64;

/// Looks up a batch of (hash, row) pairs in `table`: first every row's
/// candidate (the first entry its hash could be), then every comparison, so
/// the random reads of a batch overlap instead of waiting on one another. A
/// candidate that turns out wrong (its hash agreed only in part) falls back
/// to the full search; no candidate means no entry can match. `found` gets
/// each row that matched with its entry.
pub fn probe_batch<R>(
    table: &HashTable<u32>,
    batch: &[(u64, R)],
    eq: impl Fn(u32, &R) -> bool,
    mut found: impl FnMut(u32, &R),
) {
    let mut candidates = [None; BATCH];
    for (c, (hash, _)) in candidates.iter_mut().zip(batch) {
        *c = table.find(*hash, |_| true).copied();
    }
    for ((hash, row), candidate) in batch.iter().zip(candidates) {
        let entry = match candidate {
            Some(e) if eq(e, row) => Some(e),
            Some(_) => table.find(*hash, |&e| eq(e, row)).copied(),
            None => None,
        };
        if let Some(e) = entry {
            found(e, row);
        }
    }
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
        let mut batch: Vec<(u64, (u32, u128))> = Vec::with_capacity(BATCH);
        let mut note = |batch: &mut Vec<(u64, (u32, u128))>| {
            probe_batch(
                &table,
                batch,
                |r, &(_, fp)| fps[r as usize] == fp,
                |r, &(slot, _)| {
                    let r = r as usize;
                    slots[r] = if slots[r] == 0 { slot } else { AMBIGUOUS };
                },
            );
            batch.clear();
        };
        for (id, fp) in users {
            let slot = u32::try_from(id).ok().and_then(|id| id.checked_add(1)).filter(|s| *s != AMBIGUOUS)?;
            batch.push((fp as u64, (slot, fp)));
            if batch.len() == BATCH {
                note(&mut batch);
            }
        }
        note(&mut batch);
        Some(Carriers { slots })
    }

    /// `n` records no user carries (the store holds no fingerprint at all).
    pub fn nobody(n: usize) -> Carriers {
        Carriers { slots: vec![0; n] }
    }

    /// How many records no single user carries (each will need the full path).
    pub fn uncarried(&self) -> usize {
        self.slots.iter().filter(|&&s| s == 0 || s == AMBIGUOUS).count()
    }

    /// Who carries record `i`'s fingerprint: `Unknown` when more than one
    /// user does, or the record repeats another.
    pub fn get(&self, i: usize) -> Holder {
        match self.slots.get(i) {
            None | Some(&AMBIGUOUS) => Holder::Unknown,
            Some(&slot) => Holder::from_slot(slot),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

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
            assert_eq!(carriers.get(i).known(), want, "record {i}");
        }
        assert_eq!(carriers.get(3), Holder::Unknown, "two users carry record 3's fingerprint");
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
}
