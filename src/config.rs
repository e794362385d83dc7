//! The command line and the settings it yields, validated once at start.
//!
//! Every flag also reads an environment variable (`FLASHSALE_` + the flag in
//! upper snake case), as the contract's "Command line" section says. Limits
//! of the HTTP server and the write path are constants here, with their
//! units in their names; limits of a sale (items, the per-user limit, the
//! page size, retention) are defined once, in `engine::config`, and the
//! flags' ranges use those definitions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::{
    ITEMS_PER_SALE_DEFAULT, ITEMS_PER_SALE_MAX, USER_LIMIT_DEFAULT, USER_LIMIT_MAX,
};

/// Largest request body accepted, in bytes (bodies are ignored).
pub const REQUEST_BODY_BYTES_MAX: usize = 4 * 1024;
/// Largest query string accepted, in bytes; parameters are short.
pub const QUERY_BYTES_MAX: usize = 1024;
/// Default of `--write-requests-in-flight-max`.
pub const WRITE_REQUESTS_IN_FLIGHT_MAX_DEFAULT: u32 = 16 * 1024;
/// Open connections per worker; beyond, the server stops accepting.
pub const CONNECTIONS_PER_WORKER_MAX: usize = 25_000;
/// Pending connections the kernel may queue for us.
pub const LISTEN_BACKLOG_MAX: u32 = 2048;
/// How long a client may take to send its request headers.
pub const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle keep-alive connection stays open.
pub const KEEP_ALIVE_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a client may take to send a whole request body (slow bodies,
/// trickled chunks); then 408 and the connection is closed.
pub const REQUEST_BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a response write may stay stuck on a client that does not
/// read (slow readers); then the connection is closed.
pub const RESPONSE_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection may linger for the client's last bytes.
pub const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Open files kept for the log, snapshots, PostgreSQL and the runtime;
/// the rest of the open-file limit is for connections.
pub const OPEN_FILES_RESERVE: u64 = 256;
/// Above this share of the connection cap, idle connections are closed
/// (oldest first) to make room for new ones.
pub const CONNECTIONS_NEAR_CAP_PERCENT: usize = 90;
/// A connection silent for less than this is never closed to make room.
pub const CONNECTION_IDLE_EVICTION_AGE_MIN: Duration = Duration::from_secs(1);
/// Client errors (bad requests the framework refuses) logged per second;
/// the rest are counted and summed up in one line.
pub const CLIENT_ERROR_LOG_LINES_PER_SECOND_MAX: u32 = 10;
/// Longest echo of a client's path, query or body in an error message.
pub const ECHO_CHARS_MAX: usize = 100;
/// `Retry-After` for 429 and 503 answers, in seconds.
pub const RETRY_AFTER_SECONDS: u32 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "flashsale",
    version,
    about = "An hourly flash sale with a durable log"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (no flags: embedded defaults, no PostgreSQL).
    Serve(Box<ServeArgs>),
    /// Export the log in DATA_DIR to PostgreSQL, offline (backfills).
    Export(ExportArgs),
    /// Look at the snapshots of a data directory.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Print what a snapshot holds: PATH is a snapshot file, a snapshots
    /// directory or a data directory (then its newest valid snapshot).
    Inspect {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "FLASHSALE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub store: StoreArgs,

    /// PostgreSQL URL for the analytics export; none: export off.
    #[arg(long, env = "FLASHSALE_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Seconds between export runs.
    #[arg(long, env = "FLASHSALE_EXPORT_INTERVAL", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub export_interval: u64,

    /// Log lines as human-readable text or as JSON.
    #[arg(long, env = "FLASHSALE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Checkouts and purchases in flight at once (waiting for the log);
    /// beyond it, writes answer 429 with Retry-After.
    #[arg(long, env = "FLASHSALE_WRITE_REQUESTS_IN_FLIGHT_MAX",
          default_value_t = WRITE_REQUESTS_IN_FLIGHT_MAX_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub write_requests_in_flight_max: u32,

    /// Per-user and per-client rates, trusted proxies, users per sale.
    #[command(flatten)]
    pub limits: crate::limits::LimitArgs,

    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "FLASHSALE_WORKERS", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=256))]
    pub workers: u16,

    /// Longest time, in microseconds, the log holds a group commit while it
    /// is busy, for appenders known to be on their way (0: off). Never
    /// applied when the log is idle.
    #[arg(long, env = "FLASHSALE_COMMIT_DELAY_MAX_US", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub commit_delay_max_us: u64,

    /// UNSAFE, for benchmarks only: never fsync the log. A crash or power
    /// loss can then lose acknowledged purchases.
    #[arg(long, env = "FLASHSALE_UNSAFE_NO_FSYNC", default_value_t = false)]
    pub unsafe_no_fsync: bool,

    /// Shift the server's clock by this many seconds (rehearsals and tests
    /// of an hour change).
    #[arg(
        long,
        env = "FLASHSALE_CLOCK_OFFSET_SECONDS",
        default_value_t = 0,
        hide = true,
        allow_negative_numbers = true
    )]
    pub clock_offset_seconds: i64,

    #[command(flatten)]
    pub auth: AuthArgs,

    /// Durable records between snapshots (in DATA_DIR/snapshots/); one is
    /// also written at shutdown.
    #[arg(long, env = "FLASHSALE_SNAPSHOT_INTERVAL_RECORDS",
          default_value_t = SNAPSHOT_INTERVAL_RECORDS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=SNAPSHOT_INTERVAL_RECORDS_MAX))]
    pub snapshot_interval_records: u64,

    /// Largest log segment file, in bytes; retention deletes whole
    /// segments.
    #[arg(long, env = "FLASHSALE_LOG_SEGMENT_BYTES",
          default_value_t = LOG_SEGMENT_BYTES_DEFAULT,
          value_parser = clap::value_parser!(u64).range(LOG_SEGMENT_BYTES_MIN..=LOG_SEGMENT_BYTES_MAX))]
    pub log_segment_bytes: u64,

    #[command(flatten)]
    pub replication: ReplicationArgs,
}

/// Replication to NATS JetStream (optional, `crate::replication`): without
/// `--replicate-to` the node is alone and owns its writes.
#[derive(Debug, Clone, Args)]
pub struct ReplicationArgs {
    /// NATS servers (`nats://host:port`, comma separated); turns
    /// replication on: writes are answered once their records are also in
    /// the stream, and one node at a time owns the writes.
    #[arg(
        long,
        env = "FLASHSALE_REPLICATE_TO",
        value_name = "NATS_URL[,NATS_URL...]",
        value_delimiter = ','
    )]
    pub replicate_to: Vec<String>,

    /// This node's name among the nodes of the stream (default: the host
    /// name).
    #[arg(long, env = "FLASHSALE_NODE_ID", value_parser = parse_node_id)]
    pub node_id: Option<String>,

    /// The JetStream stream of the log (its lease bucket is `NAME-lease`).
    #[arg(long, env = "FLASHSALE_STREAM", default_value = "flashsale",
          value_parser = parse_stream_name)]
    pub stream: String,

    /// Copies of the stream and of the lease bucket (1 for a single NATS
    /// server).
    #[arg(long, env = "FLASHSALE_STREAM_REPLICAS", default_value_t = 3,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub stream_replicas: u8,

    /// Silence of the owner, in seconds, after which a standby takes over.
    #[arg(long, env = "FLASHSALE_LEASE_SECONDS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub lease_seconds: u32,
}

/// Longest `--node-id` and `--stream`, in bytes.
pub const REPLICATION_NAME_BYTES_MAX: usize = 64;

fn parse_replication_name(text: &str, what: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if text.is_empty() || text.len() > REPLICATION_NAME_BYTES_MAX || !text.chars().all(allowed) {
        return Err(format!(
            "{what} must be 1 to {REPLICATION_NAME_BYTES_MAX} letters, digits, '-' or '_'"
        ));
    }
    Ok(text.to_string())
}

fn parse_node_id(text: &str) -> Result<String, String> {
    parse_replication_name(text, "a node id")
}

fn parse_stream_name(text: &str) -> Result<String, String> {
    parse_replication_name(text, "a stream name")
}

/// Default of `--snapshot-interval-records`.
pub const SNAPSHOT_INTERVAL_RECORDS_DEFAULT: u64 = 1_000_000;
/// Largest `--snapshot-interval-records`.
pub const SNAPSHOT_INTERVAL_RECORDS_MAX: u64 = 1_000_000_000_000;
/// Default of `--log-segment-bytes` (64 MiB).
pub const LOG_SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Smallest `--log-segment-bytes` (1 MiB).
pub const LOG_SEGMENT_BYTES_MIN: u64 = 1024 * 1024;
/// Largest `--log-segment-bytes` (16 GiB).
pub const LOG_SEGMENT_BYTES_MAX: u64 = 16 * 1024 * 1024 * 1024;

/// Identity (optional, see `crate::identity`): without `--auth-jwks` any
/// client may act as any user.
#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {
    /// JSON Web Key Set of the keys that may sign user tokens; turns
    /// identity on (writes need `Authorization: Bearer`). Reread on SIGHUP.
    #[arg(long, env = "FLASHSALE_AUTH_JWKS", value_name = "FILE")]
    pub auth_jwks: Option<PathBuf>,

    /// With identity on: the `iss` every token must carry.
    #[arg(
        long,
        env = "FLASHSALE_AUTH_ISSUER",
        value_name = "ISS",
        requires = "auth_jwks"
    )]
    pub auth_issuer: Option<String>,

    /// With identity on: the `aud` every token must carry.
    #[arg(
        long,
        env = "FLASHSALE_AUTH_AUDIENCE",
        value_name = "AUD",
        requires = "auth_jwks"
    )]
    pub auth_audience: Option<String>,
}

/// Where the log lives and what a sale looks like: shared by `serve` and
/// `export`, since both must read the same log the same way.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Data directory; the log lives in DATA_DIR/wal/.
    #[arg(long, env = "FLASHSALE_DATA_DIR", default_value = "./data",
          value_parser = data_dir_path)]
    pub data_dir: PathBuf,

    /// Unique items in every sale.
    #[arg(long, env = "FLASHSALE_ITEMS_PER_SALE", default_value_t = ITEMS_PER_SALE_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(ITEMS_PER_SALE_MAX)))]
    pub items_per_sale: u32,

    /// Most items one user may buy in one sale.
    #[arg(long, env = "FLASHSALE_USER_LIMIT", default_value_t = USER_LIMIT_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(USER_LIMIT_MAX)))]
    pub user_limit: u32,
}

/// A data directory path. A leading `~` is refused: the shell expands it
/// only at the start of a word, so `--data-dir=~/x` arrives as is and would
/// silently create a directory named `~` in the current one.
fn data_dir_path(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("the data directory must not be empty".into());
    }
    if text.starts_with('~') {
        return Err(format!(
            "`{text}` starts with `~`, which the shell did not expand; \
             write the full path (e.g. --data-dir \"$HOME/...\")"
        ));
    }
    Ok(PathBuf::from(text))
}

impl StoreArgs {
    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir.join("wal")
    }
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// PostgreSQL URL to export to.
    #[arg(long, env = "FLASHSALE_DATABASE_URL")]
    pub database_url: String,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Export what the log holds now, then exit (default: keep following).
    #[arg(long, default_value_t = false)]
    pub once: bool,

    /// Seconds between export runs when following the log.
    #[arg(long, env = "FLASHSALE_EXPORT_INTERVAL", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub export_interval: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_without_flags_uses_the_contract_defaults() {
        let cli = Cli::try_parse_from(["flashsale", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(args.store.data_dir, PathBuf::from("./data"));
        assert_eq!(args.store.wal_dir(), PathBuf::from("./data/wal"));
        assert_eq!(args.store.items_per_sale, 10_000);
        assert_eq!(args.store.user_limit, 10);
        assert_eq!(args.database_url, None);
        assert_eq!(args.export_interval, 5);
        assert!(!args.unsafe_no_fsync);
        assert_eq!(args.commit_delay_max_us, 200);
        assert_eq!(args.snapshot_interval_records, 1_000_000);
        assert_eq!(args.log_segment_bytes, 67_108_864);
    }

    #[test]
    fn a_log_segment_under_one_mebibyte_is_refused() {
        let parse =
            |bytes: &str| Cli::try_parse_from(["flashsale", "serve", "--log-segment-bytes", bytes]);
        assert!(parse("1048575").is_err());
        assert!(parse("1048576").is_ok());
        let zero = ["flashsale", "serve", "--snapshot-interval-records", "0"];
        assert!(Cli::try_parse_from(zero).is_err());
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for bad in [
            vec!["flashsale", "serve", "--user-limit", "0"],
            vec!["flashsale", "serve", "--items-per-sale", "2000000"],
            vec!["flashsale", "serve", "--listen", "nowhere"],
            vec!["flashsale", "serve", "--export-interval", "0"],
            vec!["flashsale", "export", "--data-dir", "x"],
            vec!["flashsale", "serve", "--data-dir=~/x"],
            vec!["flashsale", "serve", "--data-dir", "~"],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?}");
        }
    }
}
