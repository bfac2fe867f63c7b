//! The ports: what the rules, a run and the shells need from the store, as
//! narrow traits and the plain types they carry. They sit below both the
//! rules (`plan`, the import rules) and the store, so the rules never import
//! the store and the store never imports the rules: a second engine
//! implements these and nothing else.
//!
//! - `directory`: `Apply` opens a run's transaction, a `RunTransaction` is
//!   the `Directory` the rules decide in, then `finish`es the run;
//! - `import`: `Import` opens an import's transaction, whose `ImportLookup`
//!   the import rules ask, then `commit`s;
//! - `runs`: `Runs`, a run's row and trace as it goes and as history reads
//!   it; `Users`, the users and the export in id order;
//! - `tokens`: `Tokens`, OAuth tokens and authorization states;
//! - `outbound`: `Outbound`, what a push reads and records;
//! - `figures`: `Figures`, what `/metrics` reports.
//!
//! Engines' own errors become a `StoreError` where they leave the engine.

mod directory;
mod figures;
mod import;
mod outbound;
mod runs;
mod tokens;

use std::path::PathBuf;

pub use directory::{Apply, Change, Deactivation, Directory, NewUser, RunTransaction, Skip, Update};
pub use figures::{Figures, Metrics};
pub use import::{Import, ImportLookup, ImportTransaction, Write};
pub use outbound::Outbound;
pub use runs::{PushRow, RequestRow, RunDetail, RunEnd, RunRow, Runs, UserRow, Users};
pub use tokens::{StateOutcome, StoredToken, Tokens};

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
