//! What the server loop knows of one connection, to close it at the right
//! time: when its bytes last moved, when the request now arriving began,
//! and how many of its requests are being answered. A connection whose
//! request headers take longer than the header timeout is closed (a slow
//! client holding a slot); one with no request for the idle timeout too;
//! one whose request is being answered never.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One connection's activity; times are milliseconds since `since`.
pub(super) struct Activity {
    since: Instant,
    last: AtomicU64,
    /// When the first byte of the request now arriving came (0: none is).
    request_began: AtomicU64,
    /// Requests being answered.
    active: AtomicUsize,
    /// Requests answered: a connection that has had none is waiting for its
    /// first request's headers, not idle between requests.
    answered: AtomicUsize,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            since: Instant::now(),
            last: AtomicU64::new(0),
            request_began: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            answered: AtomicUsize::new(0),
        }
    }
}

impl Activity {
    /// Milliseconds since the connection opened, at least 1 (0 means "none").
    fn now(&self) -> u64 {
        (self.since.elapsed().as_millis() as u64).max(1)
    }

    fn read(&self) {
        let now = self.now();
        self.last.store(now, Ordering::Relaxed);
        if self.active.load(Ordering::Relaxed) == 0 {
            let _ = self.request_began.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
    }

    /// Whether the connection should be closed now.
    pub(super) fn expired(&self, header: Duration, idle: Duration) -> bool {
        if self.active.load(Ordering::Relaxed) > 0 {
            return false;
        }
        let now = self.now();
        let over = |from: u64, limit: Duration| now.saturating_sub(from) > limit.as_millis() as u64;
        match self.request_began.load(Ordering::Relaxed) {
            // A new connection's first request has the header timeout from the connection's start.
            0 if self.answered.load(Ordering::Relaxed) == 0 => over(0, header),
            0 => over(self.last.load(Ordering::Relaxed), idle),
            began => over(began, header),
        }
    }
}

/// A stream that notes its reads and writes in an `Activity`.
pub(super) struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub(super) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A service that counts the requests it is answering in an `Activity`:
/// once one is handed to it, its headers have arrived.
#[derive(Clone)]
pub(super) struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Counted<S> {
    pub(super) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Counted { inner, activity }
    }
}

/// Counts a request as answered when dropped (done, or abandoned).
struct Answering(Arc<Activity>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.answered.fetch_add(1, Ordering::Relaxed);
        self.0.wrote();
    }
}

impl<S, R> tower_service::Service<R> for Counted<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.activity.active.fetch_add(1, Ordering::Relaxed);
        self.activity.request_began.store(0, Ordering::Relaxed);
        let answering = Answering(self.activity.clone());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answered = answer.await;
            drop(answering);
            answered
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_have_their_timeout_and_an_idle_connection_its_own() {
        let (header, idle) = (Duration::from_millis(30), Duration::from_millis(80));
        let a = Activity::default();
        std::thread::sleep(Duration::from_millis(40));
        assert!(a.expired(header, idle), "a new connection with no request: the header timeout");
        a.answered.fetch_add(1, Ordering::Relaxed); // as if it had one answered
        a.wrote();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!a.expired(header, idle), "idle, but not for 80 ms yet");
        a.read(); // the first byte of the next request
        std::thread::sleep(Duration::from_millis(40));
        assert!(a.expired(header, idle), "its headers took over 30 ms");
        a.active.fetch_add(1, Ordering::Relaxed); // handed to the service
        a.request_began.store(0, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
        assert!(!a.expired(header, idle), "never while a request is answered");
        a.active.fetch_sub(1, Ordering::Relaxed);
        a.wrote();
        assert!(!a.expired(header, idle), "just answered");
        std::thread::sleep(Duration::from_millis(100));
        assert!(a.expired(header, idle), "idle for over 80 ms");
    }
}
