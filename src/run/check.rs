//! What a run checks and hides before its result leaves it: mapped paths
//! that matched no record (`Mapping`), a dry run's per-field counts and
//! sample, and a dry run's plan with every outside value redacted.

use serde::Serialize;
use serde_json::{Map, Value};

use super::RunError;
use crate::fetch;
use crate::manifest::{Manifest, Target};
use crate::plan::Plan;
use crate::redact::Redactor;

/// A mapped field and how many fetched records had a value for it.
#[derive(Debug, Clone, Serialize)]
pub struct FieldCount {
    pub field: String,
    pub path: String,
    pub records: u64,
}

/// What the fetched records say about the mapping, before anything is applied.
pub(super) struct Mapping {
    pub(super) warnings: Vec<String>,
    /// A push's listing whose external-id path matched none of N > 0
    /// records: the push is held (every user would be created again).
    pub(super) key_missing: Option<String>,
    pub(super) fields: Vec<FieldCount>,
    pub(super) sample: Option<crate::mapping::Record>,
}

impl Mapping {
    /// Finds mapped paths that matched no record (the run's key among them
    /// fails the run); a dry run also counts every field and keeps a sample.
    pub(super) fn check(m: &Manifest, f: &fetch::Fetched, dry_run: bool, r: &Redactor) -> Result<Mapping, RunError> {
        let n = f.records.len();
        let counts = crate::mapping::coverage(&f.records, &m.data_structure, dry_run);
        // A push's listing key does not fail it here: a listing without
        // external ids holds the push instead (`run::push`).
        let push = m.action == crate::manifest::Action::Push;
        let key = match (m.action, m.match_on) {
            (crate::manifest::Action::Sync | crate::manifest::Action::Push, crate::manifest::MatchOn::ExternalId) => {
                Some(crate::user::Field::ExternalId)
            }
            (crate::manifest::Action::Push, _) => Some(crate::user::Field::ExternalId),
            _ => Some(crate::user::Field::Email),
        };
        let mut warnings = Vec::new();
        let mut key_missing = None;
        for (rule, count) in m.data_structure.iter().zip(&counts) {
            if n == 0 || *count > 0 {
                continue;
            }
            let path = rule.path.to_string();
            // The path itself, when its key is there but empty in every record.
            let hint = match f.first.as_ref().and_then(|first| crate::mapping::closest_path(first, &path)) {
                Some(p) if p == path => " (the key is there, but empty)".to_string(),
                Some(p) => format!("; did you mean \"{p}\"?"),
                None => String::new(),
            };
            let text = format!("data_structure \"{}\": \"{path}\" matched 0 of {n} records{hint}", rule.target.name());
            if key.is_some_and(|key| rule.target == Target::Core(key)) {
                if !push {
                    return Err(RunError::KeyPath(text));
                }
                key_missing = Some(r.redact(&text));
                continue;
            }
            warnings.push(r.redact(&text));
        }
        let fields = if dry_run {
            m.data_structure
                .iter()
                .zip(counts)
                .map(|(rule, records)| FieldCount {
                    field: rule.target.name().to_string(),
                    path: rule.path.to_string(),
                    records,
                })
                .collect()
        } else {
            Vec::new()
        };
        let sample = (dry_run && n > 0).then(|| {
            let mut s = f.records.get(0);
            for c in crate::user::TEXT_COLUMNS {
                if let Some(v) = s.fields.get(c).map(|v| r.redact(v)) {
                    s.fields.set(c, Some(v));
                }
            }
            s.extra.values_mut().for_each(|v| redact_value(v, r));
            s.problem = s.problem.as_deref().map(|p| r.redact(p));
            s
        });
        Ok(Mapping { warnings, key_missing, fields, sample })
    }
}

/// A dry run's plan as it leaves the run: every value that came from the
/// source redacted (rosterd's own keys and counts are left alone).
pub(super) fn redacted_plan(mut plan: Plan, r: &Redactor) -> Plan {
    let fields = |f: &mut crate::user::Fields| {
        for c in crate::user::TEXT_COLUMNS {
            if let Some(v) = f.get(c).map(|v| r.redact(v)) {
                f.set(c, Some(v));
            }
        }
    };
    let extra = |m: &mut Map<String, Value>| {
        for v in m.values_mut() {
            redact_value(v, r);
        }
    };
    for c in &mut plan.creates {
        fields(&mut c.fields);
        extra(&mut c.extra);
    }
    for u in &mut plan.updates {
        fields(&mut u.fields);
        extra(&mut u.extra);
        u.label = r.redact(&u.label);
        for c in &mut u.changes {
            c.old = c.old.as_deref().map(|v| r.redact(v));
            c.new = c.new.as_deref().map(|v| r.redact(v));
        }
    }
    for d in plan.deactivations.iter_mut().chain(plan.cleared_emails.iter_mut()) {
        d.label = r.redact(&d.label);
    }
    for s in &mut plan.skips {
        s.key = s.key.as_deref().map(|k| r.redact(k));
        s.reason = r.redact(&s.reason);
    }
    plan
}

/// Redacts every string in a JSON value (its keys are the manifest's own names).
fn redact_value(v: &mut Value, r: &Redactor) {
    match v {
        Value::String(s) => *s = r.redact(s),
        Value::Array(items) => items.iter_mut().for_each(|v| redact_value(v, r)),
        Value::Object(m) => m.values_mut().for_each(|v| redact_value(v, r)),
        _ => {}
    }
}
