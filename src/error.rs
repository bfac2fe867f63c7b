//! The error types every command ends in, and the one place that turns them
//! into text and an exit code (0 ok, 1 a run failed, 2 bad usage or input).
//! Modules keep their own error enums; they meet here.

use crate::problem::Problem;

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
    Store(#[from] crate::port::StoreError),
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
