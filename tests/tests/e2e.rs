//! keel end to end: real agents (`keel --config`), real etcd, real
//! PostgreSQL 15 on loopback, driven through the failures an operator
//! fears, and judged by data: a writer records every acknowledged write,
//! and each scenario checks that none is lost and that two nodes never
//! accepted writes at the same time, besides the roles. Each prints how
//! long writes stopped.
//!
//! They need the agent binary: `cargo build -p keel-runtime --bin keel`
//! (or `KEEL_BIN`), then `cargo test -p keel-tests --test e2e -- --nocapture`
//! (scripts/test-all builds it first).
//!
//! Settings (ClusterOptions' defaults): ttl 5 s, loop_wait 1 s,
//! retry_timeout 2 s.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use keel_core::MemberRole;
use keel_tests::cluster::{procs, ClusterOptions, KeelCluster, KeelNode, WriteLog, REWIND_USER};

/// initdb, two base backups and the first sync standby, on two cores.
const BOOTSTRAP: Duration = Duration::from_secs(120);
/// A generous deadline for anything a failover does; the scenarios assert
/// tighter bounds on what they measure.
const FAILOVER: Duration = Duration::from_secs(30);
/// Rewind or re-clone, restart, catch up.
const REJOIN: Duration = Duration::from_secs(120);
/// Writes on a new primary the checks want to see.
const SETTLE: Duration = Duration::from_secs(2);
/// A REST answer.
const ANSWER: Duration = Duration::from_secs(5);
/// What a loaded two-core machine adds to promotion and to the writer
/// finding the new primary.
const SLACK: Duration = Duration::from_secs(3);

fn options(synchronous_mode: bool) -> ClusterOptions {
    ClusterOptions { synchronous_mode, ..ClusterOptions::default() }
}

/// The liveness bound of ARCHITECTURE.md (a writable primary within
/// `ttl + loop_wait + 1 s` once a majority is up), plus [`SLACK`].
fn failover_bound(cluster: &KeelCluster) -> Duration {
    cluster.options().ttl() + cluster.options().loop_wait() + Duration::from_secs(1) + SLACK
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Three nodes, one leader streaming to two replicas, and in synchronous
/// mode a sync standby named in the sync key. Returns the leader.
async fn healthy_three(options: ClusterOptions) -> (KeelCluster, String) {
    let synchronous = options.synchronous_mode;
    let cluster = KeelCluster::start(3, options).await;
    let (leader, replicas) = cluster.wait_streaming_replicas(2, BOOTSTRAP).await;
    assert_eq!(replicas.len(), 2, "{leader} streams to {replicas:?}");
    if synchronous {
        cluster
            .wait_for(BOOTSTRAP, "a synchronous standby in the sync key", |v| {
                v.leader_name() == Some(leader.as_str())
                    && v.sync.as_ref().is_some_and(|s| !s.members.is_empty() && !s.members.contains(&leader))
            })
            .await;
    }
    (cluster, leader)
}

/// Every acknowledged write of `logs` is on `node`, now.
async fn assert_none_lost(cluster: &KeelCluster, node: &str, logs: &[&WriteLog]) {
    for log in logs {
        let missing = cluster.missing_on(log, node).await;
        assert!(
            missing.is_empty(),
            "{} acknowledged writes are missing on {node}: {missing:?}\n{}",
            missing.len(),
            log.summary(cluster.started())
        );
    }
}

/// One writable node at a time, and no node writable again after another.
fn assert_one_writer_at_a_time(cluster: &KeelCluster, log: &WriteLog) {
    let overlaps = log.overlaps();
    assert!(
        overlaps.is_empty(),
        "two nodes accepted writes at once: {overlaps:#?}\n{}",
        log.summary(cluster.started())
    );
    let returning = log.returning_nodes();
    assert!(
        returning.is_empty(),
        "{returning:?} accepted writes again after another node did\n{}",
        log.summary(cluster.started())
    );
}

fn era_nodes(log: &WriteLog) -> Vec<String> {
    log.eras().into_iter().map(|e| e.node).collect()
}

/// Waits until the agent's log, past its first `from` bytes, holds `text`;
/// returns that part of the log.
async fn wait_log(node: &KeelNode, from: usize, text: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let log = node.log();
        let since = log.get(from..).unwrap_or_default();
        if since.contains(text) {
            return since.to_owned();
        }
        assert!(Instant::now() < deadline, "waited {timeout:?} for {text:?} in {}'s log", node.name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first column of every row of `query` on `node`.
async fn column(cluster: &KeelCluster, node: &str, query: &str) -> Vec<String> {
    let rows = cluster.sql(node, query).await.unwrap_or_else(|e| panic!("{e}"));
    rows.into_iter().map(|row| row.into_iter().next().flatten().unwrap_or_default()).collect()
}

// --- 1. bootstrap ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_bootstraps_and_becomes_a_writable_primary() {
    let cluster = KeelCluster::start(1, options(false)).await;

    assert_eq!(cluster.wait_for_leader(BOOTSTRAP).await, "pg1");
    cluster.wait_recovery_state("pg1", false, BOOTSTRAP).await;
    // The leader writes the initialize and config keys just after it
    // starts serving.
    let view = cluster
        .wait_for(FAILOVER, "pg1 a running primary, with the initialize and config keys", |v| {
            v.members.get("pg1").is_some_and(|m| m.role == MemberRole::Primary && m.is_running())
                && v.initialize.as_deref().is_some_and(|id| !id.is_empty())
                && v.config.is_some()
        })
        .await;
    let system_id = view.initialize.clone().unwrap_or_default();
    assert!(system_id.parse::<u64>().is_ok(), "initialize key: {system_id:?}");
    let config = view.config.expect("checked");
    assert_eq!((config.ttl_ms, config.loop_wait_ms), (5_000, 1_000), "bootstrap.dcs in the config key");
    assert_eq!(config.synchronous_mode, keel_core::SyncMode::Off);
    assert!(config.use_pg_rewind);

    let writer = cluster.writer();
    let first = writer.wait_for_ack(FAILOVER, "a first write", |_| true).await;
    println!("first acknowledged write {} after the agent started", secs(first.acked_at - cluster.started()));
    tokio::time::sleep(SETTLE).await;
    let log = writer.stop().await;

    assert!(log.acks.len() >= 20, "{}", log.summary(cluster.started()));
    assert!(log.failures.is_empty(), "a healthy primary refused writes: {}", log.summary(cluster.started()));
    assert_eq!(era_nodes(&log), ["pg1"]);
    assert_none_lost(&cluster, "pg1", &[&log]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_one_leader_and_two_streaming_replicas_that_hold_every_write() {
    let (cluster, leader) = healthy_three(options(false)).await;

    // Replicas publish their state once a loop: streaming shows in
    // pg_stat_replication up to loop_wait before it shows in their keys.
    let view = cluster
        .wait_for(FAILOVER, "three running members on timeline 1", |v| {
            v.members.len() == 3 && v.members.values().all(|m| m.is_running() && m.timeline == 1)
        })
        .await;
    let primaries: Vec<&String> =
        view.members.iter().filter(|(_, m)| m.role == MemberRole::Primary).map(|(name, _)| name).collect();
    assert_eq!(primaries, [&leader], "{view:#?}");
    let replicas: Vec<String> = cluster.names().into_iter().filter(|n| *n != leader).collect();
    for replica in &replicas {
        assert_eq!(cluster.is_in_recovery(replica).await, Ok(true), "{replica}");
    }

    let writer = cluster.writer();
    let first = writer.wait_for_ack(FAILOVER, "a first write", |_| true).await;
    println!(
        "first acknowledged write {} after the agents started",
        secs(first.acked_at - cluster.started())
    );
    tokio::time::sleep(SETTLE).await;
    let log = writer.stop().await;

    assert!(log.failures.is_empty(), "{}", log.summary(cluster.started()));
    assert_eq!(era_nodes(&log), std::slice::from_ref(&leader));
    assert_none_lost(&cluster, &leader, &[&log]).await;
    for replica in &replicas {
        cluster.wait_replicated(&log, replica, FAILOVER).await;
    }
    assert_eq!(cluster.leader().await, Some(leader.clone()), "a healthy cluster never changes leader");

    // One physical slot per replica on the leader, each in use by it.
    let rows = cluster
        .sql(&leader, "SELECT slot_name, active::text FROM pg_replication_slots ORDER BY 1")
        .await
        .expect("the leader lists its slots");
    let slots: Vec<(String, String)> = rows
        .into_iter()
        .map(|r| (r[0].clone().unwrap_or_default(), r[1].clone().unwrap_or_default()))
        .collect();
    let expected: Vec<(String, String)> = replicas.iter().map(|r| (r.clone(), "true".to_owned())).collect();
    assert_eq!(slots, expected, "the leader's replication slots");

    // The REST API as HAProxy asks it: the status line of OPTIONS.
    for (node, primary, replica) in
        [(&leader, 200, 503)].into_iter().chain(replicas.iter().map(|r| (r, 503, 200)))
    {
        assert_eq!(cluster.api_code(node, "OPTIONS", "/primary").await, Ok(primary), "{node} /primary");
        assert_eq!(cluster.api_code(node, "OPTIONS", "/replica").await, Ok(replica), "{node} /replica");
    }
}

// --- 2. the primary's machine dies ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_primary_agent_and_postmaster_promote_the_sync_standby_without_losing_a_write() {
    let (mut cluster, old) = healthy_three(options(true)).await;
    let writer = cluster.writer();
    writer.wait_for_ack(FAILOVER, "a first write", |a| a.node == old).await;
    tokio::time::sleep(SETTLE).await;
    // The sync set at the moment of the fault (it may change while the
    // cluster settles, e.g. when a replica's member key shows it running).
    let sync_before = cluster.view().await.unwrap().sync.expect("a sync key").members;

    let fault = cluster.kill_agent(&old);
    // Its parent-death signal may have stopped it already (rule 7).
    let postmaster = cluster.kill_postmaster(&old);
    println!("killed {old}'s agent, then its postmaster ({postmaster:?})");
    let view = cluster
        .wait_for(FAILOVER, "a new leader", |v| v.leader_name().is_some_and(|l| l != old.as_str()))
        .await;
    let new = view.leader_name().expect("checked").to_owned();
    let leader_after = fault.elapsed();
    let first = writer
        .wait_for_ack(FAILOVER, "a write on the new primary", |a| a.sent_at >= fault && a.node == new)
        .await;
    tokio::time::sleep(SETTLE).await;
    let log = writer.stop().await;

    let writes_after = first.acked_at - fault;
    println!(
        "{old} -> {new}: new leader key after {}, first acknowledged write after {}",
        secs(leader_after),
        secs(writes_after)
    );
    println!("{}", log.summary(fault));
    assert!(
        sync_before.contains(&new),
        "{new} was promoted but the sync standbys were {sync_before:?} (rule 2)"
    );
    assert!(writes_after <= failover_bound(&cluster), "writes resumed after {}", secs(writes_after));
    assert_eq!(era_nodes(&log), [old.clone(), new.clone()]);
    assert_one_writer_at_a_time(&cluster, &log);
    assert_none_lost(&cluster, &new, &[&log]).await;
    let other = cluster.names().into_iter().find(|n| *n != old && *n != new).expect("a third node");
    cluster.wait_recovery_state(&other, true, FAILOVER).await;
    cluster.wait_replicated(&log, &other, REJOIN).await;

    // The old node comes back as a replica of the new primary, with every
    // acknowledged write and nothing of its own (rule 4).
    cluster.restart_agent(&old);
    cluster.wait_recovery_state(&old, true, REJOIN).await;
    let (leader, streaming) = cluster.wait_streaming_replicas(2, REJOIN).await;
    assert_eq!(leader, new);
    assert!(streaming.contains(&old), "{old} does not stream from {new}: {streaming:?}");
    cluster.wait_replicated(&log, &old, REJOIN).await;
    let view = cluster
        .wait_for(REJOIN, "the old primary published as a running replica", |v| {
            v.members.get(old.as_str()).is_some_and(|m| m.role == MemberRole::Replica && m.is_running())
        })
        .await;
    assert_eq!(view.leader_name(), Some(new.as_str()));
}

// --- 3. Postgres crashes under a live agent ------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_primary_postmaster_alone_resumes_writes_on_exactly_one_node() {
    let (cluster, old) = healthy_three(options(true)).await;
    let writer = cluster.writer();
    let prober = cluster.prober();
    writer.wait_for_ack(FAILOVER, "a first write", |a| a.node == old).await;
    tokio::time::sleep(SETTLE).await;

    let killed = cluster.kill_postmaster(&old).expect("the primary's postmaster");
    let fault = Instant::now();
    let first = writer.wait_for_ack(FAILOVER, "a write after the crash", |a| a.sent_at >= fault).await;
    tokio::time::sleep(SETTLE).await;
    let log = writer.stop().await;
    let probes = prober.stop().await;

    let writes_after = first.acked_at - fault;
    let how = if first.node == old {
        "restarted in place".to_owned()
    } else {
        format!("failed over to {}", first.node)
    };
    println!(
        "killed postmaster {killed} of {old}: {how}, first acknowledged write after {}",
        secs(writes_after)
    );
    println!("writer: {}\nprober: {}", log.summary(fault), probes.summary(fault));
    assert!(writes_after <= failover_bound(&cluster), "writes resumed after {}", secs(writes_after));
    assert_one_writer_at_a_time(&cluster, &probes);
    assert_one_writer_at_a_time(&cluster, &log);
    let leader = cluster.leader().await.expect("a leader");
    assert_eq!(leader, first.node, "the leader key names the node that accepts writes");
    assert_none_lost(&cluster, &leader, &[&log, &probes]).await;
    for node in cluster.names().into_iter().filter(|n| *n != leader) {
        // A replica, or (after a failover) down or rejoining: not a primary.
        assert_ne!(cluster.is_in_recovery(&node).await, Ok(false), "{node} is a primary too");
    }
}

// --- 4. a clean shutdown of the leader's agent ----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_the_leaders_agent_hands_over_well_under_ttl() {
    let (mut cluster, old) = healthy_three(options(true)).await;
    let writer = cluster.writer();
    writer.wait_for_ack(FAILOVER, "a first write", |a| a.node == old).await;
    tokio::time::sleep(SETTLE).await;

    let fault = cluster.terminate_agent(&old);
    let view = cluster
        .wait_for(FAILOVER, "a new leader", |v| v.leader_name().is_some_and(|l| l != old.as_str()))
        .await;
    let new = view.leader_name().expect("checked").to_owned();
    let leader_after = fault.elapsed();
    let first = writer
        .wait_for_ack(FAILOVER, "a write on the new primary", |a| a.sent_at >= fault && a.node == new)
        .await;
    let status = cluster.wait_agent_exit(&old, FAILOVER).await;
    tokio::time::sleep(SETTLE).await;
    let log = writer.stop().await;

    let writes_after = first.acked_at - fault;
    println!(
        "SIGTERM to {old}: {new} leads after {}, first acknowledged write after {}",
        secs(leader_after),
        secs(writes_after)
    );
    println!("{}", log.summary(fault));
    assert!(status.success(), "the agent exited with {status:?}");
    assert!(cluster.node(&old).postmaster_pid().is_none(), "{old}'s Postgres outlived its agent's shutdown");
    // Without the release a replica would wait for the lease: ttl at least.
    let ttl = cluster.options().ttl();
    assert!(writes_after < ttl, "handover took {}, not under ttl {}", secs(writes_after), secs(ttl));
    assert_eq!(era_nodes(&log), [old.clone(), new.clone()]);
    assert_one_writer_at_a_time(&cluster, &log);
    assert_none_lost(&cluster, &new, &[&log]).await;
}

// --- 5. etcd goes away ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_promotes_nobody_and_the_leader_stops_writes_by_its_lease_deadline() {
    let (mut cluster, old) = healthy_three(options(true)).await;
    let writer = cluster.writer();
    let prober = cluster.prober();
    writer.wait_for_ack(FAILOVER, "a first write", |a| a.node == old).await;
    tokio::time::sleep(SETTLE).await;

    let outage = cluster.etcd_stop();
    let ttl = cluster.options().ttl();
    tokio::time::sleep(ttl + SLACK).await;
    // Rules 1 and 5, by data: nobody else accepted a write, and the leader
    // accepted none sent after its lease deadline (at most ttl after its
    // last renewal, which came before the outage).
    let during = prober.log();
    let elsewhere: Vec<_> = during.acks.iter().filter(|a| a.sent_at >= outage && a.node != old).collect();
    assert!(elsewhere.is_empty(), "promoted without etcd: {elsewhere:?}");
    let late: Vec<_> = during.acks.iter().filter(|a| a.node == old && a.sent_at > outage + ttl).collect();
    assert!(
        late.is_empty(),
        "{old} accepted writes past its lease deadline: {late:?}\n{}",
        during.summary(outage)
    );
    let last = during.last_ack_on(&old).map(|a| a.acked_at.saturating_duration_since(outage));
    println!("etcd down: {old} accepted its last write {} into the outage", last.map_or("-".into(), secs));
    for node in cluster.names() {
        let state = cluster.is_in_recovery(&node).await;
        assert!(state != Ok(false), "{node} is still a primary {} into the outage", secs(outage.elapsed()));
    }

    let back = cluster.etcd_start();
    let first =
        writer.wait_for_ack(FAILOVER + ttl, "a write after etcd returned", |a| a.sent_at >= back).await;
    tokio::time::sleep(SETTLE).await;
    let log = writer.stop().await;
    let probes = prober.stop().await;

    let writes_after = first.acked_at - back;
    println!(
        "etcd back: first acknowledged write on {} after {} ({} after the outage began)",
        first.node,
        secs(writes_after),
        secs(first.acked_at - outage)
    );
    println!("writer: {}\nprober: {}", log.summary(outage), probes.summary(outage));
    // etcd restores leases with their full ttl: the old key may outlive
    // the outage by one ttl before anyone can take it.
    assert!(writes_after <= ttl + failover_bound(&cluster), "writes resumed after {}", secs(writes_after));
    assert_one_writer_at_a_time(&cluster, &probes);
    let leader = cluster.wait_for_leader(FAILOVER).await;
    assert_eq!(leader, first.node);
    assert_none_lost(&cluster, &leader, &[&log, &probes]).await;
}

// --- 6. the primary alone loses etcd ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_cut_from_etcd_demotes_before_a_replica_is_promoted() {
    let opts = ClusterOptions { etcd_proxies: true, ..options(true) };
    let (cluster, old) = healthy_three(opts).await;
    let writer = cluster.writer();
    let prober = cluster.prober();
    writer.wait_for_ack(FAILOVER, "a first write", |a| a.node == old).await;
    tokio::time::sleep(SETTLE).await;

    let cut = cluster.cut_etcd(&old);
    let view = cluster
        .wait_for(FAILOVER, "a new leader", |v| v.leader_name().is_some_and(|l| l != old.as_str()))
        .await;
    let new = view.leader_name().expect("checked").to_owned();
    let leader_after = cut.elapsed();
    let first = writer
        .wait_for_ack(FAILOVER, "a write on the new primary", |a| a.sent_at >= cut && a.node == new)
        .await;
    tokio::time::sleep(SETTLE).await;
    let log = writer.stop().await;
    let probes = prober.stop().await;

    let ttl = cluster.options().ttl();
    let old_last = probes.last_ack_on(&old).expect("writes on the old primary before the cut").clone();
    let new_first =
        probes.first_ack_after(cut, Some(new.as_str())).expect("probes on the new primary").clone();
    println!(
        "{old} cut from etcd: its last write acknowledged {} after the cut; {new} leads after {}, \
         first acknowledged write after {} (writer: {})",
        secs(old_last.acked_at.saturating_duration_since(cut)),
        secs(leader_after),
        secs(new_first.acked_at - cut),
        secs(first.acked_at - cut)
    );
    println!("writer: {}\nprober: {}", log.summary(cut), probes.summary(cut));
    // The old primary stopped accepting writes before the new one began
    // (rules 1 and 7), and by its lease deadline.
    assert!(
        old_last.acked_at < new_first.sent_at,
        "{old} acknowledged a write {} after {new} was sent one",
        secs(old_last.acked_at - new_first.sent_at)
    );
    assert!(old_last.sent_at <= cut + ttl, "{old} accepted a write past its lease deadline");
    assert_one_writer_at_a_time(&cluster, &probes);
    assert_one_writer_at_a_time(&cluster, &log);
    assert!(
        first.acked_at - cut <= failover_bound(&cluster),
        "writes resumed after {}",
        secs(first.acked_at - cut)
    );
    assert_ne!(cluster.is_in_recovery(&old).await, Ok(false), "{old} is still a primary");
    assert_none_lost(&cluster, &new, &[&log, &probes]).await;

    // Healed, the old primary follows the new one with every write.
    cluster.heal_etcd(&old);
    cluster.wait_recovery_state(&old, true, REJOIN).await;
    let (leader, streaming) = cluster.wait_streaming_replicas(2, REJOIN).await;
    assert_eq!(leader, new);
    assert!(streaming.contains(&old), "{streaming:?}");
    cluster.wait_replicated(&log, &old, REJOIN).await;
    cluster.wait_replicated(&probes, &old, REJOIN).await;
}

// --- 7. switchovers in quick succession --------------------------------------------

/// Waits until `leader` holds the leader key and streams to both other
/// nodes, and in synchronous mode a standby is named in the sync key: the
/// state in which an operator would start the next switchover.
async fn wait_healthy_under(cluster: &KeelCluster, leader: &str, timeout: Duration) {
    let synchronous = cluster.options().synchronous_mode;
    cluster
        .wait_for(timeout, &format!("{leader} leading, with a sync standby if synchronous"), |v| {
            v.leader_name() == Some(leader)
                && (!synchronous
                    || v.sync.as_ref().is_some_and(|s| {
                        s.leader.as_deref() == Some(leader)
                            && !s.members.is_empty()
                            && !s.members.contains(leader)
                    }))
        })
        .await;
    let (streaming_from, _) = cluster.wait_streaming_replicas(2, timeout).await;
    assert_eq!(streaming_from, leader, "the leader changed while waiting for its replicas");
}

/// The postmaster PID of every node that runs one.
fn postmasters(cluster: &KeelCluster) -> std::collections::BTreeMap<String, Option<u32>> {
    cluster.nodes().iter().map(|n| (n.name.clone(), n.postmaster_pid())).collect()
}

/// Every line of every agent's log that judges a history diverged. A
/// switchover, or the death of a leader right after one, never diverges
/// anyone's history: such a line is a false judgement (issue 12, defect 8).
fn diverged_lines(cluster: &KeelCluster) -> Vec<String> {
    let mut lines = Vec::new();
    for node in cluster.nodes() {
        let log = node.log();
        lines.extend(log.lines().filter(|l| l.contains("diverged")).map(|l| format!("{}: {l}", node.name)));
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchovers_back_and_forth_restart_only_the_demoted_primary_and_judge_nobody_diverged() {
    let (cluster, first_leader) = healthy_three(options(true)).await;
    let writer = cluster.writer();
    writer.wait_for_ack(FAILOVER, "a first write", |a| a.node == first_leader).await;
    tokio::time::sleep(SETTLE).await;

    let mut leader = first_leader;
    let mut requests = Vec::new();
    for round in 1..=4 {
        // The candidate is the synchronous standby (the only member a
        // switchover in synchronous mode may pick).
        let view = cluster.view().await.expect("etcd answers");
        let sync = view.sync.expect("a sync key").members;
        let candidate = sync.iter().next().expect("a sync standby named").clone();
        let before = postmasters(&cluster);
        let asked = cluster.request_switchover(&leader, Some(&candidate)).await;
        wait_healthy_under(&cluster, &candidate, FAILOVER).await;
        let healthy_after = asked.elapsed();
        let after = postmasters(&cluster);
        // Only the demoted primary restarts (as a replica); the candidate
        // is promoted in place and the third node changes upstream with a
        // reload.
        for (node, pid) in &before {
            if *node != leader {
                assert_eq!(
                    after[node],
                    *pid,
                    "round {round}: {node}'s Postgres restarted in a switchover {leader} -> {candidate}\n{}",
                    cluster.node(node).log_tail(60)
                );
            }
        }
        println!("round {round}: {leader} -> {candidate}, healthy again after {}", secs(healthy_after));
        requests.push((asked, leader.clone(), candidate.clone()));
        leader = candidate;
        // A few seconds apart: well before any restartpoint moves a
        // replica's control file to the new timeline.
        tokio::time::sleep(SETTLE).await;
    }
    let log = writer.stop().await;

    for (i, (asked, from, to)) in requests.iter().enumerate() {
        let until = requests.get(i + 1).map_or_else(Instant::now, |r| r.0);
        let gap = log.longest_gap_in(*asked, until).expect("writes around the switchover");
        println!("switchover {} ({from} -> {to}): write gap {:.3} s", i + 1, gap.duration().as_secs_f64());
    }
    println!("{}", log.summary(cluster.started()));
    let diverged = diverged_lines(&cluster);
    assert!(diverged.is_empty(), "a switchover judged a history diverged:\n{}", diverged.join("\n"));
    let overlaps = log.overlaps();
    assert!(overlaps.is_empty(), "two nodes accepted writes at once: {overlaps:#?}");
    assert_none_lost(&cluster, &leader, &[&log]).await;
}

/// When, after a switchover was asked for, the candidate took the leader
/// key, left recovery, and wrote a sync key naming a standby (each the
/// first poll that saw it).
struct SyncTakeover {
    leader_key: Instant,
    promoted: Instant,
    sync_named: Instant,
}

/// Polls etcd and the candidate's Postgres until the candidate leads with
/// a sync key of its own naming a standby.
async fn watch_sync_takeover(cluster: &KeelCluster, candidate: &str, timeout: Duration) -> SyncTakeover {
    let deadline = Instant::now() + timeout;
    let (mut leader_key, mut promoted) = (None, None);
    loop {
        let view = cluster.view().await.ok();
        let now = Instant::now();
        if view.as_ref().is_some_and(|v| v.leader_name() == Some(candidate)) {
            leader_key.get_or_insert(now);
        }
        if promoted.is_none() && cluster.is_in_recovery(candidate).await == Ok(false) {
            promoted = Some(Instant::now());
        }
        let named = view.as_ref().and_then(|v| v.sync.as_ref()).is_some_and(|s| {
            s.leader.as_deref() == Some(candidate) && !s.members.is_empty() && !s.members.contains(candidate)
        });
        if let (Some(leader_key), Some(promoted), true) = (leader_key, promoted, named) {
            return SyncTakeover { leader_key, promoted, sync_named: now };
        }
        assert!(
            Instant::now() < deadline,
            "waited {timeout:?} for {candidate} to lead with a sync standby; etcd last said: {view:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 12, defect 9: in strict mode a new leader names a synchronous
/// standby as soon as one streams to it, not a `loop_wait` later, so
/// commits stop for the promotion and the standby's reconnection only.
/// A `loop_wait` of 8 s makes a one-loop stall stand out in the printed
/// gaps (not asserted: timings are printed, never asserted), apart from
/// Postgres's own retry interval (`wal_retrieve_retry_interval`, 5 s).
/// Every replica holds the other members' slots before a switchover, so
/// that no standby finds its slot missing on the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_switchovers_name_a_sync_standby_without_waiting_a_loop() {
    let opts = ClusterOptions {
        synchronous_mode_strict: true,
        ttl_s: 20,
        loop_wait_s: 8,
        retry_timeout_s: 3,
        ..options(true)
    };
    let (cluster, first_leader) = healthy_three(opts).await;
    let writer = cluster.writer();
    writer.wait_for_ack(FAILOVER, "a first write", |a| a.node == first_leader).await;
    for node in cluster.names() {
        let others: Vec<String> = cluster.names().into_iter().filter(|n| *n != node).collect();
        wait_slots(&cluster, &node, &others, FAILOVER).await;
    }
    tokio::time::sleep(SETTLE).await;
    let logs_from: Vec<usize> = cluster.nodes().iter().map(|n| n.log().len()).collect();

    let mut leader = first_leader;
    let mut rounds = Vec::new();
    for round in 1..=3 {
        let view = cluster.view().await.expect("etcd answers");
        let candidate =
            view.sync.expect("a sync key").members.into_iter().next().expect("a sync standby named");
        let asked = cluster.request_switchover(&leader, Some(&candidate)).await;
        let takeover = watch_sync_takeover(&cluster, &candidate, FAILOVER).await;
        wait_healthy_under(&cluster, &candidate, FAILOVER).await;
        println!(
            "round {round}: {leader} -> {candidate}: leader key after {}, promoted after {}, \
             sync key naming a standby {} after the promotion",
            secs(takeover.leader_key - asked),
            secs(takeover.promoted - asked),
            secs(takeover.sync_named.saturating_duration_since(takeover.promoted)),
        );
        rounds.push((asked, leader.clone(), candidate.clone()));
        leader = candidate;
        tokio::time::sleep(SETTLE).await;
    }
    let log = writer.stop().await;

    for (i, (asked, from, to)) in rounds.iter().enumerate() {
        let until = rounds.get(i + 1).map_or_else(Instant::now, |r| r.0);
        let gap = log.longest_gap_in(*asked, until).expect("writes around the switchover");
        println!("switchover {} ({from} -> {to}): write gap {:.3} s", i + 1, gap.duration().as_secs_f64());
    }
    println!("{}", log.summary(cluster.started()));
    let missing_slots: Vec<String> = cluster
        .nodes()
        .iter()
        .zip(&logs_from)
        .flat_map(|(node, from)| {
            let log = node.log();
            let since = log.get(*from..).unwrap_or_default().to_owned();
            since
                .lines()
                .filter(|l| l.contains("replication slot") && l.contains("does not exist"))
                .map(|l| format!("{}: {l}", node.name))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(missing_slots.is_empty(), "a standby found its slot missing:\n{}", missing_slots.join("\n"));
    let overlaps = log.overlaps();
    assert!(overlaps.is_empty(), "two nodes accepted writes at once: {overlaps:#?}");
    assert_none_lost(&cluster, &leader, &[&log]).await;
}

/// Waits until `node` holds a physical replication slot for each of
/// `members`.
async fn wait_slots(cluster: &KeelCluster, node: &str, members: &[String], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let slots =
            column(cluster, node, "SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'physical'")
                .await;
        if members.iter().all(|m| slots.contains(m)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited {timeout:?} for {node} to hold slots for {members:?}; it holds {slots:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_right_after_a_switchover_is_replaced_at_lease_expiry() {
    let (mut cluster, old) = healthy_three(options(true)).await;
    let writer = cluster.writer();
    writer.wait_for_ack(FAILOVER, "a first write", |a| a.node == old).await;
    tokio::time::sleep(SETTLE).await;

    let view = cluster.view().await.expect("etcd answers");
    let candidate = view.sync.expect("a sync key").members.into_iter().next().expect("a sync standby");
    cluster.request_switchover(&old, Some(&candidate)).await;
    wait_healthy_under(&cluster, &candidate, FAILOVER).await;
    writer.wait_for_ack(FAILOVER, "a write on the new leader", |a| a.node == candidate).await;

    // The new leader's machine dies: its replicas' WAL receivers stop
    // while their control files still name the previous timeline.
    let before = postmasters(&cluster);
    let fault = cluster.kill_agent(&candidate);
    let postmaster = cluster.kill_postmaster(&candidate);
    println!(
        "killed {candidate}'s agent, then its postmaster ({postmaster:?}), right after {old} -> {candidate}"
    );
    let view = cluster
        .wait_for(FAILOVER, "a leader other than the killed one", |v| {
            v.leader_name().is_some_and(|l| l != candidate.as_str())
        })
        .await;
    let new = view.leader_name().expect("checked").to_owned();
    let leader_after = fault.elapsed();
    let first = writer
        .wait_for_ack(FAILOVER, "a write on the new primary", |a| a.sent_at >= fault && a.node == new)
        .await;
    tokio::time::sleep(SETTLE).await;
    let log = writer.stop().await;

    println!(
        "{new} leads {} after the kill, first acknowledged write after {}",
        secs(leader_after),
        secs(first.acked_at - fault)
    );
    println!("{}", log.summary(fault));
    let diverged = diverged_lines(&cluster);
    assert!(diverged.is_empty(), "a replica judged its history diverged:\n{}", diverged.join("\n"));
    assert_eq!(
        postmasters(&cluster)[&new],
        before[&new],
        "{new} restarted Postgres before taking over instead of being promoted in place"
    );
    let overlaps = log.overlaps();
    assert!(overlaps.is_empty(), "two nodes accepted writes at once: {overlaps:#?}");
    assert_none_lost(&cluster, &new, &[&log]).await;
}

// --- 8. a reload by signal, as Patroni's systemd unit sends it ---------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_file_and_the_primary_keeps_running() {
    let (cluster, leader) = healthy_three(options(false)).await;
    let node = cluster.node(&leader);
    let agent = node.agent_pid().expect("the leader's agent");
    let postmaster = node.postmaster_pid().expect("the leader's postmaster");
    let writer = cluster.writer();
    writer.wait_for_ack(FAILOVER, "a first write", |a| a.node == leader).await;

    // A change of the file, then SIGHUP: the new tags are published, in
    // the member key and in /patroni.
    let original = std::fs::read_to_string(&node.config_path).expect("the node's config");
    let tagged = original.replace("tags: {}\n", "tags:\n  nosync: true\n  reloaded_by: sighup\n");
    assert_ne!(tagged, original, "the harness's config has `tags: {{}}`");
    std::fs::write(&node.config_path, &tagged).expect("write the config");
    let log_at = node.log().len();
    assert!(procs::signal(&[agent], "HUP"), "kill -HUP {agent}");
    cluster
        .wait_for(FAILOVER, "the reloaded tags in the leader's member key", |v| {
            v.members.get(leader.as_str()).is_some_and(|m| m.tags.nosync)
        })
        .await;
    let reloaded = wait_log(node, log_at, "SIGHUP: reloaded", FAILOVER).await;
    println!("{}", reloaded.trim_end());
    let tags = |body: &str| {
        let status: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        status["tags"].clone()
    };
    let patroni = cluster.api_call(&leader, "GET", "/patroni", &[], None, ANSWER).await.unwrap();
    assert_eq!(tags(&patroni.body), serde_json::json!({"nosync": true, "reloaded_by": "sighup"}));

    // A file that does not load: reported, and the old config stays.
    std::fs::write(&node.config_path, "scope: [unclosed\n").expect("write the config");
    let log_at = node.log().len();
    assert!(procs::signal(&[agent], "HUP"), "kill -HUP {agent}");
    let refused = wait_log(node, log_at, "SIGHUP: reload failed, old config kept", FAILOVER).await;
    println!("{}", refused.trim_end());
    tokio::time::sleep(SETTLE).await;
    let log = writer.stop().await;

    println!("{}", log.summary(cluster.started()));
    assert!(procs::is_alive(agent), "the agent died of SIGHUP");
    assert_eq!(node.postmaster_pid(), Some(postmaster), "Postgres was restarted");
    assert_eq!(cluster.leader().await.as_deref(), Some(leader.as_str()), "the leader changed");
    assert_eq!(era_nodes(&log), [leader.as_str()], "writes went elsewhere");
    assert!(log.failures.is_empty(), "writes failed: {}", log.summary(cluster.started()));
    let patroni = cluster.api_call(&leader, "GET", "/patroni", &[], None, ANSWER).await.unwrap();
    assert_eq!(tags(&patroni.body)["reloaded_by"], "sighup", "the old config's tags were kept");
}

// --- 9. a former primary with writes nobody else has rejoins by pg_rewind ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverged_former_primary_is_rewound_as_the_rewind_user_over_scram_and_streams_again() {
    let opts = ClusterOptions { scram_auth: true, ..options(false) };
    let (mut cluster, old) = healthy_three(opts).await;
    let (rewind_user, _) = REWIND_USER;
    // The guide's authentication: every TCP connection needs a password,
    // and bootstrap created pg_rewind's user with a scram one.
    let methods = "SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE type = 'host'";
    assert_eq!(column(&cluster, &old, methods).await, ["scram-sha-256"]);
    let password =
        format!("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = '{rewind_user}'");
    assert_eq!(column(&cluster, &old, &password).await, ["t"], "{rewind_user} with a scram password");

    cluster.sql(&old, "CREATE TABLE fork (what text); INSERT INTO fork VALUES ('common')").await.unwrap();
    let rows = "SELECT what FROM fork ORDER BY what";
    for replica in cluster.names().into_iter().filter(|n| *n != old) {
        let deadline = Instant::now() + FAILOVER;
        while column(&cluster, &replica, rows).await != ["common"] {
            assert!(Instant::now() < deadline, "{replica} did not replay the common row");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The replicas stop receiving (the leader's WAL senders are frozen),
    // the leader commits a row of its own, and dies with its agent.
    let senders: Vec<u32> = column(&cluster, &old, "SELECT pid FROM pg_stat_replication")
        .await
        .iter()
        .map(|pid| pid.parse().expect("a pid"))
        .collect();
    assert_eq!(senders.len(), 2, "WAL senders: {senders:?}");
    assert!(procs::signal(&senders, "STOP"), "kill -STOP {senders:?}");
    cluster.sql(&old, "INSERT INTO fork VALUES ('diverged')").await.unwrap();
    let postmaster = cluster.node(&old).postmaster_pid().expect("the leader's postmaster");
    let fault = cluster.kill_agent(&old);
    procs::signal(&[postmaster], "KILL");
    // Frozen, the senders would never see their postmaster die, and would
    // keep its shared memory from a new one.
    procs::signal(&senders, "KILL");
    let left = procs::wait_gone(&[&[postmaster][..], &senders].concat(), Duration::from_secs(10));
    assert!(left.is_empty(), "still alive: {left:?}");
    let view = cluster
        .wait_for(FAILOVER, "a new leader", |v| v.leader_name().is_some_and(|l| l != old.as_str()))
        .await;
    let new = view.leader_name().expect("checked").to_owned();
    println!(
        "{old} killed with a row the replicas never received; {new} leads after {}",
        secs(fault.elapsed())
    );
    cluster.wait_recovery_state(&new, false, FAILOVER).await;
    assert_eq!(column(&cluster, &new, rows).await, ["common"]);

    // pg_rewind rewrites the data directory in place; a base backup would
    // empty it first, and its directories would be new ones.
    let node = cluster.node(&old);
    let base = node.data_dir.join("base");
    let inode = std::fs::metadata(&base).expect("the data directory's base/").ino();
    let log_at = node.log().len();
    let back = Instant::now();
    cluster.restart_agent(&old);
    cluster.wait_recovery_state(&old, true, REJOIN).await;
    let (leader, streaming) = cluster.wait_streaming_replicas(2, REJOIN).await;
    let rejoined = back.elapsed();
    assert_eq!(leader, new);
    assert!(streaming.contains(&old), "{old} does not stream from {new}: {streaming:?}");
    let node = cluster.node(&old);
    let log = wait_log(node, log_at, "pg_rewind done", FAILOVER).await;
    let done = log.lines().find(|l| l.contains("pg_rewind done")).unwrap_or_default();
    println!("{old} rewound and streaming from {new} {} after its agent restarted: {done}", secs(rejoined));
    assert!(!log.contains("pg_rewind failed"), "a rewind failed before one succeeded:\n{log}");
    assert_eq!(std::fs::metadata(&base).expect("base/").ino(), inode, "{old}'s data directory was re-cloned");
    assert_eq!(column(&cluster, &old, rows).await, ["common"], "{old} kept its diverged row");
    let view = cluster
        .wait_for(REJOIN, "the old primary published as a running replica", |v| {
            v.members.get(old.as_str()).is_some_and(|m| m.role == MemberRole::Replica && m.is_running())
        })
        .await;
    assert_eq!(view.leader_name(), Some(new.as_str()));
}
