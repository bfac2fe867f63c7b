//! `rosterd serve`: keeps every manifest in `integrations_dir` scheduled.
//!
//! Scheduling is a small loop of our own per integration (croner for the next
//! fire time in the configured zone, then a sleep), not tokio-cron-scheduler:
//! that crate fixes a job's UTC offset when the job is made, so fire times drift
//! by an hour across daylight-saving changes, and it has no overlap guard.
//! The folder is polled once a second (mtime, size, then content), which
//! keeps the 5-second reload promise without inotify, and also works on network
//! mounts and with editors that save by rename. SIGHUP re-reads the config,
//! secrets and every manifest. On SIGTERM ticking stops, running runs get
//! `shutdown_grace_secs` to finish, and then are cancelled.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use chrono::Utc;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::config::{self, Config};
use crate::error::Error;
use crate::manifest::{self, Manifest};
use crate::run::{self, Cancel, RunOptions, Trigger};
use crate::store::{Store, StoreError};

const POLL: Duration = Duration::from_secs(1);

/// State shared by the daemon's tasks.
pub struct Shared {
    config: RwLock<Arc<Config>>,
    permits: Semaphore,
    running: Mutex<HashSet<String>>,
    idle: Notify,
    cancel: Cancel,
    /// Statuses of finished runs (for `--once`).
    results: Mutex<Vec<(String, &'static str)>>,
    /// The loaded manifests by integration name (for the API).
    manifests: RwLock<HashMap<String, Arc<Manifest>>>,
    /// True while the scheduling loop runs (for `/healthz`).
    ticking: AtomicBool,
}

impl Shared {
    pub fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn manifest(&self, name: &str) -> Option<Arc<Manifest>> {
        self.manifests.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    pub fn is_ticking(&self) -> bool {
        self.ticking.load(Ordering::SeqCst)
    }

    /// Starts a run of `m` and returns its run id, unless one is going: then a
    /// `skipped` run is recorded and `Ok(None)` returned.
    pub fn trigger(self: &Arc<Self>, m: Arc<Manifest>, trigger: Trigger) -> Result<Option<i64>, StoreError> {
        let config = self.config();
        if !self.running().insert(m.name.clone()) {
            run::record_skipped(&config, &m, trigger, None)?;
            return Ok(None);
        }
        let begun =
            Store::open(&config.database).and_then(|s| s.begin_run(&m.name, m.action.as_str(), trigger.as_str()));
        let run_id = match begun {
            Ok(id) => id,
            Err(e) => {
                self.finished(&m.name);
                return Err(e);
            }
        };
        let shared = self.clone();
        tokio::spawn(async move {
            let status = shared.run_one(&m, trigger, run_id).await;
            shared.results.lock().unwrap_or_else(|e| e.into_inner()).push((m.name.clone(), status));
            shared.finished(&m.name);
        });
        Ok(Some(run_id))
    }

    fn finished(&self, name: &str) {
        let mut running = self.running();
        running.remove(name);
        if running.is_empty() {
            self.idle.notify_waiters();
        }
    }

    async fn run_one(&self, m: &Manifest, trigger: Trigger, run_id: i64) -> &'static str {
        let config = self.config();
        let permit = tokio::select! {
            p = self.permits.acquire() => p.ok(),
            () = self.cancel.cancelled() => None,
        };
        let Some(_permit) = permit else {
            let reason = "cancelled: rosterd was stopping before the run started".to_string();
            let end = crate::store::RunEnd { status: "failed", error: Some(reason), ..Default::default() };
            if let Err(e) = Store::open(&config.database).and_then(|mut s| s.finish_run(run_id, &end)) {
                tracing::error!(integration = %m.name, "cannot record a cancelled run: {e}");
            }
            return "failed";
        };
        let opts = RunOptions { trigger, dry_run: false, force: false, progress: false, run_id: Some(run_id) };
        match run::run(m, &config, opts, &self.cancel).await {
            Ok(report) => {
                if report.succeeded() {
                    tracing::info!(integration = %m.name, run_id = report.run_id, status = report.status,
                        created = report.created, updated = report.updated, deactivated = report.deactivated,
                        skipped = report.skipped, "run done");
                } else {
                    tracing::error!(integration = %m.name, run_id = report.run_id, status = report.status,
                        "run did not apply: {}", report.error.as_deref().unwrap_or(""));
                }
                report.status
            }
            Err(e) => {
                tracing::error!(integration = %m.name, "run could not start: {e}");
                "failed"
            }
        }
    }

    /// Waits until no run is going, or `limit` passes (`None`: no limit); true when idle.
    async fn wait_idle(&self, limit: Option<Duration>) -> bool {
        let deadline = limit.map(|l| tokio::time::Instant::now() + l);
        loop {
            let notified = self.idle.notified();
            if self.running().is_empty() {
                return true;
            }
            match deadline {
                None => notified.await,
                Some(at) => {
                    if tokio::time::timeout_at(at, notified).await.is_err() {
                        return self.running().is_empty();
                    }
                }
            }
        }
    }
}

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
    shared: Arc<Shared>,
    flag: Option<PathBuf>,
    entries: HashMap<PathBuf, Entry>,
    /// Files that failed validation, with the stamp they had, so errors are logged once per change.
    broken: HashMap<PathBuf, Stamp>,
}

/// Runs the daemon until SIGTERM/SIGINT (or, with `once`, until every loaded integration ran once).
pub async fn serve(flag: Option<PathBuf>, config: Config, once: bool) -> Result<(), Error> {
    let permits = config.max_concurrent_runs.max(1);
    let shared = Arc::new(Shared {
        config: RwLock::new(Arc::new(config)),
        permits: Semaphore::new(permits),
        running: Mutex::new(HashSet::new()),
        idle: Notify::new(),
        cancel: Cancel::default(),
        results: Mutex::new(Vec::new()),
        manifests: RwLock::new(HashMap::new()),
        ticking: AtomicBool::new(false),
    });
    // Opening the store first makes a bad database path a start-up error, not a failed run later.
    Store::open(&shared.config().database)?;
    let api = if once { None } else { crate::api::bind(&shared.config()).await? };
    let mut daemon = Daemon { shared: shared.clone(), flag, entries: HashMap::new(), broken: HashMap::new() };
    daemon.rescan(false, !once);
    if once {
        return daemon.once().await;
    }
    let stop_api = Arc::new(Notify::new());
    let api_task = api.map(|listener| {
        let (shared, stop) = (shared.clone(), stop_api.clone());
        tokio::spawn(async move { crate::api::serve(listener, shared, async move { stop.notified().await }).await })
    });
    shared.ticking.store(true, Ordering::SeqCst);
    let n = daemon.entries.values().filter(|e| e.ticker.is_some()).count();
    notify_systemd(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status_line(n))]);
    tracing::info!("serving: {n} scheduled integration(s) from {}", shared.config().integrations_dir.display());

    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;
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
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    shared.ticking.store(false, Ordering::SeqCst);
    daemon.shutdown().await;
    stop_api.notify_waiters();
    if let Some(task) = api_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    Ok(())
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
        self.shared.config()
    }

    fn reload_config(&mut self) {
        match config::load(self.flag.as_deref()) {
            Ok(c) => {
                *self.shared.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(c);
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
        let known = self.entries.get(path).map(|e| &e.stamp).or_else(|| self.broken.get(path));
        if !force && known.is_some_and(|s| (s.modified, s.len) == quick) {
            return;
        }
        let Ok(text) = std::fs::read_to_string(path) else { return };
        let stamp = Stamp { modified: quick.0, len: quick.1, text };
        if !force && known.is_some_and(|s| s.text == stamp.text) {
            if let Some(e) = self.entries.get_mut(path) {
                e.stamp = stamp;
            } else if let Some(s) = self.broken.get_mut(path) {
                *s = stamp;
            }
            return;
        }
        let name = manifest::name_of(path);
        match manifest::parse(&name, path, &stamp.text, config) {
            Ok(m) => {
                self.broken.remove(path);
                let m = Arc::new(m);
                let ticker = (schedule && m.schedule.is_some()).then(|| self.start_ticker(m.clone()));
                let verb = if self.entries.contains_key(path) { "reloaded" } else { "loaded" };
                if let Some(old) = self.entries.insert(path.to_path_buf(), Entry { manifest: m.clone(), stamp, ticker })
                {
                    stop(old.ticker);
                }
                self.shared.manifests.write().unwrap_or_else(|e| e.into_inner()).insert(m.name.clone(), m.clone());
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
        self.shared.manifests.write().unwrap_or_else(|e| e.into_inner()).remove(name);
    }

    fn start_ticker(&self, m: Arc<Manifest>) -> JoinHandle<()> {
        let shared = self.shared.clone();
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
            self.shared.trigger(entry.manifest.clone(), Trigger::Schedule)?;
        }
        self.shared.wait_idle(None).await;
        let results = self.shared.results.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let bad: Vec<String> =
            results.iter().filter(|(_, s)| !matches!(*s, "ok" | "dry-run")).map(|(n, s)| format!("{n} {s}")).collect();
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
        let running: Vec<String> = self.shared.running().iter().cloned().collect();
        if !running.is_empty() {
            tracing::info!("stopping: waiting up to {}s for {}", grace.as_secs(), running.join(", "));
        }
        if !self.shared.wait_idle(Some(grace)).await {
            tracing::warn!("stopping: cancelling runs still going after {}s", grace.as_secs());
            self.shared.cancel.cancel();
            self.shared.wait_idle(Some(Duration::from_secs(30))).await;
        }
        tracing::info!("stopped");
    }
}

fn stop(ticker: Option<JoinHandle<()>>) {
    if let Some(t) = ticker {
        t.abort();
    }
}
