//! Shutdown as a value: one `Shutdown` is made at start, cloned into every
//! long-running part (the write path, the exporter, the HTTP server's
//! stopper), and begun once, by a signal or by a test.
//!
//! Why one value (mini-redis's `run(listener, shutdown)`): the parts must
//! stop in an order that keeps the durability promise: refuse new writes,
//! let admitted requests finish and get their answers, let the exporter
//! finish its batch, then close the log. `Shutdown` says *that* the server
//! is stopping; `server::Application::run` says in which order the parts
//! stop, in one place.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Cloneable; every clone sees the same state.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    begun: AtomicBool,
    notify: Notify,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Starts the shutdown; idempotent.
    pub fn begin(&self) {
        self.inner.begun.store(true, Ordering::Release);
        self.inner.notify.notify_waiters();
    }

    /// One atomic load: cheap enough for every write request.
    pub fn is_begun(&self) -> bool {
        self.inner.begun.load(Ordering::Acquire)
    }

    /// Completes once `begin` has been called (at once if it was).
    pub async fn wait(&self) {
        loop {
            // Registered before the check, so a `begin` in between wakes it.
            let notified = self.inner.notify.notified();
            if self.is_begun() {
                return;
            }
            notified.await;
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C): what `flashsale serve` passes
/// to `Application::run`. The handlers are installed by this call, not
/// when the future is first polled: a signal that arrives while the
/// server is still starting (after it said "serving", say) stops it
/// gracefully instead of killing it. Must be called inside the runtime.
#[cfg(unix)]
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let installed = signal(SignalKind::terminate())
        .and_then(|terminate| Ok((terminate, signal(SignalKind::interrupt())?)));
    async move {
        match installed {
            Ok((mut terminate, mut interrupt)) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

#[cfg(not(unix))]
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_started_before_begin_is_woken() {
        let shutdown = Shutdown::new();
        let waiter = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!shutdown.is_begun());
        shutdown.begin();
        waiter.await.unwrap();
        assert!(shutdown.is_begun());
    }

    #[tokio::test]
    async fn a_wait_after_begin_returns_at_once() {
        let shutdown = Shutdown::new();
        shutdown.begin();
        shutdown.clone().wait().await;
        shutdown.begin();
        assert!(shutdown.is_begun());
    }
}
