//! Turns one source record (JSON) into a typed `Record` through the
//! manifest's `data_structure`. Pure: no I/O, no async. A value that cannot be
//! used makes the whole record carry a `problem`, which the plan records as
//! its skip reason.

use serde_json::{Map, Value};

use crate::manifest::{Core, FieldPath, Target};
use crate::user::{Fields, parse_email};

/// One mapped record. `index` is its 0-based position in the whole fetch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub index: usize,
    pub fields: Fields,
    pub active: Option<bool>,
    pub extra: Map<String, Value>,
    /// Why this record cannot be used (a bad email, an ambiguous JSONPath, ...).
    pub problem: Option<String>,
}

impl Record {
    /// The text a skip reason is filed under: the email, else the external id.
    pub fn key(&self) -> Option<String> {
        self.fields.email.clone().or_else(|| self.fields.external_id.clone())
    }
}

/// Maps one record.
pub fn map_record(structure: &[(Target, FieldPath)], index: usize, source: &Value) -> Record {
    let mut record = Record { index, ..Record::default() };
    for (target, path) in structure {
        let hits = path.select(source);
        let value = match hits.as_slice() {
            [] => continue,
            [one] => *one,
            many => {
                record.problem.get_or_insert(format!(
                    "\"{}\" matched {} values, expected one",
                    target.name(),
                    many.len()
                ));
                continue;
            }
        };
        if let Err(reason) = set(&mut record, target, value) {
            record.problem.get_or_insert(reason);
        }
    }
    record
}

fn set(record: &mut Record, target: &Target, value: &Value) -> Result<(), String> {
    match target {
        Target::Core(Core::Active) => {
            if !is_missing(value) {
                record.active = Some(parse_active(value)?);
            }
        }
        Target::Core(Core::Email) => {
            if let Some(text) = text(value, "email")? {
                record.fields.email = Some(parse_email(&text)?);
            }
        }
        Target::Core(core) => {
            let text = text(value, core.column())?;
            record.fields.set(*core, text);
        }
        Target::Extra(name) => {
            if !is_missing(value) {
                record.extra.insert(name.clone(), value.clone());
            }
        }
    }
    Ok(())
}

fn is_missing(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// A JSON value as text: strings trimmed, numbers as written, booleans as `true`/`false`.
/// Null and blank strings are missing.
pub fn text(value: &Value, field: &str) -> Result<Option<String>, String> {
    Ok(match value {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(_) | Value::Object(_) => {
            return Err(format!(
                "\"{field}\" is {}, expected text",
                if value.is_array() { "a list" } else { "an object" }
            ));
        }
    })
}

/// `active`: booleans, 0/1, or "true"/"false"/"active"/"inactive"/"1"/"0" in any case.
pub fn parse_active(value: &Value) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "active" | "1" => Ok(true),
            "false" | "inactive" | "0" => Ok(false),
            _ => Err(format!("\"active\" is \"{s}\"; expected true/false, 1/0 or active/inactive")),
        },
        other => Err(format!("\"active\" is {other}; expected true/false, 1/0 or active/inactive")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn structure(pairs: &[(&str, &str)]) -> Vec<(Target, FieldPath)> {
        pairs.iter().map(|(t, p)| (Target::from_name(t), FieldPath::parse(p).unwrap())).collect()
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
    fn active_accepts_the_usual_spellings() {
        for (v, want) in [
            (json!(true), true),
            (json!(0), false),
            (json!("ACTIVE"), true),
            (json!("false"), false),
            (json!("1"), true),
        ] {
            assert_eq!(parse_active(&v), Ok(want), "{v}");
        }
        assert!(parse_active(&json!(2)).is_err());
    }
}
