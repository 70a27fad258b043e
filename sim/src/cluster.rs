//! One simulated cluster: nodes running keel-core's `step`, the etcd and
//! Postgres models, a client writing through whatever node answers as
//! primary, the fault schedule, and the checkers. Time advances in 10 ms
//! ticks of true (etcd) time; each node reads its own clock, which runs at
//! its own rate.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

use keel_core::trace::{TraceEntry, TraceLine};
use keel_core::{
    Action, ActionResult, DcsView, Decision, DynamicConfig, Node, Observation, Outcome as ActionOutcome,
    PgProcess, Request, StandbySyncState, StartAs, StopMode, SyncMode, Tags,
};

use crate::etcd_model::{EtcdModel, Reply};
use crate::faults::{self, Fault, FaultKind};
use crate::pg_model::PgModel;
use crate::rng::SimRng;

const TICK_MS: u64 = 10;
const CLIENT_EVERY_MS: u64 = 50;
const REPLICATE_EVERY_MS: u64 = 100;
const WALL_EPOCH_MS: i64 = 1_767_225_600_000;

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    pub duration_ms: u64,
    pub faults: bool,
    /// Print every decision and fault as it happens.
    pub verbose: bool,
    /// Record this node's steps from this simulated time on, as trace
    /// lines (JSON) that `keel_core::trace::replay` accepts.
    pub trace: Option<(String, u64)>,
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub seed: u64,
    pub simulated_ms: u64,
    pub sync_mode: String,
    /// The cluster's settings as `key=value` words (madsim simulator).
    pub settings: String,
    pub steps: u64,
    pub failovers: u64,
    pub switchovers_requested: u64,
    pub faults: BTreeMap<&'static str, u64>,
    pub writes_acked: u64,
    pub writes_failed: u64,
    /// Acknowledged writes missing on the final leader, where the mode
    /// allows it (asynchronous, or synchronous but not strict).
    pub writes_lost_allowed: u64,
    /// pg_rewind runs that failed (the source recycled the WAL back to the
    /// fork, or the target has neither wal_log_hints nor checksums), and
    /// how many of those nodes a base backup then repaired.
    pub rewinds_failed: u64,
    pub reinitialized_after_failed_rewind: u64,
    pub violations: Vec<String>,
    /// FNV-1a over every decision and fault: same seed, same hash.
    pub trace_hash: u64,
    pub schedule: Vec<Fault>,
    /// The recorded trace lines, when asked for.
    pub trace: Vec<String>,
}

struct SimNode {
    name: String,
    engine: Option<Node>,
    pg: PgModel,
    /// Clock rate in parts per million off true time, and offset.
    rate_ppm: i64,
    offset_ms: u64,
    next_wake_ms: u64,
    outcomes: Vec<ActionOutcome>,
    request: Option<Request>,
    dcs_lost_since: Option<u64>,
    /// When each standby streaming from this node last replied (true ms).
    replies: BTreeMap<String, u64>,
}

impl SimNode {
    fn local_ms(&self, t: u64) -> u64 {
        let drift = (t as i128 * self.rate_ppm as i128 / 1_000_000) as i64;
        (self.offset_ms as i64 + t as i64 + drift) as u64
    }

    /// True time for a span of this node's clock.
    fn true_span(&self, local_ms: u64) -> u64 {
        (local_ms as i128 * 1_000_000 / (1_000_000 + self.rate_ppm as i128)) as u64
    }

    fn alive(&self) -> bool {
        self.engine.is_some()
    }

    fn writable(&self) -> bool {
        self.alive() && self.pg.process == PgProcess::RunningPrimary
    }
}

struct Cluster {
    cfg: DynamicConfig,
    t: u64,
    rng: SimRng,
    etcd: EtcdModel,
    nodes: Vec<SimNode>,
    isolated: BTreeSet<usize>,
    next_branch: u64,
    acked: Vec<(u64, u64)>,
    out: Outcome,
    hash: u64,
    last_leader: Option<String>,
    verbose: bool,
    trace: Option<(String, u64)>,
    /// Whether the traced node's current life has a `Start` line yet.
    trace_started: bool,
}

/// Runs one seed to the end and reports what the checkers found.
pub fn run(sim: &SimConfig) -> Outcome {
    let mut rng = SimRng::new(sim.seed);
    let mut cfg = DynamicConfig {
        ttl_ms: 10_000,
        loop_wait_ms: 2_000,
        retry_timeout_ms: 3_000,
        use_pg_rewind: rng.chance(70),
        failsafe_mode: rng.chance(20),
        primary_start_timeout_ms: [0, 5_000, 30_000][rng.below(3) as usize],
        ..DynamicConfig::default()
    };
    let (mode, strict) = match rng.below(4) {
        0 => (SyncMode::Off, false),
        1 => (SyncMode::On, false),
        _ => (SyncMode::On, true),
    };
    cfg.synchronous_mode = mode;
    cfg.synchronous_mode_strict = strict;
    let nodes = (0..sim.nodes)
        .map(|i| {
            // Within the engine's drift bound: 1 % either way at most.
            let bound = cfg.max_clock_drift_ppm as i64;
            let rate_ppm = rng.below(2 * bound as u64 + 1) as i64 - bound;
            SimNode {
                name: format!("pg{}", i + 1),
                engine: Some(Node::with_config(format!("pg{}", i + 1), cfg.clone())),
                pg: PgModel::empty(),
                rate_ppm,
                offset_ms: rng.below(1_000_000_000),
                next_wake_ms: rng.below(3_000),
                outcomes: Vec::new(),
                request: None,
                dcs_lost_since: None,
                replies: BTreeMap::new(),
            }
        })
        .collect();
    let warmup_ms = 30_000;
    let settle_ms = 3 * cfg.ttl_ms + 30_000;
    let heal_by = sim.duration_ms.saturating_sub(settle_ms);
    let schedule =
        if sim.faults { faults::schedule(&mut rng, sim.nodes, warmup_ms, heal_by) } else { Vec::new() };
    let sync_mode = match (mode, strict) {
        (SyncMode::Off, _) => "async",
        (_, false) => "sync",
        (_, true) => "sync-strict",
    };
    let mut c = Cluster {
        cfg,
        t: 0,
        rng,
        etcd: EtcdModel::new(),
        nodes,
        isolated: BTreeSet::new(),
        next_branch: 1,
        acked: Vec::new(),
        out: Outcome {
            seed: sim.seed,
            sync_mode: sync_mode.to_owned(),
            schedule: schedule.clone(),
            ..Outcome::default()
        },
        hash: 0xcbf2_9ce4_8422_2325,
        last_leader: None,
        verbose: sim.verbose,
        trace: sim.trace.clone(),
        trace_started: false,
    };
    let last_heal = schedule.iter().map(|f| f.end_ms).max().unwrap_or(0);
    let mut liveness_checked = false;
    while c.t < sim.duration_ms {
        for f in &schedule {
            if f.start_ms == c.t {
                c.start_fault(f);
            }
            if f.end_ms == c.t {
                c.end_fault(f);
            }
        }
        c.etcd.tick(c.t);
        c.watch_leader();
        if c.t % REPLICATE_EVERY_MS == 0 {
            c.replicate();
        }
        for i in 0..c.nodes.len() {
            if c.nodes[i].alive() && c.nodes[i].next_wake_ms <= c.t {
                c.step_node(i);
                c.watch_leader();
            }
        }
        if c.t % CLIENT_EVERY_MS == 0 {
            c.client_write();
        }
        c.check_split_brain();
        if !liveness_checked && c.t >= last_heal.max(warmup_ms) + c.liveness_bound() {
            liveness_checked = true;
            c.check_liveness(last_heal.max(warmup_ms));
        }
        if c.out.violations.len() > 20 {
            break;
        }
        c.t += TICK_MS;
    }
    c.check_end();
    c.out.simulated_ms = c.t;
    c.out.trace_hash = c.hash;
    c.out
}

impl Cluster {
    fn liveness_bound(&self) -> u64 {
        self.cfg.ttl_ms + self.cfg.loop_wait_ms + 1_000
    }

    fn mix(&mut self, text: &str) {
        for b in text.as_bytes() {
            self.hash ^= *b as u64;
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn violation(&mut self, what: String) {
        let line = format!("t={:.2}s {what}", self.t as f64 / 1000.0);
        if !self.out.violations.contains(&line) {
            self.out.violations.push(line);
        }
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        a == b || (!self.isolated.contains(&a) && !self.isolated.contains(&b))
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    fn start_fault(&mut self, f: &Fault) {
        *self.out.faults.entry(f.kind.label()).or_default() += 1;
        if self.verbose {
            println!(
                "{:>9.2} fault  {:?} until {:.2}",
                self.t as f64 / 1000.0,
                f.kind,
                f.end_ms as f64 / 1000.0
            );
        }
        self.mix(&format!("fault {f:?}"));
        match &f.kind {
            FaultKind::EtcdPartition { node } => {
                let name = self.nodes[*node].name.clone();
                self.etcd.partitioned.insert(name);
            }
            FaultKind::NodeIsolation { node } => {
                self.isolated.insert(*node);
            }
            FaultKind::EtcdOutage => self.etcd.down = true,
            FaultKind::PostgresCrash { node } => {
                let n = &mut self.nodes[*node];
                n.pg.crash();
                // The agent wakes on the postmaster's exit.
                n.next_wake_ms = self.t + TICK_MS;
            }
            FaultKind::NodeCrash { node } => {
                let n = &mut self.nodes[*node];
                if self.trace.as_ref().is_some_and(|(name, _)| *name == n.name) {
                    self.trace_started = false;
                }
                n.engine = None;
                n.pg.crash();
                n.outcomes.clear();
                n.request = None;
            }
            FaultKind::Switchover { candidate } => {
                if let Some((leader, _, _)) = self.etcd.leader.clone() {
                    if !self.etcd.down {
                        let candidate =
                            candidate.map(|i| self.nodes[i].name.clone()).filter(|c| *c != leader);
                        self.etcd.request_switchover(Some(leader), candidate);
                        self.out.switchovers_requested += 1;
                    }
                }
            }
            // The madsim simulator's faults: never in this schedule.
            FaultKind::ProcessPause { .. }
            | FaultKind::ClockJump { .. }
            | FaultKind::ClockRate { .. }
            | FaultKind::EtcdSlow { .. }
            | FaultKind::AgentShutdown { .. }
            | FaultKind::DiskFull { .. }
            | FaultKind::OneWayCut { .. }
            | FaultKind::Failover { .. }
            | FaultKind::ScheduledSwitchover { .. }
            | FaultKind::Pause => {}
        }
    }

    fn end_fault(&mut self, f: &Fault) {
        match &f.kind {
            FaultKind::EtcdPartition { node } => {
                let name = self.nodes[*node].name.clone();
                self.etcd.partitioned.remove(&name);
            }
            FaultKind::NodeIsolation { node } => {
                self.isolated.remove(node);
            }
            FaultKind::EtcdOutage => self.etcd.down = false,
            FaultKind::NodeCrash { node } => {
                let n = &mut self.nodes[*node];
                n.engine = Some(Node::with_config(n.name.clone(), self.cfg.clone()));
                n.next_wake_ms = self.t;
                n.dcs_lost_since = None;
            }
            // The madsim simulator's faults: never in this schedule.
            FaultKind::PostgresCrash { .. }
            | FaultKind::Switchover { .. }
            | FaultKind::ProcessPause { .. }
            | FaultKind::ClockJump { .. }
            | FaultKind::ClockRate { .. }
            | FaultKind::EtcdSlow { .. }
            | FaultKind::AgentShutdown { .. }
            | FaultKind::DiskFull { .. }
            | FaultKind::OneWayCut { .. }
            | FaultKind::Failover { .. }
            | FaultKind::ScheduledSwitchover { .. }
            | FaultKind::Pause => {}
        }
    }

    /// Agents watch the leader key: a change wakes them at once.
    fn watch_leader(&mut self) {
        let leader = self.etcd.leader.as_ref().map(|(n, _, _)| n.clone());
        if leader != self.last_leader {
            self.last_leader = leader;
            for i in 0..self.nodes.len() {
                let name = self.nodes[i].name.clone();
                if self.etcd.reachable(&name) {
                    let n = &mut self.nodes[i];
                    n.next_wake_ms = n.next_wake_ms.min(self.t + 2 * TICK_MS);
                }
            }
        }
    }

    fn replicate(&mut self) {
        for i in 0..self.nodes.len() {
            let n = &self.nodes[i];
            if !n.alive() || n.pg.process != PgProcess::RunningReplica {
                continue;
            }
            let upstream = n.pg.upstream.as_deref().and_then(|u| self.index(u));
            let source = upstream.filter(|u| {
                let s = &self.nodes[*u];
                s.alive() && s.pg.is_running() && self.connected(i, *u) && n.pg.wal.is_prefix_of(&s.pg.wal)
            });
            match source {
                Some(u) => {
                    let wal = self.nodes[u].pg.wal.clone();
                    let name = self.nodes[i].name.clone();
                    self.nodes[u].replies.insert(name, self.t);
                    let n = &mut self.nodes[i];
                    n.pg.wal = wal;
                    n.pg.streaming = true;
                }
                None => self.nodes[i].pg.streaming = false,
            }
        }
    }

    /// The standbys streaming from `p` right now.
    fn streaming_from(&self, p: usize) -> Vec<usize> {
        let name = &self.nodes[p].name;
        (0..self.nodes.len())
            .filter(|i| {
                let n = &self.nodes[*i];
                *i != p
                    && n.alive()
                    && n.pg.process == PgProcess::RunningReplica
                    && n.pg.streaming
                    && n.pg.upstream.as_deref() == Some(name)
                    && self.connected(*i, p)
                    && n.pg.wal.is_prefix_of(&self.nodes[p].pg.wal)
            })
            .collect()
    }

    /// A write through the node that answers `/primary` (Postgres primary
    /// and its lease ahead), acknowledged once its synchronous standbys
    /// have it.
    fn client_write(&mut self) {
        let target = (0..self.nodes.len()).find(|i| {
            let n = &self.nodes[*i];
            let local = n.local_ms(self.t);
            n.writable()
                && n.engine.as_ref().and_then(|e| e.state().lease_deadline_ms).is_some_and(|d| d > local)
        });
        let Some(p) = target else {
            self.out.writes_failed += 1;
            return;
        };
        let names = self.nodes[p].pg.sync_names.clone();
        let (branch, lsn) = self.nodes[p].pg.write();
        let standbys: Vec<usize> = self
            .streaming_from(p)
            .into_iter()
            .filter(|i| names.members.contains(&self.nodes[*i].name))
            .collect();
        if !names.members.is_empty() && (standbys.len() as u32) < names.num.max(1) {
            self.out.writes_failed += 1;
            return;
        }
        let wal = self.nodes[p].pg.wal.clone();
        for s in standbys {
            self.nodes[s].pg.wal = wal.clone();
        }
        self.acked.push((branch, lsn));
        self.out.writes_acked += 1;
    }

    fn step_node(&mut self, i: usize) {
        let t = self.t;
        let ttl = self.cfg.ttl_ms;
        let name = self.nodes[i].name.clone();
        let local = self.nodes[i].local_ms(t);
        let dcs = if self.etcd.reachable(&name) {
            self.nodes[i].dcs_lost_since = None;
            self.etcd.keep_alive(&name, t, ttl);
            DcsView::Reachable(self.etcd.view())
        } else {
            let since = *self.nodes[i].dcs_lost_since.get_or_insert(local);
            DcsView::Unreachable { since_ms: since }
        };
        let replication = self.pg_stat_replication(i);
        let n = &mut self.nodes[i];
        let obs = Observation {
            now_ms: local,
            wall_ms: WALL_EPOCH_MS + t as i64,
            dcs,
            pg: n.pg.facts(replication),
            tags: Tags::new(),
            outcomes: std::mem::take(&mut n.outcomes),
            request: n.request.take(),
        };
        let engine = n.engine.as_mut().expect("only live nodes step");
        let tracing = self.trace.as_ref().is_some_and(|(node, from)| *node == name && t >= *from);
        if tracing && !self.trace_started {
            self.trace_started = true;
            let start = TraceLine::Start(Box::new(engine.state().clone()));
            self.out.trace.push(serde_json::to_string(&start).expect("states serialize"));
        }
        let traced_obs = tracing.then(|| obs.clone());
        let decision = match catch_unwind(AssertUnwindSafe(|| engine.step(&obs))) {
            Ok(d) => d,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.violation(format!("{name}: engine invariant broken: {msg}"));
                self.nodes[i].engine = Some(Node::with_config(name, self.cfg.clone()));
                return;
            }
        };
        self.out.steps += 1;
        if let Some(observation) = traced_obs {
            let line = TraceLine::Step(Box::new(TraceEntry { observation, decision: decision.clone() }));
            self.out.trace.push(serde_json::to_string(&line).expect("steps serialize"));
        }
        self.mix(&format!("{t} {name} {:?} {}", decision.actions, decision.reason));
        if self.verbose {
            let acts: Vec<String> = decision
                .actions
                .iter()
                .filter(|a| !matches!(a, Action::PublishMember(_)))
                .map(|a| format!("{a:?}"))
                .collect();
            println!("{:>9.2} {name}  {}  [{}]", t as f64 / 1000.0, decision.reason, acts.join(", "));
        }
        self.execute(i, &decision, local);
        let n = &mut self.nodes[i];
        let wake = n.true_span(decision.wake_after_ms).max(TICK_MS);
        n.next_wake_ms = t + wake;
    }

    fn pg_stat_replication(&self, p: usize) -> Vec<keel_core::Standby> {
        if self.nodes[p].pg.process != PgProcess::RunningPrimary {
            return Vec::new();
        }
        let names = &self.nodes[p].pg.sync_names;
        let streaming = self.streaming_from(p);
        streaming
            .into_iter()
            .map(|i| {
                let n = &self.nodes[i];
                let last = self.nodes[p].replies.get(&n.name).copied().unwrap_or(self.t);
                let sync_state = if names.members.contains(&n.name) {
                    if names.quorum {
                        StandbySyncState::Quorum
                    } else {
                        StandbySyncState::Sync
                    }
                } else {
                    StandbySyncState::Async
                };
                keel_core::Standby {
                    name: n.name.clone(),
                    streaming: true,
                    sync_state,
                    flush_lsn: n.pg.wal.lsn(),
                    reply_age_ms: self.t.saturating_sub(last),
                }
            })
            .collect()
    }

    /// Carries out the actions in order, stopping at the first that does
    /// not succeed; every outcome goes into the node's next observation.
    fn execute(&mut self, i: usize, decision: &Decision, local: u64) {
        let mut failed = false;
        let mut outcomes = Vec::new();
        for action in &decision.actions {
            let result = if failed { ActionResult::Skipped } else { self.apply(i, action) };
            failed |= result != ActionResult::Done;
            let lease = matches!(action, Action::AcquireLease | Action::RenewLease { .. });
            let lease_ttl_ms = lease.then_some(self.cfg.ttl_ms);
            outcomes.push(ActionOutcome { action: action.clone(), sent_at_ms: local, result, lease_ttl_ms });
        }
        self.nodes[i].outcomes = outcomes;
    }

    fn dcs(&mut self, i: usize, f: impl FnOnce(&mut EtcdModel, &str) -> Reply) -> ActionResult {
        let name = self.nodes[i].name.clone();
        if !self.etcd.reachable(&name) {
            return ActionResult::Unknown;
        }
        match f(&mut self.etcd, &name) {
            Reply::Ok => {
                // Now and then the answer is lost after etcd applied it.
                if self.rng.chance(2) {
                    ActionResult::Unknown
                } else {
                    ActionResult::Done
                }
            }
            Reply::CompareFailed => ActionResult::Failed,
            Reply::Unreachable => ActionResult::Unknown,
        }
    }

    fn peer_source(&self, i: usize, source: &str) -> Option<usize> {
        self.index(source).filter(|s| {
            let n = &self.nodes[*s];
            n.alive() && n.pg.is_running() && self.connected(i, *s)
        })
    }

    fn apply(&mut self, i: usize, action: &Action) -> ActionResult {
        let t = self.t;
        let ttl = self.cfg.ttl_ms;
        let done = |ok: bool| if ok { ActionResult::Done } else { ActionResult::Failed };
        match action {
            Action::TakeInitializeKey => self.dcs(i, |e, _| e.take_initialize()),
            Action::CancelInitialize { revision } => self.dcs(i, |e, _| e.cancel_initialize(*revision)),
            Action::Bootstrap => {
                let sysid = 7_000_000_000 + self.rng.below(1_000_000);
                let branch = self.branch();
                self.nodes[i].pg.initdb(sysid, branch);
                ActionResult::Done
            }
            Action::WriteInitializeKey { system_id } => self.dcs(i, |e, _| e.write_initialize(*system_id)),
            Action::WriteClusterConfig => {
                let cfg = self.cfg.clone();
                self.dcs(i, |e, _| {
                    e.config = Some(cfg);
                    Reply::Ok
                })
            }
            Action::CloneFrom { source } | Action::Reinitialize { source } => {
                match self.peer_source(i, source) {
                    Some(s) => {
                        let copy = self.nodes[s].pg.clone();
                        self.nodes[i].pg.copy_from(&copy);
                        ActionResult::Done
                    }
                    None => ActionResult::Failed,
                }
            }
            Action::AcquireLease => self.dcs(i, |e, name| e.acquire(name, t, ttl)),
            Action::RenewLease { optime_lsn } => self.dcs(i, |e, name| e.renew(name, t, ttl, *optime_lsn)),
            Action::ReleaseLease { optime_lsn } => self.dcs(i, |e, name| e.release(name, *optime_lsn)),
            Action::Promote => {
                let name = self.nodes[i].name.clone();
                let holder = self.etcd.leader.as_ref().map(|(h, _, _)| h.clone());
                if holder.as_deref() != Some(name.as_str()) {
                    self.violation(format!("{name} promoted while etcd's leader key names {holder:?}"));
                }
                let branch = self.branch();
                self.out.failovers += 1;
                done(self.nodes[i].pg.promote(&name, branch))
            }
            Action::Demote { mode } => {
                let pg = &mut self.nodes[i].pg;
                pg.stop(!matches!(mode, keel_core::DemoteMode::Immediate));
                if !matches!(mode, keel_core::DemoteMode::Offline) {
                    pg.start(false, None);
                }
                ActionResult::Done
            }
            Action::StartPostgres { role } => {
                let pg = &mut self.nodes[i].pg;
                let ok = match role {
                    StartAs::Primary => pg.start(true, None),
                    StartAs::Replica { upstream } => pg.start(false, upstream.clone()),
                };
                done(ok)
            }
            Action::StopPostgres { mode } => {
                self.nodes[i].pg.stop(*mode == StopMode::Fast);
                ActionResult::Done
            }
            Action::RestartPostgres => ActionResult::Done,
            Action::Follow { upstream } => {
                let pg = &mut self.nodes[i].pg;
                pg.upstream = upstream.clone();
                pg.streaming = false;
                ActionResult::Done
            }
            Action::RecoverCrash => {
                self.nodes[i].pg.clean = true;
                ActionResult::Done
            }
            Action::Rewind { source } => {
                let clean = self.nodes[i].pg.clean && self.cfg.use_pg_rewind;
                match self.peer_source(i, source) {
                    Some(s) if clean => {
                        let copy = self.nodes[s].pg.clone();
                        self.nodes[i].pg.copy_from(&copy);
                        ActionResult::Done
                    }
                    _ => ActionResult::Failed,
                }
            }
            Action::PublishMember(status) => {
                let status = status.clone();
                self.dcs(i, |e, name| {
                    e.publish(name, &status, t, ttl);
                    Reply::Ok
                })
            }
            Action::WriteSyncKey { members, quorum, expected_revision } => {
                let (members, quorum, expected) = (members.clone(), *quorum, *expected_revision);
                self.dcs(i, |e, name| e.write_sync(name, members, quorum, expected))
            }
            Action::SetSyncStandbyNames(names) => {
                self.nodes[i].pg.sync_names = names.clone();
                ActionResult::Done
            }
            Action::ClearFailoverRequest { revision } => self.dcs(i, |e, _| e.clear_failover(*revision)),
            Action::WriteHistory { switches } => {
                let switches = switches.clone();
                self.dcs(i, |e, _| {
                    e.history = switches;
                    Reply::Ok
                })
            }
            Action::WriteFailsafeKey { members } => {
                let members = members.clone();
                self.dcs(i, |e, _| {
                    e.failsafe = Some(members);
                    Reply::Ok
                })
            }
            Action::CheckFailsafe { members } => {
                let leader = self.nodes[i].name.clone();
                let all = members
                    .iter()
                    .all(|m| self.index(m).is_some_and(|j| self.nodes[j].alive() && self.connected(i, j)));
                if all {
                    for m in members {
                        if let Some(j) = self.index(m) {
                            self.nodes[j].request = Some(Request::FailsafePing { leader: leader.clone() });
                        }
                    }
                }
                done(all)
            }
        }
    }

    fn branch(&mut self) -> u64 {
        self.next_branch += 1;
        self.next_branch
    }

    /// Safety: never two nodes accepting writes at the same instant.
    fn check_split_brain(&mut self) {
        let writable: Vec<String> =
            self.nodes.iter().filter(|n| n.writable()).map(|n| n.name.clone()).collect();
        if writable.len() > 1 {
            self.violation(format!("split brain: {} all accept writes", writable.join(", ")));
        }
    }

    /// Liveness: after the last fault healed, a writable primary with a
    /// lease exists within ttl + loop_wait + 1 s.
    fn check_liveness(&mut self, healed_at: u64) {
        let ok = self.nodes.iter().any(|n| {
            n.writable()
                && n.engine
                    .as_ref()
                    .and_then(|e| e.state().lease_deadline_ms)
                    .is_some_and(|d| d > n.local_ms(self.t))
        });
        if !ok {
            let bound = self.liveness_bound();
            let reasons: Vec<String> = self
                .nodes
                .iter()
                .map(|n| {
                    format!("{}: {:?}/{:?}", n.name, n.engine.as_ref().map(|e| e.state().role), n.pg.process)
                })
                .collect();
            self.violation(format!(
                "liveness: no writable primary {} ms after faults healed at {} ms ({})",
                bound,
                healed_at,
                reasons.join(", ")
            ));
        }
    }

    /// At the end: no acknowledged write lost (strict mode: a violation;
    /// otherwise counted), and every replica's history is a prefix of the
    /// leader's.
    fn check_end(&mut self) {
        let Some(leader) = self.nodes.iter().position(|n| n.writable()) else {
            return;
        };
        let wal = self.nodes[leader].pg.wal.clone();
        let lost = self.acked.iter().filter(|(b, l)| !wal.contains(*b, *l)).count() as u64;
        if lost > 0 {
            if self.cfg.synchronous_mode_strict {
                self.violation(format!("{lost} acknowledged writes lost in synchronous_mode_strict"));
            } else {
                self.out.writes_lost_allowed += lost;
            }
        }
        for i in 0..self.nodes.len() {
            let n = &self.nodes[i];
            if i != leader
                && n.alive()
                && n.pg.process == PgProcess::RunningReplica
                && !n.pg.wal.is_prefix_of(&wal)
            {
                let name = n.name.clone();
                let mut detail = String::new();
                let _ = write!(detail, "{:?}", n.pg.wal.history());
                self.violation(format!(
                    "{name} streams nothing: its history {detail} is not a prefix of the leader's"
                ));
            }
        }
    }
}
