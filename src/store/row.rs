//! A user row read back: the one decoder of the `users` table's columns.
//! Every query that reads users selects `user_columns!()` (its owner, or
//! NULL, right after when it builds a `StoredUser`) and decodes them here, so
//! the columns are listed once and a row becomes a user in one place.

use rusqlite::Row;

use crate::user::{Fields, StoredUser};

/// `u.id`, the text columns in `TEXT_COLUMNS`' order, `u.extra_fields`,
/// `u.active`: what `stored_user` reads (with the owner after them).
macro_rules! user_columns {
    () => {
        concat!("u.id, ", crate::store::row::text_columns!(), ", u.extra_fields, u.active")
    };
}
pub(super) use user_columns;

/// The text columns, in `TEXT_COLUMNS`' order: what `fields_at` reads.
macro_rules! text_columns {
    () => {
        "u.email, u.first_name, u.last_name, u.external_id, u.username, u.phone, u.job, u.department"
    };
}
pub(super) use text_columns;

/// How many columns `user_columns!()` names.
pub(super) const USER_COLUMNS: usize = 11;

/// The text fields, from the 8 columns starting at `first` (in `TEXT_COLUMNS`' order).
pub(super) fn fields_at(r: &Row<'_>, first: usize) -> rusqlite::Result<Fields> {
    Ok(Fields {
        email: r.get(first)?,
        first_name: r.get(first + 1)?,
        last_name: r.get(first + 2)?,
        external_id: r.get(first + 3)?,
        username: r.get(first + 4)?,
        phone: r.get(first + 5)?,
        job: r.get(first + 6)?,
        department: r.get(first + 7)?,
    })
}

/// A user from `user_columns!()` followed by its owner column (or NULL).
pub(super) fn stored_user(r: &Row<'_>) -> rusqlite::Result<StoredUser> {
    let extra: String = r.get(9)?;
    Ok(StoredUser {
        id: r.get(0)?,
        fields: fields_at(r, 1)?,
        extra: super::extra_map(&extra),
        active: r.get::<_, i64>(10)? != 0,
        owner: r.get(USER_COLUMNS)?,
    })
}
