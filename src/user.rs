//! What a user is, independent of where it is stored or fetched: the text
//! fields a mapping can fill, and the one email rule (trimmed, lower-cased,
//! one `@`, a dot in the domain, no spaces).

use serde_json::{Map, Value};

use crate::manifest::Core;

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

/// The text columns in the order the store writes them.
pub const TEXT_COLUMNS: [Core; 8] = [
    Core::Email,
    Core::FirstName,
    Core::LastName,
    Core::ExternalId,
    Core::Username,
    Core::Phone,
    Core::Job,
    Core::Department,
];

impl Fields {
    pub fn get(&self, c: Core) -> Option<&str> {
        self.slot(c).and_then(|s| s.as_deref())
    }

    pub fn set(&mut self, c: Core, value: Option<String>) {
        if let Some(slot) = self.slot_mut(c) {
            *slot = value;
        }
    }

    fn slot(&self, c: Core) -> Option<&Option<String>> {
        Some(match c {
            Core::Email => &self.email,
            Core::FirstName => &self.first_name,
            Core::LastName => &self.last_name,
            Core::ExternalId => &self.external_id,
            Core::Username => &self.username,
            Core::Phone => &self.phone,
            Core::Job => &self.job,
            Core::Department => &self.department,
            Core::Active => return None,
        })
    }

    fn slot_mut(&mut self, c: Core) -> Option<&mut Option<String>> {
        Some(match c {
            Core::Email => &mut self.email,
            Core::FirstName => &mut self.first_name,
            Core::LastName => &mut self.last_name,
            Core::ExternalId => &mut self.external_id,
            Core::Username => &mut self.username,
            Core::Phone => &mut self.phone,
            Core::Job => &mut self.job,
            Core::Department => &mut self.department,
            Core::Active => return None,
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

/// Normalises an email (trim, lower-case) and checks its shape.
pub fn parse_email(raw: &str) -> Result<String, String> {
    parse_email_cow(raw).map(std::borrow::Cow::into_owned)
}

/// `parse_email` that borrows `raw` when it is already trimmed to lower-case ASCII.
pub fn parse_email_cow(raw: &str) -> Result<std::borrow::Cow<'_, str>, String> {
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
        assert_eq!(parse_email("  Ann.Lee@Acme.COM ").unwrap(), "ann.lee@acme.com");
        for bad in ["", "ann", "@acme.com", "ann@acme", "a b@acme.com", "a@b@acme.com", "ann@.com"] {
            assert!(parse_email(bad).is_err(), "{bad}");
        }
    }
}
