//! `flashsale-baseline`: the stateless actix-web ceiling (see
//! `flashsale_load::baseline`). Listens on loopback only, like every load here.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "flashsale-baseline",
    about = "Stateless actix-web server with the flashsale routes: the ceiling"
)]
struct Cli {
    /// Loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// actix-web worker threads (defaults to the number of cores, like the real server).
    #[arg(long)]
    workers: Option<usize>,
}

fn main() -> ExitCode {
    match serve(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flashsale-baseline: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn serve(cli: Cli) -> anyhow::Result<()> {
    if !cli.listen.ip().is_loopback() {
        bail!("--listen must be a loopback address, got {}", cli.listen);
    }
    let workers = cli
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |cores| cores.get()));
    if !(1..=64).contains(&workers) {
        bail!("--workers must be 1 to 64");
    }
    eprintln!(
        "flashsale-baseline listening on {} with {workers} workers",
        cli.listen
    );
    actix_web::rt::System::new()
        .block_on(flashsale_load::baseline::serve(cli.listen, workers))
        .with_context(|| format!("serve on {}", cli.listen))
}
