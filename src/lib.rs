//! flashsale: an hourly flash sale of unique items, served over HTTP, with
//! every checkout and purchase durable in a write-ahead log before it is
//! answered.
//!
//! Layout (a request goes top to bottom; dependencies point down only):
//! - `server`: start (open the log, recover, exporter, bind) and the
//!   ordered stop; `shutdown`: the stop signal as a value.
//! - `http`: routes, thin handlers, the one mapping of errors to the contract.
//! - `limits`: per-user and per-client rate limits with bounded key counts.
//! - `service`: what the HTTP layer may ask: the write path (admit, engine
//!   decision, wait for durability), reads and the health report.
//! - `engine`: sold bitsets, users and carts, checkout/purchase decisions;
//!   its outgoing interface is `engine::Record` and the `engine::Journal`
//!   trait.
//! - `journal`: engine records as bytes (bincode 2.0.1) and `WalJournal`,
//!   the one door to the write-ahead log (`flashsale_wal`).
//! - `recovery`: read the log, replay it into the engine, audit.
//! - `snapshot`: the engine's state on disk at a log position (start from
//!   it, take it off the request path, delete the log it covers).
//! - `export`: the exactly-once exporter of log records to PostgreSQL.
//! - `domain`: ids, the sale schedule, deterministic items.
//! - `identity`: optional signed user tokens (JWKS keys, verification,
//!   the verified-token cache, reload on SIGHUP).
//! - `config`: the command line, validated settings with units and limits.
//! - `metrics`: the Prometheus registry and the log's observer.
#![forbid(unsafe_code)]

pub mod config;
pub mod domain;
pub mod engine;
pub mod export;
pub mod http;
pub mod identity;
pub mod journal;
pub mod limits;
pub mod metrics;
pub mod recovery;
pub mod replication;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod snapshot;

/// `error` and its causes, outermost first, joined by ": " (for the log,
/// and for answers that may show the whole chain).
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}
