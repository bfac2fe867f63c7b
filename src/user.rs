//! What a user is, independent of where it is stored or fetched: the text
//! fields a mapping can fill, and the one email rule (`Email`: trimmed,
//! lower-cased, one `@`, a dot in the domain, no spaces, checked once). `Field` names a user's columns;
//! manifests, mapping, rules and store all speak of fields through it.

use serde_json::{Map, Value};

/// The user columns a mapping can fill directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Email,
    FirstName,
    LastName,
    ExternalId,
    Username,
    Phone,
    Job,
    Department,
    Active,
}

impl Field {
    /// Every field; the text columns first, in the store's order, then `active`.
    pub const ALL: [Field; 9] = [
        Field::Email,
        Field::FirstName,
        Field::LastName,
        Field::ExternalId,
        Field::Username,
        Field::Phone,
        Field::Job,
        Field::Department,
        Field::Active,
    ];

    pub const fn column(self) -> &'static str {
        match self {
            Field::Email => "email",
            Field::FirstName => "first_name",
            Field::LastName => "last_name",
            Field::ExternalId => "external_id",
            Field::Username => "username",
            Field::Phone => "phone",
            Field::Job => "job",
            Field::Department => "department",
            Field::Active => "active",
        }
    }
}

/// The text columns of a user (`active` and `extra_fields` live beside them).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Fields {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub external_id: Option<String>,
    pub username: Option<String>,
    pub phone: Option<String>,
    pub job: Option<String>,
    pub department: Option<String>,
}

/// The text columns in the order the store writes them: every field but `active`.
pub const TEXT_COLUMNS: [Field; 8] = {
    let mut out = [Field::Email; 8];
    let mut i = 0;
    while i < 8 {
        out[i] = Field::ALL[i];
        i += 1;
    }
    out
};

impl Fields {
    pub fn get(&self, c: Field) -> Option<&str> {
        self.slot(c).and_then(|s| s.as_deref())
    }

    pub fn set(&mut self, c: Field, value: Option<String>) {
        if let Some(slot) = self.slot_mut(c) {
            *slot = value;
        }
    }

    fn slot(&self, c: Field) -> Option<&Option<String>> {
        Some(match c {
            Field::Email => &self.email,
            Field::FirstName => &self.first_name,
            Field::LastName => &self.last_name,
            Field::ExternalId => &self.external_id,
            Field::Username => &self.username,
            Field::Phone => &self.phone,
            Field::Job => &self.job,
            Field::Department => &self.department,
            Field::Active => return None,
        })
    }

    fn slot_mut(&mut self, c: Field) -> Option<&mut Option<String>> {
        Some(match c {
            Field::Email => &mut self.email,
            Field::FirstName => &mut self.first_name,
            Field::LastName => &mut self.last_name,
            Field::ExternalId => &mut self.external_id,
            Field::Username => &mut self.username,
            Field::Phone => &mut self.phone,
            Field::Job => &mut self.job,
            Field::Department => &mut self.department,
            Field::Active => return None,
        })
    }
}

/// A user as the store holds it, with the integration that owns it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUser {
    pub id: i64,
    pub fields: Fields,
    pub active: bool,
    pub extra: Map<String, Value>,
    pub owner: Option<String>,
}

/// `first last`, or just `first`.
pub fn full_name(first: Option<&str>, last: Option<&str>) -> String {
    match (first.unwrap_or(""), last.unwrap_or("")) {
        (f, "") => f.to_string(),
        ("", l) => l.to_string(),
        (f, l) => format!("{f} {l}"),
    }
}

/// Splits a full name at its first space into first and last name (as
/// import and a `name` mapping both do).
pub fn split_name(name: &str) -> (String, Option<String>) {
    match name.trim().split_once(' ') {
        Some((first, last)) if !last.trim().is_empty() => (first.to_string(), Some(last.trim().to_string())),
        _ => (name.trim().to_string(), None),
    }
}

/// An email address as rosterd keeps it: trimmed, lower-cased and checked
/// (a local part, one `@`, a dot inside the domain, no spaces), once; code
/// that holds an `Email` never checks or folds it again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Normalises `raw` (trim, lower-case) and checks its shape.
    pub fn parse(raw: &str) -> Result<Email, String> {
        Email::check(raw).map(|e| Email(e.into_owned()))
    }

    /// `parse` for a hot path (a record's email while a page is read): the
    /// same rule, borrowing `raw` when it is already trimmed lower-case ASCII.
    pub fn check(raw: &str) -> Result<std::borrow::Cow<'_, str>, String> {
        parse_email_cow(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::ops::Deref for Email {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Email {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<String> for Email {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

/// The email rule, borrowing `raw` when it is already trimmed to lower-case ASCII.
fn parse_email_cow(raw: &str) -> Result<std::borrow::Cow<'_, str>, String> {
    let trimmed = raw.trim();
    let email = if trimmed.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        std::borrow::Cow::Borrowed(trimmed)
    } else {
        std::borrow::Cow::Owned(trimmed.to_lowercase())
    };
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.contains(char::is_whitespace)
        }
        None => false,
    };
    if valid { Ok(email) } else { Err(format!("invalid email \"{trimmed}\"")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(Email::parse("  Ann.Lee@Acme.COM ").unwrap(), *"ann.lee@acme.com");
        assert!(matches!(Email::check("ann@acme.com"), Ok(std::borrow::Cow::Borrowed(_))), "normal form is borrowed");
        for bad in ["", "ann", "@acme.com", "ann@acme", "a b@acme.com", "a@b@acme.com", "ann@.com"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
