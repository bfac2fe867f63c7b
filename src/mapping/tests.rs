use super::*;
use serde_json::json;

fn structure(pairs: &[(&str, &str)]) -> Vec<Rule> {
    pairs.iter().map(|(t, p)| Rule::new(Target::from_name(t), super::FieldPath::parse(p).unwrap())).collect()
}

#[test]
fn maps_core_extra_and_active() {
    let ds = structure(&[
        ("email", "workEmail"),
        ("first_name", "name.first"),
        ("employee_id", "id"),
        ("active", "status"),
        ("bamboo", "id"),
    ]);
    let r = map_record(
        &ds,
        3,
        &json!({"workEmail": " Ann@X.io ", "name": {"first": "Ann"}, "id": 42, "status": "Inactive"}),
    );
    assert_eq!(r.problem, None);
    assert_eq!(r.index, 3);
    assert_eq!(r.fields.email.as_deref(), Some("ann@x.io"));
    assert_eq!(r.fields.first_name.as_deref(), Some("Ann"));
    assert_eq!(r.fields.external_id.as_deref(), Some("42"));
    assert_eq!(r.active, Some(false));
    assert_eq!(r.extra["bamboo"], json!(42));
}

#[test]
fn missing_and_blank_values_leave_the_field_out() {
    let ds = structure(&[("email", "e"), ("last_name", "l"), ("job", "j")]);
    let r = map_record(&ds, 0, &json!({"e": "a@b.io", "l": "   ", "j": null}));
    assert_eq!(r.fields.last_name, None);
    assert_eq!(r.fields.job, None);
    assert_eq!(r.problem, None);
}

#[test]
fn bad_values_become_the_record_problem() {
    let ds = structure(&[("email", "e")]);
    assert!(map_record(&ds, 0, &json!({"e": "not-an-email"})).problem.unwrap().contains("invalid email"));
    let ds = structure(&[("phone", "$.phones[*]")]);
    let r = map_record(&ds, 0, &json!({"phones": ["1", "2"]}));
    assert!(r.problem.unwrap().contains("matched 2 values"));
    let ds = structure(&[("active", "a")]);
    assert!(map_record(&ds, 0, &json!({"a": "maybe"})).problem.is_some());
}

#[test]
fn numbers_keep_their_written_form() {
    assert_eq!(text(&json!(42), "x").unwrap().as_deref(), Some("42"));
    assert_eq!(text(&json!(true), "x").unwrap().as_deref(), Some("true"));
}

#[test]
fn the_arena_gives_back_what_it_was_given() {
    let ds = structure(&[("email", "e"), ("last_name", "l"), ("active", "a"), ("badge", "b"), ("phone", "$.p[*]")]);
    let inputs = [
        json!({"e": "A@x.io", "l": "Lee", "a": false, "b": {"n": 1}}),
        json!({"l": "Ünïcødé"}),
        json!({"e": "bad", "p": ["1", "2"]}),
        json!({}),
    ];
    let mut arena = RecordArena::default();
    let records: Vec<Record> = inputs.iter().enumerate().map(|(i, v)| map_record(&ds, i, v)).collect();
    for r in &records {
        arena.push(r);
    }
    assert_eq!(arena.iter().collect::<Vec<_>>(), records);
    assert_eq!(arena.field(0, Field::Email), Some("a@x.io"));
    assert_eq!(arena.field(0, Field::LastName), Some("Lee"));
    assert_eq!(arena.field(1, Field::Email), None);
    assert_eq!(arena.field(2, Field::Email), None, "a record with a problem has no key");
}

#[test]
fn extra_fields_pack_as_serde_json_writes_a_map() {
    let values = [json!("x\"y"), json!({"b": [1, 2.5, null]}), json!(true), json!("é\n")];
    let names = ["zeta", "a\"quoted", "Mid", "é"];
    let extra: Vec<(&str, Extra<'_>)> = names
        .iter()
        .zip(&values)
        .map(|(n, v)| match v {
            Value::String(s) => (*n, Extra::Str(s)),
            other => (*n, Extra::Value(Cow::Borrowed(other))),
        })
        .chain([("zeta", Extra::Str("last wins"))])
        .collect();
    let mut map = Map::new();
    for (n, v) in names.iter().zip(&values) {
        map.insert(n.to_string(), v.clone());
    }
    map.insert("zeta".into(), json!("last wins"));
    let mut sorted: Vec<_> = map.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let expected = format!(
        "{{{}}}",
        sorted.iter().map(|(k, v)| format!("{}:{v}", Value::String(k.clone()))).collect::<Vec<_>>().join(",")
    );
    assert_eq!(extra_json(&extra), expected);
}

#[test]
fn active_accepts_the_usual_spellings() {
    for (v, want) in
        [(json!(true), true), (json!(0), false), (json!("ACTIVE"), true), (json!("false"), false), (json!("1"), true)]
    {
        assert_eq!(parse_active(&v), Ok(want), "{v}");
    }
    assert!(parse_active(&json!(2)).is_err());
}

/// Values that repeat are packed once, a field with more distinct values
/// than the dictionary keeps goes inline, and either way a record reads back
/// as it went in and digests to the fingerprint of its content form.
#[test]
fn packing_keeps_records_and_fingerprints() {
    let ds = structure(&[("email", "e"), ("department", "d"), ("status", "s"), ("score", "n"), ("site", "x")]);
    let n = 9000;
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let v = json!({"e": format!("u{i}@x.io"), "d": format!("Dept {}", i % 7), "s": "Active",
                           "n": i % 3, "x": format!("site-{i}")});
            map_record(&ds, i, &v)
        })
        .collect();
    let mut arena = RecordArena::default();
    for r in &records {
        arena.push(r);
    }
    for i in [0, 1, 7, 4095, 4096, 4097, 8999] {
        assert_eq!(arena.get(i), records[i], "record {i}");
        assert_eq!(arena.field(i, Field::Department), records[i].fields.department.as_deref());
        assert_eq!(
            Records::fingerprint(&arena, i, b"ctx"),
            Records::fingerprint(records.as_slice(), i, b"ctx"),
            "record {i}"
        );
    }
    let text: usize = records.iter().map(|r| serde_json::to_string(r).unwrap().len()).sum();
    assert!(arena.packed_bytes() < text / 3, "{} packed of {text}", arena.packed_bytes());
}
