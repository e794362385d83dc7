//! Client errors in the server log: bounded, and not at ERROR.
//!
//! actix answers malformed requests itself (bad request line, bad version,
//! too many headers, a too-long head, a slow head) and logs each one at
//! ERROR ("stream error: ..."); `accept` failures are logged every 0.5 s.
//! A flood of bad requests would fill the disk with lines that are the
//! client's fault. This tracing layer takes those events out of the log
//! and writes instead at most `CLIENT_ERROR_LOG_LINES_PER_SECOND_MAX` lines
//! a second (client errors at INFO, accept failures at WARN), then one
//! summary line with the count of the lines left out. Every such event is
//! counted in `flashsale_http_client_errors_total`.
//!
//! Our own request-failure lines (`flashsale::http` warnings) pass the same
//! budget.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Instant;

use parking_lot::Mutex;
use prometheus::IntCounter;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::config::{CLIENT_ERROR_LOG_LINES_PER_SECOND_MAX, ECHO_CHARS_MAX};

/// Target of the lines this layer writes.
const TARGET: &str = "flashsale::http::client_errors";

static CLIENT_ERRORS_TOTAL: OnceLock<IntCounter> = OnceLock::new();

/// Registers `flashsale_http_client_errors_total` (once per process; later calls do
/// nothing).
pub fn register_metric(registry: &prometheus::Registry) -> Result<(), prometheus::Error> {
    let counter = CLIENT_ERRORS_TOTAL.get_or_init(|| {
        IntCounter::new(
            "flashsale_http_client_errors_total",
            "Malformed requests and accept failures seen by the HTTP framework",
        )
        .expect("valid metric name")
    });
    registry.register(Box::new(counter.clone()))
}

/// `text` cut to `ECHO_CHARS_MAX` characters, for echoes of client input.
pub fn echo(text: &str) -> String {
    match text.char_indices().nth(ECHO_CHARS_MAX) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], text.len()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A malformed or too-slow request, answered by actix.
    Client,
    /// `accept` failed (e.g. out of file descriptors).
    Accept,
    /// One of our own per-request warnings.
    Ours,
}

fn kind(event: &Event<'_>) -> Option<Kind> {
    let metadata = event.metadata();
    let target = metadata.target();
    let level = *metadata.level();
    if target.starts_with("actix_http") && level <= Level::WARN {
        Some(Kind::Client)
    } else if target.starts_with("actix_server") && level == Level::ERROR {
        Some(Kind::Accept)
    } else if target == "flashsale::http" && level == Level::WARN {
        Some(Kind::Ours)
    } else {
        None
    }
}

/// The per-second line budget.
#[derive(Debug)]
struct Budget {
    second: u64,
    lines: u32,
    suppressed: u64,
}

/// What to do with one event.
struct Verdict {
    write: bool,
    /// Lines left out in earlier seconds, to report now.
    summary: Option<u64>,
}

impl Budget {
    fn admit(&mut self, second: u64) -> Verdict {
        let mut summary = None;
        if second != self.second {
            summary = (self.suppressed > 0).then_some(self.suppressed);
            *self = Budget {
                second,
                lines: 0,
                suppressed: 0,
            };
        }
        let write = self.lines < CLIENT_ERROR_LOG_LINES_PER_SECOND_MAX;
        if write {
            self.lines += 1;
        } else {
            self.suppressed += 1;
        }
        Verdict { write, summary }
    }
}

pub struct ThrottleClientErrors {
    started: Instant,
    budget: Mutex<Budget>,
}

impl ThrottleClientErrors {
    pub fn new() -> ThrottleClientErrors {
        ThrottleClientErrors {
            started: Instant::now(),
            budget: Mutex::new(Budget {
                second: 0,
                lines: 0,
                suppressed: 0,
            }),
        }
    }
}

impl Default for ThrottleClientErrors {
    fn default() -> Self {
        ThrottleClientErrors::new()
    }
}

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{}={value:?}", field.name());
    }
}

impl<S: Subscriber> Layer<S> for ThrottleClientErrors {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let Some(kind) = kind(event) else { return true };
        let second = self.started.elapsed().as_secs();
        let verdict = self.budget.lock().admit(second);
        if let Some(count) = verdict.summary {
            tracing::warn!(target: TARGET, lines_left_out = count, "client error lines left out of the log");
        }
        if kind == Kind::Ours {
            return verdict.write;
        }
        if let Some(counter) = CLIENT_ERRORS_TOTAL.get() {
            counter.inc();
        }
        if verdict.write {
            let mut message = Message::default();
            event.record(&mut message);
            let error = echo(&message.0);
            match kind {
                Kind::Accept => tracing::warn!(target: TARGET, error, "cannot accept a connection"),
                _ => tracing::info!(target: TARGET, error, "malformed or slow request refused"),
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_writes_the_budget_then_one_summary() {
        let mut budget = Budget {
            second: 0,
            lines: 0,
            suppressed: 0,
        };
        let written = (0..1000).filter(|_| budget.admit(0).write).count();
        assert_eq!(written, CLIENT_ERROR_LOG_LINES_PER_SECOND_MAX as usize);
        let next = budget.admit(1);
        assert_eq!(
            next.summary,
            Some(1000 - u64::from(CLIENT_ERROR_LOG_LINES_PER_SECOND_MAX))
        );
        assert!(next.write);
    }

    #[test]
    fn long_echoes_are_cut_to_the_limit() {
        let long = "a".repeat(60_000);
        let cut = echo(&long);
        assert!(cut.len() < ECHO_CHARS_MAX + 30, "{}", cut.len());
        assert_eq!(echo("short"), "short");
    }
}
