//! The handle the daemon and the API share: the current config, the loaded
//! manifests, the run slots and which integrations are running. The daemon
//! fills it (folder polling, SIGHUP) and ticks through it; the API reads it
//! and triggers runs through it. Neither imports the other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::config::Config;
use crate::manifest::Manifest;
use crate::outcome::RunStatus;
use crate::port::Runs;
use crate::run::{self, Cancel, RunOptions, Trigger};
use crate::store::{Database, RunEnd, StoreError};

/// State shared by the daemon's tasks and the API's handlers.
pub struct Service {
    config: RwLock<Arc<Config>>,
    /// Run slots; tokio's semaphore hands them out in the order they were asked for.
    permits: Semaphore,
    /// Integrations with a run queued or running, and which.
    running: Mutex<HashMap<String, RunStatus>>,
    idle: Notify,
    cancel: Cancel,
    /// The last finished run's status per integration (for `--once`); one
    /// entry per integration, so a daemon that runs for months keeps no list.
    results: Mutex<HashMap<String, RunStatus>>,
    /// The loaded manifests by integration name (for the API).
    manifests: RwLock<HashMap<String, Arc<Manifest>>>,
    /// True while the scheduling loop runs (for `/healthz`).
    ticking: AtomicBool,
    /// The process's store, opened at first use (see `database`).
    db: Mutex<Option<Database>>,
}

impl Service {
    pub fn new(config: Config) -> Arc<Self> {
        let permits = config.max_concurrent_runs.max(1);
        Arc::new(Self {
            config: RwLock::new(Arc::new(config)),
            permits: Semaphore::new(permits),
            running: Mutex::new(HashMap::new()),
            idle: Notify::new(),
            cancel: Cancel::default(),
            results: Mutex::new(HashMap::new()),
            manifests: RwLock::new(HashMap::new()),
            ticking: AtomicBool::new(false),
            db: Mutex::new(None),
        })
    }

    /// The process's one handle on the store, opened (and migrated) at first
    /// use; a reloaded config whose `database` moved opens the new one.
    pub fn database(&self) -> Result<Database, StoreError> {
        let path = self.config().database.clone();
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = db.as_ref().filter(|d| d.path() == path) {
            return Ok(open.clone());
        }
        let open = Database::open(&path)?;
        *db = Some(open.clone());
        Ok(open)
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    fn running(&self) -> MutexGuard<'_, HashMap<String, RunStatus>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The integrations with a run queued or going now.
    pub fn running_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.running().keys().cloned().collect();
        names.sort();
        names
    }

    pub fn manifest(&self, name: &str) -> Option<Arc<Manifest>> {
        self.manifests.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    pub fn set_manifest(&self, m: Arc<Manifest>) {
        self.manifests.write().unwrap_or_else(|e| e.into_inner()).insert(m.name.clone(), m);
    }

    pub fn remove_manifest(&self, name: &str) {
        self.manifests.write().unwrap_or_else(|e| e.into_inner()).remove(name);
    }

    pub fn is_ticking(&self) -> bool {
        self.ticking.load(Ordering::SeqCst)
    }

    pub fn set_ticking(&self, on: bool) {
        self.ticking.store(on, Ordering::SeqCst);
    }

    /// Asks every run going to stop (it applies nothing).
    pub fn cancel_runs(&self) {
        self.cancel.cancel();
    }

    /// The last finished run's status of each integration that ran, by name.
    pub fn results(&self) -> Vec<(String, RunStatus)> {
        let mut out: Vec<(String, RunStatus)> =
            self.results.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(n, s)| (n.clone(), *s)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Starts a run of `m` and returns its run id, unless one is going: then a
    /// `skipped` run is recorded and `Ok(None)` returned.
    pub fn trigger(self: &Arc<Self>, m: Arc<Manifest>, trigger: Trigger) -> Result<Option<i64>, StoreError> {
        let busy = {
            let mut running = self.running();
            let busy = running.get(&m.name).copied();
            if busy.is_none() {
                running.insert(m.name.clone(), RunStatus::Queued);
            }
            busy
        };
        if let Some(busy) = busy {
            run::record_skipped(&mut *self.database()?.connect()?, &m, trigger, None, busy)?;
            return Ok(None);
        }
        let begun = self
            .database()
            .and_then(|db| db.connect())
            .and_then(|s| s.begin_run(&m.name, m.action.as_str(), trigger.as_str(), RunStatus::Queued));
        let run_id = match begun {
            Ok(id) => id,
            Err(e) => {
                self.finished(&m.name);
                return Err(e);
            }
        };
        let service = self.clone();
        tokio::spawn(async move {
            let status = service.run_one(&m, trigger, run_id).await;
            service.results.lock().unwrap_or_else(|e| e.into_inner()).insert(m.name.clone(), status);
            service.finished(&m.name);
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

    async fn run_one(&self, m: &Manifest, trigger: Trigger, run_id: i64) -> RunStatus {
        let config = self.config();
        let permit = tokio::select! {
            p = self.permits.acquire() => p.ok(),
            () = self.cancel.cancelled() => None,
        };
        if let Some(state) = self.running().get_mut(&m.name) {
            *state = RunStatus::Running;
        }
        let Some(_permit) = permit else {
            let reason = "cancelled: rosterd was stopping before the run started".to_string();
            let end = RunEnd {
                status: RunStatus::Failed,
                summary: Some(reason.clone()),
                error: Some(reason),
                ..Default::default()
            };
            if let Err(e) = self.database().and_then(|db| db.connect()).and_then(|mut s| s.finish_run(run_id, &end)) {
                tracing::error!(integration = %m.name, "cannot record a cancelled run: {e}");
            }
            return RunStatus::Failed;
        };
        let opts = RunOptions { trigger, dry_run: false, force: false, progress: false, run_id: Some(run_id) };
        let db = match self.database() {
            Ok(db) => db,
            Err(e) => {
                tracing::error!(integration = %m.name, run_id, "cannot open the store: {e}");
                return RunStatus::Failed;
            }
        };
        match run::run(m, &config, &db, opts, &self.cancel).await {
            Ok(report) => {
                let c = &report.counts;
                if report.succeeded() {
                    tracing::info!(integration = %m.name, run_id = report.run_id, status = %report.status,
                        created = c.created, updated = c.updated, deactivated = c.deactivated,
                        skipped = c.skipped, "run done");
                } else {
                    tracing::error!(integration = %m.name, run_id = report.run_id, status = %report.status,
                        "run did not apply: {}", report.error.as_deref().unwrap_or(""));
                }
                report.status
            }
            Err(e) => {
                tracing::error!(integration = %m.name, "run could not start: {e}");
                RunStatus::Failed
            }
        }
    }

    /// Waits until no run is going, or `limit` passes (`None`: no limit); true when idle.
    pub async fn wait_idle(&self, limit: Option<Duration>) -> bool {
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
