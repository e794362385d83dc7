//! `flashsale`: parses flags, sets up logging, runs the chosen command, and
//! turns any failure into one line on stderr and a non-zero exit (a flag
//! error prints clap's own message, with its hints). Log lines go to
//! stdout, so stderr holds only that message.
//!
//! `RUST_LOG` sets what is logged (default `info`); `RUST_LOG=flashsale=debug`
//! adds one line per request.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use flashsale::config::{Cli, Command, LogFormat, SnapshotCommand};
use mimalloc::MiMalloc;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// mimalloc instead of the system allocator: every request allocates a
/// little (JSON, the log record, actix's request state); measured in
/// docs/benchmarks.md.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            // clap's own text, hints included ("a similar argument exists",
            // possible values, usage); it goes to stderr.
            let _ = error.print();
            return ExitCode::from(2);
        }
    };
    let log_format = match &cli.command {
        Command::Serve(args) => args.log_format,
        Command::Export(_) | Command::Snapshot(_) => LogFormat::Text,
    };
    init_tracing(log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("flashsale: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flashsale: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            // Listening for signals before the start, so that one sent
            // while the server starts stops it gracefully.
            let stop = flashsale::shutdown::signal();
            log_start(&args);
            let application = flashsale::server::Application::build(*args).await?;
            application.run(stop).await?;
            Ok(())
        }
        Command::Export(args) => Ok(flashsale::export::run_offline(args).await?),
        Command::Snapshot(SnapshotCommand::Inspect { path }) => {
            print!("{}", flashsale::snapshot::inspect::inspect(&path)?);
            Ok(())
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(std::io::stdout().is_terminal());
    // Client errors logged by the HTTP framework: bounded, not at ERROR.
    let throttle = flashsale::http::client_errors::ThrottleClientErrors::new();
    match format {
        LogFormat::Text => builder.finish().with(throttle).init(),
        // Flat: `message` and the fields at the top level of each line.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(throttle)
            .init(),
    }
}

/// One line that says where the data lives and how the server runs, before
/// anything is opened: what an operator checks first.
fn log_start(args: &flashsale::config::ServeArgs) {
    let data_dir =
        std::path::absolute(&args.store.data_dir).unwrap_or_else(|_| args.store.data_dir.clone());
    let identity = if args.auth.auth_jwks.is_some() {
        "on"
    } else {
        "off"
    };
    let sync_mode = if args.unsafe_no_fsync {
        "none"
    } else {
        "fdatasync"
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %data_dir.display(),
        listen = %args.listen,
        identity,
        sync_mode,
        "starting"
    );
}
