//! The mapping half of a manifest: `data_structure` entries (a path, a
//! value map, a full name) and the fields each action needs.

use serde_json::{Map, Value};

use super::*;

impl Checker<'_> {
    pub(super) fn data_structure(&mut self, v: Option<&Value>) -> Vec<Rule> {
        let Some(v) = v else {
            self.problem(
                "/data_structure",
                "required: which record field fills which user field, e.g. {\"email\": \"workEmail\"}",
            );
            return Vec::new();
        };
        let Some(obj) = self.object(v, "/data_structure") else { return Vec::new() };
        let mut out: Vec<Rule> = Vec::new();
        for (name, spec) in obj {
            let at = format!("/data_structure/{}", pointer_token(name));
            let target = Target::from_name(name);
            if out.iter().any(|r| r.target == target) {
                self.problem(
                    &at,
                    format!("\"{name}\" fills the same field as an earlier key (employee_id is external_id)"),
                );
                continue;
            }
            let rule = match spec {
                Value::Object(o) => self.value_map(o, &at).map(|(path, map)| Rule { target, path, map: Some(map) }),
                other => self.path(other, &at).map(|path| Rule::new(target, path)),
            };
            out.extend(rule);
        }
        // A full name fills only the parts that are not mapped themselves.
        let mapped = |f: Field| out.iter().any(|r| r.target == Target::Core(f));
        let (first, last) = (!mapped(Field::FirstName), !mapped(Field::LastName));
        for rule in &mut out {
            if let Target::Name { .. } = rule.target {
                rule.target = Target::Name { first, last };
            }
        }
        if obj.is_empty() {
            self.problem("/data_structure", "maps no field; add at least {\"email\": \"...\"}");
        }
        out
    }

    /// `{"path": P, "map": {"<source value>": <value>, ...}, "else": <value>}`.
    fn value_map(&mut self, o: &Map<String, Value>, at: &str) -> Option<(FieldPath, ValueMap)> {
        self.unknown_keys(o, &["path", "map", "else"], at);
        let path = match o.get("path") {
            Some(p) => self.path(p, &format!("{at}/path")),
            None => {
                self.problem(&format!("{at}/path"), "required: where the value sits, e.g. \"status\"");
                None
            }
        };
        let values = match o.get("map") {
            Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Some(other) => {
                self.problem(
                    &format!("{at}/map"),
                    format!("expected an object of source value → value, found {}", kind(other)),
                );
                return None;
            }
            None => {
                self.problem(
                    &format!("{at}/map"),
                    "required: {\"<source value>\": <value>, ...}, e.g. {\"Terminated\": false}",
                );
                return None;
            }
        };
        Some((path?, ValueMap { values, otherwise: o.get("else").cloned() }))
    }

    pub(super) fn required_targets(&mut self, action: Action, match_on: MatchOn, ds: &[Rule]) {
        let has = |c: Field| ds.iter().any(|r| r.target == Target::Core(c));
        let (needed, why) = match (action, match_on) {
            (Action::Create, _) => (Field::Email, "create adds users by email"),
            (Action::Update, _) => (Field::Email, "update finds users by email"),
            (Action::Sync, MatchOn::Email) => (Field::Email, "sync with match_on \"email\" matches users by email"),
            (Action::Sync, MatchOn::ExternalId) => {
                (Field::ExternalId, "sync with match_on \"external_id\" matches users by external_id")
            }
            (Action::Push, _) => {
                (Field::ExternalId, "push matches the target's users to local ones by external_id, exactly")
            }
        };
        if !has(needed) && !ds.is_empty() {
            self.problem(
                "/data_structure",
                format!("{why}: add \"{}\" with the path of that field in each record", needed.column()),
            );
        }
        if action == Action::Update {
            for r in ds.iter().filter(|r| matches!(r.target, Target::Core(c) if c != Field::Email)) {
                self.notes.push(format!(
                    "/data_structure/{}: update puts it in extra_fields, as ChiefOnboarding does; \
                     use \"sync\" to keep core fields in step",
                    pointer_token(r.target.name())
                ));
            }
        }
    }
}
