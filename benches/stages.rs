//! Micro-benchmarks of the pure stages: mapping a page, rendering templates,
//! planning 100,000 records against 100,000 users. Prints the median of
//! several runs. `cargo bench --features bench --bench stages`

// A benchmark stops at the first surprise: unwrap is its way of saying so.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use rosterd::fetch::project::Projection;
use rosterd::manifest::{Action, FieldPath, MatchOn, Rule, Target};
use rosterd::mapping::{Record, RecordArena, map_record};
use rosterd::plan::{MemoryDirectory, PlanOptions, plan};
use rosterd::template::Renderer;
use rosterd::user::{Field, Fields, StoredUser};
use serde_json::{Map, Value, json};

fn median(mut f: impl FnMut(), runs: usize) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[runs / 2]
}

fn main() {
    let page: Vec<Value> = (0..500)
        .map(|i| {
            json!({"id": format!("{}", 100_000 + i), "firstName": format!("First{i}"), "lastName": format!("Last{i}"),
                        "workEmail": format!("User{i}@Example.com"), "department": format!("Dept {}", i % 40),
                        "phones": [{"type": "work", "number": format!("555-{i}")}]})
        })
        .collect();
    let structure: Vec<Rule> = [
        ("email", "workEmail"),
        ("first_name", "firstName"),
        ("last_name", "lastName"),
        ("external_id", "id"),
        ("department", "department"),
        ("phone", "$.phones[?(@.type == 'work')].number"),
    ]
    .iter()
    .map(|(t, p)| Rule::new(Target::from_name(t), FieldPath::parse(p).unwrap()))
    .collect();
    let t = median(
        || {
            for (i, r) in page.iter().enumerate() {
                black_box(map_record(&structure, i, r));
            }
        },
        21,
    );
    println!("map one page (500 records, 6 fields, one JSONPath): {:.3} ms ({:.0} records/s)", t * 1e3, 500.0 / t);

    // One BambooHR-shaped page as the source sends it, read the two ways a run can.
    let mut body = String::from(r#"{"title":"bench","employees":["#);
    for i in 0..500 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"id":"{}","firstName":"First{i}","lastName":"Last{i}","workEmail":"User{i}@Example.com","department":"Dept {}","jobTitle":"Engineer","mobilePhone":"+1-555-{i:07}","status":"Active"}}"#,
            100_000 + i,
            i % 40
        ));
    }
    body.push_str(r#"],"next":"/people?page=2"}"#);
    let manifest = serde_json::json!({
        "execute": [{"url": "http://127.0.0.1:1/people"}], "action": "create", "data_from": "employees",
        "next_page_from": "next",
        "data_structure": {"email": "workEmail", "first_name": "firstName", "last_name": "lastName",
                           "external_id": "id", "department": "department", "job": "jobTitle", "phone": "mobilePhone"}
    });
    let config = rosterd::config::Config::default();
    let m = rosterd::manifest::parse("bench", std::path::Path::new("bench.json"), &manifest.to_string(), &config)
        .expect("the bench manifest is valid");
    let projection = Projection::new(&m).expect("dot paths project");
    let t = median(
        || {
            let mut arena = RecordArena::default();
            black_box(projection.read(body.as_bytes(), &m, &mut arena).unwrap());
            assert_eq!(arena.len(), 500);
        },
        41,
    );
    println!("read one page (500 records, 7 fields) by projection into the arena: {:.3} ms", t * 1e3);
    let t = median(
        || {
            let out = projection.skim(body.as_bytes(), &m).unwrap();
            assert!(out.next.is_some());
            black_box(out);
        },
        41,
    );
    println!("skim the same page for its next link and record count: {:.3} ms", t * 1e3);
    let t = median(
        || {
            let mut arena = RecordArena::default();
            let page: Value = serde_json::from_slice(body.as_bytes()).unwrap();
            for (i, r) in page["employees"].as_array().unwrap().iter().enumerate() {
                arena.push(&map_record(&m.data_structure, i, r));
            }
            assert_eq!(arena.len(), 500);
        },
        41,
    );
    println!("the same page parsed into a Value, then mapped: {:.3} ms", t * 1e3);

    let renderer = Renderer::default();
    let ctx = json!({"KEY": "secret", "COMPANY_ID": "acme", "responses": [{"token": "abc"}]});
    let t = median(
        || {
            for _ in 0..1000 {
                black_box(
                    renderer
                        .render("https://api.example.com/{{COMPANY_ID}}/v1/{{ responses.0.token }}?k={{KEY}}", &ctx)
                        .unwrap(),
                );
            }
        },
        11,
    );
    println!("render a URL template: {:.1} µs each", t * 1e6 / 1000.0);

    let n = 100_000;
    let users: Vec<StoredUser> = (0..n)
        .map(|i| StoredUser {
            id: i as i64 + 1,
            fields: Fields {
                email: Some(format!("user{i}@example.com")),
                first_name: Some(format!("First{i}")),
                last_name: Some(format!("Last{i}")),
                external_id: Some(format!("{}", 100_000 + i)),
                ..Fields::default()
            },
            active: true,
            extra: Map::new(),
            owner: Some("hr".into()),
        })
        .collect();
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            index: i,
            fields: Fields {
                email: Some(format!("user{i}@example.com")),
                first_name: Some(format!("First{i}")),
                last_name: Some(if i % 10 == 0 { format!("Changed{i}") } else { format!("Last{i}") }),
                external_id: Some(format!("{}", 100_000 + i)),
                ..Fields::default()
            },
            ..Record::default()
        })
        .collect();
    let mapped = [
        Target::Core(Field::Email),
        Target::Core(Field::FirstName),
        Target::Core(Field::LastName),
        Target::Core(Field::ExternalId),
    ];
    let opts = PlanOptions {
        integration: "hr",
        action: Action::Sync,
        match_on: MatchOn::ExternalId,
        mapped: &mapped,
        ignored_emails: &[],
        auto_clear_email: false,
    };
    let mut updates = 0;
    let t = median(
        || {
            let mut dir = MemoryDirectory::new(users.clone());
            let p = plan(&records[..], &mut dir, &opts).unwrap();
            updates = p.n_updated;
            black_box(p);
        },
        5,
    );
    assert_eq!(updates, n as u64 / 10);
    println!(
        "plan a sync of 100,000 records against 100,000 users in memory (10% changed, clones included): {:.0} ms",
        t * 1e3
    );
}
