//! `rosterd serve`: keeps every manifest in `integrations_dir` scheduled.
//!
//! Scheduling is a small loop of our own per integration (croner for the next
//! fire time in the configured zone, then a sleep), not tokio-cron-scheduler:
//! that crate fixes a job's UTC offset when the job is made, so fire times drift
//! by an hour across daylight-saving changes, and it has no overlap guard.
//! The folder is polled once a second (mtime, size, then content), which
//! keeps the 5-second reload promise without inotify, and also works on network
//! mounts and with editors that save by rename; a broken file is logged once
//! per change. SIGHUP re-reads the config, secrets and every manifest. When
//! the caller's shutdown future completes (SIGTERM or SIGINT outside tests:
//! `termination`), ticking stops, running runs get `shutdown_grace_secs` to
//! finish, and then are cancelled. Runs themselves go through the `Service`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::Utc;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::{self, Config};
use crate::error::Error;
use crate::manifest::{self, Manifest};
use crate::run::Trigger;
use crate::service::Service;

const POLL: Duration = Duration::from_secs(1);

/// A loaded manifest and what the daemon knows of its file.
struct Entry {
    manifest: Arc<Manifest>,
    stamp: Stamp,
    ticker: Option<JoinHandle<()>>,
}

/// What a file looked like when last read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    text: String,
}

struct Daemon {
    service: Arc<Service>,
    flag: Option<PathBuf>,
    entries: HashMap<PathBuf, Entry>,
    /// Files that failed validation, with the stamp they had, so errors are logged once per change.
    broken: HashMap<PathBuf, Stamp>,
}

/// Runs the daemon over `service` until `shutdown` completes, serving the API
/// on `api` when given. SIGHUP re-reads the config (from `flag`), secrets and
/// manifests. The caller binds the listener and owns the signals that stop
/// it, so a test can bind port 0 and stop the daemon when it likes.
pub async fn serve(
    service: Arc<Service>,
    flag: Option<PathBuf>,
    api: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    // Opening the store first makes a bad database path a start-up error, not a failed run later.
    service.database()?;
    let mut daemon = Daemon { service: service.clone(), flag, entries: HashMap::new(), broken: HashMap::new() };
    daemon.rescan(false, true);
    let stop_api = Arc::new(Notify::new());
    let api_task = api.map(|listener| {
        let (service, stop) = (service.clone(), stop_api.clone());
        tokio::spawn(async move { crate::api::serve(listener, service, async move { stop.notified().await }).await })
    });
    service.set_ticking(true);
    let n = daemon.entries.values().filter(|e| e.ticker.is_some()).count();
    notify_systemd(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status_line(n))]);
    tracing::info!("serving: {n} scheduled integration(s) from {}", service.config().integrations_dir.display());

    let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLL) => daemon.rescan(false, true),
            _ = hup.recv() => {
                notify_systemd(&[sd_notify::NotifyState::Reloading]);
                daemon.reload_config();
                daemon.rescan(true, true);
                let n = daemon.entries.values().filter(|e| e.ticker.is_some()).count();
                notify_systemd(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status_line(n))]);
            }
            () = &mut shutdown => break,
        }
    }
    service.set_ticking(false);
    daemon.shutdown().await;
    stop_api.notify_waiters();
    if let Some(task) = api_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    Ok(())
}

/// `serve --once`: every valid manifest in the folder runs once; exit 1 if
/// any failed, was held, or was left out as invalid.
pub async fn once(service: Arc<Service>, flag: Option<PathBuf>) -> Result<(), Error> {
    let dir = service.config().integrations_dir.clone();
    if let Err(e) = manifest::files_in(&dir) {
        return Err(Error::RunFailed(format!(
            "cannot read the integrations folder {}: {}; nothing ran",
            dir.display(),
            crate::describe_io(&e)
        )));
    }
    service.database()?;
    let mut daemon = Daemon { service, flag, entries: HashMap::new(), broken: HashMap::new() };
    daemon.rescan(false, false);
    daemon.once().await
}

/// Completes on SIGTERM or SIGINT: what stops `serve` outside tests.
pub fn termination() -> Result<impl Future<Output = ()>, Error> {
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, Error> {
    tokio::signal::unix::signal(kind).map_err(|e| Error::Usage(format!("cannot listen for signals: {e}")))
}

fn status_line(n: usize) -> String {
    format!("{n} integration(s) scheduled")
}

fn notify_systemd(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!("sd_notify: {e}");
    }
}

impl Daemon {
    fn config(&self) -> Arc<Config> {
        self.service.config()
    }

    fn reload_config(&mut self) {
        match config::load(self.flag.as_deref()) {
            Ok(c) => {
                self.service.set_config(c);
                tracing::info!("config reloaded");
            }
            Err(problems) => {
                for p in problems {
                    tracing::error!("config not reloaded: {p}");
                }
            }
        }
    }

    /// Brings the loaded manifests in line with the folder. `force` re-reads
    /// unchanged files too (SIGHUP: secrets may have changed).
    fn rescan(&mut self, force: bool, schedule: bool) {
        let config = self.config();
        let files = match manifest::files_in(&config.integrations_dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("cannot read {}: {}", config.integrations_dir.display(), crate::describe_io(&e));
                return;
            }
        };
        let present: HashSet<&PathBuf> = files.iter().collect();
        let gone: Vec<PathBuf> = self.entries.keys().filter(|p| !present.contains(p)).cloned().collect();
        for path in gone {
            if let Some(entry) = self.entries.remove(&path) {
                self.index_remove(&entry.manifest.name);
                stop(entry.ticker);
                tracing::info!(integration = %entry.manifest.name, "manifest removed: unscheduled");
            }
        }
        self.broken.retain(|p, _| present.contains(p));
        for path in &files {
            self.check_file(path, &config, force, schedule);
        }
    }

    fn check_file(&mut self, path: &Path, config: &Config, force: bool, schedule: bool) {
        let Ok(meta) = std::fs::metadata(path) else { return };
        let quick = (meta.modified().ok(), meta.len());
        // A broken edit of a good file is compared with the broken text, so it
        // is read and logged once per change, not on every poll.
        let known = self.broken.get(path).or_else(|| self.entries.get(path).map(|e| &e.stamp));
        if !force && known.is_some_and(|s| (s.modified, s.len) == quick) {
            return;
        }
        let Ok(text) = std::fs::read_to_string(path) else { return };
        let stamp = Stamp { modified: quick.0, len: quick.1, text };
        if !force && known.is_some_and(|s| s.text == stamp.text) {
            if let Some(s) = self.broken.get_mut(path) {
                *s = stamp;
            } else if let Some(e) = self.entries.get_mut(path) {
                e.stamp = stamp;
            }
            return;
        }
        let name = manifest::name_of(path);
        match manifest::parse(&name, path, &stamp.text, config) {
            Ok(m) => {
                if self.broken.remove(path).is_some() {
                    tracing::info!(integration = %name, "manifest {} is valid again", path.display());
                }
                let m = Arc::new(m);
                let ticker = (schedule && m.schedule.is_some()).then(|| self.start_ticker(m.clone()));
                let verb = if self.entries.contains_key(path) { "reloaded" } else { "loaded" };
                if let Some(old) = self.entries.insert(path.to_path_buf(), Entry { manifest: m.clone(), stamp, ticker })
                {
                    stop(old.ticker);
                }
                self.service.set_manifest(m.clone());
                match &m.schedule {
                    Some(s) => {
                        let next = s.next_after(Utc::now().with_timezone(&config.timezone));
                        tracing::info!(integration = %m.name, schedule = %s.expr,
                            next = %next.map_or("never".into(), |t| t.to_rfc3339()), "manifest {verb}");
                    }
                    None => tracing::info!(integration = %m.name, "manifest {verb} (no schedule: runs on demand)"),
                }
            }
            Err(problems) => {
                let keeping =
                    if self.entries.contains_key(path) { "; the last good version keeps running" } else { "" };
                for p in &problems {
                    tracing::error!(integration = %name, "invalid manifest{keeping}: {p}");
                }
                self.broken.insert(path.to_path_buf(), stamp);
            }
        }
    }

    fn index_remove(&self, name: &str) {
        self.service.remove_manifest(name);
    }

    fn start_ticker(&self, m: Arc<Manifest>) -> JoinHandle<()> {
        let shared = self.service.clone();
        tokio::spawn(async move {
            let Some(schedule) = m.schedule.clone() else { return };
            let mut after = Utc::now();
            loop {
                let tz = shared.config().timezone;
                let Some(next) = schedule.next_after(after.with_timezone(&tz)) else {
                    tracing::warn!(integration = %m.name, "schedule \"{}\" has no further fire time", schedule.expr);
                    return;
                };
                let next = next.with_timezone(&Utc);
                // Sleep in steps so a wall-clock jump (suspend, NTP) is noticed within a minute.
                loop {
                    let left = (next - Utc::now()).to_std().unwrap_or_default();
                    if left.is_zero() {
                        break;
                    }
                    tokio::time::sleep(left.min(Duration::from_secs(60))).await;
                }
                tracing::debug!(integration = %m.name, "tick");
                if let Err(e) = shared.trigger(m.clone(), Trigger::Schedule) {
                    tracing::error!(integration = %m.name, "cannot start a run: {e}");
                }
                after = next.max(Utc::now() - chrono::Duration::milliseconds(1));
            }
        })
    }

    /// `serve --once`: every loaded integration once; exit 1 if any failed, was held, or was left out.
    async fn once(self) -> Result<(), Error> {
        let left_out = self.broken.len();
        for entry in self.entries.values() {
            self.service.trigger(entry.manifest.clone(), Trigger::Schedule)?;
        }
        self.service.wait_idle(None).await;
        let results = self.service.results();
        let bad: Vec<String> =
            results.iter().filter(|(_, s)| !s.succeeded()).map(|(n, s)| format!("{n} {s}")).collect();
        let mut problems = bad.clone();
        if left_out > 0 {
            problems.push(format!("{left_out} invalid manifest(s) left out"));
        }
        tracing::info!("ran {} integration(s) once; {} not ok", results.len(), bad.len());
        if problems.is_empty() { Ok(()) } else { Err(Error::RunFailed(problems.join(", "))) }
    }

    async fn shutdown(mut self) {
        notify_systemd(&[sd_notify::NotifyState::Stopping]);
        for entry in self.entries.values_mut() {
            stop(entry.ticker.take());
        }
        let grace = Duration::from_secs(self.config().shutdown_grace_secs);
        let running = self.service.running_names();
        if !running.is_empty() {
            tracing::info!("stopping: waiting up to {}s for {}", grace.as_secs(), running.join(", "));
        }
        if !self.service.wait_idle(Some(grace)).await {
            tracing::warn!("stopping: cancelling runs still going after {}s", grace.as_secs());
            self.service.cancel_runs();
            // A cancelled push sends nothing new but waits for the requests in
            // flight, each bounded by the request timeout: so does the stop.
            let drain = Duration::from_secs(self.config().http.timeout_secs.saturating_add(5).max(30));
            self.service.wait_idle(Some(drain)).await;
        }
        tracing::info!("stopped");
    }
}

fn stop(ticker: Option<JoinHandle<()>>) {
    if let Some(t) = ticker {
        t.abort();
    }
}
