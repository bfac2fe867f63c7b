//! How commands print: a run's report, runs and their details, users as a
//! table or CSV cells, tables with fitted columns, and text made safe for a
//! terminal (`Printable`). JSON goes out as serde writes it.

use std::io::Write;

use crate::error::Error;
use crate::outcome::RunStatus;
use crate::run::RunReport;
use crate::store::{RunRow, Store, UserRow};
use crate::user::TEXT_COLUMNS;

use super::SHOWN_SKIPS;
use crate::port::{Outbound, Runs};

pub(super) fn write_report(out: &mut impl Write, r: &RunReport) -> Result<(), Error> {
    let secs = r.duration_ms as f64 / 1000.0;
    let pages = if r.counts.pages == 1 { "1 page".to_string() } else { format!("{} pages", r.counts.pages) };
    writeln!(out, "{} ({}): {} in {secs:.1} s, run {}", r.integration, r.action, r.status, r.run_id)?;
    if r.status == RunStatus::Skipped {
        return Ok(());
    }
    writeln!(out, "  fetched {} records in {pages}", r.counts.fetched)?;
    for w in &r.warnings {
        writeln!(out, "  warning: {w}")?;
    }
    if let Some(push) = &r.push {
        write_push(out, r, push)?;
        if let Some(notice) = &r.notice {
            writeln!(out, "  {notice}")?;
        }
        return Ok(());
    }
    if let Some(plan) = &r.plan {
        writeln!(out, "  dry run: nothing was written to users")?;
        if !r.fields.is_empty() {
            writeln!(out, "  mapped fields (records that had a value, of {}):", r.counts.fetched)?;
            for f in &r.fields {
                writeln!(out, "    {:<16} {:>9}  from \"{}\"", f.field, f.records, f.path)?;
            }
        }
        if let Some(sample) = &r.sample {
            let mut shown: Vec<String> = crate::user::TEXT_COLUMNS
                .iter()
                .filter_map(|c| sample.fields.get(*c).map(|v| format!("{}: {v}", c.column())))
                .collect();
            if let Some(active) = sample.active {
                shown.push(format!("active: {active}"));
            }
            shown.extend(sample.extra.iter().map(|(k, v)| format!("extra_fields.{k}: {v}")));
            if let Some(p) = &sample.problem {
                shown.push(format!("skipped: {p}"));
            }
            writeln!(out, "  first record, mapped: {}", shown.join(", "))?;
        }
        let sample = 10;
        let emails = |f: &crate::user::Fields| f.email.clone().or_else(|| f.external_id.clone()).unwrap_or_default();
        writeln!(out, "  would create {}", plan.n_created)?;
        for c in plan.creates.iter().take(sample) {
            let name = [c.fields.first_name.as_deref(), c.fields.last_name.as_deref()]
                .iter()
                .flatten()
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            writeln!(out, "    + {}  {name}", emails(&c.fields))?;
        }
        more(out, plan.n_created, sample)?;
        writeln!(out, "  would update {}", plan.n_changed())?;
        for u in plan.updates.iter().take(sample) {
            let changes: Vec<String> = u
                .changes
                .iter()
                .map(|c| {
                    format!("{}: {} → {}", c.field, c.old.as_deref().unwrap_or("-"), c.new.as_deref().unwrap_or("-"))
                })
                .collect();
            writeln!(out, "    ~ {}  {}", u.label, changes.join(", "))?;
        }
        for c in plan.cleared_emails.iter().take(sample) {
            writeln!(out, "    ~ {}  email cleared (auto_clear_email)", c.label)?;
        }
        more(out, plan.n_updated, sample)?;
        writeln!(out, "  would deactivate {}", plan.n_deactivated)?;
        for d in plan.deactivations.iter().take(sample) {
            writeln!(out, "    - {}", d.label)?;
        }
        more(out, plan.n_deactivated, sample)?;
    } else if r.status.commits() {
        writeln!(
            out,
            "  created {}, updated {}, deactivated {}, unchanged {}, skipped {}",
            r.counts.created, r.counts.updated, r.counts.deactivated, r.unchanged, r.counts.skipped
        )?;
    } else {
        // Held, or failed once planned: the counts are what it would have applied.
        writeln!(
            out,
            "  nothing applied; it would create {}, update {}, deactivate {}, leave {} unchanged, skip {}",
            r.counts.created, r.counts.updated, r.counts.deactivated, r.unchanged, r.counts.skipped
        )?;
    }
    if r.counts.skipped > 0 {
        writeln!(out, "  skipped records:")?;
        for s in r.skips.iter().take(10) {
            writeln!(out, "    record {} ({}): {}", s.record, s.key.as_deref().unwrap_or("-"), s.reason)?;
        }
        if r.counts.skipped > 10 {
            writeln!(out, "    ... {} more: rosterd history {}", r.counts.skipped - 10, r.integration)?;
        }
    }
    if let Some(notice) = &r.notice {
        writeln!(out, "  {notice}")?;
    }
    Ok(())
}

/// A push's report: what it would send (a dry run lists every request) or what it sent.
fn write_push(out: &mut impl Write, r: &RunReport, p: &crate::run::PushReport) -> Result<(), Error> {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    let count = |kind: &str| p.requests.get(kind).copied().unwrap_or_default();
    if r.status == RunStatus::DryRun {
        writeln!(out, "  dry run: only the listing was sent ({} target users with an external id)", p.target_users)?;
        if p.requests.contains_key("bulk") {
            return Ok(());
        }
        writeln!(out, "  would create {}", count("create").planned)?;
        for c in &p.creates {
            writeln!(
                out,
                "    + {}  {}  {} {}",
                text(&c["external_id"]),
                text(&c["email"]),
                text(&c["first_name"]),
                text(&c["last_name"])
            )?;
        }
        writeln!(out, "  would update {}", count("update").planned)?;
        for u in &p.updates {
            let changes: Vec<String> =
                u.changes.iter().map(|c| format!("{}: {} → {}", c.field, text(&c.target), text(&c.local))).collect();
            writeln!(out, "    ~ {}  {}", u.external_id, changes.join(", "))?;
        }
        writeln!(out, "  would remove {}", count("remove").planned)?;
        for d in &p.removes {
            writeln!(
                out,
                "    - {}  {}  target {}",
                text(&d["external_id"]),
                text(&d["email"]),
                text(&d["target_id"])
            )?;
        }
        return Ok(());
    }
    let line: Vec<String> = p
        .requests
        .iter()
        .filter(|(_, c)| c.planned > 0 || c.sent > 0)
        .map(|(k, c)| {
            format!(
                "{k} {} of {}{}",
                c.sent - c.failed,
                c.planned.max(c.sent),
                if c.failed > 0 { format!(" ({} failed)", c.failed) } else { String::new() }
            )
        })
        .collect();
    let line = if line.is_empty() { "nothing to send".to_string() } else { line.join(", ") };
    writeln!(out, "  pushed: {line}; unchanged {}", r.unchanged)?;
    Ok(())
}

fn more(out: &mut impl Write, total: u64, shown: usize) -> Result<(), Error> {
    if total > shown as u64 {
        writeln!(out, "    ... and {} more", total - shown as u64)?;
    }
    Ok(())
}

pub(super) fn table_cells(u: &UserRow) -> [String; 9] {
    let [id, email, first, last, external_id, _, _, _, department, _, _, source, _, updated_at] = csv_cells(u);
    let active = if u.active == 1 { "yes" } else { "no" };
    [id, email, first, last, external_id, department, active.into(), source, updated_at]
        .map(|cell| crate::problem::printable(&cell).into_owned())
}

/// The columns `users` prints: the id, each text field, then the rest.
pub(super) const USER_COLUMNS: [&str; 14] = {
    let mut out = [""; 14];
    out[0] = "id";
    let mut i = 0;
    while i < TEXT_COLUMNS.len() {
        out[i + 1] = TEXT_COLUMNS[i].column();
        i += 1;
    }
    let rest = ["extra_fields", "active", "source", "created_at", "updated_at"];
    let mut j = 0;
    while j < rest.len() {
        out[TEXT_COLUMNS.len() + 1 + j] = rest[j];
        j += 1;
    }
    out
};

pub(super) fn csv_cells(u: &UserRow) -> [String; 14] {
    let mut cells: [String; 14] = Default::default();
    cells[0] = u.id.to_string();
    for (i, c) in TEXT_COLUMNS.iter().enumerate() {
        cells[i + 1] = u.fields.get(*c).unwrap_or_default().to_string();
    }
    let rest = [
        u.extra_fields.to_string(),
        u.active.to_string(),
        u.source.clone().unwrap_or_default(),
        u.created_at.clone(),
        u.updated_at.clone(),
    ];
    for (i, cell) in rest.into_iter().enumerate() {
        cells[TEXT_COLUMNS.len() + 1 + i] = cell;
    }
    cells
}

/// A run's requests and its first skipped records, under its row.
pub(super) fn write_run_details(out: &mut impl Write, store: &Store, run_id: i64) -> Result<(), Error> {
    let requests = store.run_requests(run_id)?;
    if !requests.is_empty() {
        writeln!(out, "\nrequests of run {run_id}:")?;
        for r in &requests {
            let status = r.status.map_or("-".into(), |s| s.to_string());
            let bytes = r.bytes.map_or("-".into(), |b| b.to_string());
            write!(
                out,
                "  {:<6} {:<5} {status:>3} {bytes:>9} B {:>6} ms  try {}  {}",
                r.step, r.method, r.millis, r.attempt, r.url
            )?;
            match &r.error {
                Some(e) => writeln!(out, "  ({e})")?,
                None => writeln!(out)?,
            }
        }
    }
    let pushed = store.push_rows(run_id)?;
    if !pushed.is_empty() {
        let failed = pushed.iter().filter(|p| p.error.is_some()).count();
        writeln!(out, "\npush requests of run {run_id} ({} sent, {failed} failed):", pushed.len())?;
        for p in &pushed {
            let status = p.status.map_or("-".into(), |s| s.to_string());
            write!(
                out,
                "  {:<6} {status:>3}  {:<20} target {}",
                p.kind,
                p.external_id.as_deref().unwrap_or("-"),
                p.target_id.as_deref().unwrap_or("-")
            )?;
            match &p.error {
                Some(e) => writeln!(out, "  ({e})")?,
                None => writeln!(out)?,
            }
        }
    }
    let skips = store.run_skips(run_id, SHOWN_SKIPS)?;
    if !skips.is_empty() {
        writeln!(out, "\nskipped records of run {run_id} (first {}):", skips.len())?;
        for s in &skips {
            writeln!(out, "  record {:>6}  {:<30}  {}", s.record, s.key.as_deref().unwrap_or("-"), s.reason)?;
        }
    }
    Ok(())
}

pub(super) fn write_runs(out: &mut impl Write, runs: &[RunRow]) -> Result<(), Error> {
    let header = [
        "id",
        "integration",
        "action",
        "trigger",
        "status",
        "started_at",
        "fetched",
        "created",
        "updated",
        "deactivated",
        "skipped",
        "error",
    ];
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.integration.clone(),
                r.action.clone(),
                r.trigger.clone(),
                r.status.to_string(),
                r.started_at.clone(),
                r.counts.fetched.to_string(),
                r.counts.created.to_string(),
                r.counts.updated.to_string(),
                r.counts.deactivated.to_string(),
                r.counts.skipped.to_string(),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    write_table(out, &header, &rows)
}

/// Column widths for a table: the widest cell of each column seen so far.
pub(super) struct Table {
    widths: Vec<usize>,
}

impl Table {
    pub(super) fn new(header: &[&str]) -> Table {
        Table { widths: header.iter().map(|h| h.chars().count()).collect() }
    }

    pub(super) fn fit<S: AsRef<str>>(&mut self, row: &[S]) {
        for (w, cell) in self.widths.iter_mut().zip(row) {
            *w = (*w).max(cell.as_ref().chars().count());
        }
    }

    /// One line: every cell but the last padded to its column's width.
    pub(super) fn line<S: AsRef<str>>(&self, cells: &[S]) -> String {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&self.widths).enumerate() {
            if i == last {
                s.push_str(cell.as_ref());
            } else {
                s.push_str(&format!("{:<w$}  ", cell.as_ref(), w = *w));
            }
        }
        s.trim_end().to_string()
    }
}

fn write_table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> Result<(), Error> {
    let mut table = Table::new(header);
    for row in rows {
        table.fit(row);
    }
    writeln!(out, "{}", table.line(header))?;
    for row in rows {
        writeln!(out, "{}", table.line(row))?;
    }
    Ok(())
}

/// Text output for a terminal: control characters in what it writes (from a
/// source, a file name) are shown escaped (`problem::printable`).
pub(super) struct Printable<W: Write>(pub(super) W);

impl<W: Write> Write for Printable<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(crate::problem::printable(text).as_bytes())?,
            Err(_) => self.0.write_all(crate::problem::printable(&String::from_utf8_lossy(buf)).as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
