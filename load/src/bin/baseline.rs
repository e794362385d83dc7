//! `flashsale-baseline`: the stateless actix-web ceiling (see
//! `flashsale_load::baseline`). Listens on loopback only, like every load here.

#![forbid(unsafe_code)]

use std::net::SocketAddr;

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

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
    flashsale_load::baseline::serve(cli.listen, workers)
        .await
        .with_context(|| format!("serve on {}", cli.listen))
}
