//! The madsim simulator (built with `--cfg madsim`): one madsim runtime
//! per seed; a simulated etcd node (`etcd`); database nodes, each running
//! keel-runtime's real `Agent::run` with the DCS layer over `SimKv` and a
//! `SimPostgres` on the Postgres model, on a clock of its own; a client
//! writing through whichever node answers as primary; faults from the
//! seed; and the checkers of `world` after every event.
//!
//! Randomness: the configuration, clocks and fault schedule come from the
//! seed through `SimRng`; everything inside the simulation (network
//! latency, start offsets, lost answers) from madsim's generator, which
//! the same seed also fixes.

mod etcd;
mod postgres;
mod record;
mod world;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_core::{DynamicConfig, Request};
use keel_runtime::agent::command::Command;
use keel_runtime::agent::{Agent, Clock, Engine};
use keel_runtime::api::NodeStatus;
use keel_runtime::config::Config;
use keel_runtime::dcs::{Dcs, Keys, Op};
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle, Runtime};
use tokio::sync::mpsc;

use crate::cluster::Outcome;
use crate::faults::{self, Fault, FaultKind};
use crate::rng::SimRng;
use world::{lock, Shared, World};

const CLIENT_EVERY: Duration = Duration::from_millis(50);
const REPLICATE_EVERY: Duration = Duration::from_millis(100);
const WARMUP_MS: u64 = 30_000;

#[derive(Clone, Debug)]
pub struct AgentSimConfig {
    pub seed: u64,
    pub nodes: usize,
    pub duration_ms: u64,
    pub faults: bool,
    pub verbose: bool,
    /// A named scenario (`scenarios::SCENARIOS`) instead of random faults.
    pub scenario: Option<String>,
}

/// What a run does beyond its seed's configuration (`run_with`).
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Record the event trace (`crate::trace`) into `Outcome::trace`.
    pub record: bool,
    /// Carry out exactly these faults instead of the seed's schedule
    /// (everything else still comes from the seed): replays a shrunk
    /// schedule.
    pub faults: Option<Vec<Fault>>,
    /// A test-only checker: more promotions than this in the run is a
    /// violation (a run made to fail on purpose, to test the shrinker).
    pub max_failovers: Option<u64>,
    /// Every node decides by this engine's steps (`None`: keel-core's);
    /// the simulator's tests run deliberately broken ones.
    pub engine: Option<EngineFactory>,
}

/// The timing and replication settings of one seed's cluster.
struct Setup {
    yaml: Vec<String>,
    dynamic: DynamicConfig,
    sync_mode: &'static str,
    /// Per node: clock rate (ppm) and wall clock offset (ms).
    clocks: Vec<(i64, i64)>,
    schedule: Vec<Fault>,
    pg: PgSettings,
}

/// The seed's Postgres settings that pg_rewind depends on.
#[derive(Debug)]
struct PgSettings {
    /// Per node: `wal_log_hints` (on in keel's config, as in Patroni's;
    /// off now and then, as an operator's override would have it).
    wal_log_hints: Vec<bool>,
    /// `initdb --data-checksums`.
    data_checksums: bool,
    /// `wal_keep_size` in the model's LSN units (a client write each).
    wal_keep: u64,
}

impl PgSettings {
    /// Drawn from a stream of its own: the seed's other draws stay as they were.
    fn draw(seed: u64, nodes: usize) -> PgSettings {
        let mut rng = SimRng::new(seed ^ 0x0905_76e5);
        PgSettings {
            wal_log_hints: (0..nodes).map(|_| !rng.chance(5)).collect(),
            data_checksums: rng.chance(30),
            // Mostly room for hours of the client's writes; sometimes only
            // for 5 to 100 s of them, which a long partition outlasts.
            wal_keep: if rng.chance(60) { 100_000 } else { 100 + rng.below(1_900) },
        }
    }
}

fn setup(sim: &AgentSimConfig, faults: Option<&[Fault]>) -> Setup {
    let mut rng = SimRng::new(sim.seed);
    // Timing varies per seed (a fixed phase hides bugs), always within the
    // rule loop_wait + 2 * retry_timeout <= ttl.
    let loop_wait = 1 + rng.below(5);
    let retry_timeout = 1 + rng.below(5);
    let ttl = loop_wait + 2 * retry_timeout + rng.below(20);
    let (sync, strict, sync_mode) = match rng.below(4) {
        0 => (false, false, "async"),
        1 => (true, false, "sync"),
        _ => (true, true, "sync-strict"),
    };
    let use_pg_rewind = rng.chance(70);
    let rewind_drill = sim.scenario.as_deref() == Some(crate::scenarios::REWIND_WAL_GONE);
    let (sync, strict, sync_mode, use_pg_rewind) =
        if rewind_drill { (false, false, "async", true) } else { (sync, strict, sync_mode, use_pg_rewind) };
    let failsafe = rng.chance(20);
    // Patroni's defaults keep a diverged node's data until the operator
    // acts; half the seeds let keel delete it instead.
    // The rewind drill shows the fall back to a base backup, which the
    // operator allows there.
    let remove_on_failure = rng.chance(50) || rewind_drill;
    let remove_on_diverged = rng.chance(50);
    let yaml: Vec<String> = (0..sim.nodes)
        .map(|i| {
            let ip = node_ip(i);
            format!(
                "scope: sim\nname: pg{n}\nnamespace: /service/\n\
                 restapi:\n  listen: {ip}:8008\n  connect_address: {ip}:8008\n\
                 etcd3:\n  hosts: [{etcd}]\n\
                 bootstrap:\n  dcs:\n    ttl: {ttl}\n    loop_wait: {loop_wait}\n    retry_timeout: {retry_timeout}\n\
                 \x20   synchronous_mode: {sync}\n    synchronous_mode_strict: {strict}\n    failsafe_mode: {failsafe}\n\
                 \x20   postgresql:\n      use_pg_rewind: {use_pg_rewind}\n\
                 postgresql:\n  listen: {ip}:5432\n  connect_address: {ip}:5432\n  data_dir: /sim/pg{n}\n\
                 \x20 remove_data_directory_on_rewind_failure: {remove_on_failure}\n\
                 \x20 remove_data_directory_on_diverged_timelines: {remove_on_diverged}\n",
                n = i + 1,
                etcd = etcd::ETCD_ADDR,
            )
        })
        .collect();
    let first =
        keel_runtime::config::parse(&yaml[0], &BTreeMap::new()).expect("the simulator's config is valid");
    let mut dynamic = first.config.bootstrap.dcs.to_core();
    first.config.local_over(&mut dynamic);
    let bound = dynamic.max_clock_drift_ppm as i64;
    let clocks = (0..sim.nodes)
        .map(|_| (rng.below(2 * bound as u64 + 1) as i64 - bound, rng.below(600_000) as i64 - 300_000))
        .collect();
    let settle_ms = 3 * dynamic.ttl_ms + 30_000;
    let heal_by = sim.duration_ms.saturating_sub(settle_ms);
    // The slack of the timing rule: how long a leader's agent may stall.
    let pause_max_ms = dynamic.ttl_ms.saturating_sub(dynamic.loop_wait_ms + 2 * dynamic.retry_timeout_ms);
    let scenario =
        sim.scenario.as_deref().and_then(|name| crate::scenarios::schedule(name, WARMUP_MS + 30_000));
    let schedule = if let Some(faults) = faults {
        faults.to_vec()
    } else if let Some(faults) = scenario {
        faults
    } else if sim.faults {
        faults::schedule_agents(
            &mut rng,
            sim.nodes,
            WARMUP_MS,
            heal_by,
            pause_max_ms,
            dynamic.max_clock_drift_ppm,
        )
    } else {
        Vec::new()
    };
    let mut pg = PgSettings::draw(sim.seed, sim.nodes);
    if rewind_drill {
        pg.wal_log_hints = vec![true; sim.nodes];
        pg.wal_keep = 200;
    }
    Setup { yaml, dynamic, sync_mode, clocks, schedule, pg }
}

fn node_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1 + i as u8))
}

/// Makes a node's engine from its name and bootstrap settings, in place of
/// keel-core's `Node` (the simulator's tests run deliberately broken ones).
pub type EngineFactory = Arc<dyn Fn(&str, DynamicConfig) -> Box<dyn Engine + Send> + Send + Sync>;

/// Runs one seed to the end and reports what the checkers found.
///
/// Each seed runs on a thread of its own, as madsim's test harness does:
/// std's hash maps draw their keys once per thread, so a seed that ran
/// after others on the same thread would see other keys, and iteration
/// orders, than the same seed run alone.
pub fn run(sim: &AgentSimConfig) -> Outcome {
    run_with(sim, &RunOptions::default())
}

/// [`run`] with every node deciding by `engine`'s (`None`: keel-core's).
pub fn run_engine(sim: &AgentSimConfig, engine: Option<EngineFactory>) -> Outcome {
    run_with(sim, &RunOptions { engine, ..RunOptions::default() })
}

/// [`run`] with options: a trace, an explicit fault list, an engine.
pub fn run_with(sim: &AgentSimConfig, opts: &RunOptions) -> Outcome {
    let sim = sim.clone();
    let opts = opts.clone();
    let seed = sim.seed;
    std::thread::spawn(move || {
        let runtime = Runtime::with_seed_and_config(sim.seed, madsim::Config::default());
        runtime.block_on(drive_with(sim, opts))
    })
    .join()
    .unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        Outcome { seed, violations: vec![format!("the simulation panicked: {msg}")], ..Outcome::default() }
    })
}

pub async fn drive(sim: AgentSimConfig) -> Outcome {
    drive_with(sim, RunOptions::default()).await
}

pub async fn drive_with(sim: AgentSimConfig, opts: RunOptions) -> Outcome {
    // madsim's clock starts at instant zero, and a node clock that runs
    // fast reads more than the time since; an idle simulated hour first
    // keeps `Clock::start` (now minus the node's reading) representable.
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    let s = setup(&sim, opts.faults.as_deref());
    let handle = Handle::current();
    let first = keel_runtime::config::parse(&s.yaml[0], &BTreeMap::new()).expect("valid").config;
    let leader_key = Keys::new(&first.namespace, &first.scope).leader();
    let names: Vec<String> = (0..sim.nodes).map(|i| format!("pg{}", i + 1)).collect();
    let out = Outcome {
        seed: sim.seed,
        sync_mode: s.sync_mode.to_owned(),
        schedule: s.schedule.clone(),
        ..Outcome::default()
    };
    let world: Shared =
        Arc::new(Mutex::new(World::new(names, leader_key, s.dynamic.clone(), out, sim.verbose)));
    {
        let mut w = lock(&world);
        // A named drill runs its own faults only: a lost etcd answer in the
        // background makes a leader whose ttl has no slack demote, a
        // failover the drill did not ask for.
        w.lossy = sim.faults && sim.scenario.is_none();
        for (pg, hints) in w.pg.iter_mut().zip(&s.pg.wal_log_hints) {
            pg.wal_log_hints = *hints;
            pg.data_checksums = s.pg.data_checksums;
            pg.wal_keep = s.pg.wal_keep;
        }
    }
    let cluster = format!(
        "ttl {} ms, loop_wait {} ms, retry_timeout {} ms, {}, clocks {:?}, {:?}",
        s.dynamic.ttl_ms, s.dynamic.loop_wait_ms, s.dynamic.retry_timeout_ms, s.sync_mode, s.clocks, s.pg
    );
    if opts.record {
        lock(&world).start_trace(sim.seed, sim.duration_ms, cluster.clone());
    }
    lock(&world).event(&format!("cluster: {cluster}"));

    let etcd_node = {
        let world = world.clone();
        handle
            .create_node()
            .name("etcd")
            .ip(etcd::ETCD_ADDR.parse::<std::net::SocketAddr>().expect("an address").ip())
            .init(move || etcd::serve(world.clone()))
            .build()
    };
    let mut nodes: Vec<NodeHandle> = Vec::new();
    let mut clocks = Vec::new();
    for (i, yaml) in s.yaml.iter().enumerate() {
        let cfg = keel_runtime::config::parse(yaml, &BTreeMap::new()).expect("valid").config;
        let clock = Clock::skewed(s.clocks[i].0, s.clocks[i].1);
        clocks.push(clock.clone());
        let world = world.clone();
        let engine = opts.engine.clone();
        let node = handle
            .create_node()
            .name(cfg.name.clone())
            .ip(node_ip(i))
            .init(move || node_main(i, world.clone(), clock.clone(), cfg.clone(), engine.clone()))
            .build();
        nodes.push(node);
    }
    {
        let world = world.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REPLICATE_EVERY).await;
                lock(&world).replicate();
            }
        });
    }
    {
        let world = world.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CLIENT_EVERY).await;
                lock(&world).client_tick();
            }
        });
    }

    // HAProxy checks each server every `inter`, each at a phase of its own.
    let mut phases = SimRng::new(sim.seed ^ 0x4a_9e0c);
    for i in 0..sim.nodes {
        let world = world.clone();
        let phase = Duration::from_millis(phases.below(world::HAPROXY_INTER_MS));
        tokio::spawn(async move {
            tokio::time::sleep(phase).await;
            loop {
                lock(&world).haproxy_check(i);
                tokio::time::sleep(Duration::from_millis(world::HAPROXY_INTER_MS)).await;
            }
        });
    }

    let mut fx = Faults {
        handle: handle.clone(),
        net: NetSim::current(),
        world: world.clone(),
        etcd: etcd_node.id(),
        nodes,
        clocks,
        rates: s.clocks.iter().map(|c| c.0).collect(),
        rng: SimRng::new(sim.seed ^ 0x5eed),
    };
    let start = tokio::time::Instant::now();
    let healed_at = s.schedule.iter().map(|f| f.end_ms).max().unwrap_or(0).max(WARMUP_MS);
    let bound_ms = s.dynamic.ttl_ms + s.dynamic.loop_wait_ms + 1_000;
    // Ends sort before starts at the same instant: a fault never outlives
    // its end because another began then.
    let mut timeline: Vec<(u64, Step)> = Vec::new();
    let mut faults = s.schedule.clone();
    for (i, f) in faults.iter().enumerate() {
        timeline.push((f.start_ms, Step::Start(i)));
        timeline.push((f.end_ms, Step::End(i)));
    }
    timeline.push((healed_at.min(sim.duration_ms), Step::Calm));
    timeline.push(((healed_at + bound_ms).min(sim.duration_ms), Step::CheckLiveness));
    timeline.sort_by_key(|(at, step)| (*at, matches!(step, Step::Start(_))));
    for (at, step) in timeline {
        tokio::time::sleep_until(start + Duration::from_millis(at)).await;
        match step {
            Step::Start(i) => {
                // A scenario's fault aimed at the primary hits the node that
                // holds the leader key now (pg1 when none does).
                let leader = {
                    let mut w = lock(&world);
                    w.leader().and_then(|name| w.index(&name)).unwrap_or(0)
                };
                if let Some(node) = faults[i].kind.node_mut().filter(|n| **n == crate::scenarios::PRIMARY) {
                    *node = leader;
                }
                if let FaultKind::OneWayCut { to, .. } = &mut faults[i].kind {
                    if *to == crate::scenarios::PRIMARY {
                        *to = leader;
                    }
                }
                fx.start(&faults[i]);
            }
            Step::End(i) => fx.end(&faults[i]),
            // Once every fault healed, etcd loses no more answers either.
            Step::Calm => lock(&world).lossy = false,
            Step::CheckLiveness => lock(&world).check_liveness(healed_at, bound_ms),
        }
    }
    tokio::time::sleep_until(start + Duration::from_millis(sim.duration_ms)).await;
    let mut w = lock(&world);
    w.check_end();
    if !sim.faults && w.out.failovers > 0 {
        let n = w.out.failovers;
        w.violation(format!("liveness: a cluster without faults changed leader {n} times"));
    }
    if let Some(max) = opts.max_failovers.filter(|max| w.out.failovers > *max) {
        let n = w.out.failovers;
        w.violation(format!("too many failovers for the test limit: {n} > {max}"));
    }
    w.out.simulated_ms = sim.duration_ms;
    // As carried out: a scenario's faults name the primary they hit.
    w.out.schedule = faults;
    w.out.trace_hash = w.trace_hash();
    w.finish_trace();
    let out = w.out.clone();
    drop(w);
    out
}

enum Step {
    Start(usize),
    End(usize),
    Calm,
    CheckLiveness,
}

/// One database node: the agent with its etcd client, watch and Postgres.
/// Runs again from the start when the node restarts after a crash.
async fn node_main(i: usize, world: Shared, clock: Clock, cfg: Config, engine: Option<EngineFactory>) {
    // Agents start at different moments (and again after a crash).
    tokio::time::sleep(Duration::from_millis(madsim::rand::random::<u64>() % 3_000)).await;
    let status = NodeStatus::new(&cfg.name, &cfg.scope, BTreeMap::new()).shared();
    {
        let mut w = lock(&world);
        w.agent_up[i] = true;
        w.status[i] = Some(status.clone());
        let text = format!("{} agent starts", cfg.name);
        w.event(&text);
    }
    let keys = Keys::new(&cfg.namespace, &cfg.scope);
    let retry = Duration::from_millis(cfg.bootstrap.dcs.to_core().retry_timeout_ms);
    let kv = etcd::SimKv::connect(node_ip(i), retry).await;
    let (wake_tx, wake_rx) = mpsc::channel(1);
    kv.spawn_watch(vec![keys.leader(), keys.failover()], wake_tx);
    let conn_url = format!("postgres://{}:5432/postgres", node_ip(i));
    let api_url = format!("http://{}:8008/patroni", node_ip(i));
    let dcs = Dcs::new(kv, keys, &cfg.name, &conn_url, &api_url);
    let (requests, rx) = mpsc::channel(8);
    lock(&world).commands[i] = Some(requests);
    let pg = postgres::SimPostgres::new(i, world.clone());
    match engine {
        None => {
            Agent::new(cfg, dcs, pg, rx).with_clock(clock).wake_on(wake_rx).publish_to(status).run().await
        }
        Some(make) => {
            let engine = make(&cfg.name, cfg.bootstrap.dcs.to_core());
            let agent = Agent::with_engine(cfg, dcs, pg, rx, engine);
            agent.with_clock(clock).wake_on(wake_rx).publish_to(status).run().await;
        }
    }
    // Shut down cleanly (a crash never gets here).
    let mut w = lock(&world);
    w.agent_up[i] = false;
    w.status[i] = None;
    w.commands[i] = None;
    w.event(&format!("pg{} agent exits", i + 1));
}

/// Carries out the fault schedule on the simulation.
struct Faults {
    handle: Handle,
    net: Arc<NetSim>,
    world: Shared,
    etcd: madsim::task::NodeId,
    nodes: Vec<NodeHandle>,
    clocks: Vec<Clock>,
    /// Each node's usual clock rate, restored when a rate fault ends.
    rates: Vec<i64>,
    rng: SimRng,
}

impl Faults {
    fn start(&mut self, f: &Fault) {
        let mut w = lock(&self.world);
        w.record_fault(f, true);
        *w.out.faults.entry(f.kind.label()).or_default() += 1;
        w.event(&format!("fault {:?} until {:.1} s", f.kind, f.end_ms as f64 / 1000.0));
        match &f.kind {
            FaultKind::EtcdPartition { node } => {
                let id = self.nodes[*node].id();
                // Both ways, or one way: requests lost (never applied), or
                // answers lost (applied, the client cannot know).
                match self.rng.below(3) {
                    0 => {
                        self.net.clog_link(id, self.etcd);
                        self.net.clog_link(self.etcd, id);
                    }
                    1 => self.net.clog_link(id, self.etcd),
                    _ => self.net.clog_link(self.etcd, id),
                }
            }
            FaultKind::NodeIsolation { node } => {
                w.isolated.insert(*node);
            }
            FaultKind::EtcdOutage => w.etcd_down = true,
            FaultKind::PostgresCrash { node } => {
                w.pg[*node].crash();
            }
            FaultKind::NodeCrash { node } => {
                self.handle.kill(self.nodes[*node].id());
                w.agent_up[*node] = false;
                w.status[*node] = None;
                w.pg[*node].crash();
            }
            FaultKind::Switchover { candidate } => {
                if w.etcd_down {
                    return;
                }
                if let Some(leader) = w.leader() {
                    let candidate = candidate.map(|i| w.names[i].clone()).filter(|c| *c != leader);
                    let value = match candidate {
                        Some(c) => format!(r#"{{"leader":"{leader}","member":"{c}"}}"#),
                        None => format!(r#"{{"leader":"{leader}"}}"#),
                    };
                    let key = w.leader_key.replace("/leader", "/failover");
                    let put = Op::Put { key, value: value.into_bytes(), lease: 0 };
                    if w.kv.txn(&[], vec![put], vec![]).is_ok() {
                        w.out.switchovers_requested += 1;
                    }
                }
            }
            FaultKind::ProcessPause { node } => self.handle.pause(self.nodes[*node].id()),
            FaultKind::ClockJump { node, ms, wall_ms } => self.clocks[*node].jump(*ms, *wall_ms),
            FaultKind::ClockRate { node, rate_ppm } => self.clocks[*node].set_rate_ppm(*rate_ppm),
            FaultKind::EtcdSlow { delay_ms } => w.etcd_delay_ms = *delay_ms,
            FaultKind::DiskFull { node } => w.pg[*node].disk_full = true,
            FaultKind::OneWayCut { node, to } => {
                w.cut.insert((*node, *to));
            }
            FaultKind::AgentShutdown { node } => {
                // SIGTERM: what the binary's signal handler sends.
                if let Some(tx) = &w.commands[*node] {
                    let _ = tx.try_send(Command::tell(Request::Shutdown));
                }
            }
        }
    }

    fn end(&mut self, f: &Fault) {
        let mut w = lock(&self.world);
        w.record_fault(f, false);
        w.event(&format!("healed {:?}", f.kind));
        match &f.kind {
            FaultKind::EtcdPartition { node } => {
                let id = self.nodes[*node].id();
                self.net.unclog_link(id, self.etcd);
                self.net.unclog_link(self.etcd, id);
            }
            FaultKind::NodeIsolation { node } => {
                w.isolated.remove(node);
            }
            FaultKind::EtcdOutage => {
                w.etcd_down = false;
                // A new etcd leader renews every lease.
                let now = w.now_ms();
                w.kv.refresh_leases(now);
            }
            FaultKind::NodeCrash { node } | FaultKind::AgentShutdown { node } => {
                self.handle.restart(self.nodes[*node].id())
            }
            FaultKind::ProcessPause { node } => self.handle.resume(self.nodes[*node].id()),
            FaultKind::ClockRate { node, .. } => self.clocks[*node].set_rate_ppm(self.rates[*node]),
            FaultKind::EtcdSlow { .. } => w.etcd_delay_ms = 0,
            FaultKind::DiskFull { node } => w.pg[*node].disk_full = false,
            FaultKind::OneWayCut { node, to } => {
                w.cut.remove(&(*node, *to));
            }
            FaultKind::PostgresCrash { .. } | FaultKind::Switchover { .. } | FaultKind::ClockJump { .. } => {}
        }
    }
}
