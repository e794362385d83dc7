//! `flashsale-load`: flags, the run, the report and the exit code. The work is
//! in the library (`flashsale_load`); see its `lib.rs` for the layout.
//!
//! Exit codes: 0 success, 1 the audit failed, 2 the run could not be done.

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use flashsale_load::report::RunResult;
use flashsale_load::run::{self, RunConfig};
use flashsale_load::scenario::ScenarioName;
use flashsale_load::tokens::{TokenAlgorithm, TokenMinter, PREMINT_USERS_PER_CONNECTION_MAX};
use flashsale_load::{plot, report, target};

const CONNECTIONS_MAX: u32 = 4096;
const DURATION_SECONDS_MAX: u64 = 3600;
const USERS_MAX: u64 = 10_000_000;
const RATE_PER_SECOND_MAX: f64 = 1_000_000.0;
const THREADS_MAX: usize = 64;

#[derive(Debug, Parser)]
#[command(
    name = "flashsale-load",
    version,
    about = "Load generator and audit for the flashsale server (loopback only)"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Draws the results of benches/compare.sh, or of one run (--out), as an SVG.
    Plot {
        /// The JSON written by benches/compare.sh or by a run's --out.
        results: PathBuf,
        /// The SVG to write.
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// Server to load; only loopback hosts are accepted.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// Scenario: its presets set connections, duration, users and the user mix.
    #[arg(long, value_enum, default_value = "light")]
    scenario: ScenarioName,
    /// Connections (one request loop each); overrides the scenario's.
    #[arg(long)]
    connections: Option<u32>,
    /// Run time; overrides the scenario's.
    #[arg(long)]
    duration_seconds: Option<u64>,
    /// Distinct users (spread over the connections); overrides the scenario's.
    /// Ignored with --checkout-only, which takes a fresh user every `user_limit` checkouts.
    #[arg(long)]
    users: Option<u64>,
    /// Fixed total rate (open loop): latency is measured from each request's
    /// intended send time, correcting coordinated omission.
    #[arg(long)]
    rate: Option<f64>,
    /// Only checkouts, fresh users every `user_limit` of them (baseline comparison).
    #[arg(long)]
    checkout_only: bool,
    /// Only checkouts of items that do not exist (404, each by a new user):
    /// what rejected requests cost the server (memory must not grow).
    #[arg(long)]
    reject_only: bool,
    /// Write the JSON result here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip the end-of-run audit.
    #[arg(long)]
    no_audit: bool,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Runtime worker threads. 1 leaves the other core to the server.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Per-request timeout.
    #[arg(long, default_value_t = 5000)]
    request_timeout_ms: u64,
    #[command(flatten)]
    token: TokenArgs,
}

/// Bearer tokens for a server with identity on (`--auth-jwks`).
#[derive(Debug, Args)]
struct TokenArgs {
    /// Sign a token per user with this key: an HS256 secret file, or an
    /// Ed25519 PKCS#8 PEM private key (with --token-alg eddsa).
    #[arg(long)]
    token_key: Option<PathBuf>,
    /// The algorithm of --token-key.
    #[arg(long, value_enum, default_value = "hs256", requires = "token_key")]
    token_alg: TokenAlgorithm,
    /// `kid` in the tokens' header.
    #[arg(long, requires = "token_key")]
    token_kid: Option<String>,
    /// `iss` of the tokens.
    #[arg(long, requires = "token_key")]
    token_issuer: Option<String>,
    /// `aud` of the tokens.
    #[arg(long, requires = "token_key")]
    token_audience: Option<String>,
    /// Tokens minted per connection before the timed run (0 to 4096), so
    /// that signing does not compete with the server for this machine's
    /// CPU; users beyond them get theirs minted on first use.
    #[arg(long, default_value_t = 0, requires = "token_key")]
    token_premint_users: u64,
}

impl TokenArgs {
    fn minter(self) -> anyhow::Result<Option<Arc<TokenMinter>>> {
        let Some(key) = self.token_key else {
            return Ok(None);
        };
        let minter = TokenMinter::from_file(
            &key,
            self.token_alg,
            self.token_kid,
            self.token_issuer,
            self.token_audience,
        )?;
        Ok(Some(Arc::new(minter)))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Plot { results, out }) => plot::plot_file(&results, &out).map(|()| {
            println_or_ignore(&format!("plot written to {}", out.display()));
            true
        }),
        None => load(cli.load),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the load; `Ok(false)` when the audit failed.
fn load(args: LoadArgs) -> anyhow::Result<bool> {
    let threads = args.threads;
    if !(1..=THREADS_MAX).contains(&threads) {
        bail!("--threads must be 1 to {THREADS_MAX}");
    }
    let out = args.out.clone();
    let config = config_of(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    let result = runtime.block_on(run::run(config))?;
    print_summary(&result);
    if let Some(out) = out {
        let json = serde_json::to_string_pretty(&result).context("encode the result")?;
        std::fs::write(&out, json + "\n").with_context(|| format!("write {}", out.display()))?;
        println_or_ignore(&format!("result written to {}", out.display()));
    }
    Ok(result.audit.as_ref().is_none_or(|audit| audit.passed()))
}

/// The table, the generator's own CPU use, schedule misses and the audit.
fn print_summary(result: &RunResult) {
    let mut text = report::table(result);
    if let Some(cpu_percent) = result.generator_cpu_percent_of_one_core {
        text += &format!("load generator CPU: {cpu_percent:.0}% of one core\n");
    }
    if result.schedule_missed + result.schedule_unsent > 0 {
        text += &format!(
            "fixed rate not held: {} scheduled requests missed, {} unsent (server or generator fell behind)\n",
            result.schedule_missed, result.schedule_unsent
        );
    }
    text += &format!("audit: {}\n", result.audit_status);
    if let Some(audit) = &result.audit {
        text += &format!(
            "audit checked {} users, {} acknowledged purchased items\n",
            audit.users_checked, audit.purchased_items_checked
        );
        for violation in &audit.violations {
            text += &format!("  VIOLATION: {violation}\n");
        }
        if audit.violations_count > audit.violations.len() as u64 {
            text += &format!("  ... {} violations in all\n", audit.violations_count);
        }
    }
    print_or_ignore(&text);
}

/// Prints without panicking when stdout is closed (`| head`): the result
/// file and the exit code still matter then.
fn print_or_ignore(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn println_or_ignore(text: &str) {
    print_or_ignore(&format!("{text}\n"));
}

/// Checks the flags against their limits and applies them over the scenario's presets.
fn config_of(args: LoadArgs) -> anyhow::Result<RunConfig> {
    let target = target::parse_target(&args.target)?;
    let preset = args.scenario.preset();
    let connections = args.connections.unwrap_or(preset.connections);
    if !(1..=CONNECTIONS_MAX).contains(&connections) {
        bail!("--connections must be 1 to {CONNECTIONS_MAX}");
    }
    let duration_seconds = args.duration_seconds.unwrap_or(preset.duration.as_secs());
    if !(1..=DURATION_SECONDS_MAX).contains(&duration_seconds) {
        bail!("--duration-seconds must be 1 to {DURATION_SECONDS_MAX}");
    }
    let users = args.users.unwrap_or(preset.users);
    if !(1..=USERS_MAX).contains(&users) {
        bail!("--users must be 1 to {USERS_MAX}");
    }
    if let Some(rate) = args.rate {
        if !(1.0..=RATE_PER_SECOND_MAX).contains(&rate) {
            bail!("--rate must be 1 to {RATE_PER_SECOND_MAX} requests per second");
        }
    }
    if args.token.token_premint_users > PREMINT_USERS_PER_CONNECTION_MAX {
        bail!("--token-premint-users must be 0 to {PREMINT_USERS_PER_CONNECTION_MAX}");
    }
    if !(1..=600_000).contains(&args.request_timeout_ms) {
        bail!("--request-timeout-ms must be 1 to 600000");
    }
    Ok(RunConfig {
        target,
        target_text: args.target,
        scenario: args.scenario,
        mix: preset.mix,
        connections,
        duration: Duration::from_secs(duration_seconds),
        users,
        rate_per_second: args.rate,
        checkout_only: args.checkout_only || args.reject_only,
        reject_only: args.reject_only,
        audit: !args.no_audit,
        progress: !args.no_progress,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        token_premint_users: args.token.token_premint_users,
        minter: args.token.minter()?,
    })
}
