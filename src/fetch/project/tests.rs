use super::*;
use crate::mapping::Record;
use serde_json::json;

fn manifest(data_from: &str, next: Option<&str>, structure: serde_json::Value) -> Manifest {
    let mut doc = json!({
        "execute": [{"url": "http://127.0.0.1:1/x"}],
        "action": "create",
        "data_from": data_from,
        "data_structure": structure,
    });
    if let Some(next) = next {
        doc["next_page_from"] = json!(next);
    }
    let config = crate::config::Config::default();
    crate::manifest::parse("t", std::path::Path::new("t.json"), &doc.to_string(), &config).unwrap()
}

/// The `data_from` verdict, next-page value and records of one page.
type Read = (Found, Option<Value>, Vec<Record>);

/// What the projection reads, next to what selecting in a parsed `Value` gives.
fn both(m: &Manifest, body: &str) -> (Read, Read) {
    let projection = Projection::new(m).expect("projectable");
    let mut arena = RecordArena::default();
    let out = projection.read(body.as_bytes(), m, &mut arena).unwrap();
    let skimmed = projection.skim(body.as_bytes(), m).unwrap();
    assert_eq!((skimmed.found, &skimmed.next), (out.found, &out.next), "a skim says what a read says: {body}");
    let projected = (out.found, out.next, arena.iter().collect());

    let doc: Value = serde_json::from_str(body).unwrap();
    let next = match &m.pagination {
        Pagination::NextUrl(p) => p.select(&doc).first().map(|v| (*v).clone()),
        _ => None,
    };
    let (found, records) = match m.data_from.select(&doc).first() {
        None => (Found::Missing, Vec::new()),
        Some(Value::Array(items)) => (
            Found::List(items.len()),
            items.iter().enumerate().map(|(i, v)| map_record(&m.data_structure, i, v)).collect(),
        ),
        Some(other) => (Found::Other(crate::problem::kind(other)), Vec::new()),
    };
    (projected, (found, next, records))
}

#[test]
fn reads_what_a_parsed_page_gives() {
    let m = manifest(
        "data.people",
        Some("links.next"),
        json!({"email": "mail", "first_name": "name.first", "last_name": "name.last",
               "external_id": "id", "phone": "phones.1", "badge": "badge", "name_all": "name",
               "active": "status"}),
    );
    let body = r#"{"links": {"next": "/p?page=2", "self": "x"}, "meta": [1, {"a": [2]}],
        "data": {"count": 4, "people": [
            {"mail": " Ann@X.io ", "name": {"first": "Ann", "last": "Lee", "more": {"deep": [1,2]}},
             "id": 7, "phones": ["1", "2"], "badge": {"n": 1}, "status": "inactive", "skip": {"x": [1]}},
            {"mail": "bad", "id": "8", "name": "plain", "status": true},
            {"mail": "c@x.io", "name": {"first": "A"}, "name": {"last": "B"}, "id": 9, "id": 10},
            "not an object",
            {"mail": "d\u0040x.io", "n\u0061me": {"first": "Esc"}, "phones": [], "status": "1"},
            {"mail": " \u00c4NN@X.IO ", "status": " Active ", "id": 12.5, "badge": "  ", "name": {"first": "  ", "last": "x"}},
            {"mail": "e@x.io", "status": "maybe", "badge": "b\"q", "phones": [null, 5]}
        ]}}"#;
    let (projected, parsed) = both(&m, body);
    assert_eq!(projected, parsed);
    assert_eq!(projected.0, Found::List(7));
    assert_eq!(projected.2[5].fields.email.as_deref(), Some("änn@x.io"));
    assert_eq!(projected.2[5].active, Some(true));
    assert!(projected.2[6].problem.as_deref().unwrap_or_default().contains("maybe"));
    assert_eq!(projected.1, Some(json!("/p?page=2")));
    assert_eq!(projected.2[2].fields.external_id.as_deref(), Some("10"), "a repeated key: the last one wins");
    assert_eq!(projected.2[2].fields.first_name, None, "a repeated object replaces the earlier one whole");
    assert_eq!(projected.2[4].fields.first_name.as_deref(), Some("Esc"), "escaped keys are read");
}

#[test]
fn reports_missing_and_non_list_data_from() {
    let m = manifest("employees", Some("next"), json!({"email": "e"}));
    for body in [r#"{"next": null}"#, r#"{"employees": {"a": 1}}"#, r#"{"employees": "x"}"#, r#"[1, 2]"#] {
        let (projected, parsed) = both(&m, body);
        assert_eq!(projected, parsed, "{body}");
    }
    let (projected, _) = both(&m, r#"{"employees": [{"e": "a@b.io"}], "employees": 3}"#);
    assert_eq!(projected.0, Found::Other("a number"));
    assert!(projected.2.is_empty(), "records of a replaced list are dropped");
}

#[test]
fn reads_a_top_level_list_and_jsonpath_records() {
    let m = manifest("", None, json!({"email": "e", "phone": "$.phones[?(@.type == 'work')].n"}));
    let body = r#"[{"e": "a@b.io", "phones": [{"type": "work", "n": "1"}]}, {"e": "c@d.io", "phones": []}]"#;
    let (projected, parsed) = both(&m, body);
    assert_eq!(projected, parsed);
    assert_eq!(projected.2[0].fields.phone.as_deref(), Some("1"));
}

#[test]
fn paths_that_cannot_be_projected_are_refused() {
    assert!(Projection::new(&manifest("data", Some("data.next"), json!({"email": "e"}))).is_none());
    assert!(Projection::new(&manifest("$.data", None, json!({"email": "e"}))).is_none());
}

#[test]
fn nesting_past_the_limit_is_refused_on_both_paths_alike() {
    let m = manifest("employees", None, json!({"email": "e"}));
    let p = Projection::new(&m).unwrap();
    let page = |depth: usize, at_page: bool| {
        let deep = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        if at_page {
            format!(r#"{{"meta": {deep}, "employees": [{{"e": "a@b.io"}}], "s": "[[[\"]]"}}"#)
        } else {
            format!(r#"{{"employees": [{{"e": "a@b.io", "x": {deep}}}], "s": "[[[\"]]"}}"#)
        }
    };
    for depth in [1, 120, 124, 125, 126, 127, 132, 100_000] {
        for at_page in [false, true] {
            let body = page(depth, at_page);
            let parsed = serde_json::from_str::<Value>(&body);
            let projected = p.read(body.as_bytes(), &m, &mut RecordArena::default());
            assert_eq!(parsed.is_ok(), projected.is_ok(), "depth {depth}, at page level {at_page}");
            if let (Err(a), Err(b)) = (&parsed, &projected) {
                let said = |e: &serde_json::Error| e.to_string().starts_with("recursion limit exceeded");
                assert!(said(a) && said(b), "{a} / {b}");
            }
        }
    }
}

#[test]
fn bad_json_is_an_error() {
    let m = manifest("employees", None, json!({"email": "e"}));
    let mut arena = RecordArena::default();
    let p = Projection::new(&m).unwrap();
    assert!(p.read(br#"{"employees": [{"e": "a@b.io"}"#, &m, &mut arena).is_err());
    assert!(p.read(br#"{"employees": []} trailing"#, &m, &mut arena).is_err());
    assert!(p.skim(br#"{"employees": [{"e": "a@b.io"}"#, &m).is_err());
    assert!(p.skim(br#"{"employees": []} trailing"#, &m).is_err());
    assert!(p.skim(br#"{"employees": [{"e": "a@b.io",}]}"#, &m).is_err(), "structure is checked");
}

/// A read takes a page that is UTF-8 throughout as text, and any other page
/// as bytes, where every string it walks (kept or skipped) is checked as it
/// was before: the same records, the same errors. A skim checks structure only.
#[test]
fn a_page_reads_alike_as_text_or_as_bytes() {
    let m = manifest("employees", None, json!({"email": "e"}));
    let p = Projection::new(&m).unwrap();
    let page = |e: &[u8], other: &[u8]| [br#"{"employees": [{"e": ""#, e, br#"", "o": ""#, other, br#""}]}"#].concat();
    let read = |body: &[u8]| {
        let mut arena = RecordArena::default();
        p.read(body, &m, &mut arena).map(|_| arena.iter().map(|r| r.fields.email).collect::<Vec<_>>())
    };
    let ok = vec![Some("a@b.io".to_string())];
    assert_eq!(read(&page(b"a@b.io", "\u{e9}t\u{e9}".as_bytes())).unwrap(), ok, "a UTF-8 page");
    let bad = read(&page(b"a@b.io", b"x\xffy")).unwrap_err().to_string();
    assert!(bad.contains("invalid unicode code point"), "a bad byte in a skipped string: {bad}");
    assert!(read(&page(b"a\xff@b.io", b"x")).is_err(), "a bad byte in a read string");
    assert!(p.skim(&page(b"a\xff@b.io", b"x"), &m).is_ok(), "a skim checks structure only");
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;
    use crate::testing::cases;

    fn doc() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(json!(null)),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            Just(json!(1.5e3)),
            "[ a-zA-Z@.\"\\\\é]{0,10}".prop_map(Value::String),
            Just(json!("a@b.io")),
            Just(json!("active")),
        ];
        leaf.prop_recursive(5, 40, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::vec(
                    (proptest::sample::select(vec!["employees", "e", "f", "next", "x", "active", "n"]), inner),
                    0..5
                )
                .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases(512)))]

        /// Differential: the projection reads the same records (or the same
        /// verdict) as selecting in a parsed `Value`, and refuses what a
        /// `Value` parse refuses.
        #[test]
        fn the_projection_reads_what_a_parsed_value_gives(doc in doc(), cut in any::<prop::sample::Index>()) {
            let m = manifest("employees", Some("next"),
                json!({"email": "e", "first_name": "f", "external_id": "n.0", "active": "active", "tag": "x"}));
            let body = doc.to_string();
            let (projected, parsed) = both(&m, &body);
            prop_assert_eq!(projected, parsed);

            let truncated = &body.as_bytes()[..cut.index(body.len().max(1)).min(body.len())];
            let p = Projection::new(&m).expect("projectable");
            let value_ok = serde_json::from_slice::<Value>(truncated).is_ok();
            prop_assert_eq!(p.read(truncated, &m, &mut RecordArena::default()).is_ok(), value_ok);
            prop_assert_eq!(p.skim(truncated, &m).is_ok(), value_ok);
        }
    }
}
