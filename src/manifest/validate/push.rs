//! The push half of a manifest (`action: push`): the `push` block in
//! reconcile mode (`create`, `update`, `remove`, with `target_id_from`) or
//! bulk mode (`bulk`), `push_select` and `max_remove`, and the templates a
//! push request may use (`user.*`, `target.id`).

use serde_json::{Map, Value};

use super::*;
use crate::manifest::{Push, PushMode, PushSelect};

const PUSH_KEYS: &[&str] = &["create", "update", "remove", "bulk"];
const BULK_ONLY_KEYS: &[&str] = &["batch", "list_key", "record"];
const SELECT_KEYS: &[&str] = &["active", "source"];
/// Records per bulk body when `batch` is not given.
const DEFAULT_BATCH: u32 = 1000;

impl Checker<'_> {
    /// A bulk push lists nothing: `execute` and the listing keys have no use.
    pub(super) fn no_listing<'v>(&mut self, obj: &'v Map<String, Value>) -> &'v [Value] {
        for key in ["execute", "data_from", "data_structure", "target_id_from", "page_size", "next_page_from"] {
            if obj.contains_key(key) {
                self.problem(
                    &format!("/{key}"),
                    "a bulk push (push.bulk) sends the whole list and lists nothing; remove it, or use \
                     push.create/update/remove to reconcile against a listing",
                );
            }
        }
        &[]
    }

    /// The push keys: required with `action: push`, refused without it.
    pub(super) fn push_keys(
        &mut self,
        obj: &Map<String, Value>,
        action: Option<Action>,
        ids: &BTreeSet<String>,
    ) -> Option<Push> {
        if action != Some(Action::Push) {
            for key in ["push", "push_select", "max_remove", "max_create", "target_id_from"] {
                if obj.contains_key(key) && action.is_some() {
                    self.problem(
                        &format!("/{key}"),
                        format!("{key} is used only by action \"push\"; remove it or change the action"),
                    );
                }
            }
            return None;
        }
        let Some(v) = obj.get("push") else {
            self.problem(
                "/push",
                "required with action \"push\": {\"create\": {...}, \"update\": {...}, \"remove\": {...}} \
                 or {\"bulk\": {...}}",
            );
            return None;
        };
        let block = self.object(v, "/push")?;
        self.unknown_keys(block, PUSH_KEYS, "/push");
        let mode = match block.get("bulk") {
            Some(bulk) => {
                for key in ["create", "update", "remove"] {
                    if block.contains_key(key) {
                        self.problem(&format!("/push/{key}"), "push.bulk sends the whole list; it has no {key}");
                    }
                }
                self.bulk(bulk, ids)?
            }
            None => self.reconcile(obj, block, ids)?,
        };
        let select = self.push_select(obj.get("push_select"));
        let mut limit = |key: &str| {
            obj.get(key).and_then(|v| match Limit::parse(v) {
                Ok(l) => Some(l),
                Err(reason) => {
                    self.problem(&format!("/{key}"), reason);
                    None
                }
            })
        };
        let (max_remove, max_create) = (limit("max_remove"), limit("max_create"));
        Some(Push { mode, select, max_remove, max_create })
    }

    fn push_scope<'s>(&self, ids: &'s BTreeSet<String>, target: bool) -> Scope<'s> {
        Scope {
            ids,
            responses_below: 0,
            next_page_token: false,
            paging: false,
            oauth: self.oauth,
            redirect_url: false,
            user: true,
            target,
        }
    }

    fn reconcile(
        &mut self,
        obj: &Map<String, Value>,
        block: &Map<String, Value>,
        ids: &BTreeSet<String>,
    ) -> Option<PushMode> {
        let create = block.get("create").and_then(|v| self.step(v, "/push/create", &self.push_scope(ids, false)));
        let update = block.get("update").and_then(|v| self.step(v, "/push/update", &self.push_scope(ids, true)));
        let remove = block.get("remove").and_then(|v| self.step(v, "/push/remove", &self.push_scope(ids, true)));
        if !PUSH_KEYS[..3].iter().any(|k| block.contains_key(*k)) {
            self.problem("/push", "names no request: add create, update and remove (or bulk)");
        }
        let target_id_from = match obj.get("target_id_from") {
            Some(v) => self.path(v, "/target_id_from"),
            None if block.contains_key("update") || block.contains_key("remove") => {
                self.problem(
                    "/target_id_from",
                    "required for push.update and push.remove: the path of the target's own id in a listed \
                     record, e.g. \"id\" ({{ target.id }} in their URLs)",
                );
                None
            }
            None => Some(FieldPath::Dot(Vec::new())),
        };
        for (at, step) in [("/push/create", &create), ("/push/update", &update), ("/push/remove", &remove)] {
            if step.as_ref().is_some_and(|s| s.continue_if.is_some() || s.polling.is_some()) {
                self.problem(at, "a push request is sent once per user: continue_if and polling have no use here");
            }
        }
        Some(PushMode::Reconcile { target_id_from: target_id_from?, create, update, remove })
    }

    fn bulk(&mut self, v: &Value, ids: &BTreeSet<String>) -> Option<PushMode> {
        let at = "/push/bulk";
        let obj = self.object(v, at)?;
        let request: Map<String, Value> = obj
            .iter()
            .filter(|(k, _)| !BULK_ONLY_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if request.contains_key("data") {
            self.problem(&format!("{at}/data"), "a bulk body is made of records: put the fields in \"record\"");
        }
        let request = self.step(&Value::Object(request), at, &self.push_scope(ids, false));
        let batch = match obj.get("batch") {
            Some(v) => self.positive(v, &format!("{at}/batch")),
            None => Some(DEFAULT_BATCH),
        };
        let list_key = match obj.get("list_key") {
            None => Some("users".to_string()),
            Some(v) => self.string(v, &format!("{at}/list_key")).map(str::to_string),
        };
        let record = match obj.get("record") {
            Some(r @ Value::Object(_)) => {
                self.data_templates(r, &format!("{at}/record"), &self.push_scope(ids, false));
                Some(r.clone())
            }
            Some(other) => {
                self.problem(&format!("{at}/record"), format!("expected an object of fields, found {}", kind(other)));
                None
            }
            None => {
                self.problem(
                    &format!("{at}/record"),
                    "required: one user as the target takes it, e.g. {\"employee_id\": \"{{ user.external_id }}\", \
                     \"email\": \"{{ user.email }}\"}",
                );
                None
            }
        };
        Some(PushMode::Bulk { request: request?, batch: batch? as usize, list_key: list_key?, record: record? })
    }

    fn push_select(&mut self, v: Option<&Value>) -> PushSelect {
        let mut select = PushSelect::default();
        let Some(v) = v else { return select };
        let Some(obj) = self.object(v, "/push_select") else { return select };
        self.unknown_keys(obj, SELECT_KEYS, "/push_select");
        match obj.get("active") {
            None => {}
            Some(Value::Bool(b)) => select.active = *b,
            Some(other) => {
                self.problem("/push_select/active", format!("expected true or false, found {}", kind(other)))
            }
        }
        match obj.get("source") {
            None => {}
            Some(Value::Array(items)) => {
                let mut names = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if let Some(name) = self.string(item, &format!("/push_select/source/{i}")) {
                        names.push(name.to_string());
                    }
                }
                select.source = Some(names);
            }
            Some(other) => self.problem(
                "/push_select/source",
                format!("expected a list of integration names (or \"import\"), found {}", kind(other)),
            ),
        }
        select
    }
}
