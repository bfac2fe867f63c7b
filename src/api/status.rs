//! `GET /`: a small read-only status page, an operations view rendered on
//! the server with no script and no outside asset: every integration with
//! its schedule, next fire, last success and last runs; one that is failing
//! or held is marked in words and shows why in rosterd's own words (the
//! run's `summary`: step, host, HTTP status, which limit held), never what a
//! source or target answered, which can name people; one whose file stopped
//! validating stays, marked as running its last good version. Every time
//! says its zone (the configured one). It reads on a phone (390 px). It
//! shows no user data and no secret. `[api] status_page = false` turns it off.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono_tz::Tz;

use super::{error, with_store};
use crate::config::Config;
use crate::html::escape;
use crate::outcome::RunStatus;
use crate::port::Runs;
use crate::service::Service;
use crate::store::{RunRow, Store, StoreError};

/// Runs shown per integration.
const LAST_RUNS: u32 = 5;

pub(super) async fn page(State(service): State<Arc<Service>>) -> Response {
    let config = service.config();
    if !config.api.status_page {
        return error(StatusCode::NOT_FOUND, "the status page is off ([api] status_page = false)");
    }
    let running = service.running_names();
    let svc = service.clone();
    let loaded = move |name: &str| svc.manifest(name).is_some();
    match with_store(&service, move |store| render(store, &config, &running, &loaded)).await {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(r) => r,
    }
}

/// One integration as the page shows it.
struct Row {
    name: String,
    action: String,
    schedule: String,
    next: String,
    runs: Vec<RunRow>,
    /// When it last ran `ok`, in the page's zone.
    last_success: Option<String>,
    problems: Vec<(String, String)>,
    /// Its file no longer validates, but the daemon still runs the version it loaded.
    stale: bool,
}

fn render(
    store: &Store,
    config: &Config,
    running: &[String],
    loaded: &dyn Fn(&str) -> bool,
) -> Result<String, StoreError> {
    let files = crate::manifest::files_in(&config.integrations_dir)
        .map_err(|e| StoreError::Open { path: config.integrations_dir.clone(), reason: crate::describe_io(&e) })?;
    let tz = config.timezone;
    let now = chrono::Utc::now().with_timezone(&tz);
    let mut rows = Vec::new();
    for file in files {
        let name = crate::manifest::name_of(&file);
        let runs = store.runs(Some(&name), LAST_RUNS)?;
        let last_success = store.last_ok(&name)?.and_then(|r| r.finished_at).map(|t| local(&t, tz));
        rows.push(match crate::manifest::load(&file, config) {
            Ok(m) => Row {
                action: m.action.as_str().to_string(),
                schedule: m.schedule.as_ref().map_or("on demand".into(), |s| s.expr.clone()),
                next: m
                    .schedule
                    .as_ref()
                    .and_then(|s| s.next_after(now))
                    .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M %Z").to_string()),
                stale: false,
                problems: Vec::new(),
                name,
                runs,
                last_success,
            },
            Err(problems) => Row {
                action: "-".into(),
                schedule: "-".into(),
                next: "-".into(),
                stale: loaded(&name),
                problems: problems.into_iter().map(|p| (p.pointer, p.reason)).collect(),
                name,
                runs,
                last_success,
            },
        });
    }
    Ok(html(&rows, running, &now.format("%Y-%m-%d %H:%M:%S %Z").to_string(), tz))
}

/// A stored UTC time (`YYYY-MM-DD HH:MM:SS`) in the page's zone, with the zone named.
fn local(utc: &str, tz: Tz) -> String {
    match chrono::NaiveDateTime::parse_from_str(utc, "%Y-%m-%d %H:%M:%S") {
        Ok(t) => t.and_utc().with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string(),
        Err(_) => format!("{utc} UTC"),
    }
}

const STYLE: &str = concat!(
    "body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1d2430}",
    "h1{font-size:1.4rem;margin:0}h2{font-size:1.1rem}header{display:flex;flex-wrap:wrap;gap:.5rem;",
    "justify-content:space-between;align-items:baseline;border-bottom:2px solid #1d2430;padding-bottom:.5rem;",
    "margin-bottom:1rem}.muted{color:#687385}table{border-collapse:collapse;width:100%;margin-bottom:1.5rem}",
    "th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e3e7ee;vertical-align:top}",
    "th{font-size:.8rem;text-transform:uppercase;letter-spacing:.04em;color:#687385}code{font-size:.9em}",
    ".s{display:inline-block;padding:0 .45rem;border-radius:.6rem;font-size:.8rem;margin:0 .2rem .2rem 0}",
    ".ok{background:#dff3e4;color:#1e6b34}.failed{background:#fbe0e0;color:#8f1d1d}",
    ".held{background:#fff0cc;color:#7a5300}.running,.queued{background:#e0ebff;color:#1f4ea3}",
    ".skipped,.dry-run,.dry{background:#eceff3;color:#4a5363}.problem,.why{color:#8f1d1d}",
    ".mark{font-weight:700;font-size:.8rem;letter-spacing:.04em;margin-right:.3rem}",
    "tr.failing{border-left:4px solid #8f1d1d}tr.held-row{border-left:4px solid #b07d00}",
    ".why,.problem{overflow-wrap:anywhere}",
    "@media (max-width:40rem){body{margin:1rem auto}table,tbody,tr,td{display:block;width:auto}",
    "thead{display:none}tr{border-bottom:2px solid #e3e7ee;padding:.4rem 0}td{border:0;padding:.15rem .3rem}",
    "td[data-label]::before{content:attr(data-label) \": \";color:#687385;font-size:.8rem}}"
);

fn html(rows: &[Row], running: &[String], now: &str, tz: Tz) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"30\"><title>rosterd status</title><style>{STYLE}</style></head><body>\n"
    );
    let failing = rows.iter().filter(|r| matches!(state(r), Some(RunStatus::Failed | RunStatus::Held))).count();
    let _ = writeln!(
        out,
        "<header><h1>rosterd</h1><span class=\"muted\">{} integration(s) · {failing} need attention · {} running · {}</span></header>",
        rows.len(),
        running.len(),
        escape(now)
    );
    out.push_str(
        "<table><thead><tr><th>integration</th><th>schedule</th><th>last success</th>\
         <th>last runs (newest first)</th></tr></thead><tbody>\n",
    );
    for row in rows.iter().filter(|r| r.problems.is_empty() || r.stale) {
        integration_row(&mut out, row, tz);
    }
    out.push_str("</tbody></table>\n");
    let broken: Vec<&Row> = rows.iter().filter(|r| !r.problems.is_empty() && !r.stale).collect();
    if !broken.is_empty() {
        out.push_str("<h2>Manifests that do not validate</h2><table><thead><tr><th>file</th><th>where</th><th>problem</th></tr></thead><tbody>\n");
        for row in broken {
            problem_rows(&mut out, row);
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("<p class=\"muted\">Refreshes every 30 s. Details: <code>rosterd history NAME</code>, <code>GET /api/v1/runs/ID</code>.</p></body></html>\n");
    out
}

/// How the integration stands: its latest real run that finished (dry runs do not count).
fn state(row: &Row) -> Option<RunStatus> {
    last_real(row).map(|r| r.status)
}

/// Its latest run that is not a dry run and finished (a skipped one says nothing of it).
fn last_real(row: &Row) -> Option<&RunRow> {
    row.runs.iter().find(|r| !r.dry_run && !r.status.is_open() && r.status != RunStatus::Skipped)
}

fn integration_row(out: &mut String, row: &Row, tz: Tz) {
    let last = last_real(row);
    let (class, mark) = match state(row) {
        Some(RunStatus::Failed) => (" class=\"failing\"", "<span class=\"mark why\">FAILING</span>"),
        Some(RunStatus::Held) => (" class=\"held-row\"", "<span class=\"mark\">HELD</span>"),
        _ => ("", ""),
    };
    let mut why = String::new();
    if let Some(r) = last.filter(|r| matches!(r.status, RunStatus::Failed | RunStatus::Held)) {
        let text = r.summary.clone().unwrap_or_else(|| format!("see rosterd history {}", row.name));
        let _ = write!(why, "<div class=\"why\">{}</div>", escape(&text));
    }
    if row.stale {
        why.push_str("<div class=\"why\">its file no longer validates: running the last good version</div>");
        for (pointer, reason) in &row.problems {
            let _ = write!(why, "<div class=\"problem\"><code>{}</code> {}</div>", escape(pointer), escape(reason));
        }
    }
    let _ = writeln!(
        out,
        "<tr{class}><td>{mark}<strong>{}</strong> <span class=\"muted\">{}</span>{why}</td>\
         <td data-label=\"schedule\"><code>{}</code><div class=\"muted\">next {}</div></td>\
         <td data-label=\"last success\">{}</td><td data-label=\"last runs\">{}</td></tr>",
        escape(&row.name),
        escape(&row.action),
        escape(&row.schedule),
        escape(&row.next),
        escape(row.last_success.as_deref().unwrap_or("never")),
        runs_cell(&row.runs, tz)
    );
}

fn problem_rows(out: &mut String, row: &Row) {
    for (pointer, reason) in &row.problems {
        let _ = writeln!(
            out,
            "<tr><td><strong>{}</strong></td><td data-label=\"where\"><code>{}</code></td><td class=\"problem\">{}</td></tr>",
            escape(&row.name),
            escape(if pointer.is_empty() { "(file)" } else { pointer }),
            escape(reason)
        );
    }
}

/// The runs as badges: status (a dry run says so), counts, duration, when.
fn runs_cell(runs: &[RunRow], tz: Tz) -> String {
    if runs.is_empty() {
        return "<span class=\"muted\">no runs yet</span>".into();
    }
    let mut cell = String::new();
    for r in runs {
        let c = &r.counts;
        let took = r.duration_ms.map_or(String::new(), |ms| format!(" · {:.1} s", ms as f64 / 1000.0));
        let counts = match (r.status, r.pushed) {
            (RunStatus::Skipped | RunStatus::Queued, _) => String::new(),
            // A push under way: the requests it sent so far.
            (RunStatus::Running, Some(sent)) => format!(" · {sent} sent"),
            (RunStatus::Running, None) => format!(" · {} fetched", c.fetched),
            _ => format!(" · +{} ~{} −{}", c.created, c.updated, c.deactivated),
        };
        let (class, status) = match (r.dry_run, r.status) {
            (true, RunStatus::DryRun) => ("dry-run".to_string(), "dry-run".to_string()),
            (true, s) => ("dry".to_string(), format!("{s} (dry run)")),
            (false, s) => (s.to_string(), s.to_string()),
        };
        let _ = write!(
            cell,
            "<span class=\"s {class}\" title=\"run {} at {}\">{status}{counts}{took}</span>",
            r.id,
            escape(&local(&r.started_at, tz)),
        );
    }
    cell
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>\u{1b}"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;&#27;"
        );
    }
}
