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

#[derive(Clone, Debug, Default)]
pub struct AgentSimConfig {
    pub seed: u64,
    pub nodes: usize,
    pub duration_ms: u64,
    pub faults: bool,
    pub verbose: bool,
    /// A named scenario (`scenarios::SCENARIOS`) instead of random faults.
    pub scenario: Option<String>,
    /// Settings from the command line over the seed's draws.
    pub settings: crate::settings::Overrides,
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
    names: Vec<String>,
    dynamic: DynamicConfig,
    /// The settings as `key=value` words (the batch summary prints them).
    summary: String,
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

/// The seed's settings of the cluster, with the command line's over them
/// (`crate::settings`), as the nodes' YAML; an error when the agent's own
/// configuration check refuses them.
pub fn setup_checked(sim: &AgentSimConfig) -> Result<String, String> {
    setup(sim, None).map(|s| s.summary)
}

/// The seed's draws beyond timing and replication mode, from a stream of
/// their own: the settings and tags issue 12 found never drawn.
struct Drawn {
    maximum_lag_on_failover: u64,
    synchronous_node_count: u64,
    primary_start_timeout: u64,
    check_timeline: bool,
    /// Per node, its tags as YAML values.
    tags: Vec<Vec<(&'static str, String)>>,
}

impl Drawn {
    fn draw(seed: u64, nodes: usize) -> Drawn {
        let mut rng = SimRng::new(seed ^ 0x7a95_11e5);
        // The model's LSN counts client writes (20 a second): a small limit
        // is seconds of lag, Patroni's default 1 MiB never binds.
        let maximum_lag_on_failover = if rng.chance(70) { 1_048_576 } else { rng.below(200) };
        let synchronous_node_count = if nodes >= 3 && rng.chance(20) { 2 } else { 1 };
        let primary_start_timeout = if rng.chance(80) { 300 } else { rng.below(60) };
        let check_timeline = rng.chance(50);
        let mut tags: Vec<Vec<(&'static str, String)>> = (0..nodes)
            .map(|_| {
                let mut tags = Vec::new();
                if rng.chance(12) {
                    tags.push(("nofailover", "true".to_owned()));
                }
                if rng.chance(10) {
                    tags.push(("nosync", "true".to_owned()));
                }
                if rng.chance(15) {
                    tags.push(("failover_priority", rng.below(4).to_string()));
                }
                tags
            })
            .collect();
        // At least one member may lead (else no seed of it tests anything).
        let may_lead = |t: &[(&str, String)]| {
            t.iter().all(|(k, v)| !(*k == "nofailover" || (*k == "failover_priority" && v == "0")))
        };
        if !tags.iter().any(|t| may_lead(t)) {
            let i = rng.below(nodes as u64) as usize;
            tags[i].retain(|(k, _)| *k == "nosync");
        }
        Drawn { maximum_lag_on_failover, synchronous_node_count, primary_start_timeout, check_timeline, tags }
    }
}

fn setup(sim: &AgentSimConfig, faults: Option<&[Fault]>) -> Result<Setup, String> {
    let o = &sim.settings;
    o.check(sim.nodes)?;
    let mut rng = SimRng::new(sim.seed);
    // Timing varies per seed (a fixed phase hides bugs), always within the
    // rule loop_wait + 2 * retry_timeout <= ttl: mostly fast leases, a
    // quarter of the seeds the range real deployments use, the guide's
    // ttl 30 / loop_wait 10 / retry_timeout 10 included.
    let (loop_wait, retry_timeout, slack) = if rng.chance(25) {
        (5 + rng.below(6), 5 + rng.below(6), rng.below(11))
    } else {
        (1 + rng.below(5), 1 + rng.below(5), rng.below(20))
    };
    let (loop_wait, retry_timeout, slack) = (loop_wait as i64, retry_timeout as i64, slack as i64);
    // A setting given wins; the others still come from the seed, shortened
    // to fit a given ttl.
    let set_ttl = o.int("ttl");
    let retry_timeout = o.int("retry_timeout").unwrap_or(match set_ttl {
        Some(ttl) => retry_timeout.min((ttl - o.int("loop_wait").unwrap_or(1)) / 2).max(1),
        None => retry_timeout,
    });
    let loop_wait = o.int("loop_wait").unwrap_or(match set_ttl {
        Some(ttl) => loop_wait.min(ttl - 2 * retry_timeout).max(1),
        None => loop_wait,
    });
    let ttl = set_ttl.unwrap_or(loop_wait + 2 * retry_timeout + slack);
    let (sync, strict) = match rng.below(4) {
        0 => (false, false),
        1 => (true, false),
        _ => (true, true),
    };
    let use_pg_rewind = rng.chance(70);
    let rewind_drill = sim.scenario.as_deref() == Some(crate::scenarios::REWIND_WAL_GONE);
    let (sync, strict, use_pg_rewind) =
        if rewind_drill { (false, false, true) } else { (sync, strict, use_pg_rewind) };
    let failsafe = rng.chance(20);
    // Patroni's defaults keep a diverged node's data until the operator
    // acts; half the seeds let keel delete it instead. The rewind drill
    // shows the fall back to a base backup, which the operator allows
    // there.
    let remove_on_failure =
        o.bool("remove_data_directory_on_rewind_failure").unwrap_or(rng.chance(50) || rewind_drill);
    let remove_on_diverged = o.bool("remove_data_directory_on_diverged_timelines").unwrap_or(rng.chance(50));
    let mut d = Drawn::draw(sim.seed, sim.nodes);
    if sim.scenario.is_some() {
        // A named drill is the guide's cluster: no tags but those given.
        d.tags.iter_mut().for_each(Vec::clear);
    }
    let sync_mode = o.get("synchronous_mode").map_or(sync.to_string(), ToString::to_string);
    let strict = o.bool("synchronous_mode_strict").unwrap_or(strict);
    let names = o.member_names(sim.nodes);
    let mut dcs = vec![
        ("ttl", ttl.to_string()),
        ("loop_wait", loop_wait.to_string()),
        ("retry_timeout", retry_timeout.to_string()),
        ("maximum_lag_on_failover", d.maximum_lag_on_failover.to_string()),
        ("synchronous_mode", sync_mode.clone()),
        ("synchronous_mode_strict", strict.to_string()),
        ("synchronous_node_count", d.synchronous_node_count.to_string()),
        ("failsafe_mode", failsafe.to_string()),
        ("primary_start_timeout", d.primary_start_timeout.to_string()),
        ("check_timeline", d.check_timeline.to_string()),
    ];
    for (key, value) in &mut dcs {
        if let Some(given) = o.get(key) {
            *value = given.to_string();
        }
    }
    if let Some(drift) = o.get("max_clock_drift") {
        dcs.push(("max_clock_drift", drift.to_string()));
    }
    let use_pg_rewind = o.bool("use_pg_rewind").unwrap_or(use_pg_rewind);
    let dcs_yaml: String = dcs.iter().map(|(k, v)| format!("    {k}: {v}\n")).collect();
    let tags: Vec<Vec<(&str, String)>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut tags = d.tags[i].clone();
            for t in o.tags.iter().filter(|t| t.node == *name) {
                tags.retain(|(k, _)| *k != t.key);
                tags.push((t.key, t.value.to_string()));
            }
            tags
        })
        .collect();
    let yaml: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let ip = node_ip(i);
            let tags: String = tags[i].iter().map(|(k, v)| format!("  {k}: {v}\n")).collect();
            let tags = if tags.is_empty() { String::new() } else { format!("tags:\n{tags}") };
            format!(
                "scope: sim\nname: {name}\nnamespace: /service/\n\
                 restapi:\n  listen: {ip}:8008\n  connect_address: {ip}:8008\n\
                 etcd3:\n  hosts: [{etcd}]\n\
                 bootstrap:\n  dcs:\n{dcs_yaml}\
                 \x20   postgresql:\n      use_pg_rewind: {use_pg_rewind}\n\
                 postgresql:\n  listen: {ip}:5432\n  connect_address: {ip}:5432\n  data_dir: /sim/{name}\n\
                 \x20 remove_data_directory_on_rewind_failure: {remove_on_failure}\n\
                 \x20 remove_data_directory_on_diverged_timelines: {remove_on_diverged}\n{tags}",
                etcd = etcd::ETCD_ADDR,
            )
        })
        .collect();
    for (name, text) in names.iter().zip(&yaml) {
        if let Err(e) = keel_runtime::config::parse(text, &BTreeMap::new()) {
            return Err(format!("the agent refuses the settings of {name}: {e}"));
        }
    }
    let tag_text: Vec<String> = names
        .iter()
        .zip(&tags)
        .filter(|(_, t)| !t.is_empty())
        .map(|(n, t)| {
            let t: Vec<String> = t.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{n}:{}", t.join(","))
        })
        .collect();
    let mut summary: Vec<String> = dcs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    summary.push(format!("use_pg_rewind={use_pg_rewind}"));
    summary.push(format!("remove_data_directory_on_rewind_failure={remove_on_failure}"));
    summary.push(format!("remove_data_directory_on_diverged_timelines={remove_on_diverged}"));
    if !tag_text.is_empty() {
        summary.push(format!("tags {}", tag_text.join(" ")));
    }
    let summary = summary.join(" ");
    let sync_mode = match (sync_mode.as_str(), strict) {
        ("false", _) => "async",
        ("quorum", false) => "quorum",
        ("quorum", true) => "quorum-strict",
        (_, false) => "sync",
        (_, true) => "sync-strict",
    };
    let first = keel_runtime::config::parse(&yaml[0], &BTreeMap::new()).map_err(|e| e.to_string())?;
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
    Ok(Setup { yaml, names, dynamic, sync_mode, clocks, schedule, pg, summary })
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
    let s = match setup(&sim, opts.faults.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            return Outcome {
                seed: sim.seed,
                violations: vec![format!("bad settings: {e}")],
                ..Outcome::default()
            }
        }
    };
    let handle = Handle::current();
    let first = keel_runtime::config::parse(&s.yaml[0], &BTreeMap::new()).expect("valid").config;
    let leader_key = Keys::new(&first.namespace, &first.scope).leader();
    let names = s.names.clone();
    let out = Outcome {
        seed: sim.seed,
        settings: s.summary.clone(),
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
        w.checks_from_ms = WARMUP_MS;
        for (i, yaml) in s.yaml.iter().enumerate() {
            let cfg = keel_runtime::config::parse(yaml, &BTreeMap::new()).expect("checked in setup").config;
            w.tags[i] = cfg.tags.to_core();
        }
        for (pg, hints) in w.pg.iter_mut().zip(&s.pg.wal_log_hints) {
            pg.wal_log_hints = *hints;
            pg.data_checksums = s.pg.data_checksums;
            pg.wal_keep = s.pg.wal_keep;
        }
    }
    let cluster = format!(
        "ttl {} ms, loop_wait {} ms, retry_timeout {} ms, {}, clocks {:?}, {:?}, settings {}",
        s.dynamic.ttl_ms,
        s.dynamic.loop_wait_ms,
        s.dynamic.retry_timeout_ms,
        s.sync_mode,
        s.clocks,
        s.pg,
        s.summary
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
                let mut w = lock(&world);
                w.replicate();
                w.check_progress();
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

    lock(&world).clocks = clocks.clone();
    let mut fx = Faults {
        handle: handle.clone(),
        net: NetSim::current(),
        world: world.clone(),
        etcd: etcd_node.id(),
        nodes,
        clocks,
        rates: s.clocks.iter().map(|c| c.0).collect(),
        rng: SimRng::new(sim.seed ^ 0x5eed),
        drift_ppm: s.dynamic.max_clock_drift_ppm,
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
    // A fault that ends when it starts still starts first.
    timeline.sort_by_key(|(at, step)| {
        let zero_length = |i: &usize| faults[*i].start_ms == faults[*i].end_ms;
        let order = match step {
            Step::Start(i) if zero_length(i) => 0,
            Step::End(_) => 1,
            _ => 2,
        };
        (*at, order)
    });
    for (at, step) in timeline {
        tokio::time::sleep_until(start + Duration::from_millis(at)).await;
        match step {
            Step::Start(i) => {
                // A fault aimed at a role hits the member in that role now.
                fx.resolve(&mut faults[i]);
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
    let text = format!("{} agent exits", w.names[i]);
    w.event(&text);
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
    /// `max_clock_drift`: the clock rates keel's lease arithmetic assumes.
    drift_ppm: u64,
}

impl Faults {
    /// Resolves the fault's role targets (`faults::ROLES`) to the members
    /// in those roles now, and says which in the trace.
    fn resolve(&mut self, f: &mut Fault) {
        let mut w = lock(&self.world);
        let n = w.names.len();
        let holder = w.leader().and_then(|name| w.index(&name));
        let writable = (0..n).find(|i| w.pg[*i].process == keel_core::PgProcess::RunningPrimary);
        let primary = writable.or(holder).unwrap_or(0);
        let sync_key = w.leader_key.replace("/leader", "/sync");
        let named: Vec<usize> = w
            .kv
            .get(&sync_key)
            .and_then(|kv| keel_runtime::dcs::codec::parse_sync(&kv.value, 0).ok())
            .map(|sync| sync.members.iter().filter_map(|m| w.index(m)).filter(|i| *i != primary).collect())
            .unwrap_or_default();
        let replicas: Vec<usize> = (0..n).filter(|i| *i != primary).collect();
        let mut pick = |from: &[usize]| from.get(self.rng.below(from.len().max(1) as u64) as usize).copied();
        let sync_standby = pick(&named);
        let replica = pick(&replicas);
        for member in f.kind.members_mut() {
            let Some(role) = faults::role_name(*member) else {
                continue;
            };
            let resolved = match *member {
                faults::PRIMARY => primary,
                faults::LEADER_KEY_HOLDER => holder.unwrap_or(0),
                faults::SYNC_STANDBY => sync_standby.or(replica).unwrap_or(primary),
                _ => replica.unwrap_or(primary),
            };
            *member = resolved;
            let text = format!("fault target {role} is {}", w.names[resolved]);
            w.event(&text);
        }
    }

    /// Writes an operator's request into the `failover` key, as keelctl
    /// and the REST API write it, and hands it to the request checker.
    fn request(&self, w: &mut World, leader: Option<String>, candidate: Option<usize>, in_ms: Option<u64>) {
        if w.etcd_down {
            return;
        }
        let candidate = candidate.map(|i| w.names[i].clone());
        let holder = w.leader();
        // What the REST API (and keelctl) refuse is never written: while
        // paused, a request without a candidate or with a schedule; a
        // failover to the leader itself.
        if (w.paused && (candidate.is_none() || in_ms.is_some()))
            || (candidate.is_some() && candidate == holder)
        {
            return;
        }
        // The leader's wall clock reads the time (patronictl on its host).
        let holder = holder.and_then(|name| w.index(&name));
        let scheduled = in_ms.map(|ms| self.clocks[holder.unwrap_or(0)].wall_ms() + ms as i64);
        let value =
            keel_runtime::dcs::codec::format_failover(leader.as_deref(), candidate.as_deref(), scheduled);
        let key = w.leader_key.replace("/leader", "/failover");
        let put = Op::Put { key, value: value.clone(), lease: 0 };
        if w.kv.txn(&[], vec![put], vec![]).is_ok() {
            w.out.switchovers_requested += 1;
            let now = w.now_ms();
            let what = String::from_utf8_lossy(&value).into_owned();
            let paused = w.paused;
            let scheduled_wall_ms = scheduled;
            // Checked when a primary answered as it was made: carried out
            // or refused, a primary answers again.
            w.request = w.answering_primary().map(|_| world::PendingRequest {
                what,
                due_ms: now + in_ms.unwrap_or(0),
                calm_ms: 0,
                paused,
                scheduled_wall_ms,
                excused: false,
            });
        }
    }

    /// Sets or clears `pause` in the `config` key, as `keelctl pause` and
    /// `resume` do (an operator retries until etcd answers: written even
    /// while it is down).
    fn set_pause(w: &mut World, paused: bool) {
        let key = w.leader_key.replace("/leader", "/config");
        let mut config = match w.kv.get(&key).map(|kv| serde_json::from_slice(&kv.value)) {
            Some(Ok(serde_json::Value::Object(map))) => map,
            _ => return,
        };
        if paused {
            config.insert("pause".into(), serde_json::Value::Bool(true));
        } else {
            config.remove("pause");
        }
        let value = serde_json::Value::Object(config).to_string().into_bytes();
        if w.kv.txn(&[], vec![Op::Put { key, value, lease: 0 }], vec![]).is_ok() {
            w.paused = paused;
        }
    }

    fn start(&mut self, f: &Fault) {
        let mut w = lock(&self.world);
        w.record_fault(f, true);
        *w.out.faults.entry(f.kind.label()).or_default() += 1;
        w.event(&format!("fault {:?} until {:.1} s", f.kind, f.end_ms as f64 / 1000.0));
        if !f.kind.is_request() {
            w.failures_active += 1;
        }
        match &f.kind {
            FaultKind::EtcdPartition { node } => {
                let id = self.nodes[*node].id();
                // Both ways, or one way: requests lost (never applied), or
                // answers lost (applied, the client cannot know).
                w.etcd_cut.insert(*node);
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
                if let Some(leader) = w.leader() {
                    let candidate = candidate.filter(|c| w.names[*c] != leader);
                    self.request(&mut w, Some(leader), candidate, None);
                }
            }
            FaultKind::ScheduledSwitchover { candidate, in_ms } => {
                if let Some(leader) = w.leader() {
                    let candidate = candidate.filter(|c| w.names[*c] != leader);
                    self.request(&mut w, Some(leader), candidate, Some(*in_ms));
                }
            }
            FaultKind::Failover { candidate } => self.request(&mut w, None, Some(*candidate), None),
            FaultKind::Pause => Self::set_pause(&mut w, true),
            FaultKind::ProcessPause { node } => {
                w.frozen.insert(*node);
                self.handle.pause(self.nodes[*node].id());
            }
            FaultKind::ClockJump { node, ms, wall_ms } => self.clocks[*node].jump(*ms, *wall_ms),
            FaultKind::ClockRate { node, rate_ppm } => {
                if rate_ppm.unsigned_abs() > self.drift_ppm {
                    // Outside what the lease arithmetic assumes: whatever
                    // follows is not keel's fault (exit code 5).
                    let what = format!(
                        "assumption broken: {}'s clock runs {rate_ppm} ppm off, beyond max_clock_drift ({} ppm)",
                        w.names[*node],
                        self.drift_ppm
                    );
                    w.violation(what);
                }
                self.clocks[*node].set_rate_ppm(*rate_ppm);
            }
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
        if !f.kind.is_request() {
            w.failures_active = w.failures_active.saturating_sub(1);
        }
        match &f.kind {
            FaultKind::EtcdPartition { node } => {
                w.etcd_cut.remove(node);
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
            FaultKind::ProcessPause { node } => {
                w.frozen.remove(node);
                self.handle.resume(self.nodes[*node].id());
            }
            FaultKind::Pause => Self::set_pause(&mut w, false),
            FaultKind::ClockRate { node, .. } => self.clocks[*node].set_rate_ppm(self.rates[*node]),
            FaultKind::EtcdSlow { .. } => w.etcd_delay_ms = 0,
            FaultKind::DiskFull { node } => w.pg[*node].disk_full = false,
            FaultKind::OneWayCut { node, to } => {
                w.cut.remove(&(*node, *to));
            }
            FaultKind::PostgresCrash { .. }
            | FaultKind::Switchover { .. }
            | FaultKind::ScheduledSwitchover { .. }
            | FaultKind::Failover { .. }
            | FaultKind::ClockJump { .. } => {}
        }
    }
}
