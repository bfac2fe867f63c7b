//! The command line: clap types and one function per command. Commands load
//! the config, call into the library and print; they hold no logic of their own.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

mod oauth;
mod output;

use output::{Printable, Table, USER_COLUMNS, csv_cells, table_cells, write_report, write_run_details, write_runs};

use crate::config::{self, Config, LogFormat};
use crate::error::Error;
use crate::manifest;
use crate::port::{Runs, Users};
use crate::problem::Problem;
use crate::run::{Cancel, RunOptions, RunReport, Trigger};
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(name = "rosterd", version, about = "Keeps a directory of people in step with the systems a company runs.")]
pub struct Cli {
    /// Config file (else $ROSTERD_CONFIG, else ./rosterd.toml, else built-in defaults).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the config, secrets and manifests; print every problem (exit 2 if any).
    Validate {
        /// Manifests to check (default: every manifest in integrations_dir).
        files: Vec<PathBuf>,
    },
    /// Keep every manifest with a schedule running on it; reload the folder live.
    Serve {
        /// Run every loaded integration once and exit (1 if any failed, was held, or was left out).
        #[arg(long)]
        once: bool,
    },
    /// Run one integration now (NAME = manifest file stem, or a path to a manifest).
    Run {
        name: String,
        /// Fetch and print the plan; write nothing to users.
        #[arg(long)]
        dry_run: bool,
        /// Print one JSON report on stdout.
        #[arg(long)]
        json: bool,
        /// Apply a sync even when it deactivates more than max_deactivate.
        #[arg(long)]
        force: bool,
    },
    /// Start an embedded sample HR source, run the example manifests against it into
    /// ./rosterd-demo.db, and show the users and run history.
    Demo {
        /// Then keep the samples and the daemon (API, status page) running until Ctrl-C,
        /// with ./rosterd-demo.toml for other commands.
        #[arg(long)]
        serve: bool,
    },
    /// Import users from a JSON ({"users": [...]}) or CSV file; match on employee_id.
    Import {
        file: PathBuf,
        /// Default: from the extension (.csv, else JSON).
        #[arg(long, value_enum)]
        format: Option<BulkFormat>,
    },
    /// Export every user as JSON ({"users": [...]}) or CSV on stdout.
    Export {
        #[arg(long, value_enum, default_value_t = BulkFormat::Json)]
        format: BulkFormat,
    },
    /// Print the users in the store.
    Users {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout.
    Man,
    /// Connect an integration to its OAuth provider: print the authorize link and store the
    /// token the callback brings (client credentials: get a token now).
    Oauth {
        name: String,
        /// Port to listen on for the callback when [oauth] redirect_url is not set.
        #[arg(long, default_value_t = crate::oauth::DEFAULT_PORT)]
        port: u16,
        /// How long the link and the wait last: 90s, 10m, 1h.
        #[arg(long, default_value = "10m", value_parser = oauth::parse_duration)]
        timeout: std::time::Duration,
        /// Show the stored token's expiry and field names (never values).
        #[arg(long)]
        status: bool,
    },
    /// Recent runs with their counts and errors; with NAME, also the latest run's requests and skips.
    History {
        name: Option<String>,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One run, by id: its row, its requests and its skipped records (`--json`: one object).
        #[arg(long, value_name = "ID", conflicts_with = "name")]
        run: Option<i64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BulkFormat {
    Json,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Validate { files } => validate(cli.config.as_deref(), &files),
        Command::Serve { once } => {
            let config = load_config(cli.config.as_deref(), true)?;
            let flag = cli.config.clone().or_else(|| config.file.clone());
            let service = crate::service::Service::new(config);
            runtime()?.block_on(async {
                if once {
                    return crate::daemon::once(service, flag).await;
                }
                let shutdown = crate::daemon::termination()?;
                let api = crate::api::bind(&service.config()).await?;
                crate::daemon::serve(service, flag, api, shutdown).await
            })
        }
        Command::Run { name, dry_run, json, force } => {
            let config = load_config(cli.config.as_deref(), false)?;
            let manifest = find_manifest(&config, &name)?;
            let opts = RunOptions { trigger: Trigger::Manual, dry_run, force, progress: !json, run_id: None };
            let report = single_thread_runtime()?.block_on(async {
                // Ctrl-C or SIGTERM during a run cancels it cleanly: no new
                // request, those in flight waited for, nothing applied to the
                // store, recorded as failed with every request that was sent.
                // The handlers are in place before the run starts, not when the task is first polled.
                use tokio::signal::unix::{SignalKind, signal};
                let listen = |kind: SignalKind, what: &str| {
                    signal(kind).map_err(|e| Error::Usage(format!("cannot listen for {what}: {e}")))
                };
                let (mut interrupt, mut terminate) =
                    (listen(SignalKind::interrupt(), "Ctrl-C")?, listen(SignalKind::terminate(), "SIGTERM")?);
                let cancel = Cancel::default();
                let on_signal = cancel.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                    on_signal.cancel();
                });
                let db = crate::store::Database::open(&config.database)?;
                crate::run::run(&manifest, &config, &db, opts, &cancel).await.map_err(Error::from)
            })?;
            print_report(&report, json)
        }
        Command::Demo { serve } => {
            init_logging(LogFormat::Text, false);
            // One runtime for the demo's samples, from the runs to `--serve`.
            let rt = runtime()?;
            let demo = rt.block_on(crate::demo::run(Path::new(".")))?;
            let db = demo.db.clone();
            let config =
                config::parse_str(&format!("database = {:?}\n", db.display().to_string()), Path::new("./demo.toml"))
                    .map_err(Error::Invalid)?;
            writeln!(std::io::stdout(), "\nusers ({}):", db.display())?;
            users(&config, Format::Table)?;
            writeln!(std::io::stdout(), "\nhistory:")?;
            history(&config, None, false, 50)?;
            if serve {
                return rt.block_on(demo.serve());
            }
            demo.stop();
            writeln!(
                std::io::stdout(),
                "\nthe demo database is {}; `rosterd demo --serve` keeps the sample source, the sample \
                 target and the daemon (API and status page) running to explore, with a rosterd-demo.toml for \
                 `rosterd --config rosterd-demo.toml users | history | run NAME --dry-run`",
                db.display()
            )?;
            Ok(())
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "rosterd", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            man_page(&mut std::io::stdout().lock())?;
            Ok(())
        }
        Command::Oauth { name, status: true, .. } => oauth::status(&load_config(cli.config.as_deref(), false)?, &name),
        Command::Oauth { name, port, timeout, status: false } => {
            let config = load_config(cli.config.as_deref(), false)?;
            let rt = runtime()?;
            let result = rt.block_on(oauth::connect(&config, &name, port, timeout));
            // A read of stdin may still be waiting on a terminal: do not wait for it.
            rt.shutdown_background();
            result
        }
        Command::Import { file, format } => import(&load_config(cli.config.as_deref(), false)?, &file, format),
        Command::Export { format } => export(&load_config(cli.config.as_deref(), false)?, format),
        Command::Users { format } => users(&load_config(cli.config.as_deref(), false)?, format),
        Command::History { json, run: Some(id), .. } => {
            history_of_run(&load_config(cli.config.as_deref(), false)?, id, json)
        }
        Command::History { name, json, limit, run: None } => {
            history(&load_config(cli.config.as_deref(), false)?, name.as_deref(), json, limit)
        }
    }
}

/// Loads the config and starts logging to stderr (`RUST_LOG` wins over the default level).
fn load_config(flag: Option<&Path>, daemon: bool) -> Result<Config, Error> {
    let config = config::load(flag).map_err(Error::Invalid)?;
    init_logging(config.log_format, daemon);
    Ok(config)
}

pub fn init_logging(format: LogFormat, daemon: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if daemon { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // Colour only on a terminal, and never when NO_COLOR is set (no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))
}

/// For one run: the HTTP connection and the fetch loop share a thread, so a
/// page's bytes are parsed without a hop between threads (applying runs on
/// the blocking pool either way).
fn single_thread_runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))
}

/// Finds the manifest `name` refers to: a path to a file, or a stem in `integrations_dir`.
pub fn find_manifest(config: &Config, name: &str) -> Result<manifest::Manifest, Error> {
    let path = manifest_path(config, name)?;
    manifest::load(&path, config).map_err(Error::Invalid)
}

/// The manifest file `name` means: a path (ends in `.json`, has a `/`, or is
/// a file), else the integration of that name in the integrations folder.
pub(super) fn manifest_path(config: &Config, name: &str) -> Result<PathBuf, Error> {
    let as_path = Path::new(name);
    let path = if name.ends_with(".json") || name.contains('/') || as_path.is_file() {
        as_path.to_path_buf()
    } else {
        config.integrations_dir.join(format!("{name}.json"))
    };
    if !path.is_file() {
        let known: Vec<String> = manifest::files_in(&config.integrations_dir)
            .unwrap_or_default()
            .iter()
            .map(|p| manifest::name_of(p))
            .collect();
        let hint = if known.is_empty() {
            format!("{} holds no manifests", config.integrations_dir.display())
        } else {
            format!("known integrations: {}", known.join(", "))
        };
        return Err(Error::Usage(format!("no integration \"{name}\" ({} does not exist); {hint}", path.display())));
    }
    Ok(path)
}

fn print_report(report: &RunReport, json: bool) -> Result<(), Error> {
    let mut text = Vec::new();
    if json {
        serde_json::to_writer_pretty(&mut text, report).map_err(std::io::Error::from)?;
        writeln!(text)?;
    } else {
        write_report(&mut text, report)?;
    }
    let mut out = std::io::stdout().lock();
    // The report's outside values are redacted already. JSON escapes control
    // characters itself; text shows them escaped.
    let text = String::from_utf8_lossy(&text);
    let text = if json { text } else { crate::problem::printable(&text) };
    out.write_all(text.as_bytes())?;
    out.flush()?;
    if report.succeeded() {
        Ok(())
    } else {
        let why = report.error.clone().unwrap_or_else(|| report.status.to_string());
        Err(Error::RunFailed(format!("{} run {} {}: {why}", report.integration, report.run_id, report.status)))
    }
}

fn validate(flag: Option<&Path>, files: &[PathBuf]) -> Result<(), Error> {
    let config = load_config(flag, false)?;
    let files = if files.is_empty() {
        manifest::files_in(&config.integrations_dir).map_err(|e| {
            Error::Invalid(vec![Problem::new(
                &config.display_file(),
                "/integrations_dir",
                format!(
                    "cannot read the integrations folder {}: {}",
                    config.integrations_dir.display(),
                    crate::describe_io(&e)
                ),
            )])
        })?
    } else {
        // A name as `run` takes it, or a file.
        files.iter().map(|f| manifest_path(&config, &f.to_string_lossy())).collect::<Result<_, _>>()?
    };
    let mut out = Printable(std::io::stdout().lock());
    let mut problems = Vec::new();
    let now = chrono::Utc::now().with_timezone(&config.timezone);
    for file in &files {
        match manifest::load(file, &config) {
            Ok(m) => {
                let when = match &m.schedule {
                    Some(s) => format!("schedule \"{}\" ({})", s.expr, config.timezone),
                    None => "on demand".to_string(),
                };
                writeln!(out, "ok   {}  {} {}, {when}", file.display(), m.name, m.action.as_str())?;
                for (i, f) in m.form.iter().enumerate() {
                    let n = f.value.as_ref().map_or(0, |v| v.expose().chars().count());
                    if f.secret && f.value.is_some() && n < crate::redact::SHORT_SECRET {
                        writeln!(
                            out,
                            "       warn: /initial_data_form/{i}: {} is {n} character(s) long, so it is masked \
                             only where it stands alone; if it is not a secret (an id), set \"secret\": false",
                            f.id
                        )?;
                    }
                }
                if let Some(s) = &m.schedule {
                    let next: Vec<String> = s.upcoming(now, 3).iter().map(|t| t.to_rfc3339()).collect();
                    writeln!(out, "       next: {}", next.join(", "))?;
                    if let Some(note) = s.note() {
                        writeln!(out, "       note: {note}")?;
                    }
                    if let Some(theirs) = s.chief_onboarding_reading() {
                        let next: Vec<String> = theirs.upcoming(now, 3).iter().map(|t| t.to_rfc3339()).collect();
                        writeln!(out, "       ChiefOnboarding would fire: {}", next.join(", "))?;
                    }
                }
                for note in &m.notes {
                    writeln!(out, "       note: {note}")?;
                }
            }
            Err(mut p) => {
                writeln!(out, "FAIL {}", file.display())?;
                problems.append(&mut p);
            }
        }
    }
    if files.is_empty() {
        writeln!(out, "no manifests in {}", config.integrations_dir.display())?;
    }
    for p in &problems {
        writeln!(out, "{p}")?;
    }
    if problems.is_empty() {
        writeln!(out, "{} manifest(s) valid", files.len())?;
        Ok(())
    } else {
        out.flush()?;
        Err(Error::Usage(format!("{} problem(s) found", problems.len())))
    }
}

fn import(config: &Config, file: &Path, format: Option<BulkFormat>) -> Result<(), Error> {
    let body = std::fs::read(file)
        .map_err(|e| Error::Usage(format!("cannot read {}: {}", file.display(), crate::describe_io(&e))))?;
    let csv = match format {
        Some(f) => f == BulkFormat::Csv,
        None => file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")),
    };
    let records = if csv { crate::import::parse_csv(&body) } else { crate::import::parse_json(&body) }
        .map_err(|e| Error::Usage(format!("{}: {e}; nothing was imported", file.display())))?;
    let reply = crate::run::import(&mut Store::open(&config.database)?, &records)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, &reply).map_err(std::io::Error::from)?;
    writeln!(out)?;
    out.flush()?;
    if reply.errors.is_empty() {
        Ok(())
    } else {
        Err(Error::RunFailed(format!("{} record(s) were not imported (the others were)", reply.errors.len())))
    }
}

fn export(config: &Config, format: BulkFormat) -> Result<(), Error> {
    let store = Store::open_existing(&config.database)?;
    let mut out = std::io::stdout().lock();
    let mut writer = crate::export::ExportWriter::new(format == BulkFormat::Csv, config.csv_escape_formulas);
    let mut failed = None;
    store.export_each(|fields, created, updated| {
        let row = crate::export::ExportRow::new(fields, created, updated);
        writer.push(&row);
        if writer.full()
            && let Err(e) = out.write_all(&writer.take())
        {
            failed = Some(e);
            return false;
        }
        true
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    writer.finish();
    out.write_all(&writer.take())?;
    Ok(())
}

/// Streams the users: JSON and CSV row by row; the table reads them twice
/// (column widths, then the lines), so memory stays flat however many there are.
fn users(config: &Config, format: Format) -> Result<(), Error> {
    let store = Store::open_existing(&config.database)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut failed: Option<Error> = None;
    // Keeps going while writing works; the first failure stops the scan and is returned below.
    let mut wrote = |result: Result<(), Error>| match result {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    };
    let csv_err = |e: csv::Error| Error::Output(std::io::Error::other(e));
    match format {
        Format::Json => {
            use serde::ser::{SerializeSeq, Serializer};
            let mut ser = serde_json::Serializer::pretty(&mut out);
            let mut seq = ser.serialize_seq(None).map_err(std::io::Error::from)?;
            store.users_each(|u| wrote(seq.serialize_element(&u).map_err(|e| std::io::Error::from(e).into())))?;
            if let Some(e) = failed {
                return Err(e);
            }
            seq.end().map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            w.write_record(USER_COLUMNS).map_err(csv_err)?;
            let escape = config.csv_escape_formulas;
            store.users_each(|u| {
                let cells = csv_cells(&u);
                let written = if escape {
                    w.write_record(cells.iter().map(|c| crate::export::escape_formula(c).into_owned()))
                } else {
                    w.write_record(cells)
                };
                wrote(written.map_err(csv_err))
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            w.flush()?;
        }
        Format::Table => {
            const HEADER: [&str; 9] = [
                "id",
                "email",
                "first_name",
                "last_name",
                "external_id",
                "department",
                "active",
                "source",
                "updated_at",
            ];
            let mut table = Table::new(&HEADER);
            store.users_each(|u| {
                table.fit(&table_cells(&u));
                true
            })?;
            writeln!(out, "{}", table.line(&HEADER))?;
            let mut n = 0u64;
            store.users_each(|u| {
                n += 1;
                wrote(writeln!(out, "{}", table.line(&table_cells(&u))).map_err(Error::from))
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            writeln!(out, "{n} user(s)")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The table's columns: a selection of `csv_cells`, with `active` as yes/no.
fn history(config: &Config, name: Option<&str>, json: bool, limit: u32) -> Result<(), Error> {
    let store = Store::open_existing(&config.database)?;
    let runs = store.runs(name, limit)?;
    if let Some(name) = name
        && runs.is_empty()
        && !config.integrations_dir.join(format!("{name}.json")).exists()
    {
        return Err(Error::Usage(format!(
            "no integration named {name}: no manifest {name}.json in {} and no runs; `rosterd history` lists them all",
            config.integrations_dir.display()
        )));
    }
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &runs).map_err(std::io::Error::from)?;
        writeln!(out)?;
        return Ok(());
    }
    let mut out = Printable(out);
    if runs.is_empty() {
        writeln!(out, "no runs yet{}", name.map(|n| format!(" for {n}")).unwrap_or_default())?;
        return Ok(());
    }
    write_runs(&mut out, &runs)?;
    for run in runs.iter().filter(|r| !r.warnings.is_empty()) {
        for w in &run.warnings {
            writeln!(out, "run {}: warning: {w}", run.id)?;
        }
    }
    if let (Some(_), Some(latest)) = (name, runs.first()) {
        write_run_details(&mut out, &store, latest.id)?;
    }
    Ok(())
}

/// Skipped records `history` prints per run; `--json` gives every one stored.
pub(super) const SHOWN_SKIPS: u32 = 50;

/// `history --run ID`: one run's row, requests and skipped records.
fn history_of_run(config: &Config, id: i64, json: bool) -> Result<(), Error> {
    let store = Store::open_existing(&config.database)?;
    let Some(detail) = store.run_detail(id)? else {
        return Err(Error::Usage(format!(
            "there is no run {id} in {}; `rosterd history` lists the recent ones",
            config.database.display()
        )));
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &detail).map_err(std::io::Error::from)?;
        writeln!(out)?;
        return Ok(());
    }
    let mut out = Printable(out);
    let run = &detail.run;
    write_runs(&mut out, std::slice::from_ref(run))?;
    for w in &run.warnings {
        writeln!(out, "warning: {w}")?;
    }
    write_run_details(&mut out, &store, id)
}

/// `rosterd man`: one page (it installs no other), with every command, the
/// exit status, the environment and the files.
fn man_page(out: &mut impl Write) -> std::io::Result<()> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    let roff = |text: &str| text.replace('\\', "\\\\").replace('-', "\\-");
    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let args: Vec<String> = sub
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .map(|a| match a.get_long() {
                Some(long) => format!("[\\-\\-{}]", roff(long)),
                None => a.get_id().as_str().to_uppercase(),
            })
            .collect();
        writeln!(out, ".TP\n\\fBrosterd {}\\fR {}", sub.get_name(), args.join(" "))?;
        writeln!(out, "{}", roff(&sub.get_about().map(|a| a.to_string()).unwrap_or_default()))?;
    }
    for (heading, items) in MAN_SECTIONS {
        writeln!(out, ".SH {heading}")?;
        for (term, text) in *items {
            writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff(term), roff(text))?;
        }
    }
    man.render_version_section(out)
}

/// The man page's sections beyond clap's: exit status, environment, files.
const MAN_SECTIONS: &[(&str, &[(&str, &str)])] = &[
    (
        "EXIT STATUS",
        &[
            ("0", "Success."),
            ("1", "A run failed, was held or was skipped; or writing the output failed."),
            ("2", "Bad usage, an invalid config or manifest, or a database that cannot be opened."),
        ],
    ),
    (
        "ENVIRONMENT",
        &[
            ("ROSTERD_CONFIG", "The config file, when --config is not given."),
            (
                "ROSTERD_SECRET_<NAME>_<ID>",
                "A manifest's form value (upper-cased; every other character as _); wins over the config.",
            ),
            ("CREDENTIALS_DIRECTORY", "systemd's credentials folder: <name>.<ID> files hold form values."),
            ("RUST_LOG", "Log filter, e.g. rosterd=debug."),
            ("NO_COLOR", "Never colour the output."),
        ],
    ),
    (
        "FILES",
        &[
            (
                "./rosterd.toml",
                "The config when neither --config nor ROSTERD_CONFIG says another (see config.example.toml).",
            ),
            ("./integrations/", "The manifests, one JSON file per integration (integrations_dir)."),
            (
                "./rosterd.db",
                "The SQLite store (database), with rosterd.db.lock.d/ holding one run lock per integration.",
            ),
        ],
    ),
];
