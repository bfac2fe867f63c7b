//! One process's handle on the store: the database is opened and migrated
//! once, and connections are handed out from a small pool and come back when
//! dropped. A run, the API and the daemon all take connections from the same
//! `Database`, so no step opens (or migrates) the database again, and a
//! second engine can put its own pool behind the same handle.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Store, StoreError};

/// Idle connections kept for reuse; more may be open at once, the rest close when done.
const IDLE: usize = 4;

/// The store of one process. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct Database {
    pool: Arc<Pool>,
}

struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Store>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("path", &self.pool.path).finish()
    }
}

impl Database {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Database, StoreError> {
        Ok(Self::with(path, Store::open(path)?))
    }

    /// `open` for a database that must exist already (commands that only read).
    pub fn open_existing(path: &Path) -> Result<Database, StoreError> {
        Ok(Self::with(path, Store::open_existing(path)?))
    }

    /// A pool holding `first`, the connection that opened (and migrated) `path`.
    fn with(path: &Path, first: Store) -> Database {
        Database { pool: Arc::new(Pool { path: path.to_path_buf(), idle: Mutex::new(vec![first]) }) }
    }

    pub fn path(&self) -> &Path {
        &self.pool.path
    }

    /// A connection: an idle one, or a new one (the schema is current already).
    pub fn connect(&self) -> Result<Conn, StoreError> {
        let idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let store = match idle {
            Some(store) => store,
            None => Store::connect(&self.pool.path)?,
        };
        Ok(Conn { store: Some(store), pool: self.pool.clone() })
    }
}

/// A connection from a `Database`'s pool; back to the pool when dropped.
pub struct Conn {
    store: Option<Store>,
    pool: Arc<Pool>,
}

impl Deref for Conn {
    type Target = Store;
    fn deref(&self) -> &Store {
        self.store.as_ref().expect("a Conn holds its store until dropped")
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Store {
        self.store.as_mut().expect("a Conn holds its store until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // One left inside a transaction (a panic mid-run) is closed, not reused;
        // one kept gives back its page cache (a large run's tens of MB), so a
        // daemon's memory follows what runs now, not what ran once.
        if let Some(store) = self.store.take().filter(Store::is_idle).filter(Store::release_memory) {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < IDLE {
                idle.push(store);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::Runs;

    #[test]
    fn connections_are_reused_and_see_each_others_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("r.db")).unwrap();
        let id = {
            let a = db.connect().unwrap();
            let b = db.connect().unwrap();
            let id = a.begin_run("hr", "sync", "manual", crate::outcome::RunStatus::Running).unwrap();
            assert!(b.run(id).unwrap().is_some());
            id
        };
        assert_eq!(db.pool.idle.lock().unwrap().len(), 2, "both back in the pool");
        assert_eq!(db.connect().unwrap().run(id).unwrap().map(|r| r.integration), Some("hr".into()));
        assert!(matches!(Database::open_existing(&dir.path().join("none.db")), Err(StoreError::Missing { .. })));
    }
}
