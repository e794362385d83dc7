//! One load run, start to finish: ask the server for the active sale, start
//! one worker per connection (and the pacer in fixed-rate mode), show
//! progress, merge the workers' results, and audit the server against them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use crate::api::{self, SaleInfo, UserLabel};
use crate::audit::{self, AuditReport};
use crate::http::Connection;
use crate::ledger::Ledger;
use crate::progress;
use crate::report::{self, RunResult};
use crate::scenario::{Mix, ScenarioName};
use crate::schedule::{self, Schedule, QUEUED_PER_CONNECTION_MAX};
use crate::stats::{LiveCounters, Stats};
use crate::target::Target;
use crate::tokens::PremintedTokens;
use crate::worker::{Shared, Worker, WorkerOutcome, WorkerPlan};

/// Requests per second one connection can never exceed; bounds every loop
/// by `duration * this` requests on top of the deadline.
const REQUESTS_PER_CONNECTION_SECOND_MAX: u64 = 1_000_000;
/// Delay between setting up the open-loop schedule and its first request.
const SCHEDULE_START_DELAY: Duration = Duration::from_millis(50);

/// A validated run description (see `main.rs` for the flags and their limits).
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Target,
    pub target_text: String,
    pub scenario: ScenarioName,
    pub mix: Mix,
    pub connections: u32,
    pub duration: Duration,
    pub users: u64,
    pub rate_per_second: Option<f64>,
    pub checkout_only: bool,
    /// Checkouts of items that do not exist: every answer is a 404.
    pub reject_only: bool,
    pub audit: bool,
    pub progress: bool,
    pub request_timeout: Duration,
    /// Mints bearer tokens per user (servers with identity on).
    pub minter: Option<Arc<crate::tokens::TokenMinter>>,
    /// Tokens minted per connection before the timed run.
    pub token_premint_users: u64,
}

/// Runs the load and the audit and returns the result (audit failure is in
/// `audit_status`, not an error: the result is still worth writing).
pub async fn run(config: RunConfig) -> anyhow::Result<RunResult> {
    let mut setup = Connection::new(config.target.clone(), config.request_timeout);
    let discovered = discover(&config, &mut setup).await?;
    let live = Arc::new(LiveCounters::default());
    let run_id = run_id();
    let shared = Shared {
        sale: Arc::new(discovered.sale.clone()),
        live: Arc::clone(&live),
        stop: Arc::new(AtomicBool::new(false)),
        minter: config.minter.clone(),
        preminted: Arc::new(premint_tokens(&config, run_id)?),
    };
    let stop_on_interrupt = Arc::clone(&shared.stop);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop_on_interrupt.store(true, Ordering::Relaxed);
        }
    });
    let (done_sender, done) = watch::channel(false);
    let progress = config
        .progress
        .then(|| tokio::spawn(progress::show_progress(live, config.duration, done)));
    let cpu_seconds_start = report::process_cpu_seconds();
    let start = Instant::now();
    let (outcomes, missed) = run_workers(&config, &shared, start, run_id).await;
    let measured = Measured {
        elapsed_seconds: start.elapsed().as_secs_f64(),
        cpu_seconds: report::process_cpu_seconds()
            .zip(cpu_seconds_start)
            .map(|(end, begin)| end - begin),
        missed,
    };
    let _ = done_sender.send(true);
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    let merged = Merged::of(outcomes);
    let (audit_status, audit) =
        audit_step(&config, &mut setup, &discovered, &merged.ledger).await?;
    Ok(result_of(
        &config,
        &discovered,
        &measured,
        &merged,
        audit_status,
        audit,
    ))
}

/// What the target said about itself before the load.
struct Discovered {
    sale: SaleInfo,
    /// The stateless baseline says so in `/health`; auditing it is pointless.
    target_is_baseline: bool,
}

/// Asks the target who it is (`/health`) and which sale is active.
async fn discover(config: &RunConfig, setup: &mut Connection) -> anyhow::Result<Discovered> {
    let (health_status, health_body) = api::fetch_health(setup)
        .await
        .with_context(|| format!("cannot reach {} (GET /health)", config.target_text))?;
    let target_is_baseline = health_body.contains("\"baseline\":true");
    if health_status != 200 {
        eprintln!("warning: GET /health answered {health_status}: {health_body}");
    }
    let sale = match api::fetch_active_sale(setup).await {
        Ok(sale) => sale,
        Err(error) => {
            eprintln!("warning: {error:#}; assuming the SPEC defaults for the current UTC hour");
            SaleInfo::current_hour_default()
        }
    };
    // The probe would need a token with identity on; the sale's counts
    // still tell a sold-out sale.
    let probe_error = match (&config.minter, target_is_baseline) {
        (None, false) => crate::preflight::probe_new_user(setup, &sale).await,
        _ => None,
    };
    for line in crate::preflight::warnings(&sale, probe_error.as_deref()) {
        eprintln!("warning: {line}");
    }
    Ok(Discovered {
        sale,
        target_is_baseline,
    })
}

/// Time, CPU and schedule figures of the load phase.
struct Measured {
    elapsed_seconds: f64,
    cpu_seconds: Option<f64>,
    missed: u64,
}

/// The workers' outcomes, added up.
struct Merged {
    stats: Stats,
    ledger: Ledger,
    connects: u64,
    unsent: u64,
}

impl Merged {
    fn of(outcomes: Vec<WorkerOutcome>) -> Self {
        let mut merged = Merged {
            stats: Stats::default(),
            ledger: Ledger::default(),
            connects: 0,
            unsent: 0,
        };
        for outcome in outcomes {
            merged.stats.merge(&outcome.stats);
            merged.ledger.merge(outcome.ledger);
            merged.connects += outcome.connects_count;
            merged.unsent += outcome.unsent_count;
        }
        merged
    }
}

fn result_of(
    config: &RunConfig,
    discovered: &Discovered,
    measured: &Measured,
    merged: &Merged,
    audit_status: String,
    audit: Option<AuditReport>,
) -> RunResult {
    let elapsed_seconds = measured.elapsed_seconds;
    let figures = report::figures(&merged.stats, elapsed_seconds);
    let mode = if config.rate_per_second.is_some() {
        "open_loop"
    } else {
        "closed_loop"
    };
    RunResult {
        throughput_per_second: figures.answered as f64 / elapsed_seconds,
        success_per_second: figures.success as f64 / elapsed_seconds,
        latency_us_p50: figures.all.p50,
        latency_us_p90: figures.all.p90,
        latency_us_p99: figures.all.p99,
        latency_us_p999: figures.all.p999,
        latency_us_max: figures.all.max,
        answered: figures.answered,
        transport_errors: figures.transport_errors,
        send_lag_us: figures.send_lag,
        audit_status,
        scenario: format!("{:?}", config.scenario).to_lowercase(),
        mode: mode.to_string(),
        rate_per_second: config.rate_per_second,
        checkout_only: config.checkout_only,
        target: config.target_text.clone(),
        target_is_baseline: discovered.target_is_baseline,
        connections: config.connections,
        users: users_per_worker(config) * u64::from(config.connections),
        duration_seconds_planned: config.duration.as_secs_f64(),
        elapsed_seconds,
        generator_cpu_seconds: measured.cpu_seconds,
        generator_cpu_percent_of_one_core: measured
            .cpu_seconds
            .map(|seconds| 100.0 * seconds / elapsed_seconds),
        schedule_missed: measured.missed,
        schedule_unsent: merged.unsent,
        tcp_connects: merged.connects,
        sale_id: discovered.sale.id.clone(),
        acknowledged_purchases: merged.ledger.acknowledged_purchases_count,
        acknowledged_purchased_items: merged.ledger.purchased_items_count() as u64,
        endpoints: figures.endpoints,
        audit,
    }
}

/// The first `token_premint_users` users of every connection get their
/// token before the clock starts (user numbering as in `Worker::user_label`).
fn premint_tokens(config: &RunConfig, run_id: u32) -> anyhow::Result<PremintedTokens> {
    let Some(minter) = config.minter.as_deref() else {
        return Ok(PremintedTokens::default());
    };
    let workers_count = u64::from(config.connections);
    let labels = (0..config.token_premint_users).flat_map(|user| {
        (0..workers_count).map(move |worker| UserLabel {
            run_id,
            number: worker + user * workers_count,
        })
    });
    PremintedTokens::mint(minter, labels)
}

fn users_per_worker(config: &RunConfig) -> u64 {
    (config.users / u64::from(config.connections)).max(1)
}

/// Starts the workers (and the pacer, in fixed-rate mode) and waits for all
/// of them. Returns their outcomes and the count of requests the pacer missed.
async fn run_workers(
    config: &RunConfig,
    shared: &Shared,
    start: Instant,
    run_id: u32,
) -> (Vec<WorkerOutcome>, u64) {
    let workers_count = u64::from(config.connections);
    let missed = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let mut handles = Vec::with_capacity(config.connections as usize);
    for worker in 0..workers_count {
        let plan = WorkerPlan {
            worker,
            workers_count,
            run_id,
            users_count: users_per_worker(config),
            mix: config.mix,
            checkout_only: config.checkout_only,
            reject_only: config.reject_only,
            deadline: start + config.duration,
            requests_max: config.duration.as_secs().max(1) * REQUESTS_PER_CONNECTION_SECOND_MAX,
        };
        let connection = Connection::new(config.target.clone(), config.request_timeout);
        let worker = Worker::new(plan, shared.clone(), connection);
        if config.rate_per_second.is_some() {
            let (sender, tokens) = mpsc::channel(QUEUED_PER_CONNECTION_MAX);
            senders.push(sender);
            handles.push(tokio::spawn(worker.run_open_loop(tokens)));
        } else {
            handles.push(tokio::spawn(worker.run_closed_loop()));
        }
    }
    let pacer = config.rate_per_second.map(|rate| {
        let schedule = Schedule::new(start + SCHEDULE_START_DELAY, rate, config.duration);
        let (stop, missed) = (Arc::clone(&shared.stop), Arc::clone(&missed));
        std::thread::spawn(move || schedule::run_pacer(schedule, senders, stop, missed))
    });
    let mut outcomes = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) => eprintln!("warning: a worker failed: {error}"),
        }
    }
    if let Some(pacer) = pacer {
        // The workers ended, so the pacer's sends fail fast and it ends too.
        shared.stop.store(true, Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    }
    (outcomes, missed.load(Ordering::Relaxed))
}

/// A run id for unique user ids: the clock's nanoseconds mixed with the pid.
fn run_id() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    (nanos as u32) ^ (nanos >> 32) as u32 ^ std::process::id().rotate_left(16)
}

/// Audits unless told not to; against the stateless baseline the audit would
/// be vacuous, so it is skipped and says so.
async fn audit_step(
    config: &RunConfig,
    setup: &mut Connection,
    discovered: &Discovered,
    ledger: &Ledger,
) -> anyhow::Result<(String, Option<AuditReport>)> {
    if !config.audit {
        return Ok(("skipped (--no-audit)".to_string(), None));
    }
    if discovered.target_is_baseline {
        return Ok((
            "vacuous: the target is the stateless baseline, which keeps no sales".to_string(),
            None,
        ));
    }
    let sale = &discovered.sale;
    let listing = api::fetch_all_items(setup, sale)
        .await
        .context("audit: reading the item listing")?;
    let report = audit::audit(ledger, &listing, sale.user_limit);
    let status = match (report.passed(), report.purchased_items_checked) {
        (false, _) => "failed",
        (true, 0) => "passed, but vacuous: no acknowledged purchased items to check",
        (true, _) => "passed",
    };
    Ok((status.to_string(), Some(report)))
}
