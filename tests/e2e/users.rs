//! `rosterd users` and `rosterd history` on the store, and store failures.

use crate::TestDir;

#[test]
fn users_json_on_an_empty_database_is_an_empty_array() {
    let dir = TestDir::new();
    dir.db_init();
    let out = dir.rosterd(&["users", "--format", "json"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(out.json(), serde_json::json!([]));
}

#[test]
fn read_commands_never_create_a_database() {
    let dir = TestDir::new();
    for args in [&["users"][..], &["history"][..], &["history", "--run", "1"][..], &["export"][..]] {
        let out = dir.rosterd(args);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.all());
        assert!(
            out.stderr().contains("there is no database at") && out.stderr().contains("rosterd.db"),
            "{}",
            out.all()
        );
    }
    assert!(!dir.path().join("rosterd.db").exists(), "nothing was created");
}

#[test]
fn users_csv_has_the_column_header() {
    let dir = TestDir::new();
    dir.db_init();
    let out = dir.rosterd(&["users", "--format", "csv"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(
        out.stdout().trim(),
        "id,email,first_name,last_name,external_id,username,phone,job,department,extra_fields,active,source,created_at,updated_at"
    );
}

#[test]
fn users_lists_stored_rows_in_every_format() {
    let dir = TestDir::new();
    dir.db_init();
    dir.db()
        .execute(
            "INSERT INTO users (email, first_name, last_name, extra_fields, active, created_at, updated_at)
             VALUES ('ann@x.io', 'Ann', 'Lee', '{\"k\":1}', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
            [],
        )
        .unwrap();
    let json = dir.rosterd(&["users", "--format", "json"]).json();
    assert_eq!(json[0]["email"], "ann@x.io");
    assert_eq!(json[0]["extra_fields"], serde_json::json!({"k": 1}));
    assert_eq!(json[0]["active"], 1);
    let table = dir.rosterd(&["users"]).stdout();
    assert!(table.contains("ann@x.io") && table.contains("1 user(s)"), "{table}");
}

#[test]
fn history_on_an_empty_database() {
    let dir = TestDir::new();
    dir.db_init();
    let out = dir.rosterd(&["history"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(out.stdout().contains("no runs yet"), "{}", out.all());
    let out = dir.rosterd(&["history", "--json"]);
    assert_eq!(out.json(), serde_json::json!([]));
}

#[test]
fn a_database_path_that_is_a_folder_is_a_clear_error() {
    let dir = TestDir::new();
    std::fs::create_dir_all(dir.path().join("rosterd.db")).unwrap();
    let out = dir.rosterd(&["users"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stderr().contains("cannot open the database") && out.stderr().contains("directory"), "{}", out.all());
}

#[test]
fn a_read_only_database_is_a_clear_error_and_stays_untouched() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new();
    dir.db_init();
    let before = std::fs::read(dir.path().join("rosterd.db")).unwrap();
    for (path, mode) in [(dir.path().to_path_buf(), 0o755), (dir.path().join("rosterd.db"), 0o644)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // Root writes anywhere, so as root the command runs as `nobody`, for whom the file is read-only.
    let is_root = std::process::Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let mut cmd = if is_root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_rosterd")]);
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_rosterd"))
    };
    cmd.args(["users"]).current_dir(dir.path()).env_remove("ROSTERD_CONFIG");
    let out = crate::Out(cmd.output().unwrap());
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stderr().contains("read-only") || out.stderr().contains("readonly"), "{}", out.all());
    assert_eq!(std::fs::read(dir.path().join("rosterd.db")).unwrap(), before);
}

#[test]
fn a_newer_database_is_refused() {
    let dir = TestDir::new();
    dir.db_init();
    dir.db().pragma_update(None, "user_version", 999).unwrap();
    let out = dir.rosterd(&["users"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stderr().contains("newer than this rosterd"), "{}", out.all());
}

#[test]
fn a_locked_database_is_a_clear_error() {
    let dir = TestDir::new();
    dir.db_init();
    let conn = dir.db();
    conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;").unwrap();
    let start = std::time::Instant::now();
    let out = dir.rosterd(&["history"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stderr().contains("locked") || out.stderr().contains("busy"), "{}", out.all());
    assert!(start.elapsed().as_secs() < 60);
    conn.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_instead_of_panicking() {
    let dir = TestDir::new();
    let mut child = dir
        .command(&["demo"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = crate::Out(child.wait_with_output().unwrap());
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(!out.stderr().contains("panicked"), "{}", out.all());
}
