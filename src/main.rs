//! `flashsale`: parses flags, sets up logging, runs the chosen command, and
//! turns any failure into one line on stderr and a non-zero exit. Log lines
//! go to stdout, so stderr holds only that line.

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
            let rendered = error.to_string();
            let first_line = rendered.lines().next().unwrap_or("invalid command line");
            eprintln!("flashsale: {first_line} (see flashsale --help)");
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
            let application = flashsale::server::Application::build(args).await?;
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
        LogFormat::Json => builder.json().finish().with(throttle).init(),
    }
}
