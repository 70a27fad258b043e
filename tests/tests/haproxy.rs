//! keel behind real HAProxy, configured as the guide's `haproxy.cfg`
//! (`option httpchk OPTIONS /primary`, `http-check expect status 200`,
//! `inter 3s fall 3 rise 2 on-marked-down shutdown-sessions`; ports
//! adapted to loopback): clients that know nothing of keel write through
//! the primary port and read through the replica port, and keep working
//! across a switchover and a node death.
//!
//! Needs the agent and keelctl (`cargo build -p keel-runtime --bins`) and
//! `/usr/sbin/haproxy` (`KEEL_HAPROXY` to use another), then
//! `cargo test -p keel-tests --test haproxy -- --nocapture`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use keel_tests::cluster::writer::connect;
use keel_tests::cluster::{ClusterOptions, KeelCluster, WriteLog};
use keel_tests::ctl::keelctl;
use keel_tests::haproxy::{CheckTiming, Haproxy, PRIMARY, REPLICAS};
use tokio_postgres::Client;

const BOOTSTRAP: Duration = Duration::from_secs(120);
const FAILOVER: Duration = Duration::from_secs(30);
/// `rise 2` or `fall 3` checks at `inter 3s`, each of which may wait its
/// full interval for a frozen agent, plus a loaded machine.
const HAPROXY_SETTLE: Duration = Duration::from_secs(30);
const REJOIN: Duration = Duration::from_secs(120);
const SETTLE: Duration = Duration::from_secs(2);

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Three nodes in synchronous mode, streaming and with a sync standby, and
/// HAProxy settled in front of them. Returns the leader and the replicas.
async fn cluster_behind_haproxy() -> (KeelCluster, Haproxy, String, Vec<String>) {
    let options = ClusterOptions { synchronous_mode: true, ..ClusterOptions::default() };
    let cluster = KeelCluster::start(3, options).await;
    let (leader, _) = cluster.wait_streaming_replicas(2, BOOTSTRAP).await;
    // Not the names wait_streaming_replicas saw: a base backup's sender
    // (`keel_basebackup_pg2`) may be among them for a moment.
    let replicas: Vec<String> = cluster.names().into_iter().filter(|n| *n != leader).collect();
    cluster
        .wait_for(BOOTSTRAP, "a synchronous standby in the sync key", |v| {
            v.leader_name() == Some(leader.as_str()) && v.sync.as_ref().is_some_and(|s| !s.members.is_empty())
        })
        .await;
    let haproxy = Haproxy::start(&cluster.haproxy_backends(), CheckTiming::GUIDE);
    let took =
        haproxy.wait_settled(&leader, &replicas, HAPROXY_SETTLE).await.unwrap_or_else(|e| panic!("{e}"));
    println!("HAProxy settled on {leader} (replicas {replicas:?}) {} after it started", secs(took));
    (cluster, haproxy, leader, replicas)
}

/// A session through `port`, and the node behind it (by its Postgres port).
async fn session(cluster: &KeelCluster, port: u16) -> (Client, String) {
    let client =
        connect(port, "keel-tests-session", Duration::from_secs(5)).await.expect("connect through HAProxy");
    let row = client.query_one("SELECT inet_server_port()", &[]).await.expect("inet_server_port()");
    let server_port: i32 = row.get(0);
    let node = cluster
        .nodes()
        .iter()
        .find(|n| i32::from(n.pg_port) == server_port)
        .unwrap_or_else(|| panic!("HAProxy led to port {server_port}, which is no node's"));
    (client, node.name.clone())
}

/// Waits until `client`'s session fails (the server or a proxy cut it);
/// returns when it was first seen failing.
async fn wait_cut(client: &Client, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        let probe = tokio::time::timeout(Duration::from_secs(1), client.simple_query("SELECT 1")).await;
        if matches!(probe, Ok(Err(_))) || client.is_closed() {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "the session still answers after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn nodes_of(log: &WriteLog) -> BTreeSet<String> {
    log.acks.iter().map(|a| a.node.clone()).collect()
}

async fn assert_none_lost(cluster: &KeelCluster, node: &str, log: &WriteLog) {
    let missing = cluster.missing_on(log, node).await;
    assert!(
        missing.is_empty(),
        "acknowledged writes missing on {node}: {missing:?}\n{}",
        log.summary(cluster.started())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_port_writes_to_the_primary_replica_port_reads_replicas_and_a_marked_down_server_loses_its_sessions(
) {
    let (cluster, haproxy, leader, replicas) = cluster_behind_haproxy().await;

    // Writes through the primary port land on the primary.
    let writer = cluster.proxy_writer(haproxy.primary_port);
    writer.wait_for_ack(FAILOVER, "a write through HAProxy", |_| true).await;
    tokio::time::sleep(SETTLE).await;
    let log = writer.stop().await;
    assert!(log.failures.is_empty(), "{}", log.summary(cluster.started()));
    assert_eq!(nodes_of(&log), BTreeSet::from([leader.clone()]), "{}", log.summary(cluster.started()));
    assert_none_lost(&cluster, &leader, &log).await;

    // Reads through the replica port land on replicas, round robin over
    // both.
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        let (client, node) = session(&cluster, haproxy.replica_port).await;
        let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await.expect("pg_is_in_recovery()");
        assert!(row.get::<_, bool>(0), "{node}, reached through the replica port, is not in recovery");
        seen.insert(node);
    }
    assert_eq!(seen, replicas.iter().cloned().collect(), "the replica port's round robin");

    // A replica whose agent is frozen stops answering HAProxy's checks:
    // HAProxy marks it down and cuts the sessions it had routed there
    // (`on-marked-down shutdown-sessions`), while its Postgres runs on.
    let (held, frozen) = session(&cluster, haproxy.replica_port).await;
    let frozen_at = cluster.freeze_agent(&frozen);
    let cut_at = wait_cut(&held, HAPROXY_SETTLE).await;
    let states = haproxy.server_states(REPLICAS).await.expect("show stat");
    println!(
        "froze {frozen}'s agent; HAProxy cut its session {} later ({states:?})",
        secs(cut_at - frozen_at)
    );
    assert!(states[&frozen].starts_with("DOWN"), "{frozen} is {:?} in {REPLICAS}", states[&frozen]);
    assert_eq!(
        cluster.is_in_recovery(&frozen).await,
        Ok(true),
        "{frozen}'s Postgres answers directly: HAProxy, not Postgres, ended the session"
    );
    let (client, node) = session(&cluster, haproxy.replica_port).await;
    assert_ne!(node, frozen, "a new session through the replica port avoids the server marked down");
    drop(client);

    cluster.thaw_agent(&frozen);
    let leader_now = cluster.wait_for_leader(FAILOVER).await;
    assert_eq!(leader_now, leader, "a frozen replica never changes the leader");
    let took =
        haproxy.wait_settled(&leader, &replicas, HAPROXY_SETTLE).await.unwrap_or_else(|e| panic!("{e}"));
    println!("HAProxy took {frozen} back {} after its agent was thawed", secs(took));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_haproxy_follow_a_switchover_and_a_node_death_and_old_sessions_are_cut() {
    let (mut cluster, haproxy, old, _) = cluster_behind_haproxy().await;
    let writer = cluster.proxy_writer(haproxy.primary_port);
    writer.wait_for_ack(FAILOVER, "a write through HAProxy", |a| a.node == old).await;
    let (held, held_node) = session(&cluster, haproxy.primary_port).await;
    assert_eq!(held_node, old);

    // Switchover: `keelctl switchover`, as an operator asks for it (issue
    // 5). It answers once done; the old session's cut is measured meanwhile.
    let switch = Instant::now();
    let config = cluster.node(&old).config_path.to_string_lossy().into_owned();
    let argv = ["-c", &config, "switchover", "--leader", &old, "--force"].map(str::to_owned);
    let asked = tokio::spawn(async move { keelctl(&argv.each_ref().map(String::as_str), "").await });
    let view =
        cluster.wait_for(FAILOVER, "a new leader", |v| v.leader_name().is_some_and(|l| l != old)).await;
    let new = view.leader_name().expect("checked").to_owned();
    let cut = wait_cut(&held, HAPROXY_SETTLE).await;
    println!("keelctl switchover: {}", asked.await.expect("keelctl ran").ok().trim());
    let first = writer
        .wait_for_ack(HAPROXY_SETTLE, "a write through HAProxy on the new primary", |a| {
            a.sent_at >= switch && a.node == new
        })
        .await;
    println!(
        "switchover {old} -> {new}: old session cut after {}, first write through HAProxy after {}",
        secs(cut - switch),
        secs(first.acked_at - switch)
    );
    let others: Vec<String> = cluster.names().into_iter().filter(|n| *n != new).collect();
    haproxy.wait_settled(&new, &others, REJOIN).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(haproxy.up_servers(PRIMARY).await, Ok(vec![new.clone()]));

    // Node death of the new primary: agent and postmaster killed.
    let (held, held_node) = session(&cluster, haproxy.primary_port).await;
    assert_eq!(held_node, new);
    let fault = cluster.kill_agent(&new);
    cluster.kill_postmaster(&new);
    let view =
        cluster.wait_for(FAILOVER, "another leader", |v| v.leader_name().is_some_and(|l| l != new)).await;
    let third = view.leader_name().expect("checked").to_owned();
    wait_cut(&held, HAPROXY_SETTLE).await;
    let first = writer
        .wait_for_ack(HAPROXY_SETTLE, "a write through HAProxy after the node death", |a| {
            a.sent_at >= fault && a.node == third
        })
        .await;
    println!(
        "node death of {new} -> {third}: first write through HAProxy after {}",
        secs(first.acked_at - fault)
    );
    tokio::time::sleep(SETTLE).await;
    let log = writer.stop().await;
    println!("{}", log.summary(switch));
    assert_none_lost(&cluster, &third, &log).await;
    let eras: Vec<String> = log.eras().into_iter().map(|e| e.node).collect();
    assert_eq!(eras, [old.clone(), new.clone(), third.clone()], "{}", log.summary(cluster.started()));

    // The dead node rejoins; HAProxy routes the replica port to it again.
    cluster.restart_agent(&new);
    cluster.wait_recovery_state(&new, true, REJOIN).await;
    cluster.wait_replicated(&log, &new, REJOIN).await;
    let replicas: Vec<String> = cluster.names().into_iter().filter(|n| *n != third).collect();
    haproxy.wait_settled(&third, &replicas, REJOIN).await.unwrap_or_else(|e| panic!("{e}"));
}
