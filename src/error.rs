//! The error types every command ends in, and the one place that turns them
//! into text and an exit code (0 ok, 1 a run failed, 2 bad usage or input).
//! Modules keep their own error enums; they meet here.

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with the config or a manifest. `validate` prints them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// RFC 6901 pointer into the file, e.g. `/execute/0/headers/Authorization`;
    /// empty when the problem is the file as a whole.
    pub pointer: String,
    /// What is wrong and what to do about it.
    pub reason: String,
}

impl Problem {
    pub fn new(file: &Path, pointer: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { file: file.to_path_buf(), pointer: pointer.into(), reason: reason.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.pointer, self.reason)
        }
    }
}

/// Escapes one reference token for a JSON pointer (RFC 6901: `~` → `~0`, `/` → `~1`).
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Config or manifests are wrong; every problem found is listed.
    #[error("{}", render_problems(.0))]
    Invalid(Vec<Problem>),
    /// The command line asks for something that cannot be done (unknown integration, bad flag combination).
    #[error("{0}")]
    Usage(String),
    /// The store could not be opened, or is locked, read-only or from a newer rosterd.
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    /// A run was attempted and did not succeed (failed, held or skipped).
    #[error("{0}")]
    RunFailed(String),
    /// Writing the command's output failed (a closed pipe, a full disk).
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

fn render_problems(problems: &[Problem]) -> String {
    let mut text = String::new();
    for p in problems {
        text.push_str(&p.to_string());
        text.push('\n');
    }
    text.push_str(&format!("{} problem(s) found", problems.len()));
    text
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::RunFailed(_) => 1,
            Self::Output(_) => 1,
            Self::Invalid(_) | Self::Usage(_) | Self::Store(_) => 2,
        }
    }
}
