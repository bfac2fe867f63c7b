use std::collections::HashSet;

use super::*;
use serde_json::json;

/// Plans `records` and writes its deactivations, as a run within its limit does.
fn apply<D: Directory, R: Records + Sync + ?Sized>(
    records: &R,
    dir: &mut D,
    o: &PlanOptions<'_>,
) -> Result<Plan, D::Error> {
    let p = super::plan(records, dir, o)?;
    deactivate(dir, &p)?;
    Ok(p)
}

fn record(index: usize, email: &str, first: &str, last: &str) -> Record {
    let mut r = Record { index, ..Record::default() };
    r.fields.email = Some(email.into());
    r.fields.first_name = (!first.is_empty()).then(|| first.into());
    r.fields.last_name = (!last.is_empty()).then(|| last.into());
    r
}

fn user(id: i64, email: &str, owner: Option<&str>) -> StoredUser {
    StoredUser {
        id,
        fields: Fields {
            email: Some(email.into()),
            first_name: Some("F".into()),
            last_name: Some("L".into()),
            ..Fields::default()
        },
        active: true,
        extra: Map::new(),
        owner: owner.map(String::from),
    }
}

fn opts<'a>(action: Action, mapped: &'a [Target]) -> PlanOptions<'a> {
    PlanOptions {
        integration: "hr",
        action,
        match_on: MatchOn::Email,
        mapped,
        ignored_emails: &[],
        auto_clear_email: false,
    }
}

const NAMES: &[Target] = &[Target::Core(Field::Email), Target::Core(Field::FirstName), Target::Core(Field::LastName)];

/// Plans against a `MemoryDirectory` holding `current`; panics if a store rule would break.
fn plan(records: &[Record], current: &[StoredUser], o: &PlanOptions<'_>) -> Plan {
    apply(records, &mut MemoryDirectory::new(current.to_vec()), o).unwrap()
}

#[test]
fn a_user_written_earlier_in_the_run_is_not_taken_as_settled() {
    // Run 1 gives record A's user its fingerprint. In run 2 an earlier record
    // takes A's email (auto_clear_email), so A's user no longer holds what A wrote.
    let mut a = record(1, "a@x.io", "A", "Lee");
    a.fields.external_id = Some("E1".into());
    let mut j = record(0, "a@x.io", "J", "Kim");
    j.fields.external_id = Some("E2".into());
    let o = PlanOptions { match_on: MatchOn::ExternalId, auto_clear_email: true, ..opts(Action::Sync, NAMES) };
    let mut plans = Vec::new();
    for forgetful in [false, true] {
        let mut dir = MemoryDirectory { forgetful, ..MemoryDirectory::default() };
        apply(&[Record { index: 0, ..a.clone() }][..], &mut dir, &o).unwrap();
        let second = apply(&[j.clone(), a.clone()][..], &mut dir, &o).unwrap();
        plans.push((format!("{second:?}"), format!("{:?}", dir.users)));
    }
    assert_eq!(plans[0], plans[1]);
    assert!(plans[0].0.contains("n_cleared: 1"), "{}", plans[0].0);
}

pub(crate) mod generated {
    use super::*;
    use proptest::prelude::*;

    pub(crate) use crate::testing::cases;

    pub(crate) fn email() -> impl Strategy<Value = Option<String>> {
        proptest::option::weighted(0.9, (0..6u8).prop_map(|i| format!("u{i}@x.io")))
    }

    pub(crate) fn external() -> impl Strategy<Value = Option<String>> {
        proptest::option::weighted(0.8, (0..6u8).prop_map(|i| format!("E{i}")))
    }

    fn name() -> impl Strategy<Value = Option<String>> {
        proptest::option::weighted(0.9, prop_oneof![Just("Ann".to_string()), Just("Bo".to_string())])
    }

    fn record() -> impl Strategy<Value = Record> {
        (email(), external(), name(), name(), proptest::option::of(any::<bool>()), proptest::option::of(0..3u8))
            .prop_map(|(email, external_id, first_name, last_name, active, extra)| {
                let fields = Fields { email, external_id, first_name, last_name, ..Fields::default() };
                let mut r = Record { fields, active, ..Record::default() };
                if let Some(v) = extra {
                    r.extra.insert("level".into(), json!(v));
                }
                r
            })
    }

    fn users() -> impl Strategy<Value = Vec<StoredUser>> {
        proptest::collection::vec((email(), external(), any::<bool>(), 0..3u8), 0..8).prop_map(|rows| {
            let mut seen_e = HashSet::new();
            let mut seen_x = HashSet::new();
            let mut out = Vec::new();
            for (i, (email, ext, active, owner)) in rows.into_iter().enumerate() {
                let email = email.filter(|e| seen_e.insert(e.clone()));
                let ext = ext.filter(|x| seen_x.insert(x.clone()));
                let owner = [None, Some("hr".to_string()), Some("other".to_string())][owner as usize].clone();
                out.push(StoredUser {
                    id: i as i64 + 1,
                    fields: Fields { email, external_id: ext, first_name: Some("F".into()), ..Fields::default() },
                    active,
                    extra: Map::new(),
                    owner,
                });
            }
            out
        })
    }

    const ALL: &[Target] = &[
        Target::Core(Field::Email),
        Target::Core(Field::ExternalId),
        Target::Core(Field::FirstName),
        Target::Core(Field::LastName),
        Target::Core(Field::Active),
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases(2000)))]

        #[test]
        fn applying_a_plan_then_planning_again_changes_nothing(
            records in proptest::collection::vec(record(), 0..10),
            users in users(),
            action in prop_oneof![Just(Action::Create), Just(Action::Update), Just(Action::Sync)],
            by_external in any::<bool>(),
            auto_clear_email in any::<bool>(),
        ) {
            let records: Vec<Record> = records.into_iter().enumerate().map(|(i, mut r)| { r.index = i; r }).collect();
            let match_on = if by_external { MatchOn::ExternalId } else { MatchOn::Email };
            let o = PlanOptions { match_on, auto_clear_email, ..opts(action, ALL) };
            let mut dir = MemoryDirectory::new(users.clone());
            let first = super::apply(&records[..], &mut dir, &o);
            prop_assert!(first.is_ok(), "a store rule broke: {first:?}");
            let first = first.unwrap();
            let second = super::apply(&records[..], &mut dir, &o).unwrap();
            prop_assert!(second.is_empty(), "first: {first:?}\nsecond: {second:?}");
            for u in users.iter().filter(|u| u.owner.as_deref() != Some("hr") ) {
                prop_assert!(!first.deactivations.iter().any(|d| d.user_id == u.id), "deactivated a user it does not own");
            }
        }

        #[test]
        fn fingerprints_never_change_an_outcome(
            first in proptest::collection::vec(record(), 0..10),
            second in proptest::collection::vec(record(), 0..10),
            users in users(),
            action in prop_oneof![Just(Action::Create), Just(Action::Update), Just(Action::Sync)],
            by_external in any::<bool>(),
            other_first in any::<bool>(),
            auto_clear_email in any::<bool>(),
        ) {
            let number = |rs: Vec<Record>| -> Vec<Record> {
                rs.into_iter().enumerate().map(|(i, mut r)| { r.index = i; r }).collect()
            };
            let (first, second) = (number(first), number(second));
            let match_on = if by_external { MatchOn::ExternalId } else { MatchOn::Email };
            let o = PlanOptions { match_on, auto_clear_email, ..opts(action, ALL) };
            let other = PlanOptions { integration: "other", ..o.clone() };
            let mut remembering = MemoryDirectory::new(users.clone());
            let mut forgetful = MemoryDirectory { forgetful: true, ..MemoryDirectory::new(users) };
            // Two runs of one integration, with or without another's run between them.
            for dir in [&mut remembering, &mut forgetful] {
                super::apply(&first[..], dir, &o).unwrap();
                if other_first {
                    super::apply(&second[..], dir, &other).unwrap();
                }
            }
            let a = super::apply(&first[..], &mut remembering, &o).unwrap();
            let b = super::apply(&first[..], &mut forgetful, &o).unwrap();
            prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
            // Then the other records, then the first again (users that vanished come back).
            for records in [&second, &first] {
                let a = super::apply(&records[..], &mut remembering, &o).unwrap();
                let b = super::apply(&records[..], &mut forgetful, &o).unwrap();
                prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
            }
            prop_assert_eq!(format!("{:?}", remembering.users), format!("{:?}", forgetful.users));
        }
    }
}

#[test]
fn create_skips_messy_records_with_reasons() {
    let mut bad = record(3, "x@y.io", "", "");
    bad.problem = Some("invalid email \"nope\"".into());
    let records = [record(0, "a@x.io", "A", "B"), record(1, "b@x.io", "", "B"), record(2, "a@x.io", "A", "C"), bad];
    let p = plan(&records, &[], &opts(Action::Create, NAMES));
    assert_eq!(p.creates.len(), 1);
    let reasons: Vec<_> = p.skips.iter().map(|s| (s.record, s.reason.as_str())).collect();
    assert_eq!(
        reasons,
        [
            (1, "missing first_name or last_name"),
            (2, "duplicate of record 0 (a@x.io) in this run"),
            (3, "invalid email \"nope\"")
        ]
    );
}

#[test]
fn create_never_touches_existing_users() {
    let p = plan(&[record(0, "a@x.io", "New", "Name")], &[user(1, "a@x.io", None)], &opts(Action::Create, NAMES));
    assert!(p.is_empty());
    assert_eq!(p.unchanged, 1);
}

#[test]
fn create_respects_ignored_emails() {
    let ignored = [crate::user::Email::parse("IT@x.io").unwrap()];
    let o = PlanOptions { ignored_emails: &ignored, ..opts(Action::Create, NAMES) };
    let p = plan(&[record(0, "it@x.io", "I", "T")], &[], &o);
    assert_eq!(p.skips[0].reason, "email is in ignored_emails");
}

#[test]
fn update_merges_into_extra_fields_only() {
    let mapped = [Target::Core(Field::Email), Target::Extra("bamboo".into()), Target::Core(Field::FirstName)];
    let mut r = record(0, "a@x.io", "Other", "");
    r.extra.insert("bamboo".into(), json!(7));
    let p = plan(
        &[r.clone(), record(1, "nobody@x.io", "", "")],
        &[user(1, "a@x.io", None)],
        &opts(Action::Update, &mapped),
    );
    assert_eq!(p.updates.len(), 1);
    assert_eq!(p.updates[0].extra, json!({"bamboo": 7, "first_name": "Other"}).as_object().unwrap().clone());
    assert_eq!(p.updates[0].fields.first_name.as_deref(), Some("F"));
    assert_eq!(p.skips[0].reason, "no user with this email");
}

#[test]
fn sync_leaves_users_it_does_not_own() {
    let current = [user(1, "ann@x.io", Some("hr")), user(2, "bob@x.io", Some("hr")), user(3, "cy@x.io", None)];
    let p = plan(&[record(0, "ann@x.io", "F", "L")], &current, &opts(Action::Sync, NAMES));
    let gone: Vec<_> = p.deactivations.iter().map(|d| d.label.as_str()).collect();
    assert_eq!(gone, ["bob@x.io"]);
    assert!(p.updates.is_empty());
    assert_eq!(p.owned_active, 2);
}

#[test]
fn sync_adopts_unowned_and_skips_others_users() {
    let current = [user(1, "a@x.io", None), user(2, "b@x.io", Some("other"))];
    let p = plan(&[record(0, "a@x.io", "F", "L"), record(1, "b@x.io", "F", "L")], &current, &opts(Action::Sync, NAMES));
    assert_eq!(p.adoptions, [1]);
    assert!(p.skips[0].reason.contains("owned by integration other"));
}

#[test]
fn sync_reactivates_returning_users() {
    let mut gone = user(1, "a@x.io", Some("hr"));
    gone.active = false;
    let p = plan(&[record(0, "a@x.io", "F", "L")], &[gone], &opts(Action::Sync, NAMES));
    assert_eq!(p.updates[0].changes, [Change { field: "active".into(), old: Some("0".into()), new: Some("1".into()) }]);
}

#[test]
fn sync_email_conflicts_need_auto_clear() {
    let mut r = record(0, "taken@x.io", "F", "L");
    r.fields.external_id = Some("E1".into());
    let mut me = user(1, "old@x.io", Some("hr"));
    me.fields.external_id = Some("E1".into());
    let current = [me, user(2, "taken@x.io", None)];
    let mapped = [Target::Core(Field::Email), Target::Core(Field::ExternalId)];
    let base = PlanOptions { match_on: MatchOn::ExternalId, ..opts(Action::Sync, &mapped) };
    let p = plan(std::slice::from_ref(&r), &current, &base);
    assert!(p.skips[0].reason.contains("already belongs to taken@x.io"), "{:?}", p.skips);
    let p = plan(&[r], &current, &PlanOptions { auto_clear_email: true, ..base });
    assert_eq!(p.cleared_emails[0].user_id, 2);
    assert_eq!(p.updates[0].fields.email.as_deref(), Some("taken@x.io"));
}

/// A large run's fingerprints, computed in parts on several threads, are
/// each record's own, in record order.
#[test]
fn fingerprints_split_across_threads_stay_in_record_order() {
    let records: Vec<Record> = (0..60_001).map(|i| record(i, &format!("u{i}@acme.example"), "F", "L")).collect();
    let fps = fingerprints(&records[..], b"ctx");
    assert_eq!(fps.len(), records.len());
    for (i, fp) in fps.iter().enumerate() {
        assert_eq!(*fp, records[..].fingerprint(i, b"ctx"), "record {i}");
    }
    assert_eq!(fps.iter().collect::<HashSet<_>>().len(), records.len(), "all distinct");
}
