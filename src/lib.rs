//! flashsale: an hourly flash sale of unique items, served over HTTP, with
//! every checkout and purchase durable in a write-ahead log before it is
//! answered.
//!
//! Layout (a request goes top to bottom):
//! - `http`: routes, thin handlers, the one mapping of errors to the contract.
//! - `service`: the write path: engine decision, log append, wait for fsync.
//! - `engine`: sold bitsets, users and carts, checkout/purchase decisions.
//! - `journal`: engine events as versioned log records (bincode 2.0.1).
//! - `recovery`: replay of the log into the engine, then an invariant audit.
//! - `export`: the exactly-once exporter of log records to PostgreSQL.
//! - `domain`: ids, the sale schedule, deterministic items.
//! - `config`: validated settings with units and limits.
#![forbid(unsafe_code)]

pub mod config;
pub mod domain;
pub mod engine;
pub mod export;
pub mod http;
pub mod journal;
pub mod metrics;
pub mod recovery;
pub mod server;
pub mod service;
pub mod shutdown;
