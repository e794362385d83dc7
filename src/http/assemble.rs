//! The HTTP server assembled from actix's parts instead of
//! `actix_web::HttpServer`, for one reason: `HttpServer` serves the bare
//! `TcpStream`, and the server needs its own stream type (`stream.rs`) to
//! count connections, time out stuck writes and close idle connections.
//! The settings are the ones `HttpServer` would apply, plus ours.

use std::fmt;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{HttpService, Request, Response};
use actix_service::{
    fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt,
};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Server};

use super::connections::Tracker;
use super::stream::GuardedStream;
use crate::config::{
    CLIENT_DISCONNECT_TIMEOUT, CLIENT_REQUEST_TIMEOUT, KEEP_ALIVE_IDLE_TIMEOUT, LISTEN_BACKLOG_MAX,
    REQUEST_BODY_READ_TIMEOUT, RESPONSE_WRITE_STALL_TIMEOUT, SHUTDOWN_GRACE_TIMEOUT,
};

/// Timeouts against slow clients (see docs/security.md).
#[derive(Debug, Clone, Copy)]
pub struct SlowClientTimeouts {
    /// Request head (`client_request_timeout`; answered 408 by actix).
    pub request_head: Duration,
    /// Whole request body (the body middleware; 408).
    pub request_body: Duration,
    /// A response write stuck on a client that does not read.
    pub write_stall: Duration,
}

/// Serves `listener` with `workers` workers, each connection wrapped in a
/// `GuardedStream` counted by `tracker`.
pub fn server<F, I, S, B>(
    listener: TcpListener,
    workers: usize,
    tracker: Arc<Tracker>,
    timeouts: SlowClientTimeouts,
    connections_per_worker_max: usize,
    factory: F,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as actix_service::Service<Request>>::Future: 'static,
    B: MessageBody + 'static,
{
    let builder = actix_server::Server::build();
    let shutdown_signal = builder.graceful_shutdown_signal();
    let local_addr = listener.local_addr()?;
    builder
        .workers(workers)
        .backlog(LISTEN_BACKLOG_MAX)
        .max_concurrent_connections(connections_per_worker_max)
        .shutdown_timeout(SHUTDOWN_GRACE_TIMEOUT.as_secs())
        .disable_signals()
        .listen("flashsale-http", listener, move || {
            let signal = shutdown_signal.clone();
            let tracker = tracker.clone();
            let app = factory()
                .into_factory()
                .map_err(|error| error.into().error_response());
            let http = HttpService::<GuardedStream, _, _>::build()
                .graceful_shutdown_signal(move || {
                    let signal = signal.clone();
                    async move { signal.notified().await }
                })
                .keep_alive(KEEP_ALIVE_IDLE_TIMEOUT)
                .client_request_timeout(timeouts.request_head)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .h1_allow_half_closed(true)
                .local_addr(local_addr)
                .h1(map_config(app, |()| AppConfig::default()));
            fn_service(move |io: tokio::net::TcpStream| {
                let peer = io.peer_addr().ok();
                let _ = io.set_nodelay(true);
                let stream = GuardedStream::new(io, tracker.clone(), timeouts.write_stall);
                std::future::ready(Ok::<_, ()>((stream, peer)))
            })
            .and_then(http.map_err(|_| ()))
        })
        .map(actix_server::ServerBuilder::run)
}

/// Test-only: one timeout in milliseconds for the request head, the body
/// and stuck writes, so that tests of slow clients take seconds, not
/// minutes. Bounded; outside the bounds it is ignored.
const SLOW_CLIENT_TIMEOUT_ENV: &str = "FLASHSALE_TEST_SLOW_CLIENT_TIMEOUT_MS";
const SLOW_CLIENT_TIMEOUT_TEST_MS: std::ops::RangeInclusive<u64> = 100..=60_000;

/// The defences against slow and numerous clients, set up once at start.
pub struct SlowClients {
    pub tracker: Arc<Tracker>,
    pub timeouts: SlowClientTimeouts,
    pub per_worker: usize,
}

impl SlowClients {
    /// Raises the open-file limit, derives the connection cap from it,
    /// registers the metrics and starts the idle-connection sweeper.
    pub fn start(registry: &prometheus::Registry, workers: usize) -> std::io::Result<SlowClients> {
        let open_files_max = super::open_files::raise_open_files_limit();
        let caps = super::open_files::connection_caps(open_files_max, workers);
        let tracker = Tracker::new(caps, registry).map_err(std::io::Error::other)?;
        super::client_errors::register_metric(registry).map_err(std::io::Error::other)?;
        super::connections::spawn_sweeper(&tracker);
        let timeouts = slow_client_timeouts();
        tracing::info!(
            open_files_max,
            connections_max = caps.connections_max,
            connections_near_cap = caps.connections_near_cap,
            ?timeouts,
            "connection limits"
        );
        Ok(SlowClients {
            tracker,
            timeouts,
            per_worker: caps.connections_per_worker_max,
        })
    }
}

fn slow_client_timeouts() -> SlowClientTimeouts {
    let test_override = std::env::var(SLOW_CLIENT_TIMEOUT_ENV)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .filter(|ms| SLOW_CLIENT_TIMEOUT_TEST_MS.contains(ms));
    match test_override {
        Some(ms) => {
            let timeout = Duration::from_millis(ms);
            tracing::warn!(
                ms,
                "{SLOW_CLIENT_TIMEOUT_ENV}: slow-client timeouts shortened (tests only)"
            );
            SlowClientTimeouts {
                request_head: timeout,
                request_body: timeout,
                write_stall: timeout,
            }
        }
        None => SlowClientTimeouts {
            request_head: CLIENT_REQUEST_TIMEOUT,
            request_body: REQUEST_BODY_READ_TIMEOUT,
            write_stall: RESPONSE_WRITE_STALL_TIMEOUT,
        },
    }
}
