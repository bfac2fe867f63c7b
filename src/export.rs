//! Exports as seed 000 shapes them, for the CLI and the API alike: a chunk
//! at a time, `{"users": [...]}` or CSV with a header row.

use serde::Serialize;

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

/// Builds an export a chunk at a time: `{"users": [...]}` or CSV with a header row.
pub struct ExportWriter {
    csv: Option<csv::Writer<Vec<u8>>>,
    json: Vec<u8>,
    first: bool,
}

/// Bytes gathered before a chunk is handed on.
const CHUNK: usize = 64 * 1024;

impl ExportWriter {
    pub fn new(csv: bool) -> Self {
        if csv {
            let mut w = csv::Writer::from_writer(Vec::with_capacity(CHUNK));
            let _ = w.write_record(EXPORT_COLUMNS);
            Self { csv: Some(w), json: Vec::new(), first: true }
        } else {
            Self { csv: None, json: b"{\"users\": [".to_vec(), first: true }
        }
    }

    pub fn push(&mut self, row: &ExportRow) {
        match &mut self.csv {
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
