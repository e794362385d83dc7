//! The socket every connection is served over. actix has no write timeout
//! and cannot close an idle connection on demand, so this wrapper adds
//! both: a response write that makes no complete progress for
//! `write_stall_timeout` fails (slow readers are cut off), and a connection
//! the tracker marks for eviction reads end-of-stream, which makes actix
//! close it (idle connections are closed first near the cap). Dropping the
//! stream tells the tracker the connection is gone: the count is exact.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::connections::Tracker;

/// What the tracker knows of one connection, shared with its stream.
#[derive(Debug, Default)]
pub(super) struct ConnectionShared {
    /// Milliseconds since the tracker's epoch of the last byte in or out.
    pub(super) last_active_ms: AtomicU64,
    /// Set by the tracker: the next read ends the stream.
    pub(super) evict: AtomicBool,
    /// Woken to let the connection see `evict`.
    pub(super) read_waker: AtomicWaker,
}

pub(super) struct GuardedStream {
    io: TcpStream,
    id: u64,
    shared: Arc<ConnectionShared>,
    tracker: Arc<Tracker>,
    write_stall_timeout: Duration,
    /// Armed while a write is incomplete; fires the stall error.
    write_stall: Option<Pin<Box<Sleep>>>,
}

impl GuardedStream {
    pub(super) fn new(io: TcpStream, tracker: Arc<Tracker>, write_stall_timeout: Duration) -> Self {
        let (id, shared) = tracker.opened();
        GuardedStream {
            io,
            id,
            shared,
            tracker,
            write_stall_timeout,
            write_stall: None,
        }
    }

    fn touch(&self) {
        let now = self.tracker.now_ms();
        self.shared.last_active_ms.store(now, Ordering::Relaxed);
    }

    /// Polls the stall timer, arming it first if needed; ready when the
    /// write has been stuck too long.
    fn write_stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let timeout = self.write_stall_timeout;
        let timer = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        timer.as_mut().poll(cx).is_ready()
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.tracker.closed(self.id);
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.shared.read_waker.register(cx.waker());
        if this.shared.evict.load(Ordering::Acquire) {
            // End of stream: actix closes the connection.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.touch();
        }
        poll
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(Ok(written)) => {
                this.touch();
                if written == buf.len() {
                    this.write_stall = None;
                } else {
                    // Partial: the client reads slower than we write; the
                    // clock runs until a write goes through whole.
                    this.write_stalled(cx);
                }
                Poll::Ready(Ok(written))
            }
            Poll::Pending if this.write_stalled(cx) => {
                this.tracker.write_stalled();
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stopped reading the response",
                )))
            }
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
