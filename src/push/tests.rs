use serde_json::json;

use super::*;
use crate::manifest::FieldPath;
use crate::mapping::map_record;
use crate::user::Fields;

fn rules() -> Vec<Rule> {
    let rule = |t: &str, p: &str| Rule::new(Target::from_name(t), FieldPath::parse(p).unwrap());
    vec![
        rule("external_id", "externalId"),
        rule("email", "email"),
        rule("first_name", "firstName"),
        rule(TARGET_ID, "id"),
    ]
}

fn listing(records: &[serde_json::Value]) -> Listing {
    let mut arena = RecordArena::default();
    for (i, r) in records.iter().enumerate() {
        arena.push(&map_record(&rules(), i, r));
    }
    Listing::new(arena)
}

fn local(id: i64, external_id: Option<&str>, email: &str, first: &str) -> StoredUser {
    StoredUser {
        id,
        fields: Fields {
            email: Some(email.into()),
            first_name: Some(first.into()),
            external_id: external_id.map(str::to_string),
            ..Fields::default()
        },
        active: true,
        extra: Default::default(),
        owner: None,
    }
}

#[test]
fn creates_updates_removes_and_leaves_the_targets_own_users_alone() {
    let mut l = listing(&[
        json!({"id": 1, "externalId": "E1", "email": "ANN@X.IO", "firstName": "Ann"}),
        json!({"id": 2, "externalId": "E2", "email": "bob@x.io", "firstName": "Bob"}),
        json!({"id": 3, "externalId": "E3", "email": "gone@x.io", "firstName": "Gone"}),
        json!({"id": 4, "email": "admin@x.io", "firstName": "Admin"}),
        json!({"id": 5, "externalId": "e1", "email": "case@x.io", "firstName": "Case"}),
    ]);
    let mut plan = PushPlan::default();
    let rules = rules();
    for u in [
        local(10, Some("E1"), "ann@x.io", "Ann"),
        local(11, Some("E2"), "bob@x.io", "Robert"),
        local(12, Some("E9"), "new@x.io", "New"),
        local(13, None, "noid@x.io", "NoId"),
    ] {
        consider(&mut plan, &mut l, &rules, &u);
    }
    finish(&mut plan, &l);
    assert_eq!(plan.creates, [12]);
    assert_eq!(plan.unchanged, 1, "an email differing only in case is the same");
    assert_eq!(plan.updates.len(), 1);
    let u = &plan.updates[0];
    assert_eq!((u.external_id.as_str(), u.target_id.as_deref()), ("E2", Some("2")));
    assert_eq!(u.changes, [Difference { field: "first_name".into(), target: json!("Bob"), local: json!("Robert") }]);
    let removed: Vec<Option<String>> = plan.removes.iter().map(|i| l.target_id(*i)).collect();
    assert_eq!(removed, [Some("3".to_string()), Some("5".to_string())], "e1 is not E1: external ids are exact");
    assert_eq!(plan.selected, 3);
    assert_eq!(l.with_external_id(), 4);
}

#[test]
fn a_duplicated_external_id_is_never_removed() {
    let mut l = listing(&[json!({"id": 1, "externalId": "D"}), json!({"id": 2, "externalId": "D"})]);
    let mut plan = PushPlan::default();
    finish(&mut plan, &l);
    assert!(plan.removes.is_empty());
    assert_eq!(l.duplicates, ["D"]);
    consider(&mut plan, &mut l, &rules(), &local(1, Some("D"), "d@x.io", "D"));
    assert_eq!(plan.creates.len(), 0);
}

#[test]
fn the_user_context_has_every_field_and_the_extras_templates_use() {
    let mut u = local(1, Some("E1"), "a@x.io", "A");
    u.extra.insert("team".into(), json!("Blue"));
    let ctx = user_context(&u, &["team".into(), "site".into()]);
    assert_eq!(ctx["phone"], json!(null));
    assert_eq!(ctx["active"], json!(true));
    assert_eq!(ctx["extra"], json!({"team": "Blue", "site": null}));
}
