//! Load generator, audit and baseline for the flashsale HTTP server.
//!
//! Benchmarkers must reproduce our numbers with one command and see how close
//! the server is to the limit of the machine; this crate is the client side of
//! that. It shares the machine (2 cores) with the server it measures, so every
//! request path here is written to be cheap.
//!
//! # Layout
//!
//! - [`target`]: the `--target` URL, refused unless it is a loopback address.
//! - [`http`]: one keep-alive HTTP/1.1 connection, hand-written and allocation-free per request.
//! - [`api`]: the routes and JSON shapes of the contract (`docs/api.md`), typed.
//! - [`scenario`]: the named scenarios and the user mix.
//! - [`schedule`]: the fixed-rate open-loop pacer (coordinated-omission correction).
//! - [`stats`]: per-endpoint latency histograms and status / error-code counts.
//! - [`ledger`]: acknowledged purchases, per user; [`audit`] checks them against the server.
//! - [`worker`]: the bounded request loops, one per connection.
//! - [`preflight`]: warnings before a run (sale sold out or full of users).
//! - [`run`]: one load run from start to audit.
//! - [`progress`]: the live progress bar; [`report`]: the table and the JSON result file.
//! - [`tokens`]: bearer tokens per user for servers with identity on.
//! - [`plot`]: an SVG of the `benches/compare.sh` results.
//! - [`baseline`]: the stateless actix-web server that is the ceiling.

#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod baseline;
pub mod http;
pub mod ledger;
pub mod plot;
pub mod preflight;
pub mod progress;
pub mod report;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod stats;
pub mod target;
pub mod tokens;
pub mod worker;
