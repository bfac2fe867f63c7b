//! Sending a push's requests with at most `[push] concurrency` in flight,
//! each with release 1's retries, backoff and `Retry-After` (the client's).
//! A request that still fails is recorded and the rest go on. Stopping
//! means: no new request; those in flight are waited for.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use serde_json::Value;

use crate::fetch::{Client, FetchError, Renew, Request, Response, Retry, with_token};

/// How a create whose outcome is not known is recorded (it timed out, or a 5xx).
pub const UNKNOWN: &str =
    "outcome unknown (the target may have stored it; the next push's listing settles it, so it was not sent again)";
use crate::port::PushRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Create,
    Update,
    Remove,
    Bulk,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Create, Kind::Update, Kind::Remove, Kind::Bulk];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Update => "update",
            Kind::Remove => "remove",
            Kind::Bulk => "bulk",
        }
    }
}

/// One request to send, and whom it is about.
pub struct Job {
    pub kind: Kind,
    pub external_id: Option<String>,
    pub target_id: Option<String>,
    /// The request, or why it could not be made (recorded as its failure; nothing is sent).
    pub request: Result<Request, String>,
}

/// How the sends of one push answer a 401: the run's OAuth token is renewed
/// once for them all (the first refused request renews it, the others wait
/// and use the new one), and each refused request goes again once, its old
/// token's values swapped for the new ones.
pub struct SendRenewal {
    /// The token response the requests were rendered with.
    initial: Value,
    state: tokio::sync::Mutex<RenewState>,
}

struct RenewState {
    renewer: Box<dyn Renew>,
    /// The renewed token, once there is one.
    current: Option<Value>,
    /// A renewal failed: not tried again in this run.
    failed: bool,
}

impl SendRenewal {
    pub fn new(initial: Value, renewer: Box<dyn Renew>) -> SendRenewal {
        let state = RenewState { renewer, current: None, failed: false };
        SendRenewal { initial, state: tokio::sync::Mutex::new(state) }
    }

    /// `req`, refused with 401 (`refused`), sent again with the renewed token.
    async fn retry(
        &self,
        client: &mut Client,
        req: &Request,
        retry: Retry,
        refused: FetchError,
    ) -> Result<Response, FetchError> {
        let current = {
            let mut state = self.state.lock().await;
            if state.current.is_none() && !state.failed && state.renewer.can_renew() {
                let RenewState { renewer, .. } = &mut *state;
                match renewer.renew(client, &self.initial).await {
                    Ok(token) => {
                        tracing::info!("the target answered 401: renewed the OAuth token; sending again with it");
                        state.current = Some(token);
                    }
                    Err(e) => {
                        state.failed = true;
                        return Err(e);
                    }
                }
            }
            match &state.current {
                Some(token) => token.clone(),
                None => return Err(refused),
            }
        };
        client.send_with(&with_token(req, &self.initial, &current), retry).await
    }
}

/// Sends jobs concurrently and collects their outcomes (redacted).
pub struct Sender {
    client: Client,
    slots: Arc<Semaphore>,
    tasks: JoinSet<PushRow>,
    done: Vec<PushRow>,
    /// Requests in flight now, and the most there ever were.
    in_flight: Arc<AtomicUsize>,
    pub peak: Arc<AtomicUsize>,
    pub sent: u64,
    /// How a 401 is answered, for a push that uses an OAuth token.
    renewal: Option<Arc<SendRenewal>>,
}

impl Sender {
    /// A 401 renews the run's OAuth token once and sends again (see `SendRenewal`).
    pub fn with_renewal(mut self, renewal: Option<SendRenewal>) -> Sender {
        self.renewal = renewal.map(Arc::new);
        self
    }

    pub fn new(client: Client, concurrency: usize) -> Sender {
        Sender {
            client,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            tasks: JoinSet::new(),
            done: Vec::new(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
            sent: 0,
            renewal: None,
        }
    }

    /// Waits for a free slot, then starts `job`.
    pub async fn send(&mut self, job: Job) {
        let Ok(slot) = self.slots.clone().acquire_owned().await else { return };
        while let Some(Ok(row)) = self.tasks.try_join_next() {
            self.done.push(row);
        }
        let mut client = self.client.fork();
        let (in_flight, peak, renewal) = (self.in_flight.clone(), self.peak.clone(), self.renewal.clone());
        self.sent += 1;
        self.tasks.spawn(async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            // A create is sent again only when it cannot have reached the
            // target: a second one that did would make a duplicate account.
            let retry = if job.kind == Kind::Create { Retry::Unsent } else { Retry::Any };
            let (status, error) = match &job.request {
                Ok(request) => match send(&mut client, request, retry, renewal.as_deref()).await {
                    Ok(resp) => (Some(resp.status.as_u16()), None),
                    Err(e) => {
                        let text = client.redactor().redact(&e.to_string());
                        // After a timeout or a 5xx the target may have stored it: the
                        // next push's listing settles it, nothing is sent again now.
                        let unknown = job.kind == Kind::Create && e.status().is_none_or(|s| s >= 500);
                        let text = if unknown { format!("{UNKNOWN}: {text}") } else { text };
                        (e.status(), Some(text))
                    }
                },
                Err(why) => (None, Some(client.redactor().redact(why))),
            };
            in_flight.fetch_sub(1, Ordering::SeqCst);
            drop(slot);
            PushRow {
                kind: job.kind.as_str().to_string(),
                external_id: job.external_id.map(|id| client.redactor().redact(&id)),
                target_id: job.target_id.map(|id| client.redactor().redact(&id)),
                status,
                error,
            }
        });
    }

    /// The outcomes of requests that ended so far (each handed out once).
    pub fn take_done(&mut self) -> Vec<PushRow> {
        while let Some(Ok(row)) = self.tasks.try_join_next() {
            self.done.push(row);
        }
        std::mem::take(&mut self.done)
    }

    /// Waits for every request in flight; their outcomes and those not taken yet.
    pub async fn finish(&mut self) -> Vec<PushRow> {
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok(row) => self.done.push(row),
                Err(e) => self.done.push(PushRow {
                    kind: "unknown".into(),
                    external_id: None,
                    target_id: None,
                    status: None,
                    error: Some(format!("the request's task stopped: {e}")),
                }),
            }
        }
        std::mem::take(&mut self.done)
    }
}

/// Sends `request`; a 401 gets one renewal of the run's token (shared by the
/// push's sends) and one more try.
async fn send(
    client: &mut Client,
    request: &Request,
    retry: Retry,
    renewal: Option<&SendRenewal>,
) -> Result<Response, FetchError> {
    match (client.send_with(request, retry).await, renewal) {
        (Err(e), Some(renewal)) if e.status() == Some(401) => renewal.retry(client, request, retry, e).await,
        (result, _) => result,
    }
}
