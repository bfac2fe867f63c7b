//! Bulk import in the User Sync API's shapes (seed 000), shared by the
//! HTTP API and `rosterd import` (export's shapes are in `export`). Parsing is pure;
//! planning asks an `ImportLookup` about each record's users (the store
//! answers by index, inside the import's one transaction).
//!
//! Records match on `employee_id` (the `external_id` column). `name` splits at
//! its first space into first and last name; export joins them back.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::export::unescape_formula;
use crate::mapping::text;
use crate::port::{ImportLookup, Write};
use crate::user::Email;

/// Columns import ignores: they describe the row, not the person.
const READ_ONLY: [&str; 2] = ["created_at", "updated_at"];

/// A body that cannot be read at all: 400, nothing applied.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct Malformed(pub String);

/// One record of an import request. An absent or empty value leaves that field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportRecord {
    pub index: usize,
    pub name: Option<String>,
    pub employee_id: Option<String>,
    pub username: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub job: Option<String>,
    pub extra: Map<String, Value>,
    /// Why the record cannot be used, found while parsing.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ImportReply {
    pub errors: Vec<ImportError>,
    pub updated_users: Vec<UpdatedUser>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ImportError {
    pub index: usize,
    pub employee_id: Option<String>,
    pub error: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UpdatedUser {
    pub name: String,
    pub employee_id: String,
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// Parses `{"users": [...]}`.
pub fn parse_json(body: &[u8]) -> Result<Vec<ImportRecord>, Malformed> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        let cause = text.rfind(" at line ").map_or(text.as_str(), |i| &text[..i]);
        Malformed(format!("invalid JSON at line {}, column {}: {cause}", e.line(), e.column()))
    })?;
    let users = match doc.get("users") {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(Malformed("field \"users\" must be a list of user objects".into())),
        None => return Err(Malformed("field \"users\" is missing; send {\"users\": [...]}".into())),
    };
    Ok(users.iter().enumerate().map(|(index, item)| json_record(index, item)).collect())
}

fn json_record(index: usize, item: &Value) -> ImportRecord {
    let mut r = ImportRecord { index, ..ImportRecord::default() };
    let Some(obj) = item.as_object() else {
        r.problem = Some("a user must be an object".into());
        return r;
    };
    for (key, value) in obj {
        if let Err(reason) = r.set(key, value) {
            r.problem.get_or_insert(reason);
        }
    }
    r
}

/// Parses CSV with a header row that has `name` and `employee_id`.
pub fn parse_csv(body: &[u8]) -> Result<Vec<ImportRecord>, Malformed> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(body);
    let headers = reader.headers().map_err(csv_error)?.clone();
    for required in ["name", "employee_id"] {
        if !headers.iter().any(|h| h == required) {
            return Err(Malformed(format!(
                "CSV needs a header row with \"name\" and \"employee_id\"; \"{required}\" is missing"
            )));
        }
    }
    let mut out = Vec::new();
    for (index, row) in reader.records().enumerate() {
        let row = row.map_err(csv_error)?;
        let mut r = ImportRecord { index, ..ImportRecord::default() };
        for (key, cell) in headers.iter().zip(row.iter()) {
            if let Err(reason) = r.set(key, &Value::String(unescape_formula(cell).to_string())) {
                r.problem.get_or_insert(reason);
            }
        }
        out.push(r);
    }
    Ok(out)
}

fn csv_error(e: csv::Error) -> Malformed {
    let line = e.position().map(|p| format!("line {}: ", p.line())).unwrap_or_default();
    Malformed(format!("invalid CSV: {line}{e}"))
}

impl ImportRecord {
    fn set(&mut self, key: &str, value: &Value) -> Result<(), String> {
        if READ_ONLY.contains(&key) {
            return Ok(());
        }
        let slot = match key {
            "name" => &mut self.name,
            "employee_id" => &mut self.employee_id,
            "username" => &mut self.username,
            "email" => &mut self.email,
            "phone" => &mut self.phone,
            "job" => &mut self.job,
            _ => {
                if !matches!(value, Value::Null) && value.as_str().is_none_or(|s| !s.trim().is_empty()) {
                    self.extra.insert(key.to_string(), value.clone());
                }
                return Ok(());
            }
        };
        *slot = text(value, key)?;
        Ok(())
    }
}

pub use crate::user::{full_name, split_name};

/// `first.last` folded to lower-case ASCII letters and digits.
pub fn username_base(first: &str, last: Option<&str>) -> String {
    let fold = |s: &str| -> String {
        deunicode::deunicode(s).chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
    };
    let first = fold(first);
    match last.map(fold).filter(|l| !l.is_empty()) {
        Some(last) if !first.is_empty() => format!("{first}.{last}"),
        Some(last) => last,
        None if first.is_empty() => "user".into(),
        None => first,
    }
}

/// What the request's own earlier writes claimed: emails and (ASCII-lower-cased) usernames.
#[derive(Default)]
struct Claims {
    emails: HashSet<String>,
    usernames: HashSet<String>,
}

/// Decides what an import writes, asking `store` about the users it names.
/// The store applies the writes in one transaction.
pub fn plan_import<L: ImportLookup>(
    records: &[ImportRecord],
    store: &mut L,
) -> Result<(Vec<Write>, ImportReply), L::Error> {
    let mut writes = Vec::new();
    let mut reply = ImportReply::default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut claims = Claims::default();
    for r in records {
        match plan_record(r, store, &mut seen, &claims)? {
            Ok(None) => {}
            Ok(Some((write, listed))) => {
                if let Some(u) = &write.fields.username {
                    claims.usernames.insert(u.to_ascii_lowercase());
                }
                if let Some(e) = &write.fields.email {
                    claims.emails.insert(e.clone());
                }
                writes.push(write);
                reply.updated_users.push(listed);
            }
            Err(error) => reply.errors.push(ImportError { index: r.index, employee_id: r.employee_id.clone(), error }),
        }
    }
    Ok((writes, reply))
}

/// One record's write (`None`: nothing changes), or why it is refused.
type Planned = Result<Option<(Write, UpdatedUser)>, String>;

fn plan_record<L: ImportLookup>(
    r: &ImportRecord,
    store: &mut L,
    seen: &mut HashMap<String, usize>,
    claims: &Claims,
) -> Result<Planned, L::Error> {
    macro_rules! refuse {
        ($($why:tt)*) => { return Ok(Err(format!($($why)*))) };
    }
    if let Some(problem) = &r.problem {
        refuse!("{problem}");
    }
    let Some(ext) = r.employee_id.clone() else { refuse!("employee_id is required") };
    let Some(name) = r.name.clone() else { refuse!("name is required") };
    if let Some(first) = seen.insert(ext.clone(), r.index) {
        seen.insert(ext.clone(), first);
        refuse!("employee_id {ext} is also used by record {first} of this request");
    }
    let email = match r.email.as_deref().map(Email::parse).transpose() {
        Ok(email) => email,
        Err(why) => refuse!("{why}"),
    };
    let current = store.by_external_id(&ext)?;
    let id = current.as_ref().map(|c| c.id);
    if let Some(e) = &email {
        // An email an earlier record of this request gave a user is taken too.
        let holder = store.email_holder(e)?;
        if holder.is_some_and(|h| Some(h) != id) || claims.emails.contains(e.as_str()) {
            refuse!("email {e} already belongs to another user");
        }
    }
    let taken = |store: &mut L, u: &str| -> Result<bool, L::Error> {
        Ok(claims.usernames.contains(&u.to_ascii_lowercase()) || store.username_taken(u, id)?)
    };
    let c = current.as_ref();
    // What the request leaves out keeps the user's value.
    let mut fields = c.map(|c| c.fields.clone()).unwrap_or_default();
    let (first, last) = match c {
        Some(c) if full_name(c.fields.first_name.as_deref(), c.fields.last_name.as_deref()) == name.trim() => {
            (c.fields.first_name.clone(), c.fields.last_name.clone())
        }
        _ => {
            let (f, l) = split_name(&name);
            (Some(f), l)
        }
    };
    (fields.first_name, fields.last_name) = (first, last);
    fields.external_id = Some(ext.clone());
    for (slot, new) in [
        (&mut fields.email, email.map(Email::into_string)),
        (&mut fields.username, r.username.clone()),
        (&mut fields.phone, r.phone.clone()),
        (&mut fields.job, r.job.clone()),
    ] {
        if new.is_some() {
            *slot = new;
        }
    }
    let mut extra = c.map(|c| c.extra.clone()).unwrap_or_default();
    extra.extend(r.extra.clone());
    let mut write = Write { id, fields, extra };
    let listed = |action, username| UpdatedUser { name: name.trim().to_string(), employee_id: ext, action, username };
    if let Some(c) = c {
        if let Some(u) = &r.username
            && c.fields.username.as_deref() != Some(u.as_str())
            && taken(store, u)?
        {
            refuse!("username {u} is taken");
        }
        if write.fields == c.fields && write.extra == c.extra {
            return Ok(Ok(None));
        }
        return Ok(Ok(Some((write, listed("update", None)))));
    }
    let username = match &r.username {
        Some(u) if taken(store, u)? => refuse!("username {u} is taken"),
        Some(u) => u.clone(),
        None => {
            let base =
                username_base(write.fields.first_name.as_deref().unwrap_or(""), write.fields.last_name.as_deref());
            let mut candidate = base.clone();
            let mut n = 1;
            while taken(store, &candidate)? {
                n += 1;
                candidate = format!("{base}{n}");
            }
            candidate
        }
    };
    write.fields.username = Some(username.clone());
    Ok(Ok(Some((write, listed("create", Some(username))))))
}

/// Users held in memory, answering as the store would (for the unit tests).
#[cfg(test)]
impl ImportLookup for &[crate::user::StoredUser] {
    type Error = std::convert::Infallible;

    fn by_external_id(&mut self, ext: &str) -> Result<Option<crate::user::StoredUser>, Self::Error> {
        Ok(self.iter().find(|u| u.fields.external_id.as_deref() == Some(ext)).cloned())
    }

    fn email_holder(&mut self, email: &str) -> Result<Option<i64>, Self::Error> {
        Ok(self.iter().find(|u| u.fields.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(email))).map(|u| u.id))
    }

    fn username_taken(&mut self, username: &str, except: Option<i64>) -> Result<bool, Self::Error> {
        Ok(self.iter().any(|u| {
            Some(u.id) != except && u.fields.username.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(username))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::{Fields, StoredUser};
    use serde_json::json;

    #[test]
    fn usernames_fold_accents_and_drop_the_rest() {
        assert_eq!(username_base("Mary", Some("Ann-Smith")), "mary.annsmith");
        assert_eq!(username_base("Kai", Some("Müller")), "kai.muller");
        assert_eq!(username_base("Seth", None), "seth");
    }

    fn user(id: i64, ext: &str, email: &str, username: &str) -> StoredUser {
        let fields = Fields {
            external_id: Some(ext.into()),
            email: Some(email.into()),
            first_name: Some("F".into()),
            username: Some(username.into()),
            ..Fields::default()
        };
        StoredUser { id, fields, active: true, extra: Map::new(), owner: None }
    }

    fn import(existing: &[StoredUser], users: Value) -> (Vec<Write>, Value) {
        let records = parse_json(json!({ "users": users }).to_string().as_bytes()).unwrap();
        let (writes, reply) = plan_import(&records, &mut &existing[..]).unwrap();
        (writes, serde_json::to_value(reply).unwrap())
    }

    #[test]
    fn a_made_username_skips_those_taken_in_the_store_and_earlier_in_the_request() {
        let existing = [user(1, "A", "a@x.io", "Seth.Jones"), user(2, "B", "b@x.io", "seth.jones2")];
        let (writes, _) = import(
            &existing,
            json!([{"name": "Seth Jones", "employee_id": "N1"}, {"name": "Seth Jones", "employee_id": "N2"}]),
        );
        let names: Vec<_> = writes.iter().map(|w| w.fields.username.as_deref().unwrap()).collect();
        assert_eq!(names, ["seth.jones3", "seth.jones4"]);
    }

    #[test]
    fn an_email_or_username_an_earlier_record_claimed_is_taken() {
        let existing = [user(1, "A", "a@x.io", "ann"), user(2, "B", "b@x.io", "bob")];
        let (writes, reply) = import(
            &existing,
            json!([
                {"name": "F", "employee_id": "A", "email": "new@x.io", "username": "Ann"},
                {"name": "New One", "employee_id": "N1", "email": "NEW@x.io"},
                {"name": "F", "employee_id": "B", "username": "ANN"},
                {"name": "New Two", "employee_id": "N2", "email": "b@x.io"}
            ]),
        );
        assert_eq!(writes.len(), 1, "only user A changes (its own username's case may change): {reply}");
        let errors: Vec<&str> =
            reply["errors"].as_array().unwrap().iter().map(|e| e["error"].as_str().unwrap()).collect();
        assert_eq!(
            errors,
            [
                "email new@x.io already belongs to another user",
                "username ANN is taken",
                "email b@x.io already belongs to another user"
            ]
        );
    }

    #[test]
    fn names_split_at_the_first_space() {
        assert_eq!(split_name("Mary Ann Smith"), ("Mary".into(), Some("Ann Smith".into())));
        assert_eq!(split_name("Cher"), ("Cher".into(), None));
        assert_eq!(full_name(Some("Cher"), None), "Cher");
    }

    #[test]
    fn the_seed_example_creates_and_updates() {
        let fields = Fields {
            external_id: Some("X-13892".into()),
            email: Some("bjones@goodbuilders.biz".into()),
            first_name: Some("Bob".into()),
            last_name: Some("Jones".into()),
            username: Some("bob.jones".into()),
            phone: Some("360-555-0000".into()),
            job: Some("South Bridge Project".into()),
            ..Fields::default()
        };
        let existing = [StoredUser { id: 1, fields, active: true, extra: Map::new(), owner: None }];
        let body = json!({"users": [
            {"email": "bjones@goodbuilders.biz", "employee_id": "X-13892", "phone": "360-555-1212", "name": "Bob Jones", "job": "South Bridge Project"},
            {"name": "Seth Jones", "employee_id": "Z-8274", "job": "Fortune Tower 2 Project"},
            {"name": "No Id"}
        ]});
        let records = parse_json(body.to_string().as_bytes()).unwrap();
        let (writes, reply) = plan_import(&records, &mut &existing[..]).unwrap();
        assert_eq!(writes.len(), 2);
        assert_eq!(
            serde_json::to_value(&reply).unwrap(),
            json!({
                "errors": [{"index": 2, "employee_id": null, "error": "employee_id is required"}],
                "updated_users": [
                    {"name": "Bob Jones", "employee_id": "X-13892", "action": "update"},
                    {"name": "Seth Jones", "employee_id": "Z-8274", "action": "create", "username": "seth.jones"}
                ]
            })
        );
    }

    #[test]
    fn malformed_bodies_name_the_line_or_field() {
        assert!(parse_json(b"{\"users\": [\n{,}]}").unwrap_err().0.contains("line 2"));
        assert!(parse_json(b"{\"people\": []}").unwrap_err().0.contains("\"users\" is missing"));
        assert!(parse_csv(b"name,email\nA,a@x.io\n").unwrap_err().0.contains("employee_id"));
        assert!(parse_csv(b"name,employee_id\nA,1\nB,2,extra\n").unwrap_err().0.contains("line 3"));
    }

    #[test]
    fn csv_extra_columns_go_to_extra_fields_and_empty_cells_keep_values() {
        let records = parse_csv(b"name,employee_id,phone,badge\nAnn Lee,E1,,B-7\n").unwrap();
        assert_eq!(records[0].phone, None);
        assert_eq!(records[0].extra, json!({"badge": "B-7"}).as_object().unwrap().clone());
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::*;
        use crate::testing::cases;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(cases(512)))]

            /// Any bytes are parsed or refused as malformed; never a panic.
            #[test]
            fn import_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = parse_json(&bytes);
                let _ = parse_csv(&bytes);
            }

            /// Users with fields of any JSON type: each record is read or carries a problem.
            #[test]
            fn import_records_of_any_shape_never_panic(
                fields in proptest::collection::vec(
                    (proptest::sample::select(vec!["name", "employee_id", "email", "phone", "job", "username", "x"]),
                     prop_oneof![Just(json!(null)), Just(json!(true)), Just(json!(7)), Just(json!([1])),
                                 Just(json!({"a": 1})), "[ -~é]{0,12}".prop_map(Value::String)]),
                    0..6),
            ) {
                let user: serde_json::Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                let body = json!({"users": [user]}).to_string();
                prop_assert_eq!(parse_json(body.as_bytes()).map(|r| r.len()).ok(), Some(1));
            }
        }
    }
}
