//! Bulk mode (seed 000 option 2): every selected user as one `record`,
//! sent in bodies of `{"<list_key>": [...]}`, and the target's reply read
//! the way seed 000 writes it: `errors` (recorded one by one) and
//! `updated_users` (each with its `action`: created or updated).

use serde_json::Value;

use crate::port::PushRow;
use crate::redact::Redactor;

/// What a bulk reply says about its batch.
#[derive(Debug, Default, PartialEq)]
pub struct Reply {
    pub created: u64,
    pub updated: u64,
    /// One row per entry of `errors`, redacted.
    pub errors: Vec<PushRow>,
    /// Whether the reply had seed 000's shape at all.
    pub understood: bool,
}

/// Reads a reply; a body of another shape is `understood: false` (the batch
/// was accepted, with nothing to count).
pub fn read_reply(body: &[u8], redactor: &Redactor) -> Reply {
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(body) else { return Reply::default() };
    let mut reply =
        Reply { understood: doc.contains_key("errors") || doc.contains_key("updated_users"), ..Reply::default() };
    for user in doc.get("updated_users").and_then(Value::as_array).into_iter().flatten() {
        match user.get("action").and_then(Value::as_str) {
            Some("create" | "created") => reply.created += 1,
            Some("update" | "updated") => reply.updated += 1,
            _ => {}
        }
    }
    for error in doc.get("errors").and_then(Value::as_array).into_iter().flatten() {
        let id = ["employee_id", "external_id", "externalId"]
            .iter()
            .find_map(|k| error.get(*k).and_then(|v| crate::mapping::text(v, k).ok().flatten()));
        let text = match error {
            Value::String(s) => s.clone(),
            Value::Object(o) => ["error", "message", "reason"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| error.to_string()),
            other => other.to_string(),
        };
        reply.errors.push(PushRow {
            kind: "bulk".into(),
            external_id: id.map(|id| redactor.redact(&id)),
            target_id: None,
            status: None,
            error: Some(redactor.redact(&format!("the target reported: {text}"))),
        });
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_000s_reply_is_counted_and_its_errors_recorded() {
        let body = br#"{"errors": [{"index": 2, "employee_id": "Z-1", "error": "name is required"}, "bad row"],
                        "updated_users": [{"name": "Bob", "employee_id": "X-1", "action": "update"},
                                          {"name": "Seth", "employee_id": "Z-8", "action": "create"}]}"#;
        let r = read_reply(body, &Redactor::default());
        assert!(r.understood);
        assert_eq!((r.created, r.updated, r.errors.len()), (1, 1, 2));
        assert_eq!(r.errors[0].external_id.as_deref(), Some("Z-1"));
        assert!(r.errors[0].error.as_deref().unwrap().contains("name is required"));
        assert!(r.errors[1].error.as_deref().unwrap().contains("bad row"));
        assert!(!read_reply(b"ok", &Redactor::default()).understood);
    }
}
