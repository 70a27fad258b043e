//! The node agent: observe etcd and Postgres, ask keel-core what to do,
//! carry the actions out in order, report every outcome in the next
//! observation (ARCHITECTURE.md, data flow of one node).
//!
//! Every I/O call has a deadline: `retry_timeout`, and never beyond the
//! point where a leader must have demoted (rule 1). The loop wakes on its
//! timer, on an operator request, and on the postmaster's exit (at once
//! when it is the agent's child, else within 100 ms).

pub mod command;
mod exec;
#[cfg(feature = "io")]
pub mod failsafe;
#[cfg(feature = "io")]
pub mod local;
#[cfg(feature = "io")]
pub mod setup;
#[cfg(feature = "io")]
pub mod slots;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keel_core::{
    Action, ActionResult, ClusterView, DcsView, Decision, DynamicConfig, MemberStatus, Node, Observation,
    Outcome, PgFacts, Request, Role, State,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

use self::command::{Command, Order, Reply};
use crate::api::{SharedStatus, StepReport};
use crate::config::{Config, DynamicPostgresql};
use crate::dcs::codec::{self, MemberExtras};
use crate::dcs::patroni::Snapshot;
use crate::dcs::{Dcs, Kv, KvError};

/// The agent's clocks: monotonic milliseconds since it started, and the
/// wall clock. keel-core takes both as arguments and never reads a clock
/// itself; every sleep and deadline of the agent is a span of this clock,
/// turned into the runtime's time by [`Clock::to_runtime`].
///
/// In production both are the OS clocks. The simulator gives each node a
/// [`Clock::skewed`] one: its own rate (drift), wall offset, and steps
/// (clock jumps), which it can change while the node runs, as clocks do
/// (ARCHITECTURE.md, the simulator: clocks).
#[derive(Clone)]
pub struct Clock {
    start: Instant,
    skew: Option<Arc<Mutex<Skew>>>,
}

/// A simulated node clock: `local = anchor_local + (t - anchor) * (1 + rate)`.
#[derive(Debug)]
struct Skew {
    rate_ppm: i64,
    wall_offset_ms: i64,
    anchor: Instant,
    anchor_local_us: u64,
}

impl Skew {
    fn local_us(&self, at: Instant) -> u64 {
        let elapsed_us = at.saturating_duration_since(self.anchor).as_micros() as i128;
        let scaled = elapsed_us * (1_000_000 + i128::from(self.rate_ppm)) / 1_000_000;
        self.anchor_local_us.saturating_add(u64::try_from(scaled.max(0)).unwrap_or(u64::MAX))
    }

    /// Moves the anchor to now, so a change applies from now on.
    fn reanchor(&mut self) {
        let now = Instant::now();
        self.anchor_local_us = self.local_us(now);
        self.anchor = now;
    }
}

/// Rates beyond this would stop or reverse time; a sane clock drifts by
/// parts per thousand at most.
const RATE_PPM_LIMIT: i64 = 900_000;

impl Clock {
    pub fn new() -> Clock {
        Clock { start: Instant::now(), skew: None }
    }

    /// A clock running `rate_ppm` parts per million fast (negative: slow),
    /// its wall clock `wall_offset_ms` off the true one. Clones share it.
    pub fn skewed(rate_ppm: i64, wall_offset_ms: i64) -> Clock {
        let now = Instant::now();
        let skew = Skew {
            rate_ppm: rate_ppm.clamp(-RATE_PPM_LIMIT, RATE_PPM_LIMIT),
            wall_offset_ms,
            anchor: now,
            anchor_local_us: 0,
        };
        Clock { start: now, skew: Some(Arc::new(Mutex::new(skew))) }
    }

    fn with_skew<T>(&self, f: impl FnOnce(&mut Skew) -> T) -> Option<T> {
        self.skew.as_ref().map(|s| f(&mut s.lock().unwrap_or_else(PoisonError::into_inner)))
    }

    pub fn now_ms(&self) -> u64 {
        match self.with_skew(|s| s.local_us(Instant::now()) / 1000) {
            Some(ms) => ms,
            None => u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Milliseconds since the Unix epoch by this node's wall clock.
    pub fn wall_ms(&self) -> i64 {
        wall_ms().saturating_add(self.with_skew(|s| s.wall_offset_ms).unwrap_or(0))
    }

    /// How long the runtime waits for `local`, a span of this clock.
    pub fn to_runtime(&self, local: Duration) -> Duration {
        match self.with_skew(|s| s.rate_ppm) {
            Some(rate) => {
                let us = local.as_micros() * 1_000_000 / (1_000_000 + rate) as u128;
                Duration::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
            }
            None => local,
        }
    }

    /// Where 0 on this clock lies: `start() + ms` is the instant this
    /// clock reads `ms` (the REST API turns deadlines into instants so).
    /// For a skewed clock, exact for instants near now, where deadlines
    /// lie; its own start would be off by the drift accumulated since.
    pub fn start(&self) -> Instant {
        if self.skew.is_none() {
            return self.start;
        }
        Instant::now().checked_sub(Duration::from_millis(self.now_ms())).unwrap_or(self.start)
    }

    /// Simulator only: the clock runs at `rate_ppm` from now on.
    pub fn set_rate_ppm(&self, rate_ppm: i64) {
        self.with_skew(|s| {
            s.reanchor();
            s.rate_ppm = rate_ppm.clamp(-RATE_PPM_LIMIT, RATE_PPM_LIMIT);
        });
    }

    /// Simulator only: the monotonic clock leaps `ms` ahead (a VM resumed
    /// after a stall sees this), and the wall clock steps by `wall_ms`
    /// (an NTP step, either way).
    pub fn jump(&self, ms: u64, wall_ms: i64) {
        self.with_skew(|s| {
            s.anchor_local_us = s.anchor_local_us.saturating_add(ms.saturating_mul(1000));
            s.wall_offset_ms = s.wall_offset_ms.saturating_add(wall_ms);
        });
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// What the REST status shows of the server beyond keel-core's facts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerInfo {
    /// `server_version_num`, e.g. 150018.
    pub version_num: u32,
    /// Some changed setting waits for a restart (`pg_settings`).
    pub pending_restart: bool,
    /// Which, as Patroni's `{param: {old_value, new_value}}`: the value the
    /// server runs with and the last one in its configuration files.
    pub pending_restart_reason: serde_json::Map<String, serde_json::Value>,
}

/// The local Postgres as the agent sees it: observed as keel-core's facts,
/// driven by keel-core's Postgres actions. `local::LocalPostgres` is the
/// real server; the simulator puts a model behind it.
#[allow(async_fn_in_trait)]
pub trait Postgres {
    async fn facts(&mut self) -> PgFacts;
    /// Facts when observing timed out: whether a postmaster runs.
    fn running_only(&self) -> PgFacts;
    fn is_running(&self) -> bool;
    /// Whether [`Postgres::exited`] reports the running postmaster's exit;
    /// otherwise the agent's sleep looks at `is_running` every 100 ms.
    fn watches_exit(&self) -> bool {
        false
    }
    /// Returns when the postmaster exits (while `watches_exit`).
    async fn exited(&self) {
        std::future::pending().await
    }
    /// Carries out one Postgres action; `view` gives the members' addresses.
    async fn apply(&mut self, action: &Action, view: Option<&ClusterView>) -> ActionResult;
    /// On the leader and on replicas that may be promoted: a replication
    /// slot per other member.
    async fn keep_slots(&mut self, view: &ClusterView);
    /// The server's version and pending restart, for the REST status;
    /// `None` when unknown.
    async fn server_info(&mut self) -> Option<ServerInfo> {
        None
    }
    /// Brings the server's files in line with the dynamic configuration's
    /// `postgresql` section (etcd's `config` key), as Patroni's
    /// `reload_config` does on every node: a reload applies what it can,
    /// and what needs a restart shows as pending restart. Settings
    /// Postgres would refuse are not written; the last good ones stay.
    async fn apply_dynamic(&mut self, _postgresql: &DynamicPostgresql) {}
}

/// What decides: keel-core's [`Node`] in production and in the
/// simulator. A seam for the simulator's tests, which wrap the node in
/// deliberately broken engines to prove that its checkers catch them.
pub trait Engine {
    fn step(&mut self, obs: &Observation) -> Decision;
    fn state(&self) -> &State;
}

impl Engine for Node {
    fn step(&mut self, obs: &Observation) -> Decision {
        Node::step(self, obs)
    }

    fn state(&self) -> &State {
        Node::state(self)
    }
}

impl<E: Engine + ?Sized> Engine for Box<E> {
    fn step(&mut self, obs: &Observation) -> Decision {
        (**self).step(obs)
    }

    fn state(&self) -> &State {
        (**self).state()
    }
}

pub struct Agent<K: Kv, P: Postgres, E: Engine = Node> {
    cfg: Config,
    node: E,
    dcs: Dcs<K>,
    pg: P,
    clock: Clock,
    outcomes: Vec<Outcome>,
    snapshot: Option<Snapshot>,
    dcs_lost_since: Option<u64>,
    requests: mpsc::Receiver<Command>,
    /// Changes of the leader or failover key (an etcd watch).
    wake: Option<mpsc::Receiver<()>>,
    /// A command that woke the loop, for the next observation.
    requeued: Option<Command>,
    /// Who waits for the outcome of the request being carried out.
    reply: Option<oneshot::Sender<Reply>>,
    last_reason: String,
    /// Where the REST API reads this node's status.
    status: Option<SharedStatus>,
    /// What this node's member key carries beyond keel-core's facts, as of
    /// the last observation (see `member_extras`).
    extras: MemberExtras,
}

impl<K: Kv, P: Postgres> Agent<K, P> {
    pub fn new(cfg: Config, dcs: Dcs<K>, pg: P, requests: mpsc::Receiver<Command>) -> Agent<K, P> {
        let mut bootstrap = cfg.bootstrap.dcs.to_core();
        cfg.local_over(&mut bootstrap);
        let node = Node::with_config(cfg.name.clone(), bootstrap);
        Agent::with_engine(cfg, dcs, pg, requests, node)
    }
}

impl<K: Kv, P: Postgres, E: Engine> Agent<K, P, E> {
    /// An agent deciding with `engine` instead of a fresh [`Node`].
    pub fn with_engine(
        cfg: Config,
        dcs: Dcs<K>,
        pg: P,
        requests: mpsc::Receiver<Command>,
        engine: E,
    ) -> Agent<K, P, E> {
        Agent {
            node: engine,
            cfg,
            dcs,
            pg,
            clock: Clock::new(),
            outcomes: Vec::new(),
            snapshot: None,
            dcs_lost_since: None,
            requests,
            wake: None,
            requeued: None,
            reply: None,
            last_reason: String::new(),
            status: None,
            extras: MemberExtras::default(),
        }
    }

    /// Wakes the loop at once when `wake` fires (the etcd watch).
    pub fn wake_on(mut self, wake: mpsc::Receiver<()>) -> Agent<K, P, E> {
        self.wake = Some(wake);
        self
    }

    /// Reads time from `clock` (the simulator's skewed clocks).
    pub fn with_clock(mut self, clock: Clock) -> Agent<K, P, E> {
        self.clock = clock;
        self
    }

    /// Publishes the node's status to `status` after every step.
    pub fn publish_to(mut self, status: SharedStatus) -> Agent<K, P, E> {
        self.status = Some(status);
        self
    }

    fn config(&self) -> &DynamicConfig {
        &self.node.state().config
    }

    /// Runs until a shutdown request has been carried out.
    pub async fn run(mut self) {
        loop {
            // wake_after counts from the observation, not from the end of
            // the step: a slow etcd read must not push a leader's next step
            // (and its demote) past the lease deadline (found by keel-sim).
            let observed_at = Instant::now();
            let obs = self.observe().await;
            self.apply_dynamic(&obs).await;
            let decision = self.node.step(&obs);
            self.log(&decision);
            self.publish(&obs, &decision);
            self.extras = self.member_extras(&obs);
            self.outcomes = self.execute(&decision).await;
            if let Some(reply) = self.reply.take() {
                let _ = reply.send(Reply::Stepped {
                    reason: decision.reason.clone(),
                    outcomes: self.outcomes.clone(),
                });
            }
            self.publish_server_info().await;
            self.refresh_member(&obs, &decision).await;
            // Right after a promotion too: the replicas cannot stream to the
            // new primary (nor confirm its commits) until their slots exist.
            // A replica that may be promoted keeps them as well, so that
            // they exist before its promotion (see `slots`).
            let promoted =
                self.outcomes.iter().any(|o| o.action == Action::Promote && o.result == ActionResult::Done);
            let role = self.node.state().role;
            let leading = (obs.pg.is_running_primary() || promoted) && role == Role::Leader;
            let may_lead =
                obs.pg.is_running_replica() && role == Role::Replica && !self.cfg.tags.to_core().nofailover;
            if leading || may_lead {
                self.keep_slots().await;
            }
            if self.node.state().role == Role::Stopped && decision.actions.is_empty() {
                info!("shut down");
                return;
            }
            self.sleep(observed_at, decision.wake_after_ms).await;
        }
    }

    /// The deadline of one I/O call: `retry_timeout`, cut short so that a
    /// leader never waits on I/O past the point where it must demote. In
    /// the runtime's time (the clock's rate applied).
    fn deadline(&self) -> Duration {
        let cfg = self.config();
        let mut ms = cfg.retry_timeout_ms.max(1);
        // A lease that just ran out counts as none left: the step that
        // demotes must not wait a whole retry_timeout for etcd first.
        if let Some(until_gentle) = self.node.state().gentle_demote_in_ms(self.clock.now_ms(), cfg) {
            ms = ms.min(until_gentle.max(100));
        }
        self.clock.to_runtime(Duration::from_millis(ms))
    }

    async fn observe(&mut self) -> Observation {
        let now_ms = self.clock.now_ms();
        let deadline = self.deadline();
        let read = bounded(deadline, self.dcs.read()).await;
        let dcs = match read {
            Ok(snap) => {
                self.dcs_lost_since = None;
                let mut view = snap.view.clone();
                if let Some(core) = view.config.as_mut() {
                    self.cfg.local_over(core);
                }
                self.snapshot = Some(snap);
                let ttl_ms = self.config().ttl_ms;
                if let Err(e) = bounded(deadline, self.dcs.keep_member_alive(now_ms, ttl_ms)).await {
                    warn!("member key keep-alive failed: {e}");
                }
                DcsView::Reachable(view)
            }
            Err(e) => {
                let since = *self.dcs_lost_since.get_or_insert(now_ms);
                warn!("etcd read failed: {e}");
                DcsView::Unreachable { since_ms: since }
            }
        };
        // Facts too are bounded by the lease: a hung pg_controldata must
        // not keep a leader from its next step.
        let lease_left = self.node.state().lease_remaining_ms(now_ms);
        let pg = match lease_left {
            Some(left) => match tokio::time::timeout(
                self.clock.to_runtime(Duration::from_millis(left)),
                self.pg.facts(),
            )
            .await
            {
                Ok(pg) => pg,
                // Unknown facts: keep the server's running state, which
                // is what fencing needs, and nothing else.
                Err(_) => self.pg.running_only(),
            },
            None => self.pg.facts().await,
        };
        Observation {
            now_ms,
            wall_ms: self.clock.wall_ms(),
            dcs,
            pg,
            tags: self.cfg.tags.to_core(),
            outcomes: std::mem::take(&mut self.outcomes),
            request: self.next_request(),
        }
    }

    /// The next keel-core request, if any. Reloads are applied on the way
    /// (they change what the agent publishes, not what core decides).
    fn next_request(&mut self) -> Option<Request> {
        while let Some(command) = self.requeued.take().or_else(|| self.requests.try_recv().ok()) {
            match command.order {
                Order::Request(request) => {
                    self.reply = command.reply;
                    return Some(request);
                }
                Order::Reload(reload) => {
                    info!("reloaded: tags {:?}", reload.tags);
                    self.cfg.tags = reload.tags;
                    self.cfg.restapi.authentication = reload.restapi_auth;
                    if let Some(reply) = command.reply {
                        let _ = reply.send(Reply::Reloaded { tags: self.cfg.tags.to_core() });
                    }
                }
            }
        }
        None
    }

    /// The dynamic configuration's Postgres settings, before the step, so
    /// that a start it decides runs with them. Only what etcd just answered
    /// counts; an absent or invalid `config` key leaves the settings as
    /// they are. It does work only in the loop after the key changed, and
    /// never past [`Agent::deadline`], which leaves a leader the time to
    /// demote gently (rule 1), as for the etcd read before it.
    async fn apply_dynamic(&mut self, obs: &Observation) {
        if !matches!(obs.dcs, DcsView::Reachable(_)) {
            return;
        }
        let Some(settings) = self.snapshot.as_ref().and_then(|s| s.config.as_ref()) else { return };
        let deadline = self.deadline();
        if tokio::time::timeout(deadline, self.pg.apply_dynamic(&settings.postgresql)).await.is_err() {
            warn!("applying the dynamic configuration took more than {} ms", deadline.as_millis());
        }
    }

    /// On the leader, and on a replica that may be promoted: a slot for
    /// every other member (see `slots`). A failure is logged; the next
    /// loop tries again.
    async fn keep_slots(&mut self) {
        if let Some(snap) = &self.snapshot {
            self.pg.keep_slots(&snap.view).await;
        }
    }

    /// Logs the decision's reason when it changes, not every loop.
    fn log(&mut self, decision: &Decision) {
        let reason = decision.reason.to_string();
        if reason != self.last_reason {
            info!(actions = ?decision.actions.iter().map(exec::name).collect::<Vec<_>>(), "{reason}");
            self.last_reason = reason;
        }
    }

    /// Leaves the step for the REST API: plain data, written under a lock
    /// that no reader holds across an await.
    fn publish(&self, obs: &Observation, decision: &Decision) {
        if let Some(status) = &self.status {
            let step = StepReport {
                obs,
                decision,
                state: self.node.state(),
                snapshot: self.snapshot.as_ref(),
                clock_start: self.clock.start(),
            };
            status.write().unwrap_or_else(PoisonError::into_inner).record(&step);
        }
    }

    /// Patroni's fields of this node's member key beyond keel-core's facts
    /// (`touch_member`): replication state on a running replica, pending
    /// and scheduled restarts (from the REST status), pause, every tag.
    fn member_extras(&self, obs: &Observation) -> MemberExtras {
        let pg = &obs.pg;
        let replication_state = pg.is_running_replica().then(|| {
            let state = if pg.streaming { "streaming" } else { "in archive recovery" };
            state.to_owned()
        });
        let configured: serde_json::Map<String, serde_json::Value> =
            self.cfg.tags.to_member_tags().into_iter().collect();
        let mut extras = MemberExtras {
            replication_state,
            pause: self.config().pause,
            tags: codec::published_tags(&obs.tags, &configured),
            ..MemberExtras::default()
        };
        if let Some(status) = &self.status {
            let status = status.read().unwrap_or_else(PoisonError::into_inner);
            extras.pending_restart = status.pending_restart;
            if status.pending_restart {
                extras.pending_restart_reason = status.pending_restart_reason.clone();
            }
            extras.scheduled_restart = status.scheduled_restart.as_ref().and_then(|s| s.as_object().cloned());
        }
        extras
    }

    /// keel-core publishes the member key when its own facts change; when
    /// only the fields it does not read change (a restart scheduled, pause
    /// seen, replication state), the agent publishes the key again, as
    /// Patroni's `touch_member` does every loop. Never once shutting down,
    /// nor before keel-core's first publication.
    async fn refresh_member(&mut self, obs: &Observation, decision: &Decision) {
        let role = self.node.state().role;
        let published_now = decision.actions.iter().any(|a| matches!(a, Action::PublishMember(_)));
        if role == Role::Stopped || published_now || !matches!(obs.dcs, DcsView::Reachable(_)) {
            return;
        }
        let extras = self.member_extras(obs);
        let Some(snap) = &self.snapshot else { return };
        let Some(published) = snap.member_details.get(&self.cfg.name) else { return };
        if published.extras == extras {
            return;
        }
        let status = MemberStatus::of(role, &obs.pg, &obs.tags);
        let ttl_ms = self.config().ttl_ms;
        let deadline = self.deadline();
        match bounded(deadline, self.dcs.publish_member_with(&status, &extras, ttl_ms)).await {
            Ok(()) => self.extras = extras,
            Err(e) => warn!("could not refresh the member key: {e}"),
        }
    }

    /// The server's version and pending restart for the REST status, never
    /// holding up the loop for long (a hung server is fenced by the lease).
    async fn publish_server_info(&mut self) {
        let Some(status) = self.status.clone() else { return };
        // No answer in time: keep what was shown.
        let Ok(info) = tokio::time::timeout(Duration::from_millis(500), self.pg.server_info()).await else {
            return;
        };
        let mut status = status.write().unwrap_or_else(PoisonError::into_inner);
        status.server_version = info.as_ref().map_or(0, |i| i.version_num);
        status.pending_restart = info.as_ref().is_some_and(|i| i.pending_restart);
        status.pending_restart_reason = info.map(|i| i.pending_restart_reason).unwrap_or_default();
    }

    /// Carries out the actions in order; the first that does not succeed
    /// stops the rest, which are reported as skipped.
    async fn execute(&mut self, decision: &Decision) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(decision.actions.len());
        let mut stopped = false;
        for action in &decision.actions {
            let sent_at_ms = self.clock.now_ms();
            let (result, lease_ttl_ms) = if stopped {
                (ActionResult::Skipped, None)
            } else {
                match self.lease_bound(action) {
                    // The lease ran out while the step observed or acted:
                    // what was decided under it is not done (a promotion
                    // after a slow etcd read, found by keel-sim seed 218).
                    Some(bound) if bound.is_zero() => (ActionResult::Skipped, None),
                    // A leader never waits on an action past its lease: the
                    // next step must be able to fence (rule 1).
                    Some(bound) => tokio::time::timeout(bound, self.apply(action))
                        .await
                        .unwrap_or((ActionResult::Unknown, None)),
                    None => self.apply(action).await,
                }
            };
            if result != ActionResult::Done && !stopped {
                warn!(action = exec::name(action), ?result, "action did not succeed");
                stopped = true;
            }
            outcomes.push(Outcome { action: action.clone(), sent_at_ms, result, lease_ttl_ms });
        }
        outcomes
    }

    /// How long `action` may take while this node holds the lease: until
    /// the lease deadline (zero once it passed). Stopping Postgres is what
    /// the deadline asks for, so it is never cut short.
    fn lease_bound(&self, action: &keel_core::Action) -> Option<Duration> {
        use keel_core::Action::{Demote, StopPostgres};
        if matches!(action, Demote { .. } | StopPostgres { .. }) {
            return None;
        }
        let state = self.node.state();
        state.lease_deadline_ms?;
        let left = state.lease_remaining_ms(self.clock.now_ms()).unwrap_or(0);
        Some(self.clock.to_runtime(Duration::from_millis(left)))
    }

    /// Sleeps until the decision's wake time, an operator request, or the
    /// postmaster's exit, whichever comes first.
    async fn sleep(&mut self, observed_at: Instant, wake_after_ms: u64) {
        let until = observed_at + self.clock.to_runtime(Duration::from_millis(wake_after_ms));
        let was_running = self.pg.is_running();
        // Woken by the exit itself when it can be; else polled.
        let exit_watched = was_running && self.pg.watches_exit();
        loop {
            let now = Instant::now();
            if now >= until || self.pg.is_running() != was_running {
                return;
            }
            let tick = if exit_watched { until - now } else { (until - now).min(Duration::from_millis(100)) };
            let watched = async {
                match self.wake.as_mut() {
                    Some(rx) => rx.recv().await.is_some(),
                    None => std::future::pending().await,
                }
            };
            // Polled in this order, not at random: tokio's random order
            // draws from a process-wide counter, which a simulated seed
            // could not replay.
            tokio::select! {
                biased;
                () = self.pg.exited(), if exit_watched => return,
                changed = watched => {
                    if changed {
                        return;
                    }
                    // The watch task ended: fall back to the timer.
                    self.wake = None;
                }
                request = self.requests.recv() => {
                    // Kept for the next observation.
                    self.requeued = request;
                    return;
                }
                () = tokio::time::sleep(tick) => {}
            }
        }
    }
}

/// `fut`, or unavailable (unknown, rule 6) when it does not answer within
/// `deadline`.
pub(crate) async fn bounded<T>(
    deadline: Duration,
    fut: impl std::future::Future<Output = Result<T, KvError>>,
) -> Result<T, KvError> {
    tokio::time::timeout(deadline, fut).await.unwrap_or_else(|_| {
        Err(KvError::Unavailable(format!("no answer within {} ms", deadline.as_millis())))
    })
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The environment as a map, for the config's PATRONI_* overrides.
pub fn environment() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

// Real tokio's paused clock; madsim's `advance` is not async.
#[cfg(all(test, not(madsim)))]
mod clock_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn skewed_clock_runs_at_its_rate_and_steps_on_jumps() {
        let clock = Clock::skewed(100_000, -5_000);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(clock.now_ms(), 11_000);
        // Ten local seconds take 10 / 1.1 s of the runtime's time.
        assert_eq!(clock.to_runtime(Duration::from_secs(11)), Duration::from_secs(10));
        clock.set_rate_ppm(-500_000);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(clock.now_ms(), 12_000);
        let wall = clock.wall_ms();
        clock.jump(3_000, 60_000);
        assert_eq!(clock.now_ms(), 15_000);
        // The OS wall clock moves on between the two reads.
        assert!((60_000..61_000).contains(&(clock.wall_ms() - wall)));
        assert_eq!(Clock::new().to_runtime(Duration::from_secs(7)), Duration::from_secs(7));
    }
}
