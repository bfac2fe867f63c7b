//! The ports: what the rules and a run need from the store, as traits and
//! the plain types they carry. They sit below both the rules (`plan`, the
//! import rules) and the store, so the rules never import the store and the
//! store never imports the rules: a second engine implements these and
//! nothing else. `directory`: the users a run's rules read and change inside
//! its transaction; `import`: what an import's rules ask. Engines' own
//! errors become a `StoreError` where they leave the engine; `runs`: how a run
//! ends, as its `runs` row records it.

mod directory;
mod import;
mod outbound;
mod runs;
mod tokens;

use std::path::PathBuf;

pub use directory::{Change, Deactivation, Directory, NewUser, Skip, Update};
pub use import::{ImportLookup, Write};
pub use outbound::Outbound;
pub use runs::{PushRow, RequestRow, RunDetail, RunEnd, RunRow, Runs, UserRow, Users};
pub use tokens::{StoredToken, Tokens};

/// Why the store could not do what was asked; every engine's errors end here.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {}: {reason}", path.display())]
    Open { path: PathBuf, reason: String },
    #[error(
        "the database {} has schema version {found}, newer than this rosterd understands ({known}); \
         upgrade rosterd (the file was left untouched)",
        path.display()
    )]
    Newer { path: PathBuf, found: i64, known: i64 },
    #[error(
        "there is no database at {}: nothing has run with this config yet, or `database` points \
         elsewhere (run from the folder holding rosterd.toml, or pass --config)",
        path.display()
    )]
    Missing { path: PathBuf },
    /// The engine refused a statement; the text says why and, where it can, what to do.
    #[error("database error: {0}")]
    Engine(String),
}
