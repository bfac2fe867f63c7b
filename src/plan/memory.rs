//! Users held in memory behind the rules' `Directory` port, with the
//! uniqueness rules the store enforces. For tests and benchmarks only (the
//! `bench` feature): property tests hold the store and the shortcuts to it.

use std::collections::HashMap;

use super::label;
use crate::index::{Carriers, IdSet};
use crate::port::{Deactivation, Directory, NewUser, Update};
use crate::user::{Field, Fields, StoredUser};

/// Users held in memory, with the uniqueness rules the store enforces
/// (a broken rule is an error). For tests, benchmarks, and reasoning about plans.
#[derive(Debug, Clone, Default)]
pub struct MemoryDirectory {
    pub users: Vec<StoredUser>,
    pub(super) by_id: HashMap<i64, usize>,
    pub(super) max_id: i64,
    pub(super) by_email: HashMap<String, usize>,
    pub(super) by_external: HashMap<String, usize>,
    pub(super) fingerprints: HashMap<i64, u128>,
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

    fn carriers(&mut self, fps: impl FnOnce() -> Vec<u128>) -> Result<Option<Carriers>, String> {
        if self.forgetful {
            return Ok(None);
        }
        Ok(Carriers::build(&fps(), self.fingerprints.iter().map(|(id, fp)| (*id, *fp))))
    }

    fn set_fingerprint(&mut self, id: i64, fp: u128) -> Result<(), String> {
        self.position(id)?;
        self.fingerprints.insert(id, fp);
        Ok(())
    }

    fn create(&mut self, user: &NewUser, owner: &str, fp: Option<u128>) -> Result<i64, String> {
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
        if let Some(fp) = fp {
            self.fingerprints.insert(id, fp);
        }
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

    fn vanished(&mut self, owner: &str, keep: &IdSet, sample: usize) -> Result<(Vec<i64>, Vec<Deactivation>), String> {
        let mut ids = Vec::new();
        let mut shown = Vec::new();
        for u in self.users.iter().filter(|u| u.active && u.owner.as_deref() == Some(owner) && !keep.contains(u.id)) {
            ids.push(u.id);
            if shown.len() < sample {
                shown.push(Deactivation { user_id: u.id, label: label(u) });
            }
        }
        Ok((ids, shown))
    }

    fn deactivate(&mut self, ids: &[i64]) -> Result<(), String> {
        for &id in ids {
            let i = self.position(id)?;
            self.users[i].active = false;
            self.fingerprints.remove(&id);
        }
        Ok(())
    }
}
