//! End-to-end tests: the real `rosterd` binary, a real SQLite file in a temp
//! folder, and real HTTP over loopback. One test binary, a module per command.

// Helpers shared by the tests stop at the first surprise, as the tests do.
#![allow(clippy::unwrap_used)]

mod api;
mod field;
mod finished;
mod firstday;
mod hardening;
mod oauth;
mod operating;
mod push;
mod run;
mod serve;
mod sync;
mod users;
mod validate;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temp folder holding a config, `integrations/` and the database.
pub struct TestDir {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("integrations")).expect("integrations dir");
        Self { dir, env: Vec::new() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("parent dir");
        }
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// Writes `rosterd.toml` in the folder (found without --config, as the working directory is the folder).
    pub fn config(&self, text: &str) -> PathBuf {
        self.write("rosterd.toml", text)
    }

    pub fn manifest(&self, name: &str, json: &serde_json::Value) -> PathBuf {
        self.write(&format!("integrations/{name}.json"), &serde_json::to_string_pretty(json).expect("json"))
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rosterd"));
        cmd.args(args).current_dir(self.path()).env_remove("ROSTERD_CONFIG").env_remove("RUST_LOG");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn rosterd(&self, args: &[&str]) -> Out {
        Out(self.command(args).output().expect("run rosterd"))
    }

    /// Runs rosterd without blocking the async runtime (for tests that serve HTTP in-process).
    pub async fn run_async(&self, args: &[&str]) -> Out {
        let mut cmd = tokio::process::Command::from(self.command(args));
        Out(cmd.output().await.expect("run rosterd"))
    }

    /// Creates the database with rosterd's schema (an empty import), so a test can insert rows first.
    pub fn db_init(&self) {
        let file = self.write("empty-import.json", "{\"users\": []}");
        let out = self.rosterd(&["import", file.to_str().expect("utf-8 path")]);
        assert_eq!(out.code(), 0, "{}", out.all());
    }

    pub fn db(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.path().join("rosterd.db")).expect("open db");
        // A running rosterd may be writing (or creating the schema) right now.
        conn.busy_timeout(std::time::Duration::from_secs(10)).expect("busy timeout");
        conn
    }

    /// Rows of a query as tab-separated text lines.
    pub fn query(&self, sql: &str) -> Vec<String> {
        self.try_query(sql).expect("query")
    }

    /// `query`, or SQLite's error (a daemon may not have created the tables yet).
    pub fn try_query(&self, sql: &str) -> rusqlite::Result<Vec<String>> {
        let conn = self.db();
        let mut stmt = conn.prepare(sql)?;
        let n = stmt.column_count();
        stmt.query_map([], |row| {
            let cells: Vec<String> = (0..n)
                .map(|i| match row.get_ref(i).expect("cell") {
                    rusqlite::types::ValueRef::Null => "NULL".to_string(),
                    rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                    rusqlite::types::ValueRef::Real(v) => v.to_string(),
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    rusqlite::types::ValueRef::Blob(_) => "<blob>".to_string(),
                })
                .collect();
            Ok(cells.join("\t"))
        })?
        .collect()
    }
}

pub struct Out(pub Output);

impl Out {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    pub fn all(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout(), self.stderr())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.0.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.all()))
    }
}

/// Reads a daemon's log until it says where its API listens ("API listening
/// on ADDR"), then keeps draining the log so the daemon never blocks on it.
pub async fn listening_address(stderr: tokio::process::ChildStderr) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let found = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(at) = line.find("API listening on ") {
                return Some(line[at + "API listening on ".len()..].trim().to_string());
            }
        }
        None
    })
    .await;
    let addr = found.ok().flatten().expect("the daemon logs the address its API listens on");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    addr
}
