//! rosterd keeps a local directory of people in step with the systems a
//! company already runs. Modules in layers, bottom first: every module uses
//! only those above it in this list (no import circle). The vocabulary
//! (problem, user, outcome, redact, html), what a run reads (config,
//! schedule, template, the mapping's rules, manifest), the rules and what
//! they stand on (index, the ports, plan), the edges (fetch talks to sources,
//! import and export are seed 000's shapes, store speaks SQL and implements
//! the ports), what stands on both (oauth's tokens, push's sending), `run`
//! where they meet, and the shells (error, service, api, daemon, demo, cli).
//! See ARCHITECTURE.md.

pub mod problem;
pub mod user;
pub mod outcome;
pub mod redact;
pub mod html;

pub mod config;
pub mod schedule;
pub mod template;
pub mod mapping;
pub mod manifest;

pub mod index;
pub mod port;
pub mod plan;

pub mod fetch;
pub mod export;
pub mod import;
pub mod store;
pub mod oauth;
pub mod push;

pub mod run;

pub mod error;
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

/// What the property tests of every module share.
#[cfg(test)]
pub(crate) mod testing {
    /// Cases per property: `PROPTEST_CASES` (100000 for a longer hunt), else `default`.
    pub(crate) fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    }
}

#[cfg(test)]
mod layers {
    /// Every module uses only modules declared before it in this file, so the
    /// import graph has no circle and the list above reads bottom-up.
    #[test]
    fn modules_import_only_the_layers_below_them() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
        let order: Vec<&str> =
            lib.lines().filter_map(|l| l.strip_prefix("pub mod ")).map(|l| l.trim_end_matches(';')).collect();
        assert!(order.len() > 10, "{order:?}");
        let mut wrong = Vec::new();
        for (i, module) in order.iter().enumerate() {
            let file = src.join(format!("{module}.rs"));
            let files = if file.exists() { vec![file] } else { rs_files(&src.join(module)) };
            for f in &files {
                let text = std::fs::read_to_string(f).expect("source");
                // Tests at the bottom of a file may reach anywhere; a `tests.rs` file counts, as for import-circles.
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                    for (later, name) in order.iter().enumerate().skip(i + 1) {
                        if line.contains(&format!("crate::{name}::")) || line.contains(&format!("crate::{name};")) {
                            wrong.push(format!("{} uses {name} ({module} is layer {i}, {name} {later})", f.display()));
                        }
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// Arrows the layer order would allow but the code map rules out: the
    /// store answers the ports and never imports the rules; the bottom of the
    /// house never imports the store; the shells stay apart.
    #[test]
    fn the_store_never_imports_the_rules() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let forbidden = [
            ("store", "plan"),
            ("store", "import"),
            ("store", "mapping::Rule"),
            ("error", "store"),
            ("mapping", "manifest"),
            ("user", "manifest"),
            ("api", "daemon"),
            ("plan", "store"),
            ("fetch", "store"),
            ("manifest", "store"),
        ];
        let mut wrong = Vec::new();
        for (module, target) in forbidden {
            let file = src.join(format!("{module}.rs"));
            let files = if file.exists() { vec![file] } else { rs_files(&src.join(module)) };
            // A `tests.rs` counts too, as it does for import-circles.
            for f in &files {
                let text = std::fs::read_to_string(f).expect("source");
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                if code.contains(&format!("crate::{target}::")) || code.contains(&format!("crate::{target};")) {
                    wrong.push(format!("{} uses {target}", f.display()));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    fn rs_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).expect("module folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(rs_files(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
        out
    }
}
