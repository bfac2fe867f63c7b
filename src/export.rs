//! Exports as seed 000 shapes them, for the CLI and the API alike: a chunk
//! at a time, `{"users": [...]}` or CSV with a header row.

use std::borrow::Cow;

use serde::Serialize;

use crate::user::{Fields, full_name};

/// Columns export writes, in order; import reads the same ones.
pub const EXPORT_COLUMNS: [&str; 8] =
    ["name", "employee_id", "username", "email", "phone", "job", "created_at", "updated_at"];

/// One user as export writes it.
#[derive(Debug, Clone, Serialize)]
pub struct ExportRow {
    pub name: String,
    pub employee_id: Option<String>,
    pub username: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub job: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl ExportRow {
    /// A user in seed 000's shape: `name` joins first and last name, `employee_id` is the external id.
    pub fn new(fields: Fields, created_at: String, updated_at: String) -> ExportRow {
        ExportRow {
            name: full_name(fields.first_name.as_deref(), fields.last_name.as_deref()),
            employee_id: fields.external_id,
            username: fields.username,
            email: fields.email,
            phone: fields.phone,
            job: fields.job,
            created_at,
            updated_at,
        }
    }

    pub fn csv_fields(&self) -> [&str; 8] {
        fn o(v: &Option<String>) -> &str {
            v.as_deref().unwrap_or("")
        }
        [
            &self.name,
            o(&self.employee_id),
            o(&self.username),
            o(&self.email),
            o(&self.phone),
            o(&self.job),
            &self.created_at,
            &self.updated_at,
        ]
    }
}

/// What a spreadsheet takes for the start of a formula (or of a DDE payload).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A CSV cell safe to open in a spreadsheet: one that would start a formula
/// gets a leading `'`, which spreadsheets show as text. `unescape_formula`
/// takes it off again.
pub fn escape_formula(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(FORMULA_STARTS) { Cow::Owned(format!("'{cell}")) } else { Cow::Borrowed(cell) }
}

/// A cell as it was before `escape_formula`: a `'` followed by a formula start loses the `'`.
pub fn unescape_formula(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) => rest,
        _ => cell,
    }
}

/// Builds an export a chunk at a time: `{"users": [...]}` or CSV with a header row.
pub struct ExportWriter {
    csv: Option<csv::Writer<Vec<u8>>>,
    /// CSV cells go through `escape_formula` (`[export] csv_escape_formulas`).
    escape: bool,
    json: Vec<u8>,
    first: bool,
}

/// Bytes gathered before a chunk is handed on.
const CHUNK: usize = 64 * 1024;

impl ExportWriter {
    pub fn new(csv: bool, escape: bool) -> Self {
        if csv {
            let mut w = csv::Writer::from_writer(Vec::with_capacity(CHUNK));
            let _ = w.write_record(EXPORT_COLUMNS);
            Self { csv: Some(w), escape, json: Vec::new(), first: true }
        } else {
            Self { csv: None, escape, json: b"{\"users\": [".to_vec(), first: true }
        }
    }

    pub fn push(&mut self, row: &ExportRow) {
        match &mut self.csv {
            Some(w) if self.escape => {
                let _ = w.write_record(row.csv_fields().map(escape_formula).iter().map(|c| c.as_bytes()));
            }
            Some(w) => {
                let _ = w.write_record(row.csv_fields());
            }
            None => {
                if !self.first {
                    self.json.push(b',');
                }
                self.json.push(b'\n');
                let _ = serde_json::to_writer(&mut self.json, row);
            }
        }
        self.first = false;
    }

    pub fn full(&mut self) -> bool {
        match &mut self.csv {
            Some(w) => w.get_ref().len() >= CHUNK,
            None => self.json.len() >= CHUNK,
        }
    }

    pub fn finish(&mut self) {
        if self.csv.is_none() {
            self.json.extend_from_slice(b"\n]}\n");
        }
    }

    pub fn take(&mut self) -> Vec<u8> {
        match &mut self.csv {
            Some(w) => {
                let full = std::mem::replace(w, csv::Writer::from_writer(Vec::with_capacity(CHUNK)));
                full.into_inner().unwrap_or_default()
            }
            None => std::mem::take(&mut self.json),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_escaped_and_come_back() {
        for cell in ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            let escaped = escape_formula(cell);
            assert_eq!(escaped, format!("'{cell}"));
            assert_eq!(unescape_formula(&escaped), cell);
        }
        for cell in ["Ann", "'t Hooft", "", "a=b", "'plain"] {
            assert_eq!(escape_formula(cell), cell);
            assert_eq!(unescape_formula(cell), cell, "a leading ' before text stays");
        }
    }
}
