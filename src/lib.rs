//! rosterd keeps a local directory of people in step with the systems a
//! company already runs. Modules in reading order: what a run reads
//! (config, manifest, schedule, template), what it fetches and maps (fetch,
//! mapping), what it decides (plan) and where it writes (store); `run` ties
//! them together and `cli` is the command line. See ARCHITECTURE.md.

pub mod problem;

pub mod config;
pub mod error;
pub mod manifest;
pub mod redact;
pub mod schedule;
pub mod template;
pub mod user;

pub mod fetch;
pub mod mapping;

pub mod bulk;
pub mod export;
pub mod index;
pub mod outcome;
pub mod plan;
pub mod store;

pub mod run;

pub mod service;

pub mod api;
pub mod daemon;
pub mod demo;

pub mod cli;

/// An I/O error as a short cause an admin can act on.
pub fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => "no such file or folder".into(),
        PermissionDenied => "permission denied".into(),
        IsADirectory => "it is a folder, not a file".into(),
        _ => e.to_string(),
    }
}
