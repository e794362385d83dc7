//! The request loops, one per connection: closed loop (send the next request
//! when the answer arrives) or open loop (send when the pacer says, measure
//! from the intended send time). Both are bounded in requests and in time and
//! stop by themselves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::api::{self, CheckoutAnswer, ErrorAnswer, PurchaseAnswer, SaleInfo, UserLabel};
use crate::http::{Connection, Method};
use crate::ledger::Ledger;
use crate::scenario::{profile_of, Mix};
use crate::stats::{Endpoint, LiveCounters, Stats};
use crate::tokens::{PremintedTokens, TokenMinter, UserTokens};

/// Pause after a request without an answer, so that a dead server is not
/// hammered with reconnects in a tight loop.
const TRANSPORT_ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// Items per page when users browse.
const BROWSE_PAGE_ITEMS: u64 = 100;
/// How long an open-loop connection may keep draining its queue after the
/// deadline; what is left then is counted as unsent.
const OPEN_LOOP_DRAIN: Duration = Duration::from_secs(5);

/// What one connection does.
#[derive(Debug, Clone)]
pub struct WorkerPlan {
    /// This worker's number, `0..workers_count`.
    pub worker: u64,
    pub workers_count: u64,
    pub run_id: u32,
    /// Users this worker plays, in turn (global numbers `worker + k * workers_count`).
    pub users_count: u64,
    pub mix: Mix,
    /// Only checkouts, each user taking `user_limit` of them, then a fresh user.
    pub checkout_only: bool,
    /// Checkouts of item indices past the sale's last item, a new user each.
    pub reject_only: bool,
    pub deadline: Instant,
    pub requests_max: u64,
}

/// What the workers share: read-only sale facts, live counters, the stop flag.
#[derive(Debug, Clone)]
pub struct Shared {
    pub sale: Arc<SaleInfo>,
    pub live: Arc<LiveCounters>,
    pub stop: Arc<AtomicBool>,
    /// Mints the users' bearer tokens (servers with identity on).
    pub minter: Option<Arc<TokenMinter>>,
    /// Tokens minted before the run (`--token-premint-users`).
    pub preminted: Arc<PremintedTokens>,
}

/// A worker's results, merged by the run.
#[derive(Debug)]
pub struct WorkerOutcome {
    pub stats: Stats,
    pub ledger: Ledger,
    pub connects_count: u64,
    /// Open loop only: scheduled requests still queued when the drain time ran out.
    pub unsent_count: u64,
}

/// The next request a worker sends.
#[derive(Debug, Clone, Copy)]
enum Action {
    Checkout { user: u64, item_index: u64 },
    Purchase { user: u64 },
    ListItems { offset: u64 },
}

impl Action {
    fn endpoint(self) -> Endpoint {
        match self {
            Action::Checkout { .. } => Endpoint::Checkout,
            Action::Purchase { .. } => Endpoint::Purchase,
            Action::ListItems { .. } => Endpoint::ListItems,
        }
    }
}

/// One connection and the state of the users it plays.
pub struct Worker {
    connection: Connection,
    session: Session,
}

/// Everything of a worker but its connection, so that an answer borrowed from
/// the connection's buffer can be handled without copying it.
struct Session {
    plan: WorkerPlan,
    shared: Shared,
    rng: fastrand::Rng,
    /// Checkout code of each of this worker's users' open cart, by local user index.
    cart_codes: Vec<Option<String>>,
    /// A user whose checkout is to be followed by a purchase.
    pending_purchase: Option<u64>,
    /// Round-robin cursor over users; also counts checkouts in checkout-only mode.
    cursor: u64,
    /// Reused request-path buffer.
    path: String,
    stats: Stats,
    ledger: Ledger,
    /// This connection's users' bearer tokens (with a minter only).
    tokens: UserTokens,
}

impl Worker {
    pub fn new(plan: WorkerPlan, shared: Shared, connection: Connection) -> Self {
        let users = if plan.checkout_only {
            0
        } else {
            plan.users_count
        };
        let seed = (u64::from(plan.run_id) << 32) ^ plan.worker;
        let session = Session {
            cart_codes: vec![None; usize::try_from(users).unwrap_or(0)],
            rng: fastrand::Rng::with_seed(seed),
            plan,
            shared,
            pending_purchase: None,
            cursor: 0,
            path: String::with_capacity(128),
            stats: Stats::default(),
            ledger: Ledger::default(),
            tokens: UserTokens::default(),
        };
        Self {
            connection,
            session,
        }
    }

    /// Closed loop: one request after the other until the deadline.
    pub async fn run_closed_loop(mut self) -> WorkerOutcome {
        let plan = &self.session.plan;
        let (requests_max, deadline) = (plan.requests_max, plan.deadline);
        for _ in 0..requests_max {
            let now = Instant::now();
            if now >= deadline || self.session.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            self.request_once(now).await;
        }
        self.finish(0)
    }

    /// Open loop: one request per token from the pacer, its latency measured
    /// from the token's intended send time (coordinated-omission correction).
    pub async fn run_open_loop(mut self, mut tokens: mpsc::Receiver<Instant>) -> WorkerOutcome {
        let drain_end = self.session.plan.deadline + OPEN_LOOP_DRAIN;
        for _ in 0..self.session.plan.requests_max {
            if self.session.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            let intended = tokio::select! {
                token = tokens.recv() => match token {
                    Some(intended) => intended,
                    None => break,
                },
                () = tokio::time::sleep_until(drain_end.into()) => break,
            };
            self.session.stats.record_send_lag(intended.elapsed());
            self.request_once(intended).await;
        }
        let mut unsent_count = 0;
        tokens.close();
        while tokens.try_recv().is_ok() {
            unsent_count += 1;
        }
        self.finish(unsent_count)
    }

    fn finish(self, unsent_count: u64) -> WorkerOutcome {
        WorkerOutcome {
            stats: self.session.stats,
            ledger: self.session.ledger,
            connects_count: self.connection.connects_count,
            unsent_count,
        }
    }

    /// Sends the next request and records its outcome; latency is measured
    /// from `latency_start` (the send time, or the intended send time).
    async fn request_once(&mut self, latency_start: Instant) {
        let session = &mut self.session;
        let action = session.next_action();
        let method = session.write_path(action);
        if session.shared.minter.is_some() {
            self.connection.set_bearer(session.bearer(action));
        }
        match self.connection.send(method, &session.path).await {
            Ok(response) => session.on_answer(
                action,
                response.status,
                response.body,
                latency_start.elapsed(),
            ),
            Err(_error) => {
                session.stats.record_transport_error(action.endpoint());
                session.shared.live.count_transport_error();
                tokio::time::sleep(TRANSPORT_ERROR_BACKOFF).await;
            }
        }
    }
}

impl Session {
    fn on_answer(&mut self, action: Action, status: u16, body: &[u8], latency: Duration) {
        let error = if (200..300).contains(&status) {
            None
        } else {
            serde_json::from_slice::<ErrorAnswer>(body).ok()
        };
        let error_code = error.as_ref().map(|answer| answer.error.as_ref());
        self.stats
            .record_answer(action.endpoint(), status, latency, error_code);
        self.shared.live.count_answer(status);
        if status == 200 {
            self.on_success(action, body);
        } else if let Action::Purchase { user } = action {
            self.close_cart(user);
        }
    }

    fn next_action(&mut self) -> Action {
        let sale = &self.shared.sale;
        let item_index = self.rng.u64(0..sale.total_items.max(1));
        if self.plan.reject_only {
            let user = self.cursor;
            self.cursor += 1;
            let item_index = sale.total_items + self.rng.u64(0..1_000_000);
            return Action::Checkout { user, item_index };
        }
        if self.plan.checkout_only {
            // A fresh user every `user_limit` checkouts: every checkout can succeed.
            let user = self.cursor / sale.user_limit.max(1);
            self.cursor += 1;
            return Action::Checkout { user, item_index };
        }
        if let Some(user) = self.pending_purchase.take() {
            return Action::Purchase { user };
        }
        let user = self.cursor % self.plan.users_count.max(1);
        self.cursor += 1;
        let profile = profile_of(self.plan.mix, self.global_user(user));
        if self.rng.f64() < profile.checkout_probability {
            Action::Checkout { user, item_index }
        } else {
            let offset = self
                .rng
                .u64(0..sale.total_items.saturating_sub(BROWSE_PAGE_ITEMS).max(1));
            Action::ListItems { offset }
        }
    }

    /// The token of the user acting in `action`; `None` for reads.
    fn bearer(&mut self, action: Action) -> Option<&str> {
        let user = match action {
            Action::Checkout { user, .. } | Action::Purchase { user } => user,
            Action::ListItems { .. } => return None,
        };
        let label = self.user_label(user);
        let minter = self.shared.minter.as_deref()?;
        self.tokens.get(minter, &self.shared.preminted, label)
    }

    fn global_user(&self, user: u64) -> u64 {
        self.plan.worker + user * self.plan.workers_count
    }

    fn user_label(&self, user: u64) -> UserLabel {
        UserLabel {
            run_id: self.plan.run_id,
            number: self.global_user(user),
        }
    }

    /// Writes the action's path into `self.path` and returns its method.
    fn write_path(&mut self, action: Action) -> Method {
        let sale_id = &self.shared.sale.id;
        match action {
            Action::Checkout { user, item_index } => {
                let label = self.user_label(user);
                api::checkout_path(&mut self.path, &label, sale_id, item_index);
                Method::Post
            }
            Action::Purchase { user } => {
                // A direct field borrow: `self.path` is written at the same time.
                let index = usize::try_from(user).unwrap_or(usize::MAX);
                let code = self
                    .cart_codes
                    .get(index)
                    .and_then(|code| code.as_deref())
                    .unwrap_or("");
                api::purchase_path(&mut self.path, code);
                Method::Post
            }
            Action::ListItems { offset } => {
                api::items_path(&mut self.path, sale_id, offset, BROWSE_PAGE_ITEMS, true);
                Method::Get
            }
        }
    }

    fn close_cart(&mut self, user: u64) {
        if let Some(code) = usize::try_from(user)
            .ok()
            .and_then(|index| self.cart_codes.get_mut(index))
        {
            *code = None;
        }
    }

    /// Follows up a 200 answer: remember the cart, maybe purchase it, or
    /// record the acknowledged purchase in the ledger.
    fn on_success(&mut self, action: Action, body: &[u8]) {
        match action {
            Action::Checkout { user, .. } => {
                if self.plan.checkout_only {
                    return;
                }
                let Ok(answer) = serde_json::from_slice::<CheckoutAnswer>(body) else {
                    return;
                };
                let Some(slot) = usize::try_from(user)
                    .ok()
                    .and_then(|index| self.cart_codes.get_mut(index))
                else {
                    return;
                };
                if slot.as_deref() != Some(answer.code.as_ref()) {
                    *slot = Some(answer.code.into_owned());
                }
                let profile = profile_of(self.plan.mix, self.global_user(user));
                if self.rng.f64() < profile.purchase_probability {
                    self.pending_purchase = Some(user);
                }
            }
            Action::Purchase { user } => {
                match serde_json::from_slice::<PurchaseAnswer>(body) {
                    Ok(answer) => {
                        let label = self.user_label(user).to_string();
                        self.ledger.record_purchase(
                            label,
                            answer.purchased_items.into_iter().map(|item| item.id),
                        );
                    }
                    Err(_) => self.ledger.undecodable_purchases_count += 1,
                }
                self.close_cart(user);
            }
            Action::ListItems { .. } => {}
        }
    }
}
