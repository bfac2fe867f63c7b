use super::*;
use serde_json::json;

fn config() -> Config {
    let text = "[secrets.hr]\nKEY = \"k\"\nCOMPANY_ID = \"acme\"\n";
    crate::config::parse_str(text, Path::new("/etc/rosterd/c.toml")).unwrap()
}

fn base() -> Value {
    json!({
        "execute": [{"url": "https://x.test/{{COMPANY_ID}}/people", "method": "GET"}],
        "headers": {"Authorization": "Basic {{KEY}}:x"},
        "action": "create",
        "data_from": "employees",
        "data_structure": {"email": "workEmail", "first_name": "firstName", "last_name": "lastName"},
        "initial_data_form": [{"id": "KEY", "name": "key"}, {"id": "COMPANY_ID", "name": "company"}]
    })
}

/// The problems for `base()` changed by `edit`, as "pointer: reason" lines.
fn check(edit: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut m = base();
    edit(&mut m);
    match parse("hr", Path::new("hr.json"), &m.to_string(), &config()) {
        Ok(_) => Vec::new(),
        Err(problems) => problems.iter().map(|p| format!("{}: {}", p.pointer, p.reason)).collect(),
    }
}

fn push(list: &mut Value, item: Value) {
    list.as_array_mut().unwrap().push(item);
}

fn has(problems: &[String], pointer: &str, words: &str) -> bool {
    problems.iter().any(|p| p.starts_with(&format!("{pointer}: ")) && p.contains(words))
}

#[test]
fn the_base_manifest_is_valid() {
    assert_eq!(check(|_| {}), Vec::<String>::new());
}

#[test]
fn unknown_keys_suggest_the_closest() {
    let p = check(|m| {
        m["shedule"] = json!("0 * * * *");
        m["execute"][0]["metod"] = json!("GET");
    });
    assert!(has(&p, "/shedule", "did you mean \"schedule\""), "{p:?}");
    assert!(has(&p, "/execute/0/metod", "did you mean \"method\""), "{p:?}");
}

#[test]
fn wrong_types_name_what_was_found() {
    let p = check(|m| m["execute"] = json!({"url": "x"}));
    assert!(has(&p, "/execute", "found an object"), "{p:?}");
    let p = check(|m| m["data_structure"]["email"] = json!(3));
    assert!(has(&p, "/data_structure/email", "expected a string"), "{p:?}");
}

#[test]
fn malformed_json_gives_line_and_column() {
    let err = parse("hr", Path::new("hr.json"), "{\n  \"execute\": [\n", &config()).unwrap_err();
    assert!(err[0].reason.contains("line 3"), "{}", err[0].reason);
}

#[test]
fn schedules_are_checked() {
    assert_eq!(check(|m| m["schedule"] = json!("0 * * * *")), Vec::<String>::new());
    assert_eq!(check(|m| m["schedule"] = json!("@hourly")), Vec::<String>::new());
    assert!(has(&check(|m| m["schedule"] = json!("0 * *")), "/schedule", "3 field(s)"));
}

#[test]
fn update_needs_email() {
    let p = check(|m| {
        m["action"] = json!("update");
        m["data_structure"] = json!({"bamboohr_id": "id"});
    });
    assert!(has(&p, "/data_structure", "add \"email\""), "{p:?}");
}

#[test]
fn unknown_action_is_refused() {
    assert!(has(&check(|m| m["action"] = json!("delete")), "/action", "unknown action"));
}

#[test]
fn missing_secret_says_where_to_put_it() {
    let p = check(|m| push(&mut m["initial_data_form"], json!({"id": "REPORT_ID", "name": "report"})));
    assert!(has(&p, "/initial_data_form/2/id", "[secrets.hr]"), "{p:?}");
    assert!(has(&p, "/initial_data_form/2/id", "ROSTERD_SECRET_HR_REPORT_ID"), "{p:?}");
    let generated = check(|m| push(&mut m["initial_data_form"], json!({"id": "NONCE", "name": "generate"})));
    assert_eq!(generated, Vec::<String>::new());
}

#[test]
fn templates_name_only_known_values() {
    let p = check(|m| m["execute"][0]["url"] = json!("https://x.test/{{ COMPANY }}"));
    assert!(has(&p, "/execute/0/url", "did you mean {{ COMPANY_ID }}"), "{p:?}");
    let p = check(|m| m["execute"][0]["url"] = json!("https://x.test/{{ responses.0.id }}"));
    assert!(has(&p, "/execute/0/url", "no earlier response"), "{p:?}");
    let p = check(|m| m["execute"][0]["data"] = json!({"q": ["{{ NEXT_PAGE_TOKEN }}"]}));
    assert!(has(&p, "/execute/0/data/q/0", "only be used in next_page"), "{p:?}");
    let p = check(|m| m["execute"][0]["url"] = json!("https://x.test/?o={{ OFFSET }}"));
    assert!(has(&p, "/execute/0/url", "needs page_size"), "{p:?}");
}

#[test]
fn responses_of_earlier_steps_are_allowed() {
    let p = check(|m| {
        push(&mut m["execute"], json!({"url": "https://x.test/{{ responses.0.next }}"}));
    });
    assert_eq!(p, Vec::<String>::new());
}

#[test]
fn token_pagination_needs_next_page_with_the_token() {
    let p = check(|m| m["next_page_token_from"] = json!("meta.next"));
    assert!(has(&p, "/next_page", "required"), "{p:?}");
    let ok = check(|m| {
        m["next_page_token_from"] = json!("meta.next");
        m["next_page"] = json!("https://x.test/p?t={{ NEXT_PAGE_TOKEN }}");
    });
    assert_eq!(ok, Vec::<String>::new());
}

#[test]
fn page_size_needs_a_paging_name() {
    let p = check(|m| m["page_size"] = json!(100));
    assert!(has(&p, "/page_size", "OFFSET"), "{p:?}");
    let ok = check(|m| {
        m["page_size"] = json!(100);
        m["execute"][0]["url"] = json!("https://x.test/p?offset={{ OFFSET }}&limit={{LIMIT}}");
    });
    assert_eq!(ok, Vec::<String>::new());
}

#[test]
fn webhook_manifests_are_named_as_such() {
    let p = check(|m| m["form"] = json!([{"id": "x", "name": "X", "type": "input"}]));
    assert!(has(&p, "/form", "not a sync-users manifest"), "{p:?}");
}

/// ChiefOnboarding's Google manifest, in the shape its builder saves.
fn with_google_oauth(m: &mut Value) {
    m["headers"] = json!({"Authorization": "Bearer {{ oauth.access_token }}"});
    m["oauth"] = json!({
        "authenticate_url": "https://accounts.google.com/o/oauth2/v2/auth?redirect_uri={{redirect_url}}&client_id={{KEY}}",
        "access_token": {"url": "https://oauth2.googleapis.com/token?redirect_uri={{redirect_url}}", "method": "POST"},
        "refresh": {"url": "https://oauth2.googleapis.com/token", "method": "POST",
                    "data": {"refresh_token": "{{ oauth.refresh_token }}", "grant_type": "refresh_token"}},
        "without_code": false
    });
}

#[test]
fn an_oauth_block_makes_its_names_known() {
    assert_eq!(check(with_google_oauth), Vec::<String>::new());
    let m = base();
    let mut m = m;
    with_google_oauth(&mut m);
    let parsed = parse("hr", Path::new("hr.json"), &m.to_string(), &config()).unwrap();
    let oauth = parsed.oauth.expect("an oauth block");
    assert!(oauth.needs_consent() && oauth.refresh.is_some() && !oauth.without_code);
}

#[test]
fn oauth_names_need_an_oauth_block() {
    let p = check(|m| m["headers"] = json!({"Authorization": "Bearer {{ oauth.access_token }}"}));
    assert!(has(&p, "/headers/Authorization", "needs an \"oauth\" block"), "{p:?}");
    let p = check(|m| m["execute"][0]["url"] = json!("https://x.test/{{ redirect_url }}"));
    assert!(has(&p, "/execute/0/url", "only be used in the oauth block"), "{p:?}");
}

#[test]
fn oauth_blocks_are_checked_at_their_pointers() {
    let p = check(|m| m["oauth"] = json!({"authenticate_url": "https://x.test/a", "without_code": "no", "acess": 1}));
    assert!(has(&p, "/oauth/access_token", "required"), "{p:?}");
    assert!(has(&p, "/oauth/without_code", "true or false"), "{p:?}");
    assert!(has(&p, "/oauth/acess", ""), "{p:?}");
    let p = check(|m| m["oauth"] = json!({"access_token": {"url": "https://x.test/t?{{ NOPE }}"}}));
    assert!(has(&p, "/oauth/access_token/url", "not defined"), "{p:?}");
}

/// ChiefOnboarding's builder saves every optional key, empty when unset.
#[test]
fn empty_builder_values_mean_unset() {
    let p = check(|m| {
        for key in [
            "headers",
            "continue_if",
            "polling",
            "schedule",
            "next_page_from",
            "next_page_token_from",
            "next_page",
            "oauth",
            "form",
        ] {
            m[key] = if ["headers", "continue_if", "polling", "oauth"].contains(&key) {
                json!({})
            } else if key == "form" {
                json!([])
            } else {
                json!("")
            };
        }
        m["execute"][0]["headers"] = json!([]);
        m["execute"][0]["status_code"] = json!([]);
        m["execute"][0]["data"] = json!({});
        m["execute"][0]["store_data"] = json!({});
        m["execute"][0]["save_as_file"] = json!("");
        m["execute"][0]["files"] = json!([]);
        m["execute"][0]["cast_data_to_json"] = json!(true);
        m["type"] = json!("import_users");
        m.as_object_mut().unwrap().remove("action");
    });
    assert_eq!(p, Vec::<String>::new());
    let m = parse(
        "hr",
        Path::new("hr.json"),
        &json!({"execute": [{"url": "https://x.test/p"}], "data_structure": {"email": "e"}}).to_string(),
        &config(),
    )
    .unwrap();
    assert_eq!(m.action, Action::Create);
    assert!(m.notes.iter().any(|n| n.starts_with("/action")), "{:?}", m.notes);
}

#[test]
fn builder_only_keys_say_what_they_are_for() {
    let p = check(|m| {
        m["execute"][0]["store_data"] = json!({"id": "x"});
        m["execute"][0]["save_as_file"] = json!("people.json");
        m["extra_headers"] = json!({"X": "y"});
        m["execute"][0]["cast_data_to_json"] = json!("yes");
        m["type"] = json!("webhook");
    });
    assert!(has(&p, "/execute/0/store_data", "stores values from this response"), "{p:?}");
    assert!(has(&p, "/execute/0/save_as_file", "saves the response as a file"), "{p:?}");
    assert!(has(&p, "/extra_headers", "put them in \"headers\""), "{p:?}");
    assert!(has(&p, "/execute/0/cast_data_to_json", "expected true or false"), "{p:?}");
    assert!(has(&p, "/type", "not a sync-users manifest"), "{p:?}");
    assert!(!p.iter().any(|l| l.contains("did you mean")), "{p:?}");
}

#[test]
fn sync_keys_belong_to_sync() {
    assert!(has(&check(|m| m["match_on"] = json!("email")), "/match_on", "only by action \"sync\""));
    let p = check(|m| {
        m["action"] = json!("sync");
        m["match_on"] = json!("external_id");
    });
    assert!(has(&p, "/data_structure", "add \"external_id\""), "{p:?}");
}

#[test]
fn status_codes_take_strings_and_numbers() {
    assert_eq!(check(|m| m["execute"][0]["status_code"] = json!(["200", 201])), Vec::<String>::new());
    assert!(has(
        &check(|m| m["execute"][0]["status_code"] = json!(["abc"])),
        "/execute/0/status_code/0",
        "not an HTTP status"
    ));
}

#[test]
fn every_problem_is_reported_in_one_pass() {
    let p = check(|m| {
        m["action"] = json!("nope");
        m["shedule"] = json!("x");
        m["execute"][0]["method"] = json!("FETCH");
        m["data_from"] = json!(1);
    });
    assert_eq!(p.len(), 4, "{p:?}");
}

#[test]
fn the_name_import_is_reserved() {
    let err = parse("import", Path::new("import.json"), &base().to_string(), &config()).unwrap_err();
    assert!(err.iter().any(|p| p.reason.contains("reserved")));
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;
    use crate::testing::cases;

    /// The keys a manifest may carry (ChiefOnboarding's builder saves all of them), and some a step may.
    fn keys() -> Vec<&'static str> {
        TOP_KEYS.iter().copied().chain(["form", "polling", "continue_if"]).collect()
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(json!(null)),
            Just(json!("")),
            Just(json!([])),
            Just(json!({})),
            Just(json!(0)),
            Just(json!(true)),
            Just(json!("x")),
            Just(json!("{{ KEY }}")),
            Just(json!("{{ KEY|lower }}")),
            Just(json!("{% if %}")),
            Just(json!("* * * * *")),
            Just(json!("10%")),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z_]{1,6}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases(512)))]

        /// An empty value (`[]`, `{}`, `""`) of an optional key behaves as the
        /// key being absent, at the top and in a step, whatever else is in the manifest.
        #[test]
        fn an_empty_value_behaves_as_an_absent_one(
            key in proptest::sample::select(EMPTY_MEANS_UNSET),
            empty in proptest::sample::select(vec![json!([]), json!({}), json!("")]),
            in_step in any::<bool>(),
            edits in proptest::collection::vec((proptest::sample::select(keys()), value()), 0..3),
        ) {
            let mut m = base();
            for (k, v) in edits {
                if k != key {
                    m[k] = v;
                }
            }
            let in_step = in_step && m.get("execute").and_then(|e| e.get(0)).is_some_and(Value::is_object);
            let target = if in_step { &mut m["execute"][0] } else { &mut m };
            if let Some(obj) = target.as_object_mut() {
                obj.remove(key);
            }
            let absent = parse("hr", Path::new("hr.json"), &m.to_string(), &config()).map(|m| format!("{m:?}"));
            let target = if in_step { &mut m["execute"][0] } else { &mut m };
            if let Some(obj) = target.as_object_mut() {
                obj.insert(key.to_string(), empty);
            }
            let empty = parse("hr", Path::new("hr.json"), &m.to_string(), &config()).map(|m| format!("{m:?}"));
            prop_assert_eq!(absent, empty);
        }

        /// A manifest with any of its keys removed or replaced by any value is
        /// valid or gets problems; validation never panics.
        #[test]
        fn validation_never_panics(edits in proptest::collection::vec((proptest::sample::select(keys()), proptest::option::of(value())), 0..6)) {
            let mut m = base();
            for (key, v) in edits {
                match v {
                    Some(v) => m[key] = v,
                    None => {
                        m.as_object_mut().expect("object").remove(key);
                    }
                }
            }
            if let Err(problems) = parse("hr", Path::new("hr.json"), &m.to_string(), &config()) {
                prop_assert!(!problems.is_empty());
            }
        }
    }
}

#[test]
fn an_update_is_told_where_its_core_fields_go() {
    let mut m = base();
    m["action"] = json!("update");
    m["data_structure"]["department"] = json!("dept");
    let m = parse("hr", Path::new("hr.json"), &m.to_string(), &config()).unwrap();
    for field in ["first_name", "last_name", "department"] {
        assert!(
            m.notes.iter().any(|n| n.starts_with(&format!("/data_structure/{field}: update puts it in extra_fields"))),
            "{field}: {:?}",
            m.notes
        );
    }
    assert!(!m.notes.iter().any(|n| n.starts_with("/data_structure/email")), "the key is not moved: {:?}", m.notes);
}
