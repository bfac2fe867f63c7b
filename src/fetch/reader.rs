//! Reads pages into the record arena on a thread of its own, in the order
//! they arrived, so the fetch can ask for the next page while this one is
//! read: the fetch only skims a page for its next link and record count.
//! At most `QUEUE` pages wait; a failed page stops the reader, and the fetch
//! notices at its next hand-over.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::FetchError;
use super::client::excerpt;
use super::project::Projection;
use crate::manifest::Manifest;
use crate::mapping::{RecordArena, map_record};

/// Pages handed over and not yet read; each is one response body at most.
const QUEUE: usize = 2;

pub(super) enum Page {
    /// A body to read by `projection` (the one the walk skimmed it with);
    /// `what` names the request for an error (`page 3 (GET url)`).
    Body { body: Vec<u8>, projection: Arc<Projection>, what: String },
    /// Records of a page already parsed whole.
    Items(Vec<Value>),
}

/// What reading gave: the records, the first record as sent, and the milliseconds it took.
type Read = (RecordArena, Option<Value>, u64);

pub(super) struct Reader {
    queue: Option<mpsc::Sender<Page>>,
    thread: JoinHandle<Result<Read, FetchError>>,
}

impl Reader {
    pub fn start(m: &Manifest) -> Reader {
        let (queue, mut pages) = mpsc::channel::<Page>(QUEUE);
        let m = m.clone();
        let thread = tokio::task::spawn_blocking(move || {
            let mut arena = RecordArena::default();
            // The first record as the source sent it: what a path that matches
            // nothing is compared with ("did you mean").
            let mut first: Option<Value> = None;
            // Time spent reading pages (it overlaps the fetch of the next ones).
            let mut busy = std::time::Duration::ZERO;
            while let Some(page) = pages.blocking_recv() {
                let started = std::time::Instant::now();
                match page {
                    Page::Items(items) => {
                        if first.is_none() {
                            first = items.first().cloned();
                        }
                        let base = arena.len();
                        for (i, item) in items.iter().enumerate() {
                            arena.push(&map_record(&m.data_structure, base + i, item));
                        }
                    }
                    Page::Body { body, projection, what } => {
                        let before = arena.len();
                        projection.read(&body, &m, &mut arena).map_err(|e| FetchError::NotJson {
                            request: what,
                            reason: super::json_reason(&e),
                            excerpt: excerpt(&body),
                        })?;
                        // Once per run: the first page with records, parsed whole.
                        if first.is_none() && arena.len() > before {
                            first = serde_json::from_slice::<Value>(&body)
                                .ok()
                                .and_then(|page| m.data_from.take(page))
                                .and_then(|list| list.as_array().and_then(|l| l.first().cloned()));
                        }
                    }
                }
                busy += started.elapsed();
            }
            Ok((arena, first, busy.as_millis() as u64))
        });
        Reader { queue: Some(queue), thread }
    }

    /// Hands a page over, waiting while `QUEUE` pages wait. False when the
    /// reader has stopped on a failed page: `finish` gives its error.
    pub async fn hand(&mut self, page: Page) -> bool {
        match &self.queue {
            Some(queue) => queue.send(page).await.is_ok(),
            None => false,
        }
    }

    /// Waits for every page handed over to be read: the records, the first
    /// record as the source sent it, and the milliseconds spent reading.
    pub async fn finish(mut self) -> Result<Read, FetchError> {
        self.queue = None;
        match self.thread.await {
            Ok(result) => result,
            Err(e) => Err(FetchError::Reader(e.to_string())),
        }
    }
}
