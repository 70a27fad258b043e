//! The failover benchmark of issue 6 on real etcd, PostgreSQL 15 and
//! HAProxy: three keel nodes in synchronous mode behind the guide's
//! `haproxy.cfg`, two writers (one direct, re-scanning the nodes; one
//! through HAProxy's primary port), and per run a node death, a Postgres
//! crash, a switchover and an idle footprint, the cluster verified healthy
//! before each. It measures and reports; it asserts nothing about time.

pub mod pglog;
pub mod probes;
pub mod report;

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::{Ack, ClusterOptions, KeelCluster, WriteLog, Writer, NAMESPACE};
use crate::haproxy::{CheckTiming, Haproxy};
use keel_runtime::dcs::Keys;
use probes::{Footprint, LeaderWatch};

/// Timing settings of `bootstrap.dcs`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Profile {
    pub name: &'static str,
    pub ttl_s: u64,
    pub loop_wait_s: u64,
    pub retry_timeout_s: u64,
}

impl Profile {
    /// The guide's (and Patroni's default) settings.
    pub const GUIDE: Profile = Profile { name: "guide", ttl_s: 30, loop_wait_s: 10, retry_timeout_s: 10 };
    pub const FAST: Profile = Profile { name: "fast", ttl_s: 5, loop_wait_s: 1, retry_timeout_s: 2 };

    pub fn by_name(name: &str) -> Result<Profile, String> {
        match name {
            "guide" => Ok(Profile::GUIDE),
            "fast" => Ok(Profile::FAST),
            other => Err(format!("unknown profile {other:?} (guide or fast)")),
        }
    }
}

/// Bootstrap, rejoin, HAProxy's `rise`: a generous bound, to fail a run
/// that hangs rather than to judge one.
const REJOIN: Duration = Duration::from_secs(180);
/// Writes before a fault, and after recovery, that the record keeps.
const WARM: Duration = Duration::from_secs(2);

/// Node death: kill -9 of the primary's agent and postmaster.
#[derive(Clone, Debug, Serialize)]
pub struct NodeDeath {
    pub old: String,
    pub new: String,
    /// Extra wait before the kill, spreading the kills over the leader's
    /// loop (`loop_wait × (run − 1) / runs`).
    pub phase_s: f64,
    /// From the kill to the first acknowledged write (sent after it).
    pub first_write_direct_s: f64,
    pub first_write_haproxy_s: f64,
    /// From the kill until etcd deleted the leader key (its lease expired).
    pub lease_expired_s: f64,
    /// From the lease's expiry until a new node held the leader key.
    pub expiry_to_new_leader_s: f64,
    /// From the lease's expiry to the first direct write: the engine's own
    /// overhead, including the writer finding the new primary.
    pub expiry_to_first_write_s: f64,
    pub lost_after_recovery: usize,
    pub lost_after_rejoin: usize,
    pub acked: usize,
}

/// Postgres crash: kill -9 of the primary's postmaster only.
#[derive(Clone, Debug, Serialize)]
pub struct PgCrash {
    pub node: String,
    /// `restarted in place` or `failed over to <node>`.
    pub outcome: String,
    pub first_write_direct_s: f64,
    pub first_write_haproxy_s: f64,
    /// The restart as the server log shows it (restarted in place).
    pub phases: pglog::CrashPhases,
    pub lost: usize,
    pub acked: usize,
}

/// Switchover, requested by writing the failover key in etcd.
#[derive(Clone, Debug, Serialize)]
pub struct Switchover {
    pub old: String,
    pub new: String,
    pub method: &'static str,
    pub longest_gap_direct_s: f64,
    pub longest_gap_haproxy_s: f64,
    /// Writes sent through HAProxy that failed (errors, including
    /// connection attempts refused or cut).
    pub failed_haproxy: usize,
    pub lost: usize,
    pub acked: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub run: usize,
    /// How long the cluster took to be verified healthy before each
    /// measurement.
    pub healthy_before_s: Vec<f64>,
    pub node_death: NodeDeath,
    pub pg_crash: PgCrash,
    pub switchover: Switchover,
    pub footprint: Vec<Footprint>,
}

/// What one profile's benchmark asks for.
#[derive(Clone, Debug)]
pub struct Plan {
    pub profile: Profile,
    pub runs: usize,
    pub footprint_window: Duration,
    /// Switch over with this `keelctl` (`switchover --leader … --force`)
    /// instead of writing the failover key.
    pub keelctl: Option<std::path::PathBuf>,
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// A cluster with HAProxy in front, measured run after run. `on_run` gets
/// each finished run (to save results as they come).
pub async fn bench(plan: &Plan, mut on_run: impl FnMut(&Run)) -> Result<Vec<Run>, String> {
    let p = plan.profile;
    let options = ClusterOptions {
        scope: format!("keel-bench-{}", p.name),
        synchronous_mode: true,
        ttl_s: p.ttl_s,
        loop_wait_s: p.loop_wait_s,
        retry_timeout_s: p.retry_timeout_s,
        ..ClusterOptions::default()
    };
    let mut cluster = KeelCluster::start(3, options).await;
    let haproxy = Haproxy::start(&cluster.haproxy_backends(), CheckTiming::GUIDE);
    let mut runs = Vec::new();
    for number in 1..=plan.runs {
        let mut healthy = Vec::new();
        healthy.push(verify_healthy(&cluster, &haproxy).await?);
        // The fault lands at a different point of the leader's loop in each
        // run: the health check ends just after a leader loop, so without
        // this every kill would come the same time after the last lease
        // renewal, and the lease would always have nearly all of its ttl
        // left (the worst case) or always little (the best).
        let phase = p.loop_wait_s as f64 * (number - 1) as f64 / plan.runs as f64;
        let node_death = node_death(&mut cluster, &haproxy, Duration::from_secs_f64(phase)).await?;
        eprintln!("  run {number}: node death {node_death:?}");
        healthy.push(verify_healthy(&cluster, &haproxy).await?);
        let pg_crash = pg_crash(&cluster, &haproxy).await?;
        eprintln!("  run {number}: Postgres crash {pg_crash:?}");
        healthy.push(verify_healthy(&cluster, &haproxy).await?);
        let switchover = switchover(&cluster, &haproxy, plan.keelctl.as_deref()).await?;
        eprintln!("  run {number}: switchover {switchover:?}");
        healthy.push(verify_healthy(&cluster, &haproxy).await?);
        let agents: Vec<(String, u32)> =
            cluster.nodes().iter().filter_map(|n| Some((n.name.clone(), n.agent_pid()?))).collect();
        let leader = cluster.leader().await;
        let footprint = probes::footprint(&agents, leader.as_deref(), plan.footprint_window).await?;
        eprintln!("  run {number}: footprint {footprint:?}");
        let run = Run { run: number, healthy_before_s: healthy, node_death, pg_crash, switchover, footprint };
        on_run(&run);
        runs.push(run);
    }
    Ok(runs)
}

/// One primary (etcd's leader, writable), two streaming replicas, a sync
/// standby in the sync key and in Postgres, every member running, and
/// HAProxy routing the primary port to the leader only and the replica
/// port to both replicas. Returns how long it took to get there (s).
pub async fn verify_healthy(cluster: &KeelCluster, haproxy: &Haproxy) -> Result<f64, String> {
    let start = Instant::now();
    let (leader, _) = cluster.wait_streaming_replicas(2, REJOIN).await;
    let replicas: Vec<String> = cluster.names().into_iter().filter(|n| *n != leader).collect();
    let query =
        "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = 'sync'";
    let deadline = start + REJOIN;
    loop {
        let view = cluster.view().await.map_err(|e| e.to_string())?;
        let members_ok = view.leader_name() == Some(leader.as_str())
            && view.members.len() == 3
            && view.members.values().all(|m| m.is_running());
        let sync_key = view.sync.as_ref().map(|s| s.members.clone()).unwrap_or_default();
        let sync_pg: Vec<String> = cluster
            .sql(&leader, query)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect();
        let streaming = cluster.sql(&leader, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND application_name IN ('pg1','pg2','pg3')").await.unwrap_or_default();
        let streaming_ok = streaming.first().and_then(|r| r.first()).and_then(|v| v.as_deref()) == Some("2");
        let sync_ok =
            !sync_key.is_empty() && sync_key.iter().all(|m| sync_pg.contains(m) && replicas.contains(m));
        let primary_ok = cluster.is_in_recovery(&leader).await == Ok(false);
        if members_ok && sync_ok && streaming_ok && primary_ok {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not healthy after {REJOIN:?}: leader {leader}, members ok {members_ok}, sync key {sync_key:?}, \
                 sync in Postgres {sync_pg:?}, two streaming {streaming_ok}, primary writable {primary_ok}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    haproxy.wait_settled(&leader, &replicas, REJOIN).await?;
    Ok(secs(start.elapsed()))
}

/// Both writers, started together.
struct Writers {
    direct: Writer,
    haproxy: Writer,
}

impl Writers {
    async fn start(cluster: &KeelCluster, haproxy: &Haproxy, leader: &str) -> Result<Writers, String> {
        let writers =
            Writers { direct: cluster.writer(), haproxy: cluster.proxy_writer(haproxy.primary_port) };
        for (name, writer) in [("direct", &writers.direct), ("HAProxy", &writers.haproxy)] {
            wait_ack(writer, Duration::from_secs(30), |a| a.node == leader).await.ok_or_else(|| {
                format!(
                    "the {name} writer wrote nothing on {leader}:\n{}",
                    writer.log().summary(writer.started())
                )
            })?;
        }
        tokio::time::sleep(WARM).await;
        Ok(writers)
    }

    async fn stop(self) -> (WriteLog, WriteLog) {
        (self.direct.stop().await, self.haproxy.stop().await)
    }
}

/// The first acknowledged write satisfying `check`, waiting `timeout` at
/// most; `None` if none came.
async fn wait_ack(writer: &Writer, timeout: Duration, check: impl Fn(&Ack) -> bool) -> Option<Ack> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(ack) = writer.log().acks.iter().filter(|a| check(a)).min_by_key(|a| a.sent_at) {
            return Some(ack.clone());
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Acknowledged rows of both logs that `node` lacks.
async fn lost_on(cluster: &KeelCluster, node: &str, logs: &[&WriteLog]) -> Result<usize, String> {
    let present = cluster.written_ids(node).await?;
    Ok(logs.iter().map(|l| l.missing_from(&present).len()).sum())
}

fn recovery_bound(cluster: &KeelCluster) -> Duration {
    // Lease expiry, the race, promotion, and HAProxy's `rise 2`.
    cluster.options().ttl() * 2 + Duration::from_secs(60)
}

async fn node_death(
    cluster: &mut KeelCluster,
    haproxy: &Haproxy,
    phase: Duration,
) -> Result<NodeDeath, String> {
    let old = cluster.leader().await.ok_or("no leader")?;
    let key = Keys::new(NAMESPACE, &cluster.options().scope).leader();
    let watch = LeaderWatch::start(&cluster.etcd().endpoint, key).await?;
    let writers = Writers::start(cluster, haproxy, &old).await?;
    tokio::time::sleep(phase).await;
    let fault = cluster.kill_agent(&old);
    cluster.kill_postmaster(&old);
    let bound = recovery_bound(cluster);
    let elsewhere = |a: &Ack| a.sent_at >= fault && a.node != old;
    let direct = wait_ack(&writers.direct, bound, elsewhere).await;
    let proxied = wait_ack(&writers.haproxy, bound, elsewhere).await;
    tokio::time::sleep(WARM).await;
    let (direct_log, proxy_log) = writers.stop().await;
    let (Some(direct), Some(proxied)) = (direct, proxied) else {
        return Err(format!(
            "node death of {old}: no write elsewhere within {bound:?}\ndirect: {}\nHAProxy: {}",
            direct_log.summary(fault),
            proxy_log.summary(fault)
        ));
    };
    let new = direct.node.clone();
    let expired = watch.deleted_after(fault).ok_or("the leader key was never deleted")?;
    let taken = watch.taken_after(expired, &old).ok_or("nobody took the leader key")?;
    let lost_after_recovery = lost_on(cluster, &new, &[&direct_log, &proxy_log]).await?;
    cluster.restart_agent(&old);
    cluster.wait_recovery_state(&old, true, REJOIN).await;
    cluster.wait_replicated(&direct_log, &old, REJOIN).await;
    cluster.wait_replicated(&proxy_log, &old, REJOIN).await;
    let lost_after_rejoin = lost_on(cluster, &new, &[&direct_log, &proxy_log]).await?;
    Ok(NodeDeath {
        first_write_direct_s: secs(direct.acked_at - fault),
        first_write_haproxy_s: secs(proxied.acked_at - fault),
        lease_expired_s: secs(expired - fault),
        expiry_to_new_leader_s: secs(taken.saturating_duration_since(expired)),
        expiry_to_first_write_s: secs(direct.acked_at.saturating_duration_since(expired)),
        lost_after_recovery,
        lost_after_rejoin,
        acked: direct_log.acks.len() + proxy_log.acks.len(),
        phase_s: secs(phase),
        old,
        new,
    })
}

async fn pg_crash(cluster: &KeelCluster, haproxy: &Haproxy) -> Result<PgCrash, String> {
    let node = cluster.leader().await.ok_or("no leader")?;
    let writers = Writers::start(cluster, haproxy, &node).await?;
    let log_path = &cluster.node(&node).log_path;
    let log_offset = std::fs::metadata(log_path).map_or(0, |m| m.len());
    let fault = Instant::now();
    let fault_unix_s =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    cluster.kill_postmaster(&node).ok_or_else(|| format!("{node} had no postmaster"))?;
    // Backends outlive their postmaster by a few milliseconds and may still
    // commit a write sent in that moment: count only writes sent once every
    // process of the old server was gone, timed from the kill.
    let gone = Instant::now();
    let bound = recovery_bound(cluster);
    let after = |a: &Ack| a.sent_at >= gone;
    let direct = wait_ack(&writers.direct, bound, after).await;
    let proxied = wait_ack(&writers.haproxy, bound, after).await;
    tokio::time::sleep(WARM).await;
    let (direct_log, proxy_log) = writers.stop().await;
    let (Some(direct), Some(proxied)) = (direct, proxied) else {
        return Err(format!(
            "Postgres crash on {node}: no write within {bound:?}\ndirect: {}\nHAProxy: {}",
            direct_log.summary(fault),
            proxy_log.summary(fault)
        ));
    };
    let leader = cluster.leader().await.ok_or("no leader after the crash")?;
    let outcome =
        if leader == node { "restarted in place".to_owned() } else { format!("failed over to {leader}") };
    let log = std::fs::read(log_path).unwrap_or_default();
    let since_kill = String::from_utf8_lossy(log.get(log_offset as usize..).unwrap_or_default());
    Ok(PgCrash {
        outcome,
        first_write_direct_s: secs(direct.acked_at - fault),
        first_write_haproxy_s: secs(proxied.acked_at - fault),
        phases: pglog::crash_phases(&since_kill, fault_unix_s),
        lost: lost_on(cluster, &leader, &[&direct_log, &proxy_log]).await?,
        acked: direct_log.acks.len() + proxy_log.acks.len(),
        node,
    })
}

async fn switchover(
    cluster: &KeelCluster,
    haproxy: &Haproxy,
    keelctl: Option<&std::path::Path>,
) -> Result<Switchover, String> {
    let old = cluster.leader().await.ok_or("no leader")?;
    let writers = Writers::start(cluster, haproxy, &old).await?;
    let (requested, method) = match keelctl {
        None => (cluster.request_switchover(&old, None).await, "failover key written in etcd"),
        Some(keelctl) => {
            let mut command = std::process::Command::new(keelctl);
            command
                .args(["--dcs-url", &cluster.etcd().endpoint, "--scope", &cluster.options().scope])
                .args(["switchover", "--leader", &old, "--force"]);
            let requested = Instant::now();
            // keelctl answers once the switchover is done: off the runtime's
            // threads, so that the writers keep writing meanwhile.
            let out = tokio::task::spawn_blocking(move || command.output())
                .await
                .map_err(|e| format!("keelctl: {e}"))?
                .map_err(|e| format!("running {}: {e}", keelctl.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "keelctl switchover failed ({}): {}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            (requested, "keelctl switchover")
        }
    };
    let bound = recovery_bound(cluster);
    let elsewhere = |a: &Ack| a.sent_at >= requested && a.node != old;
    let direct = wait_ack(&writers.direct, bound, elsewhere).await;
    let proxied = wait_ack(&writers.haproxy, bound, elsewhere).await;
    tokio::time::sleep(WARM).await;
    let (direct_log, proxy_log) = writers.stop().await;
    let (Some(direct), Some(_)) = (direct, proxied) else {
        return Err(format!(
            "switchover from {old}: no write elsewhere within {bound:?}\ndirect: {}\nHAProxy: {}",
            direct_log.summary(requested),
            proxy_log.summary(requested)
        ));
    };
    let gap = |log: &WriteLog| log.longest_gap().map_or(0.0, |g| secs(g.duration()));
    let new = direct.node.clone();
    Ok(Switchover {
        longest_gap_direct_s: gap(&direct_log),
        longest_gap_haproxy_s: gap(&proxy_log),
        failed_haproxy: proxy_log.failures.len(),
        lost: lost_on(cluster, &new, &[&direct_log, &proxy_log]).await?,
        acked: direct_log.acks.len() + proxy_log.acks.len(),
        method,
        old,
        new,
    })
}
