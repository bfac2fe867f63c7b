//! `GET /`: a small read-only status page, rendered on the server with no
//! script and no outside asset: every integration with its schedule, next
//! fire and last runs, and every manifest that does not validate with its
//! problems. It shows no user data and no secret (run errors are stored
//! redacted). `[api] status_page = false` turns it off.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

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
    match with_store(&service, move |store| render(store, &config, &running)).await {
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
    problems: Vec<(String, String)>,
}

fn render(store: &Store, config: &Config, running: &[String]) -> Result<String, StoreError> {
    let files = crate::manifest::files_in(&config.integrations_dir)
        .map_err(|e| StoreError::Open { path: config.integrations_dir.clone(), reason: crate::describe_io(&e) })?;
    let now = chrono::Utc::now().with_timezone(&config.timezone);
    let mut rows = Vec::new();
    for file in files {
        let name = crate::manifest::name_of(&file);
        let runs = store.runs(Some(&name), LAST_RUNS)?;
        rows.push(match crate::manifest::load(&file, config) {
            Ok(m) => Row {
                name,
                action: m.action.as_str().to_string(),
                schedule: m.schedule.as_ref().map_or("on demand".into(), |s| s.expr.clone()),
                next: m
                    .schedule
                    .as_ref()
                    .and_then(|s| s.next_after(now))
                    .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S %Z").to_string()),
                runs,
                problems: Vec::new(),
            },
            Err(problems) => Row {
                name,
                action: "-".into(),
                schedule: "-".into(),
                next: "-".into(),
                runs,
                problems: problems.into_iter().map(|p| (p.pointer, p.reason)).collect(),
            },
        });
    }
    Ok(html(&rows, running, &now.format("%Y-%m-%d %H:%M:%S %Z").to_string()))
}

fn html(rows: &[Row], running: &[String], now: &str) -> String {
    let mut out = String::with_capacity(8 * 1024);
    out.push_str(concat!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<meta http-equiv=\"refresh\" content=\"30\"><title>rosterd status</title><style>",
        "body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1d2430}",
        "h1{font-size:1.4rem;margin:0}header{display:flex;justify-content:space-between;align-items:baseline;",
        "border-bottom:2px solid #1d2430;padding-bottom:.5rem;margin-bottom:1rem}.muted{color:#687385}",
        "table{border-collapse:collapse;width:100%;margin-bottom:1.5rem}th,td{text-align:left;padding:.35rem .6rem;",
        "border-bottom:1px solid #e3e7ee;vertical-align:top}th{font-size:.8rem;text-transform:uppercase;",
        "letter-spacing:.04em;color:#687385}code{font-size:.9em}.s{display:inline-block;padding:0 .45rem;",
        "border-radius:.6rem;font-size:.8rem;margin:0 .2rem .2rem 0}.ok{background:#dff3e4;color:#1e6b34}",
        ".failed{background:#fbe0e0;color:#8f1d1d}.held{background:#fff0cc;color:#7a5300}",
        ".running,.queued{background:#e0ebff;color:#1f4ea3}.skipped,.dry-run{background:#eceff3;color:#4a5363}",
        ".problem{color:#8f1d1d}</style></head><body>\n"
    ));
    let _ = writeln!(
        out,
        "<header><h1>rosterd</h1><span class=\"muted\">{} integration(s) · {} running · {}</span></header>",
        rows.len(),
        running.len(),
        escape(now)
    );
    out.push_str(
        "<table><thead><tr><th>integration</th><th>action</th><th>schedule</th><th>next run</th>\
         <th>last runs (newest first)</th></tr></thead><tbody>\n",
    );
    for row in rows.iter().filter(|r| r.problems.is_empty()) {
        let _ = writeln!(
            out,
            "<tr><td><strong>{}</strong></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(&row.name),
            escape(&row.action),
            escape(&row.schedule),
            escape(&row.next),
            runs_cell(&row.runs)
        );
    }
    out.push_str("</tbody></table>\n");
    let broken: Vec<&Row> = rows.iter().filter(|r| !r.problems.is_empty()).collect();
    if !broken.is_empty() {
        out.push_str("<h2>Manifests that do not validate</h2><table><thead><tr><th>file</th><th>where</th><th>problem</th></tr></thead><tbody>\n");
        for row in broken {
            for (pointer, reason) in &row.problems {
                let _ = writeln!(
                    out,
                    "<tr><td><strong>{}</strong></td><td><code>{}</code></td><td class=\"problem\">{}</td></tr>",
                    escape(&row.name),
                    escape(if pointer.is_empty() { "(file)" } else { pointer }),
                    escape(reason)
                );
            }
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("<p class=\"muted\">Refreshes every 30 s. Details: <code>rosterd history NAME</code>, <code>GET /api/v1/runs/ID</code>.</p></body></html>\n");
    out
}

/// A run as a badge: status, counts, duration; its error as the tooltip.
fn runs_cell(runs: &[RunRow]) -> String {
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
        let _ = write!(
            cell,
            "<span class=\"s {}\" title=\"run {} at {}{}\">{}{counts}{took}</span>",
            r.status,
            r.id,
            escape(&r.started_at),
            r.error.as_deref().map(|e| format!(": {}", escape(e))).unwrap_or_default(),
            r.status
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
