//! The mapping's own rule type: where a value sits in a record
//! (`FieldPath`, dot paths or JSONPath), the user field it fills (`Target`)
//! and the value map it goes through. `manifest::validate` builds them from a
//! manifest's `data_structure`; the mapping and `fetch` read them.

use jsonpath_rust::parser::model::JpQuery;
use serde_json::Value;

use crate::user::Field;

/// One `data_structure` entry: the field it fills, where the value sits in a
/// record, and the value map it goes through, if any.
#[derive(Debug, Clone)]
pub struct Rule {
    pub target: Target,
    pub path: FieldPath,
    pub map: Option<ValueMap>,
}

impl Rule {
    pub fn new(target: Target, path: FieldPath) -> Rule {
        Rule { target, path, map: None }
    }
}

/// `{"path": P, "map": {...}, "else": v}`: the value at P, compared as text
/// exactly, replaced through `values`; one not there takes `otherwise`, or
/// (without it) skips the record.
#[derive(Debug, Clone, Default)]
pub struct ValueMap {
    pub values: std::collections::HashMap<String, Value>,
    pub otherwise: Option<Value>,
}

/// A field a `data_structure` maps to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Core(Field),
    Extra(String),
    /// `name`: a full name split at its first space into first and last name;
    /// it fills only the parts not mapped themselves.
    Name {
        first: bool,
        last: bool,
    },
}

impl Target {
    pub fn from_name(name: &str) -> Self {
        if name == "employee_id" {
            return Target::Core(Field::ExternalId);
        }
        if name == "name" {
            return Target::Name { first: true, last: true };
        }
        match Field::ALL.iter().find(|c| c.column() == name) {
            Some(c) => Target::Core(*c),
            None => Target::Extra(name.to_string()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Target::Core(c) => c.column(),
            Target::Extra(name) => name,
            Target::Name { .. } => "name",
        }
    }
}

/// Where a value sits in a JSON document: a dot path (`a.b.0.c`, a digit
/// indexes a list; empty = the document itself) or a JSONPath (`$...`).
#[derive(Debug, Clone)]
pub enum FieldPath {
    Dot(Vec<String>),
    Json { query: Box<JpQuery>, text: String },
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldPath::Dot(segs) => f.write_str(&segs.join(".")),
            FieldPath::Json { text, .. } => f.write_str(text),
        }
    }
}

impl FieldPath {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with('$') {
            return jsonpath_rust::parser::parse_json_path(text)
                .map(|q| FieldPath::Json { query: Box::new(q), text: text.to_string() })
                .map_err(|e| format!("\"{text}\" is not a valid JSONPath: {e}"));
        }
        if text.is_empty() {
            return Ok(FieldPath::Dot(Vec::new()));
        }
        let segs: Vec<String> = text.split('.').map(str::to_string).collect();
        if segs.iter().any(String::is_empty) {
            return Err(format!(
                "\"{text}\" has an empty segment; write a dot path such as \"employees\" or \"data.0.email\""
            ));
        }
        Ok(FieldPath::Dot(segs))
    }

    /// All values the path selects: 0 or 1 for a dot path, any number for a JSONPath.
    pub fn select<'a>(&self, doc: &'a Value) -> Vec<&'a Value> {
        match self {
            FieldPath::Dot(segs) => dot_get(doc, segs).into_iter().collect(),
            FieldPath::Json { query, .. } => jsonpath_rust::query::js_path_process(query, doc)
                .map(|refs| refs.into_iter().map(|r| r.val()).collect())
                .unwrap_or_default(),
        }
    }

    /// Takes the selected value out of an owned document (dot paths only move, never copy).
    pub fn take(&self, doc: Value) -> Option<Value> {
        match self {
            FieldPath::Dot(segs) => {
                let mut cur = doc;
                for seg in segs {
                    cur = match cur {
                        Value::Object(mut m) => m.remove(seg)?,
                        Value::Array(mut a) => {
                            let i = seg.parse::<usize>().ok()?;
                            if i >= a.len() {
                                return None;
                            }
                            a.swap_remove(i)
                        }
                        _ => return None,
                    };
                }
                Some(cur)
            }
            FieldPath::Json { .. } => {
                let mut hits = self.select(&doc);
                match hits.len() {
                    0 => None,
                    1 => hits.pop().cloned(),
                    _ => Some(Value::Array(hits.into_iter().cloned().collect())),
                }
            }
        }
    }
}

pub(crate) fn dot_get<'a>(doc: &'a Value, segs: &[String]) -> Option<&'a Value> {
    segs.iter().try_fold(doc, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dot_paths_index_lists_with_digits() {
        let doc = json!({"a": {"b": [{"c": 1}, {"c": 2}]}});
        let p = FieldPath::parse("a.b.1.c").unwrap();
        assert_eq!(p.select(&doc), [&json!(2)]);
        assert!(FieldPath::parse("a.b.9.c").unwrap().select(&doc).is_empty());
        assert_eq!(p.take(doc), Some(json!(2)));
    }

    #[test]
    fn jsonpath_selects_many() {
        let doc = json!({"phones": [{"n": "1"}, {"n": "2"}]});
        assert_eq!(FieldPath::parse("$.phones[*].n").unwrap().select(&doc).len(), 2);
        assert!(FieldPath::parse("$.[").is_err());
    }

    #[test]
    fn name_is_a_full_name() {
        assert_eq!(Target::from_name("name"), Target::Name { first: true, last: true });
    }

    #[test]
    fn employee_id_is_an_alias() {
        assert_eq!(Target::from_name("employee_id"), Target::Core(Field::ExternalId));
        assert_eq!(Target::from_name("bamboohr_id"), Target::Extra("bamboohr_id".into()));
    }
}
