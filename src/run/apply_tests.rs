//! The run's transaction (`store::RunTx`) driven by the rules (`plan`), as
//! `run` drives it: batched rows of new users, and the key scans that must
//! never change an outcome. Here, where the rules and the store meet.

use proptest::prelude::*;
use serde_json::json;

use rusqlite::params;

use crate::manifest::{Action, MatchOn, Target};
use crate::mapping::Record;
use crate::mapping::RecordArena;
use crate::outcome::RunStatus;
use crate::plan::PlanOptions;
use crate::plan::tests::generated::{cases, email, external};
use crate::port::Runs;
use crate::port::{Apply, RunEnd, RunTransaction};
use crate::store::{NEW_ROWS, Prefetch, Store};
use crate::user::{Field, Fields};

fn record() -> impl Strategy<Value = Record> {
    (email(), external(), proptest::option::of(0..2u8), any::<bool>(), proptest::option::of(0..3u8)).prop_map(
        |(email, external_id, first, active, level)| {
            let first_name = first.map(|f| ["Ann", "Bo"][f as usize].to_string());
            let fields = Fields { email, external_id, first_name, last_name: Some("L".into()), ..Fields::default() };
            let mut r = Record { fields, active: Some(active), ..Record::default() };
            if let Some(v) = level {
                r.extra.insert("level".into(), json!(v));
            }
            r
        },
    )
}

/// Users as rows to insert: (email as stored, maybe upper-cased; external id; active; owner).
type UserRow = (Option<String>, Option<String>, bool, Option<&'static str>);

fn users() -> impl Strategy<Value = Vec<UserRow>> {
    proptest::collection::vec((email(), any::<bool>(), external(), any::<bool>(), 0..3u8), 0..8).prop_map(|rows| {
        let mut seen_e = std::collections::HashSet::new();
        let mut seen_x = std::collections::HashSet::new();
        rows.into_iter()
            .map(|(email, upper, ext, active, owner)| {
                let email =
                    email.filter(|e| seen_e.insert(e.clone())).map(|e| if upper { e.to_uppercase() } else { e });
                let ext = ext.filter(|x| seen_x.insert(x.clone()));
                (email, ext, active, [None, Some("hr"), Some("other")][owner as usize])
            })
            .collect()
    })
}

/// Plans `records` in run `run`'s transaction, writes every decision and commits, as an `ok` run does.
fn apply_all(store: &mut Store, run: i64, records: &RecordArena, o: &PlanOptions<'_>) -> crate::plan::Plan {
    let mut tx = store.begin_apply(run, records).unwrap();
    let plan = crate::plan::plan(records, &mut tx, o).unwrap();
    crate::plan::deactivate(&mut tx, &plan).unwrap();
    tx.finish(&RunEnd { status: RunStatus::Ok, ..RunEnd::default() }).unwrap();
    plan
}

fn arena(records: &[Record]) -> RecordArena {
    let mut arena = RecordArena::default();
    for (i, r) in records.iter().enumerate() {
        arena.push(&Record { index: i, ..r.clone() });
    }
    arena
}

/// Runs `runs` (integration, records) in order on a fresh store; returns
/// each plan and the users, owners and fingerprints at the end.
fn play(mode: Prefetch, users: &[UserRow], runs: &[(&str, &RecordArena)], o: &PlanOptions<'_>) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("t.db")).unwrap();
    store.prefetch = mode;
    for (i, (email, ext, active, owner)) in users.iter().enumerate() {
        store
            .conn()
            .execute(
                "INSERT INTO users (id, email, external_id, first_name, active, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'F', ?4, 'then', 'then')",
                params![i as i64 + 1, email, ext, active],
            )
            .unwrap();
        if let Some(owner) = owner {
            store.conn().execute("INSERT INTO ownership VALUES (?1, ?2)", params![i as i64 + 1, owner]).unwrap();
        }
    }
    let mut out = Vec::new();
    for (integration, records) in runs {
        let opts = PlanOptions { integration, ..o.clone() };
        let run = store.begin_run(integration, "sync", "manual", RunStatus::Running).unwrap();
        let plan = apply_all(&mut store, run, records, &opts);
        out.push(format!("{plan:?}"));
    }
    let mut dump = store
        .conn()
        .prepare(
            "SELECT u.id, u.email, u.external_id, u.first_name, u.last_name, u.active, u.extra_fields,
                    o.integration, hex(a.fingerprint)
             FROM users u LEFT JOIN ownership o ON o.user_id = u.id LEFT JOIN applied a ON a.user_id = u.id
             ORDER BY u.id",
        )
        .unwrap();
    let rows = dump
        .query_map([], |r| Ok((0..9).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect::<Vec<_>>().join(" ")))
        .unwrap();
    out.extend(rows.map(Result::unwrap));
    out
}

/// New users' ownership and fingerprint rows are written in batches:
/// every one lands, with the right fingerprint (a second run settles
/// every record without a write), whether a run ends on a full batch, a
/// partial one, or reads an owner in between.
#[test]
fn batched_rows_of_new_users_all_land() {
    for (n, action) in [(130, Action::Sync), (NEW_ROWS, Action::Sync), (70, Action::Create), (3, Action::Sync)] {
        let records: Vec<Record> = (0..n)
            .map(|i| {
                let fields = Fields {
                    email: Some(format!("u{i}@acme.example")),
                    external_id: Some(format!("X{i}")),
                    first_name: Some("F".into()),
                    last_name: Some("L".into()),
                    ..Fields::default()
                };
                Record { index: i, fields, ..Record::default() }
            })
            // One record repeating an earlier one's email: the plan reads that user's owner mid-batch.
            .chain([Record {
                index: n,
                fields: Fields {
                    email: Some("u1@acme.example".into()),
                    external_id: Some("other".into()),
                    first_name: Some("F".into()),
                    last_name: Some("L".into()),
                    ..Fields::default()
                },
                ..Record::default()
            }])
            .collect();
        let records = arena(&records);
        let mapped = [Target::Core(Field::Email), Target::Core(Field::ExternalId)];
        let o = PlanOptions {
            integration: "hr",
            action,
            match_on: MatchOn::ExternalId,
            mapped: &mapped,
            ignored_emails: &[],
            auto_clear_email: false,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        for round in 0..2 {
            let run = store.begin_run("hr", action.as_str(), "manual", RunStatus::Running).unwrap();
            let plan = apply_all(&mut store, run, &records, &o);
            let created = if round == 0 { n as u64 } else { 0 };
            assert_eq!((plan.n_created, plan.n_updated, plan.n_skipped), (created, 0, 1), "{action:?} {n} {round}");
            let count = |sql: &str| store.conn().query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
            assert_eq!(count("SELECT COUNT(*) FROM ownership WHERE integration = 'hr'"), n as i64);
            let fps = if action == Action::Sync { n as i64 } else { 0 };
            assert_eq!(count("SELECT COUNT(*) FROM applied"), fps, "{action:?} {n}");
            // Each user carries its own record's fingerprint.
            let context = format!("hr\0{}\0{:?}", action.as_str(), MatchOn::ExternalId);
            for i in (0..n).filter(|_| action == Action::Sync) {
                let stored: Vec<u8> = store
                    .conn()
                    .query_row(
                        "SELECT a.fingerprint FROM applied a JOIN users u ON u.id = a.user_id WHERE u.email = ?1",
                        [format!("u{i}@acme.example")],
                        |r| r.get(0),
                    )
                    .unwrap();
                let expected = crate::mapping::Records::fingerprint(&records, i, context.as_bytes());
                assert_eq!(stored, expected.to_le_bytes(), "record {i}");
            }
            assert_eq!(count("SELECT COUNT(*) FROM users WHERE updated_at != created_at"), 0, "nothing rewritten");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(300)))]

    /// The scans up front give the same plans and the same store as asking SQLite record by record.
    #[test]
    fn prefetching_never_changes_an_outcome(
        first in proptest::collection::vec(record(), 0..10),
        second in proptest::collection::vec(record(), 0..10),
        users in users(),
        action in prop_oneof![Just(Action::Create), Just(Action::Update), Just(Action::Sync)],
        by_external in any::<bool>(),
        auto_clear_email in any::<bool>(),
    ) {
        let mapped = [
            Target::Core(Field::Email),
            Target::Core(Field::ExternalId),
            Target::Core(Field::FirstName),
            Target::Core(Field::LastName),
            Target::Core(Field::Active),
            Target::Extra("level".into()),
        ];
        let o = PlanOptions {
            integration: "hr",
            action,
            match_on: if by_external { MatchOn::ExternalId } else { MatchOn::Email },
            mapped: &mapped,
            ignored_emails: &[],
            auto_clear_email,
        };
        let (first, second) = (arena(&first), arena(&second));
        let runs = [("hr", &first), ("other", &second), ("hr", &first), ("hr", &second), ("hr", &first)];
        let with = play(Prefetch::Always, &users, &runs, &o);
        let without = play(Prefetch::Never, &users, &runs, &o);
        prop_assert_eq!(with, without);
    }
}
